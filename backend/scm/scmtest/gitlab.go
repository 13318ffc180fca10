package scmtest

import (
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/snyk-vault/vault-plugin-secrets-snyk/backend/fault"
)

// Route names of the GitLab fake (all under /api/v4).
const (
	RouteGitLabTokenSelf    = "gitlab.personal_access_tokens_self"              // GET /personal_access_tokens/self
	RouteGitLabAssociations = "gitlab.personal_access_tokens_self_associations" // GET /personal_access_tokens/self/associations
	RouteGitLabGroups       = "gitlab.groups"                                   // GET /groups
	RouteGitLabProjects     = "gitlab.projects"                                 // GET /projects
	RouteGitLabUser         = "gitlab.user"                                     // GET /user
	RouteGitLabMetadata     = "gitlab.metadata"                                 // GET /metadata
	RouteGitLabTokenRotate  = "gitlab.token.rotate"                             // POST /personal_access_tokens/self/rotate
	RouteGitLabOther        = "gitlab.other"                                    // anything else: 401 or 404
)

// Bodies GitLab sends.
const (
	GitLabUnauthorizedBody = `{"message":"401 Unauthorized"}`
	// GitLabRetryLaterBody is the plain-text body of a throttled request
	// (arm it with ContentType "text/plain").
	GitLabRetryLaterBody  = "Retry later\n"
	gitLabInsufficientFmt = `{"error":"insufficient_scope","error_description":"The request requires higher privileges than provided by the access token.","scope":%q}`
	// The 400 for non-PAT tokens is documented by status only.
	gitLabNotPATBody   = `{"message":"400 Bad request - the token is not a personal access token"}`
	gitLabNotFoundBody = `{"error":"404 Not Found"}`
)

// GitLab access levels.
const (
	GitLabDeveloper  = 30
	GitLabMaintainer = 40
	GitLabOwner      = 50
)

// GitLabToken describes a token the fake accepts.
type GitLabToken struct {
	Username string
	Scopes   []string
	// ExpiresAt is "YYYY-MM-DD" (the token dies at 00:00 UTC that day), or
	// "" for null (service accounts).
	ExpiresAt string
	Revoked   bool
	// AccessLevel is the user's highest role on any group or project: 0
	// none, 30 developer, 40 maintainer, 50 owner. The fake gives the user
	// one group and one project in it, both at this level.
	AccessLevel int
	// NotPAT marks an OAuth token: /personal_access_tokens/self answers 400.
	NotPAT bool
}

// GitLabOptions configure NewGitLab.
type GitLabOptions struct {
	// NoAssociations models GitLab before 17.4, where
	// /personal_access_tokens/self/associations does not exist (404).
	NoAssociations bool
	// Now is the fake's clock, which decides expiry (time.Now when nil).
	Now func() time.Time
	// Version is what /metadata reports; defaults to 19.1.1-ee, or 17.3.0-ee
	// with NoAssociations.
	Version string
}

type glToken struct {
	GitLabToken
	id, userID int
	// family links a token to the tokens rotated from it: GitLab revokes
	// the whole family when a rotated (revoked) token is used again.
	family int
	// rotated: this token was rotated away (revoked, with a successor).
	rotated bool
}

// GitLab fakes gitlab.com or a self-managed instance under /api/v4.
type GitLab struct {
	opts  GitLabOptions
	inj   *fault.Injector
	seen  seenSet
	inURL seenSet
	ids   requestIDs
	mux   *http.ServeMux

	mu     sync.Mutex
	tokens map[string]*glToken
	users  map[string]int
	nextID int
}

