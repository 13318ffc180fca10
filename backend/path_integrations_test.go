package backend

import (
	"encoding/json"
	"net/url"
	"reflect"
	"sort"
	"strings"
	"testing"

	"github.com/hashicorp/vault/sdk/logical"

	"github.com/snyk-vault/vault-plugin-secrets-snyk/backend/snyk/snyktest"
)

func hostOf(t *testing.T, raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	return u.Host
}

// TestIntegrationEnablePerSCM creates an integration of every SCM on a
// not-yet-brokered Snyk integration: the SCM credential is validated, Broker
// is enabled, the token Snyk returns is captured and served with the exact
// env map the Broker client's template for that SCM expects.
func TestIntegrationEnablePerSCM(t *testing.T) {
	env := newTestEnv(t)
	env.configure(nil)
	cases := []struct {
		scm     string
		wantEnv func(token string) map[string]string
		scopes  []string
	}{
		{"github", func(tok string) map[string]string {
			h := hostOf(t, env.githubURL)
			return map[string]string{"GITHUB_TOKEN": ghGood, "GITHUB": "github.com", "GITHUB_API": h, "GITHUB_GRAPHQL": h}
		}, []string{"admin:repo_hook", "read:org", "repo"}},
		{"github-enterprise", func(tok string) map[string]string {
			h := hostOf(t, env.gheURL)
			return map[string]string{"GITHUB_TOKEN": gheGood, "GITHUB": h, "GITHUB_API": h + "/api/v3", "GITHUB_GRAPHQL": h + "/api"}
		}, []string{"admin:org", "admin:repo_hook", "repo"}},
		{"gitlab", func(tok string) map[string]string {
			return map[string]string{"GITLAB_TOKEN": glGood, "GITLAB": hostOf(t, env.gitlabURL)}
		}, nil},
		{"azure-repos", func(tok string) map[string]string {
			return map[string]string{"AZURE_REPOS_TOKEN": azGood, "AZURE_REPOS_ORG": "contoso", "AZURE_REPOS_HOST": hostOf(t, env.azureURL)}
		}, nil},
		{"bitbucket-server", func(tok string) map[string]string {
			h := hostOf(t, env.bbURL)
			return map[string]string{"BITBUCKET_USERNAME": bbUser, "BITBUCKET_PASSWORD": bbPassword, "BITBUCKET": h, "BITBUCKET_API": h + "/rest/api/1.0"}
		}, nil},
	}
	for _, tc := range cases {
		t.Run(tc.scm, func(t *testing.T) {
			integID, _ := env.snyk.AddIntegration(testOrgID, tc.scm, false)
			path := "integrations/" + testOrgID + "/" + tc.scm
			resp := env.mustOK(logical.CreateOperation, path, env.integrationData(tc.scm))
			if resp.Data["integration_id"] != integID || resp.Data["rotation_state"] != stateActive || resp.Data["token_source"] != sourceEnabled {
				t.Fatalf("create response: %v", resp.Data)
			}
			if !env.snyk.Brokered(integID) {
				t.Fatal("Broker was not enabled at Snyk")
			}
			snykToken := env.snyk.CurrentToken(integID)

			read := env.mustOK(logical.ReadOperation, path, nil)
			raw, _ := json.Marshal(read.Data)
			env.assertNoSecretsIn("integration read", string(raw), snykToken)
			if read.Data["broker_token_fingerprint"] != fingerprint(snykToken) {
				t.Errorf("fingerprint = %v", read.Data["broker_token_fingerprint"])
			}
			if read.Data["scm_validated_at"] == nil {
				t.Error("scm_validated_at not set")
			}
			if tc.scopes != nil && !reflect.DeepEqual(read.Data["scm_scopes"], tc.scopes) {
				t.Errorf("scm_scopes = %v, want %v", read.Data["scm_scopes"], tc.scopes)
			}

			broker := env.mustOK(logical.ReadOperation, "broker/"+testOrgID+"/"+tc.scm, nil)
			if broker.Data["broker_token"] != snykToken {
				t.Fatalf("served token is not the one Snyk issued")
			}
			want := tc.wantEnv(snykToken)
			want["BROKER_TOKEN"] = snykToken
			want["BROKER_SERVER_URL"] = "https://broker.snyk.io"
			if got := broker.Data["env"].(map[string]string); !reflect.DeepEqual(got, want) {
				t.Errorf("env =\n %v\nwant\n %v", redactEnv(got), redactEnv(want))
			}
		})
	}
	env.assertNoSecretsIn("logs", env.logs.String())
	// A token never goes into a URL (access logs, proxies keep URLs).
	if got := env.gitlab.TokensInURL(); len(got) != 0 {
		t.Errorf("the GitLab token was sent in a URL %d time(s)", len(got))
	}
}

