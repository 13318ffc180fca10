package backend

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/hashicorp/vault/sdk/logical"

	"github.com/snyk-vault/vault-plugin-secrets-snyk/backend/httpx"
	"github.com/snyk-vault/vault-plugin-secrets-snyk/backend/scm"
)

// GitLab PAT self-rotation, opt-in per integration (scm_token_auto_rotate).
// GitLab's POST /personal_access_tokens/self/rotate revokes the old token at
// once and shows the new one only in its answer; using a rotated token again
// revokes the whole token family. So the call is made once, under a WAL
// entry, and the new token is stored before anything else; an answer that
// was lost is never retried (the stored token may be dead, and a retry with
// it would revoke the family): the operator is told to write a new token.

//nolint:gosec // names that contain "token", not credentials
const (
	walKindSCMRotate         = "scm-rotate"
	scmRotatePrefix          = "scm-rotate|"
	eventSCMTokenRotated     = "snyk/scm-token-rotated"
	defaultSCMRotateBefore   = 168 * time.Hour
	rotatedSCMTokenLifetime  = 90 * 24 * time.Hour // Snyk advises rotating every Broker credential every 90 days
	scmRotateThrottleBackoff = 10 * time.Minute
)

func scmRotateKey(key string) string { return scmRotatePrefix + key }

func (e *integrationEntry) scmRotateBefore() time.Duration {
	if e.SCMRotateBeforeExpiry > 0 {
		return e.SCMRotateBeforeExpiry
	}
	return defaultSCMRotateBefore
}

// nextSCMRotation is when the SCM token is rotated, if it will be: its
// expiry minus scm_rotate_before_expiry; and when a Broker switch is
// scheduled between then and a day before the expiry, at that switch, so
// that the Broker client restarts once for both.
func (e *integrationEntry) nextSCMRotation() (time.Time, bool) {
	if !e.SCMTokenAutoRotate || e.SCMTokenExpiresAt.IsZero() || e.SCMRotationError != "" {
		return time.Time{}, false
	}
	at := e.SCMTokenExpiresAt.Add(-e.scmRotateBefore())
	if sw := e.NextVaultRotation; !sw.IsZero() && sw.After(at) && sw.Before(e.SCMTokenExpiresAt.Add(-24*time.Hour)) {
		at = sw
	}
	return at, true
}

// processSCMRotate rotates a GitLab token when it is due.
func (m *rotationManager) processSCMRotate(ctx context.Context, s logical.Storage, key string) {
	b := m.b
	name, kind := splitQueueKey(key)
	unlock := b.lockIntegration(name, kind)
	defer unlock()
	now := b.now().UTC()
	e, cfg, ok := m.loadForSCMTask(ctx, s, key, scmRotateKey(key), now)
	if !ok {
		return
	}
	at, ok := e.nextSCMRotation()
	if !ok {
		return
	}
	if now.Before(at) {
		m.pushAt(scmRotateKey(key), at)
		return
	}
	// A rotation whose answer was lost and is not settled yet (its WAL
	// entry is still there, say because recording the failure failed) must
	// never be sent again: the stored token may be revoked, and using it
	// would revoke the whole family.
	if pending, err := b.walPending(ctx, s, walKindSCMRotate, e); err != nil || pending {
		if pending {
			b.log().Error("a GitLab token rotation of this integration is unsettled; not rotating again", "integration", key)
		}
		m.pushAt(scmRotateKey(key), now.Add(scmRotateThrottleBackoff))
		return
	}
	if !m.takeSCMToken(cfg, now) {
		m.pushAt(scmRotateKey(key), now.Add(m.tokenWait(cfg)))
		return
	}
	if err := b.rotateSCMToken(ctx, s, cfg, e); err != nil {
		var notStored *errNotStored
		switch {
		case errors.As(err, &notStored):
			// Kept in memory; the next pass stores it before anything else
			// and schedules the next rotation from it.
			m.keepUnsaved(key, e, notStored)
			m.pushAt(scmRotateKey(key), now.Add(firstFailureBackoff))
		case errors.Is(err, errSCMRotateThrottled):
			m.pushAt(scmRotateKey(key), now.Add(scmRotateThrottleBackoff))
		case errors.Is(err, errSCMRotateRecorded):
			// Refused or lost: recorded on the integration; not retried
			// until a new scm_token is written.
			b.log().Error("GitLab token rotation failed", "integration", key, "error", err)
		default:
			// Nothing was sent to GitLab (storage, configuration): retry.
			b.log().Error("GitLab token rotation could not start", "integration", key, "error", err)
			m.pushAt(scmRotateKey(key), now.Add(firstFailureBackoff))
		}
		return
	}
	m.schedule(e, cfg)
}

