package scm

import (
	"context"
	"encoding/base64"
	"net/http"
	"strings"
)

// bitbucketError is the shape of Bitbucket Server's error bodies.
type bitbucketError struct {
	Errors []struct {
		Message       string `json:"message"`
		ExceptionName string `json:"exceptionName"`
	} `json:"errors"`
}

// basicDisabled recognizes the 401 of an instance that refuses passwords
// over basic authentication, so the fix can point at access tokens instead.
func (r *response) basicDisabled() bool {
	var e bitbucketError
	if r.decode(&e) != nil {
		return false
	}
	for _, m := range e.Errors {
		msg := strings.ToLower(m.Message + " " + m.ExceptionName)
		if strings.Contains(msg, "basic") && strings.Contains(msg, "disabled") {
			return true
		}
	}
	return false
}

func (s *session) bitbucket(ctx context.Context, c Credential) error {
	var auth func(http.Header)
	var who string
	if c.Token != "" {
		auth = func(h http.Header) { h.Set("Authorization", "Bearer "+c.Token) }
		who = "the HTTP access token"
	} else {
		basic := "Basic " + base64.StdEncoding.EncodeToString([]byte(c.Username+":"+c.Password))
		auth = func(h http.Header) { h.Set("Authorization", basic) }
		who = "user " + c.Username
	}

	resp, err := s.get(ctx, s.endpoint("/rest/api/1.0/projects?limit=1"), auth)
	if err != nil {
		return err
	}
	switch resp.status {
	case http.StatusOK:
	case http.StatusUnauthorized:
		switch {
		case c.Token == "" && resp.basicDisabled():
			s.problem("Bitbucket Server has basic authentication with passwords disabled, so %s cannot sign in with a password: create an HTTP access token with Repository admin permission and set it as scm_token (or as scm_password)", who)
		case c.Token != "":
			s.problem("Bitbucket Server rejected the HTTP access token (401): it is invalid, expired or revoked; create an HTTP access token with Repository admin permission (Manage account, HTTP access tokens)")
		default:
			s.problem("Bitbucket Server rejected the credentials of %s (401): the password or HTTP access token is wrong, expired or revoked, or the account is locked; fix scm_password or use a new HTTP access token with Repository admin permission", who)
		}
		return nil
	case http.StatusForbidden:
		s.problem("Bitbucket Server refused %s access to the REST API (403): the account may lack the product licence or be deactivated; ask a Bitbucket administrator", who)
		return nil
	case http.StatusNotFound:
		s.problem("no Bitbucket Server REST API at %s/rest/api/1.0 (404): check scm_url / scm_api_url, including any context path", s.base)
		return nil
	default:
		return s.upstreamError(resp)
	}
	var page struct {
		Values []struct{} `json:"values"`
	}
	if err := resp.decode(&page); err != nil {
		return err
	}
	s.username = resp.header.Get("X-AUSERNAME")
	if s.username == "" {
		if err := s.bitbucketWhoami(ctx, auth); err != nil {
			return err
		}
	}

	resp, err = s.get(ctx, s.endpoint("/rest/api/1.0/repos?permission="+ScopeBitbucketRepoAdmin+"&limit=1"), auth)
	if err != nil {
		return err
	}
	if resp.status != http.StatusOK {
		return s.upstreamError(resp)
	}
	if err := resp.decode(&page); err != nil {
		return err
	}
	if len(page.Values) > 0 {
		s.scopes = append(s.scopes, ScopeBitbucketRepoAdmin)
	} else {
		s.miss(ScopeBitbucketRepoAdmin)
		s.problem("%s has no REPO_ADMIN (Repository admin) permission on any repository, which Snyk Broker needs to manage webhooks: grant the user Repository admin on the repositories Snyk should import (or give the token Repository admin permission)", who)
	}
	s.note("Bitbucket Server does not reveal a token's expiry to the token itself, so the expiry is unknown")
	return nil
}

// bitbucketWhoami is the fallback when a proxy stripped X-AUSERNAME.
func (s *session) bitbucketWhoami(ctx context.Context, auth func(http.Header)) error {
	resp, err := s.get(ctx, s.endpoint("/plugins/servlet/applinks/whoami"), auth)
	if err != nil {
		return err
	}
	if resp.status == http.StatusOK && !resp.isHTML() {
		// A login page or proxy error would not be a short single token.
		if name := strings.TrimSpace(string(resp.body)); len(name) <= 255 && printable(name) {
			s.username = name
		}
	}
	return nil
}
