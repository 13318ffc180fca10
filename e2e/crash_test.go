package e2e

import (
	"fmt"
	"syscall"
	"testing"
	"time"
)

// TestRotationSurvivesPluginKill kills the plugin process with SIGKILL
// between provision and switch. Vault starts the plugin again on the next
// request to the mount (or the rollback manager's next tick), the rotation
// engine reloads its queue from storage, and the rotation completes with the
// provisional token stored before the crash: no second provision, no lost
// token.
func TestRotationSurvivesPluginKill(t *testing.T) {
	s := newTestStack(t)
	org := s.sim.info.Orgs["payments"]
	s.ensureIntegration(t, "payments", "github", map[string]interface{}{
		"org_id":          org,
		"scm_token":       s.sim.info.GitHubToken,
		"scm_api_url":     s.sim.info.GitHubURL,
		"rotation_period": "40s",
		"provision_ahead": "20s",
	})
	integPath := mountPath + "/integrations/payments/github"
	brokerPath := mountPath + "/broker/payments/github"
	before := s.sim.integration(t, org, "github").CurrentToken

	// Wait for the provision (at next_vault_rotation − 20s).
	var provisional string
	err := waitFor(60*time.Second, 250*time.Millisecond, func() (bool, error) {
		sec, err := s.vault.client.Logical().Read(brokerPath)
		if err != nil || sec == nil {
			return false, err
		}
		provisional = str(sec.Data["next_broker_token"])
		return provisional != "", nil
	})
	if err != nil {
		t.Fatalf("no provision: %v", err)
	}
	if got := s.sim.integration(t, org, "github").ProvisionalToken; got != provisional {
		t.Fatalf("Snyk's provisional token differs from the one Vault serves")
	}
	provisionsBefore := s.sim.calls(t, "snyk")["POST /v1/org/{orgId}/integrations/{integrationId}/authentication/provision-token"]
	next := str(s.read(t, integPath).Data["next_vault_rotation"])

	pids := pluginPIDs(t, s)
	if len(pids) == 0 {
		t.Fatal("no plugin process found")
	}
	for _, pid := range pids {
		if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
			t.Fatalf("kill -9 %d: %v", pid, err)
		}
	}
	t.Logf("killed plugin pid(s) %v between provision and switch (switch due %s)", pids, next)

	// The next request to the mount makes Vault start the plugin again.
	err = waitFor(30*time.Second, 500*time.Millisecond, func() (bool, error) {
		_, err := s.vault.client.Logical().Read(integPath)
		if err != nil {
			return false, err
		}
		after := pluginPIDs(t, s)
		return len(after) > 0 && after[0] != pids[0], fmt.Errorf("plugin pids %v", after)
	})
	if err != nil {
		t.Fatalf("Vault did not restart the plugin: %v", err)
	}

	// The restarted engine switches the stored provisional token on time.
	err = waitFor(45*time.Second, 500*time.Millisecond, func() (bool, error) {
		cur := s.sim.integration(t, org, "github").CurrentToken
		return cur == provisional, fmt.Errorf("Snyk's current token is still the old one")
	})
	if err != nil {
		t.Fatalf("rotation did not complete after the crash: %v", err)
	}
	if before == provisional {
		t.Fatal("setup: provisional equals the old token")
	}
	sec := s.read(t, brokerPath)
	if str(sec.Data["broker_token"]) != provisional {
		t.Errorf("after the switch the engine serves %s, want the provisional token from before the crash", fingerprintOf(str(sec.Data["broker_token"])))
	}
	if provisions := s.sim.calls(t, "snyk")["POST /v1/org/{orgId}/integrations/{integrationId}/authentication/provision-token"]; provisions != provisionsBefore {
		// A later scheduled provision may already have started if the
		// test machine was slow; it must be for the next rotation only.
		st := s.read(t, integPath).Data
		if provisions > provisionsBefore+1 || str(st["rotation_state"]) != "provisioned" {
			t.Errorf("provision calls %d → %d around the crash: the stored provisional token was not reused", provisionsBefore, provisions)
		}
	}
	if st := s.read(t, integPath).Data; str(st["last_rotation_error"]) != "" {
		t.Errorf("last_rotation_error after recovery: %v", st["last_rotation_error"])
	}
}
