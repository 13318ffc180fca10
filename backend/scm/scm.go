// Package scm checks that an SCM credential is what the Snyk Broker client
// needs before the engine stores it: that the SCM accepts it, that it carries
// the scopes (or role) Broker documents, and when it expires.
//
// A credential the operator can fix (bad, expired, too narrow, wrong shape,
// non-https URL) is reported in Result.Problems with a nil error; an error is
// returned only for what changing the credential cannot fix (network failure,
// 5xx or throttling after bounded retries, an unreadable success response).
//
// Secrets never leave this package: no Problem, Note, error or log line
// contains a token, a password, an Authorization header, a response body or a
// query string. Logs carry at most method, path and status.
//
// Ordering: Result.Scopes is sorted and de-duplicated; Result.MissingScopes
// follows RequiredScopes(kind) order.
package scm

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"sort"
	"strings"
	"time"

	hclog "github.com/hashicorp/go-hclog"

	"github.com/snyk-vault/vault-plugin-secrets-snyk/backend/httpx"
)

// SCM kinds, as used in the `scm` field and integration paths.
const (
	GitHub           = "github"
	GitHubEnterprise = "github-enterprise"
	GitLab           = "gitlab"
	AzureRepos       = "azure-repos"
	BitbucketServer  = "bitbucket-server"
)

// Kinds lists every supported SCM kind.
var Kinds = []string{GitHub, GitHubEnterprise, GitLab, AzureRepos, BitbucketServer}

// Scope names that are not literal token scopes but requirements this package
// reports in the same lists.
const (
	// ScopeMaintainer stands for GitLab's Maintainer role (access level 40)
	// on at least one group or project: GitLab has no role scope to read.
	ScopeMaintainer = "maintainer"
	// ScopeAzureCodeWrite is Azure DevOps' "Code: Read & write".
	ScopeAzureCodeWrite = "vso.code_write"
	// ScopeAzureCode is what a successful repositories probe demonstrates.
	ScopeAzureCode = "vso.code"
	// ScopeBitbucketRepoAdmin is Bitbucket's Repository admin permission.
	ScopeBitbucketRepoAdmin = "REPO_ADMIN"
)

// Errors wrapped by Validate, so callers can tell a transient upstream state
// from a broken integration with errors.Is.
var (
	// ErrThrottled: the SCM rate-limited us and the retry budget ran out.
	ErrThrottled = errors.New("scm rate limit")
	// ErrUpstream: network failure, 5xx after retries, or a response this
	// package cannot interpret.
	ErrUpstream = errors.New("scm upstream failure")
)

// Valid reports whether kind is a supported SCM kind.
func Valid(kind string) bool { return slices.Contains(Kinds, kind) }

// DefaultSCMURL is the SCM's web URL when the operator gives none; the
// self-hosted-only kinds have no default.
func DefaultSCMURL(kind string) string {
	switch kind {
	case GitHub:
		return "https://github.com"
	case GitLab:
		return "https://gitlab.com"
	case AzureRepos:
		return "https://dev.azure.com"
	}
	return ""
}

// DefaultAPIURL derives the API base from the SCM URL the way Broker's
// templates do. An empty scmURL falls back to DefaultSCMURL; "" means the
// kind needs an scm_url that was not given (or the kind is unknown).
func DefaultAPIURL(kind, scmURL string) string {
	base := strings.TrimRight(strings.TrimSpace(scmURL), "/")
	if base == "" {
		base = DefaultSCMURL(kind)
	}
	switch kind {
	case GitHub:
		// github.com's REST API lives on its own host, whatever scm_url says.
		return "https://api.github.com"
	case GitHubEnterprise:
		if base == "" {
			return ""
		}
		return base + "/api/v3"
	case GitLab:
		return base + "/api/v4"
	case AzureRepos, BitbucketServer:
		return base
	}
	return ""
}

// RequiredScopes is what Broker documents for each kind. GitLab's Maintainer
// role is listed as ScopeMaintainer. The slice is a fresh copy.
func RequiredScopes(kind string) []string {
	switch kind {
	case GitHub, GitHubEnterprise:
		return []string{"repo", "read:org", "admin:repo_hook"}
	case GitLab:
		return []string{"api", ScopeMaintainer}
	case AzureRepos:
		return []string{ScopeAzureCodeWrite}
	case BitbucketServer:
		return []string{ScopeBitbucketRepoAdmin}
	}
	return nil
}

