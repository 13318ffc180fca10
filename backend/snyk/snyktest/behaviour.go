package snyktest

import (
	"math"
	"net/http"
	"strconv"
	"time"
)

// Behaviour selects the fake's answer where Snyk's behaviour is not
// documented (the [unverified] points of the reference), so that tests can
// cover every plausible variant. The zero value means the defaults.
type Behaviour struct {
	// ProvisionConflictStatus answers provision-token while the group
	// already holds a provisional token; 409 by default.
	ProvisionConflictStatus int
	// SwitchWithoutProvisionalStatus answers switch-token when the
	// integration's token has no provisional successor; 400 by default.
	SwitchWithoutProvisionalStatus int
	// NotBrokeredStatus answers provision-token and switch-token on an
	// integration without Broker; 400 by default.
	NotBrokeredStatus int
	// EnableOnBrokered is what PUT {"broker":{"enabled":true}} does on an
	// integration that is already brokered: EnableSameToken (default)
	// returns the current token, EnableNewToken replaces it (breaking running
	// clients), EnableError fails with 409.
	EnableOnBrokered string
	// RateLimitWindow and RateLimitPerWindow, when both > 0, make the fake
	// answer 429 once more than RateLimitPerWindow requests arrive within a
	// window, and keep answering 429 until requests stop for a whole window
	// (so continued requests extend it), as Snyk documents.
	RateLimitWindow    time.Duration
	RateLimitPerWindow int
	// RateLimitRetryAfter sends Retry-After (whole seconds) on those 429s;
	// Snyk does not document it, so test both ways.
	RateLimitRetryAfter bool
}

// EnableOnBrokered values.
const (
	EnableSameToken = "same-token"
	EnableNewToken  = "new-token"
	EnableError     = "error"
)

func (b Behaviour) withDefaults() Behaviour {
	if b.ProvisionConflictStatus == 0 {
		b.ProvisionConflictStatus = http.StatusConflict
	}
	if b.SwitchWithoutProvisionalStatus == 0 {
		b.SwitchWithoutProvisionalStatus = http.StatusBadRequest
	}
	if b.NotBrokeredStatus == 0 {
		b.NotBrokeredStatus = http.StatusBadRequest
	}
	if b.EnableOnBrokered == "" {
		b.EnableOnBrokered = EnableSameToken
	}
	return b
}

// SetBehaviour replaces the behaviour switches; it also resets the rate
// limiter so a new window starts clean.
func (s *Server) SetBehaviour(b Behaviour) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.behaviour = b.withDefaults()
	s.limiter = rateLimiter{}
}

// rateLimiter is one global window: the fake has a handful of users, and a
// per-credential split would only make tests harder to reason about.
type rateLimiter struct {
	windowStart time.Time
	count       int
	limited     bool
	last        time.Time
}

// allow records a request at now and reports whether it may proceed.
func (l *rateLimiter) allow(now time.Time, window time.Duration, perWindow int) bool {
	defer func() { l.last = now }()
	if l.limited {
		if now.Sub(l.last) < window {
			return false
		}
		l.limited = false
		l.windowStart, l.count = now, 0
	}
	if l.windowStart.IsZero() || now.Sub(l.windowStart) >= window {
		l.windowStart, l.count = now, 0
	}
	l.count++
	if l.count > perWindow {
		l.limited = true
		return false
	}
	return true
}

func (s *Server) rateLimited(next http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		b := s.behaviour
		ok := true
		if b.RateLimitWindow > 0 && b.RateLimitPerWindow > 0 {
			ok = s.limiter.allow(s.now(), b.RateLimitWindow, b.RateLimitPerWindow)
		}
		s.mu.Unlock()
		if ok {
			next(w, r)
			return
		}
		if b.RateLimitRetryAfter {
			// Any request before then extends the window, so the honest
			// answer is always one full window.
			secs := int64(math.Ceil(b.RateLimitWindow.Seconds()))
			w.Header().Set("Retry-After", strconv.FormatInt(secs, 10))
		}
		writeJSONBytes(w, http.StatusTooManyRequests, "application/json; charset=utf-8",
			[]byte(`{"code":429,"message":"Too many requests","error":"Too many requests"}`))
	}
}
