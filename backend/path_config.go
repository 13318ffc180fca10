package backend

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sort"
	"strings"
	"time"

	"github.com/hashicorp/vault/sdk/framework"
	"github.com/hashicorp/vault/sdk/logical"

	"github.com/snyk-vault/vault-plugin-secrets-snyk/backend/httpx"
	"github.com/snyk-vault/vault-plugin-secrets-snyk/backend/snyk"
)

func pathConfig(b *backend) []*framework.Path {
	return []*framework.Path{{
		Pattern: "config",
		DisplayAttrs: &framework.DisplayAttributes{
			OperationPrefix: operationPrefix,
		},
		Fields: map[string]*framework.FieldSchema{
			"api_token": {
				Type:         framework.TypeString,
				Description:  "Snyk API token or service-account API key, sent as 'Authorization: token …'. Mutually exclusive with client_id/client_secret.",
				DisplayAttrs: &framework.DisplayAttributes{Name: "API token", Sensitive: true},
			},
			"client_id": {
				Type:         framework.TypeString,
				Description:  "Client ID of a Snyk OAuth service account (client-credentials grant).",
				DisplayAttrs: &framework.DisplayAttributes{Name: "OAuth client ID"},
			},
			"client_secret": {
				Type:         framework.TypeString,
				Description:  "Client secret of the Snyk OAuth service account.",
				DisplayAttrs: &framework.DisplayAttributes{Name: "OAuth client secret", Sensitive: true},
			},
			"region": {
				Type:          framework.TypeString,
				Description:   "Snyk region: SNYK-US-01 (default), SNYK-US-02, SNYK-EU-01 or SNYK-AU-01. Sets the API and broker-server URLs.",
				Default:       snyk.DefaultRegion,
				AllowedValues: regionNames(),
			},
			"api_url": {
				Type:        framework.TypeString,
				Description: "Overrides the region's API base URL (https only), e.g. https://api.eu.snyk.io.",
			},
			"broker_server_url": {
				Type:        framework.TypeString,
				Description: "Overrides the region's Broker server URL, e.g. https://broker.eu.snyk.io.",
			},
			"ca_cert": {
				Type:        framework.TypeString,
				Description: "PEM bundle trusted for the Snyk API and SCM hosts, in addition to the system roots.",
			},
			"ttl": {
				Type:        framework.TypeDurationSecond,
				Description: "Default lease TTL of broker secrets.",
				Default:     int(defaultTTL.Seconds()),
			},
			"rotation_period": {
				Type:        framework.TypeDurationSecond,
				Description: "Default rotation period of Broker tokens.",
				Default:     int(defaultRotationPeriod.Seconds()),
			},
			"provision_ahead": {
				Type:        framework.TypeDurationSecond,
				Description: "Default time before a scheduled switch at which the provisional token is provisioned.",
				Default:     int(defaultProvisionAhead.Seconds()),
			},
			"request_timeout": {
				Type:        framework.TypeDurationSecond,
				Description: "Timeout of each upstream call.",
				Default:     int(defaultRequestTimeout.Seconds()),
			},
			"skip_verify": {
				Type:        framework.TypeBool,
				Description: "Do not call Snyk to verify the credential on write.",
			},
			"rotation_requests_per_minute": {
				Type:        framework.TypeInt,
				Description: "Budget of Snyk requests per minute for the whole mount's rotations (Snyk allows 2,000 per user).",
				Default:     defaultRotationBudget,
			},
			"rotation_concurrency": {
				Type:        framework.TypeInt,
				Description: "How many integrations the rotation engine works on at once (one at a time per Snyk group).",
				Default:     defaultRotationWorkers,
			},
			"scm_check_period": {
				Type:        framework.TypeDurationSecond,
				Description: "How often every integration's SCM credential is checked again (scopes, role, expiry, revocation); integrations may override it.",
				Default:     int(defaultSCMCheckPeriod.Seconds()),
			},
			"service_account_id": {
				Type:        framework.TypeString,
				Description: "ID of the OAuth service account client_id belongs to; with service_account_org_id or service_account_group_id, it lets config/rotate-root rotate client_secret.",
			},
			"service_account_org_id": {
				Type:        framework.TypeString,
				Description: "The Snyk org that owns the service account (an org service account).",
			},
			"service_account_group_id": {
				Type:        framework.TypeString,
				Description: "The Snyk group that owns the service account (a group service account).",
			},
			"root_rotation_period": {
				Type:        framework.TypeDurationSecond,
				Description: "Rotate client_secret this often (0: only by config/rotate-root).",
			},
			"scm_expiry_warning": {
				Type:        framework.TypeDurationSecond,
				Description: "How long before an SCM token's expiry it is reported expiring (scm_status, a warning on broker reads, an event).",
				Default:     int(defaultSCMExpiryWarning.Seconds()),
			},
		},
		Operations: map[logical.Operation]framework.OperationHandler{
			logical.ReadOperation: &framework.PathOperation{
				Callback:     b.pathConfigRead,
				Summary:      "Read the Snyk configuration (secrets are never returned).",
				DisplayAttrs: &framework.DisplayAttributes{OperationSuffix: "configuration"},
				Responses: map[int][]framework.Response{http.StatusOK: {{
					Description: "OK",
					Fields:      configResponseFields,
				}}},
			},
			logical.CreateOperation: forwarded(b.pathConfigWrite, "Configure the Snyk credential and mount-wide defaults.", &framework.DisplayAttributes{OperationVerb: "configure"}),
			logical.UpdateOperation: forwarded(b.pathConfigWrite, "Configure the Snyk credential and mount-wide defaults.", &framework.DisplayAttributes{OperationVerb: "configure"}),
			logical.DeleteOperation: forwarded(b.pathConfigDelete, "Delete the Snyk configuration.", &framework.DisplayAttributes{OperationSuffix: "configuration"}),
		},
		ExistenceCheck:  b.pathConfigExists,
		HelpSynopsis:    pathConfigHelpSyn,
		HelpDescription: pathConfigHelpDesc,
	}, {
		Pattern: "config/rotate-root$",
		DisplayAttrs: &framework.DisplayAttributes{
			OperationPrefix: operationPrefix,
			OperationVerb:   "rotate",
			OperationSuffix: "root",
		},
		Operations: map[logical.Operation]framework.OperationHandler{
			logical.UpdateOperation: forwarded(b.pathConfigRotateRoot, "Rotate the engine's OAuth client secret, never losing a working one.", nil),
		},
		HelpSynopsis:    "Rotate the engine's own Snyk credential.",
		HelpDescription: pathConfigRotateRootHelpDesc,
	}}
}

