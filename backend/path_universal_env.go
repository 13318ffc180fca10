package backend

import (
	"context"
	"errors"
	"time"

	"github.com/hashicorp/vault/sdk/framework"
	"github.com/hashicorp/vault/sdk/logical"
)

const secretTypeUniversalEnv = "snyk_universal_env" //nolint:gosec // a secret type name, not a credential

func pathUniversalEnv(b *backend) []*framework.Path {
	return []*framework.Path{{
		Pattern:      "universal/" + universalNameSegment + "/env$",
		DisplayAttrs: &framework.DisplayAttributes{OperationPrefix: operationPrefix, OperationSuffix: "universal-env"},
		Fields:       map[string]*framework.FieldSchema{"name": universalNameField},
		Operations: map[logical.Operation]framework.OperationHandler{
			logical.ReadOperation: &framework.PathOperation{Callback: b.pathUniversalEnvRead, Summary: "The Universal Broker client's whole environment, leased."},
		},
		HelpSynopsis:    "The Universal Broker client's environment as one lease.",
		HelpDescription: pathUniversalEnvHelpDesc,
	}}
}

func secretUniversalEnv(b *backend) *framework.Secret {
	return &framework.Secret{
		Type: secretTypeUniversalEnv,
		Fields: map[string]*framework.FieldSchema{
			"CLIENT_SECRET": {Type: framework.TypeString, Description: "The Snyk Broker App install's client secret"},
		},
		// No Renew: leases end at the next phase change so that consumers
		// re-read. Revoking one changes nothing: the secret is shared by
		// every replica of the deployment.
		Revoke: func(context.Context, *logical.Request, *framework.FieldData) (*logical.Response, error) {
			return nil, nil
		},
	}
}

// universalEnv is the client's environment: what the snyk/broker
// universal image reads at start-up, and one variable per credential.
func (e *universalEntry) universalEnv(cfg *snykConfig) map[string]string {
	env := map[string]string{
		"DEPLOYMENT_ID":            e.DeploymentID,
		"CLIENT_ID":                e.ClientID,
		"CLIENT_SECRET":            e.ClientSecret,
		"UNIVERSAL_BROKER_ENABLED": "true",
		// Baked into Snyk's universal image; a client started otherwise
		// (the npm package) polls instead of authenticating its websocket
		// without it.
		"UNIVERSAL_BROKER_GA": "true",
		"BROKER_SERVER_URL":   e.effectiveBrokerServerURL(cfg),
		"API_BASE_URL":        e.effectiveAPIURL(cfg),
	}
	if e.BrokerClientURL != "" {
		env["BROKER_CLIENT_URL"] = e.BrokerClientURL
	}
	for name, c := range e.Credentials {
		env[name] = c.Value
	}
	return env
}

// leaseTTL is the deployment's ttl, never past the next phase change: the
// switch while a next secret is held, its creation before that.
func (e *universalEntry) leaseTTL(p policy, now time.Time) time.Duration {
	switch {
	case e.NextClientSecret != "":
		return capAtPhase(p.TTL, phaseAt(e.NextVaultRotation, now), now)
	case p.DisableAutomatedRotation || e.NextVaultRotation.IsZero():
		return capAtPhase(p.TTL, time.Time{}, now)
	}
	createAt := e.NextVaultRotation.Add(-p.ProvisionAhead)
	if !e.RetryAt.IsZero() {
		createAt = e.RetryAt
	}
	return capAtPhase(p.TTL, phaseAt(createAt, now), now)
}

// pathUniversalEnvRead serves the client's environment from storage alone:
// no call to Snyk or an SCM.
func (b *backend) pathUniversalEnvRead(ctx context.Context, req *logical.Request, d *framework.FieldData) (*logical.Response, error) {
	e, resp, err := b.universalOfPath(ctx, req, d)
	if resp != nil || err != nil || e == nil {
		return resp, err
	}
	cfg, err := b.config(ctx, req.Storage)
	if err != nil {
		return nil, err
	}
	if cfg == nil {
		return nil, errors.New("snyk/config was deleted: write it again to serve Universal Broker environments")
	}
	now := b.now().UTC()
	p := e.policy(cfg)
	ttl := e.leaseTTL(p, now)
	env := e.universalEnv(cfg)
	data := make(map[string]interface{}, len(env)+8)
	for k, v := range env {
		data[k] = v
	}
	data["env"] = env
	data["ttl"] = int64(ttl.Seconds())
	data["last_vault_rotation"] = timeOrNil(e.LastVaultRotation)
	data["next_vault_rotation"] = timeOrNil(e.NextVaultRotation)
	addPolicyData(data, p)
	if e.NextClientSecret != "" {
		data["next_client_secret"] = e.NextClientSecret
		data["next_switch_at"] = timeOrNil(e.NextVaultRotation)
	}
	resp = b.Secret(secretTypeUniversalEnv).Response(data, map[string]interface{}{"name": e.Name, "deployment_id": e.DeploymentID})
	resp.Secret.TTL, resp.Secret.MaxTTL, resp.Secret.Renewable = ttl, ttl, false
	for _, problem := range e.Problems {
		resp.AddWarning(problem)
	}
	return resp, nil
}

const pathUniversalEnvHelpDesc = `
The Snyk Universal Broker client's whole environment as one lease:
DEPLOYMENT_ID, CLIENT_ID, CLIENT_SECRET, UNIVERSAL_BROKER_ENABLED=true,
UNIVERSAL_BROKER_GA=true, BROKER_SERVER_URL, API_BASE_URL, BROKER_CLIENT_URL
(when set), and every credential value under its environment variable name
(a GitHub App key under its .pem name), at the top level and again in an env
map for templates that range over it. A read makes no call to Snyk or an SCM.

The lease is not renewable and ends at the next phase change of the client
secret's rotation: when the next secret is created (reads add
next_client_secret and next_switch_at) and when it becomes CLIENT_SECRET.
The client reads CLIENT_SECRET only at start-up, so a Vault Agent in exec
mode (or a Kubernetes rollout) restarts it on the switch; the old secret
keeps working for ttl + client_exit_window after it.

  vault read snyk/universal/prod/env
`
