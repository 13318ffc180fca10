package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/vault/api"
)

// Universal Broker deployments in a real Vault with the real plugin,
// against the simulator's demo deployment (a GitHub and a GitLab connection
// whose tokens Vault holds).

const (
	universalPath        = mountPath + "/universal/demo"
	universalEnvPath     = universalPath + "/env"
	routeInstallSecrets  = "POST /rest/orgs/{org_id}/apps/installs/{install_id}/secrets"
	universalPeriod      = 40 * time.Second
	universalProvision   = 12 * time.Second
	universalTTL         = 8 * time.Second
	universalExitWindow  = 10 * time.Second
	universalGracePeriod = universalTTL + universalExitWindow
)

// createUniversal writes the demo deployment with a rotation short enough
// to watch.
func createUniversal(t *testing.T, s *stack) *api.Secret {
	t.Helper()
	return s.write(t, universalPath, universalData(s))
}

// universalData is a valid create request of the demo deployment.
func universalData(s *stack) map[string]interface{} {
	u := s.sim.info.Universal
	return map[string]interface{}{
		"tenant_id": u.TenantID, "install_id": u.InstallID, "install_org_id": u.InstallOrgID, "deployment_id": u.DeploymentID,
		"client_id": u.ClientID, "client_secret": u.ClientSecret,
		"credentials": map[string]interface{}{
			// The demo GitHub connection is on github.com; its check goes to
			// the fake GitHub instead.
			"MY_GITHUB_TOKEN": map[string]interface{}{"value": u.Credentials["MY_GITHUB_TOKEN"].Value, "scm_api_url": s.sim.info.GitHubURL},
			"MY_GITLAB_TOKEN": u.Credentials["MY_GITLAB_TOKEN"].Value,
		},
		"ttl":                fmt.Sprintf("%ds", int(universalTTL.Seconds())),
		"rotation_period":    fmt.Sprintf("%ds", int(universalPeriod.Seconds())),
		"provision_ahead":    fmt.Sprintf("%ds", int(universalProvision.Seconds())),
		"client_exit_window": fmt.Sprintf("%ds", int(universalExitWindow.Seconds())),
	}
}

type installSecrets struct {
	Count   int `json:"count"`
	Creates int `json:"creates"`
	Deletes int `json:"deletes"`
}

func (s *simulator) installSecrets(t *testing.T) installSecrets {
	t.Helper()
	var out installSecrets
	if err := s.adminDo("GET", "/universal/install-secrets?install_id="+s.info.Universal.InstallID, nil, &out); err != nil {
		t.Fatal(err)
	}
	return out
}

func (s *simulator) installSecretValid(t *testing.T, secret string) bool {
	t.Helper()
	var out struct {
		Valid bool `json:"valid"`
	}
	if err := s.adminDo("POST", "/universal/install-secrets/check", map[string]string{"install_id": s.info.Universal.InstallID, "secret": secret}, &out); err != nil {
		t.Fatal(err)
	}
	return out.Valid
}

// waitEnv polls the env read until ok accepts it.
func waitEnv(t *testing.T, s *stack, timeout time.Duration, what string, ok func(*api.Secret) bool) *api.Secret {
	t.Helper()
	var last *api.Secret
	err := waitFor(timeout, 200*time.Millisecond, func() (bool, error) {
		sec, err := s.vault.client.Logical().Read(universalEnvPath)
		if err != nil || sec == nil {
			return false, err
		}
		last = sec
		return ok(sec), nil
	})
	if err != nil {
		t.Fatalf("waiting for %s: %v (last read %v)", what, err, last)
	}
	return last
}

