package backend

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/vault/sdk/logical"

	"github.com/snyk-vault/vault-plugin-secrets-snyk/backend/snyk/snyktest"
)

func TestConfigWriteReadHidesSecrets(t *testing.T) {
	env := newTestEnv(t)
	env.configure(map[string]interface{}{"ttl": "30m", "region": "SNYK-EU-01"})

	resp := env.mustOK(logical.ReadOperation, "config", nil)
	raw, _ := json.Marshal(resp.Data)
	env.assertNoSecretsIn("config read", string(raw))
	if _, ok := resp.Data["api_token"]; ok {
		t.Error("config read returned api_token")
	}
	if got := resp.Data["auth_method"]; got != authMethodAPIToken {
		t.Errorf("auth_method = %v", got)
	}
	if fp := resp.Data["credential_fingerprint"].(string); !strings.HasPrefix(fp, "sha256:") || len(fp) != len("sha256:")+12 {
		t.Errorf("credential_fingerprint = %q", fp)
	}
	if got := resp.Data["ttl"]; got != int64(1800) {
		t.Errorf("ttl = %v, want 1800", got)
	}
	if got := resp.Data["rotation_period"]; got != int64(2160*3600) {
		t.Errorf("rotation_period default = %v", got)
	}
	if got := resp.Data["region"]; got != "SNYK-EU-01" {
		t.Errorf("region = %v", got)
	}
	// api_url overrides the region; broker_server_url was set explicitly.
	if got := resp.Data["api_url"]; got != env.snykURL {
		t.Errorf("api_url = %v", got)
	}
	if env.snyk.Faults().Calls(snyktest.RouteSelf) != 1 {
		t.Errorf("want one verification call, counters: %s", env.snyk.Faults())
	}

	// A partial update keeps the credential.
	env.mustOK(logical.UpdateOperation, "config", map[string]interface{}{"ttl": "2h"})
	resp = env.mustOK(logical.ReadOperation, "config", nil)
	if resp.Data["ttl"] != int64(7200) || resp.Data["auth_method"] != authMethodAPIToken {
		t.Errorf("after partial update: %v", resp.Data)
	}
	env.assertNoSecretsIn("logs", env.logs.String())
}

func TestConfigRegionDefaults(t *testing.T) {
	env := newTestEnv(t)
	env.mustOK(logical.UpdateOperation, "config", map[string]interface{}{
		"api_token": testAPIToken, "region": "SNYK-AU-01", "skip_verify": true,
	})
	resp := env.mustOK(logical.ReadOperation, "config", nil)
	if resp.Data["api_url"] != "https://api.au.snyk.io" || resp.Data["broker_server_url"] != "https://broker.au.snyk.io" {
		t.Errorf("region URLs: %v %v", resp.Data["api_url"], resp.Data["broker_server_url"])
	}
	if env.snyk.Faults().TotalCalls() != 0 {
		t.Errorf("skip_verify made calls: %s", env.snyk.Faults())
	}
}

func TestConfigBadCredentialStoresNothing(t *testing.T) {
	env := newTestEnv(t)
	env.mustFail400(logical.UpdateOperation, "config", map[string]interface{}{
		"api_token": "00000000-1111-4222-8333-444444444444",
		"api_url":   env.snykURL,
		"ca_cert":   string(env.ca.CertPEM),
	}, "Snyk rejected the credential", "Not authorised")
	if keys := env.storedKeys(); len(keys) != 0 {
		t.Errorf("stored %v after a rejected credential", keys)
	}

	// Wrong OAuth secret: Snyk's error_description is surfaced.
	msg := env.mustFail400(logical.UpdateOperation, "config", map[string]interface{}{
		"client_id":     testClientID,
		"client_secret": "wrong-secret",
		"api_url":       env.snykURL,
		"ca_cert":       string(env.ca.CertPEM),
	}, "Snyk rejected the credential")
	if strings.Contains(msg, "wrong-secret") {
		t.Error("error echoes the client secret")
	}
	if keys := env.storedKeys(); len(keys) != 0 {
		t.Errorf("stored %v after a rejected credential", keys)
	}
}

func TestConfigValidation(t *testing.T) {
	env := newTestEnv(t)
	base := func(extra map[string]interface{}) map[string]interface{} {
		d := map[string]interface{}{"api_token": testAPIToken, "api_url": env.snykURL, "ca_cert": string(env.ca.CertPEM)}
		for k, v := range extra {
			if v == nil {
				delete(d, k)
			} else {
				d[k] = v
			}
		}
		return d
	}
	cases := []struct {
		name string
		data map[string]interface{}
		want []string
	}{
		{"both auth methods", base(map[string]interface{}{"client_id": testClientID, "client_secret": testClientSecret}), []string{"api_token", "client_id", "mutually exclusive"}},
		{"no credential", base(map[string]interface{}{"api_token": nil}), []string{"api_token", "client_id"}},
		{"client_id without secret", base(map[string]interface{}{"api_token": nil, "client_id": testClientID}), []string{"client_secret"}},
		{"http api_url", base(map[string]interface{}{"api_url": "http://api.snyk.io"}), []string{"api_url", "https"}},
		{"http broker_server_url", base(map[string]interface{}{"broker_server_url": "http://broker.snyk.io"}), []string{"broker_server_url", "https"}},
		{"unknown region", base(map[string]interface{}{"region": "SNYK-MARS-01"}), []string{"region", "SNYK-US-01"}},
		{"provision_ahead not below period", base(map[string]interface{}{"rotation_period": "1h", "provision_ahead": "1h"}), []string{"provision_ahead", "rotation_period"}},
		{"bad ca_cert", base(map[string]interface{}{"ca_cert": "not a pem"}), []string{"ca_cert"}},
		{"http api_url on loopback", base(map[string]interface{}{"api_url": "http://127.0.0.1:9999"}), []string{"api_url", "https"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			before := env.snyk.Faults().TotalCalls()
			msg := env.mustFail400(logical.UpdateOperation, "config", tc.data, tc.want...)
			env.assertNoSecretsIn("error", msg)
			if keys := env.storedKeys(); len(keys) != 0 {
				t.Errorf("stored %v", keys)
			}
			if env.snyk.Faults().TotalCalls() != before {
				t.Errorf("a refused config still called Snyk")
			}
		})
	}
}