// NewGitLab returns an empty GitLab fake.
func NewGitLab(opts GitLabOptions) *GitLab {
	if opts.Version == "" {
		opts.Version = "19.1.1-ee"
		if opts.NoAssociations {
			opts.Version = "17.3.0-ee"
		}
	}
	g := &GitLab{
		opts:   opts,
		inj:    fault.NewInjector(),
		mux:    http.NewServeMux(),
		tokens: map[string]*glToken{},
		users:  map[string]int{},
		nextID: 1,
	}
	g.mux.HandleFunc("GET /api/v4/personal_access_tokens/self", g.inj.Wrap(RouteGitLabTokenSelf, g.tokenSelf))
	g.mux.HandleFunc("GET /api/v4/personal_access_tokens/self/associations", g.inj.Wrap(RouteGitLabAssociations, g.associations))
	g.mux.HandleFunc("GET /api/v4/groups", g.inj.Wrap(RouteGitLabGroups, g.groups))
	g.mux.HandleFunc("GET /api/v4/projects", g.inj.Wrap(RouteGitLabProjects, g.projects))
	g.mux.HandleFunc("GET /api/v4/user", g.inj.Wrap(RouteGitLabUser, g.user))
	g.mux.HandleFunc("GET /api/v4/metadata", g.inj.Wrap(RouteGitLabMetadata, g.metadata))
	g.mux.HandleFunc("POST /api/v4/personal_access_tokens/self/rotate", g.inj.Wrap(RouteGitLabTokenRotate, g.rotateSelf))
	g.mux.HandleFunc("/", g.inj.Wrap(RouteGitLabOther, g.other))
	return g
}

// AddToken makes token valid (or replaces its description).
func (g *GitLab) AddToken(token string, t GitLabToken) {
	g.mu.Lock()
	defer g.mu.Unlock()
	uid, ok := g.users[t.Username]
	if !ok {
		uid = len(g.users) + 2 // user 1 is the instance's root
		g.users[t.Username] = uid
	}
	if old, ok := g.tokens[token]; ok {
		old.GitLabToken, old.userID = t, uid
		return
	}
	g.tokens[token] = &glToken{GitLabToken: t, id: g.nextID, userID: uid, family: g.nextID}
	g.nextID++
}

// RevokeToken makes token answer 401 from now on.
func (g *GitLab) RevokeToken(token string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if t, ok := g.tokens[token]; ok {
		t.Revoked = true
	}
}

// Faults is the fault injector and call counter of every route.
func (g *GitLab) Faults() *fault.Injector { return g.inj }

// SeenTokens lists the distinct credentials presented (PRIVATE-TOKEN,
// Bearer or private_token), in first-seen order.
func (g *GitLab) SeenTokens() []string { return g.seen.list() }

// TokensInURL lists the credentials that arrived in a URL (the private_token
// query parameter GitLab accepts): they end up in access logs and proxies,
// so a client that cares must never send one there.
func (g *GitLab) TokensInURL() []string { return g.inURL.list() }

// ServeHTTP records the credential, adds the headers GitLab sends on every
// response and routes the request.
func (g *GitLab) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	g.seen.add(gitlabCredential(r))
	g.inURL.add(r.URL.Query().Get("private_token"))
	id := g.ids.next("01J")
	h := w.Header()
	h.Set("X-Request-Id", id)
	h.Set("X-Runtime", "0.021337")
	h.Set("X-Gitlab-Meta", fmt.Sprintf(`{"correlation_id":%q,"version":"1"}`, id))
	h.Set("Cache-Control", "no-cache")
	g.mux.ServeHTTP(w, r)
}

// gitlabCredential accepts every way GitLab takes a token; Broker's legacy
// validation URL uses the private_token query parameter.
func gitlabCredential(r *http.Request) string {
	if v := r.Header.Get("PRIVATE-TOKEN"); v != "" {
		return v
	}
	if scheme, cred := authorization(r); scheme == "bearer" {
		return cred
	}
	return r.URL.Query().Get("private_token")
}

