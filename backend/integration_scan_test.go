package backend

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/hashicorp/vault/sdk/logical"
)

// A scan reads several entries at once; what it returns must still be all of
// them, in storage order, and a failure or a cancellation anywhere must fail
// the scan rather than pass off part of the mount as all of it.
func TestIntegrationScan(t *testing.T) {
	const n = 5 * scanReaders
	fill := func(env *testEnv) {
		for i := 0; i < n; i++ {
			e := &integrationEntry{Name: fmt.Sprintf("org-%03d", i), SCM: "github", OrgID: testOrgID, IntegrationID: testOrgID, CurrentToken: testOrgID}
			if err := putIntegration(context.Background(), env.storage, e); err != nil {
				t.Fatal(err)
			}
		}
	}
	t.Run("all, in order", func(t *testing.T) {
		env := newTestEnv(t)
		fill(env)
		got, err := listIntegrations(context.Background(), env.view)
		if err != nil || len(got) != n {
			t.Fatalf("got %d entries, err %v; want %d", len(got), err, n)
		}
		for i, e := range got {
			if want := fmt.Sprintf("org-%03d", i); e.Name != want {
				t.Fatalf("entry %d is %s, want %s", i, e.Name, want)
			}
		}
	})
	for _, fault := range []struct{ op, prefix string }{
		{"get", integrationStoragePrefix},
		{"list", integrationStoragePrefix + "org-0"}, // one org's SCMs
	} {
		t.Run("a failed "+fault.op+" fails the scan", func(t *testing.T) {
			env := newTestEnv(t)
			fill(env)
			env.view.fail(fault.op, fault.prefix, n/2, 1)
			if got, err := listReadableIntegrations(context.Background(), env.view); err == nil {
				t.Fatalf("a scan with a failed %s returned %d entries and no error", fault.op, len(got))
			}
		})
	}
	t.Run("a scan cancelled halfway is an error", func(t *testing.T) {
		env := newTestEnv(t)
		fill(env)
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		s := &cancelAfterGets{Storage: env.view, cancel: cancel, after: n / 2}
		if got, err := listIntegrations(ctx, s); err == nil {
			t.Fatalf("a scan cancelled after %d reads returned %d entries and no error", n/2, len(got))
		}
	})
}

// cancelAfterGets cancels the scan's context after some reads, and answers
// every call whatever the context says: the scan itself must notice.
type cancelAfterGets struct {
	logical.Storage
	cancel func()
	after  int
	gets   atomic.Int64
}

func (s *cancelAfterGets) Get(_ context.Context, key string) (*logical.StorageEntry, error) {
	if s.gets.Add(1) == int64(s.after) {
		s.cancel()
	}
	return s.Storage.Get(context.Background(), key)
}

func (s *cancelAfterGets) List(_ context.Context, prefix string) ([]string, error) {
	return s.Storage.List(context.Background(), prefix)
}

// An integration created while the rotation engine loads (its scan under way)
// is queued: the load's reset of the queue comes before the scan, so it
// cannot wipe what a write queued meanwhile.
func TestCreateDuringLoadIsQueued(t *testing.T) {
	env, _ := rotationEnv(t, nil)
	env.b.Cleanup(context.Background())
	env.b = env.newBackend()
	env.snyk.AddIntegration(testOtherOrgID, "github", false)
	scanned := integrationStoragePrefix + testOrgID + "/github"
	created := make(chan error, 1)
	var once sync.Once
	env.view.mu.Lock()
	env.view.afterGet = func(key string) {
		if key != scanned {
			return
		}
		once.Do(func() {
			// The scan has read its entry; a write comes in before the scan
			// ends.
			env.view.mu.Lock()
			env.view.afterGet = nil
			env.view.mu.Unlock()
			resp, err := env.request(logical.CreateOperation, "integrations/"+testOtherOrgID+"/github", env.integrationData("github"))
			if err == nil && resp != nil && resp.IsError() {
				err = resp.Error()
			}
			created <- err
		})
	}
	env.view.mu.Unlock()
	env.initialize()
	if err := <-created; err != nil {
		t.Fatalf("create during the load: %v", err)
	}
	for _, name := range []string{testOrgID, testOtherOrgID} {
		if !env.b.rotation.queued(queueKey(name, "github")) {
			t.Errorf("%s/github is not queued after the load", name)
		}
	}
}
