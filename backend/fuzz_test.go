package backend

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/vault/sdk/framework"
	"github.com/hashicorp/vault/sdk/logical"
)

// FuzzPathName: a name the engine accepts is a key Vault's storage takes.
func FuzzPathName(f *testing.F) {
	for _, s := range []string{"payments", "0b3e1b1c-1b4e-4b8e-9d11-3c0f1b1d2a55", "a..b", "..", "a/b", "", "Payments", strings.Repeat("a", 129), "a.b-c_d", "é"} {
		f.Add(s)
	}
	s := &logical.InmemStorage{}
	f.Fuzz(func(t *testing.T, name string) {
		if checkName(name) != "" {
			return
		}
		if len(name) > maxNameLength || strings.Contains(name, "..") || strings.Contains(name, "/") {
			t.Fatalf("accepted %q", name)
		}
		e := &integrationEntry{Name: name, SCM: "github"}
		if err := putIntegration(context.Background(), s, e); err != nil {
			t.Fatalf("accepted name %q is refused by storage: %v", name, err)
		}
	})
}

// integrationFieldNames are the string-typed fields a fuzzer fills.
var integrationFieldNames = []string{"org_id", "integration_id", "scm_token", "scm_username", "scm_password", "scm_url", "scm_api_url",
	"azure_org", "broker_client_url", "broker_token", "broker_token_source", "rotation_schedule", "ttl", "rotation_period", "rotation_window", "provision_ahead"}

// FuzzIntegrationInput: any field values parse into problems or an entry,
// never a panic; an entry without problems has a valid policy.
func FuzzIntegrationInput(f *testing.F) {
	f.Add("github", true, "0b3e1b1c-1b4e-4b8e-9d11-3c0f1b1d2a55", "", "ghp_x", "", "", "https://github.com", "", "", "http://broker:8000", "", "auto", "", "1h", "24h", "", "1h")
	f.Add("azure-repos", true, "x", "y", "", "u", "p", "http://x", "https://a/b?c", "", "ftp://x", "not-a-uuid", "bogus", "* * * * *", "-1", "0", "30m", "2h")
	f.Add("bitbucket-server", false, "", "", "", "u", "", "https://user:pw@bb", "", "org", "", "4a18d42f-0706-4ad0-b127-24078731fbed", "enable", "61 * * * *", "1s", "", "", "")
	schema := integrationFields()
	f.Fuzz(func(t *testing.T, kind string, creating bool, v0, v1, v2, v3, v4, v5, v6, v7, v8, v9, v10, v11, v12, v13, v14, v15 string) {
		vals := []string{v0, v1, v2, v3, v4, v5, v6, v7, v8, v9, v10, v11, v12, v13, v14, v15}
		raw := map[string]interface{}{"name": "payments", "scm": kind}
		for i, field := range integrationFieldNames {
			if vals[i] != "" {
				raw[field] = vals[i]
			}
		}
		d := &framework.FieldData{Raw: raw, Schema: schema}
		if d.Validate() != nil {
			return // Vault answers these with its own 400 before the handler runs
		}
		e := integrationEntry{Name: "payments", SCM: kind, CreatedAt: time.Now()}
		_, problems := parseIntegrationInput(&e, creating, d)
		if len(problems) == 0 {
			_ = e.policy(defaultConfig()).problems(time.Now())
		}
		for _, p := range problems {
			if p == "" {
				t.Fatal("an empty problem")
			}
		}
	})
}

