package scm

import (
	"context"
	"net/http"
	"slices"
	"strings"
	"time"
)

// gitlabMaintainer is GitLab's Maintainer access level; Broker needs it to
// manage project webhooks.
const gitlabMaintainer = "40"

func (s *session) gitlabSettingsURL() string {
	if web, ok := strings.CutSuffix(s.base, "/api/v4"); ok {
		return web + "/-/user_settings/personal_access_tokens"
	}
	return "your GitLab user settings (Access tokens)"
}

func (s *session) gitlab(ctx context.Context, token string) error {
	auth := func(h http.Header) { h.Set("PRIVATE-TOKEN", token) }
	resp, err := s.get(ctx, s.endpoint("/personal_access_tokens/self"), auth)
	if err != nil {
		return err
	}
	switch resp.status {
	case http.StatusOK:
	case http.StatusUnauthorized:
		s.problem("GitLab rejected the token (401 Unauthorized): it is invalid, expired or revoked; create a personal access token with scope api at %s, for a user who is Maintainer of the groups or projects Snyk should import", s.gitlabSettingsURL())
		return nil
	case http.StatusBadRequest:
		s.problem("the token is not a GitLab personal, group or project access token (GitLab refuses to describe it, as it does for OAuth tokens): create a personal access token with scope api at %s", s.gitlabSettingsURL())
		return nil
	case http.StatusForbidden:
		s.problem("GitLab refused to describe the token (403): it may lack scope api or its user may be blocked; create a personal access token with scope api at %s", s.gitlabSettingsURL())
		return nil
	case http.StatusNotFound:
		s.problem("GitLab has no /personal_access_tokens/self at %s (404): check scm_url / scm_api_url (the API lives under /api/v4); GitLab older than 15.5 cannot be validated, set skip_scm_validation=true there", s.base)
		return nil
	default:
		return s.upstreamError(resp)
	}

	var self struct {
		Revoked   bool     `json:"revoked"`
		Active    *bool    `json:"active"`
		Scopes    []string `json:"scopes"`
		ExpiresAt *string  `json:"expires_at"`
		Granular  bool     `json:"granular"`
	}
	if err := resp.decode(&self); err != nil {
		return err
	}
	s.scopes = append(s.scopes, self.Scopes...)

	dead := false
	if self.Revoked || (self.Active != nil && !*self.Active) {
		s.problem("GitLab reports the token as revoked or inactive: create a new personal access token with scope api at %s", s.gitlabSettingsURL())
		dead = true
	}
	if self.ExpiresAt != nil && *self.ExpiresAt != "" {
		// GitLab tokens expire at 00:00 UTC on the date given.
		exp, err := time.ParseInLocation("2006-01-02", *self.ExpiresAt, time.UTC)
		if err != nil {
			s.note("GitLab sent an expiry this engine cannot parse, so the token's expiry is unknown")
		} else {
			s.expires = exp
			if !exp.After(s.v.now()) {
				s.problem("the token expired on %s (00:00 UTC): rotate it or create a new personal access token with scope api at %s", *self.ExpiresAt, s.gitlabSettingsURL())
				dead = true
			}
		}
	}
	if !slices.Contains(self.Scopes, "api") {
		s.miss("api")
		if self.Granular {
			s.problem("the token is a fine-grained (granular) GitLab token, which cannot carry scope api that Snyk Broker needs: create a legacy personal access token with scope api at %s", s.gitlabSettingsURL())
		} else {
			s.problem("the token lacks scope api (read_api, read_repository and the other narrower scopes do not satisfy it): create a personal access token with scope api at %s", s.gitlabSettingsURL())
		}
	}
	if dead {
		// A dead token would only collect 401s on the remaining probes.
		return nil
	}

	if err := s.gitlabMaintainer(ctx, auth); err != nil {
		return err
	}
	return s.gitlabUsername(ctx, auth)
}

// gitlabMaintainer looks for any group or project where the token's user is
// at least Maintainer: GitLab has no global role to read.
func (s *session) gitlabMaintainer(ctx context.Context, auth func(http.Header)) error {
	resp, err := s.get(ctx, s.endpoint("/personal_access_tokens/self/associations?min_access_level="+gitlabMaintainer+"&per_page=1"), auth)
	if err != nil {
		return err
	}
	found := false
	switch resp.status {
	case http.StatusOK:
		var assoc struct {
			Groups   []struct{} `json:"groups"`
			Projects []struct{} `json:"projects"`
		}
		if err := resp.decode(&assoc); err != nil {
			return err
		}
		found = len(assoc.Groups) > 0 || len(assoc.Projects) > 0
	case http.StatusNotFound:
		// Before GitLab 17.4 there is no associations endpoint; the
		// membership filters on the listings answer the same question.
		for _, path := range []string{
			"/groups?min_access_level=" + gitlabMaintainer + "&per_page=1",
			"/projects?min_access_level=" + gitlabMaintainer + "&simple=true&per_page=1",
		} {
			r, err := s.get(ctx, s.endpoint(path), auth)
			if err != nil {
				return err
			}
			if r.status != http.StatusOK {
				return s.gitlabProbeFailed(r)
			}
			var list []struct{}
			if err := r.decode(&list); err != nil {
				return err
			}
			if len(list) > 0 {
				found = true
				break
			}
		}
	default:
		return s.gitlabProbeFailed(resp)
	}
	if found {
		s.scopes = append(s.scopes, ScopeMaintainer)
		return nil
	}
	s.miss(ScopeMaintainer)
	s.problem("the token's user is not Maintainer (access level 40) of any GitLab group or project, and Snyk Broker needs maintainer to manage webhooks: give the user the Maintainer (or Owner) role on the groups or projects Snyk should import")
	return nil
}

// gitlabProbeFailed handles a non-200 from a role probe. A 403 there means
// the token's scopes do not allow listing, which the api check already
// reports, so the role stays unverified rather than missing.
func (s *session) gitlabProbeFailed(r *response) error {
	switch r.status {
	case http.StatusForbidden:
		s.note("the Maintainer role could not be checked because the token's scopes do not allow listing groups or projects")
		return nil
	case http.StatusUnauthorized:
		s.problem("GitLab rejected the token while checking its role (401 Unauthorized): it may have just expired or been revoked; create a personal access token with scope api at %s", s.gitlabSettingsURL())
		return nil
	}
	return s.upstreamError(r)
}

func (s *session) gitlabUsername(ctx context.Context, auth func(http.Header)) error {
	resp, err := s.get(ctx, s.endpoint("/user"), auth)
	if err != nil {
		return err
	}
	if resp.status != http.StatusOK {
		if resp.status == http.StatusForbidden || resp.status == http.StatusUnauthorized {
			s.note("GitLab did not reveal the token's username (GET /user answered %d)", resp.status)
			return nil
		}
		return s.upstreamError(resp)
	}
	var user struct {
		Username string `json:"username"`
	}
	if err := resp.decode(&user); err != nil {
		return err
	}
	s.username = user.Username
	return nil
}
