package backend

import (
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/hashicorp/vault/sdk/logical"
)

// recorder is a TLS server (trusted through the test CA) that a hostile
// writer controls: it records every credential sent to it.
type recorder struct {
	mu    sync.Mutex
	seen  []string
	url   string
	hosts int
}

func (env *testEnv) newRecorder() *recorder {
	r := &recorder{}
	r.url = env.serve(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		r.mu.Lock()
		for _, h := range []string{"Authorization", "Private-Token", "PRIVATE-TOKEN"} {
			if v := req.Header.Get(h); v != "" {
				r.seen = append(r.seen, v)
			}
		}
		r.hosts++
		r.mu.Unlock()
		w.WriteHeader(http.StatusUnauthorized)
	}))
	return r
}

func (r *recorder) got() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.seen...)
}

func (r *recorder) requests() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.hosts
}

// TestConfigHostChangesNeedTheCredential: a config update that changes where
// the Snyk credential or the Broker tokens go must carry the credential.
func TestConfigHostChangesNeedTheCredential(t *testing.T) {
	env := newTestEnv(t)
	env.configure(nil)
	rec := env.newRecorder()
	before := env.mustOK(logical.ReadOperation, "config", nil).Data

	for _, c := range []struct {
		name string
		data map[string]interface{}
		want string
	}{
		{"api_url", map[string]interface{}{"api_url": rec.url}, "api_url"},
		{"broker_server_url", map[string]interface{}{"broker_server_url": rec.url}, "broker_server_url"},
		{"ca_cert", map[string]interface{}{"ca_cert": ""}, "ca_cert"},
		{"client_id alone", map[string]interface{}{"api_url": rec.url, "client_id": testClientID}, "api_url"},
	} {
		t.Run(c.name, func(t *testing.T) {
			env.mustFail400(logical.UpdateOperation, "config", c.data, c.want, "same write")
			if n := rec.requests(); n != 0 {
				t.Fatalf("the chosen host received %d requests: %v", n, rec.got())
			}
			if after := env.mustOK(logical.ReadOperation, "config", nil).Data; after["api_url"] != before["api_url"] || after["credential_fingerprint"] != before["credential_fingerprint"] || after["ca_cert"] != before["ca_cert"] {
				t.Fatalf("a refused write changed the config: %v", after)
			}
		})
	}

	// With the credential the writer proves they hold it: the change goes
	// through (here the chosen host rejects it, so nothing is stored).
	env.mustFail400(logical.UpdateOperation, "config", map[string]interface{}{"api_url": rec.url, "api_token": "f0f0f0f0-0000-4000-8000-000000000000"})
	for _, v := range rec.got() {
		if strings.Contains(v, testAPIToken) {
			t.Fatal("the stored credential reached the chosen host")
		}
	}
	// Settings that send nothing anywhere still change alone.
	env.mustOK(logical.UpdateOperation, "config", map[string]interface{}{"ttl": "2h"})

	// A region change moves the credential when no api_url overrides it.
	// (Refused before any call: nothing leaves this machine.)
	stored, err := getConfig(t.Context(), env.storage)
	if err != nil {
		t.Fatal(err)
	}
	stored.APIURL, stored.BrokerServerURL = "", ""
	if err := putConfig(t.Context(), env.storage, stored); err != nil {
		t.Fatal(err)
	}
	env.b.invalidate(t.Context(), "config")
	env.mustFail400(logical.UpdateOperation, "config", map[string]interface{}{"region": "SNYK-EU-01"}, "region", "broker_server_url", "same write")

}

// TestIntegrationHostChangesNeedTheCredential: an integration update that
// changes where the SCM credential is sent must carry it.
func TestIntegrationHostChangesNeedTheCredential(t *testing.T) {
	env := newTestEnv(t)
	env.configure(nil)
	for _, kind := range []string{"github", "github-enterprise", "azure-repos", "bitbucket-server"} {
		env.snyk.AddIntegration(testOrgID, kind, false)
		env.mustOK(logical.CreateOperation, "integrations/"+testOrgID+"/"+kind, env.integrationData(kind))
	}
	rec := env.newRecorder()
	cases := []struct {
		kind, field string
		value       interface{}
	}{
		{"github", "scm_api_url", rec.url},
		{"github-enterprise", "scm_url", rec.url},
		{"github-enterprise", "scm_api_url", rec.url},
		{"azure-repos", "scm_url", rec.url},
		{"azure-repos", "azure_org", "fabrikam"},
		{"bitbucket-server", "scm_url", rec.url},
	}
	for _, c := range cases {
		t.Run(c.kind+"/"+c.field, func(t *testing.T) {
			path := "integrations/" + testOrgID + "/" + c.kind
			before := env.mustOK(logical.ReadOperation, path, nil).Data
			env.mustFail400(logical.UpdateOperation, path, map[string]interface{}{c.field: c.value}, c.field, "same write")
			if n := rec.requests(); n != 0 {
				t.Fatalf("the chosen host received %d requests", n)
			}
			after := env.mustOK(logical.ReadOperation, path, nil).Data
			if after["scm_url"] != before["scm_url"] || after["scm_api_url"] != before["scm_api_url"] || after["azure_org"] != before["azure_org"] {
				t.Fatalf("a refused write changed the integration: %v", after)
			}
			// Nor does skipping validation open a way around it.
			env.mustFail400(logical.UpdateOperation, path, map[string]interface{}{c.field: c.value, "skip_scm_validation": true}, c.field)
		})
	}
	// A writer who sends the credential may move it: only what they sent
	// reaches the new host.
	env.mustFail400(logical.UpdateOperation, "integrations/"+testOrgID+"/github", map[string]interface{}{"scm_api_url": rec.url, "scm_token": "ghp_writers_own_token_000000000000000000"})
	for _, v := range rec.got() {
		env.assertNoSecretsIn("a request to the chosen host", v)
	}
	if len(rec.got()) == 0 {
		t.Fatal("the credential sent in the write was not used to validate against the new host")
	}
}
