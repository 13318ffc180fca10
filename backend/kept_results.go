package backend

import (
	"context"
	"sync"

	"github.com/hashicorp/vault/sdk/logical"
)

// keptResults holds entries whose upstream result (a token Snyk issued, a
// switch Snyk made, a client secret it created) storage refused, by key,
// until they are stored. A kept entry is newer than the stored copy: reads
// serve it, and nothing may act on the stored copy before it is stored.
// Integrations and Universal Broker deployments each have one.
type keptResults[T any] struct {
	mu      sync.Mutex
	entries map[string]*T
	clone   func(*T) *T
	put     func(context.Context, logical.Storage, *T) error
}

func newKeptResults[T any](clone func(*T) *T, put func(context.Context, logical.Storage, *T) error) *keptResults[T] {
	return &keptResults[T]{entries: map[string]*T{}, clone: clone, put: put}
}

// keep remembers a copy of e under key.
func (k *keptResults[T]) keep(key string, e *T) {
	kept := k.clone(e)
	k.mu.Lock()
	defer k.mu.Unlock()
	k.entries[key] = kept
}

// get returns a copy of the entry kept under key, or nil.
func (k *keptResults[T]) get(key string) *T {
	k.mu.Lock()
	defer k.mu.Unlock()
	if e := k.entries[key]; e != nil {
		return k.clone(e)
	}
	return nil
}

// store writes the entry kept under key, if any, and forgets it unless a
// newer one was kept meanwhile. stored says whether there was one to write.
func (k *keptResults[T]) store(ctx context.Context, s logical.Storage, key string) (stored bool, err error) {
	k.mu.Lock()
	e := k.entries[key]
	k.mu.Unlock()
	if e == nil {
		return false, nil
	}
	if err := k.put(ctx, s, e); err != nil {
		return false, err
	}
	k.mu.Lock()
	if k.entries[key] == e {
		delete(k.entries, key)
	}
	k.mu.Unlock()
	return true, nil
}

// drop forgets key's entry: its integration or deployment was deleted.
func (k *keptResults[T]) drop(key string) {
	k.mu.Lock()
	defer k.mu.Unlock()
	delete(k.entries, key)
}
