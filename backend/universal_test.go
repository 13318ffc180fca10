package backend

import (
	"context"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/vault/sdk/framework"
	"github.com/hashicorp/vault/sdk/logical"

	"github.com/snyk-vault/vault-plugin-secrets-snyk/backend/fault"
	"github.com/snyk-vault/vault-plugin-secrets-snyk/backend/snyk/snyktest"
	"github.com/snyk-vault/vault-plugin-secrets-snyk/backend/tlstest"
)

// ubWorld is one Universal Broker deployment at the fake Snyk: a GitHub
// Enterprise and a GitLab connection, each using one credential reference.
type ubWorld struct {
	tenant, install, clientID, secret, deployment string
	gheConn, gitlabConn                           string
}

func (env *testEnv) universalWorld() ubWorld {
	env.t.Helper()
	s := env.snyk
	w := ubWorld{tenant: s.AddTenant("Acme", testAPIToken)}
	w.install, w.clientID, w.secret = s.AddAppInstall(testOrgID)
	w.deployment = s.AddDeployment(w.tenant, w.install, map[string]string{"deployment_name": "prod"})
	s.AddCredentialReference(w.deployment, "MY_GHE_TOKEN", "github-enterprise", "")
	s.AddCredentialReference(w.deployment, "MY_GITLAB_TOKEN", "gitlab", "")
	var err error
	if w.gheConn, err = s.AddConnection(w.deployment, "ghe", "github-enterprise", map[string]string{
		"github": host(env.gheURL), "github_token": "${MY_GHE_TOKEN}", "broker_client_url": "https://broker-client.example:8000",
	}); err != nil {
		env.t.Fatal(err)
	}
	if w.gitlabConn, err = s.AddConnection(w.deployment, "gitlab", "gitlab", map[string]string{
		"gitlab": host(env.gitlabURL), "gitlab_token": "${MY_GITLAB_TOKEN}", "broker_client_url": "https://broker-client.example:8000",
	}); err != nil {
		env.t.Fatal(err)
	}
	s.IntegrateConnection(w.gheConn, testOrgID)
	// The rotation loop runs from here on, driven by env.tick.
	env.initialize()
	return w
}

func host(rawURL string) string {
	u, _ := url.Parse(rawURL)
	return u.Host
}

// data is a valid create request of the deployment.
func (w ubWorld) data(extra map[string]interface{}) map[string]interface{} {
	d := map[string]interface{}{
		"tenant_id": w.tenant, "install_id": w.install, "install_org_id": testOrgID, "deployment_id": w.deployment,
		"client_id": w.clientID, "client_secret": w.secret,
		"credentials": map[string]interface{}{"MY_GHE_TOKEN": gheGood, "MY_GITLAB_TOKEN": glGood},
	}
	for k, v := range extra {
		d[k] = v
	}
	return d
}