func redactEnv(m map[string]string) []string {
	var out []string
	for k, v := range m {
		if strings.Contains(k, "TOKEN") || strings.Contains(k, "PASSWORD") || strings.Contains(k, "PAT") {
			v = "<" + fingerprint(v) + ">"
		}
		out = append(out, k+"="+v)
	}
	sort.Strings(out)
	return out
}

// TestIntegrationDefaultsEnv checks the env map against the Broker's own
// defaults for hosted SCMs (api.github.com, gitlab.com, dev.azure.com), with
// an imported token and no SCM call.
func TestIntegrationDefaultsEnv(t *testing.T) {
	env := newTestEnv(t)
	env.configure(nil)
	importTok := "4a18d42f-0706-4ad0-b127-24078731fbed"
	cases := map[string]struct {
		data map[string]interface{}
		want map[string]string
	}{
		"github": {map[string]interface{}{"scm_token": ghGood},
			map[string]string{"GITHUB_TOKEN": ghGood, "GITHUB": "github.com", "GITHUB_API": "api.github.com", "GITHUB_GRAPHQL": "api.github.com"}},
		"github-enterprise": {map[string]interface{}{"scm_token": gheGood, "scm_url": "https://ghe.example.com/"},
			map[string]string{"GITHUB_TOKEN": gheGood, "GITHUB": "ghe.example.com", "GITHUB_API": "ghe.example.com/api/v3", "GITHUB_GRAPHQL": "ghe.example.com/api"}},
		"gitlab": {map[string]interface{}{"scm_token": glGood},
			map[string]string{"GITLAB_TOKEN": glGood, "GITLAB": "gitlab.com"}},
		"azure-repos": {map[string]interface{}{"scm_token": azGood, "azure_org": "contoso"},
			map[string]string{"AZURE_REPOS_TOKEN": azGood, "AZURE_REPOS_ORG": "contoso", "AZURE_REPOS_HOST": "dev.azure.com"}},
		"bitbucket-server": {map[string]interface{}{"scm_token": bbToken, "scm_url": "https://bitbucket.example.com", "broker_client_url": "http://snyk-broker:8000"},
			map[string]string{"BITBUCKET_PAT": bbToken, "BITBUCKET": "bitbucket.example.com", "BITBUCKET_API": "bitbucket.example.com/rest/api/1.0", "BROKER_CLIENT_URL": "http://snyk-broker:8000"}},
	}
	for kind, tc := range cases {
		t.Run(kind, func(t *testing.T) {
			env.snyk.AddIntegration(testOrgID, kind, true)
			data := tc.data
			data["broker_token"] = importTok
			data["skip_scm_validation"] = true
			resp := env.mustOK(logical.CreateOperation, "integrations/"+testOrgID+"/"+kind, data)
			if len(resp.Warnings) == 0 {
				t.Error("no warning about skipped SCM validation")
			}
			broker := env.mustOK(logical.ReadOperation, "broker/"+testOrgID+"/"+kind, nil)
			want := tc.want
			want["BROKER_TOKEN"] = importTok
			want["BROKER_SERVER_URL"] = "https://broker.snyk.io"
			if got := broker.Data["env"].(map[string]string); !reflect.DeepEqual(got, want) {
				t.Errorf("env =\n %v\nwant\n %v", redactEnv(got), redactEnv(want))
			}
		})
	}
	if n := env.github.Faults().TotalCalls() + env.gitlab.Faults().TotalCalls(); n != 0 {
		t.Errorf("skip_scm_validation still called the SCM %d times", n)
	}
}

