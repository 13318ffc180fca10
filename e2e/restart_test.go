package e2e

import (
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"
)

// integrationSnapshot is what must survive a plugin reload and a restart.
type integrationSnapshot struct {
	integration map[string]interface{}
	brokerToken string
	env         map[string]string
}

func snapshot(t *testing.T, s *stack, paths [][2]string) map[string]integrationSnapshot {
	t.Helper()
	out := map[string]integrationSnapshot{}
	for _, p := range paths {
		key := p[0] + "/" + p[1]
		in := s.read(t, mountPath+"/integrations/"+key)
		br := s.read(t, mountPath+"/broker/"+key)
		out[key] = integrationSnapshot{integration: in.Data, brokerToken: str(br.Data["broker_token"]), env: envMap(t, br.Data["env"])}
	}
	return out
}

func compareSnapshots(t *testing.T, when string, before, after map[string]integrationSnapshot) {
	t.Helper()
	for key, b := range before {
		a, ok := after[key]
		if !ok {
			t.Errorf("%s: integration %s is gone", when, key)
			continue
		}
		if a.brokerToken != b.brokerToken || a.brokerToken == "" {
			t.Errorf("%s: %s broker_token = %q, want the same as before %q", when, key, a.brokerToken, b.brokerToken)
		}
		if !reflect.DeepEqual(a.env, b.env) {
			t.Errorf("%s: %s env changed:\nbefore %v\nafter  %v", when, key, b.env, a.env)
		}
		if !reflect.DeepEqual(a.integration, b.integration) {
			t.Errorf("%s: %s integration read changed:\nbefore %v\nafter  %v", when, key, b.integration, a.integration)
		}
	}
}

// pluginPIDs returns the PIDs of running processes of the plugin binary
// copied into this stack's plugin directory.
func pluginPIDs(t *testing.T, s *stack) []int {
	t.Helper()
	want := filepath.Join(s.dir, "plugins", pluginName)
	entries, err := os.ReadDir("/proc")
	if err != nil {
		skipRealPart(t, "no /proc: %v", err)
	}
	var pids []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		exe, err := os.Readlink(filepath.Join("/proc", e.Name(), "exe"))
		if err == nil && strings.TrimSuffix(exe, " (deleted)") == want {
			pids = append(pids, pid)
		}
	}
	sort.Ints(pids)
	return pids
}

