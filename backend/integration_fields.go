package backend

import (
	"github.com/hashicorp/vault/sdk/framework"
	"github.com/snyk-vault/vault-plugin-secrets-snyk/backend/scm"
)

// Path segments are matched loosely and validated in the handlers, so that a
// bad org name or SCM gets a 400 that says what is wrong instead of an
// "unsupported path" from the router.
const (
	nameSegment = `(?P<name>[^/]+)`
	scmSegment  = `(?P<scm>[^/]+)`
)

var pathNameFields = map[string]*framework.FieldSchema{
	"name": {
		Type:        framework.TypeString,
		Description: "The org's name in Vault paths: a Snyk org ID (UUID), or a slug [a-z0-9][a-z0-9._-]* together with org_id.",
		Required:    true,
	},
	"scm": {
		Type:          framework.TypeString,
		Description:   "SCM of the integration: github, github-enterprise, gitlab, azure-repos or bitbucket-server.",
		Required:      true,
		AllowedValues: []interface{}{scm.GitHub, scm.GitHubEnterprise, scm.GitLab, scm.AzureRepos, scm.BitbucketServer},
	},
}

func integrationFields() map[string]*framework.FieldSchema {
	f := map[string]*framework.FieldSchema{
		"org_id": {
			Type:        framework.TypeString,
			Description: "Snyk org ID (UUID); defaults to the name when the name is a UUID.",
		},
		"integration_id": {
			Type:        framework.TypeString,
			Description: "Snyk integration ID; discovered from the org's integrations when omitted (and created, brokered, when the org has none of this type).",
		},
		"scm_token": {
			Type:         framework.TypeString,
			Description:  "GitHub/GHE/GitLab/Azure personal access token, or a Bitbucket Server HTTP access token (sent as bearer).",
			DisplayAttrs: &framework.DisplayAttributes{Name: "SCM token", Sensitive: true},
		},
		"scm_username": {
			Type:        framework.TypeString,
			Description: "Bitbucket Server username (basic auth, with scm_password).",
		},
		"scm_password": {
			Type:         framework.TypeString,
			Description:  "Bitbucket Server password or HTTP access token used with scm_username.",
			DisplayAttrs: &framework.DisplayAttributes{Name: "SCM password", Sensitive: true},
		},
		"scm_url": {
			Type:        framework.TypeString,
			Description: "SCM base URL (https). Required for github-enterprise and bitbucket-server; defaults to https://github.com, https://gitlab.com, https://dev.azure.com.",
		},
		"scm_api_url": {
			Type:        framework.TypeString,
			Description: "SCM API base URL when it is not the default derived from scm_url.",
		},
		"azure_org": {
			Type:        framework.TypeString,
			Description: "Azure DevOps organization; required for azure-repos.",
		},
		"broker_client_url": {
			Type:        framework.TypeString,
			Description: "The Broker client's URL as the SCM's webhooks reach it; passed through as BROKER_CLIENT_URL.",
		},
		"promote_token_owner": {
			Type:        framework.TypeBool,
			Description: "On a sharer (a clone): make it the owner of its token family, which then rotates the token; the old owner becomes a sharer.",
		},
		"code_agent_role": {
			Type:        framework.TypeString,
			Description: "A role of snyk/roles: broker reads add SNYK_TOKEN (a Snyk service account of that role, leased with the bundle) for the Snyk Code Agent. Empty to stop.",
		},
		"broker_token": {
			Type:         framework.TypeString,
			Description:  "Import an existing Broker token (UUID) instead of having one issued. Write-only.",
			DisplayAttrs: &framework.DisplayAttributes{Name: "Broker token", Sensitive: true},
		},
		"broker_token_source": {
			Type: framework.TypeString,
			Description: "On create only, how Vault obtains the Broker token when broker_token is not given: " +
				"auto (default: ask Snyk for a provisional token, and enable Broker only if Snyk answers that the integration is not brokered), " +
				"enable (the integration is not brokered yet: enable Broker, never provision), " +
				"adopt (it is already brokered: obtain a provisional token, never enable Broker). Write-only.",
			AllowedValues: []interface{}{tokenSourceAuto, tokenSourceEnable, tokenSourceAdopt},
		},
		"skip_scm_validation": {
			Type:        framework.TypeBool,
			Description: "Store the SCM credential without checking it.",
		},
		"ttl": {
			Type:        framework.TypeDurationSecond,
			Description: "Lease TTL of this integration's broker secret; defaults to config's ttl.",
		},
		"rotation_period": {
			Type:        framework.TypeDurationSecond,
			Description: "Rotate the Broker token this often; mutually exclusive with rotation_schedule. Defaults to config's rotation_period.",
		},
		"rotation_schedule": {
			Type:        framework.TypeString,
			Description: "5-field cron schedule (UTC) of Broker token switches; mutually exclusive with rotation_period.",
		},
		"rotation_window": {
			Type:        framework.TypeDurationSecond,
			Description: "With rotation_schedule only: how long after a scheduled time a rotation may still start (at least 1h).",
		},
		"provision_ahead": {
			Type:        framework.TypeDurationSecond,
			Description: "How long before a scheduled switch the provisional token is obtained; defaults to config's provision_ahead.",
		},
		"scm_token_auto_rotate": {
			Type:        framework.TypeBool,
			Description: "GitLab only: rotate the personal access token (personal_access_tokens/self/rotate) scm_rotate_before_expiry before it expires.",
		},
		"scm_rotate_before_expiry": {
			Type:        framework.TypeDurationSecond,
			Description: "How long before the GitLab token's expiry it is rotated (default 168h).",
		},
		"scm_check_period": {
			Type:        framework.TypeDurationSecond,
			Description: "How often this integration's SCM credential is checked again; defaults to config's scm_check_period.",
		},
		"disable_automated_rotation": {
			Type:        framework.TypeBool,
			Description: "Never rotate on a schedule; only broker/<name>/<scm>/rotate rotates.",
		},
	}
	for k, v := range pathNameFields {
		f[k] = v
	}
	return f
}