func TestIntegrationImport(t *testing.T) {
	env := newTestEnv(t)
	env.configure(nil)
	integID, current := env.snyk.AddIntegration(testOrgID, "github", true)
	env.snyk.Faults().ResetCalls()

	data := env.integrationData("github")
	data["broker_token"] = strings.ToUpper(current)
	resp := env.mustOK(logical.CreateOperation, "integrations/"+testOrgID+"/github", data)
	if resp.Data["token_source"] != sourceImported || resp.Data["integration_id"] != integID || resp.Data["rotation_state"] != stateActive {
		t.Fatalf("create: %v", resp.Data)
	}
	broker := env.mustOK(logical.ReadOperation, "broker/"+testOrgID+"/github", nil)
	if broker.Data["broker_token"] != current {
		t.Errorf("served %v, want the imported token (lower-cased)", broker.Data["broker_token"])
	}
	// Import never provisions or enables anything at Snyk.
	for _, r := range []string{snyktest.RouteProvisionToken, snyktest.RouteUpdateIntegration, snyktest.RouteAddIntegration, snyktest.RouteSwitchToken} {
		if n := env.snyk.Faults().Calls(r); n != 0 {
			t.Errorf("import called %s %d times", r, n)
		}
	}
}

// TestIntegrationAdoption: the integration is already brokered with a token
// Vault does not hold. Vault provisions a provisional token, stores it and
// serves it; the switch is left for the schedule.
func TestIntegrationAdoption(t *testing.T) {
	env := newTestEnv(t)
	env.configure(map[string]interface{}{"rotation_period": "24h", "ttl": "1h"})
	integID, oldToken := env.snyk.AddIntegration(testOrgID, "github", true)

	resp := env.mustOK(logical.CreateOperation, "integrations/payments/github", mergeData(env.integrationData("github"), map[string]interface{}{"org_id": testOrgID}))
	if resp.Data["rotation_state"] != stateProvisioned || resp.Data["token_source"] != sourceAdopted {
		t.Fatalf("create: %v", resp.Data)
	}
	if len(resp.Warnings) == 0 || !strings.Contains(resp.Warnings[0], "already brokered") {
		t.Errorf("warnings: %v", resp.Warnings)
	}
	provisional := env.snyk.ProvisionalToken(integID)
	if provisional == "" || provisional == oldToken {
		t.Fatalf("no provisional token at Snyk")
	}
	if env.snyk.CurrentToken(integID) != oldToken {
		t.Error("adoption switched the token; the switch belongs to the schedule")
	}
	if n := env.snyk.Faults().Calls(snyktest.RouteUpdateIntegration); n != 0 {
		t.Errorf("adoption called PUT (enable Broker) %d times on a brokered integration", n)
	}
	broker := env.mustOK(logical.ReadOperation, "broker/payments/github", nil)
	if broker.Data["broker_token"] != provisional || broker.Data["next_broker_token"] != provisional {
		t.Errorf("served broker_token/next_broker_token are not the provisional token")
	}
	if broker.Data["next_switch_at"] == nil || broker.Data["next_switch_at"] != broker.Data["next_vault_rotation"] {
		t.Errorf("next_switch_at = %v, next_vault_rotation = %v", broker.Data["next_switch_at"], broker.Data["next_vault_rotation"])
	}
}

func TestIntegrationCreatesBrokeredIntegrationWhenOrgHasNone(t *testing.T) {
	env := newTestEnv(t)
	env.configure(nil)
	resp := env.mustOK(logical.CreateOperation, "integrations/"+testOrgID+"/gitlab", env.integrationData("gitlab"))
	integID := env.snyk.IntegrationIDs(testOrgID)["gitlab"]
	if integID == "" || resp.Data["integration_id"] != integID || !env.snyk.Brokered(integID) {
		t.Fatalf("no brokered gitlab integration was created: %v", resp.Data)
	}
	broker := env.mustOK(logical.ReadOperation, "broker/"+testOrgID+"/gitlab", nil)
	if broker.Data["broker_token"] != env.snyk.CurrentToken(integID) {
		t.Error("served token differs from Snyk's")
	}
}

