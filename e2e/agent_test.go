package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/vault/api"
)

// agentTTL is the integration's lease TTL in the Agent tests: Agent re-reads
// a non-renewable lease at about 90% of it.
const agentTTL = 10 * time.Second

const brokerSecretPath = mountPath + "/broker/payments/github"

// agentSetup prepares a stack for an Agent: payments/github with a short
// ttl, and a token file holding a token whose policy reads only
// snyk/broker/payments/*.
func agentSetup(t *testing.T) (s *stack, dir, tokenFile string) {
	t.Helper()
	s = newTestStack(t)
	s.ensureIntegration(t, "payments", "github", map[string]interface{}{
		"org_id":      s.sim.info.Orgs["payments"],
		"scm_token":   s.sim.info.GitHubToken,
		"scm_api_url": s.sim.info.GitHubURL,
		"ttl":         fmt.Sprintf("%ds", int(agentTTL.Seconds())),
	})
	br := s.read(t, brokerSecretPath)
	if br.LeaseDuration != int(agentTTL.Seconds()) || br.Renewable {
		t.Fatalf("broker lease: duration %d renewable %v; want %d, non-renewable", br.LeaseDuration, br.Renewable, int(agentTTL.Seconds()))
	}
	err := s.vault.client.Sys().PutPolicy("agent-broker", `path "snyk/broker/payments/*" {
  capabilities = ["read"]
}
`)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := s.vault.client.Auth().Token().Create(&api.TokenCreateRequest{Policies: []string{"agent-broker"}, TTL: "1h"})
	if err != nil {
		t.Fatal(err)
	}
	dir = filepath.Join(s.dir, "agent")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	tokenFile = filepath.Join(dir, "token")
	if err := os.WriteFile(tokenFile, []byte(tok.Auth.ClientToken+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return s, dir, tokenFile
}

// agentCommonHCL is the Agent config shared by both modes: this Vault, the
// token_file auto-auth method, and exit on template retry failure.
func agentCommonHCL(s *stack, tokenFile string) string {
	return fmt.Sprintf(`vault {
  address = %q
}
auto_auth {
  method "token_file" {
    config {
      token_file_path = %q
    }
  }
}
template_config {
  exit_on_retry_failure = true
}
`, s.vault.addr, tokenFile)
}

// startAgent runs `vault agent -config=<file>` with a clean environment
// (PATH and HOME only), stopped in cleanup; a failing test prints its log
// and the given files.
func startAgent(t *testing.T, dir, hcl string, showOnFailure ...string) *proc {
	t.Helper()
	cfg := filepath.Join(dir, "agent.hcl")
	if err := os.WriteFile(cfg, []byte(hcl), 0o600); err != nil {
		t.Fatal(err)
	}
	logPath := filepath.Join(dir, "agent.log")
	p, err := startProc("vault agent", logPath, baseEnv(dir), dir, syscall.SIGTERM, env.vaultBin, "agent", "-config="+cfg, "-log-level=debug")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.stop(15 * time.Second) })
	t.Cleanup(func() {
		if !t.Failed() {
			return
		}
		t.Logf("Agent config %s:\n%s", cfg, hcl)
		logTail(t, "Vault Agent log", logPath, 80)
		for _, f := range showOnFailure {
			logTail(t, filepath.Base(f), f, 40)
		}
	})
	return p
}

// agentAlive fails the test when the Agent has exited.
func agentAlive(t *testing.T, p *proc) {
	t.Helper()
	if p.exited() {
		t.Fatalf("vault agent exited: %v", p.waitErr)
	}
}

// rotate rotates payments/github through the API and returns the old and
// new current tokens at the fake Snyk.
func rotate(t *testing.T, s *stack) (old, current string) {
	t.Helper()
	org := s.sim.info.Orgs["payments"]
	old = s.sim.integration(t, org, "github").CurrentToken
	resp := s.write(t, brokerSecretPath+"/rotate", nil)
	current = s.sim.integration(t, org, "github").CurrentToken
	if current == "" || current == old {
		t.Fatalf("rotate did not change Snyk's current token (%q -> %q)", old, current)
	}
	if resp == nil || resp.Data["broker_token_fingerprint"] != fingerprintOf(current) || resp.Data["rotation_state"] != "active" {
		t.Errorf("rotate response %v, want broker_token_fingerprint %s and rotation_state active", resp, fingerprintOf(current))
	}
	if got := str(s.read(t, brokerSecretPath).Data["broker_token"]); got != current {
		t.Fatalf("broker_token right after rotate = %q, want %q", got, current)
	}
	return old, current
}

func parseEnvFile(raw string) map[string]string {
	out := map[string]string{}
	for _, l := range strings.Split(raw, "\n") {
		if k, v, ok := strings.Cut(strings.TrimSpace(l), "="); ok {
			out[k] = v
		}
	}
	return out
}

