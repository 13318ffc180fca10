package backend

import (
	"time"

	"golang.org/x/time/rate"
)

// The request budget: a token bucket of Snyk requests for the whole mount,
// refilled continuously at the configured rate per minute, and the pause
// after a 429. It keeps a storm of due rotations below Snyk's rate limit
// instead of discovering it through 429s; and once Snyk answers 429, it
// stops every background call for Snyk's window, because Snyk keeps
// answering 429 while requests continue. The limiter is read at the engine's
// clock (the At/N methods), so tests drive it with a fake one.

// limiterLocked returns the Snyk budget's limiter for cfg's rate.
// The caller holds m.mu.
func (m *rotationManager) limiterLocked(cfg *snykConfig, now time.Time) *rate.Limiter {
	return configuredLimiter(&m.limiter, cfg, now)
}

// configuredLimiter creates *l at cfg's rate, or adjusts it when the
// configured rate changed.
func configuredLimiter(l **rate.Limiter, cfg *snykConfig, now time.Time) *rate.Limiter {
	perMinute := cfg.rotationBudget()
	limit := rate.Limit(float64(perMinute) / 60)
	burst := max(1, perMinute/60)
	switch {
	case *l == nil:
		*l = rate.NewLimiter(limit, burst)
		(*l).AllowN(now, 0) // start the bucket's clock at the engine's time
	case (*l).Limit() != limit || (*l).Burst() != burst:
		(*l).SetLimitAt(now, limit)
		(*l).SetBurstAt(now, burst)
	}
	return *l
}

// takeSCMToken spends one request of the SCM checks' budget: the same rate
// as Snyk's, in a bucket of its own, since the checks call the SCMs and must
// never slow a rotation.
func (m *rotationManager) takeSCMToken(cfg *snykConfig, now time.Time) bool {
	return m.takeSCMTokens(cfg, now, 1)
}

// takeSCMTokens spends n requests of the SCM checks' budget at once, or
// none (n capped at the bucket's size).
func (m *rotationManager) takeSCMTokens(cfg *snykConfig, now time.Time, n int) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	l := configuredLimiter(&m.scmLimiter, cfg, now)
	return l.AllowN(now, min(n, l.Burst()))
}

// takeToken spends one request of the budget, if there is one.
func (m *rotationManager) takeToken(cfg *snykConfig, now time.Time) bool {
	return m.takeTokens(cfg, now, 1)
}

// takeTokens spends n requests of the budget at once, or none. n is capped
// at the bucket's size: a larger n could never be granted.
func (m *rotationManager) takeTokens(cfg *snykConfig, now time.Time, n int) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	l := m.limiterLocked(cfg, now)
	return l.AllowN(now, min(n, l.Burst()))
}

// chargeToken spends a request even into debt: manual rotations are never
// refused for budget, but the background work pays for them.
func (m *rotationManager) chargeToken(cfg *snykConfig, now time.Time) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.limiterLocked(cfg, now).ReserveN(now, 1)
}

// tokensLocked is how many requests the budget holds now (negative in
// debt). The caller holds m.mu.
func (m *rotationManager) tokensLocked(cfg *snykConfig, now time.Time) float64 {
	return m.limiterLocked(cfg, now).TokensAt(now)
}

// tokenWait is roughly how long until the next request is in the budget.
func (m *rotationManager) tokenWait(cfg *snykConfig) time.Duration {
	return time.Duration(float64(time.Minute) / float64(cfg.rotationBudget()))
}

// pauseFor429 stops every background call until Snyk's rate-limit window
// has passed.
func (m *rotationManager) pauseFor429(now time.Time) time.Time {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.pausedUntil = now.Add(rateLimitPause)
	return m.pausedUntil
}
