package snyk

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
)

const jsonAPI = "application/vnd.api+json"

// Identity is the principal a credential authenticates as.
type Identity struct{ ID, Type, Name string }

// rest performs a REST GET and decodes the JSON:API document into out.
func (c *Client) rest(ctx context.Context, path string, out any) (request, error) {
	rq := request{
		method: http.MethodGet,
		path:   "/rest" + path,
		query:  url.Values{"version": {restVersion}},
		accept: jsonAPI,
		// Snyk's own examples send it even on a GET.
		contentType: jsonAPI,
		idempotent:  true,
		kind:        kindREST,
	}
	body, err := c.send(ctx, rq)
	if err != nil {
		return rq, err
	}
	if json.Unmarshal(body, out) != nil {
		return rq, c.badResponse(rq, "unexpected response body")
	}
	return rq, nil
}

// Verify checks the credential with the cheapest authenticated call there
// is, GET /rest/self, and returns whom it belongs to.
func (c *Client) Verify(ctx context.Context) (Identity, error) {
	var doc struct {
		Data struct {
			ID         string `json:"id"`
			Type       string `json:"type"`
			Attributes struct {
				Name     string `json:"name"`
				Username string `json:"username"`
			} `json:"attributes"`
		} `json:"data"`
	}
	rq, err := c.rest(ctx, "/self", &doc)
	if err != nil {
		return Identity{}, err
	}
	if doc.Data.ID == "" {
		return Identity{}, c.badResponse(rq, "the response has no data.id")
	}
	name := doc.Data.Attributes.Name
	if name == "" {
		name = doc.Data.Attributes.Username
	}
	return Identity{ID: doc.Data.ID, Type: doc.Data.Type, Name: name}, nil
}

// OrgGroupID returns the ID of the Snyk group an org belongs to, or "" for an
// org outside any group. Rotations are serialized per group because Snyk
// allows one provisional token per group.
func (c *Client) OrgGroupID(ctx context.Context, orgID string) (string, error) {
	if err := required("org ID", orgID); err != nil {
		return "", err
	}
	var doc struct {
		Data struct {
			ID         string `json:"id"`
			Attributes struct {
				GroupID *string `json:"group_id"`
			} `json:"attributes"`
		} `json:"data"`
	}
	rq, err := c.rest(ctx, "/orgs/"+seg(orgID), &doc)
	if err != nil {
		return "", err
	}
	if doc.Data.ID == "" {
		return "", c.badResponse(rq, "the response has no data.id")
	}
	if doc.Data.Attributes.GroupID == nil {
		return "", nil
	}
	return *doc.Data.Attributes.GroupID, nil
}
