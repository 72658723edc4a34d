package gunshu_test

import (
	"testing"

	"github.com/gunshu/caddy-gunshu/gunshu"
	"github.com/gunshu/caddy-gunshu/internal/registrytest"
)

// TestMemoryRegistry runs the registry contract; a registry without caps
// is the zero value, which must be ready to use.
func TestMemoryRegistry(t *testing.T) {
	registrytest.Run(t, func(_ *testing.T, maxServices, maxPerIP int) gunshu.Registry {
		if maxServices == 0 && maxPerIP == 0 {
			return &gunshu.MemoryRegistry{}
		}
		return gunshu.NewMemoryRegistry(maxServices, maxPerIP)
	})
}
