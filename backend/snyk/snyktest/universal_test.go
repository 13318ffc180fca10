package snyktest_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/snyk-vault/vault-plugin-secrets-snyk/backend/snyk/snyktest"
)

const (
	ubAdminToken = "5b0c7e2a-1d3f-4a6b-8c9d-0e1f2a3b4c5d"
	ubOtherToken = "6c1d8f3b-2e4a-4b7c-9d0e-1f2a3b4c5d6e"
	ubAdminAuth  = "token " + ubAdminToken
	ubOrg        = "e1e1e1e1-0000-4000-8000-00000000e1e1"
	ubOtherOrg   = "e2e2e2e2-0000-4000-8000-00000000e2e2"
	ubVersion    = "version=2024-10-15"
	hiddenQuery  = "?version=2024-02-08~experimental"
	ubUnknown    = "d9d9d9d9-0000-4000-8000-00000000d9d9"
)

var ubUUIDv4 = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)

type ubClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *ubClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *ubClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// ubWorld is a fake with one tenant, one install in ubOrg and one
// deployment; ubAdminToken is the tenant's admin, ubOtherToken is not.
type ubWorld struct {
	t                                            *testing.T
	s                                            *snyktest.Server
	clock                                        *ubClock
	tenant, install, clientID, clientSecret, dep string
}

func newUBWorld(t *testing.T) *ubWorld {
	t.Helper()
	ck := &ubClock{t: time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)}
	s := snyktest.New(snyktest.Options{APITokens: []string{ubAdminToken, ubOtherToken}, AccessTokenTTL: 10 * time.Minute, Now: ck.Now})
	s.AddOrg(ubOrg, "", "Universal Org")
	w := &ubWorld{t: t, s: s, clock: ck}
	w.tenant = s.AddTenant("Acme", ubAdminToken)
	w.install, w.clientID, w.clientSecret = s.AddAppInstall(ubOrg)
	w.dep = s.AddDeployment(w.tenant, w.install, map[string]string{"deployment_name": "test"})
	if w.dep == "" {
		t.Fatal("AddDeployment failed")
	}
	return w
}

type ubReply struct {
	status int
	header http.Header
	body   []byte
}

func (r ubReply) doc(t *testing.T) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(r.body, &m); err != nil {
		t.Fatalf("body %q: %v", r.body, err)
	}
	return m
}

// firstError returns errors[0] of a JSON:API error body.
func (r ubReply) firstError(t *testing.T) map[string]any {
	t.Helper()
	errs, _ := r.doc(t)["errors"].([]any)
	if len(errs) == 0 {
		t.Fatalf("no errors in %s", r.body)
	}
	return errs[0].(map[string]any)
}

// do serves one request. Every error answer is checked to carry none of
// the credentials the fake knows.
func (w *ubWorld) do(method, target, auth, body string) ubReply {
	w.t.Helper()
	req := httptest.NewRequest(method, target, strings.NewReader(body))
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	if body != "" {
		switch {
		case strings.HasPrefix(target, "/oauth2/"):
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		case strings.HasPrefix(target, "/hidden/"):
			req.Header.Set("Content-Type", "application/json")
		default:
			req.Header.Set("Content-Type", "application/vnd.api+json")
		}
	}
	rec := httptest.NewRecorder()
	w.s.ServeHTTP(rec, req)
	if rec.Code >= 400 {
		for _, secret := range w.s.Secrets() {
			if secret != "" && strings.Contains(rec.Body.String(), secret) {
				w.t.Fatalf("%s %s: error body %s carries a credential", method, target, rec.Body)
			}
		}
	}
	return ubReply{status: rec.Code, header: rec.Header(), body: rec.Body.Bytes()}
}

func (w *ubWorld) expect(r ubReply, status int, contains string) {
	w.t.Helper()
	if r.status != status || !strings.Contains(string(r.body), contains) {
		w.t.Fatalf("got %d %s, want %d containing %q", r.status, r.body, status, contains)
	}
}

// depPath is a REST path under the world's deployment, version included.
func (w *ubWorld) depPath(suffix string) string {
	return fmt.Sprintf("/rest/tenants/%s/brokers/installs/%s/deployments/%s/%s?%s", w.tenant, w.install, w.dep, suffix, ubVersion)
}

// token runs the client-credentials grant and returns the status and token.
func (w *ubWorld) token(clientID, secret string) (int, string) {
	w.t.Helper()
	form := url.Values{"grant_type": {"client_credentials"}, "client_id": {clientID}, "client_secret": {secret}}
	r := w.do("POST", "/oauth2/token", "", form.Encode())
	if r.status != 200 {
		return r.status, string(r.body)
	}
	return 200, r.doc(w.t)["access_token"].(string)
}

