package backend

import (
	"container/list"
	"context"
	"strings"
	"sync"

	"github.com/hashicorp/vault/sdk/logical"
)

// The integration cache: decoded integration entries, so that a broker read
// makes no storage round trip (each is a gRPC call from the plugin back to
// Vault, more than the rest of the read together).
//
// Coherence: every request's storage and the rotation loop's reach Vault
// through cachingStorage, which drops the key before and after each write or
// delete of an integration; Vault's Invalidate drops it on nodes that did
// not write (performance standbys). A read that raced a write never caches
// what it read: it adds its entry only if no drop happened since it looked
// (the generation). Bounded: the least recently used entry goes first, and a
// cold entry costs one storage get, as without the cache.

// integrationCacheSize bounds the cache: a decoded entry is 1–2 KB, so a
// full cache stays within a few MB whatever the number of integrations.
const integrationCacheSize = 4096

type integrationCache struct {
	mu      sync.Mutex
	size    int
	gen     uint64
	entries map[string]*list.Element
	order   *list.List // front: most recently used

	hits, misses uint64
}

type cachedIntegration struct {
	key string
	e   *integrationEntry
}

func newIntegrationCache(size int) *integrationCache {
	return &integrationCache{size: size, entries: map[string]*list.Element{}, order: list.New()}
}

// lookup returns a copy of the cached entry, or, on a miss, the generation
// to hand to add.
func (c *integrationCache) lookup(key string) (*integrationEntry, uint64, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if el, ok := c.entries[key]; ok {
		c.order.MoveToFront(el)
		c.hits++
		return el.Value.(*cachedIntegration).e.clone(), c.gen, true
	}
	c.misses++
	return nil, c.gen, false
}

// add caches a copy of e, read from storage at generation gen, unless a
// drop happened since.
func (c *integrationCache) add(key string, e *integrationEntry, gen uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if gen != c.gen {
		return
	}
	if el, ok := c.entries[key]; ok {
		el.Value.(*cachedIntegration).e = e.clone()
		c.order.MoveToFront(el)
		return
	}
	c.entries[key] = c.order.PushFront(&cachedIntegration{key: key, e: e.clone()})
	for c.order.Len() > c.size {
		oldest := c.order.Back()
		c.order.Remove(oldest)
		delete(c.entries, oldest.Value.(*cachedIntegration).key)
	}
}

// drop forgets key and moves the generation on, so that no read that
// started before the change caches its stale copy.
func (c *integrationCache) drop(key string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.gen++
	if el, ok := c.entries[key]; ok {
		c.order.Remove(el)
		delete(c.entries, key)
	}
}

// purge forgets everything (the mount stops or storage is replaced).
func (c *integrationCache) purge() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.gen++
	c.entries = map[string]*list.Element{}
	c.order.Init()
}

// stats reports hits and misses since the mount started.
func (c *integrationCache) stats() (hits, misses uint64, size int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.hits, c.misses, c.order.Len()
}

// cachingStorage is the storage every request and the rotation loop use: a
// write or delete of an integration drops its cache entry, before (no new
// read caches the old value while the write is in flight) and after (a read
// that looked during the write is not cached by the generation guard, but
// an entry added in between is removed).
type cachingStorage struct {
	logical.Storage
	cache *integrationCache
	// index is kept current the same way (integration_index.go).
	index *integrationIndex
}

func (s cachingStorage) Put(ctx context.Context, e *logical.StorageEntry) error {
	if !strings.HasPrefix(e.Key, integrationStoragePrefix) {
		return s.Storage.Put(ctx, e)
	}
	s.cache.drop(e.Key)
	defer s.cache.drop(e.Key)
	if err := s.Storage.Put(ctx, e); err != nil {
		// Maybe written after all: the index rebuilds rather than guess.
		s.index.invalidate()
		return err
	}
	s.index.stored(e.Key, e.Value)
	return nil
}

func (s cachingStorage) Delete(ctx context.Context, key string) error {
	if !strings.HasPrefix(key, integrationStoragePrefix) {
		return s.Storage.Delete(ctx, key)
	}
	s.cache.drop(key)
	defer s.cache.drop(key)
	if err := s.Storage.Delete(ctx, key); err != nil {
		s.index.invalidate()
		return err
	}
	s.index.deleted(key)
	return nil
}

// withCache wraps s, once.
func (b *backend) withCache(s logical.Storage) logical.Storage {
	if s == nil {
		return nil
	}
	if _, ok := s.(cachingStorage); ok {
		return s
	}
	return cachingStorage{Storage: s, cache: b.integrations, index: b.index}
}

// HandleRequest gives every request the caching storage, so that no write
// path can bypass the cache's invalidation.
func (b *backend) HandleRequest(ctx context.Context, req *logical.Request) (*logical.Response, error) {
	req.Storage = b.withCache(req.Storage)
	return b.Backend.HandleRequest(ctx, req)
}

// cachedIntegration reads an integration through the cache.
func (b *backend) cachedIntegration(ctx context.Context, s logical.Storage, name, scmKind string) (*integrationEntry, error) {
	key := integrationStorageKey(name, scmKind)
	e, gen, ok := b.integrations.lookup(key)
	if ok {
		return e, nil
	}
	e, err := getIntegration(ctx, s, name, scmKind)
	if err != nil || e == nil {
		return e, err
	}
	b.integrations.add(key, e, gen)
	return e, nil
}

// clone copies e deeply enough that the copy's slices can be changed
// without touching e's.
func (e *integrationEntry) clone() *integrationEntry {
	c := *e
	c.SCMScopes = append([]string(nil), e.SCMScopes...)
	c.SCMProblems = append([]string(nil), e.SCMProblems...)
	return &c
}