func TestIntegrationSlugNameAndLists(t *testing.T) {
	env := newTestEnv(t)
	env.configure(nil)
	env.snyk.AddIntegration(testOrgID, "github", false)
	env.snyk.AddIntegration(testOrgID, "gitlab", false)
	env.snyk.AddIntegration(testOtherOrgID, "github", false)
	env.mustOK(logical.CreateOperation, "integrations/payments/github", mergeData(env.integrationData("github"), map[string]interface{}{"org_id": testOrgID}))
	env.mustOK(logical.CreateOperation, "integrations/payments/gitlab", mergeData(env.integrationData("gitlab"), map[string]interface{}{"org_id": testOrgID}))
	env.mustOK(logical.CreateOperation, "integrations/"+testOtherOrgID+"/github", env.integrationData("github"))

	orgs := env.mustOK(logical.ListOperation, "integrations/", nil)
	if got := orgs.Data["keys"]; !reflect.DeepEqual(got, []string{testOtherOrgID + "/", "payments/"}) {
		t.Errorf("orgs = %v", got)
	}
	scms := env.mustOK(logical.ListOperation, "integrations/payments/", nil)
	if got := scms.Data["keys"]; !reflect.DeepEqual(got, []string{"github", "gitlab"}) {
		t.Errorf("scms = %v", got)
	}
	read := env.mustOK(logical.ReadOperation, "integrations/payments/github", nil)
	if read.Data["org_id"] != testOrgID {
		t.Errorf("org_id = %v", read.Data["org_id"])
	}

	// Delete forgets it in Vault only.
	integID := read.Data["integration_id"].(string)
	token := env.snyk.CurrentToken(integID)
	env.mustOK(logical.DeleteOperation, "integrations/payments/github", nil)
	if resp, _ := env.request(logical.ReadOperation, "broker/payments/github", nil); resp != nil {
		t.Errorf("broker read after delete: %v", resp)
	}
	if !env.snyk.Brokered(integID) || env.snyk.CurrentToken(integID) != token {
		t.Error("delete changed the integration at Snyk")
	}
}

func mergeData(a, b map[string]interface{}) map[string]interface{} {
	out := map[string]interface{}{}
	for k, v := range a {
		out[k] = v
	}
	for k, v := range b {
		out[k] = v
	}
	return out
}

