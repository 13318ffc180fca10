package scm_test

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/snyk-vault/vault-plugin-secrets-snyk/backend/scm"
	"github.com/snyk-vault/vault-plugin-secrets-snyk/backend/scm/scmtest"
)

func TestAzure(t *testing.T) {
	const tok = "dip55dwf4vpitomw63jzvomefmi2jluguprzwwqwuc6xq4fhocwq"
	const badTok = "0000000000000000000000000000000000000000000000000bad"
	repos, conn := scmtest.RouteAzureRepositories, scmtest.RouteAzureConnectionData
	good := scmtest.AzureToken{DisplayName: "Jamal Hartnett", CodeRead: true}
	signIn := scmtest.Fault{Status: http.StatusNonAuthoritativeInfo, Body: scmtest.AzureSignInPage, ContentType: "text/html; charset=utf-8"}

	tests := []struct {
		name  string
		org   string
		token string
		az    *scmtest.AzureToken
		setup func(a *scmtest.Azure)
		want  expect
	}{
		{
			name: "good PAT", token: tok, az: &good,
			want: expect{valid: true, scopes: []string{"vso.code"}, user: "Jamal Hartnett",
				notes: []string{"cannot prove Code write access (vso.code_write) without a write", "expiry is unknown"},
				calls: map[string]int{repos: 1, conn: 1}},
		},
		{
			name: "PAT without Code scope", token: tok, az: &scmtest.AzureToken{DisplayName: "Jamal Hartnett"},
			want: expect{missing: []string{"vso.code_write"}, user: "Jamal Hartnett",
				problems: []string{"lacks Code (Read & write)", "create a PAT with scope Code: Read & write for organization fabrikam"},
				calls:    map[string]int{repos: 1, conn: 1}},
		},
		{
			name: "bad PAT is not retried", token: badTok,
			want: expect{problems: []string{"Azure DevOps rejected the token for organization fabrikam (401): it is invalid, expired, or lacks Code (Read & write); create a PAT with scope Code: Read & write for organization fabrikam"},
				calls: map[string]int{repos: 1}, sleeps: []time.Duration{}},
		},
		{
			name: "revoked PAT", token: tok, az: &good, setup: func(a *scmtest.Azure) { a.RevokeToken(tok) },
			want: expect{problems: []string{"(401)"}},
		},
		{
			name: "203 sign-in page", token: tok, az: &good,
			setup: func(a *scmtest.Azure) { a.Faults().Inject(repos, signIn) },
			want:  expect{problems: []string{"Azure DevOps answered with a sign-in page (status 203)", "the credential was not accepted"}, calls: map[string]int{repos: 1, conn: 0}},
		},
		{
			name: "200 HTML page", token: tok, az: &good,
			setup: func(a *scmtest.Azure) {
				a.Faults().Inject(repos, scmtest.Fault{Status: http.StatusOK, Body: scmtest.AzureSignInPage, ContentType: "text/html"})
			},
			want: expect{problems: []string{"sign-in page (status 200)"}},
		},
		{
			name: "Anonymous user on 200", token: tok, az: &good, setup: func(a *scmtest.Azure) { a.AnonymousMode = true },
			want: expect{scopes: []string{}, problems: []string{"served organization fabrikam anonymously"}, calls: map[string]int{repos: 1, conn: 1}},
		},
		{
			name: "unknown organization", org: "contoso", token: tok, az: &good,
			want: expect{problems: []string{`organization "contoso" does not exist or is not visible`}, calls: map[string]int{repos: 1, conn: 0}},
		},
		{
			name: "429 with Retry-After then success", token: tok, az: &good,
			setup: func(a *scmtest.Azure) {
				a.Faults().Inject(repos, scmtest.Fault{Status: http.StatusTooManyRequests, RetryAfter: "5", Body: scmtest.AzureThrottledBody, Times: 1})
			},
			want: expect{valid: true, calls: map[string]int{repos: 2}, sleeps: []time.Duration{5 * time.Second}},
		},
		{
			name: "HTML 503 is upstream trouble, not a sign-in", token: tok, az: &good,
			setup: func(a *scmtest.Azure) {
				a.Faults().Inject(repos, scmtest.Fault{Status: http.StatusServiceUnavailable, Body: "<html>down</html>", ContentType: "text/html"})
			},
			want: expect{err: scm.ErrUpstream, calls: map[string]int{repos: maxAttempts}},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a := scmtest.NewAzure("fabrikam")
			if tc.az != nil {
				a.AddToken(tc.token, *tc.az)
			}
			if tc.setup != nil {
				tc.setup(a)
			}
			org := tc.org
			if org == "" {
				org = "fabrikam"
			}
			h := newHarness(t, a)
			target := scm.Target{Kind: scm.AzureRepos, APIURL: scm.DefaultAPIURL(scm.AzureRepos, h.srv.URL), AzureOrg: org}
			res, err := h.v.Validate(context.Background(), target, scm.Credential{Token: tc.token})
			h.check(t, a, res, err, tc.want, tc.token)
			for _, seen := range a.SeenTokens() {
				if seen != tc.token {
					t.Errorf("fake saw an unexpected credential %q", seen)
				}
			}
		})
	}
}
