// Package snyk is the engine's client for the parts of the Snyk API that
// manage Broker tokens: the v1 integrations API, two cheap REST reads and the
// OAuth client-credentials grant.
//
// Every call goes through httpx.RetryPolicy.Do. Nothing in this package logs or
// returns in an error a credential, a header, a body or a query string: the
// responses it handles carry Broker tokens.
package snyk

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	hclog "github.com/hashicorp/go-hclog"

	"github.com/snyk-vault/vault-plugin-secrets-snyk/backend/httpx"
)

// DefaultRegion is Snyk's multi-tenant US instance.
const DefaultRegion = "SNYK-US-01"

// Region is one of Snyk's regional instances.
type Region struct{ Name, APIURL, BrokerServerURL string }

// Regions are the instances whose API hosts Snyk documents. SNYK-GOV-01 is
// absent on purpose: its API host is not published, so it needs api_url.
var Regions = map[string]Region{
	"SNYK-US-01": {Name: "SNYK-US-01", APIURL: "https://api.snyk.io", BrokerServerURL: "https://broker.snyk.io"},
	"SNYK-US-02": {Name: "SNYK-US-02", APIURL: "https://api.us.snyk.io", BrokerServerURL: "https://broker.us.snyk.io"},
	"SNYK-EU-01": {Name: "SNYK-EU-01", APIURL: "https://api.eu.snyk.io", BrokerServerURL: "https://broker.eu.snyk.io"},
	"SNYK-AU-01": {Name: "SNYK-AU-01", APIURL: "https://api.au.snyk.io", BrokerServerURL: "https://broker.au.snyk.io"},
}

// restVersion pins the REST API version: /rest/self and /rest/orgs/{id} are
// stable there, and snyk-broker-config uses the same one.
const restVersion = "2024-10-15"

// DefaultRequestTimeout bounds one attempt when Config.RequestTimeout is 0.
const DefaultRequestTimeout = 30 * time.Second

// maxResponseBody is far above any integrations response; it only stops a
// misbehaving proxy from exhausting memory.
const maxResponseBody = 4 << 20

const userAgent = "vault-plugin-secrets-snyk"

// Credential is either an API token (or service-account API key) or an OAuth
// service account's client ID and secret.
type Credential struct {
	APIToken     string
	ClientID     string
	ClientSecret string
}

// Config configures a Client.
type Config struct {
	// APIURL is the API base, e.g. https://api.snyk.io: v1 lives at
	// APIURL+"/v1", REST at APIURL+"/rest", OAuth at APIURL+"/oauth2/token".
	APIURL     string
	Credential Credential
	// CACert is a PEM bundle trusted in addition to the system roots.
	CACert string
	// RequestTimeout bounds each attempt; DefaultRequestTimeout when 0.
	RequestTimeout time.Duration
	Retry          httpx.RetryPolicy
	Logger         hclog.Logger
	// Now drives the OAuth access-token cache; time.Now when nil.
	Now func() time.Time
}

// Client calls the Snyk API. It is safe for concurrent use.
type Client struct {
	origin   string // scheme://host[:port]
	basePath string // path prefix of APIURL without a trailing slash, usually ""
	http     *http.Client
	retry    httpx.RetryPolicy
	log      hclog.Logger

	apiToken string
	oauth    *tokenSource // nil when authenticating with an API token

	// secrets are scrubbed from any upstream message before it is returned,
	// in case an upstream echoes what it was sent.
	secrets []string
}

