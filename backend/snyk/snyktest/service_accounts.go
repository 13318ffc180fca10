package snyktest

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"

	"github.com/google/uuid"
)

// serviceAccount is an oauth_client_secret service account; its secrets
// live in s.clients under its client ID. Snyk keeps at most two secrets per
// account ("A maximum of two secrets can exist at a time") and at least one.
type serviceAccount struct {
	id, scope, ownerID, name, clientID string
	// authType is oauth_client_secret (secrets under clientID) or api_key
	// (apiKey authenticates as "token <key>" until the account is deleted).
	authType, roleID, apiKey string
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
	s.serviceAccounts[id] = &serviceAccount{id: id, scope: scope, ownerID: ownerID, name: "vault-snyk-broker-engine", clientID: clientID, authType: "oauth_client_secret"}
	return id
}

// ClientSecrets returns the secrets an OAuth client may authenticate with.
func (s *Server) ClientSecrets(clientID string) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.clients[clientID]...)
}

// secretProblem is why a manage-secret call is refused.
type secretProblem int

const (
	secretOK secretProblem = iota
	secretAtCap
	secretNotFound // no secret given to delete, or not a current one
	secretLast
	secretBadMode
)

// applySecretMode applies Snyk's manage-secret rules (service accounts and
// app installs alike) to clientID's secrets: create adds one beside the
// others (at most maxSecrets), replace leaves one new secret, delete removes
// one by value but never the last. It returns the new secret of create and
// replace, mint's, and the secrets it invalidated. s.mu must be held.
func (s *Server) applySecretMode(clientID, mode, secret string, mint func() string) (created string, revoked []string, problem secretProblem) {
	secrets := s.clients[clientID]
	switch mode {
	case "create":
		if len(secrets) >= maxSecrets {
			return "", nil, secretAtCap
		}
		created = mint()
		s.clients[clientID] = append(slices.Clone(secrets), created)
	case "replace":
		created = mint()
		s.clients[clientID] = []string{created}
		revoked = secrets
	case "delete":
		i := slices.Index(secrets, secret)
		switch {
		case secret == "" || i < 0:
			return "", nil, secretNotFound
		case len(secrets) == 1:
			return "", nil, secretLast
		}
		s.clients[clientID] = slices.Delete(slices.Clone(secrets), i, i+1)
		revoked = secrets[i : i+1]
	default:
		return "", nil, secretBadMode
	}
	return created, revoked, secretOK
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
		created, _, problem := s.applySecretMode(sa.clientID, req.Data.Attributes.Mode, req.Data.Attributes.Secret, func() string {
			v := "snyk_cs_" + randomHex(16) + "_v1"
			s.known = append(s.known, v)
			return v
		})
		switch problem {
		case secretAtCap:
			restError(w, http.StatusBadRequest, fmt.Sprintf("A maximum of %d secrets can exist at a time", maxSecrets), "")
			return
		case secretNotFound:
			restError(w, http.StatusBadRequest, "The secret to delete was not found", "")
			return
		case secretLast:
			restError(w, http.StatusBadRequest, "At least one secret must remain per service account", "")
			return
		case secretBadMode:
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

// maxSANameLength bounds service-account names (the fake's stand-in for
// Snyk's limit, which is not documented).
const maxSANameLength = 128

// ServiceAccounts returns the IDs of the service accounts an org or group
// owns.
func (s *Server) ServiceAccounts(scope, ownerID string) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for id, sa := range s.serviceAccounts {
		if sa.scope == scope && sa.ownerID == ownerID {
			out = append(out, id)
		}
	}
	slices.Sort(out)
	return out
}

func (s *Server) ownerExists(scope, id string) bool {
	if scope == "org" {
		return s.orgs[id] != nil
	}
	for _, o := range s.orgs {
		if o.groupID == id {
			return true
		}
	}
	return false
}

// handleSACreate creates a service account (POST …/service_accounts): 201
// with its credential, shown only here. api_key accounts get a UUID key.
func (s *Server) handleSACreate(scope string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		var req struct {
			Data struct {
				Type       string `json:"type"`
				Attributes struct {
					Name     string `json:"name"`
					AuthType string `json:"auth_type"`
					RoleID   string `json:"role_id"`
				} `json:"attributes"`
			} `json:"data"`
		}
		raw, _ := io.ReadAll(r.Body)
		a := &req.Data.Attributes
		if json.Unmarshal(raw, &req) != nil || req.Data.Type != "service_account" {
			restError(w, http.StatusBadRequest, "Client request did not conform to OpenAPI specification", "")
			return
		}
		switch {
		case a.Name == "" || len(a.Name) > maxSANameLength:
			restError(w, http.StatusBadRequest, fmt.Sprintf("name is required and at most %d characters", maxSANameLength), "")
			return
		case uuid.Validate(a.RoleID) != nil:
			restError(w, http.StatusBadRequest, "role_id must be a UUID", "")
			return
		case a.AuthType != "api_key":
			restError(w, http.StatusBadRequest, "this fake creates api_key service accounts only", "")
			return
		}
		s.mu.Lock()
		defer s.mu.Unlock()
		owner := r.PathValue("owner_id")
		if !s.ownerExists(scope, owner) {
			restError(w, http.StatusNotFound, "Not found", "")
			return
		}
		sa := &serviceAccount{id: uuid.NewString(), scope: scope, ownerID: owner, name: a.Name, authType: "api_key", roleID: a.RoleID, apiKey: uuid.NewString()}
		s.serviceAccounts[sa.id] = sa
		s.apiTokens[sa.apiKey] = true
		s.known = append(s.known, sa.apiKey)
		writeREST(w, http.StatusCreated, map[string]any{
			"jsonapi": map[string]string{"version": "1.0"},
			"data": map[string]any{"type": "service_account", "id": sa.id, "attributes": map[string]any{
				"name": sa.name, "auth_type": sa.authType, "role_id": sa.roleID, "level": scope, "api_key": sa.apiKey,
			}},
		})
	}
}

