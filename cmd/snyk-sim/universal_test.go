package main

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"testing"
)

// simHarness serves a demo world's fake Snyk and admin API over plain HTTP.
type simHarness struct {
	t           *testing.T
	w           *world
	snyk, admin string
	gitlabHost  string
}

func newSimHarness(t *testing.T) *simHarness {
	t.Helper()
	w := newWorld()
	gitlab := httptest.NewServer(w.gitlab)
	t.Cleanup(gitlab.Close)
	info := w.info
	if err := w.seedUniversalGitLab(&info, gitlab.URL); err != nil {
		t.Fatal(err)
	}
	w.info = info
	snyk := httptest.NewServer(w.snyk)
	t.Cleanup(snyk.Close)
	admin := httptest.NewServer(w.adminHandler())
	t.Cleanup(admin.Close)
	return &simHarness{t: t, w: w, snyk: snyk.URL, admin: admin.URL, gitlabHost: strings.TrimPrefix(gitlab.URL, "http://")}
}

// call sends a request and decodes a JSON answer into out (when non-nil).
func (h *simHarness) call(method, u, auth, contentType, body string, out any) int {
	h.t.Helper()
	req, err := http.NewRequest(method, u, strings.NewReader(body))
	if err != nil {
		h.t.Fatal(err)
	}
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		h.t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	if out != nil && resp.StatusCode < 300 {
		if err := json.Unmarshal(raw, out); err != nil {
			h.t.Fatalf("%s %s: %q: %v", method, u, raw, err)
		}
	}
	return resp.StatusCode
}

func (h *simHarness) accessToken(clientID, secret string) string {
	h.t.Helper()
	form := url.Values{"grant_type": {"client_credentials"}, "client_id": {clientID}, "client_secret": {secret}}
	var tok struct {
		AccessToken string `json:"access_token"`
	}
	if st := h.call("POST", h.snyk+"/oauth2/token", "", "application/x-www-form-urlencoded", form.Encode(), &tok); st != 200 {
		h.t.Fatalf("token: %d", st)
	}
	return tok.AccessToken
}

type hiddenConnection struct {
	ID         string `json:"id"`
	Attributes struct {
		Name          string  `json:"name"`
		Identifier    *string `json:"identifier"`
		Configuration struct {
			Type     string            `json:"type"`
			Required map[string]string `json:"required"`
		} `json:"configuration"`
	} `json:"attributes"`
}

// hidden fetches a deployment's connections as a Broker client does.
func (h *simHarness) hidden(deploymentID, accessToken string) (int, []hiddenConnection) {
	h.t.Helper()
	var doc struct {
		Data []hiddenConnection `json:"data"`
	}
	st := h.call("GET", h.snyk+"/hidden/brokers/deployments/"+deploymentID+"/connections?version=2024-02-08~experimental",
		"bearer "+accessToken, "", "", &doc)
	return st, doc.Data
}

func TestDemoUniversalDeployment(t *testing.T) {
	h := newSimHarness(t)
	u := h.w.info.Universal
	if u.InstallOrgID != demoPaymentsOrg || u.Credentials["MY_GITHUB_TOKEN"] != (UniversalCredential{"github", demoGitHubToken}) ||
		u.Credentials["MY_GITLAB_TOKEN"] != (UniversalCredential{"gitlab", demoGitLabToken}) || len(u.Connections) != 2 {
		t.Fatalf("info %+v", u)
	}
	tok := h.accessToken(u.ClientID, u.ClientSecret)
	st, conns := h.hidden(u.DeploymentID, tok)
	if st != 200 || len(conns) != 2 {
		t.Fatalf("hidden: %d %+v", st, conns)
	}
	gh, gl := conns[0].Attributes, conns[1].Attributes
	if gh.Name != "demo-github" || gh.Configuration.Required["github_token"] != "${MY_GITHUB_TOKEN}" || gh.Identifier == nil ||
		gh.Configuration.Required["broker_client_url"] != demoBrokerClientURL {
		t.Fatalf("demo-github %+v", gh)
	}
	if gl.Name != "demo-gitlab" || gl.Configuration.Required["gitlab"] != h.gitlabHost || gl.Configuration.Required["gitlab_token"] != "${MY_GITLAB_TOKEN}" || gl.Identifier == nil {
		t.Fatalf("demo-gitlab %+v", gl)
	}
	var connects struct{ Count int }
	h.call("GET", h.admin+"/universal/client-connects?deployment_id="+u.DeploymentID, "", "", "", &connects)
	if connects.Count != 1 {
		t.Fatalf("client connects %d", connects.Count)
	}

	// The demo API token and OAuth client are tenant admins.
	path := h.snyk + "/rest/tenants/" + u.TenantID + "/brokers/deployments?version=2024-10-15"
	if st := h.call("GET", path, "token "+demoAPIToken, "", "", nil); st != 200 {
		t.Fatalf("API token: %d", st)
	}
	if st := h.call("GET", path, "bearer "+h.accessToken(demoClientID, demoClientSecret), "", "", nil); st != 200 {
		t.Fatalf("OAuth client: %d", st)
	}

	// GET /secrets lists the install's secret and the access token.
	var secrets []string
	h.call("GET", h.admin+"/secrets", "", "", "", &secrets)
	if !slices.Contains(secrets, u.ClientSecret) || !slices.Contains(secrets, tok) {
		t.Fatal("/secrets misses the install secret or its access token")
	}
}

