package scmtest

import (
	"context"
	"net/http"
	"slices"
	"strconv"
	"sync"

	"github.com/snyk-vault/vault-plugin-secrets-snyk/backend/fault"
)

// Route names of the Bitbucket Server fake.
const (
	RouteBitbucketProjects = "bitbucket.projects" // GET /rest/api/1.0/projects
	RouteBitbucketRepos    = "bitbucket.repos"    // GET /rest/api/1.0/repos
	RouteBitbucketWhoami   = "bitbucket.whoami"   // GET /plugins/servlet/applinks/whoami
	RouteBitbucketOther    = "bitbucket.other"    // anything else: 401 or 404
)

// Bodies Bitbucket Server sends.
const (
	BitbucketUnauthorizedBody = `{"errors":[{"context":null,"message":"Authentication failed. Please check your credentials and try again.","exceptionName":"com.atlassian.bitbucket.auth.IncorrectPasswordAuthenticationException"}]}`
	// BitbucketBasicDisabledBody: the reference records only the phrase
	// "Basic Authentication has been disabled"; the envelope is Bitbucket's
	// usual error shape.
	BitbucketBasicDisabledBody = `{"errors":[{"context":null,"message":"Basic Authentication has been disabled for this instance: use an HTTP access token instead of a password.","exceptionName":"com.atlassian.bitbucket.auth.BasicAuthenticationDisabledException"}]}`
	bitbucketAnonymousBody     = `{"errors":[{"context":null,"message":"You are not permitted to access this resource","exceptionName":"com.atlassian.bitbucket.AuthorisationException"}]}`
	bitbucketNotFoundBody      = `{"errors":[{"context":null,"message":"The requested resource does not exist.","exceptionName":"com.atlassian.bitbucket.NoSuchEntityException"}]}`
)

// BitbucketUser is an account of the fake.
type BitbucketUser struct {
	Username string
	Password string
	// Tokens are the user's HTTP access tokens, usable as Bearer or as the
	// Basic password (the latter even when BasicAuthDisabled).
	Tokens []string
	// RepoAdmin: the user is Repository admin on the fake's repositories.
	RepoAdmin bool
}

type bbUser struct {
	BitbucketUser
	id int
}

// Bitbucket fakes a Bitbucket Server / Data Center instance.
type Bitbucket struct {
	// BasicAuthDisabled refuses Basic authentication with a password (401);
	// Basic with an HTTP access token and Bearer keep working.
	BasicAuthDisabled bool

	inj  *fault.Injector
	seen seenSet
	ids  requestIDs
	mux  *http.ServeMux

	mu      sync.Mutex
	users   map[string]*bbUser
	tokens  map[string]string // token → username
	revoked map[string]bool
}

// NewBitbucket returns a fake with no users.
func NewBitbucket() *Bitbucket {
	b := &Bitbucket{
		inj:     fault.NewInjector(),
		mux:     http.NewServeMux(),
		users:   map[string]*bbUser{},
		tokens:  map[string]string{},
		revoked: map[string]bool{},
	}
	b.mux.HandleFunc("GET /rest/api/1.0/projects", b.inj.Wrap(RouteBitbucketProjects, b.projects))
	b.mux.HandleFunc("GET /rest/api/1.0/repos", b.inj.Wrap(RouteBitbucketRepos, b.repos))
	b.mux.HandleFunc("GET /plugins/servlet/applinks/whoami", b.inj.Wrap(RouteBitbucketWhoami, b.whoami))
	b.mux.HandleFunc("/", b.inj.Wrap(RouteBitbucketOther, b.other))
	return b
}

// AddUser adds (or replaces) an account and its tokens.
func (b *Bitbucket) AddUser(u BitbucketUser) {
	b.mu.Lock()
	defer b.mu.Unlock()
	id := len(b.users) + 1
	if old, ok := b.users[u.Username]; ok {
		id = old.id
	}
	b.users[u.Username] = &bbUser{BitbucketUser: u, id: id}
	for _, t := range u.Tokens {
		b.tokens[t] = u.Username
		delete(b.revoked, t)
	}
}

// RevokeToken makes an HTTP access token answer 401 from now on.
func (b *Bitbucket) RevokeToken(token string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.revoked[token] = true
}

// Faults is the fault injector and call counter of every route.
func (b *Bitbucket) Faults() *fault.Injector { return b.inj }

// SeenTokens lists the distinct secrets presented (Bearer token or Basic
// password), in first-seen order.
func (b *Bitbucket) SeenTokens() []string { return b.seen.list() }

type bbCtxKey struct{}

// bbAuth is the outcome of authentication, resolved before routing so that
// X-AUSERNAME is on every authenticated response, faulted and 404 included.
type bbAuth struct {
	user      *bbUser
	failure   string // response body when the credential was refused
	anonymous bool
}

