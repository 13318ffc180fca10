package snyktest

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"sort"

	"github.com/google/uuid"
)

// maxBody bounds request bodies; real ones are a few hundred bytes.
const maxBody = 1 << 20

// decodeBody reads a JSON request body into v, answering 400 itself when it
// cannot. connectionAware has already bounded and buffered the body.
func decodeBody(w http.ResponseWriter, r *http.Request, v any) bool {
	data, err := io.ReadAll(r.Body)
	if err == nil {
		err = json.Unmarshal(data, v)
	}
	if err != nil {
		v1Error(w, http.StatusBadRequest, "Invalid JSON in request body")
		return false
	}
	return true
}

// lookup resolves the {orgId} and {integrationId} path values, answering 404
// itself when either is unknown. s.mu must be held.
func (s *Server) lookup(w http.ResponseWriter, r *http.Request) (*org, *integration) {
	o := s.lookupOrg(w, r)
	if o == nil {
		return nil, nil
	}
	id := r.PathValue("integrationId")
	in := s.integrations[id]
	if in == nil || in.orgID != o.id {
		v1Error(w, http.StatusNotFound, fmt.Sprintf("Integration %s was not found or you may not have the correct permissions to access it.", id))
		return nil, nil
	}
	return o, in
}

// lookupOrg resolves {orgId}; every principal of the fake may access every
// org, so "unknown" and "no access" are the same 404, as at Snyk.
func (s *Server) lookupOrg(w http.ResponseWriter, r *http.Request) *org {
	id := r.PathValue("orgId")
	o := s.orgs[id]
	if o == nil {
		orgNotFound(w, id)
	}
	return o
}

func (s *Server) handleUserMe(w http.ResponseWriter, r *http.Request) {
	p := principalOf(r)
	s.mu.Lock()
	orgs := make([]map[string]any, 0, len(s.orgs))
	for _, o := range s.orgs {
		var group any
		if o.groupID != "" {
			group = map[string]string{"id": o.groupID, "name": "Group " + o.groupID}
		}
		orgs = append(orgs, map[string]any{"id": o.id, "name": o.name, "slug": o.slug, "group": group})
	}
	s.mu.Unlock()
	sort.Slice(orgs, func(i, j int) bool { return orgs[i]["id"].(string) < orgs[j]["id"].(string) })
	writeJSON(w, http.StatusOK, map[string]any{
		"id":       p.id,
		"username": p.username,
		"email":    p.email,
		"orgs":     orgs,
	})
}

func (s *Server) handleList(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	o := s.lookupOrg(w, r)
	if o == nil {
		return
	}
	writeJSON(w, http.StatusOK, s.integrationMap(o.id))
}

func (s *Server) handleByType(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	o := s.lookupOrg(w, r)
	if o == nil {
		return
	}
	typ := r.PathValue("type")
	in := s.integrationByType(o.id, typ)
	if in == nil {
		v1Error(w, http.StatusNotFound, fmt.Sprintf("Integration of type %s was not found in org %s.", typ, o.id))
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"id": in.id})
}

type brokerReq struct {
	Enabled bool `json:"enabled"`
}

type integrationReq struct {
	Type        string         `json:"type"`
	Broker      *brokerReq     `json:"broker"`
	Credentials map[string]any `json:"credentials"`
}

func (s *Server) handleAdd(w http.ResponseWriter, r *http.Request) {
	var req integrationReq
	if !decodeBody(w, r, &req) {
		return
	}
	if req.Type == "" {
		v1Error(w, http.StatusBadRequest, `"type" is required`)
		return
	}
	brokered := req.Broker != nil && req.Broker.Enabled
	if !brokered && len(req.Credentials) == 0 {
		v1Error(w, http.StatusBadRequest, "Either credentials or broker settings must be provided")
		return
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	o := s.lookupOrg(w, r)
	if o == nil {
		return
	}
	if s.integrationByType(o.id, req.Type) != nil {
		// Undocumented at Snyk (409 or 422); the engine should use PUT.
		v1Error(w, http.StatusConflict, fmt.Sprintf("Integration of type %s already exists in org %s.", req.Type, o.id))
		return
	}
	in := s.newIntegration(o, req.Type)
	in.credentials = cloneMap(req.Credentials)
	if !brokered {
		writeJSON(w, http.StatusOK, map[string]string{"id": in.id})
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"id": in.id, "brokerToken": s.enableBroker(in)})
}