// Target is where to validate. APIURL is already resolved (an explicit
// scm_api_url, or DefaultAPIURL).
type Target struct {
	Kind     string
	APIURL   string
	AzureOrg string
}

// Credential is the SCM secret. Bitbucket Server takes Username+Password
// (Basic; the password may be an HTTP access token) or Token (Bearer); every
// other kind takes Token only.
type Credential struct {
	Token    string
	Username string
	Password string
}

// Result is the outcome of a validation the SCM answered.
type Result struct {
	Valid         bool
	Scopes        []string
	MissingScopes []string
	// ExpiresAt is zero when unknown or non-expiring.
	ExpiresAt time.Time
	Username  string
	// Problems has one sentence per failure, naming what is wrong and how
	// to fix it. Valid is false exactly when Problems is non-empty.
	Problems []string
	// Notes are remarks that do not make the credential invalid.
	Notes []string
}

// Message joins the problems for an API error response.
func (r Result) Message() string { return strings.Join(r.Problems, "; ") }

// Validator checks credentials against the SCM's API.
type Validator struct {
	// Client comes from httpx.NewClient so the operator's CA is trusted and
	// redirects are not followed with credentials attached. nil means a
	// client trusting the system roots only.
	Client *http.Client
	// Retry bounds retries of 429/5xx; its zero fields take
	// httpx.DefaultRetryPolicy's values.
	Retry  httpx.RetryPolicy
	Logger hclog.Logger
	Now    func() time.Time
}

// Validate checks c against the SCM described by t. See the package comment
// for what is a Problem and what is an error.
func (v *Validator) Validate(ctx context.Context, t Target, c Credential) (Result, error) {
	s := &session{v: v, kind: t.Kind, log: v.logger()}
	if !Valid(t.Kind) {
		s.problem("unknown scm %q: use one of %s", t.Kind, strings.Join(Kinds, ", "))
		return s.finish(), nil
	}
	base, msg := checkAPIURL(t.APIURL)
	if msg != "" {
		s.problem("%s", msg)
		return s.finish(), nil
	}
	s.base = base
	s.log = s.log.With("scm", t.Kind)
	if !s.checkShape(t, c) {
		return s.finish(), nil
	}
	client, err := s.v.client()
	if err != nil {
		return Result{}, fmt.Errorf("%w: %w", ErrUpstream, err)
	}
	s.client = client
	switch t.Kind {
	case GitHub, GitHubEnterprise:
		err = s.github(ctx, c.Token)
	case GitLab:
		err = s.gitlab(ctx, c.Token)
	case AzureRepos:
		err = s.azure(ctx, t.AzureOrg, c.Token)
	case BitbucketServer:
		err = s.bitbucket(ctx, c)
	}
	if err != nil {
		s.log.Debug("scm validation failed upstream")
		return Result{}, err
	}
	r := s.finish()
	s.log.Debug("scm validation finished", "valid", r.Valid, "missing", len(r.MissingScopes))
	return r, nil
}

func (v *Validator) logger() hclog.Logger {
	if v.Logger == nil {
		return hclog.NewNullLogger()
	}
	return v.Logger
}

func (v *Validator) now() time.Time {
	if v.Now == nil {
		return time.Now()
	}
	return v.Now()
}

func (v *Validator) client() (*http.Client, error) {
	if v.Client != nil {
		return v.Client, nil
	}
	return httpx.NewClient("", 30*time.Second)
}

func (v *Validator) policy(log hclog.Logger) httpx.RetryPolicy {
	p := v.Retry
	if p.Logger == nil {
		p.Logger = log
	}
	return p
}

// checkAPIURL insists on https: the request carries the credential. The URL
// is echoed only as scheme and host, since a userinfo part could be secret.
func checkAPIURL(raw string) (string, string) {
	raw = strings.TrimSpace(raw)
	if raw == "" {
		return "", "no SCM API URL: set scm_url (or scm_api_url) to the SCM's https:// address"
	}
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" {
		return "", "scm_api_url is not an absolute URL: give it as https://host[/path]"
	}
	if u.User != nil {
		return "", "scm_api_url must not embed credentials: remove the user:password@ part and pass the credential in its own field"
	}
	if u.Scheme != "https" {
		return "", fmt.Sprintf("scm_api_url must use https, not %q: the credential would travel in clear text; use https://%s", u.Scheme, u.Host)
	}
	if u.RawQuery != "" || u.Fragment != "" {
		return "", "scm_api_url must not carry a query or fragment: give only https://host[/path]"
	}
	return strings.TrimRight(u.Scheme+"://"+u.Host+u.EscapedPath(), "/"), ""
}

