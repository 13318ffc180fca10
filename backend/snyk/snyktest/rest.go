package snyktest

import (
	"encoding/json"
	"fmt"
	"mime"
	"net/http"
	"regexp"
)

const jsonAPI = "application/vnd.api+json"

// versionRE is the REST API's version syntax (§6.1), slightly simplified.
var versionRE = regexp.MustCompile(`^(wip|work-in-progress|experimental|beta|\d{4}-(0[1-9]|1[0-2])-(0[1-9]|[12]\d|3[01])(~(wip|work-in-progress|experimental|beta))?)$`)

// restAPI enforces what every REST route demands of a request (§8.3).
func (s *Server) restAPI(next http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		version := q.Get("version")
		switch {
		case version == "":
			restError(w, http.StatusBadRequest, "Missing required query parameter 'version'", "version")
			return
		case !versionRE.MatchString(version):
			restError(w, http.StatusBadRequest, fmt.Sprintf("Invalid query parameter 'version': %q", version), "version")
			return
		}
		if r.ContentLength > 0 || len(r.TransferEncoding) > 0 {
			mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
			if mt != jsonAPI {
				restError(w, http.StatusBadRequest, "Client request did not conform to OpenAPI specification", "")
				return
			}
		}
		w.Header().Set("snyk-version-requested", version)
		w.Header().Set("snyk-version-served", version)
		next(w, r)
	}
}

func restError(w http.ResponseWriter, status int, detail, parameter string) {
	e := map[string]any{"status": fmt.Sprint(status), "detail": detail}
	if parameter != "" {
		e["source"] = map[string]string{"parameter": parameter}
	}
	writeREST(w, status, map[string]any{"jsonapi": map[string]string{"version": "1.0"}, "errors": []any{e}})
}

func writeREST(w http.ResponseWriter, status int, doc any) {
	b, err := json.Marshal(doc)
	if err != nil {
		http.Error(w, "encoding failed", http.StatusInternalServerError)
		return
	}
	writeJSONBytes(w, status, jsonAPI, b)
}

func (s *Server) handleSelf(w http.ResponseWriter, r *http.Request) {
	p := principalOf(r)
	data := map[string]any{"id": p.id}
	if p.serviceAccount {
		data["type"] = "service_account"
		data["attributes"] = map[string]any{"name": p.name}
	} else {
		data["type"] = "user"
		data["attributes"] = map[string]any{"name": p.name, "username": p.username, "email": p.email}
	}
	writeREST(w, http.StatusOK, map[string]any{
		"jsonapi": map[string]string{"version": "1.0"},
		"data":    data,
		"links":   map[string]string{"self": "/self?version=" + r.URL.Query().Get("version")},
	})
}

func (s *Server) handleOrg(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("org_id")
	s.mu.Lock()
	o := s.orgs[id]
	var cp org
	if o != nil {
		cp = *o
	}
	s.mu.Unlock()
	if o == nil {
		restError(w, http.StatusNotFound, fmt.Sprintf("Org %s was not found or you may not have the correct permissions to access the org.", id), "")
		return
	}
	attrs := map[string]any{"name": cp.name, "slug": cp.slug}
	if cp.groupID != "" {
		// Absent rather than empty for an org outside any group.
		attrs["group_id"] = cp.groupID
	}
	writeREST(w, http.StatusOK, map[string]any{
		"jsonapi": map[string]string{"version": "1.0"},
		"data":    map[string]any{"id": cp.id, "type": "org", "attributes": attrs},
		"links":   map[string]string{"self": "/orgs/" + cp.id + "?version=" + r.URL.Query().Get("version")},
	})
}
