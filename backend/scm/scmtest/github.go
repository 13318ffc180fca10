package scmtest

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/snyk-vault/vault-plugin-secrets-snyk/backend/fault"
)

// Route names of the GitHub fake, for Faults().Inject and Faults().Calls.
const (
	RouteGitHubUser      = "github.user"               // GET /user
	RouteGitHubRateLimit = "github.rate_limit"         // GET /rate_limit
	RouteGitHubUserOrgs  = "github.user_orgs"          // GET /user/orgs
	RouteGitHubUserRepos = "github.user_repos"         // GET /user/repos
	RouteGitHubRevoke    = "github.credentials_revoke" // POST /credentials/revoke
	RouteGitHubOther     = "github.other"              // anything else: 401 or 404
)

// Bodies GitHub sends, verbatim from the reference, for tests that arm faults
// or compare responses.
const (
	GitHubBadCredentialsBody     = `{"message":"Bad credentials","documentation_url":"https://docs.github.com/rest","status":"401"}`
	GitHubSAMLBody               = `{"message":"Resource protected by organization SAML enforcement. You must grant your personal token access to this organization.","documentation_url":"https://docs.github.com"}`
	GitHubSecondaryRateLimitBody = `{"message":"You have exceeded a secondary rate limit. Please wait a few minutes before you try again.","documentation_url":"https://docs.github.com/rest/overview/rate-limits-for-the-rest-api#about-secondary-rate-limits"}`
	// GitHubLockoutBody's wording is not in the reference; GitHub documents
	// only the 403 status of a lockout.
	GitHubLockoutBody  = `{"message":"Maximum number of login attempts exceeded. Please try again later.","documentation_url":"https://docs.github.com/rest"}`
	gitHubNotFoundBody = `{"message":"Not Found","documentation_url":"https://docs.github.com/rest","status":"404"}`
	gitHubNoAuthBody   = `{"message":"Requires authentication","documentation_url":"https://docs.github.com/rest","status":"401"}`
)

// GitHubPrimaryRateLimitBody is the body of an exhausted primary limit.
func GitHubPrimaryRateLimitBody(userID int) string {
	return fmt.Sprintf(`{"message":"API rate limit exceeded for user ID %d.","documentation_url":"https://docs.github.com/rest"}`, userID)
}

// GitHubToken describes a token the fake accepts.
type GitHubToken struct {
	Login string
	// Scopes is the normalized list GitHub stores (admin:org, never
	// admin:org plus read:org). nil means a fine-grained or App token: no
	// X-OAuth-Scopes header at all. A non-nil empty slice is a classic PAT
	// without scopes: the header is present and empty.
	Scopes []string
	// ExpiresAt zero means a non-expiring token (no expiry header).
	ExpiresAt time.Time
	// ExpiryFormat: "" or "MST" sends "2006-01-02 15:04:05 MST" in UTC;
	// "offset" sends "2006-01-02 15:04:05 -0700" in ExpiresAt's own location.
	ExpiryFormat string
	// SAMLRequired models a classic PAT not yet authorized for an
	// organization that enforces SAML SSO: GET /user answers 403 with
	// X-GitHub-SSO: required (as the reference's fake contract asks), list
	// endpoints answer 200 with X-GitHub-SSO: partial-results.
	SAMLRequired bool
}

type ghToken struct {
	GitHubToken
	id int
}

// GitHub fakes api.github.com or a GitHub Enterprise Server.
type GitHub struct {
	// LockoutAfter is how many bad-credential requests within LockoutWindow
	// make the fake answer 403 to every request that presents a credential,
	// valid tokens included, until the failures age out. Requests without
	// one (an unauthenticated POST /credentials/revoke) are not
	// authentication attempts and pass. 0 disables. NewGitHub sets 10.
	LockoutAfter int
	// LockoutWindow defaults to one minute.
	LockoutWindow time.Duration
	// RateLimit is the hourly primary limit per user (5000 by default);
	// unauthenticated callers get 60. GET /rate_limit does not count.
	RateLimit int
	// SSOOrg names the organization in SAML URLs ("acme" by default).
	SSOOrg string
	// EnterpriseVersion is sent as X-GitHub-Enterprise-Version in
	// enterprise mode ("3.16.0" by default).
	EnterpriseVersion string
	// Now is the fake's clock (time.Now when nil).
	Now func() time.Time

	enterprise bool
	inj        *fault.Injector
	seen       seenSet
	ids        requestIDs
	mux        *http.ServeMux

	mu       sync.Mutex
	tokens   map[string]*ghToken
	revoked  map[string]bool
	failures []time.Time
	buckets  map[string]*ghBucket
	nextID   int
}