func TestAdminUniversal(t *testing.T) {
	h := newSimHarness(t)
	body := `{"org_id":"` + demoPlatformOrg + `","credentials":[{"env":"MY_AZURE_TOKEN","type":"azure-repos"}],
		"connections":[{"name":"az","type":"azure-repos","required":{"broker_client_url":"https://b.example",
			"azure_repos_host":"dev.azure.example","azure_repos_org":"contoso","azure_repos_token":"${MY_AZURE_TOKEN}"}}],
		"contexts":[{"connection":"az","context":{"azure_repos_org":"fabrikam"}}]}`
	var out struct {
		DeploymentID string            `json:"deployment_id"`
		InstallID    string            `json:"install_id"`
		InstallOrgID string            `json:"install_org_id"`
		ClientID     string            `json:"client_id"`
		ClientSecret string            `json:"client_secret"`
		Connections  map[string]string `json:"connections"`
		Credentials  map[string]string `json:"credentials"`
	}
	if st := h.call("POST", h.admin+"/universal", "", "application/json", body, &out); st != 200 {
		t.Fatalf("POST /universal: %d", st)
	}
	if out.ClientID == "" || out.DeploymentID == "" || out.InstallOrgID != demoPlatformOrg || out.Connections["az"] == "" || out.Credentials["MY_AZURE_TOKEN"] == "" {
		t.Fatalf("answer %+v", out)
	}
	tok := h.accessToken(out.ClientID, out.ClientSecret)
	// Without org_id and tenant_admins: the payments org, the demo admins.
	var raw map[string]any
	h.call("POST", h.admin+"/universal", "", "application/json", `{"credentials":[{"env":"A","type":"github"}]}`, &raw)
	if raw["deployment_id"] == nil || raw["install_org_id"] != demoPaymentsOrg {
		t.Fatalf("defaults: %v", raw)
	}
	depID := out.DeploymentID
	st, conns := h.hidden(depID, tok)
	if st != 200 || len(conns) != 1 || conns[0].Attributes.Configuration.Required["azure_repos_token"] != "${MY_AZURE_TOKEN}" || conns[0].Attributes.Identifier == nil {
		t.Fatalf("hidden: %d %+v", st, conns)
	}
	// The demo install's token is not this deployment's.
	if st, _ := h.hidden(depID, h.accessToken(h.w.info.Universal.ClientID, h.w.info.Universal.ClientSecret)); st != 401 {
		t.Fatalf("foreign token: %d", st)
	}
	bad := `{"connections":[{"name":"x","type":"github","required":{"broker_client_url":"u","github_token":"${NOPE}"}}]}`
	if st := h.call("POST", h.admin+"/universal", "", "application/json", bad, nil); st != 400 {
		t.Fatalf("bad connection: %d", st)
	}

	// Install secrets: fingerprints only, an outside replace kills the old.
	var state struct {
		Fingerprints []string `json:"secrets_fingerprints"`
		Count        int      `json:"count"`
		Replaces     int      `json:"replaces"`
	}
	h.call("GET", h.admin+"/universal/install-secrets?install_id="+out.InstallID, "", "", "", &state)
	if state.Count != 1 || len(state.Fingerprints) != 1 || state.Fingerprints[0] == out.ClientSecret {
		t.Fatalf("install secrets %+v", state)
	}
	check := func(secret string) bool {
		var v struct{ Valid bool }
		h.call("POST", h.admin+"/universal/install-secrets/check", "", "application/json", `{"install_id":"`+out.InstallID+`","secret":"`+secret+`"}`, &v)
		return v.Valid
	}
	if !check(out.ClientSecret) || check("snyk_cs_other_v1") {
		t.Fatal("check")
	}
	var ok struct{ OK bool }
	if st := h.call("POST", h.admin+"/universal/install-secrets/replace", "", "application/json", `{"install_id":"`+out.InstallID+`"}`, &ok); st != 200 || !ok.OK {
		t.Fatalf("replace: %d", st)
	}
	if check(out.ClientSecret) {
		t.Fatal("old secret valid after an outside replace")
	}
	if st := h.call("GET", h.admin+"/universal/install-secrets?install_id=nope", "", "", "", nil); st != 404 {
		t.Fatalf("unknown install: %d", st)
	}

	// Deleting the connection and its reference.
	for _, d := range []struct{ path, body string }{
		{"/universal/connections/delete", `{"connection_id":"` + out.Connections["az"] + `"}`},
		{"/universal/credentials/delete", `{"credential_id":"` + out.Credentials["MY_AZURE_TOKEN"] + `"}`},
	} {
		if st := h.call("POST", h.admin+d.path, "", "application/json", d.body, nil); st != 204 {
			t.Fatalf("%s: %d", d.path, st)
		}
	}
	if st, conns := h.hidden(depID, tok); st != 200 || len(conns) != 0 {
		t.Fatalf("after delete: %d %+v", st, conns)
	}
}
