package snyk

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
)

// Integration is an integration ID with the Broker token a call returned.
type Integration struct{ ID, BrokerToken string }

// v1 performs a v1 call, JSON-encoding in (when non-nil) and decoding the
// response into out (when non-nil). A 2xx body that does not decode is an
// error that never echoes the body: it may hold a token.
func (c *Client) v1(ctx context.Context, method, path string, idempotent bool, in, out any) (request, error) {
	rq := request{
		method:     method,
		path:       "/v1" + path,
		accept:     "application/json",
		idempotent: idempotent,
		kind:       kindV1,
	}
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return rq, fmt.Errorf("snyk: %s %s: encoding request: %w", method, c.basePath+rq.path, err)
		}
		rq.body = b
		rq.contentType = "application/json; charset=utf-8"
	}
	body, err := c.send(ctx, rq)
	if err != nil {
		return rq, err
	}
	if out != nil && json.Unmarshal(body, out) != nil {
		return rq, c.badResponse(rq, "unexpected response body")
	}
	return rq, nil
}

// ListIntegrations returns the org's integrations as type -> integration ID.
func (c *Client) ListIntegrations(ctx context.Context, orgID string) (map[string]string, error) {
	if err := required("org ID", orgID); err != nil {
		return nil, err
	}
	var out map[string]string
	if _, err := c.v1(ctx, http.MethodGet, "/org/"+seg(orgID)+"/integrations", true, nil, &out); err != nil {
		return nil, err
	}
	if out == nil {
		out = map[string]string{}
	}
	return out, nil
}

// IntegrationByType returns the ID of the org's integration of type typ.
func (c *Client) IntegrationByType(ctx context.Context, orgID, typ string) (string, error) {
	if err := required("org ID", orgID); err != nil {
		return "", err
	}
	if err := required("integration type", typ); err != nil {
		return "", err
	}
	var out struct {
		ID string `json:"id"`
	}
	rq, err := c.v1(ctx, http.MethodGet, "/org/"+seg(orgID)+"/integrations/"+seg(typ), true, nil, &out)
	if err != nil {
		return "", err
	}
	if out.ID == "" {
		return "", c.badResponse(rq, "the response has no id")
	}
	return out.ID, nil
}

type brokerSettings struct {
	Enabled bool `json:"enabled"`
}

type integrationResponse struct {
	ID          string `json:"id"`
	BrokerToken string `json:"brokerToken"`
}

// AddIntegration creates an integration of type typ. With broker set Snyk
// enables Broker and returns the integration's first Broker token; creds, if
// any, are sent along as credentials.
func (c *Client) AddIntegration(ctx context.Context, orgID, typ string, broker bool, creds map[string]string) (Integration, error) {
	if err := required("org ID", orgID); err != nil {
		return Integration{}, err
	}
	if err := required("integration type", typ); err != nil {
		return Integration{}, err
	}
	in := struct {
		Type        string            `json:"type"`
		Broker      *brokerSettings   `json:"broker,omitempty"`
		Credentials map[string]string `json:"credentials,omitempty"`
	}{Type: typ, Credentials: creds}
	if broker {
		in.Broker = &brokerSettings{Enabled: true}
	}
	var out integrationResponse
	rq, err := c.v1(ctx, http.MethodPost, "/org/"+seg(orgID)+"/integrations", false, in, &out)
	if err != nil {
		return Integration{}, err
	}
	if out.ID == "" {
		return Integration{}, c.badResponse(rq, "the response has no id")
	}
	if broker && out.BrokerToken == "" {
		return Integration{}, c.badResponse(rq, "the response has no brokerToken")
	}
	return Integration(out), nil
}

// EnableBroker enables Broker on an existing integration and returns its
// Broker token. What Snyk does when Broker is already enabled is not
// documented (same token, a new one, or an error), so never use it as a read.
func (c *Client) EnableBroker(ctx context.Context, orgID, integrationID, typ string) (Integration, error) {
	if err := required("org ID", orgID); err != nil {
		return Integration{}, err
	}
	if err := required("integration ID", integrationID); err != nil {
		return Integration{}, err
	}
	if err := required("integration type", typ); err != nil {
		return Integration{}, err
	}
	in := struct {
		Type   string         `json:"type"`
		Broker brokerSettings `json:"broker"`
	}{Type: typ, Broker: brokerSettings{Enabled: true}}
	var out integrationResponse
	// Not idempotent in effect: a first PUT may mint the integration's Broker
	// token, and a repeat after a lost answer could mint another (what Snyk
	// does on an already-brokered integration is undocumented). So a timeout
	// or a 5xx after sending is an unknown outcome, never retried.
	rq, err := c.v1(ctx, http.MethodPut, "/org/"+seg(orgID)+"/integrations/"+seg(integrationID), false, in, &out)
	if err != nil {
		return Integration{}, err
	}
	if out.BrokerToken == "" {
		return Integration{}, c.badResponse(rq, "the response has no brokerToken")
	}
	if out.ID == "" {
		out.ID = integrationID
	}
	return Integration(out), nil
}

// ProvisionToken issues a provisional Broker token. Snyk allows one per
// group and offers no way to cancel it, so a caller that gets an error
// wrapping httpx.ErrOutcomeUnknown must assume one may now exist.
func (c *Client) ProvisionToken(ctx context.Context, orgID, integrationID string) (string, error) {
	path, err := integrationPath(orgID, integrationID, "/authentication/provision-token")
	if err != nil {
		return "", err
	}
	var out struct {
		ID                     string `json:"id"`
		ProvisionalBrokerToken string `json:"provisionalBrokerToken"`
	}
	rq, err := c.v1(ctx, http.MethodPost, path, false, nil, &out)
	if err != nil {
		return "", err
	}
	if out.ProvisionalBrokerToken == "" {
		return "", c.badResponse(rq, "the response has no provisionalBrokerToken")
	}
	return out.ProvisionalBrokerToken, nil
}

// SwitchToken makes the provisional token current for every integration that
// shares the integration's token.
func (c *Client) SwitchToken(ctx context.Context, orgID, integrationID string) error {
	path, err := integrationPath(orgID, integrationID, "/authentication/switch-token")
	if err != nil {
		return err
	}
	// The 200 body is empty; nothing to decode.
	_, err = c.v1(ctx, http.MethodPost, path, false, nil, nil)
	return err
}

// CloneIntegration copies an integration, Broker token included, to another
// org of the same group and returns the new integration's ID.
func (c *Client) CloneIntegration(ctx context.Context, orgID, integrationID, destOrgID string) (string, error) {
	path, err := integrationPath(orgID, integrationID, "/clone")
	if err != nil {
		return "", err
	}
	if err := required("destination org ID", destOrgID); err != nil {
		return "", err
	}
	in := struct {
		DestinationOrgPublicID string `json:"destinationOrgPublicId"`
	}{destOrgID}
	var out struct {
		NewIntegrationID string `json:"newIntegrationId"`
	}
	rq, err := c.v1(ctx, http.MethodPost, path, false, in, &out)
	if err != nil {
		return "", err
	}
	if out.NewIntegrationID == "" {
		return "", c.badResponse(rq, "the response has no newIntegrationId")
	}
	return out.NewIntegrationID, nil
}

func integrationPath(orgID, integrationID, suffix string) (string, error) {
	if err := required("org ID", orgID); err != nil {
		return "", err
	}
	if err := required("integration ID", integrationID); err != nil {
		return "", err
	}
	return "/org/" + seg(orgID) + "/integrations/" + seg(integrationID) + suffix, nil
}
