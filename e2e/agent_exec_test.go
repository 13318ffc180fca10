package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestAgentExecRestartsChildAfterRotate runs Vault Agent as a process
// supervisor: env_template renders BROKER_TOKEN (and GITHUB_TOKEN, with
// distinct contents) into a child's environment; after a rotation Agent must
// restart the child with the new token.
func TestAgentExecRestartsChildAfterRotate(t *testing.T) {
	s, dir, tokenFile := agentSetup(t)
	childLog := filepath.Join(dir, "child.log")
	child := filepath.Join(dir, "child.sh")
	script := fmt.Sprintf(`#!/bin/sh
# One line per start: token|scm token|unix time|pid|names of the env vars.
names=$(env | cut -d= -f1 | sort | tr '\n' ' ')
printf '%%s|%%s|%%s|%%s|%%s\n' "$BROKER_TOKEN" "$GITHUB_TOKEN" "$(date +%%s)" "$$" "$names" >> %q
trap 'exit 0' TERM INT
# Exit with Agent, whatever happens to it.
while kill -0 "$PPID" 2>/dev/null; do sleep 1; done
`, childLog)
	if err := os.WriteFile(child, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	hcl := agentCommonHCL(s, tokenFile) + fmt.Sprintf(`env_template "BROKER_TOKEN" {
  contents             = "{{ with secret \"snyk/broker/payments/github\" }}{{ .Data.broker_token }}{{ end }}"
  error_on_missing_key = true
}
env_template "GITHUB_TOKEN" {
  contents             = "{{/* the SCM token */}}{{ with secret \"snyk/broker/payments/github\" }}{{ .Data.scm_token }}{{ end }}"
  error_on_missing_key = true
}
exec {
  command                   = [%q]
  restart_on_secret_changes = "always"
  restart_stop_signal       = "SIGTERM"
}
`, child)
	agent := startAgent(t, dir, hcl, childLog)

	current := s.sim.integration(t, s.sim.info.Orgs["payments"], "github").CurrentToken
	var runs []childRun
	err := waitFor(30*time.Second, 100*time.Millisecond, func() (bool, error) {
		agentAlive(t, agent)
		runs = readChildRuns(t, childLog)
		return len(runs) > 0, nil
	})
	if err != nil {
		t.Fatalf("Agent did not start the child: %v", err)
	}
	first := runs[0]
	if first.secret != current {
		t.Errorf("child started with BROKER_TOKEN %q, want the current token %q", first.secret, current)
	}
	if first.scmToken != s.sim.info.GitHubToken {
		t.Errorf("child started with GITHUB_TOKEN %q, want %q", first.scmToken, s.sim.info.GitHubToken)
	}
	for _, leaked := range []string{"VAULT_BINARY", "PLUGIN_BINARY", "VAULT_TOKEN", "VAULT_ADDR"} {
		if strings.Contains(" "+first.extra+" ", " "+leaked+" ") {
			t.Errorf("the child's environment has %s (Agent must start with a clean environment): %s", leaked, first.extra)
		}
	}

	start := time.Now()
	_, fresh := rotate(t, s)
	deadline := agentTTL + 15*time.Second
	var restarted childRun
	err = waitFor(deadline, 200*time.Millisecond, func() (bool, error) {
		agentAlive(t, agent)
		runs = readChildRuns(t, childLog)
		for _, r := range runs[1:] {
			if r.secret == fresh {
				restarted = r
				return true, nil
			}
		}
		return false, fmt.Errorf("child runs so far: %d", len(runs))
	})
	if err != nil {
		t.Fatalf("the child was not restarted with the rotated token within ttl+15s: %v", err)
	}
	t.Logf("Agent restarted the child with the new token %s after the rotate (%d runs)", time.Since(start).Round(100*time.Millisecond), len(runs))
	if restarted.pid == first.pid {
		t.Errorf("the new token was seen by the same process %d", first.pid)
	}
	if restarted.scmToken != s.sim.info.GitHubToken {
		t.Errorf("restarted child GITHUB_TOKEN = %q, want %q", restarted.scmToken, s.sim.info.GitHubToken)
	}
	if err := waitFor(10*time.Second, 100*time.Millisecond, func() (bool, error) { return !pidAlive(first.pid), nil }); err != nil {
		t.Errorf("the first child (pid %d) still runs after the restart", first.pid)
	}
	if last := runs[len(runs)-1]; last.secret != fresh {
		t.Errorf("the last child run has BROKER_TOKEN %q, want the new token %q", last.secret, fresh)
	}
	for _, r := range runs {
		if r.secret != first.secret && r.secret != fresh {
			t.Errorf("a child ran with an unexpected BROKER_TOKEN %q", r.secret)
		}
	}
	if !pidAlive(restarted.pid) {
		t.Errorf("the restarted child (pid %d) is not running", restarted.pid)
	}
	agentAlive(t, agent)
}
