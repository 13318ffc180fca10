package snyktest

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
)

// The endpoints a Universal Broker client (snyk/broker, lib/hybrid-sdk/
// client) calls with the OAuth token of its install, so that a real client
// container can run against the fake. They answer errors as
// {error, error_description}, which is what the client reads.
const (
	RouteHiddenConnections = "GET /hidden/brokers/deployments/{deployment_id}/connections"
	RouteHiddenAuthRefresh = "POST /hidden/brokers/connections/{identifier}/auth/refresh"
)

// installToken returns the live access token of a bearer header, writing a
// 401 when there is none. s.mu must be held.
func (s *Server) installToken(w http.ResponseWriter, r *http.Request) (accessToken, bool) {
	scheme, tok, _ := strings.Cut(strings.TrimSpace(r.Header.Get("Authorization")), " ")
	at, found := s.accessTokens[strings.TrimSpace(tok)]
	if !strings.EqualFold(scheme, "bearer") || !found || !s.now().Before(at.expires) {
		oauthError(w, http.StatusUnauthorized, "invalid_token", "A valid bearer access token is required")
		return accessToken{}, false
	}
	return at, true
}

func notIssuedFor(w http.ResponseWriter) {
	oauthError(w, http.StatusUnauthorized, "invalid_token", "The access token was not issued for this deployment's install")
}

// handleHiddenConnections is the client's configuration fetch: every
// connection of the deployment, credential fields as "${ENV}" for the
// client to expand from its environment, contexts as relationships.
func (s *Server) handleHiddenConnections(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	at, ok := s.installToken(w, r)
	if !ok {
		return
	}
	version := r.URL.Query().Get("version")
	if !versionRE.MatchString(version) {
		oauthError(w, http.StatusBadRequest, "invalid_request", "The query parameter 'version' is missing or malformed")
		return
	}
	u := s.universal()
	d := u.deployments[r.PathValue("deployment_id")]
	if d == nil {
		// The client reads a 404 as "No deployment found".
		oauthError(w, http.StatusNotFound, "not_found", "No deployment found")
		return
	}
	if u.installs[d.installID].clientID != at.clientID {
		notIssuedFor(w)
		return
	}
	data := []any{}
	for _, id := range u.inOrder(u.connectionsOf(d.id)) {
		c := u.connections[id]
		data = append(data, map[string]any{"id": c.id, "type": "broker_connection", "attributes": map[string]any{
			"name": c.name, "identifier": nullable(c.identifier), "deployment_id": c.deploymentID,
			"configuration": map[string]any{"type": c.typ, "default": map[string]any{}, "required": u.render(c.plain, c.refs)},
		}, "relationships": u.contextsOf(c.id)})
	}
	d.connects++
	w.Header().Set("snyk-version-requested", version)
	w.Header().Set("snyk-version-served", version)
	writeREST(w, http.StatusOK, map[string]any{"data": data})
}

// handleHiddenAuthRefresh is the client's renewal of a connection's
// websocket authorisation. Clients since v5.2 take any 2xx; older ones
// wanted exactly 201, so 201 it is.
func (s *Server) handleHiddenAuthRefresh(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Data struct {
			Type       string `json:"type"`
			Attributes struct {
				BrokerClientID string `json:"broker_client_id"`
			} `json:"attributes"`
		} `json:"data"`
	}
	raw, _ := io.ReadAll(r.Body)
	s.mu.Lock()
	defer s.mu.Unlock()
	at, ok := s.installToken(w, r)
	if !ok {
		return
	}
	switch role := r.URL.Query().Get("connection_role"); {
	case role != "primary" && role != "secondary":
		oauthError(w, http.StatusBadRequest, "invalid_request", "connection_role must be primary or secondary")
		return
	case json.Unmarshal(raw, &req) != nil || req.Data.Type != "broker_connection" || req.Data.Attributes.BrokerClientID == "":
		oauthError(w, http.StatusBadRequest, "invalid_request", "The body must be a broker_connection with attributes.broker_client_id")
		return
	}
	u := s.universal()
	var conn *ubConnection
	for _, c := range u.connections {
		if c.identifier != "" && c.identifier == r.PathValue("identifier") {
			conn = c
			break
		}
	}
	if conn == nil {
		oauthError(w, http.StatusNotFound, "not_found", "No connection found")
		return
	}
	if u.installs[u.deployments[conn.deploymentID].installID].clientID != at.clientID {
		notIssuedFor(w)
		return
	}
	writeJSON(w, http.StatusCreated, map[string]any{})
}
