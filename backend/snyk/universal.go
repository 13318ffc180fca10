package snyk

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"sort"
)

// Snyk's Universal Broker API (REST, tenant admin): a deployment's
// credential references and connections, and the Snyk Broker App install's
// client secrets. Reads only, plus the install-secret call; the engine never
// creates or changes deployments, references or connections.

// Versions of the Universal Broker calls, as Snyk's own snyk-broker-config
// sends them: the /tenants/{t}/brokers paths went GA at 2024-10-15, the
// install-secrets endpoint is published at 2024-05-23.
const (
	universalVersion     = "2024-10-15"
	installSecretVersion = "2024-05-23"
	appInstallsVersion   = "2024-05-31"
)

// AppInstall is an app installed in an org, as the org's list shows it (no
// secret).
type AppInstall struct{ ID, ClientID string }

// ListAppInstalls lists the app installs of an org.
func (c *Client) ListAppInstalls(ctx context.Context, orgID string) ([]AppInstall, error) {
	if err := required("org ID", orgID); err != nil {
		return nil, err
	}
	var out []AppInstall
	err := c.listAll(ctx, "/rest/orgs/"+seg(orgID)+"/apps/installs", appInstallsVersion, func(rs []jsonResource) error {
		for _, r := range rs {
			var a struct {
				ClientID string `json:"client_id"`
			}
			_ = json.Unmarshal(r.Attributes, &a)
			out = append(out, AppInstall{ID: r.ID, ClientID: a.ClientID})
		}
		return nil
	})
	return out, err
}

// Deployment is a Universal Broker deployment as its install's list shows it.
type Deployment struct {
	ID, InstallID, InstallOrgID string
}

// CredentialReference names one environment variable of a deployment's
// client; its value never reaches Snyk.
type CredentialReference struct {
	ID      string
	EnvName string
	Type    string // a connection type, e.g. github
	Comment string
}

// Connection is one connection of a deployment. Required holds its
// configuration values as strings; a credential field reads "${ENV_NAME}".
type Connection struct {
	ID, Name, Type, Identifier string
	Required                   map[string]string
}

// BrokerContext overrides some of a connection's parameters for one
// integration; sensitive values are "${ENV_NAME}" references too.
type BrokerContext struct {
	ID           string
	ConnectionID string
	Values       map[string]string
}

// placeholderRE finds the "${ENV_NAME}" references of a value, as the
// Broker client expands them from its environment.
var placeholderRE = regexp.MustCompile(`\$\{([^}]+)\}`)

// References returns the environment variable names a value refers to.
func References(value string) []string {
	var out []string
	for _, m := range placeholderRE.FindAllStringSubmatch(value, -1) {
		out = append(out, m[1])
	}
	return out
}

