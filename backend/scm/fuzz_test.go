package scm

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/snyk-vault/vault-plugin-secrets-snyk/backend/httpx"
)

// FuzzGitHubScopes: any X-OAuth-Scopes header splits into trimmed,
// non-empty scopes, and scope checks on them never panic.
func FuzzGitHubScopes(f *testing.F) {
	for _, s := range []string{"", "repo, read:org", " , ,", "admin:repo_hook,repo", "repo,,\t", "ä, \x00"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, header string) {
		for _, s := range parseGitHubScopes(header) {
			if s == "" || s != strings.TrimSpace(s) {
				t.Fatalf("scope %q is empty or untrimmed", s)
			}
			_ = githubSatisfied([]string{s}, "repo")
			_ = githubAncestors(s)
		}
	})
}

// FuzzGitHubExpiry: any expiry header parses to a UTC time or to "unknown".
func FuzzGitHubExpiry(f *testing.F) {
	for _, s := range []string{"2026-12-31 23:59:59 UTC", "2026-12-31 23:59:59 +0900", "", "tomorrow", "2026-13-45 99:99:99 UTC"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, header string) {
		if ts, ok := parseGitHubExpiry(header); ok && ts.Location() != time.UTC {
			t.Fatalf("expiry %v is not UTC", ts)
		}
	})
}

// scripted is a TLS SCM that answers every request with the fuzzer's
// status, headers and body.
type scripted struct {
	mu      sync.Mutex
	status  int
	headers map[string]string
	body    []byte
}

func (s *scripted) ServeHTTP(w http.ResponseWriter, _ *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for k, v := range s.headers {
		w.Header().Set(k, v)
	}
	w.WriteHeader(s.status)
	_, _ = w.Write(s.body)
}

// FuzzValidateResponses: whatever an SCM answers (status, scope and expiry
// headers, Retry-After, any body), validation ends in a result or an error
// and never panics; a result that is not valid says why, and no problem or
// note ever echoes the credential.
func FuzzValidateResponses(f *testing.F) {
	const token = "fuzz-secret-token-000000000000"
	seeds := []struct {
		kind          uint8
		status        int
		scopes, extra string
		body          string
	}{
		{0, 200, "repo, read:org, admin:repo_hook", "2026-12-31 23:59:59 UTC", `{"login":"octocat"}`},
		{0, 401, "", "", `{"message":"Bad credentials"}`},
		{1, 200, "", "", `{"id":1,"name":"x","scopes":["api"],"expires_at":"2027-01-01","active":true,"revoked":false}`},
		{1, 200, "", "", `{"username":"u","access_level":40}`},
		{2, 203, "", "", `<html>sign in</html>`},
		{2, 200, "", "", `{"authenticatedUser":{"providerDisplayName":"Anonymous"}}`},
		{3, 200, "", "", `{"size":0,"values":[]}`},
		{3, 429, "", "soon", `not json`},
		{0, 200, "", "", "\x00\xff{"},
		{1, 500, "", "", `{"message":` + strings.Repeat("x", 1000)},
	}
	for _, s := range seeds {
		f.Add(s.kind, s.status, s.scopes, s.extra, []byte(s.body))
	}
	srv := &scripted{}
	ts := httptest.NewTLSServer(srv)
	f.Cleanup(ts.Close)
	client := ts.Client()
	client.Timeout = 5 * time.Second
	client.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }

	f.Fuzz(func(t *testing.T, kind uint8, status int, scopes, extra string, body []byte) {
		if status < 100 || status > 599 {
			return
		}
		srv.mu.Lock()
		srv.status, srv.body = status, body
		srv.headers = map[string]string{
			"X-OAuth-Scopes": scopes, "GitHub-Authentication-Token-Expiration": extra, "Retry-After": extra,
			"Content-Type": "application/json",
		}
		srv.mu.Unlock()
		v := &Validator{Client: client, Retry: noWaitRetry(), Now: func() time.Time { return time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC) }}
		k := Kinds[int(kind)%len(Kinds)]
		cred := Credential{Token: token}
		if k == BitbucketServer && kind%2 == 0 {
			cred = Credential{Username: "svc", Password: token}
		}
		res, err := v.Validate(context.Background(), Target{Kind: k, APIURL: ts.URL, AzureOrg: "contoso"}, cred)
		if err != nil {
			if strings.Contains(err.Error(), token) {
				t.Fatal("an error echoes the credential")
			}
			return
		}
		if !res.Valid && len(res.Problems) == 0 {
			t.Fatal("invalid without a problem")
		}
		for _, s := range append(res.Problems, res.Notes...) {
			if strings.Contains(s, token) {
				t.Fatal("a message echoes the credential")
			}
		}
	})
}

// noWaitRetry retries as the engine does but spends no time waiting.
func noWaitRetry() httpx.RetryPolicy {
	return httpx.RetryPolicy{MaxAttempts: 2, Sleep: func(context.Context, time.Duration) error { return nil }}
}
