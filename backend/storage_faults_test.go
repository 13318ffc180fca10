package backend

import (
	"context"
	"strings"
	"sync"

	"github.com/hashicorp/vault/sdk/logical"
)

// faultyStorage is the engine's storage in tests: in-memory storage that
// fails chosen operations on chosen keys on demand, as a Raft cluster losing
// quorum or a slow disk would.
type faultyStorage struct {
	*logical.InmemStorage

	mu    sync.Mutex
	rules []*storageFault
	// afterGet, when set, runs after a Get read its entry and before it
	// returns: a test can hold a reader there while a writer goes ahead.
	afterGet func(key string)
	// gets counts the Gets of each key.
	gets map[string]int
}

// storageFault fails op ("get", "put", "delete", "list") on keys with
// prefix, times times (0 = until cleared), after skip matching calls.
type storageFault struct {
	op, prefix  string
	skip, times int
}

func (f *faultyStorage) fail(op, prefix string, skip, times int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.rules = append(f.rules, &storageFault{op: op, prefix: prefix, skip: skip, times: times})
}

func (f *faultyStorage) clear() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.rules = nil
}

func (f *faultyStorage) check(op, key string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	for i, r := range f.rules {
		if r.op != op || !strings.HasPrefix(key, r.prefix) {
			continue
		}
		if r.skip > 0 {
			r.skip--
			continue
		}
		if r.times > 0 {
			r.times--
			if r.times == 0 {
				f.rules = append(f.rules[:i], f.rules[i+1:]...)
			}
		}
		return errStorageDown
	}
	return nil
}

func (f *faultyStorage) Get(ctx context.Context, key string) (*logical.StorageEntry, error) {
	if err := f.check("get", key); err != nil {
		return nil, err
	}
	e, err := f.InmemStorage.Get(ctx, key)
	f.mu.Lock()
	hook := f.afterGet
	if f.gets == nil {
		f.gets = map[string]int{}
	}
	f.gets[key]++
	f.mu.Unlock()
	if hook != nil {
		hook(key)
	}
	return e, err
}

func (f *faultyStorage) Put(ctx context.Context, e *logical.StorageEntry) error {
	if err := f.check("put", e.Key); err != nil {
		return err
	}
	return f.InmemStorage.Put(ctx, e)
}

func (f *faultyStorage) Delete(ctx context.Context, key string) error {
	if err := f.check("delete", key); err != nil {
		return err
	}
	return f.InmemStorage.Delete(ctx, key)
}

func (f *faultyStorage) List(ctx context.Context, prefix string) ([]string, error) {
	if err := f.check("list", prefix); err != nil {
		return nil, err
	}
	return f.InmemStorage.List(ctx, prefix)
}

// getsOf returns how many Gets key has seen.
func (f *faultyStorage) getsOf(key string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.gets[key]
}
