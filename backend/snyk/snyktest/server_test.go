package snyktest_test

import (
	"encoding/json"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/snyk-vault/vault-plugin-secrets-snyk/backend/fault"
	"github.com/snyk-vault/vault-plugin-secrets-snyk/backend/httpx"
	"github.com/snyk-vault/vault-plugin-secrets-snyk/backend/snyk/snyktest"
	"github.com/snyk-vault/vault-plugin-secrets-snyk/backend/tlstest"
)

const (
	apiToken = "3f1d2c4b-5a69-4788-9b0a-1c2d3e4f5a6b"
	clientID = "client-1"
	secret   = "snyk_cs_secret_v1"
	groupA   = "11111111-1111-4111-8111-111111111111"
	groupB   = "22222222-2222-4222-8222-222222222222"
	orgA1    = "a1a1a1a1-0000-4000-8000-00000000a1a1"
	orgA2    = "a2a2a2a2-0000-4000-8000-00000000a2a2"
	orgB1    = "b1b1b1b1-0000-4000-8000-00000000b1b1"
	orgSolo  = "c0c0c0c0-0000-4000-8000-00000000c0c0"
	unknown  = "d0d0d0d0-0000-4000-8000-00000000d0d0"

	notAuthorised = `{"code":401,"error":"Not authorised","message":"Not authorised"}`
)

var uuidV4 = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

type harness struct {
	t     *testing.T
	fake  *snyktest.Server
	url   string
	http  *http.Client
	clock *clock
}

func newHarness(t *testing.T) *harness {
	t.Helper()
	ck := &clock{t: time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)}
	fake := snyktest.New(snyktest.Options{
		APITokens:      []string{apiToken},
		OAuthClients:   map[string]string{clientID: secret},
		AccessTokenTTL: 10 * time.Minute,
		Now:            ck.Now,
	})
	fake.AddOrg(orgA1, groupA, "Org A1")
	fake.AddOrg(orgA2, groupA, "Org A2")
	fake.AddOrg(orgB1, groupB, "Org B1")
	fake.AddOrg(orgSolo, "", "Solo Org")

	ca := tlstest.MustNewCA()
	cfg, err := ca.ServerTLSConfig()
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(fake)
	srv.TLS = cfg
	srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	srv.StartTLS()
	t.Cleanup(srv.Close)
	hc, err := httpx.NewClient(string(ca.CertPEM), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	return &harness{t: t, fake: fake, url: srv.URL, http: hc, clock: ck}
}

type reply struct {
	status int
	header http.Header
	body   []byte
}

func (r reply) json(t *testing.T) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(r.body, &m); err != nil {
		t.Fatalf("body %q: %v", r.body, err)
	}
	return m
}

// call sends a request; auth is the whole Authorization value ("" for none).
func (h *harness) call(method, path, auth, contentType, body string) reply {
	h.t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, h.url+path, rd)
	if err != nil {
		h.t.Fatal(err)
	}
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := h.http.Do(req)
	if err != nil {
		h.t.Fatal(err)
	}
	data, err := httpx.ReadBody(resp, 1<<20)
	if err != nil {
		h.t.Fatal(err)
	}
	return reply{status: resp.StatusCode, header: resp.Header, body: data}
}

func (h *harness) v1(method, path, body string) reply {
	h.t.Helper()
	ct := ""
	if body != "" {
		ct = "application/json; charset=utf-8"
	}
	return h.call(method, "/v1"+path, "token "+apiToken, ct, body)
}

func (h *harness) expect(r reply, status int, bodyContains string) {
	h.t.Helper()
	if r.status != status || !strings.Contains(string(r.body), bodyContains) {
		h.t.Fatalf("got %d %s, want %d containing %q", r.status, r.body, status, bodyContains)
	}
}

func (h *harness) accessToken() string {
	h.t.Helper()
	form := url.Values{"grant_type": {"client_credentials"}, "client_id": {clientID}, "client_secret": {secret}}
	r := h.call("POST", "/oauth2/token", "", "application/x-www-form-urlencoded", form.Encode())
	h.expect(r, 200, "access_token")
	m := r.json(h.t)
	if m["token_type"] != "bearer" || m["expires_in"].(float64) != 600 || m["scope"] == "" || m["bot_id"] == "" {
		h.t.Fatalf("token response %v", m)
	}
	return m["access_token"].(string)
}

