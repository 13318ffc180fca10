package backend

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/hashicorp/vault/sdk/framework"
	"github.com/hashicorp/vault/sdk/logical"
)

// WAL kinds.
const (
	walKindEnable    = "enable-broker"
	walKindProvision = "provision-token"
	walKindSwitch    = "switch-token"
)

// walRollbackMinAge must exceed the longest request (retries included), so
// that the rollback manager never treats an in-flight call as a crash.
const walRollbackMinAge = 10 * time.Minute

type walEntry struct {
	Name          string    `json:"name"`
	SCM           string    `json:"scm"`
	OrgID         string    `json:"org_id"`
	IntegrationID string    `json:"integration_id"`
	StartedAt     time.Time `json:"started_at"`
	// SCMFingerprint identifies the SCM token a GitLab rotation started
	// with, so that recovery leaves alone a token the operator wrote since.
	SCMFingerprint string `json:"scm_fingerprint,omitempty"`
}

func (b *backend) putWAL(ctx context.Context, s logical.Storage, kind string, e *integrationEntry) (string, error) {
	w := &walEntry{Name: e.Name, SCM: e.SCM, OrgID: e.OrgID, IntegrationID: e.IntegrationID, StartedAt: b.now().UTC()}
	if kind == walKindSCMRotate {
		w.SCMFingerprint = fingerprint(e.SCMToken)
	}
	return framework.PutWAL(ctx, s, kind, w)
}

// deleteWAL is best effort: a leftover entry only makes walRollback look at
// an integration that turns out to be consistent.
func (b *backend) deleteWAL(ctx context.Context, s logical.Storage, id string) {
	if err := framework.DeleteWAL(ctx, s, id); err != nil {
		b.log().Warn("could not delete WAL entry", "wal_id", id, "error", err)
	}
}

// enableOutcomeUnknown reports whether an enable-Broker call for e lost its
// answer and has not been reconciled yet (its WAL entry is still there).
func (b *backend) enableOutcomeUnknown(ctx context.Context, s logical.Storage, e *integrationEntry) (bool, error) {
	return b.walPending(ctx, s, walKindEnable, e)
}

// walPending reports whether a call of kind for e left a WAL entry that
// recovery has not read yet.
func (b *backend) walPending(ctx context.Context, s logical.Storage, kind string, e *integrationEntry) (bool, error) {
	ids, err := framework.ListWAL(ctx, s)
	if err != nil {
		return false, err
	}
	for _, id := range ids {
		w, err := framework.GetWAL(ctx, s, id)
		if err != nil {
			return false, err
		}
		if w == nil || w.Kind != kind {
			continue
		}
		var entry walEntry
		if err := mapToStruct(w.Data, &entry); err != nil {
			continue
		}
		if entry.OrgID == e.OrgID && (entry.IntegrationID == e.IntegrationID || (entry.Name == e.Name && entry.SCM == e.SCM)) {
			return true, nil
		}
	}
	return false, nil
}

