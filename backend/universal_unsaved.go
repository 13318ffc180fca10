package backend

import (
	"context"
	"fmt"
	"time"

	"github.com/hashicorp/vault/sdk/framework"
	"github.com/hashicorp/vault/sdk/logical"
)

// A client secret Snyk created that storage would not take, and that could
// not be deleted at Snyk either, exists only in memory: it is kept here,
// served by reads (it is the newest state), and stored before anything
// else happens to the deployment. Its WAL entry stays until then, as the
// record should the process die first.

// keepUniversal remembers e, whose Snyk result could not be stored.
func (m *rotationManager) keepUniversal(e *universalEntry, cause *errNotStored) {
	kept := *e
	kept.LastRotationError = fmt.Sprintf("%s: Snyk created the next client secret but storing it failed (%v); Vault keeps it and stores it once storage answers",
		m.b.now().UTC().Format(time.RFC3339), cause.err)
	m.unsavedUniversal.keep(e.Name, &kept)
	m.b.log().Error("a client secret Snyk created could not be stored; it is kept in memory and stored when storage answers", "deployment", e.Name, "error", cause.err)
}

// flushUniversal stores the entry keepUniversal kept for name, if any. The
// caller holds the deployment's lock.
func (m *rotationManager) flushUniversal(ctx context.Context, s logical.Storage, name string) error {
	stored, err := m.unsavedUniversal.store(ctx, s, name)
	if err != nil {
		return fmt.Errorf("the last Snyk result for universal/%s is not stored yet (storage: %w); retry shortly", name, err)
	}
	if stored {
		m.b.log().Info("stored a client secret kept in memory", "deployment", name)
	}
	return nil
}

// currentUniversal reads a deployment as the engine knows it, for reads.
func (b *backend) currentUniversal(ctx context.Context, s logical.Storage, name string) (*universalEntry, error) {
	if e := b.rotation.unsavedUniversal.get(name); e != nil {
		return e, nil
	}
	return getUniversal(ctx, s, name)
}

// universalOfPath reads the deployment a read path names, as the engine
// knows it: a 400 for a bad name, nil for none.
func (b *backend) universalOfPath(ctx context.Context, req *logical.Request, d *framework.FieldData) (*universalEntry, *logical.Response, error) {
	name := d.Get("name").(string)
	if p := checkName(name); p != "" {
		return nil, logical.ErrorResponse(p), nil
	}
	e, err := b.currentUniversal(ctx, req.Storage, name)
	return e, nil, err
}

// universalForWrite reads a deployment for a write, after storing a kept
// result, so that no write starts from a stale copy. The caller holds the
// deployment's lock.
func (b *backend) universalForWrite(ctx context.Context, s logical.Storage, name string) (*universalEntry, error) {
	if err := b.rotation.flushUniversal(ctx, s, name); err != nil {
		return nil, err
	}
	return getUniversal(ctx, s, name)
}
