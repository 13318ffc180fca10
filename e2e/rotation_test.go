package e2e

import (
	"math"
	"testing"
	"time"
)

// TestScheduledRotationInRealVault drives the engine's own rotation
// schedule inside a real Vault with a short period: leases are capped at the
// next switch, a provisional token appears as next_broker_token
// provision_ahead before it, and at the switch the engine serves the new
// token, which Snyk then routes by.
func TestScheduledRotationInRealVault(t *testing.T) {
	const period, ahead = 20 * time.Second, 8 * time.Second
	s := newTestStack(t)
	i := s.sim.info
	org := newUUID(t)
	s.sim.addOrg(t, org, "e2e scheduled")
	s.sim.addIntegration(t, org, "gitlab", false)
	ipath := mountPath + "/integrations/sched/gitlab"
	bpath := mountPath + "/broker/sched/gitlab"
	s.write(t, ipath, map[string]interface{}{
		"org_id": org, "scm_token": i.GitLabToken, "scm_url": i.GitLabURL,
		"ttl": "1h", "rotation_period": "20s", "provision_ahead": "8s",
	})
	in := s.read(t, ipath)
	next, err := time.Parse(time.RFC3339, str(in.Data["next_vault_rotation"]))
	if err != nil {
		t.Fatalf("next_vault_rotation %v: %v", in.Data["next_vault_rotation"], err)
	}
	if d := time.Until(next); d > period+time.Second || d < period-5*time.Second {
		t.Fatalf("next_vault_rotation is %s away, want about %s", d.Round(time.Second), period)
	}
	if num(t, in.Data["rotation_period"]) != 20 {
		t.Errorf("rotation_period = %v, want 20", in.Data["rotation_period"])
	}
	first := s.sim.integration(t, org, "gitlab").CurrentToken

	// Lease capped at the switch (ttl is 1h).
	readAt := time.Now()
	br := s.read(t, bpath)
	if limit := leaseLimit(readAt, next); br.LeaseDuration > limit || br.LeaseDuration < 2 {
		t.Errorf("lease_duration = %d s with the switch %s away, want it capped at the switch (<= %d)", br.LeaseDuration, next.Sub(readAt).Round(time.Second), limit)
	}
	if str(br.Data["broker_token"]) != first {
		t.Errorf("broker_token = %v, want %s", br.Data["broker_token"], first)
	}
	if _, ok := br.Data["next_broker_token"]; ok {
		t.Errorf("next_broker_token present before the provision-ahead window")
	}

	// Inside the provision-ahead window: a provisional token is held.
	var provisional string
	err = waitFor(time.Until(next.Add(-ahead))+5*time.Second, 250*time.Millisecond, func() (bool, error) {
		sec, err := s.vault.client.Logical().Read(bpath)
		if err != nil || sec == nil {
			return false, err
		}
		provisional = str(sec.Data["next_broker_token"])
		return provisional != "", nil
	})
	if err != nil {
		t.Fatalf("no next_broker_token within the provision-ahead window: %v", err)
	}
	if at := time.Until(next); at > ahead+2*time.Second {
		t.Errorf("provisioned %s before the switch, want at most provision_ahead (%s)", at.Round(time.Second), ahead)
	}
	if simIn := s.sim.integration(t, org, "gitlab"); simIn.ProvisionalToken != provisional || simIn.CurrentToken != first {
		t.Errorf("Snyk during the window: %+v, want provisional %s and current %s", simIn, provisional, first)
	}
	readAt = time.Now()
	br = s.read(t, bpath)
	if str(br.Data["broker_token"]) != first {
		t.Errorf("broker_token during the window = %v, want the still-current %s", br.Data["broker_token"], first)
	}
	if limit := leaseLimit(readAt, next); br.LeaseDuration > limit {
		t.Errorf("lease_duration during the window = %d s with the switch %s away: not capped (want <= %d)", br.LeaseDuration, next.Sub(readAt).Round(time.Second), limit)
	}

	// At the switch: the engine's ticker switches and serves the new token.
	err = waitFor(time.Until(next)+10*time.Second, 250*time.Millisecond, func() (bool, error) {
		sec, err := s.vault.client.Logical().Read(bpath)
		if err != nil || sec == nil {
			return false, err
		}
		return str(sec.Data["broker_token"]) == provisional, nil
	})
	if err != nil {
		t.Fatalf("the engine did not switch to the provisional token within 10s of next_vault_rotation: %v", err)
	}
	late := time.Since(next)
	t.Logf("switched %s after next_vault_rotation", late.Round(100*time.Millisecond))
	if simIn := s.sim.integration(t, org, "gitlab"); simIn.CurrentToken != provisional || simIn.ProvisionalToken != "" {
		t.Errorf("Snyk after the switch: %+v, want current %s and no provisional token", simIn, provisional)
	}
	in = s.read(t, ipath)
	if in.Data["rotation_state"] != "active" {
		t.Errorf("rotation_state after the switch = %v, want active", in.Data["rotation_state"])
	}
	next2, err := time.Parse(time.RFC3339, str(in.Data["next_vault_rotation"]))
	if err != nil || !next2.After(next) {
		t.Errorf("next_vault_rotation after the switch = %v, want after %s", in.Data["next_vault_rotation"], next.Format(time.RFC3339))
	}
}

// leaseLimit is the longest lease (whole seconds) a read sent at readAt may
// get when capped at the switch: next_vault_rotation has whole seconds, so
// the real switch may be up to 1s after next, and Vault may round up.
func leaseLimit(readAt, next time.Time) int {
	return int(math.Ceil(next.Add(time.Second).Sub(readAt).Seconds())) + 1
}
