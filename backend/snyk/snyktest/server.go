// Package snyktest is a stateful fake of the Snyk API parts the engine uses:
// the v1 integrations API with Broker-token provisioning and switching, the
// REST /self and /orgs/{id} reads, the OAuth client-credentials grant, and
// the Universal Broker (tenant deployments, credential references,
// connections, app-install secrets and the endpoints a Broker client calls;
// universal*.go).
//
// It follows Snyk's API documentation (the v1 API Blueprint, the REST and
// OAuth specifications at docs.snyk.io); where Snyk's behaviour is not
// documented the choice is a Behaviour switch, so tests cover every plausible
// answer. It is a plain http.Handler so that a simulator process can serve it
// too.
package snyktest

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"

	"github.com/snyk-vault/vault-plugin-secrets-snyk/backend/fault"
)

// Route names, as counted and faulted by Faults().
const (
	RouteOAuthToken        = "POST /oauth2/token"
	RouteSelf              = "GET /rest/self"
	RouteOrg               = "GET /rest/orgs/{org_id}"
	RouteUserMe            = "GET /v1/user/me"
	RouteListIntegrations  = "GET /v1/org/{orgId}/integrations"
	RouteIntegrationByType = "GET /v1/org/{orgId}/integrations/{type}"
	RouteAddIntegration    = "POST /v1/org/{orgId}/integrations"
	RouteUpdateIntegration = "PUT /v1/org/{orgId}/integrations/{integrationId}"
	RouteProvisionToken    = "POST /v1/org/{orgId}/integrations/{integrationId}/authentication/provision-token"
	RouteSwitchToken       = "POST /v1/org/{orgId}/integrations/{integrationId}/authentication/switch-token"
	RouteClone             = "POST /v1/org/{orgId}/integrations/{integrationId}/clone"
	RouteDeleteCredentials = "DELETE /v1/org/{orgId}/integrations/{integrationId}/authentication"
	RouteSettings          = "GET|PUT /v1/org/{orgId}/integrations/{integrationId}/settings"
	RouteOrgSASecrets      = "POST /rest/orgs/{owner_id}/service_accounts/{sa_id}/secrets"
	RouteGroupSASecrets    = "POST /rest/groups/{owner_id}/service_accounts/{sa_id}/secrets"
	RouteOrgSACreate       = "POST /rest/orgs/{owner_id}/service_accounts"
	RouteGroupSACreate     = "POST /rest/groups/{owner_id}/service_accounts"
	RouteOrgSAList         = "GET /rest/orgs/{owner_id}/service_accounts"
	RouteGroupSAList       = "GET /rest/groups/{owner_id}/service_accounts"
	RouteOrgSADelete       = "DELETE /rest/orgs/{owner_id}/service_accounts/{sa_id}"
	RouteGroupSADelete     = "DELETE /rest/groups/{owner_id}/service_accounts/{sa_id}"
)

// Options configures a Server.
type Options struct {
	// APITokens are the valid `Authorization: token …` credentials.
	APITokens []string
	// OAuthClients maps client_id to client_secret for /oauth2/token.
	OAuthClients map[string]string
	// AccessTokenTTL is the expires_in of minted access tokens; 1h when 0.
	AccessTokenTTL time.Duration
	// Now drives access-token expiry and rate limiting; time.Now when nil.
	Now func() time.Time
}

// Server is the fake. All methods are safe for concurrent use.
type Server struct {
	mux *http.ServeMux
	inj *fault.Injector
	now func() time.Time
	ttl time.Duration

	mu               sync.Mutex
	apiTokens        map[string]bool
	clients          map[string][]string // client_id -> its secrets (at most two)
	serviceAccounts  map[string]*serviceAccount
	accessTokens     map[string]accessToken
	accessIssued     int
	orgs             map[string]*org
	integrations     map[string]*integration
	tokens           map[string]*tokenGroup // by token-group key
	groupProvisional map[string]string      // lane -> token-group key
	behaviour        Behaviour
	limiter          rateLimiter
	minted           []string // every Broker token issued, in order
	// known is every credential the fake accepted or issued (API tokens,
	// client secrets, access tokens, service-account keys), kept after
	// revocation, so a test can search logs for all of them (Secrets).
	known        []string
	switches     int            // successful switch-token calls
	provisionsBy map[string]int // successful provision-token calls by integration ID
	switchesBy   map[string]int // successful switch-token calls by integration ID
	ub           universalState // Universal Broker tenants, installs, deployments
}

