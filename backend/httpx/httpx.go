// Package httpx holds the HTTP plumbing shared by the Snyk client and the SCM
// validators: a TLS client that trusts an operator-supplied CA bundle, and a
// retry loop that honours Retry-After and keeps the total wait bounded.
//
// Nothing here logs a header or a body: callers pass requests that carry
// credentials, and only the method, the URL path and the status are ever logged.
package httpx

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/http/httptrace"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	hclog "github.com/hashicorp/go-hclog"
)

// NewClient returns an HTTP client that trusts the system roots plus the PEM
// bundle in caPEM (which may be empty). timeout bounds each single attempt.
func NewClient(caPEM string, timeout time.Duration) (*http.Client, error) {
	pool, err := x509.SystemCertPool()
	if err != nil || pool == nil {
		pool = x509.NewCertPool()
	}
	if strings.TrimSpace(caPEM) != "" {
		if !pool.AppendCertsFromPEM([]byte(caPEM)) {
			return nil, errors.New("ca_cert contains no PEM-encoded certificate")
		}
	}
	transport := http.DefaultTransport.(*http.Transport).Clone()
	transport.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	// Proxies from the environment stay honoured: a corporate egress proxy is
	// the usual way a Vault cluster reaches Snyk.
	return &http.Client{
		Transport: transport,
		Timeout:   timeout,
		// Never follow a redirect blindly with credentials attached: Azure's
		// sign-in redirects and http:// downgrades must surface as failures.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}, nil
}

// RetryPolicy bounds how often and how long a call is retried.
type RetryPolicy struct {
	// MaxAttempts is the total number of attempts, the first included.
	MaxAttempts int
	// BaseDelay is the first back-off after a 5xx (doubled each time).
	BaseDelay time.Duration
	// RateLimitDelay is the first wait after a 429 that carries no
	// Retry-After. Snyk documents a one-minute window that every further
	// request extends, so this should not be short in production.
	RateLimitDelay time.Duration
	// MaxDelay caps any single wait, Retry-After included.
	MaxDelay time.Duration
	// MaxTotalWait caps the sum of all waits of one call; when the next wait
	// would exceed it, the last response is returned as is. Zero means the
	// default; a negative value means no wait at all (a single attempt).
	MaxTotalWait time.Duration

	// Sleep and Now are injectable for tests.
	Sleep func(ctx context.Context, d time.Duration) error
	Now   func() time.Time
	// Logger receives one debug line per retry (method, path, status, wait).
	Logger hclog.Logger
	// Observe, when set, sees every attempt's status (0 when no answer
	// came), for metrics.
	Observe func(status int)
}

// DefaultRetryPolicy suits interactive Vault requests: a caller waits at most
// about a minute for upstream throttling to clear.
func DefaultRetryPolicy() RetryPolicy {
	return RetryPolicy{
		MaxAttempts:    5,
		BaseDelay:      500 * time.Millisecond,
		RateLimitDelay: 10 * time.Second,
		MaxDelay:       30 * time.Second,
		MaxTotalWait:   60 * time.Second,
	}
}

func (p RetryPolicy) withDefaults() RetryPolicy {
	d := DefaultRetryPolicy()
	if p.MaxAttempts <= 0 {
		p.MaxAttempts = d.MaxAttempts
	}
	if p.BaseDelay <= 0 {
		p.BaseDelay = d.BaseDelay
	}
	if p.RateLimitDelay <= 0 {
		p.RateLimitDelay = d.RateLimitDelay
	}
	if p.MaxDelay <= 0 {
		p.MaxDelay = d.MaxDelay
	}
	switch {
	case p.MaxTotalWait == 0:
		p.MaxTotalWait = d.MaxTotalWait
	case p.MaxTotalWait < 0:
		p.MaxTotalWait = 0
	}
	if p.Sleep == nil {
		p.Sleep = SleepContext
	}
	if p.Now == nil {
		p.Now = time.Now
	}
	if p.Logger == nil {
		p.Logger = hclog.NewNullLogger()
	}
	return p
}

// SleepContext waits for d or until ctx is done.
func SleepContext(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// ErrOutcomeUnknown marks a failure after which the upstream may or may not
// have applied a non-idempotent request (the connection broke or timed out
// after the request was sent). Callers must not blindly repeat such a call.
var ErrOutcomeUnknown = errors.New("upstream outcome unknown")

// Do sends the request built by newReq, retrying on 429 and 5xx responses.
// newReq is called once per attempt because a request body can be read only
// once.
//
// A non-idempotent request (a POST that mints a token) is repeated only when
// the answer proves it was not applied: 429 (rate limited) and 503 (service
// unavailable). Any other 5xx, a transport error or a cancellation after the
// request was sent may have been applied upstream, and a repeat could lose
// what the first attempt created; those return an error wrapping
// ErrOutcomeUnknown instead.
//
// On success or on a non-retryable status the response is returned with its
// body open. When the retry budget runs out, the last 429/5xx response is
// returned (not an error) so the caller can surface the upstream's message.
func (p RetryPolicy) Do(ctx context.Context, client *http.Client, idempotent bool, newReq func(context.Context) (*http.Request, error)) (*http.Response, error) {
	p = p.withDefaults()
	var waited time.Duration
	for attempt := 1; ; attempt++ {
		// sent records whether any of the request reached the connection: a
		// request that failed before (at dial, at the TLS handshake, or
		// cancelled while waiting for a connection) provably never left, and
		// its outcome is known: nothing happened upstream.
		var sent atomic.Bool
		traced := httptrace.WithClientTrace(ctx, &httptrace.ClientTrace{
			WroteHeaderField: func(string, []string) { sent.Store(true) },
			WroteHeaders:     func() { sent.Store(true) },
		})
		req, err := newReq(traced)
		if err != nil {
			return nil, err
		}
		resp, err := client.Do(req)
		if p.Observe != nil {
			status := 0
			if err == nil {
				status = resp.StatusCode
			}
			p.Observe(status)
		}
		if err != nil {
			unknown := !idempotent && sent.Load()
			if ctx.Err() != nil {
				if unknown {
					return nil, fmt.Errorf("%w: %s %s: %w", ErrOutcomeUnknown, req.Method, req.URL.Path, ctx.Err())
				}
				return nil, ctx.Err()
			}
			if unknown {
				return nil, fmt.Errorf("%w: %s %s: %v", ErrOutcomeUnknown, req.Method, req.URL.Path, scrubError(err))
			}
			if isCertificateError(err) {
				// The server's certificate was refused: asking again gets
				// the same certificate, and every retry would hold up the
				// caller (a rotation tick, an SCM check) for nothing.
				return nil, fmt.Errorf("%s %s: %v", req.Method, req.URL.Path, scrubError(err))
			}
			wait := backoff(p.BaseDelay, attempt, p.MaxDelay)
			if attempt >= p.MaxAttempts || waited+wait > p.MaxTotalWait {
				return nil, fmt.Errorf("%s %s: %v", req.Method, req.URL.Path, scrubError(err))
			}
			p.Logger.Debug("retrying after transport error", "method", req.Method, "path", req.URL.Path, "wait", wait)
			if err := p.Sleep(ctx, wait); err != nil {
				return nil, err
			}
			waited += wait
			continue
		}
		if !Retryable(resp.StatusCode) {
			return resp, nil
		}
		if !idempotent && resp.StatusCode != http.StatusTooManyRequests && resp.StatusCode != http.StatusServiceUnavailable {
			_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
			_ = resp.Body.Close() // the answer is already decided; a close error changes nothing
			return nil, fmt.Errorf("%w: %s %s answered %d", ErrOutcomeUnknown, req.Method, req.URL.Path, resp.StatusCode)
		}
		wait, ok := RetryAfter(resp.Header, p.Now())
		if !ok {
			if resp.StatusCode == http.StatusTooManyRequests {
				wait = backoff(p.RateLimitDelay, attempt, p.MaxDelay)
			} else {
				wait = backoff(p.BaseDelay, attempt, p.MaxDelay)
			}
		}
		if wait > p.MaxDelay {
			wait = p.MaxDelay
		}
		if attempt >= p.MaxAttempts || waited+wait > p.MaxTotalWait {
			p.Logger.Debug("giving up retrying", "method", req.Method, "path", req.URL.Path, "status", resp.StatusCode, "attempts", attempt, "waited", waited)
			return resp, nil
		}
		// Drain so the connection can be reused.
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
		_ = resp.Body.Close() // the request is retried; a close error changes nothing
		p.Logger.Debug("retrying", "method", req.Method, "path", req.URL.Path, "status", resp.StatusCode, "wait", wait)
		if err := p.Sleep(ctx, wait); err != nil {
			return nil, err
		}
		waited += wait
	}
}

// isCertificateError reports whether err is the TLS handshake refusing the
// server's certificate (expired, wrong host, unknown authority).
func isCertificateError(err error) bool {
	var verify *tls.CertificateVerificationError
	var hostname x509.HostnameError
	var invalid x509.CertificateInvalidError
	var authority x509.UnknownAuthorityError
	return errors.As(err, &verify) || errors.As(err, &hostname) || errors.As(err, &invalid) || errors.As(err, &authority)
}

// Retryable reports whether a status is worth retrying: rate limiting and
// server-side failures. 4xx errors other than 429 never are.
func Retryable(status int) bool {
	return status == http.StatusTooManyRequests || (status >= 500 && status <= 599)
}

// maxRetryAfterSeconds bounds a Retry-After in seconds (a day): far beyond
// any MaxDelay, and far from overflowing a Duration.
const maxRetryAfterSeconds = 24 * 60 * 60

// RetryAfter parses a Retry-After header given either as delay-seconds or as
// an HTTP date. ok is false when the header is absent or unparseable.
func RetryAfter(h http.Header, now time.Time) (time.Duration, bool) {
	v := strings.TrimSpace(h.Get("Retry-After"))
	if v == "" {
		return 0, false
	}
	if secs, err := strconv.ParseFloat(v, 64); err == nil {
		if secs < 0 || math.IsNaN(secs) {
			return 0, false
		}
		// A huge value (or +Inf) would overflow a Duration into a negative
		// wait; callers cap waits far below this anyway.
		if secs > maxRetryAfterSeconds {
			secs = maxRetryAfterSeconds
		}
		return time.Duration(secs * float64(time.Second)), true
	}
	if t, err := http.ParseTime(v); err == nil {
		d := t.Sub(now)
		if d < 0 {
			d = 0
		}
		return d, true
	}
	return 0, false
}

func backoff(base time.Duration, attempt int, max time.Duration) time.Duration {
	d := base
	for i := 1; i < attempt; i++ {
		d *= 2
		if d >= max {
			return max
		}
	}
	if d > max {
		d = max
	}
	return d
}

// scrubError keeps the error's text but never a URL query (which for some
// SCMs may carry a token); the standard library's url.Error includes the URL.
func scrubError(err error) string {
	var ue interface{ Unwrap() error }
	if errors.As(err, &ue) {
		if inner := ue.Unwrap(); inner != nil {
			return inner.Error()
		}
	}
	return err.Error()
}

// ReadBody reads at most limit bytes of a response body and closes it.
func ReadBody(resp *http.Response, limit int64) ([]byte, error) {
	defer func() { _ = resp.Body.Close() }() // what was read is the answer
	return io.ReadAll(io.LimitReader(resp.Body, limit))
}
