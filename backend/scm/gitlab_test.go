package scm_test

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/snyk-vault/vault-plugin-secrets-snyk/backend/scm"
	"github.com/snyk-vault/vault-plugin-secrets-snyk/backend/scm/scmtest"
)

func TestGitLab(t *testing.T) {
	now := time.Now().UTC()
	day := func(offset int) (string, time.Time) {
		d := time.Date(now.Year(), now.Month(), now.Day(), 0, 0, 0, 0, time.UTC).AddDate(0, 0, offset)
		return d.Format("2006-01-02"), d
	}
	in90, in90t := day(90)
	yesterday, yesterdayT := day(-1)
	const tok = "glpat-xK3mN8pQ2rT5vW7yZ9aB"
	const badTok = "glpat-0000000000000000bad"
	self, assoc := scmtest.RouteGitLabTokenSelf, scmtest.RouteGitLabAssociations
	groups, projects, user := scmtest.RouteGitLabGroups, scmtest.RouteGitLabProjects, scmtest.RouteGitLabUser
	maintainer := scmtest.GitLabToken{Username: "jdoe", Scopes: []string{"api"}, ExpiresAt: in90, AccessLevel: scmtest.GitLabMaintainer}
	with := func(mod func(*scmtest.GitLabToken)) scmtest.GitLabToken {
		t := maintainer
		mod(&t)
		return t
	}

	tests := []struct {
		name  string
		opts  scmtest.GitLabOptions
		token string
		gl    *scmtest.GitLabToken
		setup func(g *scmtest.GitLab)
		want  expect
	}{
		{
			name: "good token", token: tok, gl: &maintainer,
			want: expect{valid: true, scopes: []string{"api", "maintainer"}, user: "jdoe", expires: in90t,
				calls: map[string]int{self: 1, assoc: 1, groups: 0, projects: 0, user: 1}},
		},
		{
			name: "owner satisfies maintainer", token: tok, gl: ptr(with(func(t *scmtest.GitLabToken) { t.AccessLevel = scmtest.GitLabOwner })),
			want: expect{valid: true, scopes: []string{"api", "maintainer"}, expires: in90t},
		},
		{
			name: "missing api", token: tok, gl: ptr(with(func(t *scmtest.GitLabToken) { t.Scopes = []string{"read_api", "read_repository"} })),
			want: expect{scopes: []string{"maintainer", "read_api", "read_repository"}, missing: []string{"api"}, expires: in90t, user: "jdoe",
				problems: []string{"the token lacks scope api (read_api, read_repository and the other narrower scopes do not satisfy it)", "/-/user_settings/personal_access_tokens"}},
		},
		{
			name: "without maintainer", token: tok, gl: ptr(with(func(t *scmtest.GitLabToken) { t.AccessLevel = scmtest.GitLabDeveloper })),
			want: expect{scopes: []string{"api"}, missing: []string{"maintainer"}, expires: in90t,
				problems: []string{"not Maintainer (access level 40) of any GitLab group or project", "needs maintainer", "give the user the Maintainer (or Owner) role"}},
		},
		{
			name: "missing api and maintainer", token: tok, gl: ptr(with(func(t *scmtest.GitLabToken) {
				t.Scopes, t.AccessLevel = []string{"read_api"}, 0
			})),
			want: expect{missing: []string{"api", "maintainer"}, expires: in90t, problems: []string{"lacks scope api", "not Maintainer"}},
		},
		{
			name: "scopes too narrow to check the role", token: tok, gl: ptr(with(func(t *scmtest.GitLabToken) { t.Scopes = []string{"read_repository"} })),
			want: expect{missing: []string{"api"}, expires: in90t, problems: []string{"lacks scope api"},
				notes: []string{"Maintainer role could not be checked", "did not reveal the token's username"}},
		},
		{
			name: "pre-17.4 fallback finds a group", opts: scmtest.GitLabOptions{NoAssociations: true}, token: tok, gl: &maintainer,
			want: expect{valid: true, scopes: []string{"api", "maintainer"}, expires: in90t,
				calls: map[string]int{assoc: 1, groups: 1, projects: 0}},
		},
		{
			name: "pre-17.4 fallback without maintainer", opts: scmtest.GitLabOptions{NoAssociations: true}, token: tok,
			gl: ptr(with(func(t *scmtest.GitLabToken) { t.AccessLevel = scmtest.GitLabDeveloper })),
			want: expect{missing: []string{"maintainer"}, expires: in90t, problems: []string{"not Maintainer"},
				calls: map[string]int{assoc: 1, groups: 1, projects: 1}},
		},
		{
			name: "bad token is not retried", token: badTok,
			want: expect{problems: []string{"GitLab rejected the token (401 Unauthorized): it is invalid, expired or revoked"},
				calls: map[string]int{self: 1, assoc: 0, user: 0}, sleeps: []time.Duration{}},
		},
		{
			name: "revoked token", token: tok, gl: &maintainer, setup: func(g *scmtest.GitLab) { g.RevokeToken(tok) },
			want: expect{problems: []string{"401 Unauthorized"}, calls: map[string]int{self: 1}},
		},
		{
			name: "expired token is rejected by GitLab", token: tok, gl: ptr(with(func(t *scmtest.GitLabToken) { t.ExpiresAt = yesterday })),
			want: expect{problems: []string{"401 Unauthorized"}, calls: map[string]int{self: 1}},
		},
		{
			name: "expires_at in the past is captured", token: tok,
			opts: scmtest.GitLabOptions{Now: func() time.Time { return now.Add(-72 * time.Hour) }},
			gl:   ptr(with(func(t *scmtest.GitLabToken) { t.ExpiresAt = yesterday })),
			want: expect{scopes: []string{"api"}, expires: yesterdayT, problems: []string{"the token expired on " + yesterday + " (00:00 UTC)"},
				calls: map[string]int{self: 1, assoc: 0, user: 0}},
		},
		{
			name: "no expiry (service account)", token: tok, gl: ptr(with(func(t *scmtest.GitLabToken) { t.ExpiresAt = "" })),
			want: expect{valid: true},
		},
		{
			name: "OAuth token is not a PAT", token: tok, gl: ptr(with(func(t *scmtest.GitLabToken) { t.NotPAT = true })),
			want: expect{problems: []string{"not a GitLab personal, group or project access token"}, calls: map[string]int{self: 1}},
		},
		{
			name: "429 with Retry-After then success", token: tok, gl: &maintainer,
			setup: func(g *scmtest.GitLab) {
				g.Faults().Inject(self, scmtest.Fault{Status: http.StatusTooManyRequests, RetryAfter: "3", Body: scmtest.GitLabRetryLaterBody, ContentType: "text/plain", Times: 1})
			},
			want: expect{valid: true, expires: in90t, calls: map[string]int{self: 2}, sleeps: []time.Duration{3 * time.Second}},
		},
		{
			name: "429 without headers backs off", token: tok, gl: &maintainer,
			setup: func(g *scmtest.GitLab) {
				g.Faults().Inject(assoc, scmtest.Fault{Status: http.StatusTooManyRequests, Body: scmtest.GitLabRetryLaterBody, ContentType: "text/plain", Times: 2})
			},
			want: expect{valid: true, expires: in90t, calls: map[string]int{assoc: 3}, sleeps: []time.Duration{time.Second, 2 * time.Second}},
		},
		{
			name: "500 until the budget runs out", token: tok, gl: &maintainer,
			setup: func(g *scmtest.GitLab) { g.Faults().Inject(assoc, scmtest.Fault{Status: http.StatusBadGateway}) },
			want:  expect{err: scm.ErrUpstream, calls: map[string]int{self: 1, assoc: maxAttempts}},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			g := scmtest.NewGitLab(tc.opts)
			if tc.gl != nil {
				g.AddToken(tc.token, *tc.gl)
			}
			if tc.setup != nil {
				tc.setup(g)
			}
			h := newHarness(t, g)
			target := scm.Target{Kind: scm.GitLab, APIURL: scm.DefaultAPIURL(scm.GitLab, h.srv.URL)}
			res, err := h.v.Validate(context.Background(), target, scm.Credential{Token: tc.token})
			h.check(t, g, res, err, tc.want, tc.token)
			for _, seen := range g.SeenTokens() {
				if seen != tc.token {
					t.Errorf("fake saw an unexpected credential %q", seen)
				}
			}
		})
	}
}

func ptr[T any](v T) *T { return &v }