func TestConfigOAuthTokenCachedAndRefreshed(t *testing.T) {
	env := newTestEnv(t)
	env.mustOK(logical.UpdateOperation, "config", map[string]interface{}{
		"client_id": testClientID, "client_secret": testClientSecret,
		"api_url": env.snykURL, "ca_cert": string(env.ca.CertPEM),
	})
	resp := env.mustOK(logical.ReadOperation, "config", nil)
	if resp.Data["auth_method"] != authMethodOAuth || resp.Data["client_id"] != testClientID {
		t.Errorf("read: %v", resp.Data)
	}
	raw, _ := json.Marshal(resp.Data)
	env.assertNoSecretsIn("config read", string(raw))

	// The engine's cached client reuses one access token for many calls…
	env.snyk.AddIntegration(testOrgID, "github", false)
	env.mustOK(logical.UpdateOperation, "integrations/"+testOrgID+"/github", env.integrationData("github"))
	env.mustOK(logical.UpdateOperation, "broker/"+testOrgID+"/github/rotate", nil)
	issuedBefore := env.snyk.AccessTokensIssued()
	if issuedBefore > 2 { // one for the config verification client, one for the cached client
		t.Errorf("access tokens issued = %d, want the cached one reused", issuedBefore)
	}
	env.mustOK(logical.UpdateOperation, "broker/"+testOrgID+"/github/rotate", nil)
	if got := env.snyk.AccessTokensIssued(); got != issuedBefore {
		t.Errorf("a call within the token's lifetime fetched a new one (%d → %d)", issuedBefore, got)
	}
	// …and fetches a new one once it is about to expire.
	env.clock.Advance(59*time.Minute + 30*time.Second)
	env.mustOK(logical.UpdateOperation, "broker/"+testOrgID+"/github/rotate", nil)
	if got := env.snyk.AccessTokensIssued(); got != issuedBefore+1 {
		t.Errorf("access tokens issued = %d after expiry, want %d", got, issuedBefore+1)
	}
	env.assertNoSecretsIn("logs", env.logs.String())
}

func TestConfigDeleteAndInvalidate(t *testing.T) {
	env := newTestEnv(t)
	env.configure(nil)
	if _, err := env.b.snykClient(t.Context(), env.storage); err != nil || env.b.client == nil {
		t.Fatalf("client not cached: %v", err)
	}
	// A replica learns of a config change through Invalidate.
	env.b.invalidate(t.Context(), configStoragePath)
	if env.b.client != nil {
		t.Error("Invalidate(config) kept the cached client")
	}
	env.mustOK(logical.DeleteOperation, "config", nil)
	resp, err := env.request(logical.ReadOperation, "config", nil)
	if err != nil || resp != nil {
		t.Errorf("read after delete: %v %v", resp, err)
	}
}

func TestConfigBrokerServerURLLoopbackHTTP(t *testing.T) {
	env := newTestEnv(t)
	env.configure(map[string]interface{}{"broker_server_url": "http://127.0.0.1:7341"})
	if got := env.mustOK(logical.ReadOperation, "config", nil).Data["broker_server_url"]; got != "http://127.0.0.1:7341" {
		t.Errorf("broker_server_url = %v", got)
	}
}

func TestConfigDefaultsMustFitIntegrations(t *testing.T) {
	env := newTestEnv(t)
	env.configure(nil)
	env.snyk.AddIntegration(testOrgID, "github", false)
	env.mustOK(logical.CreateOperation, "integrations/"+testOrgID+"/github",
		mergeData(env.integrationData("github"), map[string]interface{}{"rotation_period": "2h"}))
	env.mustFail400(logical.UpdateOperation, "config", map[string]interface{}{"provision_ahead": "3h"},
		"integration "+testOrgID+"/github", "provision_ahead")
	if got := env.mustOK(logical.ReadOperation, "config", nil).Data["provision_ahead"]; got != int64(3600) {
		t.Errorf("provision_ahead stored despite the conflict: %v", got)
	}
}

func TestBrokerReadWithoutConfigFails(t *testing.T) {
	env := newTestEnv(t)
	env.configure(map[string]interface{}{"region": "SNYK-EU-01", "broker_server_url": ""})
	env.snyk.AddIntegration(testOrgID, "github", false)
	env.mustOK(logical.CreateOperation, "integrations/"+testOrgID+"/github", env.integrationData("github"))
	env.mustOK(logical.DeleteOperation, "config", nil)
	if _, err := env.request(logical.ReadOperation, "broker/"+testOrgID+"/github", nil); err == nil || !strings.Contains(err.Error(), "snyk/config") {
		t.Errorf("broker read without config: %v, want an error naming snyk/config", err)
	}
}
