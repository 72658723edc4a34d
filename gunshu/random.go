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
	// secure is set for the default source: Sample then seeds a ChaCha8
	// of its own from crypto/rand rather than take the lock for each of
	// its draws.
	secure bool
}

func newRandom(src rand.Source) *random {
	if src == nil {
		return &random{r: rand.New(cryptoSource{}), secure: true}
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

// Sample moves a uniform random sample of at most k entries of list, in
// uniform random order, to its front and returns it: what shuffling the
// whole list and keeping k gives, with k draws instead of len(list) (a
// partial Fisher-Yates). With the default source the draws come from a
// ChaCha8 (a CSPRNG) seeded from crypto/rand for this call: one system
// call per list, where a draw from cryptoSource is one each, and no lock
// shared by every list being answered.
func (x *random) Sample(list []string, k int) []string {
	if x.secure {
		var seed [32]byte
		_, _ = crand.Read(seed[:])
		return sample(rand.New(rand.NewChaCha8(seed)), list, k)
	}
	x.mu.Lock()
	defer x.mu.Unlock()
	return sample(x.r, list, k)
}

func sample(r *rand.Rand, list []string, k int) []string {
	k = min(k, len(list))
	for i := range k {
		j := i + r.IntN(len(list)-i)
		list[i], list[j] = list[j], list[i]
	}
	return list[:k]
}
