package snyk_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	hclog "github.com/hashicorp/go-hclog"

	"github.com/snyk-vault/vault-plugin-secrets-snyk/backend/fault"
	"github.com/snyk-vault/vault-plugin-secrets-snyk/backend/httpx"
	"github.com/snyk-vault/vault-plugin-secrets-snyk/backend/snyk"
	"github.com/snyk-vault/vault-plugin-secrets-snyk/backend/snyk/snyktest"
	"github.com/snyk-vault/vault-plugin-secrets-snyk/backend/tlstest"
)

const (
	testAPIToken     = "3f1d2c4b-5a69-4788-9b0a-1c2d3e4f5a6b"
	testClientID     = "0c9b8a7d-6e5f-4a3b-8c2d-1e0f9a8b7c6d"
	testClientSecret = "snyk_cs_0123456789abcdef_v1"

	groupA    = "11111111-1111-4111-8111-111111111111"
	groupB    = "22222222-2222-4222-8222-222222222222"
	orgA1     = "a1a1a1a1-0000-4000-8000-00000000a1a1"
	orgA2     = "a2a2a2a2-0000-4000-8000-00000000a2a2"
	orgB1     = "b1b1b1b1-0000-4000-8000-00000000b1b1"
	orgNoGrp  = "c0c0c0c0-0000-4000-8000-00000000c0c0"
	orgNoGrp2 = "c1c1c1c1-0000-4000-8000-00000000c1c1"
)

// clock is a settable time source shared by the fake and the client.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: time.Date(2025, 3, 4, 5, 6, 7, 0, time.UTC)} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// sleeper records the retry policy's waits instead of sleeping, and moves
// the shared clock on so that the fake's rate-limit window sees time pass.
type sleeper struct {
	mu    sync.Mutex
	waits []time.Duration
	clock *clock
}

func (s *sleeper) Sleep(ctx context.Context, d time.Duration) error {
	s.mu.Lock()
	s.waits = append(s.waits, d)
	s.mu.Unlock()
	if s.clock != nil {
		s.clock.Advance(d)
	}
	return ctx.Err()
}

func (s *sleeper) Waits() []time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]time.Duration(nil), s.waits...)
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

type seenRequest struct {
	method, path, rawQuery string
	header                 http.Header
}

type env struct {
	t           *testing.T
	fake        *snyktest.Server
	client      *snyk.Client
	cfg         snyk.Config
	sleeper     *sleeper
	clientClock *clock
	serverClock *clock
	logs        *syncBuffer

	mu       sync.Mutex
	requests []seenRequest
	secrets  map[string]bool
}

type envOpts struct {
	oauth bool
	// separateClocks gives the fake its own clock; otherwise both sides
	// share one, which the sleeper advances.
	separateClocks bool
	timeout        time.Duration
	apiToken       string
	clientSecret   string
	retry          func(*httpx.RetryPolicy)
}

