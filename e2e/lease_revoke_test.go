package e2e

import (
	"strings"
	"testing"
	"time"
)

// TestLeaseRevokeKeepsToken revokes broker leases with the CLI and checks
// that nothing changes upstream: same token on the next read, the fake
// Snyk's current token unchanged, no call to Snyk or the SCM.
func TestLeaseRevokeKeepsToken(t *testing.T) {
	s := sharedStack(t)
	s.ensurePaymentsGitHub(t)
	orgID := s.sim.info.Orgs["payments"]
	current := s.sim.integration(t, orgID, "github").CurrentToken
	snykBefore, githubBefore := s.sim.calls(t, "snyk"), s.sim.calls(t, "github")

	first := s.read(t, mountPath+"/broker/payments/github")
	if got := str(first.Data["broker_token"]); got != current {
		t.Fatalf("broker_token = %q, want the simulator's current token %q", got, current)
	}
	if first.LeaseID == "" {
		t.Fatal("broker read without a lease")
	}
	if _, err := s.vault.client.Sys().Lookup(first.LeaseID); err != nil {
		t.Fatalf("lease lookup before revoke: %v", err)
	}

	out, errOut, err := s.vault.cli(t, "lease", "revoke", first.LeaseID)
	if err != nil || !revokeOK(out) {
		t.Fatalf("vault lease revoke %s: %v\nstdout: %s\nstderr: %s", first.LeaseID, err, out, errOut)
	}
	waitLeaseGone(t, s, first.LeaseID)

	second := s.read(t, mountPath+"/broker/payments/github")
	if got := str(second.Data["broker_token"]); got != current {
		t.Errorf("broker_token after revoke = %q, want the same token %q", got, current)
	}
	if second.LeaseID == "" || second.LeaseID == first.LeaseID {
		t.Errorf("second read lease %q, want a new lease (first %q)", second.LeaseID, first.LeaseID)
	}

	// Revoking every lease of the path changes nothing upstream either.
	out, errOut, err = s.vault.cli(t, "lease", "revoke", "-prefix", mountPath+"/broker/payments/github")
	if err != nil || !revokeOK(out) {
		t.Fatalf("vault lease revoke -prefix: %v\nstdout: %s\nstderr: %s", err, out, errOut)
	}
	waitLeaseGone(t, s, second.LeaseID)

	if got := s.sim.integration(t, orgID, "github").CurrentToken; got != current {
		t.Errorf("simulator current token after revokes = %q, want unchanged %q", got, current)
	}
	if cur, _ := s.sim.tokenStatus(t, current); !cur {
		t.Errorf("the token stopped being current at Snyk after the revokes")
	}
	third := s.read(t, mountPath+"/broker/payments/github")
	if got := str(third.Data["broker_token"]); got != current {
		t.Errorf("broker_token after revoke -prefix = %q, want %q", got, current)
	}
	if after := s.sim.calls(t, "snyk"); !equalMaps(snykBefore, after) {
		t.Errorf("broker reads or lease revokes called Snyk: calls %v -> %v", snykBefore, after)
	}
	if after := s.sim.calls(t, "github"); !equalMaps(githubBefore, after) {
		t.Errorf("broker reads or lease revokes called GitHub: calls %v -> %v", githubBefore, after)
	}
}

// revokeOK recognizes the CLI's success messages: "Success! Revoked …" or,
// when Vault queues the revocation (202), "All revocation operations queued
// successfully!".
func revokeOK(out string) bool {
	return strings.Contains(out, "Success! Revoked") || strings.Contains(out, "queued successfully")
}

func waitLeaseGone(t *testing.T, s *stack, leaseID string) {
	t.Helper()
	err := waitFor(15*time.Second, 100*time.Millisecond, func() (bool, error) {
		_, err := s.vault.client.Sys().Lookup(leaseID)
		return err != nil, nil
	})
	if err != nil {
		t.Fatalf("lease %s still exists after revoke: %v", leaseID, err)
	}
}
