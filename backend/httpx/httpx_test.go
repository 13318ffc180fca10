package httpx

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/snyk-vault/vault-plugin-secrets-snyk/backend/tlstest"
)

// fakeSleeper records the waits instead of spending them, and reads the
// time from a fixed clock.
type fakeSleeper struct {
	mu    sync.Mutex
	waits []time.Duration
}

func (f *fakeSleeper) sleep(ctx context.Context, d time.Duration) error {
	f.mu.Lock()
	f.waits = append(f.waits, d)
	f.mu.Unlock()
	return ctx.Err()
}

var clock = time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)

// script answers requests from a list of (status, Retry-After) steps, the
// last one repeated, and counts them.
type script struct {
	mu    sync.Mutex
	steps []step
	calls int
}

type step struct {
	status     int
	retryAfter string
}

func (s *script) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	i := s.calls
	if i >= len(s.steps) {
		i = len(s.steps) - 1
	}
	st := s.steps[i]
	s.calls++
	s.mu.Unlock()
	_, _ = io.Copy(io.Discard, r.Body)
	if st.retryAfter != "" {
		w.Header().Set("Retry-After", st.retryAfter)
	}
	w.WriteHeader(st.status)
}

func (s *script) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.calls
}

func get(url string) func(context.Context) (*http.Request, error) {
	return func(ctx context.Context) (*http.Request, error) {
		return http.NewRequestWithContext(ctx, http.MethodPost, url, strings.NewReader("{}"))
	}
}

func TestDoRetries(t *testing.T) {
	cases := []struct {
		name       string
		policy     RetryPolicy
		idempotent bool
		steps      []step
		wantCalls  int
		wantStatus int
		wantWaits  []time.Duration
		wantErr    error
	}{
		{
			name:   "a policy with only MaxAttempts still retries (zero fields are defaults)",
			policy: RetryPolicy{MaxAttempts: 5}, idempotent: true,
			steps:     []step{{503, ""}, {503, ""}, {200, ""}},
			wantCalls: 3, wantStatus: 200, wantWaits: []time.Duration{500 * time.Millisecond, time.Second},
		},
		{
			name:   "negative MaxTotalWait: one attempt",
			policy: RetryPolicy{MaxAttempts: 5, MaxTotalWait: -1}, idempotent: true,
			steps:     []step{{503, ""}, {200, ""}},
			wantCalls: 1, wantStatus: 503,
		},
		{
			name:   "Retry-After in seconds is honoured",
			policy: RetryPolicy{MaxAttempts: 3}, idempotent: true,
			steps:     []step{{429, "7"}, {200, ""}},
			wantCalls: 2, wantStatus: 200, wantWaits: []time.Duration{7 * time.Second},
		},
		{
			name:   "fractional Retry-After",
			policy: RetryPolicy{MaxAttempts: 3}, idempotent: true,
			steps:     []step{{429, "1.5"}, {200, ""}},
			wantCalls: 2, wantStatus: 200, wantWaits: []time.Duration{1500 * time.Millisecond},
		},
		{
			name:   "negative Retry-After falls back to the 429 back-off",
			policy: RetryPolicy{MaxAttempts: 3, RateLimitDelay: 2 * time.Second}, idempotent: true,
			steps:     []step{{429, "-5"}, {200, ""}},
			wantCalls: 2, wantStatus: 200, wantWaits: []time.Duration{2 * time.Second},
		},
		{
			name:   "garbage Retry-After falls back to the 429 back-off",
			policy: RetryPolicy{MaxAttempts: 3, RateLimitDelay: 2 * time.Second}, idempotent: true,
			steps:     []step{{429, "soon"}, {200, ""}},
			wantCalls: 2, wantStatus: 200, wantWaits: []time.Duration{2 * time.Second},
		},
		{
			name:   "HTTP-date Retry-After, read against the policy's clock",
			policy: RetryPolicy{MaxAttempts: 3}, idempotent: true,
			steps:     []step{{503, clock.Add(12 * time.Second).Format(http.TimeFormat)}, {200, ""}},
			wantCalls: 2, wantStatus: 200, wantWaits: []time.Duration{12 * time.Second},
		},
		{
			name:   "a past HTTP-date means now",
			policy: RetryPolicy{MaxAttempts: 3}, idempotent: true,
			steps:     []step{{503, clock.Add(-time.Hour).Format(http.TimeFormat)}, {200, ""}},
			wantCalls: 2, wantStatus: 200, wantWaits: []time.Duration{0},
		},
		{
			name:   "a huge Retry-After is capped by MaxDelay, then by the total budget",
			policy: RetryPolicy{MaxAttempts: 5, MaxDelay: 10 * time.Second, MaxTotalWait: 15 * time.Second}, idempotent: true,
			steps:     []step{{429, "86400"}},
			wantCalls: 2, wantStatus: 429, wantWaits: []time.Duration{10 * time.Second},
		},
		{
			name:   "4xx other than 429 is never retried",
			policy: RetryPolicy{MaxAttempts: 5}, idempotent: true,
			steps:     []step{{404, ""}, {200, ""}},
			wantCalls: 1, wantStatus: 404,
		},
		{
			name:      "a non-idempotent call is retried on 429 and 503 (provably not applied)",
			policy:    RetryPolicy{MaxAttempts: 5},
			steps:     []step{{429, "1"}, {503, "1"}, {200, ""}},
			wantCalls: 3, wantStatus: 200, wantWaits: []time.Duration{time.Second, time.Second},
		},
		{
			name:      "a non-idempotent call is never repeated after another 5xx",
			policy:    RetryPolicy{MaxAttempts: 5},
			steps:     []step{{502, ""}, {200, ""}},
			wantCalls: 1, wantErr: ErrOutcomeUnknown,
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			sc := &script{steps: c.steps}
			srv := httptest.NewServer(sc)
			defer srv.Close()
			sl := &fakeSleeper{}
			p := c.policy
			p.Sleep, p.Now = sl.sleep, func() time.Time { return clock }
			resp, err := p.Do(context.Background(), srv.Client(), c.idempotent, get(srv.URL))
			if c.wantErr != nil {
				if !errors.Is(err, c.wantErr) {
					t.Fatalf("err = %v, want %v", err, c.wantErr)
				}
			} else {
				if err != nil {
					t.Fatal(err)
				}
				resp.Body.Close()
				if resp.StatusCode != c.wantStatus {
					t.Fatalf("status = %d, want %d", resp.StatusCode, c.wantStatus)
				}
			}
			if sc.count() != c.wantCalls {
				t.Fatalf("calls = %d, want %d", sc.count(), c.wantCalls)
			}
			if len(sl.waits) != len(c.wantWaits) {
				t.Fatalf("waits = %v, want %v", sl.waits, c.wantWaits)
			}
			for i := range sl.waits {
				if sl.waits[i] != c.wantWaits[i] {
					t.Fatalf("waits = %v, want %v", sl.waits, c.wantWaits)
				}
			}
		})
	}
}

