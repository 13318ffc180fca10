package scm_test

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/snyk-vault/vault-plugin-secrets-snyk/backend/scm"
	"github.com/snyk-vault/vault-plugin-secrets-snyk/backend/scm/scmtest"
)

func TestGitHub(t *testing.T) {
	now := time.Now().UTC().Truncate(time.Second)
	in30d := now.Add(30 * 24 * time.Hour)
	tokyo := time.FixedZone("JST", 9*3600)
	all := []string{"admin:repo_hook", "read:org", "repo"}
	const tok = "ghp_16C7e42F292c6912E7710c838347Ae178B4a"
	const badTok = "ghp_000000000000000000000000000000000bad"
	user := scmtest.RouteGitHubUser

	tests := []struct {
		name       string
		enterprise bool
		token      string
		gh         scmtest.GitHubToken
		setup      func(g *scmtest.GitHub)
		before     func(t *testing.T, h *harness, target scm.Target) // runs ahead of the validation under test
		apiPath    string                                            // overrides DefaultAPIURL's path
		want       expect
	}{
		{
			name: "good classic PAT", token: tok, gh: scmtest.GitHubToken{Login: "octocat", Scopes: all},
			want: expect{valid: true, scopes: all, user: "octocat", calls: map[string]int{user: 1}},
		},
		{
			name: "good classic PAT on GHE", enterprise: true, token: tok, gh: scmtest.GitHubToken{Login: "monalisa", Scopes: all},
			want: expect{valid: true, scopes: all, user: "monalisa", calls: map[string]int{user: 1}},
		},
		{
			name: "missing repo", token: tok, gh: scmtest.GitHubToken{Login: "octocat", Scopes: []string{"admin:repo_hook", "read:org"}},
			want: expect{missing: []string{"repo"}, user: "octocat", problems: []string{
				"the token lacks scope repo: edit the classic PAT at https://github.com/settings/tokens and tick repo"}},
		},
		{
			name: "missing read:org", token: tok, gh: scmtest.GitHubToken{Login: "octocat", Scopes: []string{"admin:repo_hook", "repo"}},
			want: expect{missing: []string{"read:org"}, problems: []string{
				"the token lacks scope read:org (admin:org or write:org also satisfy it): edit the classic PAT at https://github.com/settings/tokens and tick read:org"}},
		},
		{
			name: "missing admin:repo_hook", token: tok, gh: scmtest.GitHubToken{Login: "octocat", Scopes: []string{"read:org", "repo"}},
			want: expect{missing: []string{"admin:repo_hook"}, problems: []string{"the token lacks scope admin:repo_hook"}},
		},
		{
			name: "missing scope on GHE names the GHE settings page", enterprise: true, token: tok,
			gh:   scmtest.GitHubToken{Login: "octocat", Scopes: []string{"read:org", "repo"}},
			want: expect{missing: []string{"admin:repo_hook"}, problems: []string{"lacks scope admin:repo_hook", "/settings/tokens and tick admin:repo_hook"}},
		},
		{
			name: "admin:org satisfies read:org", token: tok, gh: scmtest.GitHubToken{Login: "octocat", Scopes: []string{"admin:org", "admin:repo_hook", "repo"}},
			want: expect{valid: true, scopes: []string{"admin:org", "admin:repo_hook", "repo"}},
		},
		{
			name: "write:org satisfies read:org", token: tok, gh: scmtest.GitHubToken{Login: "octocat", Scopes: []string{"admin:repo_hook", "repo", "write:org"}},
			want: expect{valid: true},
		},
		{
			name: "public_repo does not satisfy repo", token: tok, gh: scmtest.GitHubToken{Login: "octocat", Scopes: []string{"admin:repo_hook", "public_repo", "read:org"}},
			want: expect{missing: []string{"repo"}, problems: []string{"lacks scope repo"}},
		},
		{
			name: "write:repo_hook does not satisfy admin:repo_hook", token: tok, gh: scmtest.GitHubToken{Login: "octocat", Scopes: []string{"read:org", "repo", "write:repo_hook"}},
			want: expect{missing: []string{"admin:repo_hook"}, problems: []string{"lacks scope admin:repo_hook"}},
		},
		{
			name: "classic PAT without any scope", token: tok, gh: scmtest.GitHubToken{Login: "octocat", Scopes: []string{}},
			want: expect{scopes: []string{}, missing: []string{"repo", "read:org", "admin:repo_hook"}, problems: []string{
				"lacks scope repo", "lacks scope read:org", "lacks scope admin:repo_hook"}},
		},
		{
			name: "bad token is not retried", token: badTok,
			want: expect{problems: []string{"GitHub rejected the token (Bad credentials): it is invalid, expired or revoked; create a classic PAT with scopes repo, read:org, admin:repo_hook"},
				calls: map[string]int{user: 1}, sleeps: []time.Duration{}},
		},
		{
			name: "revoked token", token: tok, gh: scmtest.GitHubToken{Login: "octocat", Scopes: all},
			setup: func(g *scmtest.GitHub) { g.RevokeToken(tok) },
			want:  expect{problems: []string{"Bad credentials"}, calls: map[string]int{user: 1}},
		},
		{
			name: "expiry header in MST form", token: tok, gh: scmtest.GitHubToken{Login: "octocat", Scopes: all, ExpiresAt: in30d, ExpiryFormat: "MST"},
			want: expect{valid: true, expires: in30d},
		},
		{
			name: "expiry header in offset form", token: tok, gh: scmtest.GitHubToken{Login: "octocat", Scopes: all, ExpiresAt: in30d.In(tokyo), ExpiryFormat: "offset"},
			want: expect{valid: true, expires: in30d},
		},
		{
			name: "expiry header in the past", token: tok,
			gh:    scmtest.GitHubToken{Login: "octocat", Scopes: all, ExpiresAt: now.Add(-24 * time.Hour)},
			setup: func(g *scmtest.GitHub) { g.Now = func() time.Time { return now.Add(-48 * time.Hour) } },
			want:  expect{expires: now.Add(-24 * time.Hour), problems: []string{"the token expired at", "regenerate the classic PAT"}},
		},
		{
			name: "expired token is rejected by GitHub", token: tok,
			gh:   scmtest.GitHubToken{Login: "octocat", Scopes: all, ExpiresAt: now.Add(-time.Hour)},
			want: expect{problems: []string{"Bad credentials"}, calls: map[string]int{user: 1}},
		},
		{
			name: "fine-grained PAT", token: "github_pat_11ABCDEFG0123456789_abcdefghijklmnopqrstuvwxyz",
			gh: scmtest.GitHubToken{Login: "octocat", ExpiresAt: now.Add(time.Minute)},
			want: expect{user: "octocat", missing: []string{"repo", "read:org", "admin:repo_hook"}, problems: []string{
				"GitHub does not report scopes for fine-grained tokens, so repo/read:org/admin:repo_hook cannot be verified; use a classic PAT, or set skip_scm_validation=true to store it unchecked"},
				notes: []string{"unreliable for fine-grained tokens"}},
		},
		{
			name: "fine-grained prefix with an empty scope header", token: "github_pat_11ABCDEFG0123456789_empty",
			gh:   scmtest.GitHubToken{Login: "octocat", Scopes: []string{}},
			want: expect{missing: []string{"repo", "read:org", "admin:repo_hook"}, problems: []string{"does not report scopes for fine-grained tokens"}},
		},
		{
			name: "SAML SSO not authorized", token: tok, gh: scmtest.GitHubToken{Login: "octocat", Scopes: all, SAMLRequired: true},
			want: expect{problems: []string{"SAML single sign-on", "open https://github.com/orgs/acme/sso?authorization_request="}, calls: map[string]int{user: 1}},
		},
		{
			name: "lockout after repeated bad credentials", token: tok, gh: scmtest.GitHubToken{Login: "octocat", Scopes: all},
			setup: func(g *scmtest.GitHub) { g.LockoutAfter = 2 },
			before: func(t *testing.T, h *harness, target scm.Target) {
				for range 2 {
					res, err := h.v.Validate(context.Background(), target, scm.Credential{Token: badTok})
					if err != nil || res.Valid {
						t.Fatalf("bad token: %+v, %v", res, err)
					}
				}
			},
			want: expect{problems: []string{"GitHub is temporarily rejecting authentication for this user after repeated failures"}, calls: map[string]int{user: 3}},
		},
		{
			name: "primary rate limit exhausted is an error", token: tok, gh: scmtest.GitHubToken{Login: "octocat", Scopes: all},
			setup: func(g *scmtest.GitHub) { g.RateLimit = 1 },
			before: func(t *testing.T, h *harness, target scm.Target) {
				if res, err := h.v.Validate(context.Background(), target, scm.Credential{Token: tok}); err != nil || !res.Valid {
					t.Fatalf("first call: %+v, %v", res, err)
				}
			},
			want: expect{err: scm.ErrThrottled, calls: map[string]int{user: 2}, sleeps: []time.Duration{}},
		},
		{
			name: "secondary rate limit 403 is an error", token: tok, gh: scmtest.GitHubToken{Login: "octocat", Scopes: all},
			setup: func(g *scmtest.GitHub) {
				g.Faults().Inject(user, scmtest.Fault{Status: http.StatusForbidden, Body: scmtest.GitHubSecondaryRateLimitBody})
			},
			want: expect{err: scm.ErrThrottled, calls: map[string]int{user: 1}},
		},
		{
			name: "429 with Retry-After then success", token: tok, gh: scmtest.GitHubToken{Login: "octocat", Scopes: all},
			setup: func(g *scmtest.GitHub) {
				g.Faults().Inject(user, scmtest.Fault{Status: http.StatusTooManyRequests, RetryAfter: "2", Body: scmtest.GitHubSecondaryRateLimitBody, Times: 1})
			},
			want: expect{valid: true, calls: map[string]int{user: 2}, sleeps: []time.Duration{2 * time.Second}},
		},
		{
			name: "429 until the budget runs out", token: tok, gh: scmtest.GitHubToken{Login: "octocat", Scopes: all},
			setup: func(g *scmtest.GitHub) {
				g.Faults().Inject(user, scmtest.Fault{Status: http.StatusTooManyRequests, RetryAfter: "1"})
			},
			want: expect{err: scm.ErrThrottled, calls: map[string]int{user: maxAttempts}},
		},
		{
			name: "500 until the budget runs out", token: tok, gh: scmtest.GitHubToken{Login: "octocat", Scopes: all},
			setup: func(g *scmtest.GitHub) {
				g.Faults().Inject(user, scmtest.Fault{Status: http.StatusInternalServerError})
			},
			want: expect{err: scm.ErrUpstream, calls: map[string]int{user: maxAttempts},
				sleeps: []time.Duration{time.Second, 2 * time.Second, 4 * time.Second}},
		},
		{
			name: "unparseable success", token: tok, gh: scmtest.GitHubToken{Login: "octocat", Scopes: all},
			setup: func(g *scmtest.GitHub) {
				g.Faults().Inject(user, scmtest.Fault{Status: http.StatusOK, Body: "<html>login</html>", ContentType: "text/html"})
			},
			want: expect{err: scm.ErrUpstream},
		},
		{
			name: "wrong API path", enterprise: true, token: tok, gh: scmtest.GitHubToken{Login: "octocat", Scopes: all}, apiPath: "/api/v4",
			want: expect{problems: []string{"no GitHub Enterprise REST API at", "(GET /user answered 404)"}},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			g := scmtest.NewGitHub(tc.enterprise)
			if tc.gh.Login != "" {
				g.AddToken(tc.token, tc.gh)
			}
			if tc.setup != nil {
				tc.setup(g)
			}
			h := newHarness(t, g)
			kind := scm.GitHub
			api := h.srv.URL
			if tc.enterprise {
				kind = scm.GitHubEnterprise
				api = scm.DefaultAPIURL(kind, h.srv.URL)
			}
			if tc.apiPath != "" {
				api = h.srv.URL + tc.apiPath
			}
			target := scm.Target{Kind: kind, APIURL: api}
			if tc.before != nil {
				tc.before(t, h, target)
			}
			res, err := h.v.Validate(context.Background(), target, scm.Credential{Token: tc.token})
			h.check(t, g, res, err, tc.want, tc.token, badTok)
			for _, seen := range g.SeenTokens() {
				if seen != tc.token && seen != badTok {
					t.Errorf("fake saw an unexpected credential %q", seen)
				}
			}
		})
	}
}
