package backend

import (
	"context"
	"errors"
	"fmt"
	"net/http"

	"github.com/hashicorp/vault/sdk/framework"
	"github.com/hashicorp/vault/sdk/logical"

	"github.com/snyk-vault/vault-plugin-secrets-snyk/backend/snyk"
)

func pathBroker(b *backend) []*framework.Path {
	return []*framework.Path{
		{
			// Before the read pattern: more specific first.
			Pattern: "broker/" + nameSegment + "/" + scmSegment + "/rotate$",
			DisplayAttrs: &framework.DisplayAttributes{
				OperationPrefix: operationPrefix,
				OperationVerb:   "rotate",
				OperationSuffix: "broker-token",
			},
			Fields: brokerRotateFields(),
			Operations: map[logical.Operation]framework.OperationHandler{
				logical.UpdateOperation: forwarded(b.pathBrokerRotate, "Rotate the Broker token now: provision (unless already held) and switch.", nil),
			},
			HelpSynopsis:    "Rotate an integration's Broker token now.",
			HelpDescription: pathBrokerRotateHelpDesc,
		},
		{
			Pattern: "broker/" + nameSegment + "/" + scmSegment + "$",
			DisplayAttrs: &framework.DisplayAttributes{
				OperationPrefix: operationPrefix,
				OperationSuffix: "broker-token",
			},
			Fields: pathNameFields,
			Operations: map[logical.Operation]framework.OperationHandler{
				logical.ReadOperation: &framework.PathOperation{
					Callback: b.pathBrokerRead,
					Summary:  "Read the Broker token, the SCM credential and the Broker client's env map (leased).",
					// A read only reads storage, but it creates a lease,
					// which a performance standby must hand to the active
					// node (openbao-plugins #74).
					ForwardPerformanceStandby: true,
					// With code_agent_role it creates a Snyk service account.
					ForwardPerformanceSecondary: true,
					Responses: map[int][]framework.Response{http.StatusOK: {{
						Description: "OK",
						Fields:      brokerResponseFields,
					}}},
				},
			},
			HelpSynopsis:    "Read the leased Broker bundle of an integration.",
			HelpDescription: pathBrokerHelpDesc,
		},
	}
}

var brokerResponseFields = map[string]*framework.FieldSchema{
	"scm_status":          {Type: framework.TypeString},
	"scm_checked_at":      {Type: framework.TypeTime},
	"scm_problems":        {Type: framework.TypeStringSlice},
	"scm_check_period":    {Type: framework.TypeDurationSecond},
	"broker_token":        {Type: framework.TypeString, DisplayAttrs: &framework.DisplayAttributes{Sensitive: true}},
	"broker_server_url":   {Type: framework.TypeString},
	"org_id":              {Type: framework.TypeString},
	"integration_id":      {Type: framework.TypeString},
	"scm":                 {Type: framework.TypeString},
	"scm_token":           {Type: framework.TypeString, DisplayAttrs: &framework.DisplayAttributes{Sensitive: true}},
	"scm_username":        {Type: framework.TypeString},
	"scm_password":        {Type: framework.TypeString, DisplayAttrs: &framework.DisplayAttributes{Sensitive: true}},
	"env":                 {Type: framework.TypeMap, DisplayAttrs: &framework.DisplayAttributes{Sensitive: true}},
	"next_broker_token":   {Type: framework.TypeString, DisplayAttrs: &framework.DisplayAttributes{Sensitive: true}},
	"next_switch_at":      {Type: framework.TypeTime},
	"ttl":                 {Type: framework.TypeDurationSecond},
	"last_vault_rotation": {Type: framework.TypeTime},
	"next_vault_rotation": {Type: framework.TypeTime},
	"rotation_period":     {Type: framework.TypeDurationSecond},
	"rotation_schedule":   {Type: framework.TypeString},
	"rotation_window":     {Type: framework.TypeDurationSecond},
}