func newEnv(t *testing.T, o envOpts) *env {
	t.Helper()
	ca := tlstest.MustNewCA()
	serverClock := newClock()
	clientClock := serverClock
	if o.separateClocks {
		clientClock = newClock()
	}
	fake := snyktest.New(snyktest.Options{
		APITokens:      []string{testAPIToken},
		OAuthClients:   map[string]string{testClientID: testClientSecret},
		AccessTokenTTL: time.Hour,
		Now:            serverClock.Now,
	})
	fake.AddOrg(orgA1, groupA, "Org A1")
	fake.AddOrg(orgA2, groupA, "Org A2")
	fake.AddOrg(orgB1, groupB, "Org B1")
	fake.AddOrg(orgNoGrp, "", "Lonely Org")
	fake.AddOrg(orgNoGrp2, "", "Lonely Org 2")

	e := &env{
		t:           t,
		fake:        fake,
		sleeper:     &sleeper{clock: clientClock},
		clientClock: clientClock,
		serverClock: serverClock,
		logs:        &syncBuffer{},
		secrets:     map[string]bool{testAPIToken: true, testClientSecret: true},
	}
	srv := startTLS(t, ca, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		e.record(r)
		fake.ServeHTTP(w, r)
	}))

	retry := httpx.RetryPolicy{
		MaxAttempts:    4,
		BaseDelay:      100 * time.Millisecond,
		RateLimitDelay: 2 * time.Second,
		MaxDelay:       time.Minute,
		MaxTotalWait:   10 * time.Minute,
		Sleep:          e.sleeper.Sleep,
		Now:            clientClock.Now,
	}
	if o.retry != nil {
		o.retry(&retry)
	}
	cred := snyk.Credential{APIToken: testAPIToken}
	if o.apiToken != "" {
		cred.APIToken = o.apiToken
		e.secrets[o.apiToken] = true
	}
	if o.oauth {
		cred = snyk.Credential{ClientID: testClientID, ClientSecret: testClientSecret}
		if o.clientSecret != "" {
			cred.ClientSecret = o.clientSecret
			e.secrets[o.clientSecret] = true
		}
	}
	timeout := o.timeout
	if timeout == 0 {
		timeout = 5 * time.Second
	}
	e.cfg = snyk.Config{
		APIURL:         srv.URL,
		Credential:     cred,
		CACert:         string(ca.CertPEM),
		RequestTimeout: timeout,
		Retry:          retry,
		Logger:         hclog.New(&hclog.LoggerOptions{Level: hclog.Trace, Output: e.logs}),
		Now:            clientClock.Now,
	}
	var err error
	e.client, err = snyk.NewClient(e.cfg)
	if err != nil {
		t.Fatal(err)
	}
	// Every test doubles as a leak test for the client's log output.
	t.Cleanup(func() {
		logs := e.logs.String()
		for _, s := range e.secretList() {
			if strings.Contains(logs, s) {
				t.Errorf("client log output contains a secret %q:\n%s", s, logs)
			}
		}
	})
	return e
}

// startTLS is tlstest's StartServer with the server's error log silenced:
// connections the transport dials speculatively are cut mid-handshake when
// the server closes, and net/http logs each of those.
func startTLS(t *testing.T, ca *tlstest.CA, h http.Handler) *httptest.Server {
	t.Helper()
	cfg, err := ca.ServerTLSConfig()
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(h)
	srv.TLS = cfg
	srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	srv.StartTLS()
	t.Cleanup(srv.Close)
	return srv
}

func (e *env) record(r *http.Request) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.requests = append(e.requests, seenRequest{method: r.Method, path: r.URL.Path, rawQuery: r.URL.RawQuery, header: r.Header.Clone()})
	if scheme, tok, ok := strings.Cut(r.Header.Get("Authorization"), " "); ok && strings.EqualFold(scheme, "bearer") {
		e.secrets[tok] = true
	}
}

// secret registers a value (a Broker token, say) that must never appear in
// an error or a log line.
func (e *env) secret(vals ...string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, v := range vals {
		if v != "" {
			e.secrets[v] = true
		}
	}
}

func (e *env) secretList() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	out := make([]string, 0, len(e.secrets))
	for s := range e.secrets {
		out = append(out, s)
	}
	return out
}

func (e *env) lastRequest() seenRequest {
	e.mu.Lock()
	defer e.mu.Unlock()
	if len(e.requests) == 0 {
		e.t.Fatal("no request seen")
	}
	return e.requests[len(e.requests)-1]
}

func (e *env) requestsTo(path string) []seenRequest {
	e.mu.Lock()
	defer e.mu.Unlock()
	var out []seenRequest
	for _, r := range e.requests {
		if r.path == path {
			out = append(out, r)
		}
	}
	return out
}

// noLeak fails when err's text holds any known secret.
func (e *env) noLeak(err error) {
	e.t.Helper()
	if err == nil {
		return
	}
	for _, s := range e.secretList() {
		if strings.Contains(err.Error(), s) {
			e.t.Errorf("error %q contains a secret", err)
		}
	}
}

func apiErr(t *testing.T, err error) *snyk.APIError {
	t.Helper()
	var ae *snyk.APIError
	if !errors.As(err, &ae) {
		t.Fatalf("want *snyk.APIError, got %T: %v", err, err)
	}
	return ae
}

func mustBrokered(t *testing.T, e *env, orgID, typ string) (id, token string) {
	t.Helper()
	id, token = e.fake.AddIntegration(orgID, typ, true)
	e.secret(token)
	return id, token
}

func equalWaits(a, b []time.Duration) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func faultBody(status int, body, contentType string) fault.Fault {
	return fault.Fault{Status: status, Body: body, ContentType: contentType, Times: 1}
}