// checkShape rejects credentials that cannot fit the kind before anything is
// sent, so a misplaced secret never reaches the wrong header.
func (s *session) checkShape(t Target, c Credential) bool {
	ok := true
	if t.Kind == BitbucketServer {
		hasBasic := c.Username != "" || c.Password != ""
		switch {
		case c.Token != "" && hasBasic:
			s.problem("Bitbucket Server takes either scm_token (an HTTP access token, sent as Bearer) or scm_username+scm_password, not both: remove one")
			ok = false
		case c.Token == "" && !hasBasic:
			s.problem("no Bitbucket Server credential: set scm_token to an HTTP access token, or scm_username and scm_password (the password may be an HTTP access token)")
			ok = false
		case c.Token == "" && (c.Username == "" || c.Password == ""):
			s.problem("Bitbucket Server basic authentication needs both scm_username and scm_password: set the missing one, or use scm_token instead")
			ok = false
		}
		for _, f := range []struct{ name, val string }{{"scm_token", c.Token}, {"scm_username", c.Username}, {"scm_password", c.Password}} {
			if f.val != "" && !printable(f.val) {
				s.problem("%s contains whitespace or control characters (a trailing newline from a file?): remove them", f.name)
				ok = false
			}
		}
		if strings.Contains(c.Username, ":") {
			s.problem("scm_username must not contain ':' (HTTP basic authentication cannot carry it): use the Bitbucket user's slug or name")
			ok = false
		}
		return ok
	}
	if c.Username != "" || c.Password != "" {
		s.problem("%s takes a personal access token in scm_token; scm_username and scm_password are only for bitbucket-server: remove them", displayName(t.Kind))
		ok = false
	}
	if c.Token == "" {
		s.problem("no %s token: set scm_token (%s)", displayName(t.Kind), tokenAdvice(t.Kind))
		ok = false
	} else if !printable(c.Token) {
		s.problem("scm_token contains whitespace or control characters (a trailing newline from a file?): remove them")
		ok = false
	}
	if t.Kind == AzureRepos && strings.TrimSpace(t.AzureOrg) == "" {
		s.problem("azure_org is required for azure-repos: set it to the Azure DevOps organization name (the first path segment after dev.azure.com/)")
		ok = false
	}
	return ok
}

func printable(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] <= ' ' || s[i] == 0x7f {
			return false
		}
	}
	return true
}

func displayName(kind string) string {
	switch kind {
	case GitHub:
		return "GitHub"
	case GitHubEnterprise:
		return "GitHub Enterprise"
	case GitLab:
		return "GitLab"
	case AzureRepos:
		return "Azure DevOps"
	case BitbucketServer:
		return "Bitbucket Server"
	}
	return kind
}

func tokenAdvice(kind string) string {
	switch kind {
	case GitHub, GitHubEnterprise:
		return "a classic PAT with scopes repo, read:org, admin:repo_hook"
	case GitLab:
		return "a personal access token with scope api, of a user who is Maintainer"
	case AzureRepos:
		return "a PAT with scope Code: Read & write"
	}
	return "a token"
}

// session accumulates one validation's findings.
type session struct {
	v      *Validator
	client *http.Client
	kind   string
	base   string
	log    hclog.Logger

	scopes   []string
	missing  []string
	expires  time.Time
	username string
	problems []string
	notes    []string
}

func (s *session) problem(format string, args ...any) {
	s.problems = append(s.problems, fmt.Sprintf(format, args...))
}

func (s *session) note(format string, args ...any) {
	s.notes = append(s.notes, fmt.Sprintf(format, args...))
}

func (s *session) miss(scope string) {
	if !slices.Contains(s.missing, scope) {
		s.missing = append(s.missing, scope)
	}
}