func TestAuthentication(t *testing.T) {
	h := newHarness(t)
	for _, auth := range []string{"", "token", "token wrong", "bearer " + apiToken, "Basic " + apiToken} {
		r := h.call("GET", "/v1/user/me", auth, "", "")
		if r.status != 401 || string(r.body) != notAuthorised {
			t.Fatalf("%q: %d %s", auth, r.status, r.body)
		}
		if ct := r.header.Get("Content-Type"); ct != "application/json; charset=utf-8" {
			t.Fatalf("content type %q", ct)
		}
	}
	for _, auth := range []string{"token " + apiToken, "Token " + apiToken} {
		r := h.call("GET", "/v1/user/me", auth, "", "")
		h.expect(r, 200, `"orgs"`)
		m := r.json(t)
		if m["id"] == "" || m["username"] == "" || len(m["orgs"].([]any)) != 4 {
			t.Fatalf("user/me %v", m)
		}
	}

	// REST answers the same 401.
	h.expect(h.call("GET", "/rest/self?version=2024-10-15", "token nope", "", ""), 401, `"Not authorised"`)

	h.fake.RevokeAPIToken(apiToken)
	h.expect(h.call("GET", "/v1/user/me", "token "+apiToken, "", ""), 401, "Not authorised")
	h.fake.AddAPIToken(apiToken)
	h.expect(h.call("GET", "/v1/user/me", "token "+apiToken, "", ""), 200, "orgs")
}

func TestOAuthTokenEndpoint(t *testing.T) {
	h := newHarness(t)
	tok := h.accessToken()
	if h.fake.AccessTokensIssued() != 1 {
		t.Fatal("issued count")
	}
	r := h.call("GET", "/rest/self?version=2024-10-15", "bearer "+tok, "", "")
	h.expect(r, 200, `"service_account"`)
	h.expect(h.call("GET", "/v1/org/"+orgA1+"/integrations", "Bearer "+tok, "", ""), 200, "{}")
	// A minted access token is not an API token, and expires.
	h.expect(h.call("GET", "/v1/user/me", "token "+tok, "", ""), 401, "Not authorised")
	h.clock.Advance(10 * time.Minute)
	h.expect(h.call("GET", "/v1/user/me", "bearer "+tok, "", ""), 401, "Not authorised")

	form := func(v url.Values) string { return v.Encode() }
	cases := []struct {
		ct, body string
		status   int
		code     string
	}{
		{"application/json", `{"grant_type":"client_credentials"}`, 400, "invalid_request"},
		{"application/x-www-form-urlencoded", form(url.Values{"grant_type": {"password"}, "client_id": {clientID}, "client_secret": {secret}}), 400, "unsupported_grant_type"},
		{"application/x-www-form-urlencoded", form(url.Values{"grant_type": {"client_credentials"}, "client_id": {clientID}}), 400, "invalid_request"},
		{"application/x-www-form-urlencoded", form(url.Values{"grant_type": {"client_credentials"}, "client_id": {clientID}, "client_secret": {"wrong"}}), 401, "invalid_client"},
		{"application/x-www-form-urlencoded", form(url.Values{"grant_type": {"client_credentials"}, "client_id": {"nobody"}, "client_secret": {secret}}), 401, "invalid_client"},
	}
	for _, c := range cases {
		r := h.call("POST", "/oauth2/token", "", c.ct, c.body)
		m := r.json(t)
		if r.status != c.status || m["error"] != c.code || m["error_description"] == "" {
			t.Fatalf("%s: %d %s", c.body, r.status, r.body)
		}
		if strings.Contains(string(r.body), secret) {
			t.Fatal("the error echoes the secret")
		}
	}
	if h.fake.AccessTokensIssued() != 1 {
		t.Fatal("failed grants minted tokens")
	}
}

