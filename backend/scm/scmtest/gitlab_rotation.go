package scmtest

// Token self-rotation of the GitLab fake: POST
// /personal_access_tokens/self/rotate, and what tests ask about the token
// families it creates.

import (
	"crypto/rand"
	"encoding/json"
	"io"
	"net/http"
	"time"
)

// revokeFamilyLocked revokes every token rotated from the same original.
func (g *GitLab) revokeFamilyLocked(family int) {
	for _, t := range g.tokens {
		if t.family == family {
			t.Revoked = true
		}
	}
}

// rotateSelf is POST /personal_access_tokens/self/rotate (GitLab 16.10+):
// it needs api or self_rotate, revokes the presented token at once and
// returns its successor (same user, scopes and family) with a new
// expires_at (default one week; at most one year ahead).
func (g *GitLab) rotateSelf(w http.ResponseWriter, r *http.Request) {
	t, ok := g.authenticate(w, r, "api", "self_rotate")
	if !ok {
		return
	}
	if t.NotPAT {
		writeJSON(w, http.StatusMethodNotAllowed, `{"message":"405 Method Not Allowed"}`)
		return
	}
	var req struct {
		ExpiresAt string `json:"expires_at"`
	}
	if body, _ := io.ReadAll(r.Body); len(body) > 0 {
		if json.Unmarshal(body, &req) != nil {
			writeJSON(w, http.StatusBadRequest, `{"error":"expires_at is invalid"}`)
			return
		}
	}
	now := clock(g.opts.Now).UTC()
	expires := now.AddDate(0, 0, 7)
	if req.ExpiresAt != "" {
		d, err := time.ParseInLocation("2006-01-02", req.ExpiresAt, time.UTC)
		if err != nil || !d.After(now) || d.After(now.AddDate(1, 0, 0)) {
			writeJSON(w, http.StatusBadRequest, `{"message":"400 Bad request - expires_at must be a future date at most a year ahead"}`)
			return
		}
		expires = d
	}
	cred := gitlabCredential(r)
	g.mu.Lock()
	old := g.tokens[cred]
	if old == nil || old.Revoked {
		g.mu.Unlock()
		writeJSON(w, http.StatusUnauthorized, GitLabUnauthorizedBody)
		return
	}
	old.Revoked, old.rotated = true, true
	token := "glpat-" + randomToken(20)
	next := &glToken{GitLabToken: old.GitLabToken, id: g.nextID, userID: old.userID, family: old.family}
	next.Revoked, next.ExpiresAt = false, expires.Format("2006-01-02")
	g.tokens[token] = next
	g.nextID++
	g.mu.Unlock()
	writeJSON(w, http.StatusOK, map[string]any{
		"id": next.id, "name": "snyk-broker", "revoked": false, "created_at": now.Format(time.RFC3339),
		"description": nil, "scopes": next.Scopes, "user_id": next.userID, "last_used_at": nil,
		"active": true, "granular": false, "expires_at": next.ExpiresAt, "token": token,
	})
}

// TokenFamilyRevoked reports whether every token of token's family is
// revoked (what GitLab's reuse detection does).
func (g *GitLab) TokenFamilyRevoked(token string) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	t := g.tokens[token]
	if t == nil {
		return false
	}
	for _, o := range g.tokens {
		if o.family == t.family && !o.Revoked {
			return false
		}
	}
	return true
}

// ActiveTokens returns how many tokens of token's family are active.
func (g *GitLab) ActiveTokens(token string) int {
	g.mu.Lock()
	defer g.mu.Unlock()
	t := g.tokens[token]
	if t == nil {
		return 0
	}
	n := 0
	for _, o := range g.tokens {
		if o.family == t.family && !o.Revoked {
			n++
		}
	}
	return n
}

// randomToken returns n random lower-case alphanumerics.
func randomToken(n int) string {
	const alphabet = "abcdefghijklmnopqrstuvwxyz0123456789"
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	for i := range b {
		b[i] = alphabet[int(b[i])%len(alphabet)]
	}
	return string(b)
}
