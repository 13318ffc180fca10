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

const testRoleID = "11111111-2222-4333-8444-555555555555"

func credsEnv(t *testing.T) *testEnv {
	env := newTestEnv(t)
	env.configure(nil)
	env.mustOK(logical.UpdateOperation, "roles/code-agent", map[string]interface{}{"org_id": testOrgID, "role_id": testRoleID, "ttl": "1h", "max_ttl": "3h"})
	return env
}

// readCreds reads snyk/creds/<role> as Vault would, with a display name.
func (env *testEnv) readCreds(role string) (*logical.Response, error) {
	env.t.Helper()
	return env.b.HandleRequest(context.Background(), &logical.Request{
		Operation: logical.ReadOperation, Path: "creds/" + role, Storage: env.view, DisplayName: "token-ci runner #7",
	})
}

// revoke calls the secret's revoke as Vault's expiration manager does.
func (env *testEnv) revoke(secret *logical.Secret) error {
	env.t.Helper()
	_, err := env.b.HandleRequest(context.Background(), &logical.Request{
		Operation: logical.RevokeOperation, Storage: env.view, Secret: secret,
		Data: map[string]interface{}{"secret_type": secretTypeSnykToken},
	})
	return err
}

func TestCredsCreateAndRevoke(t *testing.T) {
	env := credsEnv(t)
	resp, err := env.readCreds("code-agent")
	if err != nil || resp.IsError() {
		t.Fatalf("creds: %v %v", resp, err)
	}
	key := resp.Data["snyk_token"].(string)
	id := resp.Data["service_account_id"].(string)
	if resp.Secret == nil || resp.Secret.TTL != time.Hour || !resp.Secret.Renewable || resp.Data["env"].(map[string]string)["SNYK_TOKEN"] != key {
		t.Fatalf("lease: %+v", resp.Secret)
	}
	accounts := env.snyk.ServiceAccounts("org", testOrgID)
	if len(accounts) != 1 || accounts[0] != id {
		t.Fatalf("service accounts at Snyk: %v", accounts)
	}
	env.assertNoSecretsIn("lease internal data", strings.Join(stringValues(resp.Secret.InternalData), " "), key)
	env.assertNoSecretsIn("logs", env.logs.String(), key)

	// Renewal extends the lease, with no call to Snyk.
	calls := env.snyk.Faults().TotalCalls()
	renewed, err := env.b.HandleRequest(context.Background(), &logical.Request{Operation: logical.RenewOperation, Storage: env.view, Secret: resp.Secret,
		Data: map[string]interface{}{"secret_type": secretTypeSnykToken}})
	if err != nil || renewed.IsError() || renewed.Secret.TTL != time.Hour || renewed.Secret.MaxTTL != 3*time.Hour {
		t.Fatalf("renew: %v %v", renewed, err)
	}
	if env.snyk.Faults().TotalCalls() != calls {
		t.Error("renewal called Snyk")
	}

	if err := env.revoke(resp.Secret); err != nil {
		t.Fatal(err)
	}
	if len(env.snyk.ServiceAccounts("org", testOrgID)) != 0 {
		t.Fatal("revoking the lease left the service account")
	}
	// Revoking again (Vault retries revocations) counts a 404 as done.
	if err := env.revoke(resp.Secret); err != nil {
		t.Fatalf("a second revoke: %v", err)
	}
}

func stringValues(m map[string]interface{}) []string {
	var out []string
	for _, v := range m {
		if s, ok := v.(string); ok {
			out = append(out, s)
		}
	}
	return out
}