// TestUniversalEnvAndRotationUnderAgent: the deployment is checked and
// stored, its whole environment is one lease, and a Vault Agent in exec
// mode runs a client with it; a scheduled rotation creates the next secret
// (both valid, the client untouched), switches (Agent restarts the client
// with the new secret) and deletes the old one after ttl + exit window.
func TestUniversalEnvAndRotationUnderAgent(t *testing.T) {
	s := newTestStack(t)
	u := s.sim.info.Universal
	created := createUniversal(t, s)
	if missing := created.Data["missing_credentials"]; fmt.Sprint(missing) != "[]" {
		t.Fatalf("missing_credentials %v", missing)
	}

	env := s.read(t, universalEnvPath)
	if env.Renewable || env.LeaseDuration <= 0 || env.LeaseDuration > int(universalTTL.Seconds()) {
		t.Fatalf("lease: renewable %v, duration %d", env.Renewable, env.LeaseDuration)
	}
	for k, v := range map[string]string{
		"DEPLOYMENT_ID": u.DeploymentID, "CLIENT_ID": u.ClientID, "CLIENT_SECRET": u.ClientSecret, "UNIVERSAL_BROKER_ENABLED": "true",
		"API_BASE_URL": s.sim.info.SnykURL, "MY_GITHUB_TOKEN": u.Credentials["MY_GITHUB_TOKEN"].Value, "MY_GITLAB_TOKEN": u.Credentials["MY_GITLAB_TOKEN"].Value,
	} {
		if str(env.Data[k]) != v {
			t.Errorf("env read %s = %q, want %q", k, str(env.Data[k]), v)
		}
	}

	// Agent runs a stand-in client: it records the environment it was
	// started with, as the real client reads CLIENT_SECRET at start-up.
	dir := filepath.Join(s.dir, "agent-universal")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := s.vault.client.Sys().PutPolicy("universal-reader", `path "snyk/universal/demo/env" {
  capabilities = ["read"]
}
`); err != nil {
		t.Fatal(err)
	}
	tok, err := s.vault.client.Auth().Token().Create(&api.TokenCreateRequest{Policies: []string{"universal-reader"}, TTL: "1h"})
	if err != nil {
		t.Fatal(err)
	}
	tokenFile := filepath.Join(dir, "token")
	if err := os.WriteFile(tokenFile, []byte(tok.Auth.ClientToken+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	childLog := filepath.Join(dir, "child.log")
	child := filepath.Join(dir, "client.sh")
	script := fmt.Sprintf(`#!/bin/sh
printf '%%s|%%s|%%s|%%s|%%s\n' "$CLIENT_SECRET" "$MY_GITLAB_TOKEN" "$(date +%%s)" "$$" "$DEPLOYMENT_ID" >> %q
trap 'exit 0' TERM INT
while kill -0 "$PPID" 2>/dev/null; do sleep 1; done
`, childLog)
	if err := os.WriteFile(child, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	hcl := agentCommonHCL(s, tokenFile)
	for _, name := range []string{"DEPLOYMENT_ID", "CLIENT_ID", "CLIENT_SECRET", "UNIVERSAL_BROKER_ENABLED", "API_BASE_URL", "BROKER_SERVER_URL", "MY_GITHUB_TOKEN", "MY_GITLAB_TOKEN"} {
		hcl += fmt.Sprintf(`env_template %q {
  contents             = "{{ with secret \"snyk/universal/demo/env\" }}{{ index .Data.env \"%s\" }}{{ end }}"
  error_on_missing_key = true
}
`, name, name)
	}
	hcl += fmt.Sprintf(`exec {
  command                   = [%q]
  restart_on_secret_changes = "always"
  restart_stop_signal       = "SIGTERM"
}
`, child)
	agent := startAgent(t, dir, hcl, childLog)
	var runs []childRun
	if err := waitFor(30*time.Second, 100*time.Millisecond, func() (bool, error) {
		agentAlive(t, agent)
		runs = readChildRuns(t, childLog)
		return len(runs) > 0, nil
	}); err != nil {
		t.Fatalf("Agent did not start the client: %v", err)
	}
	first := runs[0]
	if first.secret != u.ClientSecret || first.extra != u.DeploymentID {
		t.Fatalf("client started with CLIENT_SECRET %q, DEPLOYMENT_ID %q", first.secret, first.extra)
	}

	// The creation: reads add next_client_secret; Snyk holds both.
	env = waitEnv(t, s, universalPeriod+10*time.Second, "the next client secret", func(sec *api.Secret) bool { return str(sec.Data["next_client_secret"]) != "" })
	next := str(env.Data["next_client_secret"])
	createdAt := time.Now()
	if got := s.sim.installSecrets(t); got.Count != 2 || got.Creates != 1 {
		t.Fatalf("after the creation Snyk holds %d secrets (%d creates), want 2 (1)", got.Count, got.Creates)
	}
	if !s.sim.installSecretValid(t, u.ClientSecret) || !s.sim.installSecretValid(t, next) {
		t.Fatal("both secrets must work between the creation and the switch")
	}

	// The switch: Agent restarts the client with the new secret.
	var restarted childRun
	if err := waitFor(universalProvision+universalTTL+15*time.Second, 200*time.Millisecond, func() (bool, error) {
		agentAlive(t, agent)
		runs = readChildRuns(t, childLog)
		for _, r := range runs {
			if r.secret == next {
				restarted = r
				return true, nil
			}
		}
		return false, nil
	}); err != nil {
		t.Fatalf("Agent did not restart the client with the new secret: %v", err)
	}
	switchedAt := time.Now()
	t.Logf("client restarted with the new secret %s after its creation", switchedAt.Sub(createdAt).Round(100*time.Millisecond))
	for _, r := range runs {
		if r.secret == u.ClientSecret && r.pid != first.pid {
			t.Errorf("the client was restarted with the old secret (pid %d): the creation must not restart it", r.pid)
		}
	}
	if restarted.scmToken != u.Credentials["MY_GITLAB_TOKEN"].Value {
		t.Errorf("restarted client MY_GITLAB_TOKEN %q", restarted.scmToken)
	}
	if !s.sim.installSecretValid(t, u.ClientSecret) {
		t.Fatal("the old secret must keep working right after the switch (clients still run with it)")
	}

	// The old secret is deleted ttl + exit window after the switch.
	if err := waitFor(universalGracePeriod+15*time.Second, 250*time.Millisecond, func() (bool, error) {
		return !s.sim.installSecretValid(t, u.ClientSecret), nil
	}); err != nil {
		t.Fatalf("the old secret was not deleted after the grace period: %v", err)
	}
	t.Logf("old secret deleted %s after the client switched (grace %s)", time.Since(switchedAt).Round(100*time.Millisecond), universalGracePeriod)
	if got := s.sim.installSecrets(t); got.Count != 1 || got.Deletes != 1 {
		t.Fatalf("after the grace Snyk holds %d secrets (%d deletes), want 1 (1)", got.Count, got.Deletes)
	}
	if !s.sim.installSecretValid(t, next) {
		t.Fatal("the new secret must work")
	}
	status := s.read(t, universalPath)
	if str(status.Data["rotation_state"]) != "active" || str(status.Data["last_rotation_error"]) != "" {
		t.Fatalf("status %v / %q", status.Data["rotation_state"], status.Data["last_rotation_error"])
	}
	agentAlive(t, agent)
}

// TestUniversalRotationSurvivesKill9: the plugin is killed with SIGKILL
// between the creation and the switch (the stored secret is switched to on
// time, no second creation), then while Snyk holds the answer of the next
// creation (recovery reports the secret Vault may never have stored, and
// the working secret stays served).
func TestUniversalRotationSurvivesKill9(t *testing.T) {
	s := newTestStack(t)
	u := s.sim.info.Universal
	createUniversal(t, s)
	env := waitEnv(t, s, universalPeriod+10*time.Second, "the next client secret", func(sec *api.Secret) bool { return str(sec.Data["next_client_secret"]) != "" })
	next := str(env.Data["next_client_secret"])
	killPlugin(t, s)
	waitEnv(t, s, universalProvision+20*time.Second, "the switch after the kill", func(sec *api.Secret) bool { return str(sec.Data["CLIENT_SECRET"]) == next })
	if got := s.sim.installSecrets(t); got.Creates != 1 {
		t.Fatalf("%d creations at Snyk, want 1 (the stored secret is switched to, not created again)", got.Creates)
	}

	// The old secret is deleted first (the same route as the creation).
	if err := waitFor(universalGracePeriod+10*time.Second, 100*time.Millisecond, func() (bool, error) {
		return s.sim.installSecrets(t).Deletes == 1, nil
	}); err != nil {
		t.Fatalf("the old secret was not deleted: %v", err)
	}
	// The next creation is applied at Snyk, its answer held 8 s; the
	// plugin dies meanwhile.
	if err := s.sim.adminDo("POST", "/faults", map[string]interface{}{"target": "snyk", "route": routeInstallSecrets, "status": 504, "delay_ms": 8000, "after_handler": true, "times": 1}, nil); err != nil {
		t.Fatal(err)
	}
	if err := waitFor(universalPeriod, 50*time.Millisecond, func() (bool, error) {
		return s.sim.installSecrets(t).Creates == 2, nil
	}); err != nil {
		t.Fatalf("no second creation: %v", err)
	}
	killPlugin(t, s)
	// Recovery reports the interrupted creation; the restarted loop's next
	// attempt then meets Snyk's two-secret cap and says why it is blocked.
	var status *api.Secret
	if err := waitFor(30*time.Second, 500*time.Millisecond, func() (bool, error) {
		status = s.read(t, universalPath)
		msg := str(status.Data["last_rotation_error"])
		return strings.Contains(msg, "may hold a second secret") || strings.Contains(msg, "BLOCKED"), nil
	}); err != nil {
		t.Fatalf("recovery did not report the interrupted creation: %v (last_rotation_error %q)", err, str(status.Data["last_rotation_error"]))
	}
	env = s.read(t, universalEnvPath)
	if str(env.Data["CLIENT_SECRET"]) != next || str(env.Data["next_client_secret"]) != "" {
		t.Fatalf("after the interrupted creation Vault must keep serving the working secret and no next one")
	}
	if !s.sim.installSecretValid(t, next) || s.sim.installSecretValid(t, u.ClientSecret) {
		t.Fatal("the served secret must work, the first one be deleted")
	}
}

// killPlugin kills every plugin process with SIGKILL and waits until Vault
// runs a new one (started by the next request to the mount).
func killPlugin(t *testing.T, s *stack) {
	t.Helper()
	pids := pluginPIDs(t, s)
	if len(pids) == 0 {
		t.Fatal("no plugin process found")
	}
	for _, pid := range pids {
		if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
			t.Fatalf("kill -9 %d: %v", pid, err)
		}
	}
	if err := waitFor(30*time.Second, 500*time.Millisecond, func() (bool, error) {
		_, err := s.vault.client.Logical().Read(universalPath)
		if err != nil {
			return false, err
		}
		after := pluginPIDs(t, s)
		return len(after) > 0 && after[0] != pids[0], nil
	}); err != nil {
		t.Fatalf("Vault did not restart the plugin: %v", err)
	}
	t.Logf("killed plugin pid(s) %v; Vault restarted it", pids)
}
