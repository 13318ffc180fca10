package backend

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/vault/sdk/logical"

	"github.com/snyk-vault/vault-plugin-secrets-snyk/backend/fault"
	"github.com/snyk-vault/vault-plugin-secrets-snyk/backend/snyk/snyktest"
)

// TestPathNamesChecked: names Vault's storage would refuse, or that are too
// long, get a 400 on every path and operation, never a 500.
func TestPathNamesChecked(t *testing.T) {
	env := newTestEnv(t)
	env.configure(nil)
	long := strings.Repeat("a", maxNameLength+1)
	for _, name := range []string{"a..b", "..", long, "Payments", "-x"} {
		for _, c := range []struct {
			op   logical.Operation
			path string
			data map[string]interface{}
		}{
			{logical.CreateOperation, "integrations/" + name + "/github", mergeData(env.integrationData("github"), map[string]interface{}{"org_id": testOrgID})},
			{logical.UpdateOperation, "integrations/" + name + "/github", mergeData(env.integrationData("github"), map[string]interface{}{"org_id": testOrgID})},
			{logical.ReadOperation, "integrations/" + name + "/github", nil},
			{logical.DeleteOperation, "integrations/" + name + "/github", nil},
			{logical.ListOperation, "integrations/" + name + "/", nil},
			{logical.ReadOperation, "broker/" + name + "/github", nil},
			{logical.UpdateOperation, "broker/" + name + "/github/rotate", nil},
		} {
			shown := name
			if len(shown) > 20 {
				shown = shown[:20] + "…"
			}
			resp, err := env.request(c.op, c.path, c.data)
			if err != nil || resp == nil || !resp.IsError() {
				t.Errorf("%s %s: want a 400, got %v %v", c.op, shown, resp, err)
			}
		}
	}
	if keys := env.storedKeys(); len(keys) != 1 {
		t.Fatalf("refused writes stored something: %v", keys)
	}
	// At the limit is fine.
	ok := strings.Repeat("a", maxNameLength)
	env.snyk.AddIntegration(testOrgID, "github", false)
	env.mustOK(logical.CreateOperation, "integrations/"+ok+"/github", mergeData(env.integrationData("github"), map[string]interface{}{"org_id": testOrgID}))
}

// TestUnknownFieldsAreReported: a misspelt field is reported back, on every
// write, instead of silently ignored.
func TestUnknownFieldsAreReported(t *testing.T) {
	env := newTestEnv(t)
	env.configure(nil)
	warned := func(resp *logical.Response, field string) {
		t.Helper()
		if resp == nil || !strings.Contains(strings.Join(resp.Warnings, " "), field) {
			t.Errorf("no warning names %q: %#v", field, resp)
		}
	}
	warned(env.mustOK(logical.UpdateOperation, "config", map[string]interface{}{"rotaton_period": "24h"}), "rotaton_period")
	env.snyk.AddIntegration(testOrgID, "github", false)
	path := "integrations/" + testOrgID + "/github"
	warned(env.mustOK(logical.CreateOperation, path, mergeData(env.integrationData("github"), map[string]interface{}{"scm_tokn": "x"})), "scm_tokn")
	warned(env.mustOK(logical.UpdateOperation, path, map[string]interface{}{"tll": "1h"}), "tll")
	warned(env.mustOK(logical.UpdateOperation, "broker/"+testOrgID+"/github/rotate", map[string]interface{}{"force": true}), "force")
	warned(env.mustOK(logical.UpdateOperation, "scm/validate", map[string]interface{}{"scm": "github", "scm_token": ghGood, "scm_api_url": env.githubURL, "scope": "repo"}), "scope")
}