func TestUniversalCreateAndServe(t *testing.T) {
	env := newTestEnv(t)
	env.configure(nil)
	w := env.universalWorld()
	resp := env.mustOK(logical.CreateOperation, "universal/prod", w.data(nil))
	if got := resp.Data["missing_credentials"].([]string); len(got) != 0 {
		t.Fatalf("missing_credentials %v", got)
	}

	read := env.mustOK(logical.ReadOperation, "universal/prod", nil)
	text := dump(read.Data)
	env.assertNoSecretsIn("universal read", text, w.secret)
	for _, want := range []string{"ghe", "gitlab", "MY_GHE_TOKEN", w.deployment} {
		if !strings.Contains(text, want) {
			t.Errorf("read does not mention %q: %s", want, text)
		}
	}

	calls := env.snyk.Faults().TotalCalls()
	leased := env.mustOK(logical.ReadOperation, "universal/prod/env", nil)
	if n := env.snyk.Faults().TotalCalls() - calls; n != 0 {
		t.Fatalf("the env read made %d calls to Snyk", n)
	}
	want := map[string]string{
		"DEPLOYMENT_ID": w.deployment, "CLIENT_ID": w.clientID, "CLIENT_SECRET": w.secret, "UNIVERSAL_BROKER_ENABLED": "true",
		"API_BASE_URL": env.snykURL, "BROKER_SERVER_URL": "https://broker.snyk.io", "MY_GHE_TOKEN": gheGood, "MY_GITLAB_TOKEN": glGood,
	}
	envMap := leased.Data["env"].(map[string]string)
	for k, v := range want {
		if leased.Data[k] != v || envMap[k] != v {
			t.Errorf("%s: data %v, env %v, want %v", k, leased.Data[k], envMap[k], v)
		}
	}
	if leased.Secret == nil || leased.Secret.Renewable || leased.Secret.TTL != time.Hour {
		t.Fatalf("lease %+v", leased.Secret)
	}
	env.assertNoSecretsIn("lease internal data", dump(leased.Secret.InternalData), w.secret)
	env.assertNoSecretsIn("logs", env.logs.String(), w.secret)

	list := env.mustOK(logical.ListOperation, "universal/prod/credentials/", nil)
	if keys := list.Data["keys"].([]string); !slices.Equal(keys, []string{"MY_GHE_TOKEN", "MY_GITLAB_TOKEN"}) {
		t.Fatalf("credentials %v", keys)
	}
	cred := env.mustOK(logical.ReadOperation, "universal/prod/credentials/MY_GITLAB_TOKEN", nil)
	if cred.Data["scm_status"] != scmStatusOK || cred.Data["type"] != "gitlab" {
		t.Fatalf("credential %v", cred.Data)
	}
	env.assertNoSecretsIn("credential read", dump(cred.Data))
}

// TestUniversalWriteRefusals: every refused write names the field and the
// fix, and stores nothing.
func TestUniversalWriteRefusals(t *testing.T) {
	env := newTestEnv(t)
	env.configure(nil)
	w := env.universalWorld()
	creds := func(m map[string]interface{}) map[string]interface{} { return map[string]interface{}{"credentials": m} }
	cases := []struct {
		name string
		data map[string]interface{}
		want []string
	}{
		{"no client secret", w.data(map[string]interface{}{"client_secret": ""}), []string{"client_secret is required"}},
		{"bad install id", w.data(map[string]interface{}{"install_id": "x"}), []string{"install_id must be", "UUID"}},
		{"wrong client secret", w.data(map[string]interface{}{"client_secret": "snyk_cs_wrong_v1"}), []string{"client_secret", "oauth2/token"}},
		{"unknown deployment", w.data(map[string]interface{}{"deployment_id": "8f0c6f3e-2d1b-4c5a-9e8f-7a6b5c4d3e2f"}), []string{"Snyk lists no deployment", "deployment_id"}},
		{"wrong install org", w.data(map[string]interface{}{"install_org_id": testOtherOrgID}), []string{"is not an app install of org " + testOtherOrgID, "install_org_id"}},
		{"another install's client", w.data(map[string]interface{}{"client_id": testClientID}), []string{"client_id " + testClientID + " is not the client of install"}},
		{"missing value", w.data(creds(map[string]interface{}{"MY_GHE_TOKEN": gheGood})), []string{"MY_GITLAB_TOKEN (used by connection gitlab)", "universal/prod/credentials/"}},
		{"not a reference", w.data(creds(map[string]interface{}{"MY_GHE_TOKEN": gheGood, "MY_GITLAB_TOKEN": glGood, "OTHER": "x"})), []string{"no credential reference OTHER"}},
		{"token lacks scopes", w.data(creds(map[string]interface{}{"MY_GHE_TOKEN": "ghp_unknown", "MY_GITLAB_TOKEN": glGood})), []string{"MY_GHE_TOKEN was rejected", "connection ghe"}},
		{"type differs from Snyk's", w.data(creds(map[string]interface{}{"MY_GHE_TOKEN": map[string]interface{}{"value": gheGood, "type": "github"}, "MY_GITLAB_TOKEN": glGood})), []string{"Snyk records its credential reference as github-enterprise"}},
		{"reserved name", w.data(creds(map[string]interface{}{"CLIENT_SECRET": "x"})), []string{"served by the engine"}},
		{"pem value under a plain name", w.data(creds(map[string]interface{}{"MY_GHE_TOKEN": "-----BEGIN RSA PRIVATE KEY-----\nx\n-----END RSA PRIVATE KEY-----", "MY_GITLAB_TOKEN": glGood})), []string{"ending in .pem"}},
		{"rotation overlap too long", w.data(map[string]interface{}{"rotation_period": "2h", "provision_ahead": "30m", "ttl": "1h"}), []string{"must exceed provision_ahead + ttl + client_exit_window"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			msg := env.mustFail400(logical.CreateOperation, "universal/prod", tc.data, tc.want...)
			env.assertNoSecretsIn("error", msg, w.secret)
			for _, k := range env.storedKeys() {
				if strings.HasPrefix(k, universalStoragePrefix) {
					t.Fatalf("a refused write stored %s", k)
				}
			}
		})
	}
}