func (s *Server) handleUpdate(w http.ResponseWriter, r *http.Request) {
	var req integrationReq
	if !decodeBody(w, r, &req) {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	_, in := s.lookup(w, r)
	if in == nil {
		return
	}
	switch {
	case req.Type == "":
		v1Error(w, http.StatusBadRequest, `"type" is required`)
		return
	case req.Type != in.typ:
		v1Error(w, http.StatusBadRequest, fmt.Sprintf("Integration %s is of type %s, not %s.", in.id, in.typ, req.Type))
		return
	}

	switch {
	case req.Broker != nil && req.Broker.Enabled:
		if !in.brokered {
			writeJSON(w, http.StatusOK, map[string]string{"id": in.id, "brokerToken": s.enableBroker(in)})
			return
		}
		tg := s.tokens[in.tokenKey]
		switch s.behaviour.EnableOnBrokered {
		case EnableNewToken:
			tg.current = s.mint()
		case EnableError:
			v1Error(w, s.behaviour.EnableOnBrokeredStatus, refusalMessage(s.behaviour.EnableOnBrokeredMessage, in.id))
			return
		}
		writeJSON(w, http.StatusOK, map[string]string{"id": in.id, "brokerToken": tg.current})

	case req.Broker != nil:
		// Snyk: "Credentials required for disabling brokered integration".
		if len(req.Credentials) == 0 {
			v1Error(w, http.StatusBadRequest, "Credentials required for disabling brokered integration")
			return
		}
		if in.brokered {
			s.disableBroker(in)
		}
		in.credentials = cloneMap(req.Credentials)
		writeJSON(w, http.StatusOK, map[string]string{"id": in.id})

	case len(req.Credentials) > 0:
		if in.brokered {
			v1Error(w, http.StatusBadRequest, fmt.Sprintf("Integration %s is brokered; its credentials can only be updated when Broker is disabled.", in.id))
			return
		}
		in.credentials = cloneMap(req.Credentials)
		writeJSON(w, http.StatusOK, map[string]string{"id": in.id})

	default:
		v1Error(w, http.StatusBadRequest, "Either credentials or broker settings must be provided")
	}
}

func (s *Server) notBrokered(w http.ResponseWriter, in *integration) {
	v1Error(w, s.behaviour.NotBrokeredStatus, refusalMessage(s.behaviour.NotBrokeredMessage, in.id))
}

// brokeredTokens finds the request's integration and its token group, or
// answers the error (unknown org/integration, not brokered) and returns nil.
// The caller holds s.mu.
func (s *Server) brokeredTokens(w http.ResponseWriter, r *http.Request) (*integration, *tokenGroup) {
	_, in := s.lookup(w, r)
	if in == nil {
		return nil, nil
	}
	if !in.brokered {
		s.notBrokered(w, in)
		return nil, nil
	}
	return in, s.tokens[in.tokenKey]
}

func (s *Server) handleProvision(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	in, tg := s.brokeredTokens(w, r)
	if in == nil {
		return
	}
	if s.groupProvisional[tg.lane] != "" {
		v1Error(w, s.behaviour.ProvisionConflictStatus, refusalMessage(s.behaviour.ProvisionConflictMessage, in.id))
		return
	}
	tg.provisional = s.mint()
	tg.provisionedBy = in.id
	s.groupProvisional[tg.lane] = in.tokenKey
	s.provisionsBy[in.id]++
	writeJSON(w, http.StatusOK, map[string]string{"id": in.id, "provisionalBrokerToken": tg.provisional})
}

func (s *Server) handleSwitch(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	in, tg := s.brokeredTokens(w, r)
	if in == nil {
		return
	}
	if tg.provisional == "" {
		v1Error(w, s.behaviour.SwitchWithoutProvisionalStatus, refusalMessage(s.behaviour.SwitchWithoutProvisionalMessage, in.id))
		return
	}
	tg.current, tg.provisional, tg.provisionedBy = tg.provisional, "", ""
	delete(s.groupProvisional, tg.lane)
	s.switches++
	s.switchesBy[in.id]++
	w.WriteHeader(http.StatusOK)
}

func (s *Server) handleClone(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Destination string `json:"destinationOrgPublicId"`
	}
	if !decodeBody(w, r, &req) {
		return
	}
	if req.Destination == "" {
		v1Error(w, http.StatusBadRequest, `"destinationOrgPublicId" is required`)
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	src, in := s.lookup(w, r)
	if in == nil {
		return
	}
	dst := s.orgs[req.Destination]
	if dst == nil {
		orgNotFound(w, req.Destination)
		return
	}
	if src.groupID == "" || src.groupID != dst.groupID {
		v1Error(w, http.StatusBadRequest, "The destination organization must be in the same group as the source organization.")
		return
	}
	if s.integrationByType(dst.id, in.typ) != nil {
		v1Error(w, http.StatusConflict, fmt.Sprintf("Integration of type %s already exists in org %s.", in.typ, dst.id))
		return
	}
	// The clone shares the token group: one token, switched together.
	c := &integration{
		id:          uuid.NewString(),
		orgID:       dst.id,
		typ:         in.typ,
		brokered:    in.brokered,
		credentials: cloneMap(in.credentials),
		settings:    cloneMap(in.settings),
		tokenKey:    in.tokenKey,
	}
	s.integrations[c.id] = c
	writeJSON(w, http.StatusOK, map[string]string{"newIntegrationId": c.id})
}

func (s *Server) handleDeleteCredentials(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, in := s.lookup(w, r)
	if in == nil {
		return
	}
	// Snyk: "If this is a brokered connection the operation will have no
	// effect", so this can never revoke a Broker token.
	if !in.brokered {
		in.credentials = nil
	}
	w.WriteHeader(http.StatusOK)
}

func (s *Server) handleSettings(w http.ResponseWriter, r *http.Request) {
	var patch map[string]any
	if r.Method == http.MethodPut {
		if !decodeBody(w, r, &patch) {
			return
		}
		if patch == nil {
			v1Error(w, http.StatusBadRequest, "Settings must be a JSON object")
			return
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	_, in := s.lookup(w, r)
	if in == nil {
		return
	}
	if in.settings == nil {
		in.settings = map[string]any{}
	}
	for k, v := range patch {
		in.settings[k] = v
	}
	writeJSON(w, http.StatusOK, in.settings)
}