var configResponseFields = map[string]*framework.FieldSchema{
	"auth_method":                  {Type: framework.TypeString, Description: "api_token or oauth_client_credentials"},
	"client_id":                    {Type: framework.TypeString},
	"credential_fingerprint":       {Type: framework.TypeString, Description: "Short SHA-256 prefix of the credential"},
	"region":                       {Type: framework.TypeString},
	"api_url":                      {Type: framework.TypeString},
	"broker_server_url":            {Type: framework.TypeString},
	"ca_cert":                      {Type: framework.TypeString},
	"ttl":                          {Type: framework.TypeDurationSecond},
	"rotation_period":              {Type: framework.TypeDurationSecond},
	"provision_ahead":              {Type: framework.TypeDurationSecond},
	"request_timeout":              {Type: framework.TypeDurationSecond},
	"skip_verify":                  {Type: framework.TypeBool},
	"rotation_requests_per_minute": {Type: framework.TypeInt},
	"rotation_concurrency":         {Type: framework.TypeInt},
	"scm_check_period":             {Type: framework.TypeDurationSecond},
	"scm_expiry_warning":           {Type: framework.TypeDurationSecond},
	"service_account_id":           {Type: framework.TypeString},
	"service_account_org_id":       {Type: framework.TypeString},
	"service_account_group_id":     {Type: framework.TypeString},
	"root_rotation_period":         {Type: framework.TypeDurationSecond},
	"root_rotated_at":              {Type: framework.TypeTime},
	"root_rotation_error":          {Type: framework.TypeString},
}

