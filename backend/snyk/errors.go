package snyk

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
)

// APIError is a non-2xx answer from Snyk.
type APIError struct {
	Status int
	// Message is Snyk's own explanation, or the HTTP status text when the
	// body could not be read as one of Snyk's error shapes.
	Message string
	// Ref is Snyk's error reference (errorRef or x-error-reference), for
	// support tickets.
	Ref    string
	Method string
	Path   string
}

// Error names the call and Snyk's message only: no header, query or body.
func (e *APIError) Error() string {
	return fmt.Sprintf("snyk: %s %s: %d: %s", e.Method, e.Path, e.Status, e.Message)
}

// StatusOf returns the HTTP status of a wrapped *APIError, 0 otherwise.
func StatusOf(err error) int {
	var ae *APIError
	if errors.As(err, &ae) {
		return ae.Status
	}
	return 0
}

// maxMessage keeps a pathological upstream message from flooding Vault's
// responses and audit log.
const maxMessage = 500

// apiError reads whichever of Snyk's error shapes the body has. Only the
// named message fields are ever copied: an arbitrary body (a proxy's HTML
// page, an echo of the request) could contain the credential.
func (c *Client) apiError(rq request, status int, hdr http.Header, body []byte) *APIError {
	e := &APIError{Status: status, Method: rq.method, Path: c.basePath + rq.path}

	var raw struct {
		Message          json.RawMessage `json:"message"`
		Error            json.RawMessage `json:"error"`
		ErrorDescription json.RawMessage `json:"error_description"`
		ErrorRef         json.RawMessage `json:"errorRef"`
		Errors           []struct {
			Detail string `json:"detail"`
			Title  string `json:"title"`
		} `json:"errors"`
	}
	if json.Unmarshal(body, &raw) == nil {
		var restDetail string
		if len(raw.Errors) > 0 {
			restDetail = raw.Errors[0].Detail
			if restDetail == "" {
				restDetail = raw.Errors[0].Title
			}
		}
		var candidates []string
		switch rq.kind {
		case kindOAuth:
			candidates = []string{str(raw.ErrorDescription), str(raw.Error), str(raw.Message)}
		case kindREST:
			candidates = []string{restDetail, str(raw.Message), str(raw.Error)}
		default:
			candidates = []string{str(raw.Message), str(raw.Error), restDetail}
		}
		for _, m := range candidates {
			if strings.TrimSpace(m) != "" {
				e.Message = strings.TrimSpace(m)
				break
			}
		}
		e.Ref = str(raw.ErrorRef)
	}
	if e.Ref == "" {
		e.Ref = hdr.Get("x-error-reference")
	}
	e.Message = c.redact(e.Message)
	if len(e.Message) > maxMessage {
		e.Message = strings.ToValidUTF8(e.Message[:maxMessage], "") + "…"
	}
	if e.Message == "" {
		e.Message = http.StatusText(status)
		if e.Message == "" {
			e.Message = fmt.Sprintf("HTTP %d", status)
		}
	}
	return e
}

// str returns a JSON string's value, or "" for any other JSON type (v1's
// "error" is sometimes an object).
func str(raw json.RawMessage) string {
	var s string
	if len(raw) == 0 || json.Unmarshal(raw, &s) != nil {
		return ""
	}
	return s
}
