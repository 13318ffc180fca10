package backend

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/vault/sdk/logical"
)

// cachedBrokerEnv is an environment with one integration, its broker read
// done once (the cache is warm).
func cachedBrokerEnv(t *testing.T) (*testEnv, string) {
	t.Helper()
	env := newTestEnv(t)
	env.configure(nil)
	env.snyk.AddIntegration(testOrgID, "github", false)
	env.mustOK(logical.CreateOperation, "integrations/"+testOrgID+"/github", env.integrationData("github"))
	env.mustOK(logical.ReadOperation, "broker/"+testOrgID+"/github", nil)
	return env, integrationStorageKey(testOrgID, "github")
}

// TestBrokerReadsHitTheCache: once warm, broker reads make no storage round
// trip (and, as always, no upstream call).
func TestBrokerReadsHitTheCache(t *testing.T) {
	env, key := cachedBrokerEnv(t)
	gets, calls := env.view.getsOf(key), env.snyk.Faults().TotalCalls()
	for i := 0; i < 50; i++ {
		env.mustOK(logical.ReadOperation, "broker/"+testOrgID+"/github", nil)
	}
	if n := env.view.getsOf(key) - gets; n != 0 {
		t.Fatalf("50 warm broker reads made %d storage gets, want 0", n)
	}
	if n := env.snyk.Faults().TotalCalls() - calls; n != 0 {
		t.Fatalf("broker reads called Snyk %d times", n)
	}
}

// TestCacheDroppedOnEveryWrite: a write through any path (here an update
// and a manual rotation) is what the next read serves.
func TestCacheDroppedOnEveryWrite(t *testing.T) {
	env, _ := cachedBrokerEnv(t)
	path := "integrations/" + testOrgID + "/github"
	env.mustOK(logical.UpdateOperation, path, map[string]interface{}{"ttl": "7m"})
	if got := env.mustOK(logical.ReadOperation, "broker/"+testOrgID+"/github", nil).Secret.TTL.String(); got != "7m0s" {
		t.Fatalf("after an update the read served ttl %s", got)
	}
	before := env.mustOK(logical.ReadOperation, "broker/"+testOrgID+"/github", nil).Data["broker_token"]
	env.mustOK(logical.UpdateOperation, "broker/"+testOrgID+"/github/rotate", nil)
	after := env.mustOK(logical.ReadOperation, "broker/"+testOrgID+"/github", nil).Data["broker_token"]
	if after == before {
		t.Fatal("after a rotation the read served the old token")
	}
	env.mustOK(logical.DeleteOperation, path, nil)
	if resp, err := env.request(logical.ReadOperation, "broker/"+testOrgID+"/github", nil); err != nil || resp != nil {
		t.Fatalf("after a delete the read returned %v, %v", resp, err)
	}
}

// TestCacheDroppedOnInvalidate: a write on another node reaches this one
// through Invalidate.
func TestCacheDroppedOnInvalidate(t *testing.T) {
	env, key := cachedBrokerEnv(t)
	ctx := context.Background()
	stored, _ := getIntegration(ctx, env.storage, testOrgID, "github")
	stored.BrokerClientURL = "http://elsewhere:8000"
	if err := putIntegration(ctx, env.storage, stored); err != nil {
		t.Fatal(err)
	}
	read := func() string {
		return env.mustOK(logical.ReadOperation, "broker/"+testOrgID+"/github", nil).Data["env"].(map[string]string)["BROKER_CLIENT_URL"]
	}
	if got := read(); got == "http://elsewhere:8000" {
		t.Fatal("setup: the entry is not cached")
	}
	env.b.invalidate(ctx, key)
	if got := read(); got != "http://elsewhere:8000" {
		t.Fatalf("after Invalidate the cached entry is still served (%q)", got)
	}
}

