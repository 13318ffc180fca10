package backend

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/hashicorp/vault/sdk/framework"
	"github.com/hashicorp/vault/sdk/logical"
)

func pathIntegrations(b *backend) []*framework.Path {
	return []*framework.Path{
		{
			Pattern: "integrations/?$",
			DisplayAttrs: &framework.DisplayAttributes{
				OperationPrefix: operationPrefix,
				OperationSuffix: "orgs",
			},
			Operations: map[logical.Operation]framework.OperationHandler{
				logical.ListOperation: &framework.PathOperation{
					Callback: b.pathIntegrationOrgsList,
					Summary:  "List the orgs that have integrations.",
				},
			},
			HelpSynopsis:    "List the orgs that have integrations.",
			HelpDescription: "Lists the <name> of every org with at least one integration, e.g. `vault list snyk/integrations`.",
		},
		{
			Pattern: "integrations/" + nameSegment + "/?$",
			DisplayAttrs: &framework.DisplayAttributes{
				OperationPrefix: operationPrefix,
				OperationSuffix: "integrations",
			},
			Fields: map[string]*framework.FieldSchema{"name": pathNameFields["name"]},
			Operations: map[logical.Operation]framework.OperationHandler{
				logical.ListOperation: &framework.PathOperation{
					Callback: b.pathIntegrationsList,
					Summary:  "List an org's integrations (their SCMs).",
				},
			},
			HelpSynopsis:    "List an org's integrations.",
			HelpDescription: "Lists the SCMs configured for one org, e.g. `vault list snyk/integrations/payments`.",
		},
		pathClone(b),
		{
			Pattern: "integrations/" + nameSegment + "/" + scmSegment + "$",
			DisplayAttrs: &framework.DisplayAttributes{
				OperationPrefix: operationPrefix,
				OperationSuffix: "integration",
			},
			Fields: integrationFields(),
			Operations: map[logical.Operation]framework.OperationHandler{
				logical.ReadOperation: &framework.PathOperation{
					Callback: b.pathIntegrationRead,
					Summary:  "Read an integration's settings and rotation status (no secrets).",
					Responses: map[int][]framework.Response{http.StatusOK: {{
						Description: "OK",
						Fields:      integrationResponseFields,
					}}},
				},
				logical.CreateOperation: forwarded(b.pathIntegrationWrite, "Validate the SCM credential, enable Broker and capture the Broker token.", &framework.DisplayAttributes{OperationVerb: "configure"}),
				logical.UpdateOperation: forwarded(b.pathIntegrationWrite, "Update an integration's SCM credential or rotation settings.", &framework.DisplayAttributes{OperationVerb: "configure"}),
				logical.DeleteOperation: forwarded(b.pathIntegrationDelete, "Forget an integration in Vault (nothing changes at Snyk).", nil),
			},
			ExistenceCheck:  b.pathIntegrationExists,
			HelpSynopsis:    pathIntegrationHelpSyn,
			HelpDescription: pathIntegrationHelpDesc,
		},
	}
}

func (b *backend) pathIntegrationExists(ctx context.Context, req *logical.Request, d *framework.FieldData) (bool, error) {
	name, kind := d.Get("name").(string), d.Get("scm").(string)
	if checkPathNames(name, kind) != "" {
		// The handler answers the 400; a storage look-up of a bad key
		// would only fail with a 500 first.
		return false, nil
	}
	e, err := getIntegration(ctx, req.Storage, name, kind)
	return e != nil, err
}

func (b *backend) pathIntegrationOrgsList(ctx context.Context, req *logical.Request, _ *framework.FieldData) (*logical.Response, error) {
	keys, err := req.Storage.List(ctx, integrationStoragePrefix)
	if err != nil {
		return nil, err
	}
	return logical.ListResponse(keys), nil
}

func (b *backend) pathIntegrationsList(ctx context.Context, req *logical.Request, d *framework.FieldData) (*logical.Response, error) {
	name := d.Get("name").(string)
	if p := checkName(name); p != "" {
		return logical.ErrorResponse(p), nil
	}
	keys, err := req.Storage.List(ctx, integrationStoragePrefix+name+"/")
	if err != nil {
		return nil, err
	}
	return logical.ListResponse(keys), nil
}

