package snyktest

import (
	"encoding/json"
	"fmt"
	"net/http"
)

// REST routes of Snyk's Universal Broker API (the broker deployments,
// deployment credentials, broker connections and broker contexts parts of
// Snyk's REST specification; docs.snyk.io, "Universal Broker").
const (
	RouteUBInstallDeployments = "GET /rest/tenants/{tenant_id}/brokers/installs/{install_id}/deployments"
	RouteUBTenantDeployments  = "GET /rest/tenants/{tenant_id}/brokers/deployments"
	RouteUBCreateDeployment   = "POST /rest/tenants/{tenant_id}/brokers/installs/{install_id}/deployments"
	RouteUBCredentials        = "GET /rest/tenants/{tenant_id}/brokers/installs/{install_id}/deployments/{deployment_id}/credentials"
	RouteUBCreateCredentials  = "POST /rest/tenants/{tenant_id}/brokers/installs/{install_id}/deployments/{deployment_id}/credentials"
	RouteUBConnections        = "GET /rest/tenants/{tenant_id}/brokers/installs/{install_id}/deployments/{deployment_id}/connections"
	RouteUBCreateConnection   = "POST /rest/tenants/{tenant_id}/brokers/installs/{install_id}/deployments/{deployment_id}/connections"
	RouteUBContexts           = "GET /rest/tenants/{tenant_id}/brokers/installs/{install_id}/deployments/{deployment_id}/contexts"
)

// maxCredentialsPerCreate is Snyk's documented limit of credential
// references per create call.
const maxCredentialsPerCreate = 10

// ubScope is what a /tenants path names, resolved: the tenant, and the
// install and deployment under it when the path has them.
type ubScope struct {
	tenant  *ubTenant
	install *ubInstall
	dep     *ubDeployment
}

// resolve checks the path's parents and the caller's tenant admin role,
// writing the refusal when one fails. An unknown ID and one under the wrong
// parent both get 404, so a caller cannot tell them apart. s.mu must be
// held.
func (s *Server) resolve(w http.ResponseWriter, r *http.Request) (ubScope, bool) {
	u := s.universal()
	var sc ubScope
	if sc.tenant = u.tenants[r.PathValue("tenant_id")]; sc.tenant == nil {
		restError(w, http.StatusNotFound, "Tenant not found", "")
		return sc, false
	}
	if !sc.tenant.admins[principalOf(r).id] {
		// Snyk's specification lists no 403 for these endpoints, so the
		// status is a switch; a 404 reads like an unknown tenant.
		status := s.behaviour.TenantNonAdminStatus
		detail := "The tenant admin role is required for this request"
		if status == http.StatusNotFound {
			detail = "Tenant not found"
		}
		restError(w, status, detail, "")
		return sc, false
	}
	if id := r.PathValue("install_id"); id != "" {
		sc.install = u.installs[id]
		if sc.install == nil || (sc.install.tenantID != "" && sc.install.tenantID != sc.tenant.id) {
			restError(w, http.StatusNotFound, "Install not found", "")
			return sc, false
		}
	}
	if id := r.PathValue("deployment_id"); id != "" {
		sc.dep = u.deployments[id]
		if sc.dep == nil || sc.dep.tenantID != sc.tenant.id || sc.dep.installID != sc.install.id {
			restError(w, http.StatusNotFound, "Deployment not found", "")
			return sc, false
		}
	}
	return sc, true
}

func (s *Server) handleUBTenantDeployments(w http.ResponseWriter, r *http.Request) {
	s.listDeployments(w, r, false)
}

func (s *Server) handleUBInstallDeployments(w http.ResponseWriter, r *http.Request) {
	s.listDeployments(w, r, true)
}

func (s *Server) listDeployments(w http.ResponseWriter, r *http.Request, ofInstall bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	sc, ok := s.resolve(w, r)
	if !ok {
		return
	}
	u := s.universal()
	var ids []string
	for id, d := range u.deployments {
		if d.tenantID == sc.tenant.id && (!ofInstall || d.installID == sc.install.id) {
			ids = append(ids, id)
		}
	}
	s.writeList(w, r, ids, u.deploymentResource)
}

func (s *Server) handleUBCreateDeployment(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Data struct {
			Type       string `json:"type"`
			Attributes struct {
				OrgID    string         `json:"broker_app_installed_in_org_id"`
				Metadata map[string]any `json:"metadata"`
			} `json:"attributes"`
		} `json:"data"`
	}
	if !decodeJSONAPI(w, r, &req) {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	sc, ok := s.resolve(w, r)
	if !ok {
		return
	}
	a := req.Data.Attributes
	switch {
	case req.Data.Type != "broker_deployment":
		ubError(w, badField("/data/type", "type must be broker_deployment"))
		return
	case a.OrgID != sc.install.orgID:
		ubError(w, badField("/data/attributes/broker_app_installed_in_org_id", "broker_app_installed_in_org_id must be the org the install belongs to"))
		return
	}
	if a.Metadata == nil {
		a.Metadata = map[string]any{}
	}
	u := s.universal()
	writeCreated(w, r, u.deploymentResource(u.addDeployment(sc.tenant, sc.install, a.Metadata).id))
}