// NewClient validates cfg and returns a client. It makes no network call.
func NewClient(cfg Config) (*Client, error) {
	origin, basePath, err := parseAPIURL(cfg.APIURL)
	if err != nil {
		return nil, err
	}
	cred := cfg.Credential
	hasToken := cred.APIToken != ""
	hasOAuth := cred.ClientID != "" || cred.ClientSecret != ""
	switch {
	case hasToken && hasOAuth:
		return nil, errors.New("snyk: api_token and client_id/client_secret are mutually exclusive")
	case !hasToken && !hasOAuth:
		return nil, errors.New("snyk: a credential is required: api_token, or client_id and client_secret")
	case hasOAuth && (cred.ClientID == "" || cred.ClientSecret == ""):
		return nil, errors.New("snyk: client_id and client_secret must be set together")
	}

	timeout := cfg.RequestTimeout
	if timeout <= 0 {
		timeout = DefaultRequestTimeout
	}
	hc, err := httpx.NewClient(cfg.CACert, timeout)
	if err != nil {
		return nil, fmt.Errorf("snyk: %w", err)
	}
	logger := cfg.Logger
	if logger == nil {
		logger = hclog.NewNullLogger()
	}
	retry := cfg.Retry
	if retry.Logger == nil {
		retry.Logger = logger
	}
	now := cfg.Now
	if now == nil {
		now = time.Now
	}

	c := &Client{
		origin:   origin,
		basePath: basePath,
		http:     hc,
		retry:    retry,
		log:      logger,
		apiToken: cred.APIToken,
	}
	for _, s := range []string{cred.APIToken, cred.ClientSecret} {
		if s != "" {
			c.secrets = append(c.secrets, s)
		}
	}
	if hasOAuth {
		c.oauth = &tokenSource{c: c, clientID: cred.ClientID, clientSecret: cred.ClientSecret, now: now}
	}
	return c, nil
}

// parseAPIURL splits an https API base into origin and path prefix. The
// errors never echo the URL: an operator may have pasted credentials into it.
func parseAPIURL(raw string) (origin, basePath string, err error) {
	u, err := url.Parse(strings.TrimSpace(raw))
	if err != nil {
		return "", "", errors.New("snyk: api_url is not a valid URL")
	}
	switch {
	case u.Scheme != "https":
		// Snyk answers 404 to every plain-HTTP request, and a token must
		// never travel in clear text.
		return "", "", errors.New("snyk: api_url must be an https:// URL")
	case u.Host == "":
		return "", "", errors.New("snyk: api_url has no host")
	case u.User != nil:
		return "", "", errors.New("snyk: api_url must not contain credentials")
	case u.RawQuery != "" || u.Fragment != "":
		return "", "", errors.New("snyk: api_url must not have a query or fragment")
	}
	p := strings.TrimRight(u.EscapedPath(), "/")
	if strings.HasSuffix(p, "/v1") || strings.HasSuffix(p, "/rest") {
		// A base ending in /v1 would silently produce /v1/v1/... and a REST
		// base the engine cannot reach; tell the operator instead.
		return "", "", errors.New("snyk: api_url must be the API base without /v1 or /rest, e.g. https://api.snyk.io")
	}
	return u.Scheme + "://" + u.Host, p, nil
}

// errorKind selects how an error body is read.
type errorKind int

const (
	kindV1 errorKind = iota
	kindREST
	kindOAuth
)

// request describes one logical API call; Do may send it several times.
type request struct {
	method      string
	path        string // escaped, below the API base: /v1/..., /rest/..., /oauth2/token
	query       url.Values
	body        []byte
	contentType string
	accept      string
	idempotent  bool
	kind        errorKind
	// noAuth is set only for the token endpoint, which authenticates with
	// the client secret in the form instead.
	noAuth bool
	// onAttempt runs once per HTTP attempt.
	onAttempt func()
}

// send performs rq and returns the body of a 2xx response. Any other status
// becomes an *APIError.
func (c *Client) send(ctx context.Context, rq request) ([]byte, error) {
	for refreshed := false; ; refreshed = true {
		authz := ""
		bearer := ""
		if !rq.noAuth {
			if c.oauth != nil {
				tok, err := c.oauth.token(ctx)
				if err != nil {
					return nil, err
				}
				bearer = tok
				authz = "bearer " + tok
			} else {
				authz = "token " + c.apiToken
			}
		}
		status, hdr, body, err := c.roundTrip(ctx, rq, authz)
		if err != nil {
			return nil, err
		}
		if status == http.StatusUnauthorized && bearer != "" && !refreshed {
			// The cached access token may have been revoked or may have
			// expired early by the server's clock. A 401 means the request
			// was not applied, so repeating even a POST is safe.
			c.log.Debug("access token rejected, fetching a new one", "method", rq.method, "path", c.basePath+rq.path)
			c.oauth.invalidate(bearer)
			continue
		}
		if status < 200 || status > 299 {
			return nil, c.apiError(rq, status, hdr, body)
		}
		return body, nil
	}
}

