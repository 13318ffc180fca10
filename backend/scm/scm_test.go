package scm_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	hclog "github.com/hashicorp/go-hclog"

	"github.com/snyk-vault/vault-plugin-secrets-snyk/backend/httpx"
	"github.com/snyk-vault/vault-plugin-secrets-snyk/backend/scm"
	"github.com/snyk-vault/vault-plugin-secrets-snyk/backend/scm/scmtest"
	"github.com/snyk-vault/vault-plugin-secrets-snyk/backend/tlstest"
)

// One CA for the whole package: minting is cheap, but the fakes are only
// trusted because the client gets exactly this CA, as an operator's would.
var testCA = tlstest.MustNewCA()

const maxAttempts = 4

// syncBuffer lets hclog write from the client's goroutines under -race.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// harness serves one fake over TLS and validates against it with a
// Trace-level logger captured in a buffer and a sleep that only records.
type harness struct {
	srv *httptest.Server
	v   *scm.Validator
	log *syncBuffer

	mu     sync.Mutex
	sleeps []time.Duration
}

func newHarness(t *testing.T, h http.Handler) *harness {
	t.Helper()
	srv, err := testCA.StartServer(h)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Close)
	client, err := httpx.NewClient(string(testCA.CertPEM), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	hs := &harness{srv: srv, log: &syncBuffer{}}
	hs.v = &scm.Validator{
		Client: client,
		Retry: httpx.RetryPolicy{
			MaxAttempts:    maxAttempts,
			BaseDelay:      time.Second,
			RateLimitDelay: time.Second,
			MaxDelay:       30 * time.Second,
			MaxTotalWait:   5 * time.Minute,
			Sleep:          hs.sleep,
		},
		Logger: hclog.New(&hclog.LoggerOptions{Level: hclog.Trace, Output: hs.log}),
	}
	return hs
}

func (h *harness) sleep(_ context.Context, d time.Duration) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.sleeps = append(h.sleeps, d)
	return nil
}

func (h *harness) slept() []time.Duration {
	h.mu.Lock()
	defer h.mu.Unlock()
	return slices.Clone(h.sleeps)
}

// expect is what a case asserts about a validation.
type expect struct {
	valid    bool
	scopes   []string // nil: not checked
	missing  []string // checked always (nil == empty)
	problems []string // each must appear in Message()
	notes    []string // each must appear in some note
	user     string   // "": not checked
	expires  time.Time
	err      error // errors.Is target; nil means no error
	calls    map[string]int
	sleeps   []time.Duration // nil: not checked
}

func (h *harness) check(t *testing.T, fake scmtest.Fake, res scm.Result, err error, want expect, secrets ...string) {
	t.Helper()
	if want.err != nil {
		if !errors.Is(err, want.err) {
			t.Fatalf("error = %v, want %v (result %+v)", err, want.err, res)
		}
	} else if err != nil {
		t.Fatalf("unexpected error: %v", err)
	}
	if err == nil {
		if res.Valid != want.valid {
			t.Errorf("Valid = %v, want %v; problems: %q", res.Valid, want.valid, res.Problems)
		}
		if res.Valid != (len(res.Problems) == 0) {
			t.Errorf("Valid = %v but %d problems", res.Valid, len(res.Problems))
		}
		if want.scopes != nil && !slices.Equal(res.Scopes, want.scopes) {
			t.Errorf("Scopes = %q, want %q", res.Scopes, want.scopes)
		}
		if !slices.Equal(res.MissingScopes, want.missing) {
			t.Errorf("MissingScopes = %q, want %q", res.MissingScopes, want.missing)
		}
		for _, p := range want.problems {
			if !strings.Contains(res.Message(), p) {
				t.Errorf("Message() = %q, want it to contain %q", res.Message(), p)
			}
		}
		if want.valid && len(want.problems) == 0 && res.Message() != "" {
			t.Errorf("unexpected problems: %q", res.Problems)
		}
		for _, n := range want.notes {
			if !slices.ContainsFunc(res.Notes, func(s string) bool { return strings.Contains(s, n) }) {
				t.Errorf("Notes = %q, want one containing %q", res.Notes, n)
			}
		}
		if want.user != "" && res.Username != want.user {
			t.Errorf("Username = %q, want %q", res.Username, want.user)
		}
		if !res.ExpiresAt.Equal(want.expires) {
			t.Errorf("ExpiresAt = %v, want %v", res.ExpiresAt, want.expires)
		}
	}
	for route, n := range want.calls {
		if got := fake.Faults().Calls(route); got != n {
			t.Errorf("calls to %s = %d, want %d (all: %s)", route, got, n, fake.Faults())
		}
	}
	if want.sleeps != nil && !slices.Equal(h.slept(), want.sleeps) {
		t.Errorf("sleeps = %v, want %v", h.slept(), want.sleeps)
	}
	assertNoLeak(t, h.log.String(), res, err, secrets...)
}

