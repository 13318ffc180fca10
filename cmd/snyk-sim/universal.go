package main

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"maps"
	"net/http"
	"net/url"
	"slices"
)

// UniversalInfo is the demo Universal Broker deployment in sim.json: what
// the engine needs to manage it and a Broker client needs to run it.
type UniversalInfo struct {
	TenantID     string `json:"tenant_id"`
	InstallID    string `json:"install_id"`
	InstallOrgID string `json:"install_org_id"`
	DeploymentID string `json:"deployment_id"`
	ClientID     string `json:"client_id"`
	// ClientSecret is the install's first secret; rotations replace it.
	ClientSecret string `json:"client_secret"`
	// Connections maps a connection name to its ID.
	Connections map[string]string `json:"connections"`
	// Credentials maps a credential reference's variable name to its type
	// and the value the fake SCMs accept.
	Credentials map[string]UniversalCredential `json:"credentials"`
}

// UniversalCredential is one credential reference of the demo deployment.
type UniversalCredential struct {
	Type  string `json:"type"`
	Value string `json:"value"`
}

// demoBrokerClientURL is where the demo connections say the client listens.
const demoBrokerClientURL = "https://broker-client.example:8000"

// seedUniversal creates the demo deployment: a tenant administered by the
// demo API token and OAuth client, an install in the payments org, and a
// GitHub connection integrated into that org. The GitLab connection needs
// the fake GitLab's address, so seedUniversalGitLab adds it once that
// server listens.
func (w *world) seedUniversal() UniversalInfo {
	s := w.snyk
	tenant := s.AddTenant("Demo tenant", demoAPIToken, demoClientID)
	install, clientID, secret := s.AddAppInstall(demoPaymentsOrg)
	dep := s.AddDeployment(tenant, install, map[string]string{"deployment_name": "demo"})
	s.AddCredentialReference(dep, "MY_GITHUB_TOKEN", "github", "demo GitHub token")
	s.AddCredentialReference(dep, "MY_GITLAB_TOKEN", "gitlab", "demo GitLab token")
	gh, err := s.AddConnection(dep, "demo-github", "github", map[string]string{
		"github_token": "${MY_GITHUB_TOKEN}", "broker_client_url": demoBrokerClientURL,
	})
	if err != nil {
		panic(fmt.Sprintf("demo connection: %v", err)) // fixed data: a bug, not an input error
	}
	s.IntegrateConnection(gh, demoPaymentsOrg)
	return UniversalInfo{
		TenantID: tenant, InstallID: install, InstallOrgID: demoPaymentsOrg, DeploymentID: dep,
		ClientID: clientID, ClientSecret: secret,
		Connections: map[string]string{"demo-github": gh},
		Credentials: map[string]UniversalCredential{
			"MY_GITHUB_TOKEN": {Type: "github", Value: demoGitHubToken},
			"MY_GITLAB_TOKEN": {Type: "gitlab", Value: demoGitLabToken},
		},
	}
}

// seedUniversalGitLab adds the demo GitLab connection, pointed at the fake
// GitLab (host and port, no scheme, as the connection's gitlab key wants),
// and records it in info.
func (w *world) seedUniversalGitLab(info *Info, gitlabURL string) error {
	u, err := url.Parse(gitlabURL)
	if err != nil || u.Host == "" {
		return fmt.Errorf("GitLab URL %q has no host", gitlabURL)
	}
	id, err := w.snyk.AddConnection(info.Universal.DeploymentID, "demo-gitlab", "gitlab", map[string]string{
		"gitlab": u.Host, "gitlab_token": "${MY_GITLAB_TOKEN}", "broker_client_url": demoBrokerClientURL,
	})
	if err != nil {
		return err
	}
	w.snyk.IntegrateConnection(id, info.Universal.InstallOrgID)
	info.Universal.Connections = maps.Clone(info.Universal.Connections)
	info.Universal.Connections["demo-gitlab"] = id
	return nil
}

// universalRequest is the body of POST /universal.
type universalRequest struct {
	OrgID        string   `json:"org_id"`
	TenantID     string   `json:"tenant_id"`
	TenantAdmins []string `json:"tenant_admins"`
	Credentials  []struct {
		Env     string `json:"env"`
		Type    string `json:"type"`
		Comment string `json:"comment"`
	} `json:"credentials"`
	Connections []struct {
		Name     string            `json:"name"`
		Type     string            `json:"type"`
		Required map[string]string `json:"required"`
	} `json:"connections"`
	Contexts []struct {
		Connection string            `json:"connection"`
		Context    map[string]string `json:"context"`
	} `json:"contexts"`
}

