package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// upgradeVersion is the version of the "newer" build the upgrade test moves
// the mount to.
const upgradeVersion = "v999.0.0-upgrade"

// TestUpgradeKeepsIntegrations: a mount written by this code is moved to a
// newer build of the plugin the way an operator upgrades (register the new
// version beside the old, vault secrets tune -plugin-version, vault plugin
// reload): every integration, its token and rotation schedule, the config and
// a lease issued before the upgrade carry over, the newer build runs, and it
// still rotates.
func TestUpgradeKeepsIntegrations(t *testing.T) {
	s := newTestStack(t)
	i := s.sim.info
	s.ensurePaymentsGitHub(t)
	glOrg := newUUID(t)
	s.sim.addOrg(t, glOrg, "e2e upgrade gitlab")
	s.ensureIntegration(t, "upgrade-gl", "gitlab", map[string]interface{}{"org_id": glOrg, "scm_token": i.GitLabToken, "scm_url": i.GitLabURL, "ttl": "5m"})
	s.write(t, mountPath+"/roles/upgrade", map[string]interface{}{"org_id": i.Orgs["payments"], "role_id": "11111111-2222-4333-8444-555555555555"})
	paths := [][2]string{{"payments", "github"}, {"upgrade-gl", "gitlab"}}
	before := snapshot(t, s, paths)
	cfgBefore := s.read(t, mountPath+"/config").Data
	lease := s.read(t, mountPath+"/broker/payments/github")

	// The newer build: the same sources, another version stamped in.
	binary := pluginName + "-" + upgradeVersion
	out := filepath.Join(s.dir, "plugins", binary)
	build := exec.Command("go", "build", "-trimpath", "-buildvcs=false", "-ldflags", "-X main.version="+upgradeVersion, "-o", out, "./cmd/"+pluginName)
	build.Dir = ".."
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if msg, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building the newer plugin: %v\n%s", err, msg)
	}
	sum, err := sha256File(out)
	if err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{
		{"plugin", "register", "-sha256=" + sum, "-version=" + upgradeVersion, "-command=" + binary, "secret", pluginName},
		{"secrets", "tune", "-plugin-version=" + upgradeVersion, mountPath + "/"},
		{"plugin", "reload", "-plugin=" + pluginName},
	} {
		if stdout, stderr, err := s.vault.cli(t, args...); err != nil {
			t.Fatalf("vault %s: %v\n%s%s", strings.Join(args, " "), err, stdout, stderr)
		}
	}

	mounts, err := s.vault.client.Sys().ListMounts()
	if err != nil {
		t.Fatal(err)
	}
	if m := mounts[mountPath+"/"]; m == nil || m.RunningVersion != upgradeVersion || m.RunningSha256 != sum {
		t.Fatalf("after the upgrade the mount runs %+v, want %s (sha256 %s)", m, upgradeVersion, sum)
	}
	compareSnapshots(t, "after the upgrade", before, snapshot(t, s, paths))
	if cfg := s.read(t, mountPath+"/config").Data; cfg["ttl"] != cfgBefore["ttl"] || cfg["rotation_period"] != cfgBefore["rotation_period"] {
		t.Errorf("config after the upgrade = %v, want %v", cfg, cfgBefore)
	}
	s.read(t, mountPath+"/roles/upgrade")

	// The lease issued by the older build is still known (broker leases are
	// not renewable: they end at the switch) and revokes under the newer one.
	if _, err := s.vault.client.Sys().Lookup(lease.LeaseID); err != nil {
		t.Errorf("a lease issued before the upgrade is unknown after it: %v", err)
	}
	if err := s.vault.client.Sys().Revoke(lease.LeaseID); err != nil {
		t.Errorf("revoking a lease issued before the upgrade: %v", err)
	} else {
		waitLeaseGone(t, s, lease.LeaseID)
	}

	// The newer build rotates the integrations the older one wrote.
	old := before["payments/github"].brokerToken
	start := time.Now()
	s.write(t, mountPath+"/broker/payments/github/rotate", nil)
	cur := s.sim.integration(t, i.Orgs["payments"], "github").CurrentToken
	if cur == old || str(s.read(t, mountPath+"/broker/payments/github").Data["broker_token"]) != cur {
		t.Fatal("the newer build did not rotate the integration the older one wrote")
	}
	report(t, "upgrade: tune + reload kept every integration; first rotation under the newer build took "+time.Since(start).Round(10*time.Millisecond).String())
}