// assertNoLeak checks the secrets, raw and in the encodings they travel in,
// against everything the validator hands back or logs.
func assertNoLeak(t *testing.T, logs string, res scm.Result, err error, secrets ...string) {
	t.Helper()
	if !strings.Contains(logs, "path=") {
		t.Errorf("expected trace logs with request paths, got %q", logs)
	}
	var forms []string
	for _, s := range secrets {
		if s == "" {
			continue
		}
		forms = append(forms, s,
			base64.StdEncoding.EncodeToString([]byte("PAT:"+s)),
			base64.StdEncoding.EncodeToString([]byte(":"+s)))
	}
	places := map[string]string{"logs": logs, "problems": strings.Join(res.Problems, "\n"), "notes": strings.Join(res.Notes, "\n"), "username": res.Username}
	if err != nil {
		places["error"] = err.Error()
	}
	for where, text := range places {
		for _, f := range forms {
			if strings.Contains(text, f) {
				t.Errorf("secret leaked into %s: %q", where, text)
			}
		}
	}
	if strings.Contains(logs, "Authorization") || strings.Contains(logs, "PRIVATE-TOKEN") ||
		strings.Contains(logs, "Basic ") || strings.Contains(logs, "Bearer ") {
		t.Errorf("credential header named in logs: %q", logs)
	}
	if strings.Contains(logs, "?") {
		t.Errorf("query string in logs: %q", logs)
	}
}

func TestKindsAndDefaults(t *testing.T) {
	for _, k := range scm.Kinds {
		if !scm.Valid(k) {
			t.Errorf("Valid(%q) = false", k)
		}
		if len(scm.RequiredScopes(k)) == 0 {
			t.Errorf("RequiredScopes(%q) empty", k)
		}
	}
	if scm.Valid("bitbucket-cloud") || scm.Valid("") {
		t.Error("unsupported kinds reported valid")
	}
	tests := []struct{ kind, scmURL, wantSCM, wantAPI string }{
		{scm.GitHub, "", "https://github.com", "https://api.github.com"},
		{scm.GitHub, "https://github.com/", "https://github.com", "https://api.github.com"},
		{scm.GitHubEnterprise, "https://ghe.example.com/", "", "https://ghe.example.com/api/v3"},
		{scm.GitHubEnterprise, "", "", ""},
		{scm.GitLab, "", "https://gitlab.com", "https://gitlab.com/api/v4"},
		{scm.GitLab, "https://git.example.com/gitlab//", "https://gitlab.com", "https://git.example.com/gitlab/api/v4"},
		{scm.AzureRepos, "", "https://dev.azure.com", "https://dev.azure.com"},
		{scm.AzureRepos, "https://tfs.example.com/tfs/", "https://dev.azure.com", "https://tfs.example.com/tfs"},
		{scm.BitbucketServer, "https://bitbucket.example.com/", "", "https://bitbucket.example.com"},
		{"svn", "https://svn.example.com", "", ""},
	}
	for _, tc := range tests {
		if got := scm.DefaultSCMURL(tc.kind); got != tc.wantSCM {
			t.Errorf("DefaultSCMURL(%q) = %q, want %q", tc.kind, got, tc.wantSCM)
		}
		if got := scm.DefaultAPIURL(tc.kind, tc.scmURL); got != tc.wantAPI {
			t.Errorf("DefaultAPIURL(%q, %q) = %q, want %q", tc.kind, tc.scmURL, got, tc.wantAPI)
		}
	}
	r := scm.RequiredScopes(scm.GitHub)
	r[0] = "mutated"
	if scm.RequiredScopes(scm.GitHub)[0] != "repo" {
		t.Error("RequiredScopes returned shared storage")
	}
	want := map[string][]string{
		scm.GitHub:           {"repo", "read:org", "admin:repo_hook"},
		scm.GitHubEnterprise: {"repo", "read:org", "admin:repo_hook"},
		scm.GitLab:           {"api", "maintainer"},
		scm.AzureRepos:       {"vso.code_write"},
		scm.BitbucketServer:  {"REPO_ADMIN"},
	}
	for k, w := range want {
		if got := scm.RequiredScopes(k); !slices.Equal(got, w) {
			t.Errorf("RequiredScopes(%q) = %q, want %q", k, got, w)
		}
	}
	if got := (scm.Result{Problems: []string{"a", "b"}}).Message(); got != "a; b" {
		t.Errorf("Message() = %q", got)
	}
}