// handleSAList lists an owner's service accounts, never their credentials.
func (s *Server) handleSAList(scope string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		defer s.mu.Unlock()
		owner := r.PathValue("owner_id")
		if !s.ownerExists(scope, owner) {
			restError(w, http.StatusNotFound, "Not found", "")
			return
		}
		// Paginated as Snyk's REST lists are: limit (default 10, at most
		// 100) items after the starting_after cursor, links.next when more.
		limit := 10
		if v := r.URL.Query().Get("limit"); v != "" {
			n, err := strconv.Atoi(v)
			if err != nil || n < 1 || n > 100 {
				restError(w, http.StatusBadRequest, "limit must be between 1 and 100", "limit")
				return
			}
			limit = n
		}
		after := r.URL.Query().Get("starting_after")
		var ids []string
		for id, sa := range s.serviceAccounts {
			if sa.scope == scope && sa.ownerID == owner && id > after {
				ids = append(ids, id)
			}
		}
		slices.Sort(ids)
		more := len(ids) > limit
		if more {
			ids = ids[:limit]
		}
		data := []any{}
		for _, id := range ids {
			sa := s.serviceAccounts[id]
			data = append(data, map[string]any{"type": "service_account", "id": sa.id, "attributes": map[string]any{
				"name": sa.name, "auth_type": sa.authType, "role_id": sa.roleID, "level": scope,
			}})
		}
		doc := map[string]any{"jsonapi": map[string]string{"version": "1.0"}, "data": data}
		if more {
			doc["links"] = map[string]string{"next": fmt.Sprintf("/%ss/%s/service_accounts?version=%s&limit=%d&starting_after=%s",
				scope, owner, r.URL.Query().Get("version"), limit, ids[len(ids)-1])}
		}
		writeREST(w, http.StatusOK, doc)
	}
}

// handleSADelete deletes a service account (204) and revokes its
// credentials; an unknown one is a 404.
func (s *Server) handleSADelete(scope string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		defer s.mu.Unlock()
		sa := s.serviceAccounts[r.PathValue("sa_id")]
		if sa == nil || sa.scope != scope || sa.ownerID != r.PathValue("owner_id") {
			restError(w, http.StatusNotFound, "Service account not found", "")
			return
		}
		delete(s.serviceAccounts, sa.id)
		if sa.apiKey != "" {
			delete(s.apiTokens, sa.apiKey)
		}
		if sa.clientID != "" {
			delete(s.clients, sa.clientID)
		}
		w.WriteHeader(http.StatusNoContent)
	}
}