// expired applies GitLab's rule: a token dies at 00:00 UTC on expires_at.
func (g *GitLab) expired(t *glToken) bool {
	if t.ExpiresAt == "" {
		return false
	}
	exp, err := time.ParseInLocation("2006-01-02", t.ExpiresAt, time.UTC)
	return err == nil && !exp.After(clock(g.opts.Now))
}

// authenticate answers 401 itself unless a live token is presented, and 403
// when the token has none of scopes (nil scopes: any token will do).
func (g *GitLab) authenticate(w http.ResponseWriter, r *http.Request, scopes ...string) (*glToken, bool) {
	cred := gitlabCredential(r)
	g.mu.Lock()
	t, ok := g.tokens[cred]
	var snapshot glToken
	if ok {
		if t.rotated {
			// Reuse detection (GitLab 16.3+): using a token that was rotated
			// away revokes every active token of its family.
			g.revokeFamilyLocked(t.family)
		}
		snapshot = *t
	}
	g.mu.Unlock()
	if !ok || snapshot.Revoked || g.expired(&snapshot) {
		writeJSON(w, http.StatusUnauthorized, GitLabUnauthorizedBody)
		return nil, false
	}
	if len(scopes) > 0 && !slices.ContainsFunc(scopes, func(s string) bool { return slices.Contains(snapshot.Scopes, s) }) {
		writeJSON(w, http.StatusForbidden, fmt.Sprintf(gitLabInsufficientFmt, strings.Join(scopes, " ")))
		return nil, false
	}
	return &snapshot, true
}

var gitlabReadScopes = []string{"api", "read_api"}

func (g *GitLab) tokenSelf(w http.ResponseWriter, r *http.Request) {
	t, ok := g.authenticate(w, r)
	if !ok {
		return
	}
	if t.NotPAT {
		writeJSON(w, http.StatusBadRequest, gitLabNotPATBody)
		return
	}
	var expires any
	if t.ExpiresAt != "" {
		expires = t.ExpiresAt
	}
	scopes := t.Scopes
	if scopes == nil {
		scopes = []string{}
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"id": t.id, "name": "snyk-broker", "revoked": false, "created_at": "2026-06-24T22:54:15.087Z",
		"description": nil, "scopes": scopes, "user_id": t.userID, "last_used_at": "2026-06-24T22:55:54.823Z",
		"active": true, "granular": false, "expires_at": expires, "last_used_ips": []string{"192.168.65.1"},
	})
}

// minLevel reads min_access_level; ok is false for a value GitLab rejects.
func minLevel(r *http.Request) (int, bool) {
	v := r.URL.Query().Get("min_access_level")
	if v == "" {
		return 0, true
	}
	n, err := strconv.Atoi(v)
	if err != nil || !slices.Contains([]int{10, 15, 20, 30, 40, 50}, n) {
		return 0, false
	}
	return n, true
}

func (g *GitLab) badLevel(w http.ResponseWriter) {
	writeJSON(w, http.StatusBadRequest, `{"error":"min_access_level does not have a valid value"}`)
}

func (g *GitLab) member(t *glToken, level int) bool {
	return t.AccessLevel > 0 && t.AccessLevel >= level
}

func (g *GitLab) group(t *glToken) map[string]any {
	return map[string]any{
		"id": 3, "web_url": "https://gitlab.example.com/groups/acme", "name": "acme", "path": "acme",
		"full_path": "acme", "parent_id": nil, "organization_id": 1, "visibility": "private",
		"access_levels": t.AccessLevel,
	}
}

func (g *GitLab) project(t *glToken, simple bool) map[string]any {
	p := map[string]any{
		"id": 1337, "name": "service", "path": "service", "path_with_namespace": "acme/service",
		"web_url": "https://gitlab.example.com/acme/service", "default_branch": "main",
		"namespace": map[string]any{"id": 3, "name": "acme", "path": "acme", "kind": "group", "full_path": "acme"},
	}
	if !simple {
		p["visibility"] = "private"
		p["permissions"] = map[string]any{"project_access": nil, "group_access": map[string]any{"access_level": t.AccessLevel}}
	}
	return p
}