// FuzzConfigInput: any config field values parse into problems or a
// config, never a panic.
func FuzzConfigInput(f *testing.F) {
	f.Add("tok", "", "", "SNYK-US-01", "https://api.snyk.io", "https://broker.snyk.io", "", "1h", "2160h", "1h", "30s")
	f.Add("", "id", "secret", "snyk-eu-01", "http://x", "http://127.0.0.1:8000", "not pem", "-1", "0", "3000h", "x")
	f.Add("t", "i", "", "MARS", "https://u:p@h", "ftp://", "-----BEGIN CERTIFICATE-----", "", "1s", "2s", "")
	schema := pathConfig(nil)[0].Fields
	f.Fuzz(func(t *testing.T, token, id, secret, region, apiURL, brokerURL, ca, ttl, period, ahead, timeout string) {
		raw := map[string]interface{}{}
		for k, v := range map[string]string{"api_token": token, "client_id": id, "client_secret": secret, "region": region, "api_url": apiURL,
			"broker_server_url": brokerURL, "ca_cert": ca, "ttl": ttl, "rotation_period": period, "provision_ahead": ahead, "request_timeout": timeout} {
			if v != "" {
				raw[k] = v
			}
		}
		d := &framework.FieldData{Raw: raw, Schema: schema}
		if d.Validate() != nil {
			return
		}
		cfg := defaultConfig()
		before := *cfg
		problems := applyConfigFields(cfg, d)
		problems = append(problems, configTrustProblems(&before, cfg, d)...)
		for _, p := range problems {
			if p == "" {
				t.Fatal("an empty problem")
			}
		}
	})
}

// FuzzIntegrationWrite drives the real handler with any name and field
// values (SCM validation skipped, so the only upstream is the fake Snyk):
// every answer is a response or an error, never a panic, and whatever is
// stored is a whole entry with its token.
func FuzzIntegrationWrite(f *testing.F) {
	f.Add("payments", "github", "0b3e1b1c-1b4e-4b8e-9d11-3c0f1b1d2a55", "", "ghp_x", "4a18d42f-0706-4ad0-b127-24078731fbed", "", "1h")
	f.Add("a..b", "gitlab", "x", "y", "", "", "adopt", "-5s")
	f.Add("0b3e1b1c-1b4e-4b8e-9d11-3c0f1b1d2a55", "azure-repos", "", "", "pat", "", "enable", "")
	// The first seed's integration under another name: refused, since two
	// entries would rotate one Snyk integration.
	f.Add("p", "github", "0b3e1b1c-1b4e-4b8e-9d11-3c0f1b1d2a55", "", "ghp_x", "4a18d42f-0706-4ad0-b127-24078731fbed", "", "1h")
	env := newTestEnv(f)
	env.configure(nil)
	env.snyk.AddIntegration(testOrgID, "github", true)
	f.Fuzz(func(t *testing.T, name, kind, orgID, integrationID, token, brokerToken, source, ttl string) {
		data := map[string]interface{}{"skip_scm_validation": true, "azure_org": "contoso", "scm_url": "https://scm.example.com"}
		for k, v := range map[string]string{"org_id": orgID, "integration_id": integrationID, "scm_token": token, "broker_token": brokerToken,
			"broker_token_source": source, "ttl": ttl} {
			if v != "" {
				data[k] = v
			}
		}
		if kind != "azure-repos" {
			delete(data, "azure_org")
		}
		resp, err := env.b.HandleRequest(context.Background(), &logical.Request{
			Operation: logical.CreateOperation, Path: "integrations/" + name + "/" + kind, Data: data, Storage: env.view,
		})
		if err != nil && resp != nil && resp.IsError() {
			t.Fatalf("both an error response and an error: %v / %v", resp.Error(), err)
		}
		entries, lerr := listIntegrations(context.Background(), env.storage)
		if lerr != nil {
			t.Fatal(lerr)
		}
		owners := map[string]*integrationEntry{}
		for _, e := range entries {
			if e.TokenOwner == "" {
				owners[queueKey(e.Name, e.SCM)] = e
			}
		}
		for _, e := range entries {
			if e.OrgID == "" || e.IntegrationID == "" || e.TokenSource == "" {
				t.Fatalf("a half entry is stored: %s/%s", e.Name, e.SCM)
			}
			// A sharer holds no token of its own: it serves its owner's,
			// so the owner must be stored, with a token.
			holder := e
			if e.TokenOwner != "" {
				if holder = owners[e.TokenOwner]; holder == nil {
					t.Fatalf("%s/%s shares the token of %s, which is not stored as an owner", e.Name, e.SCM, e.TokenOwner)
				}
			}
			if holder.servedToken() == "" {
				t.Fatalf("%s/%s is stored without a token to serve", e.Name, e.SCM)
			}
		}
	})
}
