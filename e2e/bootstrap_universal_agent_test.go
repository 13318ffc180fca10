package e2e

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/snyk-vault/vault-plugin-secrets-snyk/backend/tlstest"
)

// TestBootstrapUniversalAgentConfig runs Vault Agent with
// bootstrap/agent/universal-broker-client.hcl (the file operators deploy)
// against the engine's universal/<name>/env, with a stand-in `broker` on
// PATH that records the environment and the .env it was started with: the
// platform credentials come as variables, every credential reference as a
// dotenv line the client can expand ${NAME} from.
func TestBootstrapUniversalAgentConfig(t *testing.T) {
	s := newTestStack(t)
	createUniversal(t, s)
	u := s.sim.info.Universal
	policy := `path "snyk/universal/demo/env" {
  capabilities = ["read"]
}
`
	if err := s.vault.client.Sys().PutPolicy("universal-demo-reader", policy); err != nil {
		t.Fatal(err)
	}
	token := bootstrapToken(t, s, true, "universal-demo-reader")
	// A GitHub App key is a file, never a variable or a dotenv line.
	s.write(t, universalPath+"/credentials/app.pem", map[string]interface{}{"value": testPrivateKeyPEM(t)})

	dir := t.TempDir()
	wd, bin := filepath.Join(dir, "broker"), filepath.Join(dir, "bin")
	for _, d := range []string{wd, bin} {
		if err := os.Mkdir(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	out := filepath.Join(dir, "broker-env")
	stub := "#!/bin/sh\n{ echo \"ARGS=$*\"; env; echo '#DOTENV'; cat .env; } > \"$BOOTSTRAP_OUT.tmp\" && mv \"$BOOTSTRAP_OUT.tmp\" \"$BOOTSTRAP_OUT\"\nexec sleep 300\n"
	if err := os.WriteFile(filepath.Join(bin, "broker"), []byte(stub), 0o755); err != nil {
		t.Fatal(err)
	}
	environ := []string{
		"PATH=" + bin + ":/usr/local/bin:/usr/bin:/bin", "HOME=" + dir, "BOOTSTRAP_OUT=" + out,
		"SNYK_UNIVERSAL_SECRET=" + mountPath + "/universal/demo/env", "PORT=8000",
	}
	config := filepath.Join(bootstrapDir(t), "agent", "universal-broker-client.hcl")
	p := bootstrapStartAgent(t, dir, wd, environ, config, bootstrapAgentAuth(t, s, dir, token))
	recorded := bootstrapWaitFile(t, p, out)
	vars, dotenv, _ := strings.Cut(recorded, "#DOTENV\n")

	got := map[string]string{}
	for _, line := range strings.Split(vars, "\n") {
		if k, v, ok := strings.Cut(line, "="); ok {
			got[k] = v
		}
	}
	want := map[string]string{
		"ARGS": "client", "DEPLOYMENT_ID": u.DeploymentID, "CLIENT_ID": u.ClientID, "CLIENT_SECRET": u.ClientSecret,
		"UNIVERSAL_BROKER_ENABLED": "true", "UNIVERSAL_BROKER_GA": "true", "API_BASE_URL": s.sim.info.SnykURL, "PORT": "8000",
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("client variable %s = %q, want %q", k, got[k], v)
		}
	}
	if got["BROKER_SERVER_URL"] == "" {
		t.Error("client has no BROKER_SERVER_URL")
	}
	for _, leaked := range []string{"VAULT_TOKEN", "SNYK_UNIVERSAL_DOTENV", "app.pem"} {
		if _, ok := got[leaked]; ok {
			t.Errorf("the client's environment must not carry %s", leaked)
		}
	}

	lines := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(dotenv), "\n") {
		k, quoted, ok := strings.Cut(line, "=")
		if !ok {
			t.Fatalf(".env line %q is not KEY=value", line)
		}
		var v string
		if err := json.Unmarshal([]byte(quoted), &v); err != nil {
			t.Fatalf(".env value of %s is not a quoted string: %v", k, err)
		}
		lines[k] = v
	}
	for name, c := range u.Credentials {
		if lines[name] != c.Value {
			t.Errorf(".env %s = %q, want the credential's value", name, lines[name])
		}
	}
	for _, platform := range []string{"CLIENT_SECRET", "DEPLOYMENT_ID", "CLIENT_ID", "app.pem"} {
		if _, ok := lines[platform]; ok {
			t.Errorf(".env has %s: the platform credentials come as variables, a .pem key as a file", platform)
		}
	}
	if info, err := os.Stat(filepath.Join(wd, ".env")); err != nil || info.Mode().Perm() != 0o600 {
		t.Errorf(".env mode: %v %v, want 0600", info, err)
	}
}

// testPrivateKeyPEM is a fresh GitHub App style private key.
func testPrivateKeyPEM(t *testing.T) string {
	t.Helper()
	key, err := tlstest.RSAPrivateKeyPEM()
	if err != nil {
		t.Fatal(err)
	}
	return key
}