// ubRotating creates the deployment with a short rotation policy.
func (env *testEnv) ubRotating(w ubWorld) {
	env.t.Helper()
	env.mustOK(logical.CreateOperation, "universal/prod", w.data(map[string]interface{}{
		"rotation_period": "24h", "provision_ahead": "1h", "ttl": "10m", "client_exit_window": "35m",
	}))
}

func (env *testEnv) ubEnv() *logical.Response {
	env.t.Helper()
	return env.mustOK(logical.ReadOperation, "universal/prod/env", nil)
}

// TestUniversalRotationOverlap walks one rotation: create beside the old
// secret, serve it as next, switch, keep the old one valid for ttl + the
// client's exit window, then delete it by value.
func TestUniversalRotationOverlap(t *testing.T) {
	env := newTestEnv(t)
	env.configure(nil)
	w := env.universalWorld()
	env.ubRotating(w)
	if ttl := env.ubEnv().Secret.TTL; ttl != 10*time.Minute {
		t.Fatalf("lease TTL %s", ttl)
	}

	env.clock.Advance(23*time.Hour - time.Minute)
	if ttl := env.ubEnv().Secret.TTL; ttl != time.Minute {
		t.Fatalf("lease before the creation: TTL %s, want capped at it (1m)", ttl)
	}
	env.advance(2*time.Minute, time.Minute)
	read := env.ubEnv()
	next, _ := read.Data["next_client_secret"].(string)
	if next == "" || next == w.secret || read.Data["CLIENT_SECRET"] != w.secret {
		t.Fatalf("after the creation: next %q, CLIENT_SECRET %v", next, read.Data["CLIENT_SECRET"])
	}
	if got := env.snyk.InstallSecrets(w.install); !slices.Equal(got, []string{w.secret, next}) {
		t.Fatalf("install secrets %d, want the old and the next", len(got))
	}
	if _, ok := read.Data["env"].(map[string]string)["next_client_secret"]; ok {
		t.Fatal("the env map must not change at the creation (an exec-mode Agent would restart the client)")
	}

	env.advance(time.Hour, time.Minute)
	read = env.ubEnv()
	if read.Data["CLIENT_SECRET"] != next || read.Data["next_client_secret"] != nil {
		t.Fatalf("after the switch: CLIENT_SECRET %v", read.Data["CLIENT_SECRET"])
	}
	status := env.mustOK(logical.ReadOperation, "universal/prod", nil).Data
	if status["rotation_state"] != stateRetiring {
		t.Fatalf("state %v", status["rotation_state"])
	}
	if got := env.snyk.InstallSecrets(w.install); len(got) != 2 {
		t.Fatalf("the old secret must stay valid during the grace: %d secrets", len(got))
	}

	// Switched at 24:00; the old secret is deleted at 24:45 (ttl 10m +
	// client_exit_window 35m). The clock reads 24:01 here.
	env.advance(43*time.Minute, time.Minute)
	if got := env.snyk.InstallSecrets(w.install); len(got) != 2 {
		t.Fatalf("deleted before ttl + client_exit_window: %d secrets", len(got))
	}
	env.advance(2*time.Minute, time.Minute)
	if got := env.snyk.InstallSecrets(w.install); !slices.Equal(got, []string{next}) {
		t.Fatalf("after the grace: %d secrets, want only the new one", len(got))
	}
	status = env.mustOK(logical.ReadOperation, "universal/prod", nil).Data
	if status["rotation_state"] != stateActive || status["last_rotation_error"] != "" {
		t.Fatalf("status %v", status)
	}
	if c, d, r := env.snyk.InstallSecretCalls(w.install); c != 1 || d != 1 || r != 0 {
		t.Fatalf("install secret calls: %d creates, %d deletes, %d replaces", c, d, r)
	}
	env.assertNoSecretsIn("logs", env.logs.String(), w.secret, next)
}

