package backend

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/hashicorp/vault/sdk/framework"
	"github.com/hashicorp/vault/sdk/logical"

	"github.com/snyk-vault/vault-plugin-secrets-snyk/backend/fault"
	"github.com/snyk-vault/vault-plugin-secrets-snyk/backend/snyk/snyktest"
)

// TestTokenMintingCallsWithUnknownOutcome: every call that may mint a Broker
// token (provision, enable Broker, create a brokered integration), when Snyk
// applies it but its answer is lost (a 5xx after the fact, or a timeout),
// keeps its WAL entry until recovery reads it, is never repeated blindly,
// stores nothing on create, and keeps the group's slot on a scheduled
// provision (Snyk may now hold a provisional token).
func TestTokenMintingCallsWithUnknownOutcome(t *testing.T) {
	faults := map[string]fault.Fault{
		"5xx after the call":     {Status: http.StatusBadGateway, AfterHandler: true, Times: 1},
		"timeout after the call": {Status: http.StatusGatewayTimeout, AfterHandler: true, Delay: 5 * time.Second, Times: 1},
	}
	calls := []struct {
		name, route, walKind string
		run                  func(t *testing.T, env *testEnv)
	}{
		{"provision (scheduled)", snyktest.RouteProvisionToken, walKindProvision, func(t *testing.T, env *testEnv) {
			env.snyk.AddIntegration(testOrgID, "github", false)
			env.mustOK(logical.CreateOperation, "integrations/"+testOrgID+"/github", env.integrationData("github"))
			env.initialize()
			env.snyk.Faults().ResetCalls()
			env.arm()
			env.advance(50*time.Minute, time.Minute)
			if _, held := env.b.rotation.holdsSlot(testOrgID + "/github"); !held {
				t.Error("the slot was released although Snyk may hold a provisional token")
			}
			if e, _ := getIntegration(context.Background(), env.storage, testOrgID, "github"); e == nil || e.ProvisionalToken != "" || e.LastRotationError == "" {
				t.Errorf("after the lost answer: %+v", e)
			}
		}},
		{"enable Broker (create)", snyktest.RouteUpdateIntegration, walKindEnable, func(t *testing.T, env *testEnv) {
			env.snyk.AddIntegration(testOrgID, "github", false)
			env.arm()
			env.createMustFault(mergeData(env.integrationData("github"), map[string]interface{}{"broker_token_source": tokenSourceEnable}))
		}},
		{"add a brokered integration (create)", snyktest.RouteAddIntegration, walKindEnable, func(t *testing.T, env *testEnv) {
			env.arm()
			env.createMustFault(env.integrationData("github"))
		}},
	}
	for faultName, f := range faults {
		for _, c := range calls {
			t.Run(c.name+"/"+faultName, func(t *testing.T) {
				env := newTestEnv(t)
				env.configure(map[string]interface{}{"rotation_period": "1h", "provision_ahead": "10m", "request_timeout": "2s"})
				env.armFault = func() { env.snyk.Faults().Inject(c.route, f) }
				c.run(t, env)
				if n := env.snyk.Faults().Calls(c.route); n != 1 {
					t.Fatalf("%s was sent %d times after an ambiguous answer, want 1", c.route, n)
				}
				wals := env.walKinds()
				if len(wals) != 1 || wals[0] != c.walKind {
					t.Fatalf("WAL entries = %v, want one %s entry kept", wals, c.walKind)
				}
				env.restart()
				if wals := env.walKinds(); len(wals) != 0 {
					t.Fatalf("recovery left WAL entries: %v", wals)
				}
			})
		}
	}
}

// arm injects the fault the test chose.
func (env *testEnv) arm() { env.armFault() }

// createMustFault runs a create that must fail as a fault (not a 400: the
// outcome is unknown, nothing the caller did) and store no integration.
func (env *testEnv) createMustFault(data map[string]interface{}) {
	env.t.Helper()
	resp, err := env.request(logical.CreateOperation, "integrations/"+testOrgID+"/github", data)
	if err == nil {
		env.t.Fatalf("the create did not fail: %#v", resp)
	}
	if e, _ := getIntegration(context.Background(), env.storage, testOrgID, "github"); e != nil {
		env.t.Fatal("a create with an unknown outcome stored the integration")
	}
}

func (env *testEnv) walKinds() []string {
	env.t.Helper()
	ids, err := framework.ListWAL(context.Background(), env.storage)
	if err != nil {
		env.t.Fatal(err)
	}
	var kinds []string
	for _, id := range ids {
		if w, _ := framework.GetWAL(context.Background(), env.storage, id); w != nil {
			kinds = append(kinds, w.Kind)
		}
	}
	return kinds
}