func (b *backend) pathIntegrationRead(ctx context.Context, req *logical.Request, d *framework.FieldData) (*logical.Response, error) {
	name, kind := d.Get("name").(string), d.Get("scm").(string)
	if p := checkPathNames(name, kind); p != "" {
		return logical.ErrorResponse(p), nil
	}
	e, err := b.currentIntegration(ctx, req.Storage, name, kind)
	if err != nil || e == nil {
		return nil, err
	}
	cfg, err := b.configOrDefaults(ctx, req.Storage)
	if err != nil {
		return nil, err
	}
	view, _, err := b.familyView(ctx, req.Storage, e)
	if err != nil {
		return nil, err
	}
	data := view.statusData(cfg)
	key := queueKey(name, kind)
	if e.TokenOwner != "" {
		data["token_family"], data["shares_token_with"] = e.TokenOwner, []string{e.TokenOwner}
	} else if sharers, err := sharersOf(ctx, req.Storage, key); err != nil {
		return nil, err
	} else if len(sharers) > 0 {
		data["token_family"], data["shares_token_with"] = key, sharers
	}
	return &logical.Response{Data: data}, nil
}

func (b *backend) pathIntegrationWrite(ctx context.Context, req *logical.Request, d *framework.FieldData) (*logical.Response, error) {
	name, kind := d.Get("name").(string), d.Get("scm").(string)
	if p := checkPathNames(name, kind); p != "" {
		return logical.ErrorResponse(p), nil
	}
	if v, ok := d.GetOk("promote_token_owner"); ok && v.(bool) {
		return b.pathPromote(ctx, req, name, kind)
	}
	unlock := b.lockIntegration(name, kind)
	defer unlock()

	cfg, err := b.config(ctx, req.Storage)
	if err != nil {
		return nil, err
	}
	if cfg == nil {
		return logical.ErrorResponse("the engine has no Snyk credential yet: write snyk/config first"), nil
	}
	existing, err := b.integrationForWrite(ctx, req.Storage, name, kind)
	if err != nil {
		return nil, err
	}

	now := b.now().UTC()
	var e integrationEntry
	if existing != nil {
		e = *existing
	} else {
		e = integrationEntry{Name: name, SCM: kind, CreatedAt: now}
	}
	in, problems := parseIntegrationInput(&e, existing == nil, d)
	if existing != nil && len(in.locationChanged) > 0 && !in.credentialSent {
		// The trust boundary of the stored SCM credential: re-validation
		// and the Broker client's env would send it to the new host, so
		// only a writer who holds it may choose that host.
		problems = append(problems, fmt.Sprintf("%s decide(s) where the SCM credential is sent (validation, and the Broker client's env): "+
			"send the credential in the same write (scm_token=…, or scm_password=… for Bitbucket basic auth)", strings.Join(in.locationChanged, ", ")))
	}
	if len(problems) == 0 {
		problems = e.policy(cfg).problems(now)
	}
	if e.CodeAgentRole != "" && len(problems) == 0 {
		role, err := getRole(ctx, req.Storage, e.CodeAgentRole)
		if err != nil {
			return nil, err
		}
		if role == nil {
			problems = append(problems, fmt.Sprintf("code_agent_role %q is not a role: create it with snyk/roles/%s first", e.CodeAgentRole, e.CodeAgentRole))
		}
	}
	if len(problems) > 0 {
		return logical.ErrorResponse(strings.Join(problems, "; ")), nil
	}

	var warnings []string
	// Turning skip_scm_validation off checks the stored credential now.
	validationTurnedOn := existing != nil && existing.SkipSCMValidation && !e.SkipSCMValidation
	if !e.SkipSCMValidation && (existing == nil || in.scmChanged || validationTurnedOn) {
		resp, err := b.validateSCM(ctx, cfg, &e)
		if resp != nil || err != nil {
			return resp, err
		}
	} else if e.SkipSCMValidation && (existing == nil || in.scmChanged) {
		e.SCMScopes, e.SCMTokenExpiresAt, e.SCMValidatedAt = nil, time.Time{}, time.Time{}
		e.SCMStatus, e.SCMCheckedAt = scmStatusUnknown, time.Time{}
		e.SCMProblems = []string{"skip_scm_validation is set: the SCM credential is not checked"}
		warnings = append(warnings, "skip_scm_validation is set: the SCM credential was stored without checking its validity or scopes")
	}

	if existing == nil {
		resp, err := b.createIntegration(ctx, req.Storage, cfg, &e, in)
		if resp != nil {
			resp.Warnings = append(warnings, resp.Warnings...)
		}
		if err == nil && (resp == nil || !resp.IsError()) {
			b.rotation.schedule(&e, cfg)
		}
		return resp, err
	}

	switchedByImport := false
	if in.brokerToken != "" {
		e.CurrentToken = in.brokerToken
		e.TokenSource = sourceImported
		if in.brokerToken == e.ProvisionalToken {
			// The operator says the held provisional token is now current: a
			// switch made outside Vault, or one whose answer Vault could not
			// read. The rotation is complete; the schedule restarts from now.
			switchedByImport = true
			e.ProvisionalToken, e.ProvisionedAt, e.SwitchOutcomeUnknown = "", time.Time{}, false
			e.RetryAt, e.Failures, e.LastRotationError = time.Time{}, 0, ""
			e.LastVaultRotation = now
			if e.NextVaultRotation, err = e.policy(cfg).nextRotation(now); err != nil {
				return nil, err
			}
			in.scheduleChanged = false
		}
		if e.ProvisionalToken == "" {
			e.RotationState = stateActive
		}
	}
	if in.scheduleChanged {
		last := e.LastVaultRotation
		if last.IsZero() {
			last = e.CreatedAt
		}
		if e.NextVaultRotation, err = e.policy(cfg).nextRotation(last); err != nil {
			return nil, err
		}
	}
	if err := putIntegration(ctx, req.Storage, &e); err != nil {
		return nil, err
	}
	if switchedByImport {
		b.rotation.release(queueKey(name, kind))
	}
	b.rotation.schedule(&e, cfg)
	return &logical.Response{Data: e.statusData(cfg), Warnings: warnings}, nil
}

