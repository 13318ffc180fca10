package e2e

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

// TestGitLabTokenSelfRotationInRealVault: an integration whose GitLab token
// is inside its rotation window is rotated by the engine's loop through the
// simulator's GitLab (personal_access_tokens/self/rotate): the broker secret
// serves the new token, which works at GitLab, and nothing rotates twice.
func TestGitLabTokenSelfRotationInRealVault(t *testing.T) {
	s := sharedStack(t)
	org := newUUID(t)
	s.sim.addOrg(t, org, "gitlab-rotation")
	s.sim.addIntegration(t, org, "gitlab", false)
	old := "glpat-" + strings.ReplaceAll(newUUID(t), "-", "")[:20]
	expires := time.Now().UTC().AddDate(0, 0, 10).Format("2006-01-02")
	if err := s.sim.adminDo("POST", "/scm-tokens", map[string]interface{}{"target": "gitlab", "token": old, "scopes": []string{"api"}, "expires_at": expires}, nil); err != nil {
		t.Fatal(err)
	}
	path := mountPath + "/integrations/" + org + "/gitlab"
	start := time.Now()
	s.write(t, path, map[string]interface{}{
		"org_id": org, "scm_token": old, "scm_url": s.sim.info.GitLabURL,
		// Ten days before an expiry ten days away: due at once.
		"scm_token_auto_rotate": true, "scm_rotate_before_expiry": "336h",
	})
	var rotated string
	err := waitFor(30*time.Second, 250*time.Millisecond, func() (bool, error) {
		rotated = str(s.read(t, mountPath+"/broker/"+org+"/gitlab").Data["scm_token"])
		return rotated != old, nil
	})
	if err != nil {
		t.Fatalf("the GitLab token was not rotated: %v (integration: %v)", err, s.read(t, path).Data)
	}
	report(t, fmt.Sprintf("GitLab self-rotation: new token served %s after the integration was written", time.Since(start).Round(100*time.Millisecond)))
	// The new token works at GitLab. (The old one is not tried: GitLab's
	// reuse detection would revoke the new one with it.)
	v := s.write(t, mountPath+"/scm/validate", map[string]interface{}{"scm": "gitlab", "scm_token": rotated, "scm_url": s.sim.info.GitLabURL})
	if v.Data["valid"] != true {
		t.Fatalf("the rotated token does not work: %v", v.Data)
	}
	data := s.read(t, path).Data
	if data["scm_rotated_at"] == nil || data["scm_rotation_error"] != nil {
		t.Fatalf("after the rotation: %v", data)
	}
	time.Sleep(2 * time.Second)
	if got := str(s.read(t, mountPath+"/broker/"+org+"/gitlab").Data["scm_token"]); got != rotated {
		t.Fatal("the token rotated again")
	}
	if _, err := s.vault.client.Logical().Delete(path); err != nil {
		t.Fatal(err)
	}
}