// TestCredsOrphanIsDeleted: an account created while the answer was lost
// (or the process died before the lease) is found by name and deleted.
func TestCredsOrphanIsDeleted(t *testing.T) {
	env := credsEnv(t)
	env.snyk.Faults().Inject(snyktest.RouteOrgSACreate, fault.Fault{Status: http.StatusBadGateway, AfterHandler: true, Times: 1})
	if _, err := env.readCreds("code-agent"); err == nil {
		t.Fatal("a lost answer returned credentials")
	}
	if len(env.snyk.ServiceAccounts("org", testOrgID)) != 1 {
		t.Fatal("setup: no orphaned account at Snyk")
	}
	if kinds := env.walKinds(); len(kinds) != 1 || kinds[0] != walKindServiceAccount {
		t.Fatalf("WAL entries %v, want the service account's", kinds)
	}
	env.clock.Advance(time.Hour)
	if _, err := env.b.HandleRequest(context.Background(), &logical.Request{Operation: logical.RollbackOperation, Storage: env.view, Data: map[string]interface{}{"immediate": true}}); err != nil {
		t.Fatal(err)
	}
	if n := len(env.snyk.ServiceAccounts("org", testOrgID)); n != 0 {
		t.Fatalf("%d orphaned service accounts left", n)
	}
	if kinds := env.walKinds(); len(kinds) != 0 {
		t.Fatalf("WAL entries left: %v", kinds)
	}
}

func TestCredsNamesAndRoles(t *testing.T) {
	for _, display := range []string{"token-ci runner #7", "", strings.Repeat("ü", 200)} {
		n := serviceAccountName(display)
		if len(n) > serviceAccountNameLimit || !strings.HasPrefix(n, "vault-") || strings.Trim(n, "abcdefghijklmnopqrstuvwxyz0123456789-") != "" {
			t.Errorf("name %q for display %q", n, display)
		}
	}
	env := newTestEnv(t)
	env.configure(nil)
	env.mustFail400(logical.UpdateOperation, "roles/r", map[string]interface{}{"role_id": testRoleID}, "org_id or group_id")
	env.mustFail400(logical.UpdateOperation, "roles/r", map[string]interface{}{"org_id": testOrgID, "group_id": testGroupID, "role_id": testRoleID}, "mutually exclusive")
	env.mustFail400(logical.UpdateOperation, "roles/r", map[string]interface{}{"org_id": testOrgID, "role_id": "admin"}, "role_id must be a UUID")
	env.mustFail400(logical.UpdateOperation, "roles/r", map[string]interface{}{"org_id": testOrgID, "role_id": testRoleID, "ttl": "2h", "max_ttl": "1h"}, "max_ttl")
	env.mustOK(logical.UpdateOperation, "roles/group-role", map[string]interface{}{"group_id": testGroupID, "role_id": testRoleID})
	resp, err := env.readCreds("group-role")
	if err != nil || resp.IsError() {
		t.Fatalf("group creds: %v %v", resp, err)
	}
	if len(env.snyk.ServiceAccounts("group", testGroupID)) != 1 {
		t.Fatal("no group service account")
	}
	if list := env.mustOK(logical.ListOperation, "roles/", nil).Data["keys"].([]string); len(list) != 1 {
		t.Fatalf("roles: %v", list)
	}
	if resp, _ := env.readCreds("missing"); resp == nil || !resp.IsError() {
		t.Fatal("creds of a missing role")
	}
}

