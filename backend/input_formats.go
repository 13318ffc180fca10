package backend

import (
	"fmt"
	"net/url"
	"regexp"
	"strings"

	"github.com/google/uuid"
	"github.com/snyk-vault/vault-plugin-secrets-snyk/backend/scm"
)

// slugPattern is the form of an org name in Vault paths when it is not a
// Snyk org ID: lower case so that ACL globs behave predictably.
var slugPattern = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]*$`)

// uuidPattern accepts only the canonical 8-4-4-4-12 hex form Snyk uses for
// org, integration and Broker token IDs (uuid.Parse alone also accepts
// braces, URNs and no-dash forms).
var uuidPattern = regexp.MustCompile(`^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$`)

func isUUID(s string) bool {
	if !uuidPattern.MatchString(s) {
		return false
	}
	_, err := uuid.Parse(s)
	return err == nil
}

// checkHTTPSURL returns a caller-facing problem when raw is not an absolute
// https URL, or "" when it is fine. Credentials must never travel in clear
// text, so http:// is refused rather than silently upgraded.
func checkHTTPSURL(field, raw string) string {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" || u.Scheme == "" {
		return fmt.Sprintf("%s must be an absolute https URL such as https://host.example.com, got %q", field, raw)
	}
	if u.Scheme != "https" {
		return fmt.Sprintf("%s must use https (credentials are sent to it); got scheme %q in %q", field, u.Scheme, raw)
	}
	if u.User != nil {
		return fmt.Sprintf("%s must not embed credentials; pass them in their own fields", field)
	}
	if u.RawQuery != "" || u.Fragment != "" {
		return fmt.Sprintf("%s must not have a query or fragment, got %q", field, raw)
	}
	return ""
}

// checkClientURL validates broker_client_url: http or https, a host, no
// embedded credentials.
func checkClientURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Sprintf("broker_client_url must be an absolute http(s) URL such as http://snyk-broker:8000, got %q", raw)
	}
	if u.User != nil {
		return "broker_client_url must not embed credentials"
	}
	return ""
}

// isLoopbackHTTP reports a plain-http URL on the local machine.
func isLoopbackHTTP(raw string) bool {
	u, err := url.Parse(raw)
	if err != nil || u.Scheme != "http" {
		return false
	}
	switch u.Hostname() {
	case "127.0.0.1", "localhost", "::1":
		return true
	}
	return false
}

// normalizeURL trims the trailing slash so that paths can be appended.
func normalizeURL(raw string) string {
	return strings.TrimRight(strings.TrimSpace(raw), "/")
}

// hostPath is the URL without its scheme ("ghe.example.com/api/v3"), the form
// the Broker client's templates expect in GITHUB, GITHUB_API, GITLAB, …
func hostPath(raw string) string {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" {
		return raw
	}
	return strings.TrimRight(u.Host+u.EscapedPath(), "/")
}

// checkPathNames validates <name> and <scm> and resolves the org ID a name
// implies. It returns a caller-facing problem, or "".
func checkPathNames(name, scmKind string) string {
	if !scm.Valid(scmKind) {
		return fmt.Sprintf("unknown scm %q in the path: use one of %s", scmKind, strings.Join(scm.Kinds, ", "))
	}
	return checkName(name)
}

// maxNameLength keeps storage keys and ACL paths reasonable.
const maxNameLength = 128

// checkName validates an org name of a path, "" when it is fine.
func checkName(name string) string {
	switch {
	case len(name) > maxNameLength:
		return fmt.Sprintf("name is %d bytes long; use at most %d (a Snyk org ID, or a shorter slug)", len(name), maxNameLength)
	case strings.Contains(name, ".."):
		// Vault's storage refuses keys with "..": say so instead of a 500.
		return fmt.Sprintf("name %q must not contain \"..\"", name)
	case !isUUID(name) && !slugPattern.MatchString(name):
		return fmt.Sprintf("name %q must be a Snyk org ID (UUID) or a lower-case slug matching [a-z0-9][a-z0-9._-]*", name)
	}
	return ""
}
