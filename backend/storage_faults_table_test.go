package backend

import (
	"context"
	"fmt"
	"testing"

	"github.com/hashicorp/vault/sdk/logical"
)

// TestStorageFaultsOnEveryPath fails each storage operation (get, put,
// delete, list), at each of its first calls, under every path and
// operation. Each request ends in an error or a refusal, never a panic; and
// storage stays consistent: every stored integration has its token, a
// provisional state always has its provisional token, the token Vault
// serves is one Snyk routes by, and after a restart no WAL entry remains.
func TestStorageFaultsOnEveryPath(t *testing.T) {
	org := testOrgID
	requests := []struct {
		name  string
		setup func(env *testEnv)
		op    logical.Operation
		path  string
		data  func(env *testEnv) map[string]interface{}
	}{
		{"config update", nil, logical.UpdateOperation, "config", func(*testEnv) map[string]interface{} { return map[string]interface{}{"ttl": "2h"} }},
		{"config read", nil, logical.ReadOperation, "config", nil},
		{"config delete", nil, logical.DeleteOperation, "config", nil},
		{"create (enable)", func(env *testEnv) { env.snyk.AddIntegration(org, "github", false) }, logical.CreateOperation, "integrations/" + org + "/github",
			func(env *testEnv) map[string]interface{} { return env.integrationData("github") }},
		{"create (adopt)", func(env *testEnv) { env.snyk.AddIntegration(org, "github", true) }, logical.CreateOperation, "integrations/" + org + "/github",
			func(env *testEnv) map[string]interface{} { return env.integrationData("github") }},
		{"create (none at Snyk)", nil, logical.CreateOperation, "integrations/" + org + "/gitlab",
			func(env *testEnv) map[string]interface{} { return env.integrationData("gitlab") }},
		{"create (import)", func(env *testEnv) { env.snyk.AddIntegration(org, "github", true) }, logical.CreateOperation, "integrations/" + org + "/github",
			func(env *testEnv) map[string]interface{} {
				id := env.snyk.IntegrationIDs(org)["github"]
				return mergeData(env.integrationData("github"), map[string]interface{}{"integration_id": id, "broker_token": env.snyk.CurrentToken(id)})
			}},
		{"update", withIntegration, logical.UpdateOperation, "integrations/" + org + "/github", func(*testEnv) map[string]interface{} { return map[string]interface{}{"ttl": "20m"} }},
		{"read", withIntegration, logical.ReadOperation, "integrations/" + org + "/github", nil},
		{"delete", withIntegration, logical.DeleteOperation, "integrations/" + org + "/github", nil},
		{"list orgs", withIntegration, logical.ListOperation, "integrations/", nil},
		{"list scms", withIntegration, logical.ListOperation, "integrations/" + org + "/", nil},
		{"broker read", withIntegration, logical.ReadOperation, "broker/" + org + "/github", nil},
		{"rotate", withIntegration, logical.UpdateOperation, "broker/" + org + "/github/rotate", nil},
		{"rotate (held provisional)", func(env *testEnv) {
			env.snyk.AddIntegration(org, "github", true)
			env.mustOK(logical.CreateOperation, "integrations/"+org+"/github", env.integrationData("github"))
		}, logical.UpdateOperation, "broker/" + org + "/github/rotate", nil},
		{"scm validate", nil, logical.UpdateOperation, "scm/validate", func(env *testEnv) map[string]interface{} {
			return map[string]interface{}{"scm": "github", "scm_token": ghGood, "scm_api_url": env.githubURL}
		}},
	}
	for _, rq := range requests {
		for _, storageOp := range []string{"get", "put", "delete", "list"} {
			for skip := 0; skip < 3; skip++ {
				t.Run(fmt.Sprintf("%s/%s#%d", rq.name, storageOp, skip), func(t *testing.T) {
					env := newTestEnv(t)
					env.configure(map[string]interface{}{"rotation_period": "1h", "provision_ahead": "10m"})
					env.initialize()
					if rq.setup != nil {
						rq.setup(env)
					}
					var data map[string]interface{}
					if rq.data != nil {
						data = rq.data(env)
					}
					env.view.fail(storageOp, "", skip, 0)
					resp, err := env.request(rq.op, rq.path, data)
					env.view.clear()
					if err != nil && resp != nil && resp.IsError() {
						t.Fatalf("both an error response and an error: %v / %v", resp.Error(), err)
					}
					env.storageConsistent("after the request")
					env.restart()
					env.storageConsistent("after a restart")
					if wals := env.walKinds(); len(wals) != 0 {
						t.Fatalf("WAL entries left after recovery: %v", wals)
					}
				})
			}
		}
	}
}

func withIntegration(env *testEnv) {
	env.snyk.AddIntegration(testOrgID, "github", false)
	env.mustOK(logical.CreateOperation, "integrations/"+testOrgID+"/github", env.integrationData("github"))
}

// storageConsistent checks what storage holds (storage answering).
func (env *testEnv) storageConsistent(when string) {
	env.t.Helper()
	entries, err := listIntegrations(context.Background(), env.storage)
	if err != nil {
		env.t.Fatal(err)
	}
	for _, e := range entries {
		key := e.Name + "/" + e.SCM
		if kept := env.b.rotation.unsaved.get(key); kept != nil {
			e = kept
		}
		served := e.servedToken()
		switch {
		case served == "" || e.TokenSource == "" || e.IntegrationID == "":
			env.t.Errorf("%s: %s is stored without its token", when, key)
		case (e.RotationState == stateProvisioned || e.RotationState == stateSwitchPending) != (e.ProvisionalToken != ""):
			env.t.Errorf("%s: %s is %q with provisional token %v", when, key, e.RotationState, e.ProvisionalToken != "")
		case !env.snyk.TokenIsCurrent(served) && !env.snyk.TokenIsProvisional(served):
			env.t.Errorf("%s: %s serves a token Snyk does not route by", when, key)
		}
	}
}