var integrationResponseFields = map[string]*framework.FieldSchema{
	"name":                     {Type: framework.TypeString},
	"scm":                      {Type: framework.TypeString},
	"org_id":                   {Type: framework.TypeString},
	"integration_id":           {Type: framework.TypeString},
	"scm_url":                  {Type: framework.TypeString},
	"scm_api_url":              {Type: framework.TypeString},
	"rotation_state":           {Type: framework.TypeString, Description: "active, provisioned or switch_pending"},
	"last_vault_rotation":      {Type: framework.TypeTime},
	"next_vault_rotation":      {Type: framework.TypeTime},
	"last_rotation_error":      {Type: framework.TypeString},
	"scm_scopes":               {Type: framework.TypeStringSlice},
	"scm_token_expires_at":     {Type: framework.TypeTime},
	"scm_validated_at":         {Type: framework.TypeTime},
	"broker_token_fingerprint": {Type: framework.TypeString},
	"token_source":             {Type: framework.TypeString},
	"code_agent_role":          {Type: framework.TypeString},
	"scm_status":               {Type: framework.TypeString, Description: "ok, expiring, invalid or unknown: the SCM credential's last check"},
	"scm_checked_at":           {Type: framework.TypeTime},
	"scm_problems":             {Type: framework.TypeStringSlice},
	"scm_check_period":         {Type: framework.TypeDurationSecond},
	"scm_token_auto_rotate":    {Type: framework.TypeBool},
	"scm_rotate_before_expiry": {Type: framework.TypeDurationSecond},
	"scm_rotated_at":           {Type: framework.TypeTime},
	"next_scm_rotation":        {Type: framework.TypeTime},
	"scm_rotation_error":       {Type: framework.TypeString},
	"switch_outcome_unknown":   {Type: framework.TypeBool, Description: "while a provisional token is held: a switch of it was sent and its answer lost"},
	"ttl":                      {Type: framework.TypeDurationSecond},
	"rotation_period":          {Type: framework.TypeDurationSecond},
	"rotation_schedule":        {Type: framework.TypeString},
	"rotation_window":          {Type: framework.TypeDurationSecond},
	"provision_ahead":          {Type: framework.TypeDurationSecond},
}
