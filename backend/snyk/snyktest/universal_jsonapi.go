package snyktest

import (
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
)

// The JSON:API side of the Universal Broker routes: bodies in, resources,
// pages and errors out.

var jsonAPIVersion = map[string]string{"version": "1.0"}

// ubError writes a JSON:API error whose source is a body pointer.
func ubError(w http.ResponseWriter, e *fieldError) {
	item := map[string]any{"status": strconv.Itoa(e.status), "detail": e.detail}
	if e.pointer != "" {
		item["source"] = map[string]string{"pointer": e.pointer}
	}
	writeREST(w, e.status, map[string]any{"jsonapi": jsonAPIVersion, "errors": []any{item}})
}

// cursor encodes a position the way Snyk's cursors look (v1.<base64 JSON>);
// clients must treat it as opaque.
func cursor(id string) string {
	raw, _ := json.Marshal(map[string]string{"id": id})
	return "v1." + base64.StdEncoding.EncodeToString(raw)
}

func (u *universalState) cursorRank(c string) (int, bool) {
	raw, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(c, "v1."))
	var pos struct{ ID string }
	if err != nil || !strings.HasPrefix(c, "v1.") || json.Unmarshal(raw, &pos) != nil {
		return 0, false
	}
	rank, ok := u.rank[pos.ID]
	return rank, ok
}

// writeList answers one page of ids (in creation order) as Snyk's REST
// lists do: limit 1–100 (default 10) items after starting_after, links.self,
// and links.next, relative to /rest, only while more remain (docs.snyk.io,
// "Links for pagination in Snyk REST API"). s.mu must be held.
func (s *Server) writeList(w http.ResponseWriter, r *http.Request, ids []string, render func(id string) any) {
	u := s.universal()
	q := r.URL.Query()
	limit := 10
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 100 {
			restError(w, http.StatusBadRequest, "limit must be an integer between 1 and 100", "limit")
			return
		}
		limit = n
	}
	ids = u.inOrder(ids)
	start := 0
	if c := q.Get("starting_after"); c != "" {
		rank, ok := u.cursorRank(c)
		if !ok {
			restError(w, http.StatusBadRequest, "starting_after is not a valid cursor", "starting_after")
			return
		}
		for start < len(ids) && u.rank[ids[start]] <= rank {
			start++
		}
	}
	end := min(start+limit, len(ids))
	data := []any{}
	for _, id := range ids[start:end] {
		data = append(data, render(id))
	}
	path := strings.TrimPrefix(r.URL.Path, "/rest")
	links := map[string]string{"self": path + "?" + r.URL.RawQuery}
	if end < len(ids) {
		next := url.Values{"version": {q.Get("version")}, "limit": {strconv.Itoa(limit)}, "starting_after": {cursor(ids[end-1])}}
		links["next"] = path + "?" + next.Encode()
	}
	writeREST(w, http.StatusOK, map[string]any{"jsonapi": jsonAPIVersion, "data": data, "links": links})
}

func writeCreated(w http.ResponseWriter, r *http.Request, data any) {
	writeREST(w, http.StatusCreated, map[string]any{"jsonapi": jsonAPIVersion, "data": data,
		"links": map[string]string{"self": strings.TrimPrefix(r.URL.Path, "/rest") + "?" + r.URL.RawQuery}})
}

// decodeJSONAPI reads a JSON:API request body into v, answering 400 when it
// is not one.
func decodeJSONAPI(w http.ResponseWriter, r *http.Request, v any) bool {
	raw, _ := io.ReadAll(r.Body)
	if json.Unmarshal(raw, v) != nil {
		restError(w, http.StatusBadRequest, "Client request did not conform to OpenAPI specification", "")
		return false
	}
	return true
}

// render returns a configuration with references as "${ENV}". s.mu must
// be held.
func (u *universalState) render(plain, refs map[string]string) map[string]any {
	out := map[string]any{}
	for k, v := range plain {
		out[k] = v
	}
	for k, id := range refs {
		out[k] = "${" + u.credentials[id].env + "}"
	}
	return out
}

func (u *universalState) deploymentResource(id string) any {
	d := u.deployments[id]
	return map[string]any{"id": d.id, "type": "broker_deployment", "attributes": map[string]any{
		"broker_app_installed_in_org_id": u.installs[d.installID].orgID, "install_id": d.installID, "metadata": d.metadata,
	}}
}

func (u *universalState) credentialResource(id string) any {
	c := u.credentials[id]
	uses := []any{}
	for _, connID := range u.inOrder(u.connectionsOf(c.deploymentID)) {
		for _, ref := range u.connections[connID].refs {
			if ref == c.id {
				uses = append(uses, map[string]any{"data": map[string]string{"id": connID, "type": "broker_connection"}})
				break
			}
		}
	}
	return map[string]any{"id": c.id, "type": "deployment_credential",
		"attributes":    map[string]any{"environment_variable_name": c.env, "type": c.typ, "comment": c.comment, "deployment_id": c.deploymentID},
		"relationships": map[string]any{"broker_connections": uses}}
}

// notYetImplemented is what Snyk documents the connection secrets to read.
var notYetImplemented = map[string]string{"encrypted": "not-yet-implemented", "expires_at": "not-yet-implemented", "nonce": "not-yet-implemented"}

func (u *universalState) connectionResource(id string) any {
	c := u.connections[id]
	return map[string]any{"id": c.id, "type": "broker_connection", "attributes": map[string]any{
		"deployment_id": c.deploymentID, "identifier": nullable(c.identifier), "name": c.name,
		"secrets":       map[string]any{"primary": notYetImplemented, "secondary": notYetImplemented},
		"configuration": map[string]any{"type": c.typ, "required": u.render(c.plain, c.refs), "validations": []any{}},
	}, "relationships": u.contextsOf(c.id)}
}

// contextsOf is a connection's contexts as the specification types the
// connection's relationships: an array of {id, type, attributes.context}.
func (u *universalState) contextsOf(connectionID string) []any {
	var ids []string
	for id, x := range u.contexts {
		if x.connectionID == connectionID {
			ids = append(ids, id)
		}
	}
	out := []any{}
	for _, id := range u.inOrder(ids) {
		x := u.contexts[id]
		out = append(out, map[string]any{"id": x.id, "type": "broker_context", "attributes": map[string]any{"context": u.render(x.plain, x.refs)}})
	}
	return out
}

// contextResource is the list shape the fake chose for GET D/contexts
// (Snyk documents the fields, not this exact layout): the context values
// with references as "${ENV}", and the connection it overrides.
func (u *universalState) contextResource(id string) any {
	x := u.contexts[id]
	return map[string]any{"id": x.id, "type": "broker_context",
		"attributes":    map[string]any{"context": u.render(x.plain, x.refs)},
		"relationships": map[string]any{"broker_connection": map[string]any{"data": map[string]string{"id": x.connectionID, "type": "broker_connection"}}}}
}

func nullable(s string) any {
	if s == "" {
		return nil
	}
	return s
}

func (u *universalState) connectionsOf(deploymentID string) []string {
	var ids []string
	for id, c := range u.connections {
		if c.deploymentID == deploymentID {
			ids = append(ids, id)
		}
	}
	return ids
}