// TestDoNeverLeftIsKnown: a non-idempotent call that failed before any byte
// was written (nothing listens, or the caller gave up first) provably was not
// applied, so it is not an unknown outcome; one that timed out after sending
// is.
func TestDoNeverLeftIsKnown(t *testing.T) {
	sl := &fakeSleeper{}
	p := RetryPolicy{MaxAttempts: 3, Sleep: sl.sleep, Now: func() time.Time { return clock }}

	// Dial refused: nothing listens on the port.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	_, err = p.Do(context.Background(), &http.Client{}, false, get("http://"+addr+"/x"))
	if err == nil || errors.Is(err, ErrOutcomeUnknown) {
		t.Fatalf("a refused dial is reported as %v, want a known failure", err)
	}

	// Cancelled before sending.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err = p.Do(ctx, &http.Client{}, false, get("http://"+addr+"/x"))
	if err == nil || errors.Is(err, ErrOutcomeUnknown) {
		t.Fatalf("a call cancelled before sending is reported as %v, want a known failure", err)
	}

	// Timed out after sending: unknown.
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { <-release }))
	defer srv.Close()
	defer close(release)
	client := srv.Client()
	client.Timeout = 100 * time.Millisecond
	_, err = p.Do(context.Background(), client, false, get(srv.URL))
	if !errors.Is(err, ErrOutcomeUnknown) {
		t.Fatalf("a call that timed out after sending is reported as %v, want an unknown outcome", err)
	}
}

// TestClientNeverFollowsRedirects: a redirect (Azure's sign-in page, an
// http:// downgrade) surfaces as the 3xx itself, with the credential never
// sent to the new location.
func TestClientNeverFollowsRedirects(t *testing.T) {
	var followed bool
	target := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { followed = true }))
	defer target.Close()
	origin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, target.URL+"/login", http.StatusFound)
	}))
	defer origin.Close()
	client, err := NewClient("", time.Second)
	if err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequest(http.MethodGet, origin.URL, nil)
	req.Header.Set("Authorization", "token secret")
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusFound || followed {
		t.Fatalf("status %d, followed %v: the redirect was followed", resp.StatusCode, followed)
	}
}

func TestNewClientRejectsABundleWithoutCertificates(t *testing.T) {
	if _, err := NewClient("not a certificate", time.Second); err == nil {
		t.Fatal("a CA bundle without a certificate was accepted")
	}
}

// TestDoGivesUpAtOnceOnARefusedCertificate: an expired, wrong-host or
// unknown-authority certificate is not retried: the next attempt would get
// the same certificate, and the retries would only hold the caller up.
func TestDoGivesUpAtOnceOnARefusedCertificate(t *testing.T) {
	ca := tlstest.MustNewCA()
	for name, opts := range map[string]tlstest.CertificateOptions{
		"expired":    {Hosts: []string{"127.0.0.1"}, Expired: true},
		"wrong host": {Hosts: []string{"elsewhere.invalid"}},
	} {
		t.Run(name, func(t *testing.T) {
			cert, err := ca.Certificate(opts)
			if err != nil {
				t.Fatal(err)
			}
			var handshakes atomic.Int32
			srv := httptest.NewUnstartedServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
			srv.TLS = &tls.Config{Certificates: []tls.Certificate{cert}}
			srv.Config.ConnState = func(_ net.Conn, st http.ConnState) {
				if st == http.StateNew {
					handshakes.Add(1)
				}
			}
			srv.StartTLS()
			defer srv.Close()
			client, err := NewClient(string(ca.CertPEM), time.Second)
			if err != nil {
				t.Fatal(err)
			}
			sl := &fakeSleeper{}
			p := RetryPolicy{MaxAttempts: 5, Sleep: sl.sleep, Now: func() time.Time { return clock }}
			_, err = p.Do(context.Background(), client, true, get(srv.URL))
			if err == nil || !strings.Contains(err.Error(), "certificate") {
				t.Fatalf("error %v, want the certificate refusal", err)
			}
			if n := handshakes.Load(); n != 1 || len(sl.waits) != 0 {
				t.Errorf("%d handshakes and %d waits, want one attempt and no retry", n, len(sl.waits))
			}
		})
	}
}