// TestUniversalLostAnswers: a create whose answer is lost leaves Snyk with
// a secret Vault never saw; the next create meets the two-secret cap and
// the deployment says exactly why it is blocked. A delete whose answer is
// lost is settled by /oauth2/token.
func TestUniversalLostAnswers(t *testing.T) {
	t.Run("create", func(t *testing.T) {
		env := newTestEnv(t)
		env.configure(nil)
		w := env.universalWorld()
		env.ubRotating(w)
		env.snyk.Faults().Inject(snyktest.RouteInstallSecrets, fault.Fault{Status: 502, AfterHandler: true, Times: 1})
		env.clock.Advance(23*time.Hour + time.Minute)
		env.tick()
		if got := env.snyk.InstallSecrets(w.install); len(got) != 2 {
			t.Fatalf("Snyk should hold the lost secret too: %d", len(got))
		}
		if env.ubEnv().Data["next_client_secret"] != nil {
			t.Fatal("Vault serves a next secret it never received")
		}
		env.advance(time.Minute, 10*time.Second)
		status := env.mustOK(logical.ReadOperation, "universal/prod", nil).Data
		if msg := status["last_rotation_error"].(string); !strings.Contains(msg, "BLOCKED") || !strings.Contains(msg, "holds two already") {
			t.Fatalf("last_rotation_error %q", msg)
		}
		if env.ubEnv().Data["CLIENT_SECRET"] != w.secret {
			t.Fatal("the working secret must stay served")
		}
		// An operator hears of it without reading every deployment.
		rows := env.mustOK(logical.ReadOperation, "status", nil).Data["universal_attention"].([]map[string]interface{})
		if len(rows) != 1 || rows[0]["deployment"] != "prod" || !slices.Contains(rows[0]["reasons"].([]string), "blocked") {
			t.Fatalf("status universal_attention %v", rows)
		}
		metrics := string(env.mustOK(logical.ReadOperation, "metrics", nil).Data[logical.HTTPRawBody].([]byte))
		if !strings.Contains(metrics, "snyk_universal_deployments_needing_attention 1") {
			t.Fatalf("metrics lack the deployment needing attention:\n%s", metrics)
		}
	})
	t.Run("delete", func(t *testing.T) {
		env := newTestEnv(t)
		env.configure(nil)
		w := env.universalWorld()
		env.ubRotating(w)
		env.advance(24*time.Hour, 5*time.Minute)
		env.snyk.Faults().Inject(snyktest.RouteInstallSecrets, fault.Fault{Status: 502, AfterHandler: true, Times: 1})
		env.advance(50*time.Minute, time.Minute)
		if got := env.snyk.InstallSecrets(w.install); len(got) != 1 {
			t.Fatalf("install secrets %d", len(got))
		}
		status := env.mustOK(logical.ReadOperation, "universal/prod", nil).Data
		if status["rotation_state"] != stateActive {
			t.Fatalf("a delete Snyk applied but whose answer was lost must settle: %v (%v)", status["rotation_state"], status["last_rotation_error"])
		}
	})
}

// TestUniversalCreateNotStored: a secret Snyk created that storage will
// not take is deleted at Snyk again, so it never holds Snyk's second slot.
func TestUniversalCreateNotStored(t *testing.T) {
	env := newTestEnv(t)
	env.configure(nil)
	w := env.universalWorld()
	env.ubRotating(w)
	env.clock.Advance(23*time.Hour + time.Minute)
	env.view.fail("put", universalStoragePrefix, 0, 5)
	env.tick()
	env.view.clear()
	if got := env.snyk.InstallSecrets(w.install); !slices.Equal(got, []string{w.secret}) {
		t.Fatalf("install secrets %d, want the unstored one deleted again", len(got))
	}
	env.advance(time.Minute, 10*time.Second)
	if next, _ := env.ubEnv().Data["next_client_secret"].(string); next == "" {
		t.Fatal("the retry should have created and stored the next secret")
	}
}

