package snyk_test

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/snyk-vault/vault-plugin-secrets-snyk/backend/fault"
	"github.com/snyk-vault/vault-plugin-secrets-snyk/backend/httpx"
	"github.com/snyk-vault/vault-plugin-secrets-snyk/backend/snyk"
	"github.com/snyk-vault/vault-plugin-secrets-snyk/backend/snyk/snyktest"
)

func TestNewClientValidation(t *testing.T) {
	tok := snyk.Credential{APIToken: testAPIToken}
	cases := []struct {
		name string
		cfg  snyk.Config
		want string
	}{
		{"http", snyk.Config{APIURL: "http://api.snyk.io", Credential: tok}, "api_url"},
		{"no scheme", snyk.Config{APIURL: "api.snyk.io", Credential: tok}, "api_url"},
		{"empty", snyk.Config{Credential: tok}, "api_url"},
		{"userinfo", snyk.Config{APIURL: "https://user:" + testAPIToken + "@api.snyk.io", Credential: tok}, "api_url"},
		{"v1 suffix", snyk.Config{APIURL: "https://api.snyk.io/v1", Credential: tok}, "api_url"},
		{"no credential", snyk.Config{APIURL: "https://api.snyk.io"}, "credential"},
		{"both", snyk.Config{APIURL: "https://api.snyk.io", Credential: snyk.Credential{APIToken: "x", ClientID: "y", ClientSecret: "z"}}, "mutually exclusive"},
		{"half oauth", snyk.Config{APIURL: "https://api.snyk.io", Credential: snyk.Credential{ClientID: "y"}}, "client_secret"},
		{"bad ca", snyk.Config{APIURL: "https://api.snyk.io", Credential: tok, CACert: "not a pem"}, "ca_cert"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := snyk.NewClient(tc.cfg)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("want error mentioning %q, got %v", tc.want, err)
			}
			if strings.Contains(err.Error(), testAPIToken) {
				t.Fatalf("error leaks the URL's credential: %v", err)
			}
		})
	}
	for _, ok := range []string{"https://api.snyk.io", "https://api.eu.snyk.io/", "https://proxy.example.com/snyk"} {
		if _, err := snyk.NewClient(snyk.Config{APIURL: ok, Credential: tok}); err != nil {
			t.Errorf("%s: %v", ok, err)
		}
	}
}

func TestRegions(t *testing.T) {
	want := map[string][2]string{
		"SNYK-US-01": {"https://api.snyk.io", "https://broker.snyk.io"},
		"SNYK-US-02": {"https://api.us.snyk.io", "https://broker.us.snyk.io"},
		"SNYK-EU-01": {"https://api.eu.snyk.io", "https://broker.eu.snyk.io"},
		"SNYK-AU-01": {"https://api.au.snyk.io", "https://broker.au.snyk.io"},
	}
	if len(snyk.Regions) != len(want) {
		t.Fatalf("regions: %v", snyk.Regions)
	}
	for name, w := range want {
		r := snyk.Regions[name]
		if r.Name != name || r.APIURL != w[0] || r.BrokerServerURL != w[1] {
			t.Errorf("%s: %+v", name, r)
		}
	}
	if _, ok := snyk.Regions[snyk.DefaultRegion]; !ok {
		t.Error("default region missing")
	}
}