// TestTargetProblems covers what is rejected before any request is sent.
func TestTargetProblems(t *testing.T) {
	gh := scmtest.NewGitHub(false)
	h := newHarness(t, gh)
	host := strings.TrimPrefix(h.srv.URL, "https://")
	tests := []struct {
		name    string
		target  scm.Target
		problem string
	}{
		{"unknown kind", scm.Target{Kind: "bitbucket-cloud", APIURL: h.srv.URL}, `unknown scm "bitbucket-cloud"`},
		{"plain http", scm.Target{Kind: scm.GitHub, APIURL: "http://" + host}, "must use https"},
		{"no url", scm.Target{Kind: scm.GitHubEnterprise}, "no SCM API URL"},
		{"relative url", scm.Target{Kind: scm.GitHubEnterprise, APIURL: "ghe.example.com/api/v3"}, "not an absolute URL"},
		{"userinfo", scm.Target{Kind: scm.GitHub, APIURL: "https://user:hunter2@" + host}, "must not embed credentials"},
		{"query", scm.Target{Kind: scm.GitHub, APIURL: h.srv.URL + "?x=1"}, "must not carry a query"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			res, err := h.v.Validate(context.Background(), tc.target, scm.Credential{Token: "ghp_secret"})
			if err != nil {
				t.Fatal(err)
			}
			if res.Valid || !strings.Contains(res.Message(), tc.problem) {
				t.Errorf("Message() = %q, want %q", res.Message(), tc.problem)
			}
			if strings.Contains(res.Message(), "hunter2") || strings.Contains(res.Message(), "ghp_secret") {
				t.Errorf("secret echoed: %q", res.Message())
			}
		})
	}
	if n := gh.Faults().TotalCalls(); n != 0 {
		t.Errorf("fake called %d times for rejected targets", n)
	}
}

