package scm_test

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/snyk-vault/vault-plugin-secrets-snyk/backend/scm"
	"github.com/snyk-vault/vault-plugin-secrets-snyk/backend/scm/scmtest"
)

func TestBitbucket(t *testing.T) {
	const (
		password = "correct-horse-battery-staple"
		token    = "MjUyOTczNTE1MDY5On2rDbID2EgYpH8AVOECHv0saruQ"
		other    = "MTU4OTEwNTMyOTA5OhNoRepoAdminTokenXXXXXXXXXX"
	)
	projects, repos := scmtest.RouteBitbucketProjects, scmtest.RouteBitbucketRepos
	admin := scmtest.BitbucketUser{Username: "ksmster", Password: password, Tokens: []string{token}, RepoAdmin: true}
	dev := scmtest.BitbucketUser{Username: "dev", Password: password + "-dev", Tokens: []string{other}}
	basic := scm.Credential{Username: "ksmster", Password: password}
	bearer := scm.Credential{Token: token}

	tests := []struct {
		name  string
		cred  scm.Credential
		setup func(b *scmtest.Bitbucket)
		want  expect
	}{
		{
			name: "basic with password", cred: basic,
			want: expect{valid: true, scopes: []string{"REPO_ADMIN"}, user: "ksmster", notes: []string{"expiry is unknown"},
				calls: map[string]int{projects: 1, repos: 1}},
		},
		{
			name: "bearer token", cred: bearer,
			want: expect{valid: true, scopes: []string{"REPO_ADMIN"}, user: "ksmster"},
		},
		{
			name: "basic with the token as password", cred: scm.Credential{Username: "ksmster", Password: token},
			want: expect{valid: true, scopes: []string{"REPO_ADMIN"}, user: "ksmster"},
		},
		{
			name: "missing REPO_ADMIN", cred: scm.Credential{Token: other},
			want: expect{scopes: []string{}, missing: []string{"REPO_ADMIN"}, user: "dev",
				problems: []string{"no REPO_ADMIN (Repository admin) permission", "grant the user Repository admin on the repositories Snyk should import"}},
		},
		{
			name: "basic auth disabled refuses the password", cred: basic,
			setup: func(b *scmtest.Bitbucket) { b.BasicAuthDisabled = true },
			want:  expect{problems: []string{"basic authentication with passwords disabled", "set it as scm_token"}, calls: map[string]int{projects: 1, repos: 0}},
		},
		{
			name: "basic auth disabled still takes a bearer token", cred: bearer,
			setup: func(b *scmtest.Bitbucket) { b.BasicAuthDisabled = true },
			want:  expect{valid: true, user: "ksmster"},
		},
		{
			name: "wrong password is not retried", cred: scm.Credential{Username: "ksmster", Password: "wrong-password"},
			want: expect{problems: []string{"Bitbucket Server rejected the credentials of user ksmster (401)"},
				calls: map[string]int{projects: 1, repos: 0}, sleeps: []time.Duration{}},
		},
		{
			name: "revoked token", cred: bearer, setup: func(b *scmtest.Bitbucket) { b.RevokeToken(token) },
			want: expect{problems: []string{"Bitbucket Server rejected the HTTP access token (401)"}, calls: map[string]int{projects: 1}},
		},
		{
			name: "429 with Retry-After then success", cred: bearer,
			setup: func(b *scmtest.Bitbucket) {
				b.Faults().Inject(repos, scmtest.Fault{Status: http.StatusTooManyRequests, RetryAfter: "1", Times: 1})
			},
			want: expect{valid: true, calls: map[string]int{projects: 1, repos: 2}, sleeps: []time.Duration{time.Second}},
		},
		{
			name: "500 until the budget runs out", cred: bearer,
			setup: func(b *scmtest.Bitbucket) {
				b.Faults().Inject(projects, scmtest.Fault{Status: http.StatusInternalServerError})
			},
			want: expect{err: scm.ErrUpstream, calls: map[string]int{projects: maxAttempts, repos: 0}},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b := scmtest.NewBitbucket()
			b.AddUser(admin)
			b.AddUser(dev)
			if tc.setup != nil {
				tc.setup(b)
			}
			h := newHarness(t, b)
			target := scm.Target{Kind: scm.BitbucketServer, APIURL: scm.DefaultAPIURL(scm.BitbucketServer, h.srv.URL)}
			res, err := h.v.Validate(context.Background(), target, tc.cred)
			h.check(t, b, res, err, tc.want, password, token, other, tc.cred.Password)
			for _, seen := range b.SeenTokens() {
				if seen != tc.cred.Token && seen != tc.cred.Password {
					t.Errorf("fake saw an unexpected credential %q", seen)
				}
			}
		})
	}
}