func TestVerifyWithAPIToken(t *testing.T) {
	e := newEnv(t, envOpts{})
	id, err := e.client.Verify(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if id.ID == "" || id.Type != "user" || id.Name == "" {
		t.Fatalf("identity: %+v", id)
	}
	r := e.lastRequest()
	if r.path != "/rest/self" || r.rawQuery != "version=2024-10-15" {
		t.Fatalf("request: %s?%s", r.path, r.rawQuery)
	}
	if got := r.header.Get("Authorization"); got != "token "+testAPIToken {
		t.Fatalf("Authorization: %q", got)
	}
	if r.header.Get("Accept") != "application/vnd.api+json" || r.header.Get("Content-Type") != "application/vnd.api+json" {
		t.Fatalf("headers: %v", r.header)
	}
	logs := e.logs.String()
	if !strings.Contains(logs, "snyk response") || !strings.Contains(logs, "path=/rest/self") || !strings.Contains(logs, "status=200") {
		t.Fatalf("expected a debug line with method, path and status; got:\n%s", logs)
	}
	if strings.Contains(logs, "version=") {
		t.Fatalf("log contains the query string:\n%s", logs)
	}
}

func TestUnauthorized(t *testing.T) {
	bad := "9e9e9e9e-bad0-4bad-8bad-badbadbadbad"
	e := newEnv(t, envOpts{apiToken: bad})
	_, err := e.client.Verify(context.Background())
	ae := apiErr(t, err)
	if ae.Status != http.StatusUnauthorized || ae.Message != "Not authorised" || snyk.StatusOf(err) != 401 {
		t.Fatalf("got %+v", ae)
	}
	if err.Error() != "snyk: GET /rest/self: 401: Not authorised" {
		t.Fatalf("Error(): %q", err)
	}
	_, err = e.client.ListIntegrations(context.Background(), orgA1)
	if snyk.StatusOf(err) != 401 || !strings.Contains(err.Error(), "Not authorised") {
		t.Fatalf("v1: %v", err)
	}
	e.noLeak(err)
	// A 401 is final: no retry for an API token.
	if n := e.fake.Faults().Calls(snyktest.RouteListIntegrations); n != 1 {
		t.Fatalf("calls: %d", n)
	}
}

func TestRevokedAPIToken(t *testing.T) {
	e := newEnv(t, envOpts{})
	if _, err := e.client.Verify(context.Background()); err != nil {
		t.Fatal(err)
	}
	e.fake.RevokeAPIToken(testAPIToken)
	if _, err := e.client.Verify(context.Background()); snyk.StatusOf(err) != 401 {
		t.Fatalf("want 401, got %v", err)
	}
}

func TestOrgGroupID(t *testing.T) {
	e := newEnv(t, envOpts{})
	ctx := context.Background()
	g, err := e.client.OrgGroupID(ctx, orgA1)
	if err != nil || g != groupA {
		t.Fatalf("got %q, %v", g, err)
	}
	r := e.lastRequest()
	if r.path != "/rest/orgs/"+orgA1 || r.rawQuery != "version=2024-10-15" {
		t.Fatalf("request: %s?%s", r.path, r.rawQuery)
	}
	g, err = e.client.OrgGroupID(ctx, orgNoGrp)
	if err != nil || g != "" {
		t.Fatalf("org without group: %q, %v", g, err)
	}
	_, err = e.client.OrgGroupID(ctx, "d0d0d0d0-0000-4000-8000-000000000000")
	ae := apiErr(t, err)
	if ae.Status != 404 || !strings.Contains(ae.Message, "was not found") {
		t.Fatalf("got %+v", ae)
	}
	if _, err := e.client.OrgGroupID(ctx, ""); err == nil {
		t.Fatal("empty org ID accepted")
	}
}

func TestNotFoundMessageAndRef(t *testing.T) {
	e := newEnv(t, envOpts{})
	unknown := "d0d0d0d0-0000-4000-8000-000000000000"
	_, err := e.client.IntegrationByType(context.Background(), unknown, "github")
	ae := apiErr(t, err)
	want := "Org " + unknown + " was not found or you may not have the correct permissions to access the org."
	if ae.Status != 404 || ae.Message != want || ae.Ref == "" {
		t.Fatalf("got %+v", ae)
	}
	if ae.Method != "GET" || ae.Path != "/v1/org/"+unknown+"/integrations/github" {
		t.Fatalf("method/path: %s %s", ae.Method, ae.Path)
	}
	// A 404 is not retried.
	if n := e.fake.Faults().Calls(snyktest.RouteIntegrationByType); n != 1 {
		t.Fatalf("calls: %d", n)
	}
}

func TestUnparseableErrorBodyIsNotEchoed(t *testing.T) {
	e := newEnv(t, envOpts{})
	e.fake.Faults().Inject(snyktest.RouteListIntegrations, faultBody(http.StatusBadRequest,
		"<html>your token "+testAPIToken+" was rejected</html>", "text/html"))
	_, err := e.client.ListIntegrations(context.Background(), orgA1)
	ae := apiErr(t, err)
	if ae.Status != 400 || ae.Message != "Bad Request" {
		t.Fatalf("got %+v", ae)
	}
	e.noLeak(err)
}

func TestUpstreamMessageEchoingTheCredentialIsRedacted(t *testing.T) {
	e := newEnv(t, envOpts{})
	e.fake.Faults().Inject(snyktest.RouteListIntegrations, faultBody(http.StatusBadRequest,
		`{"code":400,"message":"token `+testAPIToken+` is malformed","errorRef":"ref-1"}`, ""))
	_, err := e.client.ListIntegrations(context.Background(), orgA1)
	ae := apiErr(t, err)
	if ae.Ref != "ref-1" || !strings.Contains(ae.Message, "[redacted]") {
		t.Fatalf("got %+v", ae)
	}
	e.noLeak(err)
}

func TestContextCancelled(t *testing.T) {
	e := newEnv(t, envOpts{})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := e.client.ListIntegrations(ctx, orgA1)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("want context.Canceled, got %v", err)
	}
}

