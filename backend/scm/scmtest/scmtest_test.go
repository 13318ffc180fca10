package scmtest_test

import (
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/snyk-vault/vault-plugin-secrets-snyk/backend/httpx"
	"github.com/snyk-vault/vault-plugin-secrets-snyk/backend/scm/scmtest"
	"github.com/snyk-vault/vault-plugin-secrets-snyk/backend/tlstest"
)

// do sends one request straight to the handler; the fakes need no server.
func do(h http.Handler, method, target string, hdr map[string]string, body string) *httptest.ResponseRecorder {
	r := httptest.NewRequest(method, target, strings.NewReader(body))
	for k, v := range hdr {
		r.Header.Set(k, v)
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return w
}

func basic(user, pass string) string {
	return "Basic " + base64.StdEncoding.EncodeToString([]byte(user+":"+pass))
}

func wantStatus(t *testing.T, w *httptest.ResponseRecorder, status int) {
	t.Helper()
	if w.Code != status {
		t.Fatalf("status = %d, want %d; body %s", w.Code, status, w.Body)
	}
}

func TestGitHubWire(t *testing.T) {
	// Over a real TLS connection: an empty header must survive the wire.
	ca := tlstest.MustNewCA()
	g := scmtest.NewGitHub(true)
	g.AddToken("ghp_classic", scmtest.GitHubToken{Login: "octocat", Scopes: []string{"admin:org", "repo"}})
	g.AddToken("github_pat_fine", scmtest.GitHubToken{Login: "octocat"})
	srv, err := ca.StartServer(g)
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	client, err := httpx.NewClient(string(ca.CertPEM), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	get := func(path, auth string) *http.Response {
		req, _ := http.NewRequest(http.MethodGet, srv.URL+path, nil)
		req.Header.Set("Authorization", auth)
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp
	}
	resp := get("/api/v3/user", "token ghp_classic")
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d", resp.StatusCode)
	}
	if got := resp.Header.Get("X-OAuth-Scopes"); got != "admin:org, repo" {
		t.Errorf("X-OAuth-Scopes = %q", got)
	}
	if v, ok := resp.Header["X-Accepted-Oauth-Scopes"]; !ok || len(v) != 1 || v[0] != "" {
		t.Errorf("X-Accepted-OAuth-Scopes = %q, %v; want present and empty", v, ok)
	}
	if resp.Header.Get("X-GitHub-Enterprise-Version") == "" {
		t.Error("no X-GitHub-Enterprise-Version in enterprise mode")
	}
	resp = get("/api/v3/user", "Bearer github_pat_fine")
	if _, ok := resp.Header["X-Oauth-Scopes"]; ok || resp.StatusCode != http.StatusOK {
		t.Errorf("fine-grained: status %d, scopes header present %v", resp.StatusCode, ok)
	}
	// GHES serves its API under /api/v3 only.
	if resp := get("/user", "token ghp_classic"); resp.StatusCode != http.StatusNotFound {
		t.Errorf("GET /user on GHES: status %d, want 404", resp.StatusCode)
	}
	if got := g.SeenTokens(); !slices.Equal(got, []string{"ghp_classic", "github_pat_fine"}) {
		t.Errorf("SeenTokens = %q", got)
	}
}

func TestGitHubFake(t *testing.T) {
	now := time.Date(2026, 7, 1, 12, 0, 0, 0, time.UTC)
	g := scmtest.NewGitHub(false)
	g.Now = func() time.Time { return now }
	g.AddToken("ghp_a", scmtest.GitHubToken{Login: "octocat", Scopes: []string{"repo"}, ExpiresAt: now.Add(24 * time.Hour)})
	g.AddToken("ghp_b", scmtest.GitHubToken{Login: "hubot", Scopes: []string{"read:org"},
		ExpiresAt: time.Date(2027, 3, 31, 0, 0, 0, 0, time.FixedZone("", 9*3600)), ExpiryFormat: "offset", SAMLRequired: true})
	tokA := map[string]string{"Authorization": "token ghp_a"}
	tokB := map[string]string{"Authorization": "token ghp_b"}

	t.Run("expiry header formats", func(t *testing.T) {
		w := do(g, "GET", "/user", tokA, "")
		wantStatus(t, w, 200)
		if got := w.Header().Get("GitHub-Authentication-Token-Expiration"); got != "2026-07-02 12:00:00 UTC" {
			t.Errorf("expiry = %q", got)
		}
		w = do(g, "GET", "/user/orgs", tokB, "")
		if got := w.Header().Get("GitHub-Authentication-Token-Expiration"); got != "2027-03-31 00:00:00 +0900" {
			t.Errorf("expiry = %q", got)
		}
	})
	t.Run("rate limit headers everywhere, /rate_limit is free", func(t *testing.T) {
		before := do(g, "GET", "/rate_limit", tokA, "")
		wantStatus(t, before, 200)
		after := do(g, "GET", "/rate_limit", tokA, "")
		if a, b := before.Header().Get("X-RateLimit-Remaining"), after.Header().Get("X-RateLimit-Remaining"); a != b || a == "" {
			t.Errorf("remaining %q then %q", a, b)
		}
		var body struct {
			Rate struct{ Limit, Remaining int } `json:"rate"`
		}
		if err := json.Unmarshal(after.Body.Bytes(), &body); err != nil || body.Rate.Limit != 5000 {
			t.Errorf("rate body %s (%v)", after.Body, err)
		}
		w := do(g, "GET", "/user", map[string]string{"Authorization": "token ghp_nope"}, "")
		wantStatus(t, w, 401)
		if w.Body.String() != scmtest.GitHubBadCredentialsBody || w.Header().Get("X-RateLimit-Limit") != "60" {
			t.Errorf("401: body %s limit %q", w.Body, w.Header().Get("X-RateLimit-Limit"))
		}
		g.Faults().Inject(scmtest.RouteGitHubUserRepos, scmtest.Fault{Status: 502, Times: 1})
		w = do(g, "GET", "/user/repos", tokA, "")
		if w.Code != 502 || w.Header().Get("X-RateLimit-Resource") != "core" {
			t.Errorf("faulted response: %d, headers %v", w.Code, w.Header())
		}
	})
	t.Run("SAML", func(t *testing.T) {
		w := do(g, "GET", "/user", tokB, "")
		wantStatus(t, w, 403)
		if !strings.HasPrefix(w.Header().Get("X-GitHub-SSO"), "required; url=https://github.com/orgs/acme/sso?authorization_request=") || w.Body.String() != scmtest.GitHubSAMLBody {
			t.Errorf("SSO header %q body %s", w.Header().Get("X-GitHub-SSO"), w.Body)
		}
		w = do(g, "GET", "/user/orgs", tokB, "")
		wantStatus(t, w, 200)
		if w.Header().Get("X-GitHub-SSO") != "partial-results; organizations=21955855" {
			t.Errorf("list SSO header %q", w.Header().Get("X-GitHub-SSO"))
		}
	})
	t.Run("repo scope shows private repositories", func(t *testing.T) {
		g.AddToken("ghp_public", scmtest.GitHubToken{Login: "octocat", Scopes: []string{"public_repo"}})
		var withRepo, public []map[string]any
		_ = json.Unmarshal(do(g, "GET", "/user/repos", tokA, "").Body.Bytes(), &withRepo)
		_ = json.Unmarshal(do(g, "GET", "/user/repos", map[string]string{"Authorization": "token ghp_public"}, "").Body.Bytes(), &public)
		if len(withRepo) != 2 || len(public) != 1 {
			t.Errorf("repos: %d with repo, %d with public_repo", len(withRepo), len(public))
		}
	})
	t.Run("revoke by value", func(t *testing.T) {
		w := do(g, "POST", "/credentials/revoke", tokA, `{"credentials":["ghp_a"]}`)
		wantStatus(t, w, 403) // github.com: authenticated callers refused
		wantStatus(t, do(g, "POST", "/credentials/revoke", nil, `{"credentials":[]}`), 422)
		wantStatus(t, do(g, "POST", "/credentials/revoke", nil, `{"credentials":["ghp_a"]}`), 202)
		wantStatus(t, do(g, "GET", "/user", tokA, ""), 401)
		wantStatus(t, do(g, "POST", "/authorizations", nil, `{}`), 404)
	})
	t.Run("unknown path", func(t *testing.T) {
		wantStatus(t, do(g, "GET", "/api/v3/user", tokB, ""), 404) // only GHES serves /api/v3
	})
}

func TestGitHubLockout(t *testing.T) {
	now := time.Date(2026, 7, 1, 12, 0, 0, 0, time.UTC)
	g := scmtest.NewGitHub(false)
	g.Now = func() time.Time { return now }
	g.AddToken("ghp_good", scmtest.GitHubToken{Login: "octocat", Scopes: []string{"repo"}})
	good := map[string]string{"Authorization": "token ghp_good"}
	for range 10 {
		wantStatus(t, do(g, "GET", "/user", map[string]string{"Authorization": "token ghp_bad"}, ""), 401)
	}
	w := do(g, "GET", "/rate_limit", good, "")
	wantStatus(t, w, 403)
	if w.Body.String() != scmtest.GitHubLockoutBody {
		t.Errorf("lockout body %s", w.Body)
	}
	now = now.Add(61 * time.Second)
	wantStatus(t, do(g, "GET", "/user", good, ""), 200)

	g.LockoutAfter = 0
	for range 20 {
		wantStatus(t, do(g, "GET", "/user", map[string]string{"Authorization": "token ghp_bad"}, ""), 401)
	}
	wantStatus(t, do(g, "GET", "/user", good, ""), 200)
}

func TestGitHubPrimaryLimit(t *testing.T) {
	g := scmtest.NewGitHub(false)
	g.RateLimit = 2
	g.AddToken("ghp_good", scmtest.GitHubToken{Login: "octocat", Scopes: []string{"repo"}})
	good := map[string]string{"Authorization": "token ghp_good"}
	wantStatus(t, do(g, "GET", "/user", good, ""), 200)
	wantStatus(t, do(g, "GET", "/user", good, ""), 200)
	w := do(g, "GET", "/user", good, "")
	wantStatus(t, w, 403)
	if w.Header().Get("X-RateLimit-Remaining") != "0" || !strings.Contains(w.Body.String(), "API rate limit exceeded for user ID") {
		t.Errorf("exhausted: remaining %q body %s", w.Header().Get("X-RateLimit-Remaining"), w.Body)
	}
}

func TestGitLabFake(t *testing.T) {
	now := time.Date(2026, 7, 1, 12, 0, 0, 0, time.UTC)
	g := scmtest.NewGitLab(scmtest.GitLabOptions{Now: func() time.Time { return now }})
	g.AddToken("glpat-ok", scmtest.GitLabToken{Username: "jdoe", Scopes: []string{"api"}, ExpiresAt: "2026-07-02", AccessLevel: 40})
	g.AddToken("glpat-today", scmtest.GitLabToken{Username: "jdoe", Scopes: []string{"api"}, ExpiresAt: "2026-07-01"})
	g.AddToken("glpat-narrow", scmtest.GitLabToken{Username: "jdoe", Scopes: []string{"read_repository"}})

	w := do(g, "GET", "/api/v4/personal_access_tokens/self", map[string]string{"PRIVATE-TOKEN": "glpat-ok"}, "")
	wantStatus(t, w, 200)
	var self map[string]any
	if err := json.Unmarshal(w.Body.Bytes(), &self); err != nil || self["expires_at"] != "2026-07-02" || self["active"] != true || self["granular"] != false {
		t.Errorf("self = %s", w.Body)
	}

	// Expires at 00:00 UTC on expires_at: a token dated today is dead.
	w = do(g, "GET", "/api/v4/personal_access_tokens/self", map[string]string{"Authorization": "Bearer glpat-today"}, "")
	wantStatus(t, w, 401)
	if w.Body.String() != scmtest.GitLabUnauthorizedBody {
		t.Errorf("401 body %s", w.Body)
	}
	for _, h := range []string{"X-Gitlab-Meta", "X-Request-Id", "X-Runtime"} {
		if w.Header().Get(h) == "" {
			t.Errorf("401 lacks %s", h)
		}
	}

	w = do(g, "GET", "/api/v4/groups?min_access_level=40&per_page=1", map[string]string{"PRIVATE-TOKEN": "glpat-ok"}, "")
	wantStatus(t, w, 200)
	if w.Header().Get("X-Total") != "1" || !strings.Contains(w.Body.String(), `"access_levels":40`) {
		t.Errorf("groups: X-Total %q body %s", w.Header().Get("X-Total"), w.Body)
	}
	w = do(g, "GET", "/api/v4/projects?min_access_level=50", map[string]string{"PRIVATE-TOKEN": "glpat-ok"}, "")
	if w.Body.String() != "[]" {
		t.Errorf("projects at owner level: %s", w.Body)
	}
	wantStatus(t, do(g, "GET", "/api/v4/groups?min_access_level=41", map[string]string{"PRIVATE-TOKEN": "glpat-ok"}, ""), 400)

	w = do(g, "GET", "/api/v4/personal_access_tokens/self/associations?min_access_level=40", map[string]string{"PRIVATE-TOKEN": "glpat-ok"}, "")
	var assoc struct{ Groups, Projects []map[string]any }
	if err := json.Unmarshal(w.Body.Bytes(), &assoc); err != nil || len(assoc.Groups) != 1 || len(assoc.Projects) != 1 {
		t.Errorf("associations %s", w.Body)
	}

	w = do(g, "GET", "/api/v4/groups", map[string]string{"PRIVATE-TOKEN": "glpat-narrow"}, "")
	wantStatus(t, w, 403)
	if !strings.Contains(w.Body.String(), "insufficient_scope") {
		t.Errorf("403 body %s", w.Body)
	}
	w = do(g, "GET", "/api/v4/metadata?private_token=glpat-ok", nil, "")
	if !strings.Contains(w.Body.String(), `"version":"19.1.1-ee"`) {
		t.Errorf("metadata %s", w.Body)
	}

	old := scmtest.NewGitLab(scmtest.GitLabOptions{NoAssociations: true})
	old.AddToken("glpat-ok", scmtest.GitLabToken{Username: "jdoe", Scopes: []string{"api"}, AccessLevel: 40})
	wantStatus(t, do(old, "GET", "/api/v4/personal_access_tokens/self/associations", map[string]string{"PRIVATE-TOKEN": "glpat-ok"}, ""), 404)
	wantStatus(t, do(old, "GET", "/api/v4/personal_access_tokens/self/associations", map[string]string{"PRIVATE-TOKEN": "nope"}, ""), 401)
}

func TestAzureFake(t *testing.T) {
	a := scmtest.NewAzure("fabrikam")
	a.AddToken("pat-ok", scmtest.AzureToken{DisplayName: "Jamal Hartnett", CodeRead: true})
	repos := "/fabrikam/_apis/git/repositories?api-version=7.1"

	for name, auth := range map[string]string{
		"none":       "",
		"bearer":     "Bearer pat-ok",
		"bad base64": "Basic %%%",
		"no colon":   "Basic " + base64.StdEncoding.EncodeToString([]byte("pat-ok")),
	} {
		w := do(a, "GET", repos, map[string]string{"Authorization": auth}, "")
		if w.Code != 203 || !strings.HasPrefix(w.Header().Get("Content-Type"), "text/html") {
			t.Errorf("%s: status %d type %q", name, w.Code, w.Header().Get("Content-Type"))
		}
	}
	for _, user := range []string{"", "PAT", "anything"} {
		wantStatus(t, do(a, "GET", repos, map[string]string{"Authorization": basic(user, "pat-ok")}, ""), 200)
	}
	w := do(a, "GET", repos, map[string]string{"Authorization": basic("", "pat-bad")}, "")
	wantStatus(t, w, 401)
	if !slices.ContainsFunc(w.Header().Values("WWW-Authenticate"), func(v string) bool { return strings.HasPrefix(v, `Basic realm="`) }) ||
		!strings.Contains(w.Body.String(), "TF400813") {
		t.Errorf("401: headers %v body %s", w.Header(), w.Body)
	}
	wantStatus(t, do(a, "GET", "/contoso/_apis/git/repositories?api-version=7.1", map[string]string{"Authorization": basic("", "pat-ok")}, ""), 404)
	w = do(a, "GET", "/fabrikam/_apis/git/repositories", map[string]string{"Authorization": basic("", "pat-ok")}, "")
	if w.Code != 400 || !strings.Contains(w.Body.String(), "VssVersionNotSpecifiedException") {
		t.Errorf("no api-version: status %d body %s", w.Code, w.Body)
	}

	w = do(a, "GET", "/fabrikam/_apis/connectionData", map[string]string{"Authorization": basic("PAT", "pat-ok")}, "")
	if !strings.Contains(w.Body.String(), `"providerDisplayName":"Jamal Hartnett"`) {
		t.Errorf("connectionData %s", w.Body)
	}
	a.AnonymousMode = true
	w = do(a, "GET", "/fabrikam/_apis/connectionData", map[string]string{"Authorization": basic("PAT", "pat-bad")}, "")
	if w.Code != 200 || !strings.Contains(w.Body.String(), `"providerDisplayName":"Anonymous"`) {
		t.Errorf("anonymous connectionData %d %s", w.Code, w.Body)
	}
	if got := a.SeenTokens(); !slices.Contains(got, "pat-ok") || !slices.Contains(got, "pat-bad") {
		t.Errorf("SeenTokens = %q", got)
	}
}

func TestBitbucketFake(t *testing.T) {
	b := scmtest.NewBitbucket()
	b.AddUser(scmtest.BitbucketUser{Username: "ksmster", Password: "pw", Tokens: []string{"tok"}, RepoAdmin: true})
	auth := map[string]string{"Authorization": "Bearer tok"}

	w := do(b, "GET", "/rest/api/1.0/projects?limit=1", auth, "")
	wantStatus(t, w, 200)
	var pg struct {
		Size, Limit, Start, NextPageStart int
		IsLastPage                        bool
		Values                            []map[string]any
	}
	if err := json.Unmarshal(w.Body.Bytes(), &pg); err != nil || pg.Size != 1 || pg.IsLastPage || pg.NextPageStart != 1 {
		t.Errorf("page %s", w.Body)
	}
	if w.Header().Get("X-AUSERNAME") != "ksmster" {
		t.Errorf("X-AUSERNAME = %q", w.Header().Get("X-AUSERNAME"))
	}
	w = do(b, "GET", "/rest/api/1.0/projects/NOPE", auth, "")
	if w.Code != 404 || w.Header().Get("X-AUSERNAME") != "ksmster" {
		t.Errorf("404: %d, X-AUSERNAME %q", w.Code, w.Header().Get("X-AUSERNAME"))
	}
	w = do(b, "GET", "/plugins/servlet/applinks/whoami", map[string]string{"Authorization": basic("ksmster", "pw")}, "")
	if w.Body.String() != "ksmster" || !strings.HasPrefix(w.Header().Get("Content-Type"), "text/plain") {
		t.Errorf("whoami %q %q", w.Body, w.Header().Get("Content-Type"))
	}
	wantStatus(t, do(b, "GET", "/rest/api/1.0/repos?permission=OWNER", auth, ""), 400)
	w = do(b, "GET", "/rest/api/1.0/projects", map[string]string{"Authorization": basic("ksmster", "nope")}, "")
	if w.Code != 401 || w.Header().Get("X-AUSERNAME") != "" {
		t.Errorf("bad password: %d, X-AUSERNAME %q", w.Code, w.Header().Get("X-AUSERNAME"))
	}
	b.BasicAuthDisabled = true
	w = do(b, "GET", "/rest/api/1.0/projects", map[string]string{"Authorization": basic("ksmster", "pw")}, "")
	if w.Code != 401 || w.Body.String() != scmtest.BitbucketBasicDisabledBody {
		t.Errorf("basic disabled: %d %s", w.Code, w.Body)
	}
	wantStatus(t, do(b, "GET", "/rest/api/1.0/projects", map[string]string{"Authorization": basic("ksmster", "tok")}, ""), 200)
	if got := b.SeenTokens(); !slices.Equal(got, []string{"tok", "pw", "nope"}) {
		t.Errorf("SeenTokens = %q", got)
	}
}