// TestUniversalCrashRecovery: a process killed between Snyk's answer and
// the store leaves a WAL entry; recovery reports the possible extra secret.
func TestUniversalCrashRecovery(t *testing.T) {
	env := newTestEnv(t)
	env.configure(nil)
	w := env.universalWorld()
	env.ubRotating(w)
	env.clock.Advance(23*time.Hour + time.Minute)
	// The create happens; its answer never reaches storage, and the WAL
	// entry survives, as after a kill -9 between the two.
	env.snyk.Faults().Inject(snyktest.RouteInstallSecrets, fault.Fault{Reset: true, AfterHandler: true, Times: 1})
	env.tick()
	env.restart()
	status := env.mustOK(logical.ReadOperation, "universal/prod", nil).Data
	if msg := status["last_rotation_error"].(string); !strings.Contains(msg, "may hold a second secret") {
		t.Fatalf("last_rotation_error %q", msg)
	}
}

// TestUniversalScheduledCheck: a connection added at Snyk that uses a
// reference Vault holds no value for is reported by the next check, and a
// reference Vault holds that nothing uses is listed as unused.
func TestUniversalScheduledCheck(t *testing.T) {
	env := newTestEnv(t)
	env.configure(nil)
	w := env.universalWorld()
	env.mustOK(logical.CreateOperation, "universal/prod", w.data(map[string]interface{}{"check_period": "1h"}))
	env.snyk.AddCredentialReference(w.deployment, "JIRA_PASSWORD", "jira", "")
	if _, err := env.snyk.AddConnection(w.deployment, "jira", "jira", map[string]string{
		"jira_hostname": "jira.example.com", "jira_username": "bot", "jira_password": "${JIRA_PASSWORD}",
	}); err != nil {
		t.Fatal(err)
	}
	env.snyk.DeleteConnection(w.gitlabConn)
	env.advance(61*time.Minute, 5*time.Minute)
	status := env.mustOK(logical.ReadOperation, "universal/prod", nil).Data
	if got := status["missing_credentials"].([]string); !slices.Equal(got, []string{"JIRA_PASSWORD"}) {
		t.Fatalf("missing_credentials %v", got)
	}
	if got := status["unused_credentials"].([]string); !slices.Equal(got, []string{"MY_GITLAB_TOKEN"}) {
		t.Fatalf("unused_credentials %v", got)
	}
	if w := env.ubEnv().Warnings; len(w) == 0 || !strings.Contains(strings.Join(w, " "), "JIRA_PASSWORD") {
		t.Fatalf("env read warnings %v", w)
	}
	env.mustFail400(logical.DeleteOperation, "universal/prod/credentials/MY_GHE_TOKEN", nil, "used by connection ghe")
	env.mustOK(logical.DeleteOperation, "universal/prod/credentials/MY_GITLAB_TOKEN", nil)
	env.mustOK(logical.UpdateOperation, "universal/prod/credentials/JIRA_PASSWORD", map[string]interface{}{"value": "jira-secret"})
	status = env.mustOK(logical.ReadOperation, "universal/prod", nil).Data
	if got := status["missing_credentials"].([]string); len(got) != 0 {
		t.Fatalf("missing_credentials after the write %v", got)
	}
}

// TestUniversalManualRotate rotates at once; the old secret stays valid
// until its grace ends.
func TestUniversalManualRotate(t *testing.T) {
	env := newTestEnv(t)
	env.configure(nil)
	w := env.universalWorld()
	env.ubRotating(w)
	resp := env.mustOK(logical.UpdateOperation, "universal/prod/rotate", nil)
	if resp.Data["rotation_state"] != stateRetiring {
		t.Fatalf("state %v", resp.Data["rotation_state"])
	}
	served := env.ubEnv().Data["CLIENT_SECRET"].(string)
	if served == w.secret || !slices.Contains(env.snyk.InstallSecrets(w.install), w.secret) {
		t.Fatal("the new secret must be served and the old one stay valid")
	}
	env.mustFail400(logical.UpdateOperation, "universal/prod/rotate", nil, "grace period", "force=true")
	second := env.mustOK(logical.UpdateOperation, "universal/prod/rotate", map[string]interface{}{"force": true})
	if len(second.Warnings) == 0 || slices.Contains(env.snyk.InstallSecrets(w.install), w.secret) {
		t.Fatalf("a forced rotation deletes the previous secret first, with a warning: %v", second.Warnings)
	}
	env.mustFail400(logical.DeleteOperation, "universal/prod", nil, "holds a second client secret", "force=true")
}

