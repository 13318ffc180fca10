package e2e

import (
	"strings"
	"testing"
)

// scmCase is one integration created against one of the simulator's fakes.
type scmCase struct {
	name, scm string
	// data is the integration write (org_id is added by the test).
	data map[string]interface{}
	// env is the exact env map expected besides BROKER_TOKEN and
	// BROKER_SERVER_URL.
	env map[string]string
	// cred is the SCM credential expected in the broker read.
	cred map[string]string
	// apiURL is the effective scm_api_url the integration read reports.
	apiURL string
	// fake is the simulator's name of the SCM fake (for GET /seen).
	fake string
}

func scmCases(t *testing.T, s *stack) []scmCase {
	i := s.sim.info
	gh, ghe, gl, az, bb := hostOf(t, i.GitHubURL), hostOf(t, i.GHEURL), hostOf(t, i.GitLabURL), hostOf(t, i.AzureURL), hostOf(t, i.BitbucketURL)
	return []scmCase{
		{
			fake: "github", name: "scm-github", scm: "github",
			data: map[string]interface{}{"scm_token": i.GitHubToken, "scm_api_url": i.GitHubURL, "broker_client_url": "http://broker-gh.internal:8000"},
			env: map[string]string{
				"BROKER_CLIENT_URL": "http://broker-gh.internal:8000",
				"GITHUB_TOKEN":      i.GitHubToken, "GITHUB": "github.com", "GITHUB_API": gh, "GITHUB_GRAPHQL": gh,
			},
			cred: map[string]string{"scm_token": i.GitHubToken}, apiURL: i.GitHubURL,
		},
		{
			fake: "ghe", name: "scm-ghe", scm: "github-enterprise",
			data: map[string]interface{}{"scm_token": i.GHEToken, "scm_url": i.GHEURL},
			env: map[string]string{
				"GITHUB_TOKEN": i.GHEToken, "GITHUB": ghe, "GITHUB_API": ghe + "/api/v3", "GITHUB_GRAPHQL": ghe + "/api",
			},
			cred: map[string]string{"scm_token": i.GHEToken}, apiURL: i.GHEURL + "/api/v3",
		},
		{
			fake: "gitlab", name: "scm-gitlab", scm: "gitlab",
			data: map[string]interface{}{"scm_token": i.GitLabToken, "scm_url": i.GitLabURL},
			env:  map[string]string{"GITLAB_TOKEN": i.GitLabToken, "GITLAB": gl},
			cred: map[string]string{"scm_token": i.GitLabToken}, apiURL: i.GitLabURL + "/api/v4",
		},
		{
			fake: "azure", name: "scm-azure", scm: "azure-repos",
			data: map[string]interface{}{"scm_token": i.AzureToken, "scm_url": i.AzureURL, "azure_org": i.AzureOrg},
			env:  map[string]string{"AZURE_REPOS_TOKEN": i.AzureToken, "AZURE_REPOS_ORG": i.AzureOrg, "AZURE_REPOS_HOST": az},
			cred: map[string]string{"scm_token": i.AzureToken}, apiURL: i.AzureURL,
		},
		{
			fake: "bitbucket", name: "scm-bitbucket-basic", scm: "bitbucket-server",
			data: map[string]interface{}{
				"scm_username": i.BitbucketUsername, "scm_password": i.BitbucketPassword, "scm_url": i.BitbucketURL,
				"broker_client_url": "http://broker-bb.internal:8000",
			},
			env: map[string]string{
				"BROKER_CLIENT_URL":  "http://broker-bb.internal:8000",
				"BITBUCKET_USERNAME": i.BitbucketUsername, "BITBUCKET_PASSWORD": i.BitbucketPassword,
				"BITBUCKET": bb, "BITBUCKET_API": bb + "/rest/api/1.0",
			},
			cred:   map[string]string{"scm_username": i.BitbucketUsername, "scm_password": i.BitbucketPassword},
			apiURL: i.BitbucketURL,
		},
		{
			fake: "bitbucket", name: "scm-bitbucket-token", scm: "bitbucket-server",
			data: map[string]interface{}{"scm_token": i.BitbucketToken, "scm_url": i.BitbucketURL},
			env:  map[string]string{"BITBUCKET_PAT": i.BitbucketToken, "BITBUCKET": bb, "BITBUCKET_API": bb + "/rest/api/1.0"},
			cred: map[string]string{"scm_token": i.BitbucketToken}, apiURL: i.BitbucketURL,
		},
	}
}

