package snyk

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
)

// Secret modes of a service account (Snyk REST "Manage secret"): create adds
// a secret beside the existing one (at most two exist), delete removes one
// by value (at least one stays), replace swaps all for one new secret.
const (
	SecretModeCreate  = "create"
	SecretModeDelete  = "delete"
	SecretModeReplace = "replace"
)

// ManageServiceAccountSecret calls POST /rest/{orgs|groups}/{owner}/
// service_accounts/{sa}/secrets. For create and replace it returns the new
// client secret, which Snyk shows only in this answer: the caller must store
// it before anything else. Not idempotent: a lost answer is an unknown
// outcome (an extra secret may exist).
func (c *Client) ManageServiceAccountSecret(ctx context.Context, scope, ownerID, serviceAccountID, mode, secret string) (string, error) {
	if scope != "orgs" && scope != "groups" {
		return "", fmt.Errorf("snyk: service account scope must be orgs or groups, got %q", scope)
	}
	if err := requiredAll("owner ID", ownerID, "service account ID", serviceAccountID, "mode", mode); err != nil {
		return "", err
	}
	return c.manageSecret(ctx, "/rest/"+scope+"/"+seg(ownerID)+"/service_accounts/"+seg(serviceAccountID)+"/secrets", restVersion, "service_account", mode, secret)
}

// manageSecret is Snyk's one shape of "manage secret" call (service
// accounts and app installs alike): {"data":{"type",
// "attributes":{"mode","secret"}}}, answered with data.attributes.client_secret
// for create and replace.
func (c *Client) manageSecret(ctx context.Context, path, version, resourceType, mode, secret string) (string, error) {
	attrs := map[string]string{"mode": mode}
	if secret != "" {
		attrs["secret"] = secret
	}
	in := map[string]any{"data": map[string]any{"type": resourceType, "attributes": attrs}}
	body, _ := json.Marshal(in)
	rq := request{
		method:      http.MethodPost,
		path:        path,
		query:       url.Values{"version": {version}},
		accept:      jsonAPI,
		contentType: jsonAPI,
		body:        body,
		kind:        kindREST,
	}
	out, err := c.send(ctx, rq)
	if err != nil {
		// The secret sent for deletion is a credential: never echo it.
		if secret != "" && strings.Contains(err.Error(), secret) {
			var ae *APIError
			if errors.As(err, &ae) {
				ae.Message = strings.ReplaceAll(ae.Message, secret, "[redacted]")
				return "", ae
			}
			return "", errors.New(strings.ReplaceAll(err.Error(), secret, "[redacted]"))
		}
		return "", err
	}
	if mode == SecretModeDelete {
		return "", nil
	}
	var doc struct {
		Data struct {
			Attributes struct {
				ClientSecret string `json:"client_secret"`
			} `json:"attributes"`
		} `json:"data"`
	}
	if json.Unmarshal(out, &doc) != nil || doc.Data.Attributes.ClientSecret == "" {
		return "", c.badResponse(rq, "the response has no data.attributes.client_secret")
	}
	return doc.Data.Attributes.ClientSecret, nil
}

// ServiceAccount is a service account as a list shows it (no credential).
type ServiceAccount struct{ ID, Name string }

// CreateAPIKeyServiceAccount creates a service account with auth_type
// api_key for roleID under an org or group (scope "orgs" or "groups") and
// returns its ID and API key, which Snyk shows only in this answer. Not
// idempotent: a lost answer is an unknown outcome (the account may exist).
func (c *Client) CreateAPIKeyServiceAccount(ctx context.Context, scope, ownerID, name, roleID string) (id, apiKey string, err error) {
	if scope != "orgs" && scope != "groups" {
		return "", "", fmt.Errorf("snyk: service account scope must be orgs or groups, got %q", scope)
	}
	for _, f := range []struct{ name, v string }{{"owner ID", ownerID}, {"name", name}, {"role ID", roleID}} {
		if err := required(f.name, f.v); err != nil {
			return "", "", err
		}
	}
	body, _ := json.Marshal(map[string]any{"data": map[string]any{"type": "service_account", "attributes": map[string]string{
		"name": name, "auth_type": "api_key", "role_id": roleID,
	}}})
	rq := request{
		method: http.MethodPost, path: "/rest/" + scope + "/" + seg(ownerID) + "/service_accounts",
		query: url.Values{"version": {restVersion}}, accept: jsonAPI, contentType: jsonAPI, body: body, kind: kindREST,
	}
	out, err := c.send(ctx, rq)
	if err != nil {
		return "", "", err
	}
	var doc struct {
		Data struct {
			ID         string `json:"id"`
			Attributes struct {
				APIKey string `json:"api_key"`
			} `json:"attributes"`
		} `json:"data"`
	}
	if json.Unmarshal(out, &doc) != nil || doc.Data.ID == "" || doc.Data.Attributes.APIKey == "" {
		return "", "", c.badResponse(rq, "the response has no data.id or data.attributes.api_key")
	}
	return doc.Data.ID, doc.Data.Attributes.APIKey, nil
}

// ListServiceAccounts lists an org's or group's service accounts.
func (c *Client) ListServiceAccounts(ctx context.Context, scope, ownerID string) ([]ServiceAccount, error) {
	if scope != "orgs" && scope != "groups" {
		return nil, fmt.Errorf("snyk: service account scope must be orgs or groups, got %q", scope)
	}
	var out []ServiceAccount
	err := c.listAll(ctx, "/rest/"+scope+"/"+seg(ownerID)+"/service_accounts", restVersion, func(rs []jsonResource) error {
		for _, r := range rs {
			var a struct {
				Name string `json:"name"`
			}
			_ = json.Unmarshal(r.Attributes, &a)
			out = append(out, ServiceAccount{ID: r.ID, Name: a.Name})
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// maxListPages bounds a paginated list (100 items a page).
const maxListPages = 100

// DeleteServiceAccount deletes a service account, which revokes its
// credentials. Deleting is idempotent in effect, so it is retried.
func (c *Client) DeleteServiceAccount(ctx context.Context, scope, ownerID, id string) error {
	if scope != "orgs" && scope != "groups" {
		return fmt.Errorf("snyk: service account scope must be orgs or groups, got %q", scope)
	}
	rq := request{
		method: http.MethodDelete, path: "/rest/" + scope + "/" + seg(ownerID) + "/service_accounts/" + seg(id),
		query: url.Values{"version": {restVersion}}, accept: jsonAPI, idempotent: true, kind: kindREST,
	}
	_, err := c.send(ctx, rq)
	return err
}
