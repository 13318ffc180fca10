package backend

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/hashicorp/vault/sdk/logical"

	"github.com/snyk-vault/vault-plugin-secrets-snyk/backend/httpx"
	"github.com/snyk-vault/vault-plugin-secrets-snyk/backend/snyk"
)

// provisionMode says who asks for a provisional token; it decides how the
// request budget is spent and what happens when the group's slot is taken.
type provisionMode int

const (
	// provisionScheduled: the rotation loop. Spends the request budget and
	// waits, without polling, behind the integration holding the slot.
	provisionScheduled provisionMode = iota
	// provisionManual: broker/<name>/<scm>/rotate. Never refused for budget;
	// refused when another integration holds the slot.
	provisionManual
	// provisionAdoption: an integration create. Asks Snyk even when the slot
	// looks taken, because the answer also tells whether the integration is
	// brokered at all; releases everything on any failure, since nothing is
	// stored.
	provisionAdoption
)

// provisionResult is what obtainProvisional did.
type provisionResult struct {
	// Obtained: e holds a stored provisional token (just issued, or held
	// already).
	Obtained bool
	// Holder is the integration whose provisional token took the group's
	// slot, when that stopped or may explain this one.
	Holder string
}

// obtainProvisional is the one way a provisional token is obtained: inside
// the integration's lane it reserves the group's slot, writes the WAL entry,
// calls Snyk, stores the token and records the holder. Scheduled provision,
// manual rotation and adoption all go through it, so the reservation is
// always released by the key that made it, on every failure that leaves
// Snyk without a token Vault may hold. The caller holds the integration
// lock.
func (m *rotationManager) obtainProvisional(ctx context.Context, s logical.Storage, client *snyk.Client, cfg *snykConfig, e *integrationEntry, mode provisionMode) (provisionResult, error) {
	if e.ProvisionalToken != "" {
		return provisionResult{Obtained: true}, nil
	}
	key := queueKey(e.Name, e.SCM)
	laneName, err := m.resolveLane(ctx, s, client, cfg, e, mode == provisionScheduled)
	if err != nil {
		if mode != provisionAdoption {
			return provisionResult{}, err
		}
		// A create need not wait for the group: the mount lane, which
		// excludes every other, is always safe; the look-up is retried later.
		m.b.log().Debug("org group look-up deferred", "org_id", e.OrgID, "error", err)
		laneName = laneKey(e)
	}
	l := m.lane(laneName)
	l.busy.Lock()
	defer l.busy.Unlock()

	now := m.b.now()
	holder := m.reserve(laneName, key)
	reserved := holder == ""
	if !reserved {
		switch mode {
		case provisionScheduled:
			h, since, ok := m.wait(laneName, key)
			if !ok {
				return provisionResult{}, errWaitingForLane
			}
			// A due integration never waits without a recorded reason.
			e.LastRotationError = fmt.Sprintf("%s: waiting for %s, which has held the Snyk group's only provisional token since %s, until its switch",
				now.UTC().Format(time.RFC3339), h, since.UTC().Format(time.RFC3339))
			if err := putIntegration(ctx, s, e); err != nil {
				m.b.log().Warn("could not record why an integration waits", "integration", key, "error", err)
			}
			return provisionResult{Holder: h}, errWaitingForLane
		case provisionManual:
			return provisionResult{Holder: holder}, errLaneBusy{holder: holder}
		}
	}

	if mode == provisionScheduled {
		if !m.takeToken(cfg, now) {
			m.release(key)
			return provisionResult{}, errBudgetExhausted
		}
	} else {
		m.chargeToken(cfg, now)
	}

	err = m.b.provision(ctx, s, client, cfg, e)
	if err == nil {
		m.hold(laneName, key)
		return provisionResult{Obtained: true, Holder: holder}, nil
	}
	var notStored *errNotStored
	switch {
	case mode == provisionAdoption:
		// Nothing is stored on a failed create: keeping the slot would wait
		// every other integration of the group on a key that holds nothing.
		if reserved {
			m.release(key)
		}
	case errors.As(err, &notStored):
		// Snyk issued the token: the slot is taken, and the entry that holds
		// the token is stored before anything else happens to it.
		m.keepUnsaved(key, e, notStored)
	case errors.Is(err, httpx.ErrOutcomeUnknown):
		// Snyk may have issued a token: the group's slot is as good as
		// taken, and other integrations would only be refused.
	default:
		m.release(key)
	}
	return provisionResult{Holder: holder}, err
}

// provisionStep obtains the provisional token for a due integration.
func (m *rotationManager) provisionStep(ctx context.Context, s logical.Storage, client *snyk.Client, cfg *snykConfig, e *integrationEntry) error {
	if _, err := m.obtainProvisional(ctx, s, client, cfg, e, provisionScheduled); err != nil {
		return err
	}
	m.b.sendEvent(ctx, eventBrokerProvision, e, "next_switch_at", e.NextVaultRotation.Format(time.RFC3339))
	return nil
}

// switchStep makes the provisional token current and frees the slot, in the
// lane the slot was taken in.
func (m *rotationManager) switchStep(ctx context.Context, s logical.Storage, client *snyk.Client, cfg *snykConfig, e *integrationEntry, key string) error {
	laneName, ok := m.holdsSlot(key)
	if !ok {
		laneName = laneKey(e)
	}
	l := m.lane(laneName)
	l.busy.Lock()
	defer l.busy.Unlock()
	err := m.b.switchToken(ctx, s, client, cfg, e)
	var notStored *errNotStored
	switch {
	case errors.As(err, &notStored):
		// Snyk switched: its group slot is free. The entry that records the
		// switch is stored before anything else happens to it.
		m.keepUnsaved(key, e, notStored)
	case err != nil:
		return err
	}
	m.release(key)
	m.b.sendEvent(ctx, eventBrokerSwitch, e, "next_vault_rotation", e.NextVaultRotation.Format(time.RFC3339))
	return err
}