func TestRESTRoutes(t *testing.T) {
	h := newHarness(t)
	auth := "token " + apiToken

	r := h.call("GET", "/rest/self", auth, "", "")
	h.expect(r, 400, "version")
	if errs := r.json(t)["errors"].([]any); errs[0].(map[string]any)["status"] != "400" {
		t.Fatalf("JSON:API error %s", r.body)
	}
	h.expect(h.call("GET", "/rest/self?version=yesterday", auth, "", ""), 400, "version")
	h.expect(h.call("GET", "/rest/self?version=2024-10-15", auth, "application/json", `{"x":1}`), 400,
		"Client request did not conform to OpenAPI specification")

	r = h.call("GET", "/rest/self?version=2024-10-15", auth, "", "")
	h.expect(r, 200, `"type":"user"`)
	if r.header.Get("Content-Type") != "application/vnd.api+json" {
		t.Fatalf("content type %q", r.header.Get("Content-Type"))
	}
	data := r.json(t)["data"].(map[string]any)
	attrs := data["attributes"].(map[string]any)
	if data["id"] == "" || attrs["name"] == "" || attrs["username"] == "" || attrs["email"] == "" {
		t.Fatalf("self %s", r.body)
	}
	if strings.Contains(string(r.body), apiToken) {
		t.Fatal("self echoes the token")
	}

	r = h.call("GET", "/rest/orgs/"+orgA1+"?version=2024-10-15~beta", auth, "", "")
	h.expect(r, 200, `"group_id":"`+groupA+`"`)
	data = r.json(t)["data"].(map[string]any)
	if data["id"] != orgA1 || data["type"] != "org" || data["attributes"].(map[string]any)["slug"] != "org-a1" {
		t.Fatalf("org %s", r.body)
	}
	r = h.call("GET", "/rest/orgs/"+orgSolo+"?version=2024-10-15", auth, "", "")
	h.expect(r, 200, `"type":"org"`)
	if strings.Contains(string(r.body), "group_id") {
		t.Fatalf("org without group %s", r.body)
	}
	h.expect(h.call("GET", "/rest/orgs/"+unknown+"?version=2024-10-15", auth, "", ""), 404, `"errors"`)
}

func TestV1NotFound(t *testing.T) {
	h := newHarness(t)
	r := h.v1("GET", "/org/"+unknown+"/integrations", "")
	want := "Org " + unknown + " was not found or you may not have the correct permissions to access the org."
	m := r.json(t)
	if r.status != 404 || m["code"].(float64) != 404 || m["message"] != want || m["error"] != want {
		t.Fatalf("got %d %s", r.status, r.body)
	}
	if !uuidV4.MatchString(r.header.Get("x-error-reference")) {
		t.Fatalf("x-error-reference %q", r.header.Get("x-error-reference"))
	}
	id, _ := h.fake.AddIntegration(orgA1, "github", true)
	// An integration is reachable only through its own org.
	h.expect(h.v1("POST", "/org/"+orgA2+"/integrations/"+id+"/authentication/provision-token", ""), 404, "Integration "+id+" was not found")
	h.expect(h.v1("POST", "/org/"+orgA1+"/integrations/"+unknown+"/authentication/switch-token", ""), 404, "was not found")
	h.expect(h.v1("GET", "/org/"+orgA1+"/integrations/gitlab", ""), 404, "was not found")
	h.expect(h.call("GET", "/v1/nowhere", "token "+apiToken, "", ""), 404, `"code":404`)
}