func (g *GitLab) associations(w http.ResponseWriter, r *http.Request) {
	if g.opts.NoAssociations {
		// Route absent before 17.4; GitLab still authenticates first.
		if _, ok := g.authenticate(w, r); ok {
			writeJSON(w, http.StatusNotFound, gitLabNotFoundBody)
		}
		return
	}
	t, ok := g.authenticate(w, r, gitlabReadScopes...)
	if !ok {
		return
	}
	level, ok := minLevel(r)
	if !ok {
		g.badLevel(w)
		return
	}
	groups, projects := []any{}, []any{}
	if g.member(t, level) {
		groups = append(groups, g.group(t))
		p := g.project(t, true)
		p["access_levels"] = map[string]any{"project_access_level": nil, "group_access_level": t.AccessLevel}
		projects = append(projects, p)
	}
	writeJSON(w, http.StatusOK, map[string]any{"groups": groups, "projects": projects})
}

// writePage sends one page of a listing with GitLab's pagination headers.
func writePage(w http.ResponseWriter, r *http.Request, items []any) {
	per := queryInt(r, "per_page", 20)
	if per == 0 {
		per = 20
	}
	pg := max(queryInt(r, "page", 1), 1)
	out, _, last := page(items, (pg-1)*per, per)
	h := w.Header()
	h.Set("X-Total", strconv.Itoa(len(items)))
	h.Set("X-Per-Page", strconv.Itoa(per))
	h.Set("X-Page", strconv.Itoa(pg))
	h.Set("X-Total-Pages", strconv.Itoa(max((len(items)+per-1)/per, 1)))
	h.Set("X-Next-Page", "")
	if !last {
		h.Set("X-Next-Page", strconv.Itoa(pg+1))
	}
	if out == nil {
		out = []any{}
	}
	writeJSON(w, http.StatusOK, out)
}

func (g *GitLab) groups(w http.ResponseWriter, r *http.Request) {
	t, ok := g.authenticate(w, r, gitlabReadScopes...)
	if !ok {
		return
	}
	level, ok := minLevel(r)
	if !ok {
		g.badLevel(w)
		return
	}
	items := []any{}
	if g.member(t, level) {
		items = append(items, g.group(t))
	}
	writePage(w, r, items)
}

func (g *GitLab) projects(w http.ResponseWriter, r *http.Request) {
	t, ok := g.authenticate(w, r, gitlabReadScopes...)
	if !ok {
		return
	}
	level, ok := minLevel(r)
	if !ok {
		g.badLevel(w)
		return
	}
	items := []any{}
	if g.member(t, level) {
		items = append(items, g.project(t, r.URL.Query().Get("simple") == "true"))
	}
	writePage(w, r, items)
}

func (g *GitLab) user(w http.ResponseWriter, r *http.Request) {
	t, ok := g.authenticate(w, r, "api", "read_api", "read_user")
	if !ok {
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"id": t.userID, "username": t.Username, "name": t.Username, "state": "active", "locked": false,
		"avatar_url": "", "web_url": "https://gitlab.example.com/" + t.Username,
		"created_at": "2024-01-01T00:00:00.000Z", "bot": false,
	})
}

func (g *GitLab) metadata(w http.ResponseWriter, r *http.Request) {
	if _, ok := g.authenticate(w, r, gitlabReadScopes...); !ok {
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"version": g.opts.Version, "revision": "a88e17d191e",
		"kas":        map[string]any{"enabled": false, "externalUrl": nil, "externalK8sProxyUrl": nil, "version": nil},
		"enterprise": true,
	})
}

func (g *GitLab) other(w http.ResponseWriter, r *http.Request) {
	if _, ok := g.authenticate(w, r); ok {
		writeJSON(w, http.StatusNotFound, gitLabNotFoundBody)
	}
}
