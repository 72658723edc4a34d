package gunshu

import (
	crand "crypto/rand"
	"encoding/binary"
	"math/rand/v2"
	"sync"
)

// cryptoSource is a math/rand/v2 Source backed by crypto/rand: route
// choices must not be predictable by anyone who sees a few of them.
type cryptoSource struct{}

func (cryptoSource) Uint64() uint64 {
	var b [8]byte
	_, _ = crand.Read(b[:]) // crypto/rand.Read never fails on supported platforms
	return binary.LittleEndian.Uint64(b[:])
}

// random serialises a Source so a seeded, non-concurrent one can be
// injected in tests.
type random struct {
	mu sync.Mutex
	r  *rand.Rand
}

func newRandom(src rand.Source) *random {
	if src == nil {
		src = cryptoSource{}
	}
	return &random{r: rand.New(src)}
}

// IntN returns a uniform integer in [0, n).
func (x *random) IntN(n int) int {
	x.mu.Lock()
	defer x.mu.Unlock()
	return x.r.IntN(n)
}

// Float64 returns a uniform number in [0, 1).
func (x *random) Float64() float64 {
	x.mu.Lock()
	defer x.mu.Unlock()
	return x.r.Float64()
}

// Shuffle permutes list in place uniformly.
func (x *random) Shuffle(list []string) {
	x.mu.Lock()
	defer x.mu.Unlock()
	x.r.Shuffle(len(list), func(i, j int) { list[i], list[j] = list[j], list[i] })
}