func TestIntegrationAddAndUpdate(t *testing.T) {
	h := newHarness(t)
	r := h.v1("POST", "/org/"+orgA1+"/integrations", `{"type":"bitbucket-server","broker":{"enabled":true}}`)
	h.expect(r, 200, "brokerToken")
	m := r.json(t)
	id, tok := m["id"].(string), m["brokerToken"].(string)
	if !uuidV4.MatchString(id) || !uuidV4.MatchString(tok) || h.fake.CurrentToken(id) != tok || !h.fake.Brokered(id) {
		t.Fatalf("add broker %s", r.body)
	}
	r = h.v1("POST", "/org/"+orgA1+"/integrations", `{"type":"github","credentials":{"token":"ghp_x"}}`)
	h.expect(r, 200, `"id"`)
	gh := r.json(t)["id"].(string)
	if strings.Contains(string(r.body), "brokerToken") || h.fake.Brokered(gh) {
		t.Fatalf("add credentials %s", r.body)
	}
	h.expect(h.v1("POST", "/org/"+orgA1+"/integrations", `{"type":"github","credentials":{"token":"y"}}`), 409, "already exists")
	h.expect(h.v1("POST", "/org/"+orgA1+"/integrations", `{"type":"gitlab"}`), 400, "")
	h.expect(h.v1("POST", "/org/"+orgA1+"/integrations", `not json`), 400, "")
	h.expect(h.v1("POST", "/org/"+unknown+"/integrations", `{"type":"gitlab","broker":{"enabled":true}}`), 404, "was not found")

	list := h.v1("GET", "/org/"+orgA1+"/integrations", "").json(t)
	if len(list) != 2 || list["github"] != gh || list["bitbucket-server"] != id {
		t.Fatalf("list %v", list)
	}
	if got := h.v1("GET", "/org/"+orgA1+"/integrations/github", "").json(t); got["id"] != gh || len(got) != 1 {
		t.Fatalf("by type %v", got)
	}

	put := func(id, body string) reply { return h.v1("PUT", "/org/"+orgA1+"/integrations/"+id, body) }
	h.expect(put(gh, `{"type":"github","credentials":{"token":"ghp_y"}}`), 200, gh)
	h.expect(put(gh, `{"type":"gitlab","broker":{"enabled":true}}`), 400, "")
	h.expect(put(gh, `{"broker":{"enabled":true}}`), 400, "type")
	h.expect(put(gh, `{"type":"github"}`), 400, "")
	r = put(gh, `{"type":"github","broker":{"enabled":true}}`)
	h.expect(r, 200, "brokerToken")
	ghTok := r.json(t)["brokerToken"].(string)
	if h.fake.CurrentToken(gh) != ghTok || !h.fake.Brokered(gh) {
		t.Fatal("enable")
	}
	// Credentials cannot change while brokered; disabling needs them.
	h.expect(put(gh, `{"type":"github","credentials":{"token":"z"}}`), 400, "brokered")
	h.expect(put(gh, `{"type":"github","broker":{"enabled":false}}`), 400, "Credentials required")
	h.expect(put(gh, `{"type":"github","broker":{"enabled":false},"credentials":{"token":"z"}}`), 200, gh)
	if h.fake.Brokered(gh) || h.fake.CurrentToken(gh) != "" || h.fake.TokenIsCurrent(ghTok) {
		t.Fatal("disable left the token working")
	}
	// Enabling again issues a fresh token.
	r = put(gh, `{"type":"github","broker":{"enabled":true}}`)
	if r.json(t)["brokerToken"] == ghTok {
		t.Fatal("re-enable reused a disabled token")
	}
}

func TestEnableOnBrokeredBehaviours(t *testing.T) {
	h := newHarness(t)
	id, tok := h.fake.AddIntegration(orgA1, "github", true)
	path := "/org/" + orgA1 + "/integrations/" + id
	body := `{"type":"github","broker":{"enabled":true}}`
	if got := h.v1("PUT", path, body).json(t)["brokerToken"]; got != tok {
		t.Fatalf("same-token: %v", got)
	}
	h.fake.SetBehaviour(snyktest.Behaviour{EnableOnBrokered: snyktest.EnableNewToken})
	got := h.v1("PUT", path, body).json(t)["brokerToken"].(string)
	if got == tok || h.fake.CurrentToken(id) != got || h.fake.TokenIsCurrent(tok) {
		t.Fatalf("new-token: %v", got)
	}
	h.fake.SetBehaviour(snyktest.Behaviour{EnableOnBrokered: snyktest.EnableError})
	h.expect(h.v1("PUT", path, body), 409, "already brokered")
}