func TestUniversalPEMCredential(t *testing.T) {
	env := newTestEnv(t)
	env.configure(nil)
	w := env.universalWorld()
	env.mustOK(logical.CreateOperation, "universal/prod", w.data(nil))
	key := testPrivateKeyPEM(t)
	env.mustFail400(logical.UpdateOperation, "universal/prod/credentials/app.pem", map[string]interface{}{"value": "not a key"}, "must be a PEM private key")
	env.mustOK(logical.UpdateOperation, "universal/prod/credentials/app.pem", map[string]interface{}{"value": key})
	if got := env.ubEnv().Data["app.pem"]; got != strings.TrimSpace(key)+"\n" {
		t.Fatalf("served PEM %q", got)
	}
}

// testPrivateKeyPEM is a fresh GitHub App style private key.
func testPrivateKeyPEM(t *testing.T) string {
	t.Helper()
	key, err := tlstest.RSAPrivateKeyPEM()
	if err != nil {
		t.Fatal(err)
	}
	return key
}

// dump renders response data for substring checks.
func dump(v interface{}) string { return fmt.Sprintf("%v", v) }

// TestUniversalCrashAtEveryStep: a kill -9 between any two steps of a
// rotation leaves a stored state (and maybe a WAL entry); a restarted
// engine finishes from it, never creating twice, never losing a working
// secret, and reporting what it cannot know.
func TestUniversalCrashAtEveryStep(t *testing.T) {
	type state struct {
		env *testEnv
		w   ubWorld
	}
	stored := func(s state) *universalEntry {
		e, err := getUniversal(context.Background(), s.env.storage, "prod")
		if err != nil || e == nil {
			s.env.t.Fatalf("stored entry: %v", err)
		}
		return e
	}
	putWAL := func(s state) {
		if _, err := framework.PutWAL(context.Background(), s.env.storage, walKindUniversalSecret,
			&universalWAL{Name: "prod", InstallID: s.w.install, StartedAt: s.env.clock.Now().UTC()}); err != nil {
			s.env.t.Fatal(err)
		}
	}
	cases := []struct {
		name string
		// crash leaves the state a kill -9 at that step leaves.
		crash func(s state)
		// then checks what the restarted engine did.
		then func(t *testing.T, s state)
	}{
		{"after the WAL entry, before the creation call", putWAL, func(t *testing.T, s state) {
			if msg := stored(s).LastRotationError; !strings.Contains(msg, "may hold a second secret") {
				t.Fatalf("the interrupted creation is not reported: %q", msg)
			}
			s.env.advance(time.Minute, 10*time.Second)
			if next, _ := s.env.ubEnv().Data["next_client_secret"].(string); next == "" {
				t.Fatal("Snyk made nothing, so the next attempt creates the secret")
			}
		}},
		{"after the creation, before storing it", func(s state) {
			putWAL(s)
			// The engine is gone: Snyk applies a create nobody reads.
			client, _ := s.env.b.snykClient(context.Background(), s.env.view)
			if _, err := client.ManageInstallSecret(context.Background(), testOrgID, s.w.install, "create", ""); err != nil {
				s.env.t.Fatal(err)
			}
		}, func(t *testing.T, s state) {
			if msg := stored(s).LastRotationError; !strings.Contains(msg, "may hold a second secret") {
				t.Fatalf("the interrupted creation is not reported: %q", msg)
			}
			s.env.advance(time.Minute, 10*time.Second)
			if msg := stored(s).LastRotationError; !strings.Contains(msg, "BLOCKED") {
				t.Fatalf("the next creation meets the cap; the deployment must say so: %q", msg)
			}
			if s.env.ubEnv().Data["CLIENT_SECRET"] != s.w.secret {
				t.Fatal("the working secret must stay served")
			}
		}},
		{"after storing the next secret, before deleting the WAL entry", func(s state) {
			s.env.tick()
			putWAL(s)
			// The entry is older than the stored secret: recovery has nothing to add.
			s.env.clock.Advance(-time.Second)
		}, func(t *testing.T, s state) {
			e := stored(s)
			if e.NextClientSecret == "" || e.LastRotationError != "" {
				t.Fatalf("next %v, error %q", e.NextClientSecret != "", e.LastRotationError)
			}
		}},
		{"before storing the switch", func(s state) {
			s.env.tick()
			s.env.clock.Advance(time.Hour)
		}, func(t *testing.T, s state) {
			next := stored(s).NextClientSecret
			s.env.tick()
			if got := s.env.ubEnv().Data["CLIENT_SECRET"]; got != next {
				t.Fatal("the held next secret is switched to by the restarted engine")
			}
			if c, _, _ := s.env.snyk.InstallSecretCalls(s.w.install); c != 1 {
				t.Fatalf("%d creations, want 1", c)
			}
		}},
		{"after the deletion at Snyk, before storing it", func(s state) {
			s.env.tick()
			s.env.advance(time.Hour, time.Minute)
			prev := stored(s).PreviousClientSecret
			client, _ := s.env.b.snykClient(context.Background(), s.env.view)
			if _, err := client.ManageInstallSecret(context.Background(), testOrgID, s.w.install, "delete", prev); err != nil {
				s.env.t.Fatal(err)
			}
			s.env.clock.Advance(45 * time.Minute)
		}, func(t *testing.T, s state) {
			s.env.tick()
			e := stored(s)
			if e.PreviousClientSecret != "" || e.RotationState != stateActive || e.LastRotationError != "" {
				t.Fatalf("the deleted secret must be settled by /oauth2/token: state %s, error %q", e.RotationState, e.LastRotationError)
			}
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			env := newTestEnv(t)
			env.configure(nil)
			w := env.universalWorld()
			env.ubRotating(w)
			env.clock.Advance(23*time.Hour + time.Minute)
			s := state{env: env, w: w}
			tc.crash(s)
			env.restart()
			tc.then(t, s)
		})
	}
}