// TestCodeAgentBundle: with code_agent_role, the broker bundle carries the
// Code Agent's SNYK_TOKEN, a service account leased with it and deleted
// when the bundle's lease is revoked.
func TestCodeAgentBundle(t *testing.T) {
	env := credsEnv(t)
	env.snyk.AddIntegration(testOrgID, "github", false)
	path := "integrations/" + testOrgID + "/github"
	env.mustFail400(logical.CreateOperation, path, mergeData(env.integrationData("github"), map[string]interface{}{"code_agent_role": "nope"}), "code_agent_role", "snyk/roles/nope")
	env.mustOK(logical.CreateOperation, path, mergeData(env.integrationData("github"), map[string]interface{}{"code_agent_role": "code-agent"}))
	resp := env.mustOK(logical.ReadOperation, "broker/"+testOrgID+"/github", nil)
	key, _ := resp.Data["snyk_token"].(string)
	if key == "" || resp.Data["env"].(map[string]string)["SNYK_TOKEN"] != key {
		t.Fatalf("no SNYK_TOKEN in the bundle: %v", resp.Data["env"])
	}
	if len(env.snyk.ServiceAccounts("org", testOrgID)) != 1 {
		t.Fatal("no service account at Snyk")
	}
	env.assertNoSecretsIn("lease internal data", strings.Join(stringValues(resp.Secret.InternalData), " "), key)
	if _, err := env.b.HandleRequest(context.Background(), &logical.Request{Operation: logical.RevokeOperation, Storage: env.view, Secret: resp.Secret,
		Data: map[string]interface{}{"secret_type": secretTypeBrokerToken}}); err != nil {
		t.Fatal(err)
	}
	if len(env.snyk.ServiceAccounts("org", testOrgID)) != 0 {
		t.Fatal("revoking the bundle left the Code Agent's service account")
	}
	// Without the option the bundle calls nothing at Snyk.
	env.mustOK(logical.UpdateOperation, path, map[string]interface{}{"code_agent_role": ""})
	calls := env.snyk.Faults().TotalCalls()
	plain := env.mustOK(logical.ReadOperation, "broker/"+testOrgID+"/github", nil)
	if _, has := plain.Data["snyk_token"]; has || env.snyk.Faults().TotalCalls() != calls {
		t.Fatal("a bundle without code_agent_role created a credential")
	}
}

// TestCredsReviewFixes: a WAL entry that cannot be deleted after the create
// hands out no key (the rollback deletes the account); deleting a role in
// use is refused; a missing role leaves the bundle served without
// SNYK_TOKEN; an account beyond the list's first page is still found.
func TestCredsReviewFixes(t *testing.T) {
	env := credsEnv(t)
	env.view.fail("delete", "wal/", 0, 1)
	if resp, err := env.readCreds("code-agent"); err == nil && (resp == nil || !resp.IsError()) {
		t.Fatal("a key was handed out although its WAL entry stayed")
	}
	env.view.clear()
	env.clock.Advance(time.Hour)
	if _, err := env.b.HandleRequest(context.Background(), &logical.Request{Operation: logical.RollbackOperation, Storage: env.view, Data: map[string]interface{}{"immediate": true}}); err != nil {
		t.Fatal(err)
	}
	if n := len(env.snyk.ServiceAccounts("org", testOrgID)); n != 0 {
		t.Fatalf("%d service accounts left", n)
	}

	env.snyk.AddIntegration(testOrgID, "github", false)
	env.mustOK(logical.CreateOperation, "integrations/"+testOrgID+"/github", mergeData(env.integrationData("github"), map[string]interface{}{"code_agent_role": "code-agent"}))
	env.mustFail400(logical.DeleteOperation, "roles/code-agent", nil, "code_agent_role of "+testOrgID+"/github")
	// The role disappears anyway (say, storage edited): the bundle is served.
	if err := env.storage.Delete(context.Background(), roleStoragePrefix+"code-agent"); err != nil {
		t.Fatal(err)
	}
	resp := env.mustOK(logical.ReadOperation, "broker/"+testOrgID+"/github", nil)
	if resp.Data["broker_token"] == nil || !strings.Contains(strings.Join(resp.Warnings, " "), "no SNYK_TOKEN") {
		t.Fatalf("the bundle without its role: %v %v", resp.Data["broker_token"] != nil, resp.Warnings)
	}

	// Pagination: 25 accounts; the orphan sorts last.
	env.mustOK(logical.UpdateOperation, "roles/ci", map[string]interface{}{"org_id": testOrgID, "role_id": testRoleID})
	for i := 0; i < 25; i++ {
		if _, err := env.readCreds("ci"); err != nil {
			t.Fatal(err)
		}
	}
	role, _ := getRole(context.Background(), env.storage, "ci")
	client, _ := env.b.snykClient(context.Background(), env.view)
	accounts, err := client.ListServiceAccounts(context.Background(), "orgs", testOrgID)
	if err != nil || len(accounts) != 25 || role == nil {
		t.Fatalf("listed %d of 25 accounts: %v", len(accounts), err)
	}
}
