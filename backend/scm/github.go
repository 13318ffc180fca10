package scm

import (
	"context"
	"fmt"
	"net/http"
	"net/textproto"
	"slices"
	"strings"
	"time"
)

// githubParent maps a scope to the next broader scope that includes it.
// GitHub stores a normalized list, so a token created with admin:org lists
// admin:org alone and read:org must be inferred.
var githubParent = map[string]string{
	"repo:status":     "repo",
	"repo_deployment": "repo",
	"public_repo":     "repo",
	"repo:invite":     "repo",
	"security_events": "repo",
	"read:repo_hook":  "write:repo_hook",
	"write:repo_hook": "admin:repo_hook",
	"read:org":        "write:org",
	"write:org":       "admin:org",
}

// githubAncestors lists the scopes that also grant scope, broadest first.
func githubAncestors(scope string) []string {
	var out []string
	for p, ok := githubParent[scope]; ok; p, ok = githubParent[p] {
		out = append(out, p)
	}
	slices.Reverse(out)
	return out
}

// githubSatisfied reports whether a token holding have grants scope.
func githubSatisfied(have []string, scope string) bool {
	if slices.Contains(have, scope) {
		return true
	}
	for _, a := range githubAncestors(scope) {
		if slices.Contains(have, a) {
			return true
		}
	}
	return false
}