// TestIntegrationBadInput: every bad input of the interface is a 400 naming
// the field, and nothing is stored or called upstream.
func TestIntegrationBadInput(t *testing.T) {
	env := newTestEnv(t)
	env.configure(nil)
	env.snyk.AddIntegration(testOrgID, "github", false)
	gh := env.integrationData("github")
	org := "integrations/" + testOrgID + "/"
	cases := []struct {
		name string
		path string
		data map[string]interface{}
		want []string
	}{
		{"unknown scm", org + "bitbucket-cloud", gh, []string{"scm", "bitbucket-cloud", "github-enterprise"}},
		{"bad name", "integrations/Payments!/github", gh, []string{"name", "slug"}},
		{"slug without org_id", "integrations/payments/github", gh, []string{"org_id", "required"}},
		{"non-UUID org_id", "integrations/payments/github", mergeData(gh, map[string]interface{}{"org_id": "payments-org"}), []string{"org_id", "UUID"}},
		{"non-UUID integration_id", org + "github", mergeData(gh, map[string]interface{}{"integration_id": "42"}), []string{"integration_id", "UUID"}},
		{"http scm_url", org + "github-enterprise", map[string]interface{}{"scm_token": gheGood, "scm_url": "http://ghe.example.com"}, []string{"scm_url", "https"}},
		{"http scm_api_url", org + "github", mergeData(gh, map[string]interface{}{"scm_api_url": "http://api.github.com"}), []string{"scm_api_url", "https"}},
		{"missing scm_url for GHE", org + "github-enterprise", map[string]interface{}{"scm_token": gheGood}, []string{"scm_url", "required"}},
		{"missing scm_url for bitbucket", org + "bitbucket-server", map[string]interface{}{"scm_token": bbToken}, []string{"scm_url", "required"}},
		{"missing azure_org", org + "azure-repos", map[string]interface{}{"scm_token": azGood}, []string{"azure_org", "required"}},
		{"azure_org elsewhere", org + "github", mergeData(gh, map[string]interface{}{"azure_org": "contoso"}), []string{"azure_org", "azure-repos"}},
		{"missing scm_token", org + "github", map[string]interface{}{}, []string{"scm_token", "required"}},
		{"token and basic auth", org + "bitbucket-server", map[string]interface{}{"scm_token": bbToken, "scm_username": bbUser, "scm_password": bbPassword, "scm_url": env.bbURL}, []string{"scm_token", "scm_username"}},
		{"basic auth without password", org + "bitbucket-server", map[string]interface{}{"scm_username": bbUser, "scm_url": env.bbURL}, []string{"scm_username", "scm_password"}},
		{"basic auth on github", org + "github", map[string]interface{}{"scm_username": "u", "scm_password": "p"}, []string{"scm_username", "bitbucket-server"}},
		{"non-UUID broker_token", org + "github", mergeData(gh, map[string]interface{}{"broker_token": "not-a-token"}), []string{"broker_token", "UUID"}},
		{"period and schedule", org + "github", mergeData(gh, map[string]interface{}{"rotation_period": "24h", "rotation_schedule": "0 3 * * *"}), []string{"rotation_period", "rotation_schedule", "mutually exclusive"}},
		{"window without schedule", org + "github", mergeData(gh, map[string]interface{}{"rotation_window": "2h"}), []string{"rotation_window", "rotation_schedule"}},
		{"window under 1h", org + "github", mergeData(gh, map[string]interface{}{"rotation_schedule": "0 3 * * *", "rotation_window": "30m"}), []string{"rotation_window", "1h"}},
		{"bad cron", org + "github", mergeData(gh, map[string]interface{}{"rotation_schedule": "every day"}), []string{"rotation_schedule", "cron"}},
		{"provision_ahead over period", org + "github", mergeData(gh, map[string]interface{}{"rotation_period": "30m"}), []string{"provision_ahead", "rotation_period"}},
		{"provision_ahead over cron gap", org + "github", mergeData(gh, map[string]interface{}{"rotation_schedule": "*/30 * * * *"}), []string{"provision_ahead", "rotation_schedule"}},
		{"bad broker_client_url", org + "github", mergeData(gh, map[string]interface{}{"broker_client_url": "snyk-broker:8000"}), []string{"broker_client_url"}},
		{"broker_client_url with credentials", org + "github", mergeData(gh, map[string]interface{}{"broker_client_url": "http://user:pw@snyk-broker:8000"}), []string{"broker_client_url", "credentials"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			snykBefore, ghBefore := env.snyk.Faults().TotalCalls(), env.github.Faults().TotalCalls()
			msg := env.mustFail400(logical.UpdateOperation, tc.path, tc.data, tc.want...)
			env.assertNoSecretsIn("error", msg)
			for _, k := range env.storedKeys() {
				if k != configStoragePath {
					t.Errorf("stored %s", k)
				}
			}
			if env.snyk.Faults().TotalCalls() != snykBefore || env.github.Faults().TotalCalls() != ghBefore {
				t.Error("bad input reached an upstream")
			}
		})
	}
}

func TestIntegrationRequiresConfig(t *testing.T) {
	env := newTestEnv(t)
	env.mustFail400(logical.UpdateOperation, "integrations/"+testOrgID+"/github", env.integrationData("github"), "snyk/config")
}

