package backend

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/hashicorp/vault/sdk/logical"

	"github.com/snyk-vault/vault-plugin-secrets-snyk/backend/snyk"
)

// The Universal Broker deployment's client credentials as writes check
// them: the install's client at Snyk, the secret at /oauth2/token, and the
// recovery from a secret replaced outside Vault.

// checkInstall proves at create that install_id is an app install of
// install_org_id with client_id: with another install's client, every
// rotation would create a secret the client's token endpoint refuses.
func (b *backend) checkInstall(ctx context.Context, client *snyk.Client, e *universalEntry) (*logical.Response, error) {
	installs, err := client.ListAppInstalls(ctx, e.InstallOrgID)
	if err != nil {
		if snyk.Classify(snyk.OpLookup, err) == snyk.NotARefusal {
			return nil, fmt.Errorf("listing the app installs of org %s: %w", e.InstallOrgID, err)
		}
		return logical.ErrorResponse("listing the app installs of install_org_id %s was refused (%s): check install_org_id; the configured credential needs org.app.read and org.app.edit there",
			e.InstallOrgID, snyk.Answer(err)), nil
	}
	for _, in := range installs {
		if in.ID != e.InstallID {
			continue
		}
		if !strings.EqualFold(in.ClientID, e.ClientID) {
			return logical.ErrorResponse("client_id %s is not the client of install %s (Snyk says %s): fix client_id", e.ClientID, e.InstallID, in.ClientID), nil
		}
		return nil, nil
	}
	return logical.ErrorResponse("install_id %s is not an app install of org %s (Snyk lists %d installs there): check install_id and install_org_id", e.InstallID, e.InstallOrgID, len(installs)), nil
}

// applyClientSecret verifies the secret a write gives (or, when recheck,
// the current one at the new api_url) and takes it. A new secret written
// while a rotation holds another is the operator's recovery from a replace
// outside Vault: a held secret /oauth2/token refuses is dropped (the replace
// invalidated it). The secret replaced, if it still works (made with
// mode=create outside Vault), is retired like a switched-away one, so that
// Vault deletes it at Snyk after the grace.
func (b *backend) applyClientSecret(ctx context.Context, cfg *snykConfig, e *universalEntry, secret string, recheck bool, now time.Time) (*logical.Response, error) {
	if secret == "" || secret == e.ClientSecret {
		if !recheck {
			return nil, nil
		}
		if resp, err := b.verifyClientSecret(ctx, cfg, e, e.ClientSecret, "client_secret (checked again at the new api_url)"); resp != nil || err != nil {
			return resp, err
		}
		e.SecretVerifiedAt = now
		return nil, nil
	}
	if resp, err := b.verifyClientSecret(ctx, cfg, e, secret, "client_secret"); resp != nil || err != nil {
		return resp, err
	}
	old := e.ClientSecret
	e.ClientSecret, e.SecretVerifiedAt = secret, now
	if old == "" {
		return nil, nil
	}
	works := func(v string) bool { return b.checkClientSecret(ctx, cfg, e, v) == nil }
	if e.NextClientSecret != "" && !works(e.NextClientSecret) {
		e.NextClientSecret, e.NextCreatedAt, e.NextVerifiedAt = "", time.Time{}, time.Time{}
	}
	if e.PreviousClientSecret != "" && !works(e.PreviousClientSecret) {
		e.PreviousClientSecret, e.RetirePreviousAt = "", time.Time{}
	}
	if e.PreviousClientSecret == "" && works(old) {
		e.PreviousClientSecret, e.RetirePreviousAt = old, now.Add(e.policy(cfg).TTL+e.clientExitWindow())
	}
	e.RotationState = e.stateWithoutNext()
	if e.NextClientSecret != "" {
		e.RotationState = stateProvisioned
	}
	e.RetryAt, e.Failures, e.LastRotationError = time.Time{}, 0, ""
	return nil, nil
}

// verifyClientSecret proves a client secret at the /oauth2/token endpoint
// the client will use. A refusal is the caller's (a 400 naming field);
// anything else is a fault.
func (b *backend) verifyClientSecret(ctx context.Context, cfg *snykConfig, e *universalEntry, secret, field string) (*logical.Response, error) {
	err := b.checkClientSecret(ctx, cfg, e, secret)
	if err == nil {
		return nil, nil
	}
	if snyk.Classify(snyk.OpLookup, err) != snyk.NotARefusal {
		return logical.ErrorResponse(fmt.Sprintf("%s: Snyk's /oauth2/token refused client_id %s with this secret (%s): pass the install's current client secret",
			field, e.ClientID, snyk.Answer(err))), nil
	}
	return nil, fmt.Errorf("verifying %s at Snyk's /oauth2/token: %w", field, err)
}

// checkClientSecret obtains an access token with the install's client ID
// and secret: a 200 proves the secret works. No other call is made.
func (b *backend) checkClientSecret(ctx context.Context, cfg *snykConfig, e *universalEntry, secret string) error {
	c, err := snyk.NewClient(snyk.Config{
		APIURL:         e.effectiveAPIURL(cfg),
		Credential:     snyk.Credential{ClientID: e.ClientID, ClientSecret: secret},
		CACert:         cfg.CACert,
		RequestTimeout: cfg.RequestTimeout,
		Retry:          b.retryPolicy("snyk"),
		Logger:         b.log().Named("snyk"),
		Now:            b.now,
	})
	if err != nil {
		return err
	}
	return c.CheckClientCredentials(ctx)
}
