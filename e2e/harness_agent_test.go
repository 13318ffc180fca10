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

// childRun is one start of the exec-mode child, as it logged itself.
// childRun is one start of a stand-in client, as its script records it on
// one line: the secret it got (BROKER_TOKEN or CLIENT_SECRET), an SCM token,
// the unix time, its pid, and a fifth value the test chooses.
type childRun struct {
	secret, scmToken string
	startedAt        time.Time
	pid              int
	extra            string
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
		runs = append(runs, childRun{secret: f[0], scmToken: f[1], startedAt: time.Unix(sec, 0), pid: pid, extra: f[4]})
	}
	return runs
}

func pidAlive(pid int) bool {
	return syscall.Kill(pid, 0) == nil
}
