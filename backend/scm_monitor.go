package backend

import (
	"context"
	"fmt"
	"hash/fnv"
	"strings"
	"time"

	"github.com/hashicorp/vault/sdk/logical"

	"github.com/snyk-vault/vault-plugin-secrets-snyk/backend/scm"
)

// SCM token monitoring. A PAT expires, is revoked or loses a scope without
// telling anyone, and the Broker client then breaks silently. So the
// rotation loop checks every integration's SCM credential again every
// scm_check_period, with the same checks as on create, and records the
// outcome on the integration (scm_status, scm_checked_at, scm_problems),
// where reads, a warning on broker reads and events make it alertable. A
// failing check never stops serving: the old credential may still work.

// SCM statuses.
//
//nolint:gosec // status and event names that contain "token", not credentials
const (
	scmStatusOK       = "ok"
	scmStatusExpiring = "expiring"
	scmStatusInvalid  = "invalid"
	scmStatusUnknown  = "unknown"

	eventSCMTokenExpiring = "snyk/scm-token-expiring"
	eventSCMTokenInvalid  = "snyk/scm-token-invalid"
)

// scmCheckPrefix marks an SCM check in the rotation queue, beside the
// integration's rotation action under its plain key.
const scmCheckPrefix = "scm-check|"

func scmCheckKey(key string) string { return scmCheckPrefix + key }

// scmCheckPeriod is the integration's period, or the config's.
func (e *integrationEntry) scmCheckPeriod(cfg *snykConfig) time.Duration {
	if e.SCMCheckPeriod > 0 {
		return e.SCMCheckPeriod
	}
	return cfg.scmCheckPeriod()
}

// nextSCMCheck is when the credential is checked next: one period after
// the last check, shifted by a stable per-integration share of a tenth of
// the period so that integrations created together do not all check at
// once (the request budget smooths what is left). One never checked (stored
// before monitoring existed, or unchecked) is checked at a stable point of
// the coming period, so that a mount's first checks never come as a burst.
func (e *integrationEntry) nextSCMCheck(cfg *snykConfig, now time.Time) time.Time {
	period := e.scmCheckPeriod(cfg)
	h := fnv.New64a()
	_, _ = h.Write([]byte(e.Name + "/" + e.SCM))
	sum := h.Sum64()
	// offset is a stable point within span, from the integration's name.
	offset := func(span time.Duration) time.Duration {
		if span <= 0 {
			return 0
		}
		return time.Duration(sum % uint64(span)) //nolint:gosec // below span, which is a positive int64
	}
	if e.SCMCheckedAt.IsZero() {
		// A stable slot of the coming period: the slot's phase comes from
		// the integration, its first occurrence from its creation.
		base := e.CreatedAt
		if base.IsZero() || now.Sub(base) > 100*365*24*time.Hour {
			base = now
		}
		slot := base.Add(offset(period))
		if slot.Before(now) {
			slot = slot.Add(now.Sub(slot).Truncate(period) + period)
		}
		return slot
	}
	return e.SCMCheckedAt.Add(period + offset(period/10+1))
}

// scmHealth is an SCM credential's health from its last check: ok,
// expiring, invalid or unknown (never checked, not checkable, or the SCM did
// not answer), the scopes and expiry it saw. A failing check never stops
// serving: the credential may still work. Integrations and Universal Broker
// credentials embed it.
type scmHealth struct {
	SCMScopes         []string  `json:"scm_scopes,omitempty"`
	SCMTokenExpiresAt time.Time `json:"scm_token_expires_at,omitempty"`
	SCMValidatedAt    time.Time `json:"scm_validated_at,omitempty"`
	SCMStatus         string    `json:"scm_status,omitempty"`
	SCMCheckedAt      time.Time `json:"scm_checked_at,omitempty"`
	SCMProblems       []string  `json:"scm_problems,omitempty"`
}

// recordSCMResult sets the SCM status from a check's result.
func (e *scmHealth) recordSCMResult(res scm.Result, now time.Time, warning time.Duration) {
	e.SCMCheckedAt = now
	// A refused token may reveal nothing: keep what the last check saw
	// unless this one saw something.
	if res.Valid || len(res.Scopes) > 0 {
		e.SCMScopes = res.Scopes
	}
	if res.Valid || !res.ExpiresAt.IsZero() {
		e.SCMTokenExpiresAt = res.ExpiresAt
	}
	switch {
	case !res.Valid:
		e.SCMStatus, e.SCMProblems = scmStatusInvalid, append([]string(nil), res.Problems...)
	case !res.ExpiresAt.IsZero() && res.ExpiresAt.Sub(now) < warning:
		e.SCMStatus = scmStatusExpiring
		e.SCMProblems = []string{fmt.Sprintf("the SCM token expires at %s (in %s): replace it (scm_token=…) before then",
			res.ExpiresAt.UTC().Format(time.RFC3339), res.ExpiresAt.Sub(now).Round(time.Minute))}
	default:
		e.SCMStatus, e.SCMProblems = scmStatusOK, nil
	}
	if e.SCMStatus != scmStatusInvalid {
		e.SCMValidatedAt = now
	}
}