func (b *backend) pathBrokerRead(ctx context.Context, req *logical.Request, d *framework.FieldData) (*logical.Response, error) {
	name, kind := d.Get("name").(string), d.Get("scm").(string)
	if p := checkPathNames(name, kind); p != "" {
		return logical.ErrorResponse(p), nil
	}
	e, err := b.currentIntegration(ctx, req.Storage, name, kind)
	if err != nil || e == nil {
		return nil, err
	}
	e, ok, err := b.familyView(ctx, req.Storage, e)
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, fmt.Errorf("the integration shares the token of %s, which no longer exists", e.TokenOwner)
	}
	token := e.servedToken()
	if token == "" {
		return nil, errors.New("the integration holds no Broker token")
	}
	cfg, err := b.config(ctx, req.Storage)
	if err != nil {
		return nil, err
	}
	if cfg == nil {
		// Without it the region's broker server URL and the policy defaults
		// are unknown; serving guesses would misdirect Broker clients.
		return nil, errors.New("snyk/config was deleted: write it again to serve broker secrets")
	}
	now := b.now().UTC()
	p := e.policy(cfg)
	ttl := e.leaseTTL(p, now)
	brokerServerURL := cfg.effectiveBrokerServerURL()

	data := map[string]interface{}{
		"broker_token":        token,
		"broker_server_url":   brokerServerURL,
		"org_id":              e.OrgID,
		"integration_id":      e.IntegrationID,
		"scm":                 e.SCM,
		"env":                 e.brokerEnv(token, brokerServerURL),
		"ttl":                 int64(ttl.Seconds()),
		"last_vault_rotation": timeOrNil(e.LastVaultRotation),
		"next_vault_rotation": timeOrNil(e.NextVaultRotation),
	}
	addPolicyData(data, p)
	if e.SCMToken != "" {
		data["scm_token"] = e.SCMToken
	} else {
		data["scm_username"] = e.SCMUsername
		data["scm_password"] = e.SCMPassword
	}
	if e.ProvisionalToken != "" {
		data["next_broker_token"] = e.ProvisionalToken
		data["next_switch_at"] = timeOrNil(e.NextVaultRotation)
	}
	for k, v := range e.scmStatusData(cfg) {
		data[k] = v
	}

	// Internal data holds identifiers only: it is stored with the lease.
	internal := map[string]interface{}{
		"name":           e.Name,
		"scm":            e.SCM,
		"org_id":         e.OrgID,
		"integration_id": e.IntegrationID,
	}
	// The Snyk Code Agent's SNYK_TOKEN: a service account of the
	// integration's code_agent_role, leased with this bundle (its revoke or
	// expiry deletes the account). The only broker read that calls Snyk.
	// The Broker client must get its bundle even when Snyk cannot make the
	// Code Agent's token: then the bundle comes without it, with a warning.
	var codeAgentWarning string
	if e.CodeAgentRole != "" {
		role, err := getRole(ctx, req.Storage, e.CodeAgentRole)
		switch {
		case err != nil:
			return nil, err
		case role == nil:
			codeAgentWarning = fmt.Sprintf("no SNYK_TOKEN: code_agent_role %q does not exist (create snyk/roles/%s or clear code_agent_role)", e.CodeAgentRole, e.CodeAgentRole)
		default:
			sa, errResp, err := b.createLeasedServiceAccount(ctx, req.Storage, role, req.DisplayName)
			switch {
			case errResp != nil:
				codeAgentWarning = "no SNYK_TOKEN: " + errResp.Error().Error()
			case err != nil:
				codeAgentWarning = "no SNYK_TOKEN this time: " + err.Error()
			default:
				for k, v := range sa.internalData(e.CodeAgentRole) {
					if k != "role" {
						internal[k] = v
					}
				}
				data["snyk_token"] = sa.key
				data["env"].(map[string]string)["SNYK_TOKEN"] = sa.key
			}
		}
	}
	resp := b.Secret(secretTypeBrokerToken).Response(data, internal)
	resp.Secret.TTL = ttl
	resp.Secret.MaxTTL = ttl
	resp.Secret.Renewable = false
	if codeAgentWarning != "" {
		resp.AddWarning(codeAgentWarning)
	}
	// A failing or expiring SCM credential is served all the same (it may
	// still work), but every consumer hears of it.
	if w := e.scmWarning(); w != "" {
		resp.AddWarning(w)
	}
	return resp, nil
}

func brokerRotateFields() map[string]*framework.FieldSchema {
	f := map[string]*framework.FieldSchema{
		"switched_outside_vault": {
			Type: framework.TypeBool,
			Description: "The held provisional token was already switched outside Vault (Snyk UI, switch-token): " +
				"when Snyk then answers that there is nothing to switch, Vault takes the provisional token as current. " +
				"Without it, that answer keeps the old token served.",
		},
	}
	for k, v := range pathNameFields {
		f[k] = v
	}
	return f
}

