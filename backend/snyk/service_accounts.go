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
	for _, f := range []struct{ name, v string }{{"owner ID", ownerID}, {"service account ID", serviceAccountID}, {"mode", mode}} {
		if err := required(f.name, f.v); err != nil {
			return "", err
		}
	}
	attrs := map[string]string{"mode": mode}
	if secret != "" {
		attrs["secret"] = secret
	}
	in := map[string]any{"data": map[string]any{"type": "service_account", "attributes": attrs}}
	body, _ := json.Marshal(in)
	rq := request{
		method:      http.MethodPost,
		path:        "/rest/" + scope + "/" + seg(ownerID) + "/service_accounts/" + seg(serviceAccountID) + "/secrets",
		query:       url.Values{"version": {restVersion}},
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
	// REST lists are paginated: follow links.next (its starting_after
	// cursor) until there is none, a bounded number of pages.
	var out []ServiceAccount
	after := ""
	for page := 0; page < maxListPages; page++ {
		q := url.Values{"version": {restVersion}, "limit": {"100"}}
		if after != "" {
			q.Set("starting_after", after)
		}
		rq := request{method: http.MethodGet, path: "/rest/" + scope + "/" + seg(ownerID) + "/service_accounts", query: q,
			accept: jsonAPI, contentType: jsonAPI, idempotent: true, kind: kindREST}
		body, err := c.send(ctx, rq)
		if err != nil {
			return nil, err
		}
		var doc struct {
			Data []struct {
				ID         string `json:"id"`
				Attributes struct {
					Name string `json:"name"`
				} `json:"attributes"`
			} `json:"data"`
			Links struct {
				Next string `json:"next"`
			} `json:"links"`
		}
		if json.Unmarshal(body, &doc) != nil {
			return nil, c.badResponse(rq, "unexpected response body")
		}
		for _, d := range doc.Data {
			out = append(out, ServiceAccount{ID: d.ID, Name: d.Attributes.Name})
		}
		if doc.Links.Next == "" || len(doc.Data) == 0 {
			return out, nil
		}
		next, err := url.Parse(doc.Links.Next)
		if err != nil || next.Query().Get("starting_after") == "" || next.Query().Get("starting_after") == after {
			return out, nil
		}
		after = next.Query().Get("starting_after")
	}
	return nil, fmt.Errorf("snyk: more than %d pages of service accounts in %s %s", maxListPages, scope, ownerID)
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