// createUniversal builds a deployment from a POST /universal body. A
// refused item leaves what was created before it: it is a test fixture.
func (w *world) createUniversal(in universalRequest) (map[string]any, error) {
	s := w.snyk
	if in.OrgID == "" {
		in.OrgID = demoPaymentsOrg
	}
	w.rememberOrg(in.OrgID)
	tenant := in.TenantID
	if tenant == "" {
		admins := in.TenantAdmins
		if len(admins) == 0 {
			admins = []string{demoAPIToken, demoClientID}
		}
		tenant = s.AddTenant("Simulated tenant", admins...)
	} else {
		for _, a := range in.TenantAdmins {
			s.AddTenantAdmin(tenant, a)
		}
	}
	install, clientID, secret := s.AddAppInstall(in.OrgID)
	dep := s.AddDeployment(tenant, install, map[string]string{"deployment_name": "simulated"})
	if dep == "" {
		return nil, fmt.Errorf("unknown tenant_id %q", tenant)
	}
	creds := map[string]string{}
	for _, c := range in.Credentials {
		id := s.AddCredentialReference(dep, c.Env, c.Type, c.Comment)
		if id == "" {
			return nil, fmt.Errorf("credential %q is listed twice", c.Env)
		}
		creds[c.Env] = id
	}
	conns := map[string]string{}
	for _, c := range in.Connections {
		id, err := s.AddConnection(dep, c.Name, c.Type, c.Required)
		if err != nil {
			return nil, fmt.Errorf("connection %q: %w", c.Name, err)
		}
		s.IntegrateConnection(id, in.OrgID)
		conns[c.Name] = id
	}
	for _, c := range in.Contexts {
		id, ok := conns[c.Connection]
		if !ok {
			return nil, fmt.Errorf("context for unknown connection %q", c.Connection)
		}
		if _, err := s.AddContext(dep, id, c.Context); err != nil {
			return nil, fmt.Errorf("context for %q: %w", c.Connection, err)
		}
	}
	return map[string]any{
		"tenant_id": tenant, "install_id": install, "install_org_id": in.OrgID, "deployment_id": dep,
		"client_id": clientID, "client_secret": secret, "connections": conns, "credentials": creds,
	}, nil
}

// fingerprint names a secret without revealing it.
func fingerprint(secret string) string {
	sum := sha256.Sum256([]byte(secret))
	return hex.EncodeToString(sum[:])[:12]
}

// mountUniversal adds the Universal Broker part of the admin API.
//
//	POST /universal                        {"org_id","tenant_id"?,"tenant_admins"?,"credentials":[{"env","type"}],
//	                                        "connections":[{"name","type","required"}],"contexts":[{"connection","context"}]}
//	                                        -> IDs and the install's client_id/client_secret
//	GET  /universal/install-secrets?install_id=   {"secrets_fingerprints","count","creates","deletes","replaces"}
//	POST /universal/install-secrets/check  {"install_id","secret"} -> {"valid"}
//	POST /universal/install-secrets/replace {"install_id"} -> {"ok"}: what `snyk-broker-config workflows setup` does
//	POST /universal/connections/delete     {"connection_id"}
//	POST /universal/credentials/delete     {"credential_id"}
//	GET  /universal/client-connects?deployment_id=  {"count"}: config fetches by a Broker client
func (w *world) mountUniversal(mux *http.ServeMux) {
	mux.HandleFunc("POST /universal", func(rw http.ResponseWriter, r *http.Request) {
		var in universalRequest
		if !decode(rw, r, &in) {
			return
		}
		out, err := w.createUniversal(in)
		if err != nil {
			http.Error(rw, err.Error(), http.StatusBadRequest)
			return
		}
		writeJSON(rw, http.StatusOK, out)
	})
	mux.HandleFunc("GET /universal/install-secrets", func(rw http.ResponseWriter, r *http.Request) {
		id := r.URL.Query().Get("install_id")
		secrets := w.snyk.InstallSecrets(id)
		if secrets == nil {
			http.Error(rw, "unknown install", http.StatusNotFound)
			return
		}
		prints := []string{}
		for _, s := range secrets {
			prints = append(prints, fingerprint(s))
		}
		creates, deletes, replaces := w.snyk.InstallSecretCalls(id)
		writeJSON(rw, http.StatusOK, map[string]any{"secrets_fingerprints": prints, "count": len(secrets),
			"creates": creates, "deletes": deletes, "replaces": replaces})
	})
	mux.HandleFunc("POST /universal/install-secrets/check", func(rw http.ResponseWriter, r *http.Request) {
		var in struct {
			InstallID string `json:"install_id"`
			Secret    string `json:"secret"`
		}
		if !decode(rw, r, &in) {
			return
		}
		secrets := w.snyk.InstallSecrets(in.InstallID)
		if secrets == nil {
			http.Error(rw, "unknown install", http.StatusNotFound)
			return
		}
		writeJSON(rw, http.StatusOK, map[string]bool{"valid": in.Secret != "" && slices.Contains(secrets, in.Secret)})
	})
	mux.HandleFunc("POST /universal/install-secrets/replace", func(rw http.ResponseWriter, r *http.Request) {
		var in struct {
			InstallID string `json:"install_id"`
		}
		if !decode(rw, r, &in) {
			return
		}
		if w.snyk.ReplaceInstallSecretOutsideVault(in.InstallID) == "" {
			http.Error(rw, "unknown install", http.StatusNotFound)
			return
		}
		// The new secret is not answered, as it would stay with whoever ran
		// the CLI: the engine must notice that its own secret died. (GET
		// /secrets lists it, for log scans.)
		writeJSON(rw, http.StatusOK, map[string]bool{"ok": true})
	})
	mux.HandleFunc("POST /universal/connections/delete", func(rw http.ResponseWriter, r *http.Request) {
		var in struct {
			ConnectionID string `json:"connection_id"`
		}
		if !decode(rw, r, &in) {
			return
		}
		w.snyk.DeleteConnection(in.ConnectionID)
		rw.WriteHeader(http.StatusNoContent)
	})
	mux.HandleFunc("POST /universal/credentials/delete", func(rw http.ResponseWriter, r *http.Request) {
		var in struct {
			CredentialID string `json:"credential_id"`
		}
		if !decode(rw, r, &in) {
			return
		}
		w.snyk.DeleteCredentialReference(in.CredentialID)
		rw.WriteHeader(http.StatusNoContent)
	})
	mux.HandleFunc("GET /universal/client-connects", func(rw http.ResponseWriter, r *http.Request) {
		writeJSON(rw, http.StatusOK, map[string]int{"count": w.snyk.UniversalClientConnects(r.URL.Query().Get("deployment_id"))})
	})
}