func regionNames() []interface{} {
	names := make([]string, 0, len(snyk.Regions))
	for n := range snyk.Regions {
		names = append(names, n)
	}
	sort.Strings(names)
	out := make([]interface{}, len(names))
	for i, n := range names {
		out[i] = n
	}
	return out
}

func (b *backend) pathConfigExists(ctx context.Context, req *logical.Request, _ *framework.FieldData) (bool, error) {
	cfg, err := b.config(ctx, req.Storage)
	return cfg != nil, err
}

func (b *backend) pathConfigRead(ctx context.Context, req *logical.Request, _ *framework.FieldData) (*logical.Response, error) {
	cfg, err := b.config(ctx, req.Storage)
	if err != nil || cfg == nil {
		return nil, err
	}
	data := map[string]interface{}{
		"auth_method":                  cfg.authMethod(),
		"credential_fingerprint":       cfg.fingerprint(),
		"region":                       cfg.Region,
		"api_url":                      cfg.effectiveAPIURL(),
		"broker_server_url":            cfg.effectiveBrokerServerURL(),
		"ca_cert":                      cfg.CACert,
		"ttl":                          int64(cfg.TTL.Seconds()),
		"rotation_period":              int64(cfg.RotationPeriod.Seconds()),
		"provision_ahead":              int64(cfg.ProvisionAhead.Seconds()),
		"request_timeout":              int64(cfg.RequestTimeout.Seconds()),
		"skip_verify":                  cfg.SkipVerify,
		"rotation_requests_per_minute": cfg.rotationBudget(),
		"rotation_concurrency":         cfg.rotationWorkers(),
		"scm_check_period":             int64(cfg.scmCheckPeriod().Seconds()),
		"scm_expiry_warning":           int64(cfg.scmExpiryWarning().Seconds()),
		"root_rotation_period":         int64(cfg.RootRotationPeriod.Seconds()),
		"root_rotated_at":              timeOrNil(cfg.RootRotatedAt),
		"root_rotation_error":          cfg.RootRotationError,
	}
	if cfg.ClientID != "" {
		data["client_id"] = cfg.ClientID
	}
	for k, v := range map[string]string{"service_account_id": cfg.ServiceAccountID, "service_account_org_id": cfg.ServiceAccountOrgID, "service_account_group_id": cfg.ServiceAccountGroupID} {
		if v != "" {
			data[k] = v
		}
	}
	return &logical.Response{Data: data}, nil
}

func (b *backend) pathConfigWrite(ctx context.Context, req *logical.Request, d *framework.FieldData) (*logical.Response, error) {
	b.configWriteMu.Lock()
	defer b.configWriteMu.Unlock()
	existing, err := getConfig(ctx, req.Storage)
	if err != nil {
		return nil, err
	}
	cfg := existing
	if cfg == nil {
		cfg = defaultConfig()
	}

	before := *cfg
	problems := applyConfigFields(cfg, d)
	if existing != nil {
		problems = append(problems, configTrustProblems(&before, cfg, d)...)
	}
	if len(problems) > 0 {
		return logical.ErrorResponse(strings.Join(problems, "; ")), nil
	}
	switch {
	case cfg.RootRotationPeriod <= 0:
		cfg.RootRotationSince = time.Time{}
	case cfg.RootRotationSince.IsZero():
		cfg.RootRotationSince = b.now().UTC()
	}
	// New defaults must still make sense for every integration inheriting
	// them (provision_ahead below each one's period, …).
	entries, err := listIntegrations(ctx, req.Storage)
	if err != nil {
		return nil, err
	}
	for _, e := range entries {
		for _, p := range e.policy(cfg).problems(b.now()) {
			problems = append(problems, fmt.Sprintf("integration %s/%s: %s", e.Name, e.SCM, p))
		}
	}
	if len(problems) > 0 {
		return logical.ErrorResponse("these defaults conflict with integrations that inherit them (change the defaults or the integrations' overrides): " + strings.Join(problems, "; ")), nil
	}

	client, err := b.newSnykClient(cfg)
	if err != nil {
		// Every input NewClient checks (URL, CA bundle) is the caller's.
		return logical.ErrorResponse(err.Error()), nil
	}
	if !cfg.SkipVerify {
		if resp, err := verifySnykCredential(ctx, client); resp != nil || err != nil {
			return resp, err
		}
	}

	if err := putConfig(ctx, req.Storage, cfg); err != nil {
		return nil, err
	}
	b.resetClient()
	// Queue times depend on the defaults (provision_ahead). The entries read
	// above are older than the Snyk call that verified the credential; a
	// rotation may have moved on since, so each is read again under its lock.
	for _, e := range entries {
		b.requeue(ctx, req.Storage, e.Name, e.SCM, cfg)
	}
	b.rotation.scheduleRootRotation(cfg)
	// A response (the config as a read shows it) so that Vault can attach
	// its warning about fields this path does not know.
	return b.pathConfigRead(ctx, req, d)
}

