// Package e2e holds tests that run whole Caddy processes (the program of
// examples/caddy) as an operator would: limits set with prlimit, signals,
// restarts. They are tests only; this file gives the package a name.
package e2e