func TestProvisionSwitchAndGroupLanes(t *testing.T) {
	h := newHarness(t)
	a1, tok1 := h.fake.AddIntegration(orgA1, "github", true)
	a2, _ := h.fake.AddIntegration(orgA2, "gitlab", true)
	b1, _ := h.fake.AddIntegration(orgB1, "github", true)
	solo, _ := h.fake.AddIntegration(orgSolo, "github", true)
	plain, _ := h.fake.AddIntegration(orgA1, "gitlab", false)
	prov := func(org, id string) reply {
		return h.v1("POST", "/org/"+org+"/integrations/"+id+"/authentication/provision-token", "")
	}
	sw := func(org, id string) reply {
		return h.v1("POST", "/org/"+org+"/integrations/"+id+"/authentication/switch-token", "")
	}

	h.expect(sw(orgA1, a1), 400, "No provisional token")
	h.expect(prov(orgA1, plain), 400, "Integration "+plain+" is not brokered")
	h.expect(sw(orgA1, plain), 400, "is not brokered")

	r := prov(orgA1, a1)
	h.expect(r, 200, "provisionalBrokerToken")
	m := r.json(t)
	p := m["provisionalBrokerToken"].(string)
	if m["id"] != a1 || !uuidV4.MatchString(p) || h.fake.ProvisionalToken(a1) != p || h.fake.GroupProvisionalHolder(groupA) != a1 {
		t.Fatalf("provision %s", r.body)
	}
	if !h.fake.TokenIsProvisional(p) || h.fake.TokenIsCurrent(p) || !h.fake.TokenIsCurrent(tok1) {
		t.Fatal("provisional token state")
	}
	h.expect(prov(orgA2, a2), 409, "already")
	h.expect(prov(orgA1, a1), 409, "already")
	h.expect(prov(orgB1, b1), 200, "provisionalBrokerToken")
	h.expect(prov(orgSolo, solo), 200, "provisionalBrokerToken")
	if h.fake.GroupProvisionalHolder(orgSolo) != solo || h.fake.GroupProvisionalHolder(groupB) != b1 {
		t.Fatal("lanes")
	}
	// The other integration of group A has nothing to switch to.
	h.expect(sw(orgA2, a2), 400, "No provisional token")

	r = sw(orgA1, a1)
	if r.status != 200 || len(r.body) != 0 {
		t.Fatalf("switch %d %q", r.status, r.body)
	}
	if h.fake.CurrentToken(a1) != p || h.fake.ProvisionalToken(a1) != "" || h.fake.GroupProvisionalHolder(groupA) != "" || h.fake.TokenIsCurrent(tok1) {
		t.Fatal("switch state")
	}
	h.expect(prov(orgA2, a2), 200, "provisionalBrokerToken")

	h.fake.SetBehaviour(snyktest.Behaviour{ProvisionConflictStatus: 422, SwitchWithoutProvisionalStatus: 404, NotBrokeredStatus: 422})
	h.expect(prov(orgA1, a1), 422, "already")
	h.expect(sw(orgA1, a1), 404, "No provisional token")
	h.expect(prov(orgA1, plain), 422, "not brokered")
}

func TestCloneDeleteAndSettings(t *testing.T) {
	h := newHarness(t)
	id, tok := h.fake.AddIntegration(orgA1, "github", true)
	base := "/org/" + orgA1 + "/integrations/" + id

	h.expect(h.v1("PUT", base+"/settings", `{"pullRequestTestEnabled":true,"autoDepUpgradeLimit":2}`), 200, `"autoDepUpgradeLimit":2`)
	h.expect(h.v1("PUT", base+"/settings", `{"autoDepUpgradeLimit":5}`), 200, `"pullRequestTestEnabled":true`)
	h.expect(h.v1("PUT", base+"/settings", `[1]`), 400, "")
	if got := h.v1("GET", base+"/settings", "").json(t); got["autoDepUpgradeLimit"].(float64) != 5 || got["pullRequestTestEnabled"] != true {
		t.Fatalf("settings %v", got)
	}

	h.expect(h.v1("POST", base+"/clone", `{}`), 400, "destinationOrgPublicId")
	h.expect(h.v1("POST", base+"/clone", `{"destinationOrgPublicId":"`+orgB1+`"}`), 400, "same group")
	h.expect(h.v1("POST", base+"/clone", `{"destinationOrgPublicId":"`+unknown+`"}`), 404, "was not found")
	r := h.v1("POST", base+"/clone", `{"destinationOrgPublicId":"`+orgA2+`"}`)
	h.expect(r, 200, "newIntegrationId")
	clone := r.json(t)["newIntegrationId"].(string)
	if h.fake.IntegrationIDs(orgA2)["github"] != clone || h.fake.CurrentToken(clone) != tok || !h.fake.Brokered(clone) {
		t.Fatal("clone state")
	}
	if got := h.v1("GET", "/org/"+orgA2+"/integrations/"+clone+"/settings", "").json(t); got["autoDepUpgradeLimit"].(float64) != 5 {
		t.Fatalf("clone settings %v", got)
	}
	h.expect(h.v1("POST", base+"/clone", `{"destinationOrgPublicId":"`+orgA2+`"}`), 409, "already exists")

	// Deleting credentials of a brokered integration changes nothing.
	r = h.v1("DELETE", base+"/authentication", "")
	if r.status != 200 || len(r.body) != 0 || h.fake.CurrentToken(id) != tok {
		t.Fatalf("delete %d %q", r.status, r.body)
	}

	// Disabling Broker on the clone leaves the original's token alone.
	h.expect(h.v1("PUT", "/org/"+orgA2+"/integrations/"+clone, `{"type":"github","broker":{"enabled":false},"credentials":{"token":"t"}}`), 200, clone)
	if h.fake.CurrentToken(id) != tok || !h.fake.TokenIsCurrent(tok) || h.fake.CurrentToken(clone) != "" {
		t.Fatal("disabling the clone broke the original")
	}
}