type accessToken struct {
	clientID string
	expires  time.Time
	// secret is the client secret that minted the token, so that revoking
	// the secret can revoke it too (Behaviour.RevokeAccessTokensWithSecret).
	secret string
}

// principal is who a request authenticated as.
type principal struct {
	serviceAccount bool
	id             string
	name           string
	username       string
	email          string
}

type principalKey struct{}

// New returns a fake with no orgs or integrations.
func New(opts Options) *Server {
	s := &Server{
		mux:              http.NewServeMux(),
		inj:              fault.NewInjector(),
		now:              opts.Now,
		ttl:              opts.AccessTokenTTL,
		apiTokens:        map[string]bool{},
		clients:          map[string][]string{},
		serviceAccounts:  map[string]*serviceAccount{},
		accessTokens:     map[string]accessToken{},
		orgs:             map[string]*org{},
		integrations:     map[string]*integration{},
		tokens:           map[string]*tokenGroup{},
		provisionsBy:     map[string]int{},
		switchesBy:       map[string]int{},
		groupProvisional: map[string]string{},
		behaviour:        Behaviour{}.withDefaults(),
	}
	if s.now == nil {
		s.now = time.Now
	}
	if s.ttl <= 0 {
		s.ttl = time.Hour
	}
	for _, t := range opts.APITokens {
		s.apiTokens[t] = true
		s.known = append(s.known, t)
	}
	for id, secret := range opts.OAuthClients {
		s.clients[id] = []string{secret}
		s.known = append(s.known, secret)
	}

	routes := []struct {
		name string
		h    http.HandlerFunc
	}{
		{RouteOAuthToken, s.handleOAuthToken},
		{RouteSelf, s.authed(s.restAPI(s.handleSelf))},
		{RouteOrg, s.authed(s.restAPI(s.handleOrg))},
		{RouteUserMe, s.authed(s.handleUserMe)},
		{RouteListIntegrations, s.authed(s.handleList)},
		{RouteIntegrationByType, s.authed(s.handleByType)},
		{RouteAddIntegration, s.authed(s.handleAdd)},
		{RouteUpdateIntegration, s.authed(s.handleUpdate)},
		{RouteProvisionToken, s.authed(s.handleProvision)},
		{RouteSwitchToken, s.authed(s.handleSwitch)},
		{RouteClone, s.authed(s.handleClone)},
		{RouteDeleteCredentials, s.authed(s.handleDeleteCredentials)},
		{RouteSettings, s.authed(s.handleSettings)},
		{RouteOrgSASecrets, s.authed(s.restAPI(s.handleSASecrets("org")))},
		{RouteGroupSASecrets, s.authed(s.restAPI(s.handleSASecrets("group")))},
		{RouteOrgSACreate, s.authed(s.restAPI(s.handleSACreate("org")))},
		{RouteGroupSACreate, s.authed(s.restAPI(s.handleSACreate("group")))},
		{RouteOrgSAList, s.authed(s.restAPI(s.handleSAList("org")))},
		{RouteGroupSAList, s.authed(s.restAPI(s.handleSAList("group")))},
		{RouteOrgSADelete, s.authed(s.restAPI(s.handleSADelete("org")))},
		{RouteGroupSADelete, s.authed(s.restAPI(s.handleSADelete("group")))},
		{RouteUBTenantDeployments, s.authed(s.restAPI(s.handleUBTenantDeployments))},
		{RouteUBInstallDeployments, s.authed(s.restAPI(s.handleUBInstallDeployments))},
		{RouteUBCreateDeployment, s.authed(s.restAPI(s.handleUBCreateDeployment))},
		{RouteUBCredentials, s.authed(s.restAPI(s.handleUBCredentials))},
		{RouteUBCreateCredentials, s.authed(s.restAPI(s.handleUBCreateCredentials))},
		{RouteUBConnections, s.authed(s.restAPI(s.handleUBConnections))},
		{RouteUBCreateConnection, s.authed(s.restAPI(s.handleUBCreateConnection))},
		{RouteUBContexts, s.authed(s.restAPI(s.handleUBContexts))},
		{RouteInstallSecrets, s.authed(s.restAPI(s.handleInstallSecrets))},
		{RouteAppInstalls, s.authed(s.restAPI(s.handleAppInstalls))},
		// A Broker client's own calls take only its install's bearer token.
		{RouteHiddenConnections, s.handleHiddenConnections},
		{RouteHiddenAuthRefresh, s.handleHiddenAuthRefresh},
	}
	for _, rt := range routes {
		// Faults first, so that counters include throttled and rejected
		// calls, as an upstream's request log would.
		h := connectionAware(s.inj.Wrap(rt.name, s.rateLimited(v1Rules(rt.name, rt.h))))
		for _, pattern := range muxPatterns(rt.name) {
			s.mux.HandleFunc(pattern, h)
		}
	}
	s.mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		v1Error(w, http.StatusNotFound, "Not found")
	})
	return s
}

