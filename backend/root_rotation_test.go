package backend

import (
	"context"
	"encoding/json"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/vault/sdk/logical"

	"github.com/snyk-vault/vault-plugin-secrets-snyk/backend/fault"
	"github.com/snyk-vault/vault-plugin-secrets-snyk/backend/snyk/snyktest"
)

// rootEnv: the engine configured with an OAuth service account of the
// test org that rotate-root may rotate.
func rootEnv(t *testing.T, extra map[string]interface{}) (*testEnv, string) {
	env := newTestEnv(t)
	sa := env.snyk.AddServiceAccount("org", testOrgID, testClientID)
	data := map[string]interface{}{
		"client_id": testClientID, "client_secret": testClientSecret,
		"service_account_id": sa, "service_account_org_id": testOrgID,
	}
	for k, v := range extra {
		data[k] = v
	}
	env.configureWith(data)
	return env, sa
}

// configureWith writes config with data (instead of the API token).
func (env *testEnv) configureWith(data map[string]interface{}) {
	env.t.Helper()
	base := map[string]interface{}{"api_url": env.snykURL, "broker_server_url": "https://broker.snyk.io", "ca_cert": string(env.ca.CertPEM)}
	for k, v := range data {
		base[k] = v
	}
	env.mustOK(logical.UpdateOperation, "config", base)
}

// workingCredential checks that the stored secret is one Snyk accepts and
// that an authenticated call with it works.
func (env *testEnv) workingCredential(when string) string {
	env.t.Helper()
	cfg, err := getConfig(context.Background(), env.storage)
	if err != nil || cfg == nil {
		env.t.Fatalf("%s: no config: %v", when, err)
	}
	if !slices.Contains(env.snyk.ClientSecrets(testClientID), cfg.ClientSecret) {
		env.t.Fatalf("%s: the stored client secret is not one Snyk accepts", when)
	}
	env.b.resetClient()
	client, err := env.b.snykClient(context.Background(), env.view)
	if err != nil {
		env.t.Fatal(err)
	}
	if _, err := client.Verify(context.Background()); err != nil {
		env.t.Fatalf("%s: the stored credential does not work: %v", when, err)
	}
	return cfg.ClientSecret
}

func TestRotateRoot(t *testing.T) {
	env, _ := rootEnv(t, nil)
	resp := env.mustOK(logical.UpdateOperation, "config/rotate-root", nil)
	if resp.Data["root_rotated_at"] == nil || resp.Data["previous_secret_retired"] != true {
		t.Fatalf("rotate-root: %v", resp.Data)
	}
	secret := env.workingCredential("after rotate-root")
	if secret == testClientSecret {
		t.Fatal("the secret did not change")
	}
	if got := env.snyk.ClientSecrets(testClientID); !slices.Equal(got, []string{secret}) {
		t.Fatalf("Snyk holds %d secrets, want only the new one", len(got))
	}
	read := env.mustOK(logical.ReadOperation, "config", nil)
	if read.Data["root_rotated_at"] == nil {
		t.Error("config read lacks root_rotated_at")
	}
	for where, data := range map[string]map[string]interface{}{"rotate-root response": resp.Data, "config read": read.Data} {
		raw, _ := json.Marshal(data)
		env.assertNoSecretsIn(where, string(raw), secret)
	}
	env.assertNoSecretsIn("logs", env.logs.String(), secret)
}

func TestRotateRootRefusesAnAPIToken(t *testing.T) {
	env := newTestEnv(t)
	env.configure(nil)
	env.mustFail400(logical.UpdateOperation, "config/rotate-root", nil, "API token", "no API to rotate")
	env.mustFail400(logical.UpdateOperation, "config", map[string]interface{}{"root_rotation_period": "720h"}, "Snyk has no API to rotate an API token")
}