// TestAgentTemplateRerendersAfterRotate runs Vault Agent in template mode,
// rendering an env file from .Data.env, and checks that a rotation reaches
// the file within the lease TTL plus a margin.
func TestAgentTemplateRerendersAfterRotate(t *testing.T) {
	s, dir, tokenFile := agentSetup(t)
	dest := filepath.Join(dir, "broker.env")
	hcl := agentCommonHCL(s, tokenFile) + fmt.Sprintf(`template {
  destination = %q
  perms       = "0600"
  contents    = <<EOT
{{ with secret "snyk/broker/payments/github" }}{{ range $k, $v := .Data.env }}{{ $k }}={{ $v }}
{{ end }}{{ end }}
EOT
}
`, dest)
	agent := startAgent(t, dir, hcl, dest)

	want := envMap(t, s.read(t, brokerSecretPath).Data["env"])
	current := s.sim.integration(t, s.sim.info.Orgs["payments"], "github").CurrentToken
	var rendered map[string]string
	err := waitFor(30*time.Second, 100*time.Millisecond, func() (bool, error) {
		agentAlive(t, agent)
		raw, err := os.ReadFile(dest)
		if err != nil {
			return false, err
		}
		rendered = parseEnvFile(string(raw))
		return rendered["BROKER_TOKEN"] != "", nil
	})
	if err != nil {
		t.Fatalf("Agent did not render %s: %v", dest, err)
	}
	if rendered["BROKER_TOKEN"] != current {
		t.Errorf("rendered BROKER_TOKEN = %q, want the current token %q", rendered["BROKER_TOKEN"], current)
	}
	if strings.Join(keysOf(rendered), ",") != strings.Join(keysOf(want), ",") {
		t.Errorf("rendered keys %v, want the env map's %v", keysOf(rendered), keysOf(want))
	}
	for k, v := range want {
		if rendered[k] != v {
			t.Errorf("rendered %s = %q, want %q", k, rendered[k], v)
		}
	}
	if fi, err := os.Stat(dest); err == nil && fi.Mode().Perm() != 0o600 {
		t.Errorf("%s has mode %v, want 0600", dest, fi.Mode().Perm())
	}

	start := time.Now()
	old, fresh := rotate(t, s)
	deadline := agentTTL + 10*time.Second
	err = waitFor(deadline, 200*time.Millisecond, func() (bool, error) {
		agentAlive(t, agent)
		raw, err := os.ReadFile(dest)
		if err != nil {
			return false, err
		}
		rendered = parseEnvFile(string(raw))
		return rendered["BROKER_TOKEN"] == fresh, fmt.Errorf("BROKER_TOKEN is %q", rendered["BROKER_TOKEN"])
	})
	if err != nil {
		t.Fatalf("the rotated token %q did not reach %s within ttl+10s (old %q): %v", fresh, dest, old, err)
	}
	t.Logf("Agent re-rendered the new token %s after the rotate", time.Since(start).Round(100*time.Millisecond))
	if rendered["GITHUB_TOKEN"] != s.sim.info.GitHubToken {
		t.Errorf("re-rendered GITHUB_TOKEN = %q, want %q", rendered["GITHUB_TOKEN"], s.sim.info.GitHubToken)
	}
	agentAlive(t, agent)
}

// childRun is one start of the exec-mode child, as it logged itself.
type childRun struct {
	brokerToken, githubToken string
	startedAt                time.Time
	pid                      int
	envNames                 string
}

func readChildRuns(t *testing.T, path string) []childRun {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil
	}
	var runs []childRun
	for _, l := range strings.Split(strings.TrimSpace(string(raw)), "\n") {
		f := strings.Split(l, "|")
		if len(f) != 5 {
			continue
		}
		sec, _ := strconv.ParseInt(f[2], 10, 64)
		pid, _ := strconv.Atoi(f[3])
		runs = append(runs, childRun{brokerToken: f[0], githubToken: f[1], startedAt: time.Unix(sec, 0), pid: pid, envNames: f[4]})
	}
	return runs
}

func pidAlive(pid int) bool {
	return syscall.Kill(pid, 0) == nil
}

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
	if first.brokerToken != current {
		t.Errorf("child started with BROKER_TOKEN %q, want the current token %q", first.brokerToken, current)
	}
	if first.githubToken != s.sim.info.GitHubToken {
		t.Errorf("child started with GITHUB_TOKEN %q, want %q", first.githubToken, s.sim.info.GitHubToken)
	}
	for _, leaked := range []string{"VAULT_BINARY", "PLUGIN_BINARY", "VAULT_TOKEN", "VAULT_ADDR"} {
		if strings.Contains(" "+first.envNames+" ", " "+leaked+" ") {
			t.Errorf("the child's environment has %s (Agent must start with a clean environment): %s", leaked, first.envNames)
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
			if r.brokerToken == fresh {
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
	if restarted.githubToken != s.sim.info.GitHubToken {
		t.Errorf("restarted child GITHUB_TOKEN = %q, want %q", restarted.githubToken, s.sim.info.GitHubToken)
	}
	if err := waitFor(10*time.Second, 100*time.Millisecond, func() (bool, error) { return !pidAlive(first.pid), nil }); err != nil {
		t.Errorf("the first child (pid %d) still runs after the restart", first.pid)
	}
	if last := runs[len(runs)-1]; last.brokerToken != fresh {
		t.Errorf("the last child run has BROKER_TOKEN %q, want the new token %q", last.brokerToken, fresh)
	}
	for _, r := range runs {
		if r.brokerToken != first.brokerToken && r.brokerToken != fresh {
			t.Errorf("a child ran with an unexpected BROKER_TOKEN %q", r.brokerToken)
		}
	}
	if !pidAlive(restarted.pid) {
		t.Errorf("the restarted child (pid %d) is not running", restarted.pid)
	}
	agentAlive(t, agent)
}
