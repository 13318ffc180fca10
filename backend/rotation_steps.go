package backend

import (
	"context"
	"errors"
	"fmt"
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

// keepUnsaved remembers an entry whose Snyk result could not be stored, with
// a last_rotation_error that names the step, so that it is stored, exactly
// as it is, before anything else happens to the integration.
func (m *rotationManager) keepUnsaved(key string, e *integrationEntry, cause *errNotStored) {
	kept := *e
	now := m.b.now().UTC().Format(time.RFC3339)
	switch cause.step {
	case walKindProvision:
		kept.LastRotationError = fmt.Sprintf("%s: Snyk issued a provisional token but storing it failed (%v); Vault kept it and stored it once storage answered; its switch stays due at %s",
			now, cause.err, kept.NextVaultRotation.UTC().Format(time.RFC3339))
	case walKindSwitch:
		kept.LastRotationError = fmt.Sprintf("%s: Snyk switched the token but storing the switch failed (%v); Vault kept it and stored it once storage answered",
			now, cause.err)
	}
	m.mu.Lock()
	m.unsaved[key] = &kept
	m.mu.Unlock()
	m.b.log().Error("a Snyk result could not be stored; it is kept in memory and stored when storage answers", "integration", key, "step", cause.step, "error", cause.err)
}

// flushUnsaved stores the entry keepUnsaved kept for key, if any. Until it
// succeeds, nothing may act on the stored copy, which the kept one
// supersedes. The caller holds the integration lock.
func (m *rotationManager) flushUnsaved(ctx context.Context, s logical.Storage, key string) error {
	m.mu.Lock()
	e := m.unsaved[key]
	m.mu.Unlock()
	if e == nil {
		return nil
	}
	if err := putIntegration(ctx, s, e); err != nil {
		return fmt.Errorf("the last Snyk result for %s is not stored yet (storage: %w); retry shortly", key, err)
	}
	m.mu.Lock()
	if m.unsaved[key] == e {
		delete(m.unsaved, key)
	}
	m.mu.Unlock()
	m.b.log().Info("stored a Snyk result kept in memory", "integration", key)
	return nil
}

// unsavedEntry returns the kept entry for key, for reads: it is newer than
// the stored one.
func (m *rotationManager) unsavedEntry(key string) *integrationEntry {
	m.mu.Lock()
	defer m.mu.Unlock()
	if e := m.unsaved[key]; e != nil {
		c := *e
		return &c
	}
	return nil
}

// currentIntegration reads an integration as the engine knows it: a Snyk
// result kept in memory because storage failed is newer than the stored copy.
func (b *backend) currentIntegration(ctx context.Context, s logical.Storage, name, scmKind string) (*integrationEntry, error) {
	if e := b.rotation.unsavedEntry(queueKey(name, scmKind)); e != nil {
		return e, nil
	}
	return getIntegration(ctx, s, name, scmKind)
}

// integrationForWrite reads an integration for a write, after storing any
// kept Snyk result, so that the write never starts from a stale copy. The
// caller holds the integration lock.
func (b *backend) integrationForWrite(ctx context.Context, s logical.Storage, name, scmKind string) (*integrationEntry, error) {
	if err := b.rotation.flushUnsaved(ctx, s, queueKey(name, scmKind)); err != nil {
		return nil, err
	}
	return getIntegration(ctx, s, name, scmKind)
}
