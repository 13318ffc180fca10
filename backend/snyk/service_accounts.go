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
