package backend

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/hashicorp/vault/sdk/framework"
	"github.com/hashicorp/vault/sdk/logical"

	"github.com/snyk-vault/vault-plugin-secrets-snyk/backend/httpx"
	"github.com/snyk-vault/vault-plugin-secrets-snyk/backend/snyk"
)

// Rotating the engine's own Snyk credential (an OAuth service account's
// client secret) without ever losing a working one. Snyk lets a service
// account hold two secrets, so the new one is created beside the old:
//
//  1. WAL entry, then create a secret (Snyk shows it once) and store it as
//     pending before anything else;
//  2. verify it: an access token from /oauth2/token and an authenticated call;
//  3. store it as the credential, the old one as previous;
//  4. delete the old one at Snyk by value, then forget it.
//
// A failure at any step leaves a working credential stored: before step 3
// the old one, after it the new one (verified). An interrupted rotation is
// resumed from what is stored: a pending secret is verified and switched
// to, a previous one deleted.

const (
	walKindRotateRoot = "rotate-root"
	rootRotationKey   = "root-rotation"
	rootRetryBackoff  = 10 * time.Minute
)

var errNoRootRotation = errors.New("rotate-root needs an OAuth service account")

// rootRotationProblem says why cfg's credential cannot be rotated, "" when
// it can.
func rootRotationProblem(cfg *snykConfig) string {
	scope, _ := cfg.serviceAccountScope()
	switch {
	case cfg.APIToken != "":
		return "the configured credential is an API token, and Snyk has no API to rotate one (personal or service-account API keys): " +
			"create a new token and write it to snyk/config, or switch to an OAuth service account (client_id, client_secret, service_account_id)"
	case cfg.ServiceAccountID == "" || scope == "":
		return "rotate-root needs the service account behind client_id: set service_account_id and service_account_org_id (or service_account_group_id) in snyk/config"
	}
	return ""
}

// rotateRoot rotates the client secret. The caller holds configWriteMu.
func (b *backend) rotateRoot(ctx context.Context, s logical.Storage, cfg *snykConfig) error {
	if rootRotationProblem(cfg) != "" {
		return errNoRootRotation
	}
	client, err := b.newSnykClient(cfg)
	if err != nil {
		return err
	}
	scope, owner := cfg.serviceAccountScope()
	// A secret switched away from earlier and not deleted yet counts towards
	// Snyk's two: it goes first.
	if cfg.PreviousClientSecret != "" && cfg.PendingClientSecret == "" {
		b.retirePreviousSecret(ctx, s, cfg)
		if cfg.PreviousClientSecret != "" {
			return errors.New("the previous client secret could not be deleted at Snyk yet (two secrets exist); the current one stays in use: retry later")
		}
	}
	if cfg.PendingClientSecret == "" {
		walID, err := framework.PutWAL(ctx, s, walKindRotateRoot, map[string]interface{}{"started_at": b.now().UTC()})
		if err != nil {
			return err
		}
		secret, err := client.ManageServiceAccountSecret(ctx, scope, owner, cfg.ServiceAccountID, snyk.SecretModeCreate, "")
		if err != nil {
			if !errors.Is(err, httpx.ErrOutcomeUnknown) {
				b.deleteWAL(ctx, s, walID)
			}
			return fmt.Errorf("creating a new client secret: %w", err)
		}
		cfg.PendingClientSecret = secret
		if err := b.persistConfig(ctx, s, cfg); err != nil {
			// It cannot be kept, so it must not stay valid at Snyk either.
			if _, derr := client.ManageServiceAccountSecret(context.WithoutCancel(ctx), scope, owner, cfg.ServiceAccountID, snyk.SecretModeDelete, secret); derr == nil {
				b.deleteWAL(ctx, s, walID)
			}
			return fmt.Errorf("storing the new client secret: %w", err)
		}
		b.deleteWAL(ctx, s, walID)
	}

	candidate := *cfg
	candidate.ClientSecret = cfg.PendingClientSecret
	verifier, err := b.newSnykClient(&candidate)
	if err != nil {
		return err
	}
	if _, err := verifier.Verify(ctx); err != nil {
		if r := snyk.Classify(snyk.OpLookup, err); r == snyk.RefusalUnauthorized || r == snyk.RefusalForbidden {
			// The new secret does not work: remove it at Snyk, keep the old.
			if _, derr := client.ManageServiceAccountSecret(ctx, scope, owner, cfg.ServiceAccountID, snyk.SecretModeDelete, cfg.PendingClientSecret); derr == nil {
				cfg.PendingClientSecret = ""
				if perr := b.persistConfig(ctx, s, cfg); perr != nil {
					b.log().Warn("could not forget a refused client secret", "error", perr)
				}
			}
		}
		return fmt.Errorf("verifying the new client secret (the old one stays in use): %w", err)
	}

	cfg.PreviousClientSecret = cfg.ClientSecret
	cfg.ClientSecret = cfg.PendingClientSecret
	cfg.PendingClientSecret = ""
	cfg.RootRotatedAt = b.now().UTC()
	cfg.RootRotationError = ""
	if err := b.persistConfig(ctx, s, cfg); err != nil {
		return fmt.Errorf("storing the rotated client secret (the old one stays in use; the next attempt switches): %w", err)
	}
	b.resetClient()
	b.log().Info("rotated the Snyk client secret", "client_id", cfg.ClientID, "service_account_id", cfg.ServiceAccountID)
	b.retirePreviousSecret(ctx, s, cfg)
	return nil
}

