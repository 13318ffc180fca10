package e2e

import (
	"fmt"
	"net/url"
	"syscall"
	"testing"
	"time"
)

// killPluginDuring runs call in the background, waits until the simulator
// has received route (whose answer a fault holds back), kills the plugin
// with SIGKILL, and has Vault start it again. The restarted engine's
// recovery then runs on what was stored before the crash.
func killPluginDuring(t *testing.T, s *stack, route string, call func() error, restartPath string) {
	t.Helper()
	before := s.sim.calls(t, "snyk")[route]
	if err := s.sim.adminDo("POST", "/faults", map[string]interface{}{"target": "snyk", "route": route, "status": 502, "delay_ms": 8000, "after_handler": true, "times": 1}, nil); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- call() }()
	if err := waitFor(20*time.Second, 50*time.Millisecond, func() (bool, error) {
		return s.sim.calls(t, "snyk")[route] > before, nil
	}); err != nil {
		t.Fatalf("the call never reached Snyk: %v", err)
	}
	pids := pluginPIDs(t, s)
	for _, pid := range pids {
		if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
			t.Fatalf("kill -9 %d: %v", pid, err)
		}
	}
	if err := <-done; err == nil {
		t.Fatal("the call succeeded although the plugin was killed during it")
	}
	if err := waitFor(30*time.Second, 500*time.Millisecond, func() (bool, error) {
		_, err := s.vault.client.Logical().Read(restartPath)
		after := pluginPIDs(t, s)
		return err == nil && len(after) > 0 && (len(pids) == 0 || after[0] != pids[0]), fmt.Errorf("plugin pids %v, read error %w", after, err)
	}); err != nil {
		t.Fatalf("Vault did not restart the plugin: %v", err)
	}
	_ = s.sim.adminDo("POST", "/faults/clear", map[string]string{"Target": "snyk"}, nil)
}

// TestCrashDuringCloneAndCreds: kill -9 of the plugin between Snyk's clone
// answer and its store leaves no unknown sharer (recovery finds the clone at
// Snyk and records it); kill -9 after a service account was created for a
// creds read leaves no orphan (recovery finds it by name and deletes it).
func TestCrashDuringCloneAndCreds(t *testing.T) {
	s := newTestStack(t)
	group := s.sim.info.GroupID
	var orgs []string
	for _, name := range []string{"crash-a", "crash-b"} {
		org := newUUID(t)
		if err := s.sim.adminDo("POST", "/orgs", map[string]string{"OrgID": org, "GroupID": group, "Name": name, "org_id": org, "group_id": group, "name": name}, nil); err != nil {
			t.Fatal(err)
		}
		orgs = append(orgs, org)
	}
	s.sim.addIntegration(t, orgs[0], "github", false)
	s.write(t, mountPath+"/integrations/crash-a/github", map[string]interface{}{"org_id": orgs[0], "scm_token": s.sim.info.GitHubToken, "scm_api_url": s.sim.info.GitHubURL})

	t.Run("clone", func(t *testing.T) {
		killPluginDuring(t, s, "POST /v1/org/{orgId}/integrations/{integrationId}/clone", func() error {
			_, err := s.vault.client.Logical().Write(mountPath+"/integrations/crash-a/github/clone", map[string]interface{}{"destination_org_id": orgs[1], "destination_name": "crash-b"})
			return err
		}, mountPath+"/integrations/crash-a/github")
		sec, err := s.vault.client.Logical().Read(mountPath + "/integrations/crash-b/github")
		if err != nil || sec == nil || str(sec.Data["token_family"]) != "crash-a/github" {
			t.Fatalf("the clone Snyk made is not a known sharer after recovery: %v %v", sec, err)
		}
		if str(s.read(t, mountPath+"/broker/crash-b/github").Data["broker_token"]) != str(s.read(t, mountPath+"/broker/crash-a/github").Data["broker_token"]) {
			t.Fatal("the recovered sharer serves another token")
		}
	})

	t.Run("creds", func(t *testing.T) {
		s.write(t, mountPath+"/roles/crash", map[string]interface{}{"org_id": orgs[0], "role_id": "11111111-2222-4333-8444-555555555555"})
		killPluginDuring(t, s, "POST /rest/orgs/{owner_id}/service_accounts", func() error {
			_, err := s.vault.client.Logical().Read(mountPath + "/creds/crash")
			return err
		}, mountPath+"/roles/crash")
		var accounts []string
		if err := waitFor(20*time.Second, 250*time.Millisecond, func() (bool, error) {
			accounts = nil
			if err := s.sim.adminDo("GET", "/service-accounts?scope=org&owner="+url.QueryEscape(orgs[0]), nil, &accounts); err != nil {
				return false, err
			}
			return len(accounts) == 0, nil
		}); err != nil {
			t.Fatalf("an orphaned service account survived the crash: %v (%v)", accounts, err)
		}
	})
}