// TestRotateRootKeepsAWorkingCredential fails each step of rotate-root in
// turn; after each the stored credential works, and the next rotate-root
// completes from where the failure left it.
func TestRotateRootKeepsAWorkingCredential(t *testing.T) {
	refusal := fault.Fault{Status: http.StatusBadRequest, Body: `{"errors":[{"status":"400","detail":"Bad Request"}]}`, Times: 1}
	cases := []struct {
		name string
		arm  func(env *testEnv)
	}{
		{"create refused", func(env *testEnv) { env.snyk.Faults().Inject(snyktest.RouteOrgSASecrets, refusal) }},
		{"create answer lost", func(env *testEnv) {
			env.snyk.Faults().Inject(snyktest.RouteOrgSASecrets, fault.Fault{Status: http.StatusBadGateway, AfterHandler: true, Times: 1})
		}},
		{"new secret not stored", func(env *testEnv) { env.view.fail("put", "config", 0, 5) }},
		{"new secret refused at the token endpoint", func(env *testEnv) {
			env.snyk.Faults().Inject(snyktest.RouteOAuthToken, fault.Fault{Status: http.StatusUnauthorized, Body: `{"error":"invalid_client","error_description":"Client authentication failed"}`, Times: 1})
		}},
		{"verification unreachable", func(env *testEnv) {
			env.snyk.Faults().Inject(snyktest.RouteSelf, fault.Fault{Status: http.StatusServiceUnavailable, Times: 10})
		}},
		{"switch not stored", func(env *testEnv) { env.view.fail("put", "config", 1, 5) }},
		{"old secret not deleted", func(env *testEnv) {
			env.snyk.Faults().Inject(snyktest.RouteOrgSASecrets, fault.Fault{Times: 1}) // the create goes through
			env.snyk.Faults().Inject(snyktest.RouteOrgSASecrets, fault.Fault{Status: http.StatusInternalServerError, Times: 1})
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			env, _ := rootEnv(t, nil)
			env.initialize()
			c.arm(env)
			_, _ = env.request(logical.UpdateOperation, "config/rotate-root", nil)
			env.view.clear()
			env.snyk.Faults().Clear()
			env.workingCredential("after the failure")
			env.restart()
			env.workingCredential("after a restart")

			// The next rotate-root completes, unless Snyk holds a secret
			// Vault never saw (a lost create answer): then it says so.
			resp, err := env.request(logical.UpdateOperation, "config/rotate-root", nil)
			switch {
			case c.name == "create answer lost":
				if err == nil && (resp == nil || !resp.IsError()) {
					t.Fatal("rotate-root succeeded although Snyk holds two secrets")
				}
				read := env.mustOK(logical.ReadOperation, "config", nil)
				if !strings.Contains(read.Data["root_rotation_error"].(string), "second secret") {
					t.Errorf("the unknown secret is not reported: %v", read.Data["root_rotation_error"])
				}
			case err != nil || (resp != nil && resp.IsError()):
				t.Fatalf("the next rotate-root failed: %v %v", resp, err)
			default:
				secret := env.workingCredential("after the next rotate-root")
				if got := env.snyk.ClientSecrets(testClientID); !slices.Equal(got, []string{secret}) {
					t.Fatalf("Snyk holds %d secrets after completing, want 1", len(got))
				}
			}
			env.workingCredential("at the end")
		})
	}
}

// TestRootRotationPeriod: with root_rotation_period the loop rotates the
// client secret on schedule.
func TestRootRotationPeriod(t *testing.T) {
	env, _ := rootEnv(t, map[string]interface{}{"root_rotation_period": "24h"})
	env.initialize()
	env.advance(23*time.Hour, 10*time.Minute)
	if env.workingCredential("before the period") != testClientSecret {
		t.Fatal("rotated before the period")
	}
	env.advance(2*time.Hour, 10*time.Minute)
	if env.workingCredential("after the period") == testClientSecret {
		t.Fatal("not rotated after the period")
	}
}

// TestRootRotationPeriodSurvivesRestarts: restarts more often than the
// period do not postpone the first automatic rotation.
func TestRootRotationPeriodSurvivesRestarts(t *testing.T) {
	env, _ := rootEnv(t, map[string]interface{}{"root_rotation_period": "24h"})
	env.initialize()
	for i := 0; i < 3; i++ {
		env.advance(12*time.Hour, 10*time.Minute)
		env.restart()
	}
	env.advance(10*time.Minute, time.Minute)
	if env.workingCredential("after 36 hours of restarts") == testClientSecret {
		t.Fatal("restarts postponed the rotation")
	}
}
