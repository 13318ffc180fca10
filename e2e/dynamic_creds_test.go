package e2e

import (
	"net/url"
	"testing"
	"time"
)

// TestDynamicSnykCredsInRealVault: a creds read through the real Vault
// creates a service account at the simulator's Snyk under a lease, and
// revoking the lease deletes it.
func TestDynamicSnykCredsInRealVault(t *testing.T) {
	s := sharedStack(t)
	org := s.sim.info.Orgs["payments"]
	s.write(t, mountPath+"/roles/e2e-ci", map[string]interface{}{"org_id": org, "role_id": "11111111-2222-4333-8444-555555555555", "ttl": "10m"})
	accounts := func() []string {
		var out []string
		if err := s.sim.adminDo("GET", "/service-accounts?scope=org&owner="+url.QueryEscape(org), nil, &out); err != nil {
			t.Fatal(err)
		}
		return out
	}
	before := len(accounts())
	sec := s.read(t, mountPath+"/creds/e2e-ci")
	if sec.LeaseID == "" || str(sec.Data["snyk_token"]) == "" || sec.LeaseDuration != 600 {
		t.Fatalf("creds: lease %q, duration %d", sec.LeaseID, sec.LeaseDuration)
	}
	if got := len(accounts()); got != before+1 {
		t.Fatalf("service accounts at Snyk: %d, want %d", got, before+1)
	}
	if err := s.vault.client.Sys().Revoke(sec.LeaseID); err != nil {
		t.Fatal(err)
	}
	if got := len(accounts()); got != before {
		t.Fatalf("revoking the lease left %d service accounts, want %d", got, before)
	}
}

// TestDynamicSnykCredsExpireInRealVault: when a creds lease reaches its
// max_ttl, Vault's expiration manager revokes it and the engine deletes the
// service account at Snyk, with no caller involved.
func TestDynamicSnykCredsExpireInRealVault(t *testing.T) {
	s := sharedStack(t)
	org := s.sim.info.Orgs["payments"]
	s.write(t, mountPath+"/roles/e2e-short", map[string]interface{}{"org_id": org, "role_id": "11111111-2222-4333-8444-555555555555", "ttl": "3s", "max_ttl": "3s"})
	accounts := func() int {
		var out []string
		if err := s.sim.adminDo("GET", "/service-accounts?scope=org&owner="+url.QueryEscape(org), nil, &out); err != nil {
			t.Fatal(err)
		}
		return len(out)
	}
	before := accounts()
	sec := s.read(t, mountPath+"/creds/e2e-short")
	if sec.LeaseID == "" || sec.LeaseDuration != 3 {
		t.Fatalf("creds: lease %q, duration %d", sec.LeaseID, sec.LeaseDuration)
	}
	if got := accounts(); got != before+1 {
		t.Fatalf("service accounts at Snyk: %d, want %d", got, before+1)
	}
	deadline := time.Now().Add(30 * time.Second)
	for accounts() != before {
		if time.Now().After(deadline) {
			t.Fatalf("lease expired but %d service accounts remain, want %d", accounts(), before)
		}
		time.Sleep(250 * time.Millisecond)
	}
}