// ServeHTTP records the credential, authenticates and routes the request.
func (b *Bitbucket) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	b.seen.add(presentedSecret(r))
	w.Header().Set("X-AREQUESTID", b.ids.next("@1XQ2K3Lx"))
	a := b.authenticate(r)
	if a.user != nil {
		w.Header().Set("X-AUSERNAME", a.user.Username)
		w.Header().Set("X-AUSERID", strconv.Itoa(a.user.id))
	}
	b.mux.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), bbCtxKey{}, a)))
}

func (b *Bitbucket) authenticate(r *http.Request) *bbAuth {
	scheme, cred := authorization(r)
	b.mu.Lock()
	defer b.mu.Unlock()
	switch scheme {
	case "":
		return &bbAuth{anonymous: true}
	case "bearer":
		if name, ok := b.tokens[cred]; ok && !b.revoked[cred] {
			return &bbAuth{user: b.users[name]}
		}
	case "basic":
		name, secret, ok := basicCredentials(r)
		u := b.users[name]
		if !ok || u == nil {
			break
		}
		if secret != "" && secret == u.Password {
			if b.BasicAuthDisabled {
				return &bbAuth{failure: BitbucketBasicDisabledBody}
			}
			return &bbAuth{user: u}
		}
		if slices.Contains(u.Tokens, secret) && !b.revoked[secret] {
			return &bbAuth{user: u}
		}
	}
	return &bbAuth{failure: BitbucketUnauthorizedBody}
}

// require answers 401 itself unless the request is authenticated.
func (b *Bitbucket) require(w http.ResponseWriter, r *http.Request) (*bbUser, bool) {
	a, _ := r.Context().Value(bbCtxKey{}).(*bbAuth)
	switch {
	case a == nil || a.anonymous:
		writeJSON(w, http.StatusUnauthorized, bitbucketAnonymousBody)
	case a.failure != "":
		w.Header().Set("WWW-Authenticate", `Basic realm="Atlassian Bitbucket"`)
		writeJSON(w, http.StatusUnauthorized, a.failure)
	default:
		return a.user, true
	}
	return nil, false
}

// writePaged sends one page in Bitbucket's envelope.
func writePaged(w http.ResponseWriter, r *http.Request, items []any) {
	start, limit := queryInt(r, "start", 0), queryInt(r, "limit", 25)
	if limit == 0 {
		limit = 25
	}
	limit = min(limit, 1000)
	vals, next, last := page(items, start, limit)
	if vals == nil {
		vals = []any{}
	}
	body := map[string]any{"size": len(vals), "limit": limit, "isLastPage": last, "values": vals, "start": start}
	if !last {
		body["nextPageStart"] = next
	}
	writeJSON(w, http.StatusOK, body)
}

var bitbucketProjects = []struct{ key, name string }{{"PRJ", "Product"}, {"SEC", "Security"}, {"OPS", "Operations"}}

func bitbucketProject(i int) map[string]any {
	p := bitbucketProjects[i]
	return map[string]any{
		"key": p.key, "id": i + 1, "name": p.name, "public": false, "type": "NORMAL",
		"links": map[string]any{"self": []any{map[string]any{"href": "https://bitbucket.example.com/projects/" + p.key}}},
	}
}

func (b *Bitbucket) projects(w http.ResponseWriter, r *http.Request) {
	if _, ok := b.require(w, r); !ok {
		return
	}
	var items []any
	for i := range bitbucketProjects {
		items = append(items, bitbucketProject(i))
	}
	writePaged(w, r, items)
}

func (b *Bitbucket) repos(w http.ResponseWriter, r *http.Request) {
	u, ok := b.require(w, r)
	if !ok {
		return
	}
	perm := r.URL.Query().Get("permission")
	switch perm {
	case "", "REPO_READ", "REPO_WRITE", "REPO_ADMIN":
	default:
		writeJSON(w, http.StatusBadRequest, map[string]any{"errors": []any{map[string]any{
			"context": "permission", "message": perm + " is not a valid repository permission.", "exceptionName": nil,
		}}})
		return
	}
	var items []any
	if perm != "REPO_ADMIN" || u.RepoAdmin {
		for i, name := range []string{"service", "frontend"} {
			items = append(items, map[string]any{
				"slug": name, "id": i + 1, "name": name, "scmId": "git", "state": "AVAILABLE",
				"forkable": true, "public": false, "project": bitbucketProject(0),
				"links": map[string]any{"clone": []any{map[string]any{"href": "https://bitbucket.example.com/scm/prj/" + name + ".git", "name": "http"}}},
			})
		}
	}
	writePaged(w, r, items)
}

// whoami answers in plain text, empty for anonymous callers.
func (b *Bitbucket) whoami(w http.ResponseWriter, r *http.Request) {
	a, _ := r.Context().Value(bbCtxKey{}).(*bbAuth)
	w.Header().Set("Content-Type", "text/plain;charset=UTF-8")
	if a != nil && a.user != nil {
		_, _ = w.Write([]byte(a.user.Username))
	}
}

func (b *Bitbucket) other(w http.ResponseWriter, r *http.Request) {
	if _, ok := b.require(w, r); ok {
		writeJSON(w, http.StatusNotFound, bitbucketNotFoundBody)
	}
}