func (s *session) finish() Result {
	scopes := slices.Clone(s.scopes)
	sort.Strings(scopes)
	scopes = slices.Compact(scopes)
	// Report missing scopes in the order Broker's documentation lists them.
	var missing []string
	for _, req := range RequiredScopes(s.kind) {
		if slices.Contains(s.missing, req) {
			missing = append(missing, req)
		}
	}
	for _, m := range s.missing {
		if !slices.Contains(missing, m) {
			missing = append(missing, m)
		}
	}
	return Result{
		Valid:         len(s.problems) == 0,
		Scopes:        scopes,
		MissingScopes: missing,
		ExpiresAt:     s.expires,
		Username:      s.username,
		Problems:      s.problems,
		Notes:         s.notes,
	}
}

// response is a fully read reply; the body stays inside this package.
type response struct {
	method string
	path   string
	status int
	header http.Header
	body   []byte
}

func (r *response) contentType() string {
	return strings.ToLower(strings.TrimSpace(strings.SplitN(r.header.Get("Content-Type"), ";", 2)[0]))
}

func (r *response) isHTML() bool { return r.contentType() == "text/html" }

func (r *response) decode(v any) error {
	if err := json.Unmarshal(r.body, v); err != nil {
		return fmt.Errorf("%w: %s %s answered %d with a body that is not the expected JSON", ErrUpstream, r.method, r.path, r.status)
	}
	return nil
}

// maxBody bounds what is read from an SCM; every success body used here is
// small (limit=1 / per_page=1 listings, a user object).
const maxBody = 1 << 20

// get sends an idempotent GET with the retry policy. auth sets the credential
// header; nothing else ever sees it.
func (s *session) get(ctx context.Context, rawURL string, auth func(http.Header)) (*response, error) {
	newReq := func(ctx context.Context) (*http.Request, error) {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, rawURL, nil)
		if err != nil {
			// The URL was built from a checked base; do not echo it anyway.
			return nil, fmt.Errorf("%w: cannot build request", ErrUpstream)
		}
		req.Header.Set("Accept", "application/json")
		req.Header.Set("User-Agent", "vault-plugin-secrets-snyk")
		auth(req.Header)
		return req, nil
	}
	resp, err := s.v.policy(s.log).Do(ctx, s.client, true, newReq) //nolint:bodyclose // closed by httpx.ReadBody
	if err != nil {
		if ctx.Err() != nil {
			return nil, err
		}
		return nil, fmt.Errorf("%w: %w", ErrUpstream, err)
	}
	out := &response{method: http.MethodGet, path: resp.Request.URL.Path, status: resp.StatusCode, header: resp.Header}
	s.log.Trace("scm request", "method", out.method, "path", out.path, "status", out.status)
	out.body, err = httpx.ReadBody(resp, maxBody)
	if err != nil {
		return nil, fmt.Errorf("%w: %s %s: reading the response failed", ErrUpstream, out.method, out.path)
	}
	return out, nil
}

// upstreamError turns a status no branch handled into an error: throttling
// and 5xx left over after the retries, or something unexpected.
func (s *session) upstreamError(r *response) error {
	name := displayName(s.kind)
	switch {
	case r.status == http.StatusTooManyRequests:
		return fmt.Errorf("%w: %s still throttled %s %s after the retry budget%s; try again later", ErrThrottled, name, r.method, r.path, retryHint(r.header, s.v.now()))
	case r.status >= 500:
		return fmt.Errorf("%w: %s answered %s %s with %d after the retry budget; try again later", ErrUpstream, name, r.method, r.path, r.status)
	}
	return fmt.Errorf("%w: %s answered %s %s with unexpected status %d", ErrUpstream, name, r.method, r.path, r.status)
}

// retryHint names when the SCM says to come back, from whichever of the
// usual headers it sent.
func retryHint(h http.Header, now time.Time) string {
	if d, ok := httpx.RetryAfter(h, now); ok {
		return fmt.Sprintf(" (it asks to retry after %s)", d.Round(time.Second))
	}
	for _, k := range []string{"X-Ratelimit-Reset", "Ratelimit-Reset"} {
		if v := h.Get(k); v != "" {
			var epoch int64
			if _, err := fmt.Sscan(v, &epoch); err == nil && epoch > 0 {
				return fmt.Sprintf(" (the limit resets at %s)", time.Unix(epoch, 0).UTC().Format(time.RFC3339))
			}
		}
	}
	return ""
}

// endpoint joins the checked base with a fixed path and query.
func (s *session) endpoint(path string) string { return s.base + path }
