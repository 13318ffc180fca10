package snyktest

import (
	"fmt"
	"net/http"
	"slices"
	"time"

	"github.com/google/uuid"
)

// RouteInstallSecrets manages the client secrets of an app install (Snyk's
// REST specification of apps; docs.snyk.io, "Manage App details").
const RouteInstallSecrets = "POST /rest/orgs/{org_id}/apps/installs/{install_id}/secrets"

// RouteAppInstalls lists an org's app installs (never a secret).
const RouteAppInstalls = "GET /rest/orgs/{org_id}/apps/installs"

// AddAppInstall installs the Snyk Broker App in an org (created without a
// group if unknown) and returns the install's ID and OAuth client, which
// /oauth2/token accepts from now on. The client ID is a UUIDv4; the secret's
// real format is not documented, so it follows the snyk_cs_…_v1 form of
// Snyk's CLI fixtures.
func (s *Server) AddAppInstall(orgID string) (installID, clientID, clientSecret string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.orgs[orgID] == nil {
		s.orgs[orgID] = &org{id: orgID, name: orgID, slug: slugify(orgID)}
	}
	u := s.universal()
	in := &ubInstall{id: u.newID(), orgID: orgID, clientID: uuid.NewString(), installedAt: s.now().UTC()}
	u.installs[in.id] = in
	clientSecret = s.newInstallSecret()
	// The client ID is an identifier (Vault serves and reports it), not a
	// secret: only the secret goes on the list of credentials to look for.
	s.clients[in.clientID] = []string{clientSecret}
	return in.id, in.clientID, clientSecret
}

// newInstallSecret mints a client secret and remembers it. s.mu must be held.
func (s *Server) newInstallSecret() string {
	v := "snyk_cs_" + randomHex(16) + "_v1"
	s.known = append(s.known, v)
	return v
}

// InstallSecrets returns the install's currently valid client secrets
// (nil for an unknown install).
func (s *Server) InstallSecrets(installID string) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	in := s.universal().installs[installID]
	if in == nil {
		return nil
	}
	return slices.Clone(s.clients[in.clientID])
}

// ReplaceInstallSecretOutsideVault does what `snyk-broker-config workflows
// setup` does: mode=replace, leaving one new secret. It returns that secret
// ("" for an unknown install) and is not counted by InstallSecretCalls.
func (s *Server) ReplaceInstallSecretOutsideVault(installID string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	in := s.universal().installs[installID]
	if in == nil {
		return ""
	}
	return s.replaceInstallSecret(in)
}

// replaceInstallSecret leaves one new secret. s.mu must be held.
func (s *Server) replaceInstallSecret(in *ubInstall) string {
	v, revoked, _ := s.applySecretMode(in.clientID, "replace", "", s.newInstallSecret)
	s.secretsRevoked(in.clientID, revoked)
	return v
}

// secretsRevoked drops the access tokens minted with revoked secrets when
// the behaviour says live tokens die with their secret. s.mu must be held.
func (s *Server) secretsRevoked(clientID string, revoked []string) {
	if !s.behaviour.RevokeAccessTokensWithSecret {
		return
	}
	for tok, at := range s.accessTokens {
		if at.clientID == clientID && slices.Contains(revoked, at.secret) {
			delete(s.accessTokens, tok)
		}
	}
}

// InstallSecretCalls returns how many create, delete and replace calls on
// the install's secrets succeeded.
func (s *Server) InstallSecretCalls(installID string) (creates, deletes, replaces int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if in := s.universal().installs[installID]; in != nil {
		return in.creates, in.deletes, in.replaces
	}
	return 0, 0, 0
}

// handleInstallSecrets applies Snyk's documented secret rules to an install:
// create adds a secret beside the current one (at most two), replace leaves
// one new secret and invalidates the others at once, delete invalidates the
// given one at once but never the last. No answer carries a secret except
// the new one of create and replace.
func (s *Server) handleInstallSecrets(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Data struct {
			Type       string `json:"type"`
			Attributes struct {
				Mode   string `json:"mode"`
				Secret string `json:"secret"`
			} `json:"attributes"`
		} `json:"data"`
	}
	if !decodeJSONAPI(w, r, &req) {
		return
	}
	if req.Data.Type != "app" {
		ubError(w, badField("/data/type", "type must be app"))
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	in := s.universal().installs[r.PathValue("install_id")]
	if in == nil || in.orgID != r.PathValue("org_id") {
		restError(w, http.StatusNotFound, "Install not found", "")
		return
	}
	created, revoked, problem := s.applySecretMode(in.clientID, req.Data.Attributes.Mode, req.Data.Attributes.Secret, s.newInstallSecret)
	switch problem {
	case secretAtCap:
		// Snyk documents the words; the status is a switch (409 by
		// default, which the specification lists).
		restError(w, s.behaviour.InstallSecretCapStatus, s.behaviour.InstallSecretCapMessage, "")
		return
	case secretNotFound:
		if req.Data.Attributes.Secret == "" {
			ubError(w, badField("/data/attributes/secret", "secret is required to delete a secret"))
			return
		}
		// The value is not echoed: it may be a live secret of something else.
		ubError(w, badField("/data/attributes/secret", "the secret to delete is not a current secret of this install"))
		return
	case secretLast:
		ubError(w, badField("/data/attributes/secret", "the last secret of an install cannot be deleted"))
		return
	case secretBadMode:
		ubError(w, badField("/data/attributes/mode", "mode must be one of create, delete, replace"))
		return
	}
	s.secretsRevoked(in.clientID, revoked)
	switch req.Data.Attributes.Mode {
	case "create":
		in.creates++
	case "replace":
		in.replaces++
	case "delete":
		in.deletes++
	}
	attrs := map[string]any{"client_id": in.clientID, "installed_at": in.installedAt.Format(time.RFC3339)}
	if created != "" {
		attrs["client_secret"] = created
	}
	writeREST(w, http.StatusOK, map[string]any{
		"jsonapi": jsonAPIVersion,
		"data":    map[string]any{"id": in.id, "type": "app_install", "attributes": attrs},
	})
}

// handleAppInstalls lists the org's installs as Snyk's spec shows them:
// id, attributes.client_id and installed_at, relationships.app, no secret.
func (s *Server) handleAppInstalls(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	org := r.PathValue("org_id")
	if s.orgs[org] == nil {
		restError(w, http.StatusNotFound, fmt.Sprintf("Org %s was not found or you may not have the correct permissions to access the org.", org), "")
		return
	}
	u := s.universal()
	var ids []string
	for id, in := range u.installs {
		if in.orgID == org {
			ids = append(ids, id)
		}
	}
	s.writeList(w, r, ids, func(id string) any {
		in := u.installs[id]
		return map[string]any{
			"id": in.id, "type": "app_install",
			"attributes":    map[string]any{"client_id": in.clientID, "installed_at": in.installedAt.Format(time.RFC3339)},
			"relationships": map[string]any{"app": map[string]any{"data": map[string]any{"id": SnykBrokerAppID, "type": "app"}}},
		}
	})
}

// SnykBrokerAppID is the Snyk Broker App's ID in most regions (docs.snyk.io,
// "Universal Broker prerequisites").
const SnykBrokerAppID = "cb43d761-bd17-4b44-9b6c-e5b8ad077d33"