// parseGitHubScopes splits X-OAuth-Scopes ("repo, read:org").
func parseGitHubScopes(v string) []string {
	var out []string
	for _, f := range strings.Split(v, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

// parseGitHubExpiry reads GitHub-Authentication-Token-Expiration, which has
// been seen both with a zone name ("… UTC") and a numeric offset ("… +0900").
func parseGitHubExpiry(v string) (time.Time, bool) {
	v = strings.TrimSpace(v)
	for _, layout := range []string{"2006-01-02 15:04:05 MST", "2006-01-02 15:04:05 -0700"} {
		if t, err := time.Parse(layout, v); err == nil {
			return t.UTC(), true
		}
	}
	return time.Time{}, false
}

// nonClassicPrefixes are token kinds for which GitHub sends no (or an empty)
// scope header, so an empty header from them means "unknowable", not "none".
var nonClassicPrefixes = []string{"github_pat_", "ghs_", "ghu_"}

func (s *session) githubSettingsURL() string {
	if s.kind == GitHub {
		return "https://github.com/settings/tokens"
	}
	if web, ok := strings.CutSuffix(s.base, "/api/v3"); ok {
		return web + "/settings/tokens"
	}
	return "your GitHub Enterprise user settings (Developer settings, Personal access tokens)"
}

func (s *session) github(ctx context.Context, token string) error {
	resp, err := s.get(ctx, s.endpoint("/user"), func(h http.Header) {
		h.Set("Authorization", "token "+token)
		h.Set("Accept", "application/vnd.github+json")
		h.Set("X-GitHub-Api-Version", "2022-11-28")
	})
	if err != nil {
		return err
	}
	name := displayName(s.kind)
	switch resp.status {
	case http.StatusOK:
	case http.StatusUnauthorized:
		s.problem("%s rejected the token (Bad credentials): it is invalid, expired or revoked; create a classic PAT with scopes repo, read:org, admin:repo_hook at %s", name, s.githubSettingsURL())
		return nil
	case http.StatusForbidden, http.StatusTooManyRequests:
		return s.githubForbidden(resp)
	case http.StatusNotFound:
		s.problem("no %s REST API at %s (GET /user answered 404): check scm_url / scm_api_url (GitHub Enterprise serves it under /api/v3)", name, s.base)
		return nil
	default:
		return s.upstreamError(resp)
	}

	var user struct {
		Login string `json:"login"`
	}
	if err := resp.decode(&user); err != nil {
		return err
	}
	if user.Login == "" {
		return fmt.Errorf("%w: %s answered GET /user without a login", ErrUpstream, name)
	}
	s.username = user.Login

	if sso := resp.header.Get("X-GitHub-SSO"); strings.HasPrefix(sso, "partial-results") {
		s.note("%s left out organizations that enforce SAML single sign-on: authorize the token for SSO in those organizations if Snyk must import their repositories", name)
	}

	raw, present := resp.header[textproto.CanonicalMIMEHeaderKey("X-OAuth-Scopes")]
	header := strings.Join(raw, ",")
	if !present || (strings.TrimSpace(header) == "" && hasAnyPrefix(token, nonClassicPrefixes)) {
		for _, req := range RequiredScopes(s.kind) {
			s.miss(req)
		}
		s.problem("%s does not report scopes for fine-grained tokens, so repo/read:org/admin:repo_hook cannot be verified; use a classic PAT, or set skip_scm_validation=true to store it unchecked", name)
		if resp.header.Get("GitHub-Authentication-Token-Expiration") != "" {
			s.note("%s's expiry header is unreliable for fine-grained tokens, so it was ignored", name)
		}
		return nil
	}

	have := parseGitHubScopes(header)
	s.scopes = have
	for _, req := range RequiredScopes(s.kind) {
		if githubSatisfied(have, req) {
			continue
		}
		s.miss(req)
		also := ""
		switch anc := githubAncestors(req); len(anc) {
		case 0:
		case 1:
			also = fmt.Sprintf(" (%s also satisfies it)", anc[0])
		default:
			also = fmt.Sprintf(" (%s also satisfy it)", strings.Join(anc, " or "))
		}
		s.problem("the token lacks scope %s%s: edit the classic PAT at %s and tick %s", req, also, s.githubSettingsURL(), req)
	}

	if v := resp.header.Get("GitHub-Authentication-Token-Expiration"); v != "" {
		exp, ok := parseGitHubExpiry(v)
		switch {
		case !ok:
			s.note("%s sent an expiry this engine cannot parse, so the token's expiry is unknown", name)
		case !exp.After(s.v.now()):
			s.expires = exp
			s.problem("the token expired at %s: regenerate the classic PAT at %s", exp.Format(time.RFC3339), s.githubSettingsURL())
		default:
			s.expires = exp
		}
	}
	return nil
}

// githubForbidden tells apart GitHub's four kinds of 403/429. Only throttling
// is an error: the others are fixed by the operator, and none is retried,
// because repeating a rejected credential extends a lockout.
func (s *session) githubForbidden(resp *response) error {
	name := displayName(s.kind)
	if sso := resp.header.Get("X-GitHub-SSO"); strings.HasPrefix(sso, "required") {
		u := ""
		if _, after, ok := strings.Cut(sso, "url="); ok {
			u = strings.TrimSpace(strings.SplitN(after, ";", 2)[0])
		}
		if u != "" {
			s.problem("the token is not authorized for an organization that enforces SAML single sign-on: open %s (valid for one hour) while signed in to GitHub to authorize it, or use Configure SSO next to the token at %s", u, s.githubSettingsURL())
		} else {
			s.problem("the token is not authorized for an organization that enforces SAML single sign-on: use Configure SSO next to the token at %s", s.githubSettingsURL())
		}
		return nil
	}
	if githubThrottled(resp) {
		return fmt.Errorf("%w: %s rate limit reached on %s %s (status %d)%s; try again later", ErrThrottled, name, resp.method, resp.path, resp.status, retryHint(resp.header, s.v.now()))
	}
	if resp.status == http.StatusTooManyRequests {
		return s.upstreamError(resp)
	}
	s.problem("%s is temporarily rejecting authentication for this user after repeated failures (403): wait a few minutes, make sure nothing keeps retrying an old or wrong token, then validate again", name)
	return nil
}

// githubThrottled follows go-github's classification: remaining 0 is the
// primary limit; a secondary-limit documentation URL or message is the
// secondary one. A Retry-After on a 403 also only ever means throttling.
func githubThrottled(resp *response) bool {
	if resp.header.Get("X-Ratelimit-Remaining") == "0" || resp.header.Get("Retry-After") != "" {
		return true
	}
	var body struct {
		Message string `json:"message"`
		DocURL  string `json:"documentation_url"`
	}
	if resp.decode(&body) != nil {
		return false
	}
	msg := strings.ToLower(body.Message)
	return strings.Contains(body.DocURL, "secondary-rate-limits") ||
		strings.HasSuffix(body.DocURL, "#abuse-rate-limits") ||
		strings.Contains(msg, "secondary rate limit") ||
		strings.Contains(msg, "rate limit exceeded")
}

func hasAnyPrefix(s string, prefixes []string) bool {
	for _, p := range prefixes {
		if strings.HasPrefix(s, p) {
			return true
		}
	}
	return false
}