func TestRateLimit(t *testing.T) {
	for _, retryAfter := range []bool{false, true} {
		h := newHarness(t)
		h.fake.SetBehaviour(snyktest.Behaviour{RateLimitWindow: time.Minute, RateLimitPerWindow: 2, RateLimitRetryAfter: retryAfter})
		list := func() reply { return h.v1("GET", "/org/"+orgA1+"/integrations", "") }
		h.expect(list(), 200, "{}")
		h.expect(list(), 200, "{}")
		r := list()
		if r.status != 429 || string(r.body) != `{"code":429,"message":"Too many requests","error":"Too many requests"}` {
			t.Fatalf("got %d %s", r.status, r.body)
		}
		if got := r.header.Get("Retry-After"); (got == "60") != retryAfter || (got == "") == retryAfter {
			t.Fatalf("Retry-After %q", got)
		}
		// Continued requests extend the window.
		h.clock.Advance(50 * time.Second)
		h.expect(list(), 429, "Too many requests")
		h.clock.Advance(50 * time.Second)
		h.expect(list(), 429, "Too many requests")
		h.clock.Advance(time.Minute)
		h.expect(list(), 200, "{}")
		if n := h.fake.Faults().Calls(snyktest.RouteListIntegrations); n != 6 {
			t.Fatalf("calls %d", n)
		}
	}
}

func TestFaultsAndCounters(t *testing.T) {
	h := newHarness(t)
	id, _ := h.fake.AddIntegration(orgA1, "github", true)
	base := "/org/" + orgA1 + "/integrations/" + id
	h.v1("GET", base+"/settings", "")
	h.v1("PUT", base+"/settings", `{"a":1}`)
	h.call("GET", "/v1/user/me", "", "", "") // unauthenticated calls count too
	if n := h.fake.Faults().Calls(snyktest.RouteSettings); n != 2 {
		t.Fatalf("settings calls %d", n)
	}
	if n := h.fake.Faults().Calls(snyktest.RouteUserMe); n != 1 {
		t.Fatalf("user/me calls %d", n)
	}

	h.fake.Faults().Inject(snyktest.RouteProvisionToken, fault.Fault{Status: 500, AfterHandler: true, Times: 1})
	h.expect(h.v1("POST", base+"/authentication/provision-token", ""), 500, "")
	if h.fake.ProvisionalToken(id) == "" {
		t.Fatal("AfterHandler should let the provision happen")
	}
	h.expect(h.v1("POST", base+"/authentication/provision-token", ""), 409, "already")

	h.fake.Faults().Inject(snyktest.RouteOAuthToken, fault.Fault{Status: 503, Times: 1})
	h.expect(h.call("POST", "/oauth2/token", "", "application/x-www-form-urlencoded", "grant_type=client_credentials"), 503, "")
	if h.fake.Faults().Calls(snyktest.RouteOAuthToken) != 1 {
		t.Fatal("oauth counter")
	}
}

func TestConcurrentProvisionYieldsOneToken(t *testing.T) {
	h := newHarness(t)
	var ids []string
	for _, org := range []string{orgA1, orgA2} {
		for _, typ := range []string{"github", "gitlab", "azure-repos"} {
			id, _ := h.fake.AddIntegration(org, typ, true)
			ids = append(ids, org+"/integrations/"+id)
		}
	}
	var wg sync.WaitGroup
	statuses := make(chan int, 4*len(ids))
	for i := 0; i < 4; i++ {
		for _, p := range ids {
			wg.Add(1)
			go func() {
				defer wg.Done()
				statuses <- h.v1("POST", "/org/"+p+"/authentication/provision-token", "").status
			}()
		}
	}
	wg.Wait()
	close(statuses)
	ok, conflict := 0, 0
	for s := range statuses {
		switch s {
		case 200:
			ok++
		case 409:
			conflict++
		default:
			t.Fatalf("status %d", s)
		}
	}
	if ok != 1 || conflict != 4*len(ids)-1 {
		t.Fatalf("ok %d conflict %d", ok, conflict)
	}
}