// walRollback runs for WAL entries that outlived walRollbackMinAge: the
// process died (or storage failed) between a Snyk call and storing its
// result. Nothing upstream can be undone, and a token Snyk returned cannot
// be fetched again, so the job is to make the situation visible on the
// integration and in the log, then drop the entry.
func (b *backend) walRollback(ctx context.Context, req *logical.Request, kind string, data interface{}) error {
	if kind == walKindRotateRoot {
		return b.rotateRootRollback(ctx, req.Storage)
	}
	if kind == walKindServiceAccount {
		return b.serviceAccountRollback(ctx, req.Storage, data)
	}
	if kind == walKindClone {
		return b.cloneRollback(ctx, req.Storage, data)
	}
	if kind == walKindPromote {
		return b.promoteRollback(ctx, req.Storage, data)
	}
	if kind == walKindUniversalSecret {
		return b.universalSecretRollback(ctx, req.Storage, data)
	}
	var w walEntry
	if err := mapToStruct(data, &w); err != nil {
		return err
	}
	unlock := b.lockIntegration(w.Name, w.SCM)
	defer unlock()
	e, err := getIntegration(ctx, req.Storage, w.Name, w.SCM)
	if err != nil {
		return err
	}

	var msg string
	switch kind {
	case walKindProvision:
		if b.rotation.unsaved.get(queueKey(w.Name, w.SCM)) != nil {
			// The token is kept in memory until storage takes it; the entry
			// stays as the record should this process die first.
			return fmt.Errorf("the result of this call is not stored yet")
		}
		if e != nil && (e.ProvisionalToken != "" || e.LastVaultRotation.After(w.StartedAt)) {
			return nil // the token was stored (and maybe switched); only the WAL delete was lost
		}
		msg = "a provision-token call was interrupted; Snyk may hold a provisional token Vault never stored, which blocks rotations in the org's group until it is switched in the Snyk UI"
	case walKindEnable:
		if e != nil && e.servedToken() != "" {
			return nil
		}
		msg = "enabling Broker was interrupted; the integration may now be brokered with a token Vault never stored: write the integration again to adopt it"
	case walKindSCMRotate:
		if b.rotation.unsaved.get(queueKey(w.Name, w.SCM)) != nil {
			return fmt.Errorf("the rotated GitLab token is not stored yet")
		}
		if e == nil || e.SCMRotatedAt.After(w.StartedAt) || fingerprint(e.SCMToken) != w.SCMFingerprint {
			return nil // stored, or replaced by the operator since
		}
		msg = "a GitLab token rotation was interrupted: GitLab may have revoked the stored SCM token and issued one Vault never stored: write a new scm_token"
		e.SCMRotationError = b.now().UTC().Format(time.RFC3339) + ": " + msg
	case walKindSwitch:
		// The switch was sent (or about to be) and its answer is unknown.
		// Recording that on the integration lets the next attempt read a
		// "nothing to switch" answer as "the switch happened"; without the
		// record the same answer keeps the old token served.
		if e == nil || e.ProvisionalToken == "" || e.SwitchOutcomeUnknown || e.ProvisionedAt.After(w.StartedAt) {
			return nil
		}
		e.SwitchOutcomeUnknown = true
		b.log().Warn("a switch-token call was interrupted; its outcome is settled by the next attempt",
			"name", w.Name, "scm", w.SCM, "integration_id", w.IntegrationID, "started_at", w.StartedAt)
		return putIntegration(ctx, req.Storage, e)
	default:
		return nil
	}
	b.log().Warn("interrupted Snyk call", "kind", kind, "name", w.Name, "scm", w.SCM, "integration_id", w.IntegrationID, "started_at", w.StartedAt, "detail", msg)
	if e == nil {
		return nil
	}
	e.LastRotationError = fmt.Sprintf("%s: %s", b.now().UTC().Format(time.RFC3339), msg)
	return putIntegration(ctx, req.Storage, e)
}

// reconcileWALs finishes or reports every call interrupted by a crash,
// among the entries at least minAge old. At initialization (minAge 0) no
// request is in flight yet; a load retried later runs beside requests, whose
// own entries are younger than walRollbackMinAge and must be left alone.
func (b *backend) reconcileWALs(ctx context.Context, s logical.Storage, minAge time.Duration) error {
	ids, err := framework.ListWAL(ctx, s)
	if err != nil {
		return err
	}
	// The WAL's creation time is the wall clock's (framework.PutWAL).
	now := time.Now()
	for _, id := range ids {
		w, err := framework.GetWAL(ctx, s, id)
		if err != nil || w == nil {
			continue
		}
		if minAge > 0 && now.Sub(time.Unix(w.CreatedAt, 0)) < minAge {
			continue
		}
		if err := b.walRollback(ctx, &logical.Request{Storage: s}, w.Kind, w.Data); err != nil {
			b.log().Error("could not reconcile WAL entry", "wal_id", id, "kind", w.Kind, "error", err)
			continue
		}
		b.deleteWAL(ctx, s, id)
	}
	return nil
}

// mapToStruct decodes a WAL's generic data into a typed struct.
func mapToStruct(in interface{}, out interface{}) error {
	raw, err := json.Marshal(in)
	if err != nil {
		return err
	}
	return json.Unmarshal(raw, out)
}

// rotateRootRollback reads an interrupted secret creation of rotate-root:
// unless the new secret was stored (then the next rotation resumes with
// it), Snyk may hold a second secret Vault never saw, and the next create
// may be refused for Snyk's limit of two.
func (b *backend) rotateRootRollback(ctx context.Context, s logical.Storage) error {
	b.configWriteMu.Lock()
	defer b.configWriteMu.Unlock()
	cfg, err := getConfig(ctx, s)
	if err != nil || cfg == nil || cfg.PendingClientSecret != "" {
		return err
	}
	msg := "creating a new client secret was interrupted: the service account may hold a second secret Vault never stored; " +
		"if rotate-root is then refused for Snyk's limit of two secrets, delete the unknown one in Snyk (the one in use is shown by credential_fingerprint)"
	b.log().Warn("interrupted rotate-root", "detail", msg)
	cfg.RootRotationError = b.now().UTC().Format(time.RFC3339) + ": " + msg
	if err := putConfig(ctx, s, cfg); err != nil {
		return err
	}
	b.resetClient()
	return nil
}