func (s *Server) handleUBCredentials(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	sc, ok := s.resolve(w, r)
	if !ok {
		return
	}
	u := s.universal()
	var ids []string
	for id, c := range u.credentials {
		if c.deploymentID == sc.dep.id && !c.deleted {
			ids = append(ids, id)
		}
	}
	s.writeList(w, r, ids, u.credentialResource)
}

// handleUBCreateCredentials creates up to ten references at once; the body's
// data.attributes is an array, and the 201's data is one too. Nothing is
// created unless every item is valid.
func (s *Server) handleUBCreateCredentials(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Data struct {
			Type       string          `json:"type"`
			Attributes json.RawMessage `json:"attributes"`
		} `json:"data"`
	}
	if !decodeJSONAPI(w, r, &req) {
		return
	}
	var items []struct {
		Env     string `json:"environment_variable_name"`
		Type    string `json:"type"`
		Comment string `json:"comment"`
	}
	switch {
	case req.Data.Type != "deployment_credential":
		ubError(w, badField("/data/type", "type must be deployment_credential"))
		return
	case json.Unmarshal(req.Data.Attributes, &items) != nil:
		ubError(w, badField("/data/attributes", "attributes must be an array of credential references"))
		return
	case len(items) == 0 || len(items) > maxCredentialsPerCreate:
		ubError(w, badField("/data/attributes", "between 1 and %d credential references can be created at a time", maxCredentialsPerCreate))
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	sc, ok := s.resolve(w, r)
	if !ok {
		return
	}
	u := s.universal()
	seen := map[string]bool{}
	for i, it := range items {
		at := fmt.Sprintf("/data/attributes/%d/", i)
		switch _, known := connTypes[it.Type]; {
		case !envNameRE.MatchString(it.Env):
			ubError(w, badField(at+"environment_variable_name", "environment_variable_name %q must match %s", it.Env, envNameRE))
			return
		case !known:
			ubError(w, badField(at+"type", "unknown credential type %q", it.Type))
			return
		case seen[it.Env] || u.refByName(sc.dep.id, it.Env) != nil:
			ubError(w, &fieldError{status: http.StatusConflict, pointer: at + "environment_variable_name",
				detail: fmt.Sprintf("a credential reference named %s already exists in this deployment", it.Env)})
			return
		}
		seen[it.Env] = true
	}
	data := []any{}
	for _, it := range items {
		data = append(data, u.credentialResource(u.addCredential(sc.dep.id, it.Env, it.Type, it.Comment).id))
	}
	writeCreated(w, r, data)
}

func (s *Server) handleUBConnections(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	sc, ok := s.resolve(w, r)
	if !ok {
		return
	}
	u := s.universal()
	s.writeList(w, r, u.connectionsOf(sc.dep.id), u.connectionResource)
}

// handleUBCreateConnection creates a connection; credential fields take
// credential-reference UUIDs of the same deployment.
func (s *Server) handleUBCreateConnection(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Data struct {
			Type       string `json:"type"`
			Attributes struct {
				Name          string `json:"name"`
				DeploymentID  string `json:"deployment_id"`
				Configuration struct {
					Type     string         `json:"type"`
					Required map[string]any `json:"required"`
				} `json:"configuration"`
			} `json:"attributes"`
		} `json:"data"`
	}
	if !decodeJSONAPI(w, r, &req) {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	sc, ok := s.resolve(w, r)
	if !ok {
		return
	}
	a := req.Data.Attributes
	switch {
	case req.Data.Type != "broker_connection":
		ubError(w, badField("/data/type", "type must be broker_connection"))
		return
	case a.DeploymentID != "" && a.DeploymentID != sc.dep.id:
		ubError(w, badField("/data/attributes/deployment_id", "deployment_id must be the deployment of the path"))
		return
	}
	required := map[string]string{}
	for k, v := range a.Configuration.Required {
		str, isString := v.(string)
		if !isString {
			ubError(w, badField("/data/attributes/configuration/required/"+k, "%s must be a string", k))
			return
		}
		required[k] = str
	}
	u := s.universal()
	c, ferr := u.addConnection(sc.dep.id, a.Name, a.Configuration.Type, required, false)
	if ferr != nil {
		ubError(w, ferr)
		return
	}
	writeCreated(w, r, u.connectionResource(c.id))
}

func (s *Server) handleUBContexts(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	sc, ok := s.resolve(w, r)
	if !ok {
		return
	}
	u := s.universal()
	var ids []string
	for id, x := range u.contexts {
		if x.deploymentID == sc.dep.id {
			ids = append(ids, id)
		}
	}
	s.writeList(w, r, ids, u.contextResource)
}
