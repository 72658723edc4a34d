package gunshu

import (
	"context"
	"errors"
	"io/fs"
	"strings"
	"sync"
	"testing"
)

// mapStorage is a key-value storage with certmagic's contract: a missing
// key is fs.ErrNotExist.
type mapStorage struct {
	mu sync.Mutex
	m  map[string][]byte
}

func (s *mapStorage) Load(_ context.Context, key string) ([]byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	v, ok := s.m[key]
	if !ok {
		return nil, fs.ErrNotExist
	}
	return v, nil
}

func (s *mapStorage) Store(_ context.Context, key string, value []byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.m == nil {
		s.m = map[string][]byte{}
	}
	s.m[key] = value
	return nil
}

// Each store starts empty, keeps what was saved, and hands a guard set
// from one Guards to the next.
func TestGuardStores(t *testing.T) {
	ctx := context.Background()
	storage := &mapStorage{}
	key := GuardKey("manager.test:7000", "203.0.113.5:7001")
	stores := map[string]GuardStore{
		"memory":  &MemoryGuardStore{},
		"storage": StorageGuardStore(storage, key),
	}
	listed := addrs(30)
	for name, store := range stores {
		if _, err := store.Load(ctx); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("%s: empty store loads %v, want fs.ErrNotExist", name, err)
		}
		first := &Guards{Count: 2, Store: store}
		if err := first.Load(ctx); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		first.choose(listed, listed, seeded(1))
		if err := first.save(ctx); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		second := &Guards{Count: 2, Store: store}
		if err := second.Load(ctx); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		second.choose(listed, listed, seeded(2))
		if got, want := strings.Join(second.Current(), " "), strings.Join(first.Current(), " "); got != want {
			t.Errorf("%s: guards %s after reload, want %s", name, got, want)
		}
	}
	if _, ok := storage.m[key]; !ok {
		t.Errorf("nothing stored under %s", key)
	}
	manager := strings.Join([]string{"manager.test", "7000"}, ":")
	if GuardKey(manager, "") == GuardKey(manager, "203.0.113.5:7001") || GuardKey(manager, "203.0.113.5:7001") != key {
		t.Error("GuardKey must tell initiators apart by manager and cover, and only by them")
	}
}