// TestUniversalNextStep: what the schedule queues is what runs, and a
// failure's back-off delays a step without making one due by itself (a
// stale RetryAt once made the loop spin).
func TestUniversalNextStep(t *testing.T) {
	t0 := time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)
	p := policy{TTL: 10 * time.Minute, RotationPeriod: 24 * time.Hour, ProvisionAhead: time.Hour}
	off := p
	off.DisableAutomatedRotation = true
	cases := []struct {
		name string
		e    universalEntry
		p    policy
		step universalStep
		at   time.Time
	}{
		{"idle: create ahead of the switch", universalEntry{NextVaultRotation: t0}, p, stepCreate, t0.Add(-time.Hour)},
		{"a failed create waits for its retry", universalEntry{NextVaultRotation: t0, RetryAt: t0.Add(time.Minute)}, p, stepCreate, t0.Add(time.Minute)},
		{"disabled: a stale retry makes nothing due", universalEntry{NextVaultRotation: t0, RetryAt: t0.Add(-time.Hour)}, off, stepNone, time.Time{}},
		{"an unproven next secret is verified first", universalEntry{NextClientSecret: "n", NextCreatedAt: t0, NextVaultRotation: t0.Add(time.Hour)}, p, stepVerify, t0},
		{"a proven next secret is switched to on time", universalEntry{NextClientSecret: "n", NextVerifiedAt: t0, NextVaultRotation: t0.Add(time.Hour)}, p, stepSwitch, t0.Add(time.Hour)},
		{"disabled: a held next secret is still switched to", universalEntry{NextClientSecret: "n", NextVerifiedAt: t0, NextVaultRotation: t0.Add(time.Hour)}, off, stepSwitch, t0.Add(time.Hour)},
		{"the previous secret goes before any creation", universalEntry{PreviousClientSecret: "o", RetirePreviousAt: t0.Add(45 * time.Minute), NextVaultRotation: t0}, p, stepRetire, t0.Add(45 * time.Minute)},
		{"a failed retire waits for its retry", universalEntry{PreviousClientSecret: "o", RetirePreviousAt: t0, RetryAt: t0.Add(time.Minute)}, p, stepRetire, t0.Add(time.Minute)},
	}
	for _, tc := range cases {
		step, at := tc.e.nextStep(tc.p)
		if step != tc.step || !at.Equal(tc.at) {
			t.Errorf("%s: step %d at %s, want %d at %s", tc.name, step, at, tc.step, tc.at)
		}
	}
}