// connectionAware makes a request whose client went away end like it would
// at a real server. The body is read up front, which lets net/http notice the
// client hanging up while a fault delays the handler; and a handler that
// returns without answering because the client is gone aborts the connection
// instead of letting net/http send an implicit 200, which a client that just
// timed out could still read and take for success. (Called directly with a
// ResponseRecorder, it panics only if the caller cancelled the request.)
func connectionAware(next http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBody))
		if err != nil {
			var tooBig *http.MaxBytesError
			switch {
			case r.Context().Err() != nil:
				panic(http.ErrAbortHandler)
			case errors.As(err, &tooBig):
				v1Error(w, http.StatusRequestEntityTooLarge, "Request body too large")
			default:
				v1Error(w, http.StatusBadRequest, "Could not read the request body")
			}
			return
		}
		r.Body = io.NopCloser(bytes.NewReader(body))
		tw := &trackingWriter{ResponseWriter: w}
		next(tw, r)
		if !tw.wrote && r.Context().Err() != nil {
			panic(http.ErrAbortHandler)
		}
	}
}

// v1Rules holds v1 requests to what the API documents: a body only as
// JSON (with its Content-Type), and none at all for provision-token and
// switch-token, which the documentation lists without one.
func v1Rules(route string, next http.HandlerFunc) http.HandlerFunc {
	if !strings.Contains(route, " /v1/") {
		return next
	}
	noBody := route == RouteProvisionToken || route == RouteSwitchToken
	return func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		r.Body = io.NopCloser(bytes.NewReader(body))
		if len(bytes.TrimSpace(body)) == 0 {
			next(w, r)
			return
		}
		if noBody {
			v1Error(w, http.StatusBadRequest, "This endpoint does not take a request body")
			return
		}
		if mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type")); err != nil || mt != "application/json" {
			v1Error(w, http.StatusBadRequest, "Content-Type must be application/json")
			return
		}
		next(w, r)
	}
}

type trackingWriter struct {
	http.ResponseWriter
	wrote bool
}

func (t *trackingWriter) WriteHeader(status int) {
	t.wrote = true
	t.ResponseWriter.WriteHeader(status)
}

func (t *trackingWriter) Write(b []byte) (int, error) {
	t.wrote = true
	return t.ResponseWriter.Write(b)
}

// muxPatterns turns "GET|PUT /path" into one ServeMux pattern per method.
func muxPatterns(route string) []string {
	methods, path, _ := strings.Cut(route, " ")
	var out []string
	for _, m := range strings.Split(methods, "|") {
		out = append(out, m+" "+path)
	}
	return out
}

// ServeHTTP serves the fake API.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.mux.ServeHTTP(w, r) }

// Faults returns the per-route call counters and fault injector.
func (s *Server) Faults() *fault.Injector { return s.inj }

// AddAPIToken makes tok a valid API token.
func (s *Server) AddAPIToken(tok string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.apiTokens[tok] = true
	s.known = append(s.known, tok)
}

// RevokeAPIToken makes tok invalid; requests with it get 401 from now on.
func (s *Server) RevokeAPIToken(tok string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.apiTokens, tok)
}

// AccessTokensIssued returns how many OAuth access tokens were minted.
func (s *Server) AccessTokensIssued() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.accessIssued
}

// authed rejects requests without a valid credential and passes the
// principal on in the request context.
func (s *Server) authed(next http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		p, ok := s.authenticate(r.Header.Get("Authorization"))
		if !ok {
			writeJSONBytes(w, http.StatusUnauthorized, "application/json; charset=utf-8",
				[]byte(`{"code":401,"error":"Not authorised","message":"Not authorised"}`))
			return
		}
		next(w, r.WithContext(context.WithValue(r.Context(), principalKey{}, p)))
	}
}

// principalNS derives stable principal IDs without exposing the credential.
var principalNS = uuid.MustParse("6f0d8a1e-4c55-4a8e-9a43-0b7b8a3f2c10")