var errSCMRotateThrottled = errors.New("gitlab throttled the rotation; it was not applied")

// errSCMRotateRecorded wraps a rotation GitLab refused or whose answer was
// lost: recorded on the integration as scm_rotation_error.
var errSCMRotateRecorded = errors.New("recorded on the integration")

// rotateSCMToken rotates e's GitLab token and stores the new one before
// anything else. The caller holds the integration lock.
func (b *backend) rotateSCMToken(ctx context.Context, s logical.Storage, cfg *snykConfig, e *integrationEntry) error {
	v, err := b.scmValidator(cfg, e.SCM)
	if err != nil {
		return err
	}
	walID, err := b.putWAL(ctx, s, walKindSCMRotate, e)
	if err != nil {
		return err
	}
	now := b.now().UTC()
	rotated, err := v.RotateGitLabToken(ctx, e.apiURL(), e.SCMToken, now.Add(rotatedSCMTokenLifetime))
	if errors.Is(err, scm.ErrThrottled) {
		b.deleteWAL(ctx, s, walID)
		return errSCMRotateThrottled
	}
	if err != nil {
		lost := errors.Is(err, httpx.ErrOutcomeUnknown)
		if lost {
			e.SCMStatus = scmStatusUnknown
			e.SCMRotationError = fmt.Sprintf("%s: the GitLab token rotation's answer was lost (%v): GitLab may have revoked the stored token; write a new scm_token (never retried: reusing a rotated token revokes every token of its family)",
				now.Format(time.RFC3339), err)
		} else {
			if errors.Is(err, scm.ErrRotationRefused) && strings.Contains(err.Error(), "401") {
				e.SCMStatus = scmStatusInvalid
			}
			e.SCMRotationError = fmt.Sprintf("%s: GitLab did not rotate the token: %v", now.Format(time.RFC3339), err)
		}
		e.SCMProblems = append(e.SCMProblems, e.SCMRotationError)
		if perr := putIntegration(context.WithoutCancel(ctx), s, e); perr != nil {
			// The WAL entry stays: while it is there nothing rotates again.
			b.log().Error("could not record a failed GitLab token rotation", "error", perr)
		} else {
			// Recorded: scm_rotation_error now stops further attempts, and
			// recovery has nothing to add.
			b.deleteWAL(ctx, s, walID)
		}
		return fmt.Errorf("%w: %w", errSCMRotateRecorded, err)
	}
	e.SCMToken = rotated.Token
	e.SCMTokenExpiresAt = rotated.ExpiresAt
	e.SCMRotatedAt = now
	e.SCMRotationError = ""
	e.SCMCheckedAt, e.SCMStatus, e.SCMProblems = now, scmStatusOK, nil
	if err := b.persistObtained(ctx, s, walKindSCMRotate, e); err != nil {
		return err
	}
	b.deleteWAL(ctx, s, walID)
	b.log().Info("rotated the GitLab token", "name", e.Name, "scm", e.SCM, "expires_at", rotated.ExpiresAt)
	b.sendEvent(ctx, eventSCMTokenRotated, e, "expires_at", rotated.ExpiresAt.Format(time.RFC3339))
	return nil
}