// TestPluginReloadAndVaultRestartKeepState reloads the plugin with the CLI
// and then restarts the Vault server on the same file storage; every
// integration (including an adopted one holding a provisional token), its
// Broker token and the config survive both, the plugin process is really
// replaced, the running version stays PLUGIN_VERSION, a lease issued before
// the restart can still be revoked, and the engine still rotates afterwards.
func TestPluginReloadAndVaultRestartKeepState(t *testing.T) {
	s := newTestStack(t)
	i := s.sim.info
	s.ensurePaymentsGitHub(t)

	fresh := func(name string) string {
		org := newUUID(t)
		s.sim.addOrg(t, org, name)
		return org
	}
	glOrg, bbOrg, adoptOrg := fresh("e2e gitlab"), fresh("e2e bitbucket"), fresh("e2e adopted")
	s.ensureIntegration(t, "gl", "gitlab", map[string]interface{}{"org_id": glOrg, "scm_token": i.GitLabToken, "scm_url": i.GitLabURL, "ttl": "5m"})
	s.ensureIntegration(t, "bb", "bitbucket-server", map[string]interface{}{
		"org_id": bbOrg, "scm_username": i.BitbucketUsername, "scm_password": i.BitbucketPassword, "scm_url": i.BitbucketURL,
	})
	s.sim.addIntegration(t, adoptOrg, "azure-repos", true)
	s.write(t, mountPath+"/integrations/adopted/azure-repos", map[string]interface{}{
		"org_id": adoptOrg, "scm_token": i.AzureToken, "scm_url": i.AzureURL, "azure_org": i.AzureOrg,
	})
	paths := [][2]string{{"payments", "github"}, {"gl", "gitlab"}, {"bb", "bitbucket-server"}, {"adopted", "azure-repos"}}

	cfgBefore := s.read(t, mountPath+"/config").Data
	before := snapshot(t, s, paths)
	simBefore := s.sim.state(t)
	if st := before["adopted/azure-repos"].integration["rotation_state"]; st != "provisioned" {
		t.Fatalf("adopted integration rotation_state = %v, want provisioned", st)
	}
	lease := s.read(t, mountPath+"/broker/payments/github")

	// 1. Plugin reload (CLI).
	pidsBefore := pluginPIDs(t, s)
	if len(pidsBefore) == 0 {
		t.Fatalf("no running plugin process found for %s", filepath.Join(s.dir, "plugins", pluginName))
	}
	out, errOut, err := s.vault.cli(t, "plugin", "reload", "-plugin="+pluginName)
	if err != nil || !strings.Contains(out, "Success! Reloaded plugin: "+pluginName) {
		t.Fatalf("vault plugin reload: %v\nstdout: %s\nstderr: %s", err, out, errOut)
	}
	afterReload := snapshot(t, s, paths)
	compareSnapshots(t, "after plugin reload", before, afterReload)
	pidsAfter := pluginPIDs(t, s)
	if len(pidsAfter) == 0 || intersects(pidsBefore, pidsAfter) {
		t.Errorf("plugin processes before reload %v, after %v: want a new process", pidsBefore, pidsAfter)
	}
	if cfg := s.read(t, mountPath+"/config").Data; !reflect.DeepEqual(cfg, cfgBefore) {
		t.Errorf("config after reload = %v, want %v", cfg, cfgBefore)
	}

	t.Logf("plugin processes: before reload %v, after %v", pidsBefore, pidsAfter)

	// 2. Full restart on the same storage.
	oldServerPID := s.vault.proc.pid()
	s.vault.stop()
	if left := pluginPIDs(t, s); len(left) > 0 {
		t.Errorf("plugin processes %v survive the Vault server's shutdown", left)
	}
	if err := s.vault.start(); err != nil {
		t.Fatal(err)
	}
	t.Logf("vault server restarted: pid %d -> %d", oldServerPID, s.vault.proc.pid())
	if st, err := s.vault.client.Sys().SealStatus(); err != nil || !st.Sealed || !st.Initialized {
		t.Fatalf("after restart: seal status %+v, %v; want initialized and sealed", st, err)
	}
	if err := s.vault.unseal(); err != nil {
		t.Fatal(err)
	}
	// The mount's plugin starts lazily on the first request after unseal.
	if err := waitFor(30*time.Second, 200*time.Millisecond, func() (bool, error) {
		sec, err := s.vault.client.Logical().Read(mountPath + "/config")
		return err == nil && sec != nil, err
	}); err != nil {
		t.Fatalf("engine not serving after restart: %v", err)
	}
	afterRestart := snapshot(t, s, paths)
	compareSnapshots(t, "after Vault restart", before, afterRestart)
	if cfg := s.read(t, mountPath+"/config").Data; !reflect.DeepEqual(cfg, cfgBefore) {
		t.Errorf("config after restart = %v, want %v", cfg, cfgBefore)
	}
	if simAfter := s.sim.state(t); !reflect.DeepEqual(simAfter, simBefore) {
		t.Errorf("Snyk state changed across reload and restart:\nbefore %+v\nafter  %+v", simBefore, simAfter)
	}
	checkRunningVersion(t, s)

	// The lease issued before the restart was restored and revokes cleanly.
	if _, err := s.vault.client.Sys().Lookup(lease.LeaseID); err != nil {
		t.Errorf("lease %s issued before the restart is unknown after it: %v", lease.LeaseID, err)
	} else {
		out, errOut, err := s.vault.cli(t, "lease", "revoke", lease.LeaseID)
		if err != nil || !revokeOK(out) {
			t.Errorf("vault lease revoke after restart: %v\n%s%s", err, out, errOut)
		} else {
			waitLeaseGone(t, s, lease.LeaseID)
		}
	}

	// The engine still holds a working Snyk credential: rotate now.
	old := before["payments/github"].brokerToken
	s.write(t, mountPath+"/broker/payments/github/rotate", nil)
	cur := s.sim.integration(t, i.Orgs["payments"], "github").CurrentToken
	if cur == old {
		t.Fatalf("rotate after restart did not change Snyk's current token")
	}
	if got := str(s.read(t, mountPath+"/broker/payments/github").Data["broker_token"]); got != cur {
		t.Errorf("broker_token after rotate = %q, want Snyk's new current token %q", got, cur)
	}
}

func intersects(a, b []int) bool {
	for _, x := range a {
		for _, y := range b {
			if x == y {
				return true
			}
		}
	}
	return false
}