// retirePreviousSecret deletes the secret switched away from. Until it is
// gone at Snyk it stays stored, and every later rotation tries again; it
// does no harm meanwhile but counts towards Snyk's two secrets.
func (b *backend) retirePreviousSecret(ctx context.Context, s logical.Storage, cfg *snykConfig) {
	if cfg.PreviousClientSecret == "" {
		return
	}
	client, err := b.newSnykClient(cfg)
	if err != nil {
		return
	}
	scope, owner := cfg.serviceAccountScope()
	if _, err := client.ManageServiceAccountSecret(ctx, scope, owner, cfg.ServiceAccountID, snyk.SecretModeDelete, cfg.PreviousClientSecret); err != nil {
		b.log().Warn("could not delete the previous client secret at Snyk; retried at the next rotation", "error", err)
		return
	}
	cfg.PreviousClientSecret = ""
	if err := b.persistConfig(ctx, s, cfg); err != nil {
		b.log().Warn("could not forget the deleted client secret", "error", err)
	}
}

// persistConfig stores cfg right after Snyk returned a secret, retrying
// storage hiccups, and drops the cached config.
func (b *backend) persistConfig(ctx context.Context, s logical.Storage, cfg *snykConfig) error {
	ctx = context.WithoutCancel(ctx)
	var err error
	for attempt := 0; attempt < 5; attempt++ {
		if err = putConfig(ctx, s, cfg); err == nil {
			b.resetClient()
			return nil
		}
		if httpx.SleepContext(ctx, time.Duration(attempt+1)*100*time.Millisecond) != nil {
			break
		}
	}
	return err
}

// scheduleRootRotation queues the next automatic rotation of the client
// secret, or drops it.
func (m *rotationManager) scheduleRootRotation(cfg *snykConfig) {
	m.mu.Lock()
	_, _ = m.queue.PopByKey(rootRotationKey)
	m.mu.Unlock()
	if cfg == nil || cfg.RootRotationPeriod <= 0 || rootRotationProblem(cfg) != "" {
		return
	}
	last := cfg.RootRotatedAt
	if last.IsZero() {
		last = cfg.RootRotationSince
	}
	if last.IsZero() {
		last = m.b.now()
	}
	m.pushAt(rootRotationKey, last.Add(cfg.RootRotationPeriod))
}

// processRootRotation runs a due automatic rotation of the client secret.
func (m *rotationManager) processRootRotation(ctx context.Context, s logical.Storage) {
	b := m.b
	b.configWriteMu.Lock()
	defer b.configWriteMu.Unlock()
	cfg, err := getConfig(ctx, s)
	if err != nil || cfg == nil {
		return
	}
	now := b.now().UTC()
	last := cfg.RootRotatedAt
	if last.IsZero() {
		last = cfg.RootRotationSince
	}
	if !last.IsZero() && now.Before(last.Add(cfg.RootRotationPeriod)) && cfg.PendingClientSecret == "" {
		m.scheduleRootRotation(cfg)
		return
	}
	if err := b.rotateRoot(ctx, s, cfg); err != nil {
		b.log().Error("scheduled rotation of the Snyk client secret failed; the old secret stays in use", "error", err)
		if fresh, gerr := getConfig(ctx, s); gerr == nil && fresh != nil {
			fresh.RootRotationError = now.Format(time.RFC3339) + ": " + err.Error()
			if perr := putConfig(ctx, s, fresh); perr == nil {
				b.resetClient()
			}
		}
		m.pushAt(rootRotationKey, now.Add(rootRetryBackoff))
		return
	}
	fresh, err := getConfig(ctx, s)
	if err == nil {
		m.scheduleRootRotation(fresh)
	}
}

func (b *backend) pathConfigRotateRoot(ctx context.Context, req *logical.Request, _ *framework.FieldData) (*logical.Response, error) {
	b.configWriteMu.Lock()
	defer b.configWriteMu.Unlock()
	cfg, err := getConfig(ctx, req.Storage)
	if err != nil {
		return nil, err
	}
	if cfg == nil {
		return logical.ErrorResponse("the engine has no Snyk credential yet: write snyk/config first"), nil
	}
	if p := rootRotationProblem(cfg); p != "" {
		return logical.ErrorResponse(p), nil
	}
	if err := b.rotateRoot(ctx, req.Storage, cfg); err != nil {
		if r := snyk.Classify(snyk.OpLookup, err); r != snyk.NotARefusal {
			return logical.ErrorResponse(fmt.Sprintf("rotate-root: %v", err)), nil
		}
		return nil, fmt.Errorf("rotate-root: %w", err)
	}
	fresh, err := getConfig(ctx, req.Storage)
	if err != nil {
		return nil, err
	}
	b.rotation.scheduleRootRotation(fresh)
	return &logical.Response{Data: map[string]interface{}{
		"root_rotated_at":         timeOrNil(fresh.RootRotatedAt),
		"credential_fingerprint":  fresh.fingerprint(),
		"previous_secret_retired": fresh.PreviousClientSecret == "",
	}}, nil
}

const pathConfigRotateRootHelpDesc = `
Rotate the engine's own Snyk credential, an OAuth service account's client
secret, without ever losing a working one: a second secret is created at
Snyk (stored at once), verified with an access token and an authenticated
call, switched to, and the old secret is deleted at Snyk by value. A failure
at any step keeps a working secret in use; an interrupted rotation resumes.
Needs client_id/client_secret with service_account_id and
service_account_org_id (or service_account_group_id) in snyk/config. An API
token cannot be rotated: Snyk has no API for it. root_rotation_period in
snyk/config has the engine do this on a schedule.

  vault write -f snyk/config/rotate-root
`