// TestUniversalNeverServesARefusedSecret: a next secret that could not be
// proven at its creation (token endpoint down) and is gone by its switch
// (deleted outside Vault) is never served; the working secret stays, and
// the rotation starts over.
func TestUniversalNeverServesARefusedSecret(t *testing.T) {
	env := newTestEnv(t)
	env.configure(nil)
	w := env.universalWorld()
	env.ubRotating(w)
	env.clock.Advance(23*time.Hour + time.Minute)
	env.snyk.Faults().Inject(snyktest.RouteOAuthToken, fault.Fault{Status: 503})
	env.tick()
	env.snyk.Faults().Clear()
	e, _ := getUniversal(context.Background(), env.storage, "prod")
	if e.NextClientSecret == "" || !e.NextVerifiedAt.IsZero() {
		t.Fatalf("setup: want an unproven next secret, got next %v verified %v", e.NextClientSecret != "", e.NextVerifiedAt)
	}
	client, _ := env.b.snykClient(context.Background(), env.view)
	if _, err := client.ManageInstallSecret(context.Background(), testOrgID, w.install, "delete", e.NextClientSecret); err != nil {
		t.Fatal(err)
	}
	env.advance(time.Hour, time.Minute)
	if got := env.ubEnv().Data["CLIENT_SECRET"]; got != w.secret {
		t.Fatal("a secret the token endpoint refuses was served")
	}
	env.advance(10*time.Minute, time.Minute)
	read := env.ubEnv()
	if got := read.Data["CLIENT_SECRET"].(string); got == w.secret || !slices.Contains(env.snyk.InstallSecrets(w.install), got) {
		t.Fatalf("the rotation did not start over with a working secret (served the old one: %v)", got == w.secret)
	}
}

// TestUniversalRetireNeedsAWorkingSecret: the old secret is never deleted
// while the served one is refused (replaced outside Vault); writing the
// replacement as client_secret recovers, dropping the secrets the replace
// killed.
func TestUniversalRetireNeedsAWorkingSecret(t *testing.T) {
	env := newTestEnv(t)
	env.configure(nil)
	w := env.universalWorld()
	env.ubRotating(w)
	env.advance(24*time.Hour+time.Minute, 5*time.Minute)
	served := env.ubEnv().Data["CLIENT_SECRET"].(string)
	client, _ := env.b.snykClient(context.Background(), env.view)
	if _, err := client.ManageInstallSecret(context.Background(), testOrgID, w.install, "delete", served); err != nil {
		t.Fatal(err)
	}
	env.advance(50*time.Minute, time.Minute)
	status := env.mustOK(logical.ReadOperation, "universal/prod", nil).Data
	if !slices.Contains(env.snyk.InstallSecrets(w.install), w.secret) || !strings.Contains(status["last_rotation_error"].(string), "refuses CLIENT_SECRET") {
		t.Fatalf("the previous secret must be kept while the served one is refused: %v", status["last_rotation_error"])
	}
	replacement := env.snyk.ReplaceInstallSecretOutsideVault(w.install)
	env.mustOK(logical.UpdateOperation, "universal/prod", map[string]interface{}{"client_secret": replacement})
	status = env.mustOK(logical.ReadOperation, "universal/prod", nil).Data
	if status["rotation_state"] != stateActive || status["last_rotation_error"] != "" || env.ubEnv().Data["CLIENT_SECRET"] != replacement {
		t.Fatalf("after the recovery write: state %v, error %v", status["rotation_state"], status["last_rotation_error"])
	}
}