// TestCredentialShape covers credentials that cannot fit the kind.
func TestCredentialShape(t *testing.T) {
	h := newHarness(t, http.NotFoundHandler())
	tests := []struct {
		name    string
		target  scm.Target
		cred    scm.Credential
		problem string
	}{
		{"github basic", scm.Target{Kind: scm.GitHub}, scm.Credential{Username: "octocat", Password: "pw-secret"}, "scm_username and scm_password are only for bitbucket-server"},
		{"github empty", scm.Target{Kind: scm.GitHub}, scm.Credential{}, "no GitHub token"},
		{"github newline", scm.Target{Kind: scm.GitHub}, scm.Credential{Token: "ghp_secret\n"}, "whitespace or control characters"},
		{"gitlab basic", scm.Target{Kind: scm.GitLab}, scm.Credential{Token: "glpat-secret", Password: "pw-secret"}, "only for bitbucket-server"},
		{"azure no org", scm.Target{Kind: scm.AzureRepos}, scm.Credential{Token: "az-secret"}, "azure_org is required"},
		{"azure basic", scm.Target{Kind: scm.AzureRepos, AzureOrg: "fabrikam"}, scm.Credential{Username: "PAT", Password: "az-secret"}, "only for bitbucket-server"},
		{"bitbucket both", scm.Target{Kind: scm.BitbucketServer}, scm.Credential{Token: "bb-secret", Username: "u", Password: "pw-secret"}, "not both"},
		{"bitbucket none", scm.Target{Kind: scm.BitbucketServer}, scm.Credential{}, "no Bitbucket Server credential"},
		{"bitbucket no password", scm.Target{Kind: scm.BitbucketServer}, scm.Credential{Username: "u"}, "needs both scm_username and scm_password"},
		{"bitbucket colon user", scm.Target{Kind: scm.BitbucketServer}, scm.Credential{Username: "a:b", Password: "pw-secret"}, "must not contain ':'"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tc.target.APIURL = h.srv.URL
			res, err := h.v.Validate(context.Background(), tc.target, tc.cred)
			if err != nil {
				t.Fatal(err)
			}
			if res.Valid || !strings.Contains(res.Message(), tc.problem) {
				t.Errorf("Message() = %q, want %q", res.Message(), tc.problem)
			}
			for _, s := range []string{"pw-secret", "ghp_secret", "glpat-secret", "az-secret", "bb-secret"} {
				if strings.Contains(res.Message(), s) {
					t.Errorf("secret echoed: %q", res.Message())
				}
			}
		})
	}
	if logs := h.log.String(); strings.Contains(logs, "scm request") {
		t.Errorf("requests were sent for malformed credentials: %s", logs)
	}
}

// TestNetworkFailure: an unreachable SCM is an error after bounded retries,
// never a Problem the operator would chase in the credential.
func TestNetworkFailure(t *testing.T) {
	h := newHarness(t, http.NotFoundHandler())
	url := h.srv.URL
	h.srv.Close()
	h.log = &syncBuffer{}
	_, err := h.v.Validate(context.Background(), scm.Target{Kind: scm.GitHub, APIURL: url}, scm.Credential{Token: "ghp_unreachable"})
	if !errors.Is(err, scm.ErrUpstream) {
		t.Fatalf("error = %v, want ErrUpstream", err)
	}
	if strings.Contains(err.Error(), "ghp_unreachable") {
		t.Errorf("token in error: %v", err)
	}
	if got := len(h.slept()); got != maxAttempts-1 {
		t.Errorf("slept %d times, want %d", got, maxAttempts-1)
	}
}

// TestDefaultRetryPolicy: a zero RetryPolicy still retries a 429.
func TestDefaultRetryPolicy(t *testing.T) {
	gh := scmtest.NewGitHub(false)
	gh.AddToken("ghp_defaultpolicy", scmtest.GitHubToken{Login: "octocat", Scopes: []string{"admin:repo_hook", "read:org", "repo"}})
	gh.Faults().Inject(scmtest.RouteGitHubUser, scmtest.Fault{Status: http.StatusTooManyRequests, RetryAfter: "1", Times: 1})
	h := newHarness(t, gh)
	var slept []time.Duration
	h.v.Retry = httpx.RetryPolicy{Sleep: func(_ context.Context, d time.Duration) error { slept = append(slept, d); return nil }}
	res, err := h.v.Validate(context.Background(), scm.Target{Kind: scm.GitHub, APIURL: h.srv.URL}, scm.Credential{Token: "ghp_defaultpolicy"})
	if err != nil || !res.Valid {
		t.Fatalf("res = %+v, err = %v", res, err)
	}
	if !slices.Equal(slept, []time.Duration{time.Second}) {
		t.Errorf("slept %v, want [1s]", slept)
	}
}
