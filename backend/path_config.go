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
	}
	if cfg.ClientID != "" {
		data["client_id"] = cfg.ClientID
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

// configTrustProblems enforces the trust boundary of the stored Snyk
// credential: a write that changes where it is sent (api_url, region), who is
// trusted to receive it (ca_cert), or where Broker clients send their tokens
// (broker_server_url) must carry the credential itself. Otherwise anyone
// allowed to update snyk/config, without being able to read a secret, could
// point Vault, or every Broker client, at a host of their choosing and
// collect the credential.
func configTrustProblems(before, after *snykConfig, d *framework.FieldData) []string {
	_, hasToken := d.GetOk("api_token")
	_, hasSecret := d.GetOk("client_secret")
	if hasToken || hasSecret {
		return nil
	}
	var changed []string
	if before.effectiveAPIURL() != after.effectiveAPIURL() {
		if _, ok := d.GetOk("api_url"); ok {
			changed = append(changed, "api_url")
		} else {
			changed = append(changed, "region")
		}
	}
	if before.effectiveBrokerServerURL() != after.effectiveBrokerServerURL() {
		changed = append(changed, "broker_server_url")
	}
	if before.CACert != after.CACert {
		changed = append(changed, "ca_cert")
	}
	if len(changed) == 0 {
		return nil
	}
	return []string{fmt.Sprintf("%s decide(s) where the Snyk credential and the Broker tokens are sent: "+
		"send the credential in the same write (api_token=…, or client_id with client_secret=…)", strings.Join(changed, ", "))}
}

// applyConfigFields merges the request into cfg and returns every problem
// found, each naming the field and the fix. Fields not sent keep their value,
// so `vault write snyk/config ttl=2h` does not drop the credential.
func applyConfigFields(cfg *snykConfig, d *framework.FieldData) []string {
	var problems []string

	token, hasToken := d.GetOk("api_token")
	id, hasID := d.GetOk("client_id")
	secret, hasSecret := d.GetOk("client_secret")
	switch {
	case hasToken && (hasID || hasSecret):
		problems = append(problems, "api_token and client_id/client_secret are mutually exclusive: send either an API token or an OAuth service account's client_id and client_secret")
	case hasToken:
		cfg.APIToken = strings.TrimSpace(token.(string))
		cfg.ClientID, cfg.ClientSecret = "", ""
	case hasID || hasSecret:
		if hasID {
			cfg.ClientID = strings.TrimSpace(id.(string))
		}
		if hasSecret {
			cfg.ClientSecret = strings.TrimSpace(secret.(string))
		}
		// Switching from an API token to OAuth drops the token.
		cfg.APIToken = ""
	}
	if cfg.APIToken == "" && (cfg.ClientID == "" || cfg.ClientSecret == "") {
		switch {
		case cfg.ClientID != "" && cfg.ClientSecret == "":
			problems = append(problems, "client_secret is required with client_id: send the OAuth service account's client_secret")
		case cfg.ClientID == "" && cfg.ClientSecret != "":
			problems = append(problems, "client_id is required with client_secret: send the OAuth service account's client_id")
		default:
			problems = append(problems, "a Snyk credential is required: set api_token, or client_id and client_secret of an OAuth service account")
		}
	}

	if v, ok := d.GetOk("region"); ok {
		cfg.Region = strings.ToUpper(strings.TrimSpace(v.(string)))
	}
	if _, ok := snyk.Regions[cfg.Region]; !ok {
		problems = append(problems, fmt.Sprintf("region %q is not a Snyk region: use one of SNYK-US-01, SNYK-US-02, SNYK-EU-01, SNYK-AU-01 (or set api_url and broker_server_url)", cfg.Region))
	}
	for _, f := range []struct {
		name string
		dst  *string
	}{{"api_url", &cfg.APIURL}, {"broker_server_url", &cfg.BrokerServerURL}} {
		if v, ok := d.GetOk(f.name); ok {
			*f.dst = normalizeURL(v.(string))
		}
		if *f.dst != "" {
			// Broker clients send their token to the broker server; a
			// plain-http one is allowed only on loopback, for local testing.
			if p := checkHTTPSURL(f.name, *f.dst); p != "" && !(f.name == "broker_server_url" && isLoopbackHTTP(*f.dst)) {
				problems = append(problems, p)
			}
		}
	}
	if v, ok := d.GetOk("ca_cert"); ok {
		cfg.CACert = strings.TrimSpace(v.(string))
	}

	for _, f := range []struct {
		name string
		dst  *time.Duration
	}{
		{"ttl", &cfg.TTL},
		{"rotation_period", &cfg.RotationPeriod},
		{"provision_ahead", &cfg.ProvisionAhead},
		{"request_timeout", &cfg.RequestTimeout},
	} {
		if v, ok := d.GetOk(f.name); ok {
			*f.dst = time.Duration(v.(int)) * time.Second
		}
		if *f.dst <= 0 {
			problems = append(problems, fmt.Sprintf("%s must be a positive duration such as 1h or 30s", f.name))
		}
	}
	if cfg.ProvisionAhead > 0 && cfg.RotationPeriod > 0 && cfg.ProvisionAhead >= cfg.RotationPeriod {
		problems = append(problems, fmt.Sprintf("provision_ahead (%s) must be shorter than rotation_period (%s): the provisional token is obtained that long before each switch", cfg.ProvisionAhead, cfg.RotationPeriod))
	}
	if v, ok := d.GetOk("skip_verify"); ok {
		cfg.SkipVerify = v.(bool)
	}
	if v, ok := d.GetOk("rotation_requests_per_minute"); ok {
		if n := v.(int); n < 1 || n > 2000 {
			problems = append(problems, fmt.Sprintf("rotation_requests_per_minute must be between 1 and 2000 (Snyk's v1 limit per user), got %d", n))
		} else {
			cfg.RotationRequestsPerMinute = n
		}
	}
	if v, ok := d.GetOk("rotation_concurrency"); ok {
		if n := v.(int); n < 1 || n > 64 {
			problems = append(problems, fmt.Sprintf("rotation_concurrency must be between 1 and 64, got %d", n))
		} else {
			cfg.RotationConcurrency = n
		}
	}
	return problems
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
