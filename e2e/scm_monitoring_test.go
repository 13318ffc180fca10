package e2e

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

// TestSCMMonitoringInRealVault: an SCM token revoked at the SCM is reported
// invalid by the engine's own check within its period, while the broker
// secret is still served, with a warning.
func TestSCMMonitoringInRealVault(t *testing.T) {
	s := sharedStack(t)
	org := newUUID(t)
	s.sim.addOrg(t, org, "scm-monitoring")
	s.sim.addIntegration(t, org, "github", false)
	token := "ghp_monitored" + strings.ReplaceAll(newUUID(t), "-", "")[:27]
	if err := s.sim.adminDo("POST", "/scm-tokens", map[string]interface{}{"target": "github", "token": token, "scopes": []string{"repo", "read:org", "admin:repo_hook"}}, nil); err != nil {
		t.Fatal(err)
	}
	path := mountPath + "/integrations/" + org + "/github"
	created := s.write(t, path, map[string]interface{}{
		"org_id": org, "scm_token": token, "scm_api_url": s.sim.info.GitHubURL, "scm_check_period": "2s",
	})
	if created.Data["scm_status"] != "ok" {
		t.Fatalf("after create: scm_status %v", created.Data["scm_status"])
	}
	if err := s.sim.adminDo("POST", "/scm-tokens/revoke", map[string]interface{}{"target": "github", "token": token}, nil); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	err := waitFor(30*time.Second, 250*time.Millisecond, func() (bool, error) {
		return str(s.read(t, path).Data["scm_status"]) == "invalid", nil
	})
	if err != nil {
		t.Fatalf("a revoked token was not reported invalid: %v (integration: %v)", err, s.read(t, path).Data)
	}
	report(t, fmt.Sprintf("SCM monitoring: token revoked at the SCM reported invalid after %s (scm_check_period 2s)", time.Since(start).Round(100*time.Millisecond)))
	sec := s.read(t, mountPath+"/broker/"+org+"/github")
	if str(sec.Data["broker_token"]) == "" || str(sec.Data["scm_status"]) != "invalid" {
		t.Fatalf("the broker read stopped serving or hides the status: %v", sec.Data["scm_status"])
	}
	if !strings.Contains(strings.Join(sec.Warnings, " "), "failed its last check") {
		t.Errorf("the broker read carries no warning: %v", sec.Warnings)
	}
	// Stop checking it: the rest of the suite shares this Vault.
	if _, err := s.vault.client.Logical().Delete(path); err != nil {
		t.Fatal(err)
	}
}