// requeue schedules an integration from its current stored state.
func (b *backend) requeue(ctx context.Context, s logical.Storage, name, scmKind string, cfg *snykConfig) {
	unlock := b.lockIntegration(name, scmKind)
	defer unlock()
	e, err := b.currentIntegration(ctx, s, name, scmKind)
	switch {
	case err != nil:
		b.log().Warn("could not requeue an integration after a config change; the loop finds it at its next action", "integration", name+"/"+scmKind, "error", err)
	case e != nil:
		b.rotation.schedule(e, cfg)
	}
}

// verifySnykCredential makes one cheap authenticated call. A credential Snyk
// rejects is the caller's problem (400 with Snyk's message); anything else is
// a fault.
func verifySnykCredential(ctx context.Context, client *snyk.Client) (*logical.Response, error) {
	_, err := client.Verify(ctx)
	if err == nil {
		return nil, nil
	}
	status := snyk.StatusOf(err)
	switch {
	case status == http.StatusUnauthorized || status == http.StatusForbidden || status == http.StatusBadRequest:
		return logical.ErrorResponse(fmt.Sprintf("Snyk rejected the credential (%s): check api_token, or client_id/client_secret, and that it belongs to this region's API", err)), nil
	case status == http.StatusNotFound:
		return logical.ErrorResponse(fmt.Sprintf("Snyk API not found at api_url (%s): check region or api_url", err)), nil
	case errors.Is(err, httpx.ErrOutcomeUnknown):
		return nil, fmt.Errorf("verifying the Snyk credential: %w", err)
	default:
		return nil, fmt.Errorf("verifying the Snyk credential (set skip_verify=true to store it unchecked): %w", err)
	}
}

func (b *backend) pathConfigDelete(ctx context.Context, req *logical.Request, _ *framework.FieldData) (*logical.Response, error) {
	b.configWriteMu.Lock()
	defer b.configWriteMu.Unlock()
	if err := req.Storage.Delete(ctx, configStoragePath); err != nil {
		return nil, err
	}
	b.resetClient()
	return nil, nil
}

const pathConfigHelpSyn = `Configure the Snyk credential, region and engine-wide defaults.`

const pathConfigHelpDesc = `
The engine calls Snyk's API with this credential to enable Broker on
integrations and to provision and switch Broker tokens.

Credential (one of):
  api_token                   Snyk API token or service-account API key.
  client_id, client_secret    OAuth service account (client-credentials grant);
                              the access token is cached until shortly before
                              it expires.

Region: region (SNYK-US-01 default, SNYK-US-02, SNYK-EU-01, SNYK-AU-01) sets
the API and Broker server URLs; api_url and broker_server_url override them.
ca_cert adds a PEM bundle to the trusted roots for Snyk and SCM calls.

Defaults for integrations: ttl (lease TTL of broker secrets, 1h),
rotation_period (2160h), provision_ahead (1h). request_timeout bounds each
upstream call (30s).

A write verifies the credential with one cheap authenticated call unless
skip_verify=true; a rejected credential is a 400 and nothing is stored.
Reading returns every field except the secrets, plus auth_method and
credential_fingerprint.

  vault write snyk/config api_token=@snyk-token region=SNYK-EU-01
`
