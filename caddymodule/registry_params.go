package caddymodule

// RegistryParams is what a manager asks of its registry.
//
// MERGE NOTE: this file stands in for the declaration in the caddy
// branch's caddymodule/registry.go (with RegistryModule and the memory
// registry); delete it when merging that branch.
type RegistryParams struct {
	// Manager is the name of the manager in the gunshu app.
	Manager string
	// MaxServices caps the list (the manager's max_services).
	MaxServices int
}