func (s *Server) authenticate(header string) (principal, bool) {
	scheme, cred, ok := strings.Cut(strings.TrimSpace(header), " ")
	cred = strings.TrimSpace(cred)
	if !ok || cred == "" {
		return principal{}, false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	switch strings.ToLower(scheme) {
	case "token":
		if !s.apiTokens[cred] {
			return principal{}, false
		}
		id := userPrincipalID(cred)
		return principal{
			id:       id,
			name:     "Snyk Test User",
			username: "snyk-test-user-" + id[:8],
			email:    "snyk-test-user-" + id[:8] + "@example.com",
		}, true
	case "bearer":
		at, found := s.accessTokens[cred]
		if !found || !s.now().Before(at.expires) {
			return principal{}, false
		}
		return principal{
			serviceAccount: true,
			id:             botID(at.clientID),
			name:           "service account " + at.clientID,
			username:       "service-account-" + at.clientID,
		}, true
	}
	return principal{}, false
}

func botID(clientID string) string {
	return uuid.NewSHA1(principalNS, []byte("client:"+clientID)).String()
}

func principalOf(r *http.Request) principal {
	p, _ := r.Context().Value(principalKey{}).(principal)
	return p
}

// handleOAuthToken implements the client-credentials grant (§6.4).
func (s *Server) handleOAuthToken(w http.ResponseWriter, r *http.Request) {
	ct := strings.ToLower(strings.TrimSpace(strings.Split(r.Header.Get("Content-Type"), ";")[0]))
	if ct != "application/x-www-form-urlencoded" {
		oauthError(w, http.StatusBadRequest, "invalid_request", "Content-Type must be application/x-www-form-urlencoded")
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
	if err := r.ParseForm(); err != nil {
		oauthError(w, http.StatusBadRequest, "invalid_request", "The request body could not be parsed")
		return
	}
	if gt := r.PostForm.Get("grant_type"); gt != "client_credentials" {
		oauthError(w, http.StatusBadRequest, "unsupported_grant_type", "Only the client_credentials grant is supported")
		return
	}
	id, secret := r.PostForm.Get("client_id"), r.PostForm.Get("client_secret")
	if bid, bsecret, ok := r.BasicAuth(); ok && id == "" {
		id, secret = bid, bsecret
	}
	if id == "" || secret == "" {
		oauthError(w, http.StatusBadRequest, "invalid_request", "client_id and client_secret are required")
		return
	}

	s.mu.Lock()
	secrets, known := s.clients[id]
	if !known || !slices.Contains(secrets, secret) {
		s.mu.Unlock()
		oauthError(w, http.StatusUnauthorized, "invalid_client", "Client authentication failed")
		return
	}
	now := s.now()
	for t, at := range s.accessTokens {
		if !now.Before(at.expires) {
			delete(s.accessTokens, t)
		}
	}
	tok := randomHex(32)
	s.accessTokens[tok] = accessToken{clientID: id, expires: now.Add(s.ttl), secret: secret}
	s.known = append(s.known, tok)
	s.accessIssued++
	s.mu.Unlock()

	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, http.StatusOK, map[string]any{
		"access_token": tok,
		"expires_in":   int64(s.ttl / time.Second),
		"token_type":   "bearer",
		"scope":        "org.read org.edit org.integration.read org.integration.edit",
		"bot_id":       botID(id),
	})
}

func oauthError(w http.ResponseWriter, status int, code, desc string) {
	writeJSON(w, status, map[string]string{"error": code, "error_description": desc})
}

// v1Error writes the current v1 error body plus its reference header.
func v1Error(w http.ResponseWriter, status int, msg string) {
	w.Header().Set("x-error-reference", uuid.NewString())
	writeJSON(w, status, map[string]any{"code": status, "message": msg, "error": msg})
}

func orgNotFound(w http.ResponseWriter, orgID string) {
	v1Error(w, http.StatusNotFound, fmt.Sprintf("Org %s was not found or you may not have the correct permissions to access the org.", orgID))
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		http.Error(w, "encoding failed", http.StatusInternalServerError)
		return
	}
	writeJSONBytes(w, status, "application/json; charset=utf-8", b)
}

func writeJSONBytes(w http.ResponseWriter, status int, contentType string, b []byte) {
	w.Header().Set("Content-Type", contentType)
	w.WriteHeader(status)
	_, _ = w.Write(b)
}

// newToken mints a Broker token in the form the Broker client's preflight
// check accepts: a lower-case UUIDv4.
func newToken() string { return uuid.NewString() }

func randomHex(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return hex.EncodeToString(b)
}