func TestHelpers(t *testing.T) {
	fake := snyktest.New(snyktest.Options{})
	id, tok := fake.AddIntegration("new-org", "github", true)
	if tok == "" || fake.CurrentToken(id) != tok || !fake.TokenIsCurrent(tok) || fake.TokenIsCurrent("") {
		t.Fatal("AddIntegration on an unknown org")
	}
	again, tok2 := fake.AddIntegration("new-org", "github", true)
	if again != id || tok2 != tok {
		t.Fatal("AddIntegration of an existing type should return it")
	}
	if ids := fake.IntegrationIDs("new-org"); len(ids) != 1 || ids["github"] != id {
		t.Fatalf("ids %v", ids)
	}
	if fake.CurrentToken("nope") != "" || fake.ProvisionalToken("nope") != "" || fake.Brokered("nope") || fake.GroupProvisionalHolder("nope") != "" {
		t.Fatal("unknown IDs")
	}
	// Usable as a plain handler, without a network.
	rec := httptest.NewRecorder()
	fake.ServeHTTP(rec, httptest.NewRequest("GET", "/v1/user/me", nil))
	if rec.Code != 401 || rec.Body.String() != notAuthorised {
		t.Fatalf("got %d %s", rec.Code, rec.Body)
	}
}

// TestV1RequestRules: the fake holds clients to the documented request
// shapes: JSON bodies declared as JSON, and no body where none is taken.
func TestV1RequestRules(t *testing.T) {
	h := newHarness(t)
	id, _ := h.fake.AddIntegration(orgA1, "github", false)
	put := `{"type":"github","broker":{"enabled":true}}`
	h.expect(h.call("PUT", "/v1/org/"+orgA1+"/integrations/"+id, "token "+apiToken, "", put), 400, "Content-Type must be application/json")
	h.expect(h.call("PUT", "/v1/org/"+orgA1+"/integrations/"+id, "token "+apiToken, "text/plain", put), 400, "Content-Type must be application/json")
	if h.fake.Brokered(id) {
		t.Fatal("a request refused for its Content-Type changed state")
	}
	h.expect(h.call("PUT", "/v1/org/"+orgA1+"/integrations/"+id, "token "+apiToken, "application/json", put), 200, "brokerToken")

	for _, action := range []string{"provision-token", "switch-token"} {
		h.expect(h.v1("POST", "/org/"+orgA1+"/integrations/"+id+"/authentication/"+action, `{"token":"x"}`), 400, "does not take a request body")
	}
	if h.fake.ProvisionalToken(id) != "" {
		t.Fatal("a provision with a body was applied")
	}
}

// TestProfilesAnswerAsNamed: every behaviour profile answers each
// undocumented refusal with its status and words.
func TestProfilesAnswerAsNamed(t *testing.T) {
	for _, p := range snyktest.Profiles() {
		if p.EnableOnBrokered != snyktest.EnableError {
			continue
		}
		t.Run(p.Name, func(t *testing.T) {
			h := newHarness(t)
			h.fake.SetBehaviour(p.Behaviour)
			plain, _ := h.fake.AddIntegration(orgA1, "gitlab", false)
			a1, _ := h.fake.AddIntegration(orgA1, "github", true)
			a2, _ := h.fake.AddIntegration(orgA2, "github", true)
			status := p.NotBrokeredStatus
			words := func(format, id string) string {
				if strings.Contains(format, "%s") {
					return fmt.Sprintf(format, id)
				}
				return format
			}
			base := func(org, id string) string { return "/org/" + org + "/integrations/" + id }
			h.expect(h.v1("POST", base(orgA1, plain)+"/authentication/provision-token", ""), status, words(p.NotBrokeredMessage, plain))
			h.expect(h.v1("POST", base(orgA1, a1)+"/authentication/switch-token", ""), status, words(p.SwitchWithoutProvisionalMessage, a1))
			h.expect(h.v1("PUT", base(orgA1, a1), `{"type":"github","broker":{"enabled":true}}`), status, words(p.EnableOnBrokeredMessage, a1))
			h.expect(h.v1("POST", base(orgA1, a1)+"/authentication/provision-token", ""), 200, "provisionalBrokerToken")
			h.expect(h.v1("POST", base(orgA2, a2)+"/authentication/provision-token", ""), status, words(p.ProvisionConflictMessage, a2))
		})
	}
	if _, ok := snyktest.ProfileNamed("status-409-wording-1"); !ok {
		t.Fatal("ProfileNamed does not find a listed profile")
	}
	if _, ok := snyktest.ProfileNamed("no-such-profile"); ok {
		t.Fatal("ProfileNamed found an unknown profile")
	}
}