func (w *ubWorld) mustToken(clientID, secret string) string {
	w.t.Helper()
	status, tok := w.token(clientID, secret)
	if status != 200 {
		w.t.Fatalf("token: %d %s", status, tok)
	}
	return tok
}

func (w *ubWorld) hiddenConnections(deploymentID, auth string) ubReply {
	w.t.Helper()
	return w.do("GET", "/hidden/brokers/deployments/"+deploymentID+"/connections"+hiddenQuery, auth, "")
}

func ids(t *testing.T, doc map[string]any) []string {
	t.Helper()
	var out []string
	for _, d := range doc["data"].([]any) {
		out = append(out, d.(map[string]any)["id"].(string))
	}
	return out
}

// dig walks nested JSON objects by key.
func dig(v any, keys ...string) any {
	for _, k := range keys {
		m, _ := v.(map[string]any)
		v = m[k]
	}
	return v
}

func TestUBPagination(t *testing.T) {
	w := newUBWorld(t)
	var want []string
	for i := range 25 {
		want = append(want, w.s.AddCredentialReference(w.dep, fmt.Sprintf("TOKEN_%02d", i), "github", ""))
	}
	next := w.depPath("credentials") + "&limit=10"
	var got []string
	pages := 0
	for next != "" {
		r := w.do("GET", next, ubAdminAuth, "")
		w.expect(r, 200, `"data"`)
		if ct := r.header.Get("Content-Type"); ct != "application/vnd.api+json" {
			t.Fatalf("content type %q", ct)
		}
		doc := r.doc(t)
		got = append(got, ids(t, doc)...)
		links := doc["links"].(map[string]any)
		if links["self"] == "" || dig(doc, "jsonapi", "version") != "1.0" {
			t.Fatalf("envelope %s", r.body)
		}
		next = ""
		if n, ok := links["next"].(string); ok {
			u, err := url.Parse(n)
			if err != nil || u.Query().Get("version") != "2024-10-15" || u.Query().Get("limit") != "10" || u.Query().Get("starting_after") == "" {
				t.Fatalf("links.next %q", n)
			}
			next = "/rest" + n
		}
		if pages++; pages > 5 {
			t.Fatal("pagination does not end")
		}
	}
	if pages != 3 || !slices.Equal(got, want) {
		t.Fatalf("%d pages, got %v want %v", pages, got, want)
	}

	doc := w.do("GET", w.depPath("credentials"), ubAdminAuth, "").doc(t)
	if len(doc["data"].([]any)) != 10 || dig(doc, "links", "next") == nil {
		t.Fatalf("default limit: %v", doc)
	}
	for _, q := range []string{"limit=0", "limit=101", "limit=x", "limit=-1", "starting_after=nonsense"} {
		r := w.do("GET", w.depPath("credentials")+"&"+q, ubAdminAuth, "")
		param := strings.Split(q, "=")[0]
		if r.status != 400 || dig(r.firstError(t), "source", "parameter") != param {
			t.Fatalf("%s: %d %s", q, r.status, r.body)
		}
	}
}

func TestUBVersionParameter(t *testing.T) {
	w := newUBWorld(t)
	paths := []string{
		"/rest/tenants/" + w.tenant + "/brokers/deployments",
		"/rest/tenants/" + w.tenant + "/brokers/installs/" + w.install + "/deployments",
		strings.Split(w.depPath("credentials"), "?")[0],
		strings.Split(w.depPath("connections"), "?")[0],
		strings.Split(w.depPath("contexts"), "?")[0],
	}
	for _, p := range paths {
		for _, q := range []string{"", "?version=2024-13-01", "?version=latest"} {
			r := w.do("GET", p+q, ubAdminAuth, "")
			if r.status != 400 || dig(r.firstError(t), "source", "parameter") != "version" {
				t.Fatalf("%s%s: %d %s", p, q, r.status, r.body)
			}
		}
		r := w.do("GET", p+"?version=2024-10-15", ubAdminAuth, "")
		w.expect(r, 200, `"data"`)
		if r.header.Get("snyk-version-requested") != "2024-10-15" || r.header.Get("snyk-version-served") != "2024-10-15" {
			t.Fatalf("version headers %v", r.header)
		}
	}
	body := `{"data":{"type":"app","attributes":{"mode":"create"}}}`
	r := w.do("POST", "/rest/orgs/"+ubOrg+"/apps/installs/"+w.install+"/secrets", ubAdminAuth, body)
	if r.status != 400 || dig(r.firstError(t), "source", "parameter") != "version" {
		t.Fatalf("install secrets without version: %d %s", r.status, r.body)
	}
}