// TestIntegrationSCMRejectedStoresNothing: a credential the SCM rejects stops
// the create before any Snyk side effect.
func TestIntegrationSCMRejectedStoresNothing(t *testing.T) {
	env := newTestEnv(t)
	env.configure(nil)
	const noHook = "ghp_nohook000000000000000000000000000000"
	env.github.AddToken(noHook, scmtestGitHubToken("octocat", "repo", "read:org"))
	integID, _ := env.snyk.AddIntegration(testOrgID, "github", false)
	env.snyk.Faults().ResetCalls()

	env.mustFail400(logical.CreateOperation, "integrations/"+testOrgID+"/github",
		map[string]interface{}{"scm_token": noHook, "scm_api_url": env.githubURL}, "admin:repo_hook")
	env.mustFail400(logical.CreateOperation, "integrations/"+testOrgID+"/github",
		map[string]interface{}{"scm_token": "ghp_unknown0000000000000000000000000000", "scm_api_url": env.githubURL}, "Bad credentials")
	for _, k := range env.storedKeys() {
		if k != configStoragePath {
			t.Errorf("stored %s", k)
		}
	}
	if env.snyk.Faults().TotalCalls() != 0 || env.snyk.Brokered(integID) {
		t.Errorf("Snyk was called after the SCM check failed: %s", env.snyk.Faults())
	}
	env.assertNoSecretsIn("logs", env.logs.String(), noHook)
}

// TestIntegrationSnykFailureStoresNothing: Snyk refusing the provision (a
// provisional token already blocks the group) stores nothing.
func TestIntegrationSnykFailureStoresNothing(t *testing.T) {
	env := newTestEnv(t)
	env.configure(nil)
	blocker, _ := env.snyk.AddIntegration(testOtherOrgID, "github", true)
	env.mustOK(logical.CreateOperation, "integrations/"+testOtherOrgID+"/github", env.integrationData("github"))
	if env.snyk.ProvisionalToken(blocker) == "" {
		t.Fatal("setup: no provisional token")
	}
	env.snyk.AddIntegration(testOrgID, "github", true)
	// The engine knows which of its integrations holds the group's slot.
	env.mustFail400(logical.CreateOperation, "integrations/"+testOrgID+"/github", env.integrationData("github"), "already brokered", testOtherOrgID+"/github", "group")
	if e, _ := getIntegration(t.Context(), env.storage, testOrgID, "github"); e != nil {
		t.Error("stored the integration after Snyk refused")
	}
	// An unknown org is named.
	env.mustFail400(logical.CreateOperation, "integrations/payments/github",
		mergeData(env.integrationData("github"), map[string]interface{}{"org_id": "9f9f9f9f-1111-4222-8333-444444444444"}), "org_id")
}

func TestIntegrationUpdate(t *testing.T) {
	env := newTestEnv(t)
	env.configure(nil)
	env.snyk.AddIntegration(testOrgID, "github", false)
	path := "integrations/" + testOrgID + "/github"
	env.mustOK(logical.CreateOperation, path, env.integrationData("github"))
	before := env.mustOK(logical.ReadOperation, "broker/"+testOrgID+"/github", nil).Data["broker_token"]
	env.snyk.Faults().ResetCalls()

	resp := env.mustOK(logical.UpdateOperation, path, map[string]interface{}{"ttl": "10m", "rotation_schedule": "0 3 * * 1", "rotation_window": "2h"})
	if resp.Data["ttl"] != int64(600) || resp.Data["rotation_schedule"] != "0 3 * * 1" || resp.Data["rotation_window"] != int64(7200) {
		t.Errorf("update: %v", resp.Data)
	}
	if _, has := resp.Data["rotation_period"]; has {
		t.Error("a schedule-based integration reports rotation_period")
	}
	after := env.mustOK(logical.ReadOperation, "broker/"+testOrgID+"/github", nil).Data["broker_token"]
	if before != after || env.snyk.Faults().TotalCalls() != 0 {
		t.Error("a settings update touched the token or Snyk")
	}
	env.mustFail400(logical.UpdateOperation, path, map[string]interface{}{"org_id": testOtherOrgID}, "org_id", "cannot change")
	// A new SCM token is validated again.
	env.mustFail400(logical.UpdateOperation, path, map[string]interface{}{"scm_token": "ghp_unknown0000000000000000000000000000"}, "Bad credentials")
}
