package scm

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/snyk-vault/vault-plugin-secrets-snyk/backend/httpx"
)

// ErrRotationRefused: GitLab answered that it did not rotate the token; the
// old token is still the one to use (or, on 401, none works any more).
var ErrRotationRefused = errors.New("gitlab refused to rotate the token")

// RotatedToken is GitLab's successor of a rotated token.
type RotatedToken struct {
	Token     string
	ExpiresAt time.Time
}

// RotateGitLabToken calls POST <api>/personal_access_tokens/self/rotate
// (GitLab 16.10+) with the token itself. GitLab revokes the old token at
// once and shows the new one only in this answer, and using a rotated
// token again revokes the whole token family: so the call is never repeated
// (a lost answer is an error wrapping httpx.ErrOutcomeUnknown), and the
// caller must store the new token before anything else.
func (v *Validator) RotateGitLabToken(ctx context.Context, apiURL, token string, expiresAt time.Time) (RotatedToken, error) {
	base, msg := checkAPIURL(apiURL)
	if msg != "" {
		return RotatedToken{}, errors.New(msg)
	}
	client, err := v.client()
	if err != nil {
		return RotatedToken{}, err
	}
	body, _ := json.Marshal(map[string]string{"expires_at": expiresAt.UTC().Format("2006-01-02")})
	target := strings.TrimRight(base, "/") + "/personal_access_tokens/self/rotate"
	newReq := func(ctx context.Context) (*http.Request, error) {
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, target, bytes.NewReader(body))
		if err != nil {
			return nil, fmt.Errorf("%w: cannot build request", ErrUpstream)
		}
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Accept", "application/json")
		req.Header.Set("User-Agent", "vault-plugin-secrets-snyk")
		req.Header.Set("PRIVATE-TOKEN", token)
		return req, nil
	}
	resp, err := v.policy(v.logger()).Do(ctx, client, false, newReq) //nolint:bodyclose // closed by httpx.ReadBody below
	if err != nil {
		return RotatedToken{}, fmt.Errorf("gitlab: POST /personal_access_tokens/self/rotate: %w", err)
	}
	data, err := httpx.ReadBody(resp, maxBody)
	if err != nil {
		// GitLab answered: the old token is revoked, the new one is lost.
		return RotatedToken{}, fmt.Errorf("gitlab: reading the rotated token failed: %w", httpx.ErrOutcomeUnknown)
	}
	switch {
	case resp.StatusCode == http.StatusOK:
		var out struct {
			Token     string `json:"token"`
			ExpiresAt string `json:"expires_at"`
		}
		if json.Unmarshal(data, &out) != nil || out.Token == "" {
			return RotatedToken{}, fmt.Errorf("gitlab: the rotate answer has no token: %w", httpx.ErrOutcomeUnknown)
		}
		exp, _ := time.ParseInLocation("2006-01-02", out.ExpiresAt, time.UTC)
		return RotatedToken{Token: out.Token, ExpiresAt: exp}, nil
	case resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode == http.StatusServiceUnavailable:
		// Provably not applied (the retry loop repeats only these).
		return RotatedToken{}, fmt.Errorf("%w: gitlab answered %d to the rotation after the retries", ErrThrottled, resp.StatusCode)
	case resp.StatusCode == http.StatusUnauthorized:
		return RotatedToken{}, fmt.Errorf("%w: 401: the token is invalid, expired or revoked (an expired token cannot rotate itself): write a new scm_token", ErrRotationRefused)
	case resp.StatusCode == http.StatusForbidden:
		return RotatedToken{}, fmt.Errorf("%w: 403: the token may not rotate itself (it needs the api or self_rotate scope)", ErrRotationRefused)
	case resp.StatusCode == http.StatusBadRequest || resp.StatusCode == http.StatusMethodNotAllowed || resp.StatusCode == http.StatusNotFound:
		return RotatedToken{}, fmt.Errorf("%w: %d: not rotated (GitLab 16.10 or later and a personal access token are needed)", ErrRotationRefused, resp.StatusCode)
	case resp.StatusCode >= 500:
		return RotatedToken{}, fmt.Errorf("gitlab: rotate answered %d: %w", resp.StatusCode, httpx.ErrOutcomeUnknown)
	}
	return RotatedToken{}, fmt.Errorf("%w: unexpected status %d", ErrRotationRefused, resp.StatusCode)
}