type ghBucket struct {
	start time.Time
	used  int
}

// NewGitHub returns a fake of api.github.com, or with enterprise of a GHES
// instance: routes are then served under /api/v3 (only), responses carry
// X-GitHub-Enterprise-Version, and POST /credentials/revoke accepts
// authenticated callers.
func NewGitHub(enterprise bool) *GitHub {
	g := &GitHub{
		LockoutAfter:      10,
		LockoutWindow:     time.Minute,
		RateLimit:         5000,
		SSOOrg:            "acme",
		EnterpriseVersion: "3.16.0",
		enterprise:        enterprise,
		inj:               fault.NewInjector(),
		mux:               http.NewServeMux(),
		tokens:            map[string]*ghToken{},
		revoked:           map[string]bool{},
		buckets:           map[string]*ghBucket{},
		nextID:            1,
	}
	// GitHub Enterprise Server serves its REST API under /api/v3 only; a
	// client that dropped the prefix must fail here as it would there.
	prefixes := []string{""}
	if enterprise {
		prefixes = []string{"/api/v3"}
	}
	for _, p := range prefixes {
		g.mux.HandleFunc("GET "+p+"/user", g.inj.Wrap(RouteGitHubUser, g.user))
		g.mux.HandleFunc("GET "+p+"/rate_limit", g.inj.Wrap(RouteGitHubRateLimit, g.rateLimit))
		g.mux.HandleFunc("GET "+p+"/user/orgs", g.inj.Wrap(RouteGitHubUserOrgs, g.userOrgs))
		g.mux.HandleFunc("GET "+p+"/user/repos", g.inj.Wrap(RouteGitHubUserRepos, g.userRepos))
		g.mux.HandleFunc("POST "+p+"/credentials/revoke", g.inj.Wrap(RouteGitHubRevoke, g.revoke))
	}
	g.mux.HandleFunc("/", g.inj.Wrap(RouteGitHubOther, g.other))
	return g
}

// AddToken makes token valid (or replaces its description).
func (g *GitHub) AddToken(token string, t GitHubToken) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if old, ok := g.tokens[token]; ok {
		old.GitHubToken = t
	} else {
		g.tokens[token] = &ghToken{GitHubToken: t, id: g.nextID}
		g.nextID++
	}
	delete(g.revoked, token)
}

// RevokeToken makes token answer 401 from now on.
func (g *GitHub) RevokeToken(token string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.revoked[token] = true
}

// Faults is the fault injector and call counter of every route.
func (g *GitHub) Faults() *fault.Injector { return g.inj }

// SeenTokens lists the distinct credentials presented, in first-seen order.
func (g *GitHub) SeenTokens() []string { return g.seen.list() }

type ghCtxKey struct{}

// ghRequest is what ServeHTTP resolved before routing, so that rate-limit
// headers are on every response, faulted ones included.
type ghRequest struct {
	token     *ghToken // nil when anonymous or the credential is bad
	exhausted bool
	limit     int
}

func (g *GitHub) now() time.Time { return clock(g.Now) }

// ServeHTTP records the credential, accounts the request against its rate
// limit bucket and routes it.
func (g *GitHub) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	g.seen.add(presentedSecret(r))
	h := w.Header()
	h.Set("X-GitHub-Request-Id", g.ids.next("C0DE:"))
	h.Set("X-GitHub-Media-Type", "github.v3; format=json")
	if g.enterprise {
		h.Set("X-GitHub-Enterprise-Version", g.EnterpriseVersion)
	}

	now := g.now()
	g.mu.Lock()
	tok := g.lookupLocked(r, now)
	key, limit := "anonymous", 60
	if tok != nil {
		key, limit = "user:"+tok.Login, g.RateLimit
	}
	b := g.buckets[key]
	if b == nil || !now.Before(b.start.Add(time.Hour)) {
		b = &ghBucket{start: now}
		g.buckets[key] = b
	}
	// /rate_limit is free of the primary limit, as documented.
	if !strings.HasSuffix(r.URL.Path, "/rate_limit") {
		b.used++
	}
	used, reset := b.used, b.start.Add(time.Hour)
	g.mu.Unlock()

	remaining := max(limit-used, 0)
	h.Set("X-RateLimit-Limit", strconv.Itoa(limit))
	h.Set("X-RateLimit-Remaining", strconv.Itoa(remaining))
	h.Set("X-RateLimit-Used", strconv.Itoa(min(used, limit)))
	h.Set("X-RateLimit-Reset", strconv.FormatInt(reset.Unix(), 10))
	h.Set("X-RateLimit-Resource", "core")

	ctx := context.WithValue(r.Context(), ghCtxKey{}, &ghRequest{token: tok, exhausted: used > limit, limit: limit})
	g.mux.ServeHTTP(w, r.WithContext(ctx))
}