// TestCacheGenerationGuard: a read that loaded the entry before a write
// finished must not cache what it read over the newer entry.
func TestCacheGenerationGuard(t *testing.T) {
	env, key := cachedBrokerEnv(t)
	ctx := context.Background()
	env.b.integrations.purge()
	held, release := make(chan struct{}), make(chan struct{})
	var once sync.Once
	env.view.mu.Lock()
	env.view.afterGet = func(k string) {
		if k == key {
			once.Do(func() { close(held); <-release })
		}
	}
	env.view.mu.Unlock()
	done := make(chan *integrationEntry)
	go func() {
		e, _ := env.b.currentIntegration(ctx, env.b.withCache(env.view), testOrgID, "github")
		done <- e
	}()
	<-held
	env.view.mu.Lock()
	env.view.afterGet = nil
	env.view.mu.Unlock()
	env.mustOK(logical.UpdateOperation, "integrations/"+testOrgID+"/github", map[string]interface{}{"ttl": "9m"})
	close(release)
	if old := <-done; old.TTL == 9*time.Minute {
		t.Fatal("setup: the racing reader saw the new entry")
	}
	e, _ := env.b.currentIntegration(ctx, env.b.withCache(env.view), testOrgID, "github")
	if e.TTL != 9*time.Minute {
		t.Fatalf("a racing reader cached the old entry over the new one (ttl %s)", e.TTL)
	}
}

// TestCacheBounded: the least recently used entry goes first.
func TestCacheBounded(t *testing.T) {
	c := newIntegrationCache(2)
	for i := 0; i < 3; i++ {
		key := fmt.Sprintf("integrations/org-%d/github", i)
		_, gen, _ := c.lookup(key)
		c.add(key, &integrationEntry{Name: fmt.Sprint(i)}, gen)
		if i == 1 {
			c.lookup("integrations/org-0/github") // org-0 is used again: org-1 is the oldest
		}
	}
	if _, _, ok := c.lookup("integrations/org-1/github"); ok {
		t.Fatal("the least recently used entry was kept")
	}
	for _, k := range []string{"integrations/org-0/github", "integrations/org-2/github"} {
		if _, _, ok := c.lookup(k); !ok {
			t.Fatalf("%s was evicted", k)
		}
	}
	if _, _, size := c.stats(); size != 2 {
		t.Fatalf("size %d", size)
	}
}

// TestCachedCopiesAreIndependent: a caller changing its copy (appending to
// a slice) never changes the cached entry.
func TestCachedCopiesAreIndependent(t *testing.T) {
	c := newIntegrationCache(4)
	key := "integrations/a/github"
	_, gen, _ := c.lookup(key)
	c.add(key, &integrationEntry{scmHealth: scmHealth{SCMProblems: make([]string, 1, 4)}}, gen)
	got, _, _ := c.lookup(key)
	got.SCMProblems = append(got.SCMProblems, "changed")
	got.SCMProblems[0] = "changed"
	again, _, _ := c.lookup(key)
	if len(again.SCMProblems) != 1 || again.SCMProblems[0] != "" {
		t.Fatalf("the cached entry changed: %v", again.SCMProblems)
	}
}

// TestCreateDoesNotReadEveryIntegration: a create's mount-wide checks (is
// this Snyk integration managed already, does another own this token) come
// from the index, not from reading every stored integration.
func TestCreateDoesNotReadEveryIntegration(t *testing.T) {
	env := newTestEnv(t)
	env.configure(nil)
	for i := 0; i < 40; i++ {
		org := fmt.Sprintf("%08d-1b4e-4b8e-9d11-3c0f1b1d2a55", i)
		env.snyk.AddOrg(org, testGroupID, fmt.Sprint("org ", i))
		env.snyk.AddIntegration(org, "github", false)
		env.mustOK(logical.CreateOperation, "integrations/"+org+"/github", env.integrationData("github"))
	}
	others := func() int {
		n := 0
		for i := 0; i < 40; i++ {
			n += env.view.getsOf(integrationStorageKey(fmt.Sprintf("%08d-1b4e-4b8e-9d11-3c0f1b1d2a55", i), "github"))
		}
		return n
	}
	before := others()
	env.snyk.AddIntegration(testOrgID, "github", false)
	env.mustOK(logical.CreateOperation, "integrations/"+testOrgID+"/github", env.integrationData("github"))
	if n := others() - before; n != 0 {
		t.Fatalf("creating one integration read %d other integrations", n)
	}
	// A second name for the same Snyk integration is still refused, and a
	// write on another node (Invalidate) rebuilds the index.
	env.b.invalidate(context.Background(), integrationStorageKey(testOrgID, "github"))
	id := env.snyk.IntegrationIDs(testOrgID)["github"]
	env.mustFail400(logical.CreateOperation, "integrations/payments/github", map[string]interface{}{
		"org_id": testOrgID, "integration_id": id, "scm_token": ghGood, "scm_api_url": env.githubURL,
	}, testOrgID+"/github")
}