// scmStatusData is the SCM status as reads report it.
func (e *integrationEntry) scmStatusData(cfg *snykConfig) map[string]interface{} {
	status := e.SCMStatus
	if status == "" {
		status = scmStatusUnknown
	}
	d := map[string]interface{}{
		"scm_status":       status,
		"scm_checked_at":   timeOrNil(e.SCMCheckedAt),
		"scm_problems":     nonNil(e.SCMProblems),
		"scm_check_period": int64(e.scmCheckPeriod(cfg).Seconds()),
	}
	if e.SCMTokenAutoRotate {
		d["scm_token_auto_rotate"] = true
		d["scm_rotate_before_expiry"] = int64(e.scmRotateBefore().Seconds())
		d["scm_rotated_at"] = timeOrNil(e.SCMRotatedAt)
		if at, ok := e.nextSCMRotation(); ok {
			d["next_scm_rotation"] = at.UTC().Format(time.RFC3339)
		}
		if e.SCMRotationError != "" {
			d["scm_rotation_error"] = e.SCMRotationError
		}
	}
	return d
}

// scmWarning is the warning a broker read carries about the SCM credential,
// "" when there is none.
func (e *integrationEntry) scmWarning() string {
	if e.SCMRotationError != "" {
		return "the SCM token's automatic rotation stopped: " + e.SCMRotationError
	}
	switch e.SCMStatus {
	case scmStatusInvalid:
		return fmt.Sprintf("the SCM credential failed its last check at %s: %s; Vault keeps serving it, but the Broker client may not work until it is replaced",
			e.SCMCheckedAt.UTC().Format(time.RFC3339), strings.Join(e.SCMProblems, "; "))
	case scmStatusExpiring:
		return strings.Join(e.SCMProblems, "; ")
	}
	return ""
}

// scheduleSCMCheck queues the integration's next SCM check (schedule
// queues it too, with the rotation's next action).
func (m *rotationManager) scheduleSCMCheck(e *integrationEntry, cfg *snykConfig) {
	m.pushAt(scmCheckKey(queueKey(e.Name, e.SCM)), e.nextSCMCheck(cfg, m.b.now()))
}

// loadForSCMTask loads an integration and the config for an SCM task (a
// check or a rotation) the caller holds the integration's lock for. When
// either cannot be had, the task is requeued under taskKey (or dropped, if
// the integration is gone) and ok is false.
func (m *rotationManager) loadForSCMTask(ctx context.Context, s logical.Storage, key, taskKey string, now time.Time) (e *integrationEntry, cfg *snykConfig, ok bool) {
	name, kind := splitQueueKey(key)
	if err := m.flushUnsaved(ctx, s, key); err != nil {
		m.pushAt(taskKey, now.Add(firstFailureBackoff))
		return nil, nil, false
	}
	e, err := getIntegration(ctx, s, name, kind)
	if err != nil {
		m.pushAt(taskKey, now.Add(firstFailureBackoff))
		return nil, nil, false
	}
	if e == nil {
		return nil, nil, false
	}
	cfg, err = m.b.config(ctx, s)
	if err != nil || cfg == nil {
		m.pushAt(taskKey, now.Add(configMissingRetry))
		return nil, nil, false
	}
	return e, cfg, true
}

// sameSCMCredential reports whether a and b hold the same SCM credential
// for the same SCM endpoint.
func sameSCMCredential(a, b *integrationEntry) bool {
	return a.SCMToken == b.SCMToken && a.SCMUsername == b.SCMUsername && a.SCMPassword == b.SCMPassword &&
		a.SCMURL == b.SCMURL && a.SCMAPIURL == b.SCMAPIURL && a.AzureOrg == b.AzureOrg
}

// backgroundCheck returns the check a queue key names, if it names one:
// an integration's SCM check or a Universal Broker deployment's check.
func (m *rotationManager) backgroundCheck(ctx context.Context, s logical.Storage, key string) (func(), bool) {
	if integrationKey, ok := strings.CutPrefix(key, scmCheckPrefix); ok {
		return func() { m.processSCMCheck(ctx, s, integrationKey) }, true
	}
	if name, ok := strings.CutPrefix(key, universalCheckPrefix); ok {
		return func() { m.processUniversalCheck(ctx, s, name) }, true
	}
	return nil, false
}

