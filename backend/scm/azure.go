package scm

import (
	"context"
	"encoding/base64"
	"net/http"
	"net/url"
	"strings"
)

func (s *session) azure(ctx context.Context, org, token string) error {
	org = strings.TrimSpace(org)
	// Broker sends the PAT with the fixed user name "PAT"; Azure ignores the
	// user name, but matching Broker means the same request is validated.
	basic := "Basic " + base64.StdEncoding.EncodeToString([]byte("PAT:"+token))
	auth := func(h http.Header) { h.Set("Authorization", basic) }
	orgPath := "/" + url.PathEscape(org)
	tokenFix := "create a PAT with scope Code: Read & write for organization " + org + " (User settings, Personal access tokens)"

	resp, err := s.get(ctx, s.endpoint(orgPath+"/_apis/git/repositories?api-version=7.1"), auth)
	if err != nil {
		return err
	}
	switch {
	case resp.status == http.StatusTooManyRequests || resp.status >= 500:
		return s.upstreamError(resp)
	case resp.status == http.StatusNotFound:
		s.problem("the Azure DevOps organization %q does not exist or is not visible at %s (404): check azure_org and scm_url", org, s.base)
		return nil
	case azureSignIn(resp):
		s.problem("Azure DevOps answered with a sign-in page (status %d) instead of data: the credential was not accepted; %s", resp.status, tokenFix)
		return nil
	case resp.status == http.StatusUnauthorized:
		// Azure answers 401 both for a dead PAT and for a live one without
		// Code scope; the identity probe tells the two apart.
		user, ok, err := s.azureIdentity(ctx, orgPath, auth)
		if err != nil {
			return err
		}
		if ok {
			s.username = user
			s.miss(ScopeAzureCodeWrite)
			s.problem("the token authenticates as %s but may not read repositories in organization %s (401), so it lacks Code (Read & write): %s", user, org, tokenFix)
			return nil
		}
		s.problem("Azure DevOps rejected the token for organization %s (401): it is invalid, expired, or lacks Code (Read & write); %s", org, tokenFix)
		return nil
	case resp.status != http.StatusOK:
		return s.upstreamError(resp)
	}
	var repos struct {
		Count *int `json:"count"`
	}
	if err := resp.decode(&repos); err != nil {
		return err
	}
	if repos.Count == nil {
		return s.upstreamError(resp)
	}
	user, ok, err := s.azureIdentity(ctx, orgPath, auth)
	if err != nil {
		return err
	}
	if !ok {
		// Public projects list repositories even to anonymous callers, so
		// the 200 above proves nothing about the PAT.
		s.problem("Azure DevOps served organization %s anonymously: the PAT was not accepted as a credential; %s", org, tokenFix)
		return nil
	}
	s.username = user
	s.scopes = append(s.scopes, ScopeAzureCode)
	s.note("Azure DevOps cannot prove Code write access (vso.code_write) without a write: the token can read repositories; make sure it was created with Code: Read & write")
	s.note("Azure DevOps does not reveal a PAT's expiry to the PAT itself, so the expiry is unknown; track it where the PAT was created")
	return nil
}

// azureIdentity asks connectionData who the caller is. ok is false when Azure
// did not accept the credential (401, a sign-in page, or the Anonymous user).
func (s *session) azureIdentity(ctx context.Context, orgPath string, auth func(http.Header)) (string, bool, error) {
	resp, err := s.get(ctx, s.endpoint(orgPath+"/_apis/connectionData"), auth)
	if err != nil {
		return "", false, err
	}
	if resp.status == http.StatusTooManyRequests || resp.status >= 500 {
		return "", false, s.upstreamError(resp)
	}
	if resp.status == http.StatusUnauthorized || resp.status == http.StatusNotFound || azureSignIn(resp) {
		return "", false, nil
	}
	if resp.status != http.StatusOK {
		return "", false, s.upstreamError(resp)
	}
	var conn struct {
		AuthenticatedUser struct {
			Descriptor          string `json:"descriptor"`
			ProviderDisplayName string `json:"providerDisplayName"`
		} `json:"authenticatedUser"`
	}
	if err := resp.decode(&conn); err != nil {
		return "", false, err
	}
	u := conn.AuthenticatedUser
	if u.ProviderDisplayName == "" || strings.EqualFold(u.ProviderDisplayName, "Anonymous") ||
		strings.HasPrefix(u.Descriptor, "System:PublicAccess") {
		return "", false, nil
	}
	return u.ProviderDisplayName, true, nil
}

// azureSignIn recognizes Azure's way of refusing credentials it cannot even
// parse: a 203 or any HTML page where JSON was asked for.
func azureSignIn(r *response) bool {
	return r.status == http.StatusNonAuthoritativeInfo || r.isHTML()
}