func (b *backend) pathIntegrationDelete(ctx context.Context, req *logical.Request, d *framework.FieldData) (*logical.Response, error) {
	name, kind := d.Get("name").(string), d.Get("scm").(string)
	if p := checkPathNames(name, kind); p != "" {
		return logical.ErrorResponse(p), nil
	}
	unlock := b.lockIntegration(name, kind)
	defer unlock()

	e, err := b.currentIntegration(ctx, req.Storage, name, kind)
	if err != nil || e == nil {
		return nil, err
	}
	if e.TokenOwner == "" {
		sharers, err := sharersOf(ctx, req.Storage, queueKey(name, kind))
		if err != nil {
			return nil, err
		}
		if len(sharers) > 0 {
			return logical.ErrorResponse(fmt.Sprintf("%s/%s owns the Broker token that %s share: hand the family over first with "+
				"vault write snyk/integrations/<sharer>/%s promote_token_owner=true (then delete this one), or delete the sharers first", name, kind, strings.Join(sharers, ", "), kind)), nil
		}
	}
	if err := req.Storage.Delete(ctx, integrationStorageKey(name, kind)); err != nil {
		return nil, err
	}
	b.rotation.forget(queueKey(name, kind))
	if e.ProvisionalToken == "" {
		return nil, nil
	}
	// Snyk has no API to cancel a provisional token; it blocks every rotation
	// in the org's group until someone switches it.
	return &logical.Response{Warnings: []string{
		"this integration held a provisional Broker token that was never switched; it blocks Broker token rotations in the Snyk group until it is switched (Snyk UI, or switch-token) or the integration is re-created in Vault and rotated",
	}}, nil
}

const pathIntegrationHelpSyn = `Manage the Broker-enabled SCM integration of a Snyk org.`

const pathIntegrationHelpDesc = `
integrations/<name>/<scm> ties one Snyk org's SCM integration to Vault.

<name> is a Snyk org ID (UUID), or a slug ([a-z0-9][a-z0-9._-]*) with org_id.
<scm> is github, github-enterprise, gitlab, azure-repos or bitbucket-server.

On create the engine
  1. validates the SCM credential and its scopes (skip_scm_validation=true
     skips it) and fails with a 400 naming every missing scope;
  2. resolves the Snyk integration (integration_id, or the org's integration
     of that type, created brokered when the org has none);
  3. obtains a Broker token: the imported broker_token; or the token Snyk
     returns when Vault enables Broker on a not-yet-brokered integration; or,
     for an already-brokered integration whose token Vault does not hold, a
     provisional token ("adoption": served at once, rotation_state
     "provisioned", switched at the next scheduled switch or by
     broker/<name>/<scm>/rotate).
Snyk documents neither the status nor the words of its refusals, so Vault
reads the words; when it cannot tell what Snyk meant it stops with a 400 that
quotes Snyk's answer. Say what you know with broker_token_source:
  auto    (default) ask for a provisional token; enable Broker only when Snyk
          answers that the integration is not brokered
  enable  the integration is not brokered yet: enable Broker, never provision
  adopt   it is already brokered: obtain a provisional token, never enable
A token Snyk returns is stored before anything else happens; on any failure
nothing is stored. On an update, broker_token=<the held provisional token>
records that it was switched outside Vault.

Per-integration overrides: ttl, rotation_period xor rotation_schedule (cron,
UTC), rotation_window (schedule only, >= 1h), provision_ahead,
disable_automated_rotation.

Read returns every non-secret field plus rotation_state, last_vault_rotation,
next_vault_rotation, last_rotation_error, scm_scopes, scm_token_expires_at,
scm_validated_at and broker_token_fingerprint. Delete forgets the integration
in Vault and changes nothing at Snyk.

  vault write snyk/integrations/payments/github \
      org_id=0b3e1b1c-1b4e-4b8e-9d11-3c0f1b1d2a55 scm_token=@github-pat
`