func (c *Client) roundTrip(ctx context.Context, rq request, authz string) (int, http.Header, []byte, error) {
	path := c.basePath + rq.path
	target := c.origin + path
	if len(rq.query) > 0 {
		target += "?" + rq.query.Encode()
	}
	resp, err := c.retry.Do(ctx, c.http, rq.idempotent, func(ctx context.Context) (*http.Request, error) { //nolint:bodyclose // closed by httpx.ReadBody
		var body io.Reader
		if rq.body != nil {
			body = bytes.NewReader(rq.body)
		}
		req, err := http.NewRequestWithContext(ctx, rq.method, target, body)
		if err != nil {
			// The URL is built from validated parts; never echo it anyway.
			return nil, fmt.Errorf("snyk: %s %s: building request failed", rq.method, path)
		}
		if authz != "" {
			req.Header.Set("Authorization", authz)
		}
		if rq.contentType != "" {
			req.Header.Set("Content-Type", rq.contentType)
		}
		if rq.accept != "" {
			req.Header.Set("Accept", rq.accept)
		}
		req.Header.Set("User-Agent", userAgent)
		if rq.onAttempt != nil {
			rq.onAttempt()
		}
		c.log.Trace("snyk request", "method", rq.method, "path", path)
		return req, nil
	})
	if err != nil {
		if ctx.Err() != nil && errors.Is(err, ctx.Err()) {
			return 0, nil, nil, fmt.Errorf("snyk: %s %s: %w", rq.method, path, err)
		}
		// httpx already names the method and path, and keeps
		// ErrOutcomeUnknown in the chain for non-idempotent calls.
		return 0, nil, nil, fmt.Errorf("snyk: %w", err)
	}
	data, err := httpx.ReadBody(resp, maxResponseBody)
	c.log.Debug("snyk response", "method", rq.method, "path", path, "status", resp.StatusCode)
	if err != nil {
		if rq.idempotent {
			return 0, nil, nil, fmt.Errorf("snyk: %s %s: reading response: %w", rq.method, path, scrub(err))
		}
		// The upstream answered, so a POST was (or was not) applied, but
		// whatever it returned (a provisional token, say) is lost.
		return 0, nil, nil, fmt.Errorf("snyk: %s %s: reading response: %w: %w", rq.method, path, httpx.ErrOutcomeUnknown, scrub(err))
	}
	return resp.StatusCode, resp.Header, data, nil
}

// badResponse reports a 2xx response the client cannot use. For a POST the
// action has happened upstream, so the outcome is as good as unknown.
func (c *Client) badResponse(rq request, what string) error {
	path := c.basePath + rq.path
	if rq.idempotent {
		return fmt.Errorf("snyk: %s %s: %s", rq.method, path, what)
	}
	return fmt.Errorf("snyk: %s %s: %s: %w", rq.method, path, what, httpx.ErrOutcomeUnknown)
}

// scrub drops the URL a *url.Error carries (it may hold a query string).
func scrub(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}

// redact removes the client's own secrets from an upstream message.
func (c *Client) redact(msg string) string {
	secrets := c.secrets
	if c.oauth != nil {
		if t := c.oauth.cached(); t != "" {
			secrets = append(secrets[:len(secrets):len(secrets)], t)
		}
	}
	for _, s := range secrets {
		msg = strings.ReplaceAll(msg, s, "[redacted]")
	}
	return msg
}

// seg escapes one path segment; IDs are UUIDs, but types and IDs come from
// operators and must not be able to change the path.
func seg(s string) string { return url.PathEscape(s) }

func required(name, value string) error {
	if strings.TrimSpace(value) == "" {
		return fmt.Errorf("snyk: %s is required", name)
	}
	return nil
}