// TestTurningValidationOnChecksTheStoredCredential: skip_scm_validation=false
// on an integration stored unchecked validates what is stored.
func TestTurningValidationOnChecksTheStoredCredential(t *testing.T) {
	env := newTestEnv(t)
	env.configure(nil)
	env.snyk.AddIntegration(testOrgID, "github", false)
	path := "integrations/" + testOrgID + "/github"
	env.mustOK(logical.CreateOperation, path, map[string]interface{}{"scm_token": "ghp_revoked000000000000000000000000000", "scm_api_url": env.githubURL, "skip_scm_validation": true})
	env.mustFail400(logical.UpdateOperation, path, map[string]interface{}{"skip_scm_validation": false}, "scm_token")
	if data := env.mustOK(logical.ReadOperation, path, nil).Data; data["skip_scm_validation"] != true {
		t.Fatalf("a refused write changed the integration: %v", data)
	}
	// With a good credential stored, turning validation on records its scopes.
	env.mustOK(logical.UpdateOperation, path, map[string]interface{}{"scm_token": ghGood})
	resp := env.mustOK(logical.UpdateOperation, path, map[string]interface{}{"skip_scm_validation": false})
	if scopes, _ := resp.Data["scm_scopes"].([]string); len(scopes) == 0 || resp.Data["scm_validated_at"] == nil {
		t.Fatalf("the stored credential was not validated: %v", resp.Data)
	}
}

// TestGroupLookupRefusalIsRetried: a 401/403 from the org read is recorded on
// the integration and retried, not a permanent move to the mount lane.
func TestGroupLookupRefusalIsRetried(t *testing.T) {
	env := newTestEnv(t)
	env.configure(map[string]interface{}{"rotation_period": "1h", "provision_ahead": "10m"})
	env.snyk.Faults().Inject(snyktest.RouteOrg, fault.Fault{Status: http.StatusForbidden, Body: `{"errors":[{"status":"403","detail":"Forbidden"}]}`})
	integID, _ := env.snyk.AddIntegration(testOrgID, "github", false)
	env.mustOK(logical.CreateOperation, "integrations/"+testOrgID+"/github", env.integrationData("github"))
	env.initialize()
	env.advance(51*time.Minute, time.Minute)
	data := env.integration()
	if !strings.Contains(data["last_rotation_error"].(string), "group") || data["next_attempt_at"] == nil {
		t.Fatalf("the refused look-up is not recorded and retried: %v", data)
	}
	e, _ := getIntegration(context.Background(), env.storage, testOrgID, "github")
	if e.GroupLookupFailed || e.GroupResolved {
		t.Fatal("a refused look-up moved the integration to the mount lane for good")
	}
	env.snyk.Faults().Clear()
	env.advance(5*time.Minute, 10*time.Second)
	e, _ = getIntegration(context.Background(), env.storage, testOrgID, "github")
	if !e.GroupResolved || e.GroupID != testGroupID || env.snyk.ProvisionalToken(integID) == "" {
		t.Fatalf("the retried look-up did not resolve the group and provision: %+v", e)
	}
}

// TestConfigWriteRequeuesCurrentEntries: a config write requeues each
// integration from its state after the write, not from a copy read before
// the (slow) Snyk call that verified the credential.
func TestConfigWriteRequeuesCurrentEntries(t *testing.T) {
	env, integID := rotationEnv(t, nil)
	key := testOrgID + "/github"
	env.clock.Advance(50 * time.Minute)
	env.snyk.Faults().Inject(snyktest.RouteSelf, fault.Fault{Delay: 300 * time.Millisecond, Times: 1})
	done := make(chan error, 1)
	go func() {
		resp, err := env.request(logical.UpdateOperation, "config", map[string]interface{}{"ttl": "20m"})
		if err == nil && resp != nil && resp.IsError() {
			err = resp.Error()
		}
		done <- err
	}()
	time.Sleep(100 * time.Millisecond) // the write is inside the verify call
	env.tick()                         // meanwhile the rotation provisions
	if env.snyk.ProvisionalToken(integID) == "" {
		t.Fatal("setup: no provision during the config write")
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	e, _ := getIntegration(context.Background(), env.storage, testOrgID, "github")
	if at, ok := env.b.rotation.queuedAt(key); !ok || !at.Equal(e.NextVaultRotation.Truncate(time.Millisecond)) {
		t.Fatalf("queued at %v, want the switch at %v", at, e.NextVaultRotation)
	}
}

// queuedAt is when key is queued, if it is.
func (m *rotationManager) queuedAt(key string) (time.Time, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	item, err := m.queue.PopByKey(key)
	if err != nil || item == nil {
		return time.Time{}, false
	}
	_ = m.queue.Push(item)
	return time.UnixMilli(item.Priority).UTC(), true
}
