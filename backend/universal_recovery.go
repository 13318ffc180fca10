package backend

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/hashicorp/vault/sdk/logical"
)

// Recovery of Universal Broker deployments when the mount starts: every
// stored deployment queued again, and a secret creation a crash interrupted
// reported.

// universalSecretRollback reads an interrupted secret creation: unless
// its secret was stored (or switched to since), the install may hold a
// second secret Vault never saw, and the next create may be refused for
// Snyk's limit of two.
func (b *backend) universalSecretRollback(ctx context.Context, s logical.Storage, data interface{}) error {
	var w universalWAL
	if err := mapToStruct(data, &w); err != nil {
		return err
	}
	unlock := b.lockUniversal(w.Name)
	defer unlock()
	if b.rotation.unsavedUniversal.get(w.Name) != nil {
		// The secret is kept in memory until storage takes it; the entry
		// stays as the record should this process die first.
		return fmt.Errorf("the client secret this call created is not stored yet")
	}
	e, err := getUniversal(ctx, s, w.Name)
	if err != nil || e == nil || e.InstallID != w.InstallID {
		return err
	}
	if !e.NextCreatedAt.Before(w.StartedAt) || e.LastVaultRotation.After(w.StartedAt) {
		return nil
	}
	msg := "creating a client secret was interrupted: install " + w.InstallID + " may hold a second secret Vault never stored; " +
		"if the next rotation is refused for Snyk's limit of two secrets, delete the unknown one at Snyk (Vault's is shown by client_secret_fingerprint)"
	b.log().Warn("interrupted Universal Broker secret creation", "deployment", w.Name, "started_at", w.StartedAt, "detail", msg)
	e.LastRotationError = b.now().UTC().Format(time.RFC3339) + ": " + msg
	return putUniversal(ctx, s, e)
}

// loadUniversal queues every stored deployment (rotation_load.go).
func (m *rotationManager) loadUniversal(ctx context.Context, s logical.Storage, cfg *snykConfig) (int, error) {
	names, err := listUniversalNames(ctx, s)
	if err != nil {
		return 0, err
	}
	for _, name := range names {
		e, err := getUniversal(ctx, s, strings.TrimSuffix(name, "/"))
		switch {
		case errors.Is(err, errCorruptEntry):
			m.b.log().Error("could not load universal deployment for rotation", "deployment", name, "error", err)
			continue
		case err != nil:
			return 0, err
		case e == nil:
			continue
		}
		m.scheduleUniversal(e, cfg)
	}
	return len(names), nil
}
