package backend

import (
	"context"
	"fmt"
	"time"

	"github.com/hashicorp/vault/sdk/logical"
)

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
	case walKindSCMRotate:
		// About the SCM token, not a Broker rotation: reported with it.
		kept.SCMProblems = append(kept.SCMProblems, fmt.Sprintf("%s: GitLab rotated the SCM token but storing the new one failed (%v); Vault kept it and stored it once storage answered",
			now, cause.err))
	case walKindSwitch:
		kept.LastRotationError = fmt.Sprintf("%s: Snyk switched the token but storing the switch failed (%v); Vault kept it and stored it once storage answered",
			now, cause.err)
	}
	m.unsaved.keep(key, &kept)
	m.b.log().Error("a Snyk result could not be stored; it is kept in memory and stored when storage answers", "integration", key, "step", cause.step, "error", cause.err)
}

// flushUnsaved stores the entry keepUnsaved kept for key, if any. Until it
// succeeds, nothing may act on the stored copy, which the kept one
// supersedes. The caller holds the integration lock.
func (m *rotationManager) flushUnsaved(ctx context.Context, s logical.Storage, key string) error {
	stored, err := m.unsaved.store(ctx, s, key)
	if err != nil {
		return fmt.Errorf("the last Snyk result for %s is not stored yet (storage: %w); retry shortly", key, err)
	}
	if stored {
		m.b.log().Info("stored a Snyk result kept in memory", "integration", key)
	}
	return nil
}

// currentIntegration reads an integration as the engine knows it: a Snyk
// result kept in memory because storage failed is newer than the stored copy.
func (b *backend) currentIntegration(ctx context.Context, s logical.Storage, name, scmKind string) (*integrationEntry, error) {
	if e := b.rotation.unsaved.get(queueKey(name, scmKind)); e != nil {
		return e, nil
	}
	return b.cachedIntegration(ctx, s, name, scmKind)
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