// rotateNow is the manual rotation: provision (unless a provisional token is
// held) and switch at once, through the same lanes and locks as the engine.
// The caller holds the integration lock.
func (b *backend) rotateNow(ctx context.Context, s logical.Storage, client *snyk.Client, cfg *snykConfig, e *integrationEntry) error {
	m := b.rotation
	key := queueKey(e.Name, e.SCM)
	err := func() error {
		if !e.GroupResolved {
			// Learn the group now (an adoption may have been made while the
			// look-up failed), so later rotations leave the mount-wide lane.
			// The slot already held stays where it was taken.
			if _, err := m.resolveLane(ctx, s, client, cfg, e, false); err != nil {
				b.log().Debug("org group look-up deferred", "org_id", e.OrgID, "error", err)
			}
		}
		if e.ProvisionalToken == "" {
			if _, err := m.obtainProvisional(ctx, s, client, cfg, e, provisionManual); err != nil {
				return err
			}
			b.sendEvent(ctx, eventBrokerProvision, e, "manual", "true")
		}
		m.chargeToken(cfg, b.now())
		return m.switchStep(ctx, s, client, cfg, e, key)
	}()
	var busy errLaneBusy
	var notStored *errNotStored
	switch {
	case err == nil, errors.As(err, &busy):
	case errors.As(err, &notStored):
		// Kept in memory and stored by the next tick or request; recording
		// the failure now would overwrite it with a stale copy.
		b.log().Error("manual Broker token rotation could not store its result", "integration", key, "error", err)
		m.pushAt(key, b.now().Add(firstFailureBackoff))
		return err
	default:
		now := b.now().UTC()
		e.LastRotationError = fmt.Sprintf("%s: manual rotation failed: %v", now.Format(time.RFC3339), err)
		if e.ProvisionalToken != "" {
			// The switch is owed: the engine retries it with back-off
			// rather than at the next scheduled time.
			e.backOff(now)
		}
		if putErr := putIntegration(context.WithoutCancel(ctx), s, e); putErr != nil {
			b.log().Error("could not record the rotation error", "integration", key, "error", putErr)
		}
		b.sendEvent(ctx, eventBrokerRotateFail, e, "error", err.Error())
	}
	if err != nil {
		b.log().Error("manual Broker token rotation failed", "integration", key, "integration_id", e.IntegrationID, "error", err)
	}
	m.schedule(e, cfg)
	return err
}

// recordFailure stores the error on the integration, backs off and requeues.
// It never loops: every failure pushes the next attempt into the future.
func (m *rotationManager) recordFailure(ctx context.Context, s logical.Storage, cfg *snykConfig, e *integrationEntry, err error) {
	b := m.b
	now := b.now().UTC()
	key := queueKey(e.Name, e.SCM)
	var msg string
	switch {
	case snyk.StatusOf(err) == http.StatusTooManyRequests:
		// Snyk keeps answering 429 while requests continue: stop every
		// background call for the window instead of retrying into it.
		e.RetryAt = m.pauseFor429(now)
		msg = fmt.Sprintf("Snyk rate limit (429): background rotations paused until %s", e.RetryAt.Format(time.RFC3339))
	case e.ProvisionalToken == "" && snyk.Classify(snyk.OpProvision, err) == snyk.RefusalProvisionalConflict:
		e.Failures++
		e.RetryAt = now.Add(blockedGroupBackoff)
		msg = fmt.Sprintf("BLOCKED: Snyk refuses a new provisional token because one already exists in the org's group and Vault does not hold it "+
			"(Snyk has no API to read or cancel it). Every Broker token rotation in the group is blocked until it is switched: "+
			"find the integration holding it (Snyk UI) and switch it, then rotate this one. Retrying at %s. Snyk said: %v", e.RetryAt.Format(time.RFC3339), err)
		b.log().Error("rotation blocked by a provisional token Vault does not hold", "integration", key, "org_id", e.OrgID, "group_id", e.GroupID)
	default:
		e.backOff(now)
		step := "provision"
		if e.ProvisionalToken != "" {
			step = "switch"
		}
		msg = fmt.Sprintf("%s failed (attempt %d, next at %s): %v", step, e.Failures, e.RetryAt.Format(time.RFC3339), err)
		if e.ProvisionalToken == "" {
			switch snyk.Classify(snyk.OpProvision, err) {
			case snyk.RefusalNotBrokered:
				msg += "; Snyk says the integration is not brokered: Broker may have been disabled outside Vault, and Vault never enables it during a rotation " +
					"(delete and create the integration in Vault to enable Broker again)"
			case snyk.RefusalUnknown:
				msg += "; Vault cannot read this answer (Snyk documents none for provision-token), so it obtained nothing and retries"
			}
		}
	}
	e.LastRotationError = now.Format(time.RFC3339) + ": " + msg
	if perr := putIntegration(context.WithoutCancel(ctx), s, e); perr != nil {
		b.log().Error("rotation: could not record the failure", "integration", key, "error", perr)
	}
	b.log().Error("Broker token rotation step failed", "integration", key, "integration_id", e.IntegrationID, "error", err, "retry_at", e.RetryAt)
	b.sendEvent(ctx, eventBrokerRotateFail, e, "error", msg)
	m.schedule(e, cfg)
}
