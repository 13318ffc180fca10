package backend

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/hashicorp/vault/sdk/framework"
	"github.com/hashicorp/vault/sdk/logical"

	"github.com/snyk-vault/vault-plugin-secrets-snyk/backend/snyk"
)

func pathUniversalRotate(b *backend) []*framework.Path {
	return []*framework.Path{{
		Pattern:      "universal/" + universalNameSegment + "/rotate$",
		DisplayAttrs: &framework.DisplayAttributes{OperationPrefix: operationPrefix, OperationVerb: "rotate", OperationSuffix: "universal-client-secret"},
		Fields: map[string]*framework.FieldSchema{
			"name": universalNameField,
			"force": {Type: framework.TypeBool, Description: "Rotate even while the secret switched away from at the last rotation is in its grace period: it is deleted first, " +
				"and clients not yet restarted onto the current secret stop within client_exit_window."},
		},
		Operations: map[logical.Operation]framework.OperationHandler{
			logical.UpdateOperation: forwarded(b.pathUniversalRotate, "Rotate the deployment's client secret now.", nil),
		},
		HelpSynopsis:    "Rotate a Universal Broker deployment's client secret now.",
		HelpDescription: pathUniversalRotateHelpDesc,
	}}
}

// pathUniversalRotate rotates now, through the same steps as the schedule:
// a previous secret still held is deleted first (Snyk allows two), a next
// one created unless held, and the switch made at once; the secret switched
// away from is deleted ttl + client_exit_window later.
func (b *backend) pathUniversalRotate(ctx context.Context, req *logical.Request, d *framework.FieldData) (*logical.Response, error) {
	name := d.Get("name").(string)
	if p := checkName(name); p != "" {
		return logical.ErrorResponse(p), nil
	}
	unlock := b.lockUniversal(name)
	defer unlock()
	s := req.Storage
	e, err := b.universalForWrite(ctx, s, name)
	if err != nil {
		return nil, err
	}
	if e == nil {
		return logical.ErrorResponse("no Universal Broker deployment %q", name), nil
	}
	cfg, err := b.config(ctx, s)
	if err != nil {
		return nil, err
	}
	client, err := b.snykClient(ctx, s)
	if err != nil {
		return nil, err
	}
	if cfg == nil || client == nil {
		return logical.ErrorResponse("the engine has no Snyk credential yet: write snyk/config first"), nil
	}
	if e.PreviousClientSecret != "" && !d.Get("force").(bool) {
		// Snyk allows two secrets: a new one needs the old one's slot, and
		// clients may still run with the old one until its grace ends.
		return logical.ErrorResponse("the secret switched away from at the last rotation is in its grace period until %s (clients not yet restarted may use it): "+
			"rotate after that, or with force=true to delete it now", e.RetirePreviousAt.UTC().Format(time.RFC3339)), nil
	}
	m := b.rotation
	var warnings []string
	err = func() error {
		if e.PreviousClientSecret != "" {
			m.chargeToken(cfg, b.now())
			if err := b.retirePreviousClientSecret(ctx, s, cfg, client, e); err != nil {
				return err
			}
			warnings = append(warnings, fmt.Sprintf("deleted the previous client secret before its grace period ended: clients still running with it stop within client_exit_window (%s)", e.clientExitWindow()))
		}
		if e.NextClientSecret == "" {
			m.chargeToken(cfg, b.now())
			if err := b.createNextSecret(ctx, s, cfg, client, e); err != nil {
				return err
			}
		}
		if e.NextVerifiedAt.IsZero() {
			// Never served unproven; a fresh secret Snyk has not
			// propagated yet makes this a retry.
			m.chargeToken(cfg, b.now())
			if err := b.verifyNextSecret(ctx, s, cfg, client, e); err != nil {
				return err
			}
		}
		return b.switchUniversalSecret(ctx, s, cfg, e)
	}()
	var notStored *errNotStored
	if errors.As(err, &notStored) {
		m.keepUniversal(e, notStored)
		m.pushAt(universalRotatePrefix+name, b.now().Add(firstFailureBackoff))
		return nil, fmt.Errorf("rotating the client secret: %w", err)
	}
	if err != nil {
		now := b.now().UTC()
		e.LastRotationError = fmt.Sprintf("%s: manual rotation failed: %v", now.Format(time.RFC3339), err)
		if perr := persistUniversal(ctx, s, e); perr != nil {
			b.log().Error("could not record the rotation error", "deployment", name, "error", perr)
		}
		m.scheduleUniversal(e, cfg)
		switch snyk.Classify(snyk.OpManageSecret, err) {
		case snyk.NotARefusal:
			return nil, fmt.Errorf("rotating the client secret: %w", err)
		case snyk.RefusalSecretLimit:
			return logical.ErrorResponse("rotating the client secret: Snyk refuses a new secret because install %s holds two already and Vault holds only one "+
				"(delete the other where it was made, or replace the install's secret and write it as client_secret): %v", e.InstallID, err), nil
		default:
			return logical.ErrorResponse("rotating the client secret: Snyk refused (%s); the configured credential needs org.app.edit on org %s", snyk.Answer(err), e.InstallOrgID), nil
		}
	}
	m.scheduleUniversal(e, cfg)
	resp := &logical.Response{Data: e.statusData(cfg)}
	for _, w := range warnings {
		resp.AddWarning(w)
	}
	return resp, nil
}

const pathUniversalRotateHelpDesc = `
Rotate the deployment's client secret now (a leaked secret, or to test the
chain): a second secret is created at Snyk (never mode=replace, which would
stop every running client at once), verified at /oauth2/token and served as
CLIENT_SECRET at once; consumers pick it up at their next read (leases end
at each phase change; Vault Agent in exec mode restarts the client). The
secret switched away from keeps working for ttl + client_exit_window, then
Vault deletes it at Snyk. A previous secret still in its grace period is
deleted first (Snyk allows two). The schedule restarts from now.

  vault write -f snyk/universal/prod/rotate
`
