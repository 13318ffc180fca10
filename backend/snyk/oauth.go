package snyk

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/snyk-vault/vault-plugin-secrets-snyk/backend/httpx"
)

// maxRefreshMargin is how long before expiry a cached access token is
// replaced at most; short-lived tokens use a tenth of their lifetime instead.
const maxRefreshMargin = 60 * time.Second

// tokenSource caches the client-credentials access token. Concurrent callers
// that find it missing or stale share one request to the token endpoint.
type tokenSource struct {
	c            *Client
	clientID     string
	clientSecret string
	now          func() time.Time

	attempts atomic.Int64

	mu        sync.Mutex
	access    string
	refreshAt time.Time
	expiresAt time.Time
	inflight  *tokenFetch
}

type tokenFetch struct {
	done  chan struct{}
	token string
	err   error
}

// AccessTokenFetches returns how many requests the client has sent to the
// OAuth token endpoint (retries included); 0 for an API-token client.
func (c *Client) AccessTokenFetches() int {
	if c.oauth == nil {
		return 0
	}
	return int(c.oauth.attempts.Load())
}

// token returns a usable access token, fetching one when needed.
func (s *tokenSource) token(ctx context.Context) (string, error) {
	s.mu.Lock()
	if s.access != "" && s.now().Before(s.refreshAt) {
		tok := s.access
		s.mu.Unlock()
		return tok, nil
	}
	f := s.inflight
	if f == nil {
		f = &tokenFetch{done: make(chan struct{})}
		s.inflight = f
		// The fetch outlives the caller that started it: other callers wait
		// for it too, and one impatient caller must not fail them all.
		go s.run(context.WithoutCancel(ctx), f)
	}
	s.mu.Unlock()

	select {
	case <-f.done:
		return f.token, f.err
	case <-ctx.Done():
		return "", fmt.Errorf("snyk: waiting for an OAuth access token: %w", ctx.Err())
	}
}

func (s *tokenSource) run(ctx context.Context, f *tokenFetch) {
	start := s.now()
	tok, ttl, err := s.fetch(ctx)

	s.mu.Lock()
	switch {
	case err == nil:
		s.access = tok
		s.expiresAt = start.Add(ttl)
		s.refreshAt = s.expiresAt.Add(-refreshMargin(ttl))
	case s.access != "" && s.now().Before(s.expiresAt):
		// An early refresh failed but the cached token is still valid:
		// keep serving it and try again on the next call.
		s.c.log.Debug("refreshing the OAuth access token failed; using the cached one until it expires")
		tok, err = s.access, nil
	}
	s.inflight = nil
	s.mu.Unlock()

	f.token, f.err = tok, err
	close(f.done)
}

func refreshMargin(ttl time.Duration) time.Duration {
	m := ttl / 10
	if m > maxRefreshMargin {
		m = maxRefreshMargin
	}
	return m
}

// fetch performs the client-credentials grant.
func (s *tokenSource) fetch(ctx context.Context) (string, time.Duration, error) {
	form := url.Values{
		"grant_type":    {"client_credentials"},
		"client_id":     {s.clientID},
		"client_secret": {s.clientSecret},
	}
	rq := request{
		method:      http.MethodPost,
		path:        "/oauth2/token",
		body:        []byte(form.Encode()),
		contentType: "application/x-www-form-urlencoded",
		accept:      "application/json",
		kind:        kindOAuth,
		noAuth:      true,
		onAttempt:   func() { s.attempts.Add(1) },
	}
	body, err := s.c.send(ctx, rq)
	if errors.Is(err, httpx.ErrOutcomeUnknown) {
		// Minting an extra access token is harmless, and leaving the marker
		// in the chain would make the caller believe its own POST (say a
		// provision-token) might have been applied when it was never sent.
		return "", 0, fmt.Errorf("snyk: obtaining an OAuth access token: %s", err.Error())
	}
	if err != nil {
		return "", 0, err
	}
	var out struct {
		AccessToken string  `json:"access_token"`
		ExpiresIn   float64 `json:"expires_in"`
		TokenType   string  `json:"token_type"`
	}
	if json.Unmarshal(body, &out) != nil || out.AccessToken == "" {
		return "", 0, fmt.Errorf("snyk: POST %s/oauth2/token: the response has no access_token", s.c.basePath)
	}
	if out.TokenType != "" && !strings.EqualFold(out.TokenType, "bearer") {
		return "", 0, fmt.Errorf("snyk: POST %s/oauth2/token: unsupported token_type %q", s.c.basePath, out.TokenType)
	}
	ttl := time.Duration(out.ExpiresIn * float64(time.Second))
	if ttl < 0 {
		ttl = 0
	}
	return out.AccessToken, ttl, nil
}

// invalidate drops tok from the cache unless a newer token replaced it.
func (s *tokenSource) invalidate(tok string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.access == tok {
		s.access = ""
		s.refreshAt = time.Time{}
		s.expiresAt = time.Time{}
	}
}

// cached returns the current access token, for redaction only.
func (s *tokenSource) cached() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.access
}
