package e2e

import (
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/hashicorp/vault/api"
)

// TestCodeAgentTokenRenderedByAgent: an integration with code_agent_role;
// a real Vault Agent renders its bundle for a Code Agent container, with
// SNYK_TOKEN the key of a service account that exists at Snyk while the
// lease lives.
func TestCodeAgentTokenRenderedByAgent(t *testing.T) {
	s := sharedStack(t)
	org := newUUID(t)
	s.sim.addOrg(t, org, "code-agent")
	s.sim.addIntegration(t, org, "github", false)
	s.write(t, mountPath+"/roles/code-agent-e2e", map[string]interface{}{"org_id": org, "role_id": "11111111-2222-4333-8444-555555555555"})
	s.write(t, mountPath+"/integrations/"+org+"/github", map[string]interface{}{
		"org_id": org, "scm_token": s.sim.info.GitHubToken, "scm_api_url": s.sim.info.GitHubURL, "code_agent_role": "code-agent-e2e", "ttl": "1m",
	})
	t.Cleanup(func() { _, _ = s.vault.client.Logical().Delete(mountPath + "/integrations/" + org + "/github") })

	if err := s.vault.client.Sys().PutPolicy("code-agent-e2e", fmt.Sprintf("path %q {\n  capabilities = [\"read\"]\n}\n", mountPath+"/broker/"+org+"/github")); err != nil {
		t.Fatal(err)
	}
	tok, err := s.vault.client.Auth().Token().Create(&api.TokenCreateRequest{Policies: []string{"code-agent-e2e"}, TTL: "1h"})
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(s.dir, "code-agent")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	tokenFile := filepath.Join(dir, "token")
	if err := os.WriteFile(tokenFile, []byte(tok.Auth.ClientToken+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	dest := filepath.Join(dir, "code-agent.env")
	hcl := agentCommonHCL(s, tokenFile) + fmt.Sprintf(`template {
  destination = %q
  perms       = "0600"
  contents    = <<EOT
{{ with secret %q }}SNYK_TOKEN={{ .Data.env.SNYK_TOKEN }}
BROKER_TOKEN={{ .Data.env.BROKER_TOKEN }}
{{ end }}
EOT
}
`, dest, mountPath+"/broker/"+org+"/github")
	agent := startAgent(t, dir, hcl, dest)
	var rendered map[string]string
	err = waitFor(30*time.Second, 100*time.Millisecond, func() (bool, error) {
		agentAlive(t, agent)
		raw, err := os.ReadFile(dest)
		if err != nil {
			return false, nil
		}
		rendered = parseEnvFile(string(raw))
		return rendered["SNYK_TOKEN"] != "", nil
	})
	if err != nil {
		t.Fatalf("Agent did not render SNYK_TOKEN: %v", err)
	}
	var accounts []string
	if err := s.sim.adminDo("GET", "/service-accounts?scope=org&owner="+url.QueryEscape(org), nil, &accounts); err != nil {
		t.Fatal(err)
	}
	if len(accounts) == 0 || rendered["BROKER_TOKEN"] == "" {
		t.Fatalf("service accounts at Snyk: %v; rendered BROKER_TOKEN set: %v", accounts, rendered["BROKER_TOKEN"] != "")
	}
}
