package backend

import (
	"fmt"
	"strings"
	"time"

	"github.com/hashicorp/vault/sdk/framework"
	"github.com/snyk-vault/vault-plugin-secrets-snyk/backend/snyk"
)

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
		cfg.PendingClientSecret, cfg.PreviousClientSecret = "", ""
	case hasID || hasSecret:
		if hasID {
			cfg.ClientID = strings.TrimSpace(id.(string))
		}
		if hasSecret {
			cfg.ClientSecret = strings.TrimSpace(secret.(string))
			// A secret the operator writes ends any rotation in progress.
			cfg.PendingClientSecret, cfg.PreviousClientSecret = "", ""
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
			if p := checkHTTPSURL(f.name, *f.dst); p != "" && (f.name != "broker_server_url" || !isLoopbackHTTP(*f.dst)) {
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
	for _, f := range []struct {
		name string
		dst  *time.Duration
	}{{"scm_check_period", &cfg.SCMCheckPeriod}, {"scm_expiry_warning", &cfg.SCMExpiryWarning}} {
		if v, ok := d.GetOk(f.name); ok {
			if n := time.Duration(v.(int)) * time.Second; n <= 0 {
				problems = append(problems, fmt.Sprintf("%s must be a positive duration such as 24h", f.name))
			} else {
				*f.dst = n
			}
		}
	}
	for _, f := range []struct {
		name string
		dst  *string
	}{{"service_account_id", &cfg.ServiceAccountID}, {"service_account_org_id", &cfg.ServiceAccountOrgID}, {"service_account_group_id", &cfg.ServiceAccountGroupID}} {
		if v, ok := d.GetOk(f.name); ok {
			v := strings.ToLower(strings.TrimSpace(v.(string)))
			if v != "" && !isUUID(v) {
				problems = append(problems, fmt.Sprintf("%s must be a UUID, got %q", f.name, v))
			}
			*f.dst = v
		}
	}
	if cfg.ServiceAccountOrgID != "" && cfg.ServiceAccountGroupID != "" {
		problems = append(problems, "service_account_org_id and service_account_group_id are mutually exclusive: a service account belongs to an org or to a group")
	}
	if v, ok := d.GetOk("root_rotation_period"); ok {
		cfg.RootRotationPeriod = time.Duration(v.(int)) * time.Second
	}
	if cfg.RootRotationPeriod > 0 || cfg.ServiceAccountID != "" {
		scope, _ := cfg.serviceAccountScope()
		switch {
		case cfg.APIToken != "":
			problems = append(problems, "service_account_id and root_rotation_period apply to an OAuth service account (client_id, client_secret): Snyk has no API to rotate an API token")
		case cfg.ServiceAccountID == "" || scope == "":
			problems = append(problems, "rotating client_secret needs service_account_id and service_account_org_id (or service_account_group_id)")
		}
	}
	return problems
}