// lookupLocked returns the valid token presented, or nil.
func (g *GitHub) lookupLocked(r *http.Request, now time.Time) *ghToken {
	scheme, cred := authorization(r)
	if scheme != "token" && scheme != "bearer" {
		return nil
	}
	t, ok := g.tokens[cred]
	if !ok || g.revoked[cred] || (!t.ExpiresAt.IsZero() && !t.ExpiresAt.After(now)) {
		return nil
	}
	return t
}

func (g *GitHub) lockedOutLocked(now time.Time) bool {
	if g.LockoutAfter <= 0 {
		return false
	}
	window := g.LockoutWindow
	if window <= 0 {
		window = time.Minute
	}
	kept := g.failures[:0]
	for _, f := range g.failures {
		if now.Sub(f) < window {
			kept = append(kept, f)
		}
	}
	g.failures = kept
	return len(g.failures) >= g.LockoutAfter
}

// authenticate answers the request itself (and returns false) unless it
// carries a usable token. With optional, an absent Authorization header is
// allowed and returns (nil, true).
func (g *GitHub) authenticate(w http.ResponseWriter, r *http.Request, optional bool) (*ghToken, bool) {
	req, _ := r.Context().Value(ghCtxKey{}).(*ghRequest)
	if req == nil {
		req = &ghRequest{}
	}
	scheme, _ := authorization(r)
	now := g.now()
	if scheme == "" {
		if optional {
			return nil, true
		}
		writeJSON(w, http.StatusUnauthorized, gitHubNoAuthBody)
		return nil, false
	}
	g.mu.Lock()
	locked := g.lockedOutLocked(now)
	if !locked && req.token == nil {
		g.failures = append(g.failures, now)
	}
	g.mu.Unlock()
	if locked {
		writeJSON(w, http.StatusForbidden, GitHubLockoutBody)
		return nil, false
	}
	if req.token == nil {
		writeJSON(w, http.StatusUnauthorized, GitHubBadCredentialsBody)
		return nil, false
	}
	t := req.token
	g.tokenHeaders(w, t)
	if req.exhausted {
		writeJSON(w, http.StatusForbidden, GitHubPrimaryRateLimitBody(t.id))
		return nil, false
	}
	return t, true
}

// tokenHeaders sends what GitHub attaches to every authenticated response.
func (g *GitHub) tokenHeaders(w http.ResponseWriter, t *ghToken) {
	h := w.Header()
	if t.Scopes != nil {
		// Set the map directly to keep GitHub's spelling on the wire; an
		// empty list still sends the header, empty, as GitHub does.
		h["X-OAuth-Scopes"] = []string{strings.Join(t.Scopes, ", ")}
	}
	if !t.ExpiresAt.IsZero() {
		var v string
		if t.ExpiryFormat == "offset" {
			v = t.ExpiresAt.Format("2006-01-02 15:04:05 -0700")
		} else {
			v = t.ExpiresAt.UTC().Format("2006-01-02 15:04:05 MST")
		}
		h.Set("GitHub-Authentication-Token-Expiration", v)
	}
}

func (g *GitHub) has(t *ghToken, scopes ...string) bool {
	for _, s := range scopes {
		if slices.Contains(t.Scopes, s) {
			return true
		}
	}
	return false
}

func (g *GitHub) samlRequired(w http.ResponseWriter) {
	w.Header().Set("X-GitHub-SSO", fmt.Sprintf("required; url=https://github.com/orgs/%s/sso?authorization_request=%s", g.SSOOrg, g.ids.next("AZSR")))
	writeJSON(w, http.StatusForbidden, GitHubSAMLBody)
}

func (g *GitHub) user(w http.ResponseWriter, r *http.Request) {
	t, ok := g.authenticate(w, r, false)
	if !ok {
		return
	}
	if t.SAMLRequired {
		g.samlRequired(w)
		return
	}
	w.Header()["X-Accepted-OAuth-Scopes"] = []string{""}
	writeJSON(w, http.StatusOK, map[string]any{
		"login": t.Login, "id": t.id, "node_id": "MDQ6VXNlcj" + strconv.Itoa(t.id), "type": "User", "site_admin": false,
		"name": t.Login, "company": "Acme", "email": t.Login + "@example.com",
		"created_at": "2008-01-14T04:33:35Z", "updated_at": "2008-01-14T04:33:35Z",
		"two_factor_authentication": true,
		"plan":                      map[string]any{"name": "Medium", "space": 400, "private_repos": 20, "collaborators": 0},
	})
}