// ReferencedNames returns the sorted, distinct env names values refer to.
func ReferencedNames(values map[string]string) []string {
	seen := map[string]bool{}
	for _, v := range values {
		for _, n := range References(v) {
			seen[n] = true
		}
	}
	out := make([]string, 0, len(seen))
	for n := range seen {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

func brokersPath(tenantID, installID string) string {
	return "/rest/tenants/" + seg(tenantID) + "/brokers/installs/" + seg(installID)
}

func deploymentPath(tenantID, installID, deploymentID string) string {
	return brokersPath(tenantID, installID) + "/deployments/" + seg(deploymentID)
}

// jsonResource is one JSON:API resource with its attributes undecoded.
type jsonResource struct {
	ID            string          `json:"id"`
	Type          string          `json:"type"`
	Attributes    json.RawMessage `json:"attributes"`
	Relationships json.RawMessage `json:"relationships"`
}

// ListInstallDeployments lists the deployments of an install (there is no
// GET of a single deployment: Snyk's spec has the list only).
func (c *Client) ListInstallDeployments(ctx context.Context, tenantID, installID string) ([]Deployment, error) {
	if err := requiredAll("tenant ID", tenantID, "install ID", installID); err != nil {
		return nil, err
	}
	var out []Deployment
	err := c.listAll(ctx, brokersPath(tenantID, installID)+"/deployments", universalVersion, func(rs []jsonResource) error {
		for _, r := range rs {
			var a struct {
				InstallID string `json:"install_id"`
				OrgID     string `json:"broker_app_installed_in_org_id"`
			}
			_ = json.Unmarshal(r.Attributes, &a)
			out = append(out, Deployment{ID: r.ID, InstallID: a.InstallID, InstallOrgID: a.OrgID})
		}
		return nil
	})
	return out, err
}

// ListDeploymentCredentials lists a deployment's credential references.
func (c *Client) ListDeploymentCredentials(ctx context.Context, tenantID, installID, deploymentID string) ([]CredentialReference, error) {
	if err := requiredAll("tenant ID", tenantID, "install ID", installID, "deployment ID", deploymentID); err != nil {
		return nil, err
	}
	var out []CredentialReference
	err := c.listAll(ctx, deploymentPath(tenantID, installID, deploymentID)+"/credentials", universalVersion, func(rs []jsonResource) error {
		for _, r := range rs {
			var a struct {
				EnvName string `json:"environment_variable_name"`
				Type    string `json:"type"`
				Comment string `json:"comment"`
			}
			if json.Unmarshal(r.Attributes, &a) != nil || a.EnvName == "" {
				return fmt.Errorf("credential reference %q has no attributes.environment_variable_name", r.ID)
			}
			out = append(out, CredentialReference{ID: r.ID, EnvName: a.EnvName, Type: a.Type, Comment: a.Comment})
		}
		return nil
	})
	return out, err
}

// ListDeploymentConnections lists a deployment's connections.
func (c *Client) ListDeploymentConnections(ctx context.Context, tenantID, installID, deploymentID string) ([]Connection, error) {
	if err := requiredAll("tenant ID", tenantID, "install ID", installID, "deployment ID", deploymentID); err != nil {
		return nil, err
	}
	var out []Connection
	err := c.listAll(ctx, deploymentPath(tenantID, installID, deploymentID)+"/connections", universalVersion, func(rs []jsonResource) error {
		for _, r := range rs {
			var a struct {
				Name          string  `json:"name"`
				Identifier    *string `json:"identifier"`
				Configuration struct {
					Type     string                     `json:"type"`
					Required map[string]json.RawMessage `json:"required"`
				} `json:"configuration"`
			}
			if json.Unmarshal(r.Attributes, &a) != nil {
				return fmt.Errorf("connection %q has unreadable attributes", r.ID)
			}
			conn := Connection{ID: r.ID, Name: a.Name, Type: a.Configuration.Type, Required: stringValues(a.Configuration.Required)}
			if a.Identifier != nil {
				conn.Identifier = *a.Identifier
			}
			out = append(out, conn)
		}
		return nil
	})
	return out, err
}

// ListDeploymentContexts lists a deployment's contexts. Their shape is the
// least documented part of the API: the values are read from
// attributes.context and the connection from relationships, when present.
func (c *Client) ListDeploymentContexts(ctx context.Context, tenantID, installID, deploymentID string) ([]BrokerContext, error) {
	if err := requiredAll("tenant ID", tenantID, "install ID", installID, "deployment ID", deploymentID); err != nil {
		return nil, err
	}
	var out []BrokerContext
	err := c.listAll(ctx, deploymentPath(tenantID, installID, deploymentID)+"/contexts", universalVersion, func(rs []jsonResource) error {
		for _, r := range rs {
			var a struct {
				Context map[string]json.RawMessage `json:"context"`
			}
			_ = json.Unmarshal(r.Attributes, &a)
			var rel struct {
				Connection struct {
					Data struct {
						ID string `json:"id"`
					} `json:"data"`
				} `json:"broker_connection"`
			}
			_ = json.Unmarshal(r.Relationships, &rel)
			out = append(out, BrokerContext{ID: r.ID, ConnectionID: rel.Connection.Data.ID, Values: stringValues(a.Context)})
		}
		return nil
	})
	return out, err
}

// stringValues keeps a configuration's values as text: strings as they
// are, anything else (numbers, booleans) in its JSON form.
func stringValues(in map[string]json.RawMessage) map[string]string {
	out := make(map[string]string, len(in))
	for k, raw := range in {
		var s string
		if json.Unmarshal(raw, &s) == nil {
			out[k] = s
			continue
		}
		if string(raw) != "null" {
			out[k] = string(raw)
		}
	}
	return out
}

// ManageInstallSecret calls POST /rest/orgs/{org}/apps/installs/{install}/
// secrets: create adds a secret beside the existing ones (Snyk allows two),
// delete removes one by value, replace invalidates every secret at once
// (the engine never uses it: running clients would break). For create it
// returns the new secret, shown only in this answer.
func (c *Client) ManageInstallSecret(ctx context.Context, orgID, installID, mode, secret string) (string, error) {
	if err := requiredAll("org ID", orgID, "install ID", installID, "mode", mode); err != nil {
		return "", err
	}
	return c.manageSecret(ctx, "/rest/orgs/"+seg(orgID)+"/apps/installs/"+seg(installID)+"/secrets", installSecretVersion, "app", mode, secret)
}

// CheckClientCredentials proves the client's OAuth credential works: it
// obtains an access token at /oauth2/token and nothing else. The token is
// never returned.
func (c *Client) CheckClientCredentials(ctx context.Context) error {
	if c.oauth == nil {
		return fmt.Errorf("snyk: CheckClientCredentials needs a client_id/client_secret client")
	}
	_, err := c.oauth.token(ctx)
	return err
}

// listAll follows a REST list's links.next (its starting_after cursor)
// until there is none, a bounded number of pages, 100 items a page.
func (c *Client) listAll(ctx context.Context, path, version string, each func([]jsonResource) error) error {
	after := ""
	for page := 0; page < maxListPages; page++ {
		q := url.Values{"version": {version}, "limit": {"100"}}
		if after != "" {
			q.Set("starting_after", after)
		}
		rq := request{method: http.MethodGet, path: path, query: q, accept: jsonAPI, contentType: jsonAPI, idempotent: true, kind: kindREST}
		body, err := c.send(ctx, rq)
		if err != nil {
			return err
		}
		var doc struct {
			Data  []jsonResource `json:"data"`
			Links struct {
				Next string `json:"next"`
			} `json:"links"`
		}
		if json.Unmarshal(body, &doc) != nil || doc.Data == nil {
			return c.badResponse(rq, "the response has no data list")
		}
		if err := each(doc.Data); err != nil {
			return c.badResponse(rq, err.Error())
		}
		if doc.Links.Next == "" || len(doc.Data) == 0 {
			return nil
		}
		next, err := url.Parse(doc.Links.Next)
		cursor := ""
		if err == nil {
			cursor = next.Query().Get("starting_after")
		}
		if cursor == "" || cursor == after {
			// A next link Vault cannot follow would loop or skip items:
			// better a clear failure than a partial list read as complete.
			return c.badResponse(rq, "links.next has no new starting_after cursor")
		}
		after = cursor
	}
	return fmt.Errorf("snyk: GET %s: more than %d pages", c.basePath+path, maxListPages)
}

func requiredAll(nameValues ...string) error {
	for i := 0; i+1 < len(nameValues); i += 2 {
		if err := required(nameValues[i], nameValues[i+1]); err != nil {
			return err
		}
	}
	return nil
}
