// Package scmtest holds faithful fakes of the SCM APIs the validators in
// package scm call: GitHub (and GitHub Enterprise Server), GitLab, Azure
// DevOps and Bitbucket Server/Data Center. Each is a plain http.Handler with
// a table of credentials, so the same fake serves unit tests (through
// tlstest's CA) and the engine's simulator process.
//
// Bodies, headers and status codes are those the SCMs document (GitHub's
// REST reference, GitLab's personal access token and user APIs, Azure DevOps
// REST, Bitbucket Server's REST reference). Where a behaviour is not
// documented, the fake picks the documented reading and its doc comment says
// so.
//
// Every route is wrapped by a fault.Injector (see Faults) under the route
// name constants below, so a test can arm a 429/5xx/latency on one route and
// later count how often it was called. Exported configuration fields must be
// set before the fake serves its first request.
//
// SeenTokens returns the secrets presented (the token, or the password part
// of Basic authentication, decoded) in first-seen order, so a test can assert
// that nothing but the configured credential ever reached the SCM. This
// package does not import package scm, so scm's own tests can use it.
package scmtest

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/snyk-vault/vault-plugin-secrets-snyk/backend/fault"
)

// Fault is re-exported so callers need not import package fault.
type Fault = fault.Fault

// Fake is what every fake in this package implements; a simulator can hold
// them in one table.
type Fake interface {
	http.Handler
	Faults() *fault.Injector
	SeenTokens() []string
}

var (
	_ Fake = (*GitHub)(nil)
	_ Fake = (*GitLab)(nil)
	_ Fake = (*Azure)(nil)
	_ Fake = (*Bitbucket)(nil)
)

// seenSet records distinct credentials in first-seen order.
type seenSet struct {
	mu    sync.Mutex
	order []string
	set   map[string]bool
}

func (s *seenSet) add(cred string) {
	if cred == "" {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.set == nil {
		s.set = map[string]bool{}
	}
	if !s.set[cred] {
		s.set[cred] = true
		s.order = append(s.order, cred)
	}
}

func (s *seenSet) list() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.order...)
}

// authorization splits an Authorization header into its scheme (lower case)
// and credential.
func authorization(r *http.Request) (scheme, cred string) {
	h := strings.TrimSpace(r.Header.Get("Authorization"))
	if h == "" {
		return "", ""
	}
	scheme, cred, _ = strings.Cut(h, " ")
	return strings.ToLower(scheme), strings.TrimSpace(cred)
}

// basicCredentials decodes Basic authentication; ok is false when the header
// is not Basic or not valid base64 "user:secret".
func basicCredentials(r *http.Request) (user, secret string, ok bool) {
	scheme, cred := authorization(r)
	if scheme != "basic" {
		return "", "", false
	}
	raw, err := base64.StdEncoding.DecodeString(cred)
	if err != nil {
		return "", "", false
	}
	user, secret, ok = strings.Cut(string(raw), ":")
	return user, secret, ok
}

// presentedSecret is what SeenTokens records for a request: the decoded
// Basic password, or the raw credential of any other scheme.
func presentedSecret(r *http.Request) string {
	if _, secret, ok := basicCredentials(r); ok {
		return secret
	}
	_, cred := authorization(r)
	return cred
}

func writeJSON(w http.ResponseWriter, status int, body any) {
	var b []byte
	switch v := body.(type) {
	case string:
		b = []byte(v)
	case []byte:
		b = v
	default:
		var err error
		if b, err = json.Marshal(v); err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
	}
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	_, _ = w.Write(b)
}

// queryInt reads a non-negative integer query parameter.
func queryInt(r *http.Request, name string, def int) int {
	v := r.URL.Query().Get(name)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 0 {
		return def
	}
	return n
}

// page slices items for start/limit paging and reports the next start.
func page[T any](items []T, start, limit int) (out []T, next int, last bool) {
	if start > len(items) {
		start = len(items)
	}
	end := start + limit
	if limit <= 0 || end > len(items) {
		end = len(items)
	}
	return items[start:end], end, end >= len(items)
}

// requestIDs hands out deterministic request ids.
type requestIDs struct {
	mu sync.Mutex
	n  int
}

func (c *requestIDs) next(prefix string) string {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.n++
	return fmt.Sprintf("%s%08X", prefix, c.n)
}

func clock(now func() time.Time) time.Time {
	if now == nil {
		return time.Now()
	}
	return now()
}