func (b *backend) pathBrokerRotate(ctx context.Context, req *logical.Request, d *framework.FieldData) (*logical.Response, error) {
	name, kind := d.Get("name").(string), d.Get("scm").(string)
	if p := checkPathNames(name, kind); p != "" {
		return logical.ErrorResponse(p), nil
	}
	unlock := b.lockIntegration(name, kind)
	defer unlock()

	e, err := b.integrationForWrite(ctx, req.Storage, name, kind)
	if err != nil {
		return nil, err
	}
	if e == nil {
		return logical.ErrorResponse("no integration %s/%s: create it with snyk/integrations/%s/%s first", name, kind, name, kind), nil
	}
	if e.TokenOwner != "" {
		return logical.ErrorResponse("%s/%s shares the Broker token of %s, which owns its rotation: rotate broker/%s/rotate (it switches every member of the family)", name, kind, e.TokenOwner, e.TokenOwner), nil
	}
	cfg, err := b.config(ctx, req.Storage)
	if err != nil {
		return nil, err
	}
	if cfg == nil {
		return logical.ErrorResponse("the engine has no Snyk credential: write snyk/config first"), nil
	}
	client, err := b.snykClient(ctx, req.Storage)
	if err != nil {
		return nil, err
	}
	if d.Get("switched_outside_vault").(bool) {
		if e.ProvisionalToken == "" {
			return logical.ErrorResponse("switched_outside_vault applies only while a provisional token is held (rotation_state provisioned or switch_pending); this integration holds none"), nil
		}
		// The operator's word stands where a lost answer would: a "nothing
		// to switch" answer now means the switch happened.
		e.SwitchOutcomeUnknown = true
	}
	if err := b.rotateNow(ctx, req.Storage, client, cfg, e); err != nil {
		var busy errLaneBusy
		if errors.As(err, &busy) {
			return logical.ErrorResponse(busy.Error()), nil
		}
		op := snyk.OpProvision
		if e.ProvisionalToken != "" {
			op = snyk.OpSwitch
		}
		if resp, callerErr := snykCallerError(err, e, op, "rotating the Broker token"); resp != nil {
			return resp, nil
		} else if snyk.StatusOf(err) == 0 {
			return nil, err
		} else {
			return nil, callerErr
		}
	}
	return &logical.Response{Data: e.statusData(cfg)}, nil
}

const pathBrokerHelpDesc = `
Reading broker/<name>/<scm> returns what a Snyk Broker client of this
integration needs, under a lease (secret type snyk_broker_token):

  broker_token        the token every Broker client must run with now
  broker_server_url   the region's Broker server
  org_id, integration_id, scm
  scm_token | scm_username + scm_password
  env                 the Broker client's environment, ready to render:
                      BROKER_TOKEN, BROKER_SERVER_URL (+ BROKER_CLIENT_URL), and
                      github: GITHUB_TOKEN GITHUB GITHUB_API GITHUB_GRAPHQL
                      github-enterprise: same, <host>/api/v3 and <host>/api
                      gitlab: GITLAB_TOKEN GITLAB
                      azure-repos: AZURE_REPOS_TOKEN AZURE_REPOS_ORG AZURE_REPOS_HOST
                      bitbucket-server: BITBUCKET_USERNAME+BITBUCKET_PASSWORD
                      or BITBUCKET_PAT, BITBUCKET, BITBUCKET_API
  next_broker_token, next_switch_at   only while a provisional token is held
  ttl, last_vault_rotation, next_vault_rotation, rotation_period or
  rotation_schedule/rotation_window

The lease is not renewable; its TTL is the integration's ttl but never past
the next scheduled switch, so consumers (Vault Agent) re-read right after it.
Revoking the lease changes nothing at Snyk: the token is shared. A read makes
no call to Snyk or the SCM, except with code_agent_role, where it creates
the Code Agent's service account.

  vault read snyk/broker/payments/github
`

const pathBrokerRotateHelpDesc = `
Rotate now, e.g. after a leak: provision a new Broker token (unless a
provisional token is already held, which is then used) and switch to it.
Broker clients pick the new token up at their next re-read (within ttl).
Like a database static role's manual rotation it restarts the schedule.

switched_outside_vault=true: the held provisional token was already switched
outside Vault (Snyk UI); Snyk's "nothing to switch" answer is then taken as
done. Without it that answer keeps the old token served, because Vault cannot
tell who switched what.

  vault write -f snyk/broker/payments/github/rotate
`