func TestUBTenantAdmin(t *testing.T) {
	w := newUBWorld(t)
	path := "/rest/tenants/" + w.tenant + "/brokers/deployments?" + ubVersion
	w.expect(w.do("GET", path, "", ""), 401, "Not authorised")
	r := w.do("GET", path, "token "+ubOtherToken, "")
	if r.status != 403 || r.firstError(t)["status"] != "403" {
		t.Fatalf("non-admin: %d %s", r.status, r.body)
	}
	w.s.SetBehaviour(snyktest.Behaviour{TenantNonAdminStatus: http.StatusNotFound})
	w.expect(w.do("GET", path, "token "+ubOtherToken, ""), 404, "Tenant not found")
	w.s.SetBehaviour(snyktest.Behaviour{})

	// The install's own client is no tenant admin, until made one.
	bearer := "bearer " + w.mustToken(w.clientID, w.clientSecret)
	w.expect(w.do("GET", path, bearer, ""), 403, "tenant admin")
	w.s.AddTenantAdmin(w.tenant, w.clientID)
	w.expect(w.do("GET", path, bearer, ""), 200, w.dep)
	w.s.AddTenantAdmin(w.tenant, ubOtherToken)
	w.expect(w.do("GET", path, "token "+ubOtherToken, ""), 200, w.dep)
}

func TestUBWrongParent(t *testing.T) {
	w := newUBWorld(t)
	tenant2 := w.s.AddTenant("Other", ubAdminToken)
	install2, _, _ := w.s.AddAppInstall(ubOtherOrg)
	dep2 := w.s.AddDeployment(tenant2, install2, nil)
	install3, _, _ := w.s.AddAppInstall(ubOrg)
	dep3 := w.s.AddDeployment(w.tenant, install3, nil)
	if w.s.AddDeployment(tenant2, w.install, nil) != "" {
		t.Fatal("an install's deployments must stay under one tenant")
	}
	base := func(tenant, install string) string {
		return "/rest/tenants/" + tenant + "/brokers/installs/" + install + "/deployments"
	}
	for _, tc := range []struct{ name, path, want string }{
		{"unknown tenant", "/rest/tenants/" + ubUnknown + "/brokers/deployments", "Tenant not found"},
		{"unknown install", base(w.tenant, ubUnknown), "Install not found"},
		{"install of another tenant", base(w.tenant, install2), "Install not found"},
		{"unknown deployment", base(w.tenant, w.install) + "/" + ubUnknown + "/credentials", "Deployment not found"},
		{"deployment of another tenant", base(w.tenant, w.install) + "/" + dep2 + "/connections", "Deployment not found"},
		{"deployment of another install", base(w.tenant, w.install) + "/" + dep3 + "/credentials", "Deployment not found"},
		{"deployment under another tenant", base(tenant2, w.install) + "/" + w.dep + "/contexts", "Install not found"},
	} {
		w.expect(w.do("GET", tc.path+"?"+ubVersion, ubAdminAuth, ""), 404, tc.want)
	}
	body := `{"data":{"type":"broker_deployment","attributes":{"broker_app_installed_in_org_id":"` + ubOrg + `","metadata":{}}}}`
	w.expect(w.do("POST", base(tenant2, w.install)+"?"+ubVersion, ubAdminAuth, body), 404, "Install not found")
}

func TestUBDeployments(t *testing.T) {
	w := newUBWorld(t)
	path := "/rest/tenants/" + w.tenant + "/brokers/installs/" + w.install + "/deployments?" + ubVersion
	body := func(typ, org string) string {
		return `{"data":{"type":"` + typ + `","attributes":{"broker_app_installed_in_org_id":"` + org + `","metadata":{"deployment_name":"second"}}}}`
	}
	w.expect(w.do("POST", path, ubAdminAuth, body("broker_deployment", ubOtherOrg)), 400, "broker_app_installed_in_org_id")
	w.expect(w.do("POST", path, ubAdminAuth, body("deployment", ubOrg)), 400, "/data/type")
	r := w.do("POST", path, ubAdminAuth, body("broker_deployment", ubOrg))
	w.expect(r, 201, `"broker_deployment"`)
	created := r.doc(t)["data"].(map[string]any)
	if dig(created, "attributes", "install_id") != w.install || dig(created, "attributes", "broker_app_installed_in_org_id") != ubOrg ||
		dig(created, "attributes", "metadata", "deployment_name") != "second" {
		t.Fatalf("created %v", created)
	}
	want := []string{w.dep, created["id"].(string)}
	for _, p := range []string{path, "/rest/tenants/" + w.tenant + "/brokers/deployments?" + ubVersion} {
		if got := ids(t, w.do("GET", p, ubAdminAuth, "").doc(t)); !slices.Equal(got, want) {
			t.Fatalf("%s: %v, want %v", p, got, want)
		}
	}
}
