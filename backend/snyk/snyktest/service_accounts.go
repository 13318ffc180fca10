package snyktest

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"

	"github.com/google/uuid"
)

// serviceAccount is an oauth_client_secret service account; its secrets
// live in s.clients under its client ID. Snyk keeps at most two secrets per
// account ("A maximum of two secrets can exist at a time") and at least one.
type serviceAccount struct {
	id, scope, ownerID, name, clientID string
}

// maxSecrets is Snyk's documented limit of secrets per service account.
const maxSecrets = 2

// AddServiceAccount creates an oauth_client_secret service account of an
// org or a group (scope "org" or "group") for an existing OAuth client and
// returns its ID.
func (s *Server) AddServiceAccount(scope, ownerID, clientID string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	id := uuid.NewSHA1(principalNS, []byte("service-account:"+clientID)).String()
	s.serviceAccounts[id] = &serviceAccount{id: id, scope: scope, ownerID: ownerID, name: "vault-snyk-broker-engine", clientID: clientID}
	return id
}

// ClientSecrets returns the secrets an OAuth client may authenticate with.
func (s *Server) ClientSecrets(clientID string) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.clients[clientID]...)
}

// handleSASecrets manages a service account's secrets: mode create adds one
// (at most two), delete removes one by value (never the last), replace
// leaves exactly one new secret.
func (s *Server) handleSASecrets(scope string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		var req struct {
			Data struct {
				Type       string `json:"type"`
				Attributes struct {
					Mode   string `json:"mode"`
					Secret string `json:"secret"`
				} `json:"attributes"`
			} `json:"data"`
		}
		raw, _ := io.ReadAll(r.Body)
		if json.Unmarshal(raw, &req) != nil || req.Data.Type == "" {
			restError(w, http.StatusBadRequest, "Client request did not conform to OpenAPI specification", "")
			return
		}
		s.mu.Lock()
		defer s.mu.Unlock()
		sa := s.serviceAccounts[r.PathValue("sa_id")]
		if sa == nil || sa.scope != scope || sa.ownerID != r.PathValue("owner_id") {
			restError(w, http.StatusNotFound, "Service account not found", "")
			return
		}
		secrets := s.clients[sa.clientID]
		var created string
		switch req.Data.Attributes.Mode {
		case "create":
			if len(secrets) >= maxSecrets {
				restError(w, http.StatusBadRequest, fmt.Sprintf("A maximum of %d secrets can exist at a time", maxSecrets), "")
				return
			}
			created = "snyk_cs_" + randomHex(16) + "_v1"
			s.clients[sa.clientID] = append(secrets, created)
		case "replace":
			created = "snyk_cs_" + randomHex(16) + "_v1"
			s.clients[sa.clientID] = []string{created}
		case "delete":
			i := slices.Index(secrets, req.Data.Attributes.Secret)
			switch {
			case req.Data.Attributes.Secret == "" || i < 0:
				restError(w, http.StatusBadRequest, "The secret to delete was not found", "")
				return
			case len(secrets) == 1:
				restError(w, http.StatusBadRequest, "At least one secret must remain per service account", "")
				return
			}
			s.clients[sa.clientID] = slices.Delete(slices.Clone(secrets), i, i+1)
		default:
			restError(w, http.StatusBadRequest, "mode must be one of create, delete, replace", "mode")
			return
		}
		attrs := map[string]any{"name": sa.name, "auth_type": "oauth_client_secret", "client_id": sa.clientID, "level": scope}
		if created != "" {
			attrs["client_secret"] = created
		}
		writeREST(w, http.StatusOK, map[string]any{
			"jsonapi": map[string]string{"version": "1.0"},
			"data":    map[string]any{"type": "service_account", "id": sa.id, "attributes": attrs},
		})
	}
}
