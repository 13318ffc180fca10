package e2e

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// TestBootstrapAgentConfigs runs the Agent configs in bootstrap/agent/ with
// a real Vault Agent and a token carrying the rendered broker-reader policy:
// broker-env-file.hcl must render .env in Agent's working directory with
// exactly the engine's env map, mode 0400; broker-client-github.hcl must
// start `broker client` (a stand-in here; the real Broker is
// TestBrokerChain's) with the engine's values.
func TestBootstrapAgentConfigs(t *testing.T) {
	s := sharedStack(t)
	s.ensurePaymentsGitHub(t)
	brokerPath := mountPath + "/broker/payments/github"
	if err := s.vault.client.Sys().PutPolicy("snyk-broker-payments-github", bootstrapReaderPolicy(t, mountPath, "payments", "github")); err != nil {
		t.Fatal(err)
	}
	// A Broker client's token (Kubernetes auth, AppRole, …) carries the
	// default policy too; Agent uses it to look its token up.
	token := bootstrapToken(t, s, true, "snyk-broker-payments-github")
	agentDir := filepath.Join(bootstrapDir(t), "agent")

	t.Run("broker-env-file", func(t *testing.T) {
		dir := t.TempDir()
		wd := filepath.Join(dir, "broker")
		if err := os.Mkdir(wd, 0o700); err != nil {
			t.Fatal(err)
		}
		auth := bootstrapAgentAuth(t, s, dir, token)
		environ := append(baseEnv(dir), "SNYK_BROKER_SECRET="+brokerPath)
		p := bootstrapStartAgent(t, dir, wd, environ, filepath.Join(agentDir, "broker-env-file.hcl"), auth)
		dotenv := filepath.Join(wd, ".env")
		content := bootstrapWaitFile(t, p, dotenv)

		want := bootstrapEnvMap(t, s.read(t, brokerPath))
		// Lines are KEY='value' (or KEY="value" when the value holds a
		// single quote), unindented, so dotenv reads '#' and spaces literally.
		got := map[string]string{}
		for _, line := range strings.Split(content, "\n") {
			if line == "" {
				continue
			}
			m := bootstrapEnvLine.FindStringSubmatch(line)
			if m == nil {
				t.Errorf(".env line %q is not KEY=VALUE", line)
				continue
			}
			v := m[2]
			quoted := len(v) >= 2 && ((v[0] == '\'' && v[len(v)-1] == '\'') || (v[0] == '"' && v[len(v)-1] == '"'))
			if !quoted {
				t.Errorf(".env line for %s is not quoted for dotenv: %q", m[1], line)
			} else {
				v = v[1 : len(v)-1]
			}
			if _, dup := got[m[1]]; dup {
				t.Errorf(".env sets %s twice", m[1])
			}
			got[m[1]] = v
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf(".env = %v\nwant the engine's env map %v", got, want)
		}
		bootstrapDotenvCheck(t, dotenv, want)
		if cur := s.sim.integration(t, s.sim.info.Orgs["payments"], "github").CurrentToken; got["BROKER_TOKEN"] != cur {
			t.Errorf(".env BROKER_TOKEN %q, want Snyk's current token %q", got["BROKER_TOKEN"], cur)
		}
		fi, err := os.Stat(dotenv)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != 0o400 {
			t.Errorf(".env mode %v, want 0400", fi.Mode().Perm())
		}
		if p.exited() {
			t.Errorf("vault agent exited after rendering: %v", p.waitErr)
		}
	})

	t.Run("broker-client-github", func(t *testing.T) {
		got := bootstrapRunStubBroker(t, s, token, filepath.Join(agentDir, "broker-client-github.hcl"),
			"SNYK_BROKER_SECRET="+brokerPath, "SNYK_BROKER_ROLE=next", "PORT=8000")
		sec := s.read(t, brokerPath)
		envm := bootstrapEnvMap(t, sec)
		// The "next" role runs the provisional token while one is held (the
		// shared stack may hold one), and broker_token otherwise.
		wantToken := str(sec.Data["broker_token"])
		if next, held := sec.Data["next_broker_token"]; held {
			wantToken = str(next)
		}
		want := map[string]string{
			"ARGS":              "client",
			"BROKER_TOKEN":      wantToken,
			"GITHUB_TOKEN":      str(sec.Data["scm_token"]),
			"BROKER_SERVER_URL": envm["BROKER_SERVER_URL"],
			"GITHUB":            envm["GITHUB"],
			"GITHUB_API":        envm["GITHUB_API"],
			"GITHUB_GRAPHQL":    envm["GITHUB_GRAPHQL"],
			"PORT":              "8000",
		}
		for k, v := range want {
			if got[k] != v || v == "" {
				t.Errorf("broker client started with %s=%q, want %q", k, got[k], v)
			}
		}
	})
}