func (g *GitHub) rateLimit(w http.ResponseWriter, r *http.Request) {
	if _, ok := g.authenticate(w, r, true); !ok {
		return
	}
	h := w.Header()
	rate := map[string]any{}
	for _, k := range []string{"Limit", "Remaining", "Used", "Reset"} {
		n, _ := strconv.ParseInt(h.Get("X-RateLimit-"+k), 10, 64)
		rate[strings.ToLower(k)] = n
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"resources": map[string]any{
			"core":    rate,
			"search":  map[string]any{"limit": 30, "remaining": 30, "used": 0, "reset": rate["reset"]},
			"graphql": map[string]any{"limit": 5000, "remaining": 5000, "used": 0, "reset": rate["reset"]},
		},
		"rate": rate,
	})
}

func (g *GitHub) userOrgs(w http.ResponseWriter, r *http.Request) {
	t, ok := g.authenticate(w, r, false)
	if !ok {
		return
	}
	w.Header()["X-Accepted-OAuth-Scopes"] = []string{"admin:org, read:org, repo, user, write:org"}
	orgs := []map[string]any{}
	if t.SAMLRequired {
		w.Header().Set("X-GitHub-SSO", "partial-results; organizations=21955855")
	} else if g.has(t, "read:org", "write:org", "admin:org", "user") {
		orgs = append(orgs, map[string]any{
			"login": g.SSOOrg, "id": 21955855, "node_id": "MDEyOk9yZ2FuaXphdGlvbjE=",
			"url": "https://api.github.com/orgs/" + g.SSOOrg, "description": "Fake organization",
		})
	}
	writeJSON(w, http.StatusOK, orgs)
}

func (g *GitHub) userRepos(w http.ResponseWriter, r *http.Request) {
	t, ok := g.authenticate(w, r, false)
	if !ok {
		return
	}
	repo := func(id int, name string, private bool) map[string]any {
		return map[string]any{
			"id": id, "name": name, "full_name": g.SSOOrg + "/" + name, "private": private,
			"owner":          map[string]any{"login": g.SSOOrg, "type": "Organization"},
			"default_branch": "main",
			"permissions":    map[string]any{"admin": true, "push": true, "pull": true},
		}
	}
	repos := []map[string]any{repo(1296269, "public-service", false)}
	// Private repositories need repo; public_repo alone shows public ones.
	if g.has(t, "repo") {
		repos = append(repos, repo(1296270, "private-service", true))
	}
	if t.SAMLRequired {
		w.Header().Set("X-GitHub-SSO", "partial-results; organizations=21955855")
	}
	writeJSON(w, http.StatusOK, repos)
}

// revoke follows the credentials API: on github.com it must be called
// without authentication; GHES accepts authenticated callers.
func (g *GitHub) revoke(w http.ResponseWriter, r *http.Request) {
	if scheme, _ := authorization(r); scheme != "" {
		if !g.enterprise {
			writeJSON(w, http.StatusForbidden, `{"message":"This endpoint must be called without authentication.","documentation_url":"https://docs.github.com/rest/credentials/revoke#revoke-a-list-of-credentials","status":"403"}`)
			return
		}
		if _, ok := g.authenticate(w, r, false); !ok {
			return
		}
	}
	var body struct {
		Credentials []string `json:"credentials"`
	}
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<20)).Decode(&body); err != nil || len(body.Credentials) == 0 || len(body.Credentials) > 1000 {
		writeJSON(w, http.StatusUnprocessableEntity, `{"message":"Validation Failed","errors":[{"resource":"Credential","code":"invalid","field":"credentials"}],"documentation_url":"https://docs.github.com/rest/credentials/revoke#revoke-a-list-of-credentials","status":"422"}`)
		return
	}
	g.mu.Lock()
	for _, c := range body.Credentials {
		if _, ok := g.tokens[c]; ok {
			g.revoked[c] = true
		}
	}
	g.mu.Unlock()
	writeJSON(w, http.StatusAccepted, `{}`)
}

// other answers unknown paths (POST /authorizations included, which GitHub
// removed) with 404, after the credential checks every path gets.
func (g *GitHub) other(w http.ResponseWriter, r *http.Request) {
	if _, ok := g.authenticate(w, r, true); !ok {
		return
	}
	writeJSON(w, http.StatusNotFound, gitHubNotFoundBody)
}