func TestContextDeadlineWhileWaitingForRetry(t *testing.T) {
	// The wait for Retry-After (30s) is a real, context-aware sleep; what it
	// returned shows whether the caller's deadline cut it short.
	var waited []error
	e := newEnv(t, envOpts{retry: func(p *httpx.RetryPolicy) {
		p.Sleep = func(ctx context.Context, d time.Duration) error {
			err := httpx.SleepContext(ctx, d)
			waited = append(waited, err)
			return err
		}
	}})
	e.fake.Faults().Inject(snyktest.RouteListIntegrations, fault.Fault{Status: 429, RetryAfter: "30"})
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	_, err := e.client.ListIntegrations(ctx, orgA1)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("got %v", err)
	}
	if len(waited) != 1 || !errors.Is(waited[0], context.DeadlineExceeded) {
		t.Fatalf("the retry wait was not cut short by the deadline: %v", waited)
	}
}

// A 2xx body the client cannot use is never echoed; for a POST the action
// happened upstream, so it is reported as an unknown outcome.
func TestUnusableSuccessBody(t *testing.T) {
	e := newEnv(t, envOpts{})
	ctx := context.Background()
	id, _ := mustBrokered(t, e, orgA1, "github")
	leaky := "not json " + testAPIToken
	e.fake.Faults().Inject(snyktest.RouteProvisionToken, faultBody(http.StatusOK, leaky, "text/plain"))
	_, err := e.client.ProvisionToken(ctx, orgA1, id)
	if !errors.Is(err, httpx.ErrOutcomeUnknown) || snyk.StatusOf(err) != 0 {
		t.Fatalf("got %v", err)
	}
	e.noLeak(err)

	e.fake.Faults().Inject(snyktest.RouteProvisionToken, faultBody(http.StatusOK, `{"id":"x"}`, ""))
	if _, err := e.client.ProvisionToken(ctx, orgA1, id); err == nil || !strings.Contains(err.Error(), "provisionalBrokerToken") {
		t.Fatalf("got %v", err)
	}

	e.fake.Faults().Inject(snyktest.RouteListIntegrations, faultBody(http.StatusOK, leaky, "text/plain"))
	_, err = e.client.ListIntegrations(ctx, orgA1)
	if err == nil || errors.Is(err, httpx.ErrOutcomeUnknown) {
		t.Fatalf("got %v", err)
	}
	e.noLeak(err)

	e.fake.Faults().Inject(snyktest.RouteUpdateIntegration, faultBody(http.StatusOK, `{"id":"`+id+`"}`, ""))
	if _, err := e.client.EnableBroker(ctx, orgA1, id, "github"); err == nil || !strings.Contains(err.Error(), "brokerToken") {
		t.Fatalf("got %v", err)
	}
	for _, err := range []error{
		e.client.SwitchToken(ctx, "", id),
		e.client.SwitchToken(ctx, orgA1, ""),
	} {
		if err == nil || !strings.Contains(err.Error(), "required") {
			t.Fatalf("got %v", err)
		}
	}
}
