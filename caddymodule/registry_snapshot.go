package caddymodule

import (
	"context"
	"encoding/json"
	"errors"
	"io/fs"
	"net/url"
	"slices"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/gunshu/caddy-gunshu/gunshu"
)

// snapshotInterval is how often a memory registry's list is compared
// with the saved one and saved when it changed.
var snapshotInterval = 2 * time.Second

// loadSnapshots reads the snapshot when a registry is created. Tests that
// load many configs in one process turn it off, so that no test lists
// what an earlier one saved.
var loadSnapshots = true

// registrySnapshot keeps a memory registry's addresses in Caddy's
// storage, so that a manager that restarts (a crash, a host reboot, an
// upgrade) does not answer list with an empty network until every relay
// has registered again, up to a register interval later.
//
// What is safe to list after a restart: the snapshot holds only public
// addresses, and the manager lists a saved address again only once it
// passed what a fresh reg passes — the current policy and caps, and a
// test it answered (gunshu.Manager.Restore, at Start). Until then the
// address counts as saved, so a config that fails to load, or a stop
// before the restore ran, does not erase the snapshot.
type registrySnapshot struct {
	registry *gunshu.MemoryRegistry
	storage  gunshu.KeyValueStorage // nil: no snapshot
	key      string
	log      *zap.Logger

	mu      sync.Mutex
	pending []string // saved addresses not yet restored
	last    []string // what the storage holds, sorted
	failing bool     // the last save failed

	stop chan struct{}
	done chan struct{}
}

// snapshotFile is the JSON kept in the storage.
type snapshotFile struct {
	Services []string  `json:"services"`
	Saved    time.Time `json:"saved"`
}

func newRegistrySnapshot(reg *gunshu.MemoryRegistry, storage gunshu.KeyValueStorage, manager string, log *zap.Logger) *registrySnapshot {
	s := &registrySnapshot{
		registry: reg,
		storage:  storage,
		key:      "gunshu/registries/" + url.PathEscape(manager) + ".json",
		log:      log.With(zap.String("manager", manager)),
		stop:     make(chan struct{}),
		done:     make(chan struct{}),
	}
	if storage == nil {
		close(s.done)
		return s
	}
	if loadSnapshots {
		s.load()
	}
	go s.keep()
	return s
}

// load reads the snapshot; what it holds is pending until restored.
func (s *registrySnapshot) load() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	data, err := s.storage.Load(ctx, s.key)
	if errors.Is(err, fs.ErrNotExist) {
		return
	}
	var f snapshotFile
	if err == nil {
		err = json.Unmarshal(data, &f)
	}
	if err != nil {
		s.log.Warn("reading the registry snapshot: the list starts empty", zap.String("key", s.key), zap.Error(err))
		return
	}
	slices.Sort(f.Services)
	s.pending = slices.Compact(f.Services)
	s.last = slices.Clone(s.pending)
}

// saved returns the snapshot's addresses not yet restored.
func (s *registrySnapshot) saved() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.pending)
}

// restored drops the pending addresses: from now on the snapshot holds
// what the registry lists.
func (s *registrySnapshot) restored() {
	s.mu.Lock()
	s.pending = nil
	s.mu.Unlock()
}

func (s *registrySnapshot) keep() {
	defer close(s.done)
	t := time.NewTicker(snapshotInterval)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			s.save()
			return
		case <-t.C:
			s.save()
		}
	}
}

// save writes the registry's addresses (and those pending) when they
// differ from what the storage holds.
func (s *registrySnapshot) save() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	addrs, _ := s.registry.Addrs(ctx)
	s.mu.Lock()
	addrs = append(addrs, s.pending...)
	s.mu.Unlock()
	slices.Sort(addrs)
	addrs = slices.Compact(addrs)
	if slices.Equal(addrs, s.last) {
		return
	}
	data, err := json.Marshal(snapshotFile{Services: addrs, Saved: time.Now().UTC()})
	if err == nil {
		err = s.storage.Store(ctx, s.key, data)
	}
	switch {
	case err != nil && !s.failing:
		s.log.Warn("saving the registry snapshot; a restart would start from an older one", zap.String("key", s.key), zap.Error(err))
	case err == nil && s.failing:
		s.log.Info("registry snapshot saved again", zap.String("key", s.key))
	}
	s.failing = err != nil
	if err == nil {
		s.last = addrs
	}
}

// Destruct saves a last time and stops, when no config uses the
// registry any more.
func (s *registrySnapshot) Destruct() error {
	select {
	case <-s.stop:
	default:
		close(s.stop)
	}
	<-s.done
	return nil
}
