package backend

import "time"

// budget is a token bucket of Snyk requests for the whole mount, refilled
// continuously at the configured rate per minute. It keeps a storm of due
// rotations below Snyk's rate limit instead of discovering it through 429s.
func (m *rotationManager) takeToken(cfg *snykConfig, now time.Time) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.refillLocked(cfg, now)
	if m.tokens < 1 {
		return false
	}
	m.tokens--
	return true
}

// chargeToken spends a token even into debt: manual rotations are never
// refused for budget, but the background work pays for them.
func (m *rotationManager) chargeToken(cfg *snykConfig, now time.Time) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.refillLocked(cfg, now)
	m.tokens--
}

func (m *rotationManager) refillLocked(cfg *snykConfig, now time.Time) {
	perMinute := float64(cfg.rotationBudget())
	burst := perMinute / 60
	if burst < 1 {
		burst = 1
	}
	if m.refilledAt.IsZero() {
		m.tokens, m.refilledAt = burst, now
		return
	}
	if elapsed := now.Sub(m.refilledAt); elapsed > 0 {
		m.tokens += elapsed.Minutes() * perMinute
		if m.tokens > burst {
			m.tokens = burst
		}
		m.refilledAt = now
	}
}

// tokenWait is roughly how long until the next token.
func (m *rotationManager) tokenWait(cfg *snykConfig) time.Duration {
	return time.Duration(float64(time.Minute) / float64(cfg.rotationBudget()))
}