// startSCMChecks starts the checks among due keys in the background and
// returns the rest. A check calls an SCM (or Snyk), which may be slow or
// unreachable for the whole request timeout and its retries: inside the
// tick it would hold up every provision and switch due behind it.
func (m *rotationManager) startSCMChecks(ctx context.Context, s logical.Storage, stopping <-chan struct{}, due []string) []string {
	rest := due[:0:0]
	for _, key := range due {
		check, ok := m.backgroundCheck(ctx, s, key)
		if !ok {
			rest = append(rest, key)
			continue
		}
		m.mu.Lock()
		running := m.checking[key]
		m.checking[key] = true
		m.mu.Unlock()
		if running {
			// The running check queues the next one when it ends, but it
			// may have queued it already, just before it unmarked itself:
			// dropping the key here could lose it. Back in a second.
			m.pushAt(key, m.b.now().Add(time.Second))
			continue
		}
		m.background.Add(1)
		go func() {
			defer m.background.Done()
			defer func() {
				m.mu.Lock()
				delete(m.checking, key)
				m.mu.Unlock()
			}()
			// A stopping mount starts no more checks: the drain waits only
			// for calls already made.
			select {
			case m.checkSlots <- struct{}{}:
			case <-stopping:
				m.pushAt(key, m.b.now())
				return
			case <-ctx.Done():
				m.pushAt(key, m.b.now())
				return
			}
			if isClosed(stopping) {
				<-m.checkSlots
				m.pushAt(key, m.b.now())
				return
			}
			defer func() { <-m.checkSlots }()
			check()
		}()
	}
	return rest
}

// waitSCMChecks waits for the SCM checks started so far (tests drive the
// tick themselves and read the results after it).
func (m *rotationManager) waitSCMChecks() { m.background.Wait() }

// processSCMCheck checks one integration's SCM credential when it is due.
// The SCM is called without the integration's lock, so that a slow SCM
// never holds up a rotation or a write of that integration; the result is
// recorded only if the credential checked is still the stored one.
func (m *rotationManager) processSCMCheck(ctx context.Context, s logical.Storage, key string) {
	b := m.b
	name, kind := splitQueueKey(key)
	unlock := b.lockIntegration(name, kind)
	locked := true
	defer func() {
		if locked {
			unlock()
		}
	}()
	now := b.now().UTC()
	e, cfg, ok := m.loadForSCMTask(ctx, s, key, scmCheckKey(key), now)
	if !ok {
		return
	}
	// A never-checked credential's slot moves on with the clock, so the
	// queue popping it is what makes it due.
	if at := e.nextSCMCheck(cfg, now); !e.SCMCheckedAt.IsZero() && now.Before(at) {
		m.pushAt(scmCheckKey(key), at)
		return
	}
	if !e.SkipSCMValidation && !m.takeSCMToken(cfg, now) {
		m.pushAt(scmCheckKey(key), now.Add(m.tokenWait(cfg)))
		return
	}

	previous := e.SCMStatus
	switch {
	case e.SkipSCMValidation:
		e.SCMCheckedAt, e.SCMStatus = now, scmStatusUnknown
		e.SCMProblems = []string{"skip_scm_validation is set: the SCM credential is not checked"}
	default:
		checked := *e
		unlock()
		locked = false
		res, resp, err := b.checkSCM(ctx, cfg, &checked)
		if ctx.Err() != nil {
			// Cancelled by the mount's stop: the check says nothing; it
			// runs again when the loop does.
			m.pushAt(scmCheckKey(key), b.now())
			return
		}
		unlock = b.lockIntegration(name, kind)
		locked = true
		// Loaded again as at the start: a rotation may have stored (or kept
		// in memory) a newer entry meanwhile.
		if e, _, ok = m.loadForSCMTask(ctx, s, key, scmCheckKey(key), now); !ok {
			return
		}
		if !sameSCMCredential(e, &checked) || !e.SCMCheckedAt.Equal(checked.SCMCheckedAt) || e.SkipSCMValidation != checked.SkipSCMValidation {
			// Written while it was checked (a new credential, a newer
			// check by the write itself, validation switched): this
			// result is stale; check again.
			m.pushAt(scmCheckKey(key), b.now())
			return
		}
		switch {
		case resp != nil:
			e.SCMCheckedAt, e.SCMStatus, e.SCMProblems = now, scmStatusUnknown, []string{resp.Error().Error()}
		case err != nil:
			// The SCM did not answer: nothing is known about the credential.
			e.SCMCheckedAt, e.SCMStatus = now, scmStatusUnknown
			e.SCMProblems = []string{fmt.Sprintf("the SCM could not be reached to check the credential: %v", err)}
		default:
			e.recordSCMResult(res, now, cfg.scmExpiryWarning())
		}
	}
	if err := putIntegration(ctx, s, e); err != nil {
		b.log().Error("could not record an SCM check", "integration", key, "error", err)
		m.pushAt(scmCheckKey(key), now.Add(firstFailureBackoff))
		return
	}
	switch e.SCMStatus {
	case scmStatusInvalid:
		b.log().Warn("an SCM credential failed its check", "integration", key, "problems", strings.Join(e.SCMProblems, "; "))
		b.sendEvent(ctx, eventSCMTokenInvalid, e, "problems", strings.Join(e.SCMProblems, "; "))
	case scmStatusExpiring:
		b.log().Warn("an SCM token expires soon", "integration", key, "expires_at", e.SCMTokenExpiresAt)
		b.sendEvent(ctx, eventSCMTokenExpiring, e, "expires_at", e.SCMTokenExpiresAt.UTC().Format(time.RFC3339))
	default:
		if previous != e.SCMStatus {
			b.log().Info("SCM credential check", "integration", key, "scm_status", e.SCMStatus)
		}
	}
	m.scheduleSCMCheck(e, cfg)
}
