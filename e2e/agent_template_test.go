package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

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