// TestIntegrationsEverySCM creates one integration per SCM (Bitbucket with
// basic auth and with a bearer token) against the simulator's fakes, each in
// a fresh Snyk org holding a not-yet-brokered integration, and checks the
// integration read and the leased broker read against the fake Snyk's state.
func TestIntegrationsEverySCM(t *testing.T) {
	s := sharedStack(t)
	cfg := s.read(t, mountPath+"/config")
	brokerServerURL := str(cfg.Data["broker_server_url"])
	if brokerServerURL != "https://broker.snyk.io" {
		t.Errorf("config broker_server_url = %q, want the SNYK-US-01 default https://broker.snyk.io", brokerServerURL)
	}

	for _, tc := range scmCases(t, s) {
		t.Run(tc.name, func(t *testing.T) {
			orgID := newUUID(t)
			s.sim.addOrg(t, orgID, "e2e "+tc.name)
			integrationID, preToken := s.sim.addIntegration(t, orgID, tc.scm, false)
			if preToken != "" {
				t.Fatalf("fresh integration already has a Broker token %q", preToken)
			}
			data := map[string]interface{}{"org_id": orgID, "ttl": "15m"}
			for k, v := range tc.data {
				data[k] = v
			}
			ipath := mountPath + "/integrations/" + tc.name + "/" + tc.scm
			s.write(t, ipath, data)

			// The credential was checked against the fake at the given URL.
			secret := tc.cred["scm_token"] + tc.cred["scm_password"]
			if seen := s.sim.seen(t, tc.fake); !contains(seen, secret) {
				t.Errorf("the %s fake never saw the configured credential (seen %d others)", tc.fake, len(seen))
			}

			// Snyk's side: Broker enabled on exactly that integration.
			simIn := s.sim.integration(t, orgID, tc.scm)
			if simIn.ID != integrationID || !simIn.Brokered || simIn.CurrentToken == "" || simIn.ProvisionalToken != "" {
				t.Fatalf("simulator integration after create = %+v, want id %s brokered with a current token and no provisional one", simIn, integrationID)
			}
			token := simIn.CurrentToken

			in := s.read(t, ipath)
			wantIn := map[string]interface{}{
				"name": tc.name, "scm": tc.scm, "org_id": orgID, "integration_id": integrationID,
				"rotation_state": "active", "token_source": "enabled",
				"broker_token_fingerprint": fingerprintOf(token),
			}
			for k, want := range wantIn {
				if got := in.Data[k]; got != want {
					t.Errorf("integration read %s = %#v, want %#v", k, got, want)
				}
			}
			if got := num(t, in.Data["ttl"]); got != 900 {
				t.Errorf("integration read ttl = %d, want 900", got)
			}
			for _, secretKey := range []string{"scm_token", "scm_password", "broker_token"} {
				if _, ok := in.Data[secretKey]; ok {
					t.Errorf("integration read returns the secret %s", secretKey)
				}
			}
			wantSCMURL := "https://github.com"
			if u, ok := tc.data["scm_url"]; ok {
				wantSCMURL = u.(string)
			}
			if in.Data["scm_url"] != wantSCMURL || in.Data["scm_api_url"] != tc.apiURL {
				t.Errorf("integration read scm_url %v, scm_api_url %v; want %s, %s", in.Data["scm_url"], in.Data["scm_api_url"], wantSCMURL, tc.apiURL)
			}
			if tc.scm == "azure-repos" && in.Data["azure_org"] != s.sim.info.AzureOrg {
				t.Errorf("integration read azure_org = %v, want %s", in.Data["azure_org"], s.sim.info.AzureOrg)
			}

			callsBefore := s.sim.calls(t, "snyk")
			br := s.read(t, mountPath+"/broker/"+tc.name+"/"+tc.scm)
			if br.LeaseID == "" || !strings.HasPrefix(br.LeaseID, mountPath+"/broker/"+tc.name+"/"+tc.scm+"/") {
				t.Errorf("broker read lease_id = %q, want one under %s/broker/%s/%s/", br.LeaseID, mountPath, tc.name, tc.scm)
			}
			if br.Renewable {
				t.Errorf("broker lease is renewable, want non-renewable")
			}
			if br.LeaseDuration != 900 {
				t.Errorf("broker lease_duration = %d, want 900 (ttl=15m)", br.LeaseDuration)
			}
			if got := str(br.Data["broker_token"]); got != token {
				t.Errorf("broker_token = %q, want the simulator's current token %q", got, token)
			}
			for k, want := range map[string]string{
				"org_id": orgID, "integration_id": integrationID, "scm": tc.scm, "broker_server_url": brokerServerURL,
			} {
				if got := str(br.Data[k]); got != want {
					t.Errorf("broker read %s = %q, want %q", k, got, want)
				}
			}
			if got := num(t, br.Data["ttl"]); got != 900 {
				t.Errorf("broker read ttl = %d, want 900", got)
			}
			for k, want := range tc.cred {
				if got := str(br.Data[k]); got != want {
					t.Errorf("broker read %s = %q, want %q", k, got, want)
				}
			}
			for _, k := range []string{"scm_token", "scm_username", "scm_password"} {
				if _, want := tc.cred[k]; !want {
					if _, ok := br.Data[k]; ok {
						t.Errorf("broker read has %s, want only %v", k, keysOf(tc.cred))
					}
				}
			}
			for _, k := range []string{"next_broker_token", "next_switch_at"} {
				if _, ok := br.Data[k]; ok {
					t.Errorf("broker read has %s without a provisional token", k)
				}
			}

			wantEnv := map[string]string{"BROKER_TOKEN": token, "BROKER_SERVER_URL": brokerServerURL}
			for k, v := range tc.env {
				wantEnv[k] = v
			}
			gotEnv := envMap(t, br.Data["env"])
			if strings.Join(keysOf(gotEnv), ",") != strings.Join(keysOf(wantEnv), ",") {
				t.Errorf("env keys = %v, want exactly %v", keysOf(gotEnv), keysOf(wantEnv))
			}
			for k, want := range wantEnv {
				if got := gotEnv[k]; got != want {
					t.Errorf("env[%s] = %q, want %q", k, got, want)
				}
			}
			if after := s.sim.calls(t, "snyk"); !equalMaps(callsBefore, after) {
				t.Errorf("a broker read called Snyk: calls %v -> %v", callsBefore, after)
			}
		})
	}

	// An org whose integration is already brokered at Snyk is adopted with a
	// provisional token, which the read serves (Vault holds no other).
	t.Run("adopt-already-brokered", func(t *testing.T) {
		orgID := newUUID(t)
		s.sim.addOrg(t, orgID, "e2e adopted")
		integrationID, oldToken := s.sim.addIntegration(t, orgID, "gitlab", true)
		if oldToken == "" {
			t.Fatal("brokered integration without a token")
		}
		ipath := mountPath + "/integrations/scm-gitlab-adopted/gitlab"
		s.write(t, ipath, map[string]interface{}{
			"org_id": orgID, "scm_token": s.sim.info.GitLabToken, "scm_url": s.sim.info.GitLabURL, "ttl": "15m",
		})
		simIn := s.sim.integration(t, orgID, "gitlab")
		if simIn.CurrentToken != oldToken || simIn.ProvisionalToken == "" {
			t.Fatalf("simulator after adoption = %+v, want current %s kept and a provisional token", simIn, oldToken)
		}
		in := s.read(t, ipath)
		if in.Data["rotation_state"] != "provisioned" || in.Data["token_source"] != "adopted" || in.Data["integration_id"] != integrationID {
			t.Errorf("adopted integration read = %v, want rotation_state provisioned, token_source adopted, integration_id %s", in.Data, integrationID)
		}
		br := s.read(t, mountPath+"/broker/scm-gitlab-adopted/gitlab")
		if got := str(br.Data["broker_token"]); got != simIn.ProvisionalToken {
			t.Errorf("adopted broker_token = %q, want the provisional token %q", got, simIn.ProvisionalToken)
		}
		if got := envMap(t, br.Data["env"])["BROKER_TOKEN"]; got != simIn.ProvisionalToken {
			t.Errorf("adopted env BROKER_TOKEN = %q, want %q", got, simIn.ProvisionalToken)
		}
		if br.Renewable || br.LeaseID == "" {
			t.Errorf("adopted broker lease: id %q renewable %v", br.LeaseID, br.Renewable)
		}
		if _, prov := s.sim.tokenStatus(t, simIn.ProvisionalToken); !prov {
			t.Errorf("the served token is not provisional at Snyk")
		}
	})
}
