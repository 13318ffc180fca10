package backend

import (
	"context"
	"encoding/json"
	"sort"
	"strings"
	"sync"

	"github.com/hashicorp/vault/sdk/logical"
)

// The integration index: what the mount-wide questions of a write need to
// know about every integration (which entry manages a Snyk integration ID,
// which owns a token, which share an owner's token), in memory, so that a
// create does not read every stored integration. Without it, creating the
// N-th integration cost N storage reads, and creating 10,000 took hours.
//
// It holds identifiers and token fingerprints only, never a secret. It is
// built from storage on first use, then kept current by cachingStorage,
// which every write and delete of an integration goes through; a write on
// another node (Invalidate) makes it rebuild on its next use.

type integrationIndex struct {
	mu    sync.Mutex
	built bool
	rows  map[string]indexRow // by "name/scm"
}

type indexRow struct {
	integrationID string
	tokenOwner    string
	tokenFP       string // fingerprint of the current token; owners only
}

func newIntegrationIndex() *integrationIndex { return &integrationIndex{rows: map[string]indexRow{}} }

func rowOf(e *integrationEntry) indexRow {
	r := indexRow{integrationID: strings.ToLower(e.IntegrationID), tokenOwner: e.TokenOwner}
	if e.TokenOwner == "" && e.CurrentToken != "" {
		r.tokenFP = fingerprint(e.CurrentToken)
	}
	return r
}

// ensureLocked builds the index from storage if needed. Held under mu, so
// that a write's update waits for the scan and is applied after it.
func (x *integrationIndex) ensureLocked(ctx context.Context, s logical.Storage) error {
	if x.built {
		return nil
	}
	entries, err := listReadableIntegrations(ctx, s)
	if err != nil {
		return err
	}
	x.rows = make(map[string]indexRow, len(entries))
	for _, e := range entries {
		x.rows[queueKey(e.Name, e.SCM)] = rowOf(e)
	}
	x.built = true
	return nil
}

// stored updates the row of the integration stored under storageKey.
func (x *integrationIndex) stored(storageKey string, value []byte) {
	key := strings.TrimPrefix(storageKey, integrationStoragePrefix)
	var e integrationEntry
	x.mu.Lock()
	defer x.mu.Unlock()
	if !x.built {
		return
	}
	if json.Unmarshal(value, &e) != nil {
		// Unreadable entries are left out, as a scan leaves them out.
		delete(x.rows, key)
		return
	}
	x.rows[key] = rowOf(&e)
}

// deleted forgets the integration stored under storageKey.
func (x *integrationIndex) deleted(storageKey string) {
	x.mu.Lock()
	defer x.mu.Unlock()
	delete(x.rows, strings.TrimPrefix(storageKey, integrationStoragePrefix))
}

// invalidate makes the next use rebuild the index (another node wrote).
func (x *integrationIndex) invalidate() {
	x.mu.Lock()
	defer x.mu.Unlock()
	x.built = false
}

// find returns the sorted keys of the rows match accepts.
func (x *integrationIndex) find(ctx context.Context, s logical.Storage, match func(key string, r indexRow) bool) ([]string, error) {
	x.mu.Lock()
	defer x.mu.Unlock()
	if err := x.ensureLocked(ctx, s); err != nil {
		return nil, err
	}
	var out []string
	for key, r := range x.rows {
		if match(key, r) {
			out = append(out, key)
		}
	}
	sort.Strings(out)
	return out, nil
}

// first returns the first key, in sorted order, of the rows match accepts,
// "" when none does.
func (x *integrationIndex) first(ctx context.Context, s logical.Storage, match func(key string, r indexRow) bool) (string, error) {
	keys, err := x.find(ctx, s, match)
	if err != nil || len(keys) == 0 {
		return "", err
	}
	return keys[0], nil
}

// indexOf returns the index behind s. A storage without one (a unit test
// reading storage directly) gets a fresh index, built by one scan.
func indexOf(s logical.Storage) *integrationIndex {
	if cs, ok := s.(cachingStorage); ok {
		return cs.index
	}
	return newIntegrationIndex()
}
