package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/vault/api"
	"gopkg.in/yaml.v3"
)

// The operator assets under bootstrap/, exercised as shipped: the policies
// loaded into a real Vault and checked against the real engine, configure.sh
// run against a fresh Vault, the Agent configs run by a real Vault Agent, and
// the Kubernetes examples parsed and cross-checked against the engine's paths.

// bootstrapDir is the repository's bootstrap/ directory (tests run in e2e/).
func bootstrapDir(t *testing.T) string {
	t.Helper()
	dir, err := filepath.Abs(filepath.Join("..", "bootstrap"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "configure.sh")); err != nil {
		t.Fatalf("bootstrap assets not found: %v", err)
	}
	return dir
}

func bootstrapReadFile(t *testing.T, path string) string {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(raw)
}

// bootstrapReaderPolicy renders policies/broker-reader.hcl.tmpl as
// configure.sh does for "<org>/<scm>" on mount.
func bootstrapReaderPolicy(t *testing.T, mount, org, scm string) string {
	t.Helper()
	tmpl := bootstrapReadFile(t, filepath.Join(bootstrapDir(t), "policies", "broker-reader.hcl.tmpl"))
	out := strings.NewReplacer("__MOUNT__", mount, "__ORG__", org, "__SCM__", scm).Replace(tmpl)
	if strings.Contains(out, "__") {
		t.Fatalf("rendered broker-reader policy still has a placeholder:\n%s", out)
	}
	return out
}

// bootstrapToken creates a token carrying exactly policies (no default
// policy unless withDefault) and checks that Vault says so.
func bootstrapToken(t *testing.T, s *stack, withDefault bool, policies ...string) string {
	t.Helper()
	tok, err := s.vault.client.Auth().Token().Create(&api.TokenCreateRequest{
		Policies:        policies,
		NoDefaultPolicy: !withDefault,
		TTL:             "30m",
	})
	if err != nil {
		t.Fatalf("creating a token with %v: %v", policies, err)
	}
	want := append([]string(nil), policies...)
	if withDefault {
		want = append(want, "default")
	}
	got := append([]string(nil), tok.Auth.Policies...)
	sort.Strings(want)
	sort.Strings(got)
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("token policies %v, want exactly %v", got, want)
	}
	return tok.Auth.ClientToken
}

// bootstrapDo performs op (read, write, list, delete) on path.
func bootstrapDo(t *testing.T, c *api.Client, op, path string, data map[string]interface{}) (*api.Secret, error) {
	t.Helper()
	switch op {
	case "read":
		return c.Logical().Read(path)
	case "write":
		return c.Logical().Write(path, data)
	case "list":
		return c.Logical().List(path)
	case "delete":
		return c.Logical().Delete(path)
	}
	t.Fatalf("unknown op %q", op)
	return nil, nil
}

// bootstrapDenied asserts that op on path is a 403 permission denied.
func bootstrapDenied(t *testing.T, c *api.Client, who, op, path string, data map[string]interface{}) {
	t.Helper()
	sec, err := bootstrapDo(t, c, op, path, data)
	if responseStatus(err) != 403 || !strings.Contains(err.Error(), "permission denied") {
		t.Errorf("%s: %s %s = (%v, %v), want 403 permission denied", who, op, path, sec, err)
	}
}

// bootstrapAllowed asserts that op on path succeeds and returns the secret.
func bootstrapAllowed(t *testing.T, c *api.Client, who, op, path string, data map[string]interface{}) *api.Secret {
	t.Helper()
	sec, err := bootstrapDo(t, c, op, path, data)
	if err != nil {
		t.Fatalf("%s: %s %s: %v", who, op, path, err)
	}
	return sec
}

func bootstrapKeys(t *testing.T, sec *api.Secret) []string {
	t.Helper()
	if sec == nil || sec.Data == nil {
		t.Fatalf("list returned no data")
	}
	raw, ok := sec.Data["keys"].([]interface{})
	if !ok {
		t.Fatalf("list keys are %T, want a list", sec.Data["keys"])
	}
	out := make([]string, 0, len(raw))
	for _, k := range raw {
		out = append(out, str(k))
	}
	return out
}

func bootstrapHas(list []string, want string) bool {
	for _, x := range list {
		if x == want {
			return true
		}
	}
	return false
}

// bootstrapEnvMap returns a broker read's env map as strings.
func bootstrapEnvMap(t *testing.T, sec *api.Secret) map[string]string {
	t.Helper()
	m, ok := sec.Data["env"].(map[string]interface{})
	if !ok || len(m) == 0 {
		t.Fatalf("broker read: env is %T (%v), want a non-empty map", sec.Data["env"], sec.Data["env"])
	}
	out := make(map[string]string, len(m))
	for k, v := range m {
		s, ok := v.(string)
		if !ok {
			t.Fatalf("env[%s] is %T, want a string", k, v)
		}
		out[k] = s
	}
	return out
}

// TestBootstrapPolicies loads policies/snyk-operator.hcl as shipped and the
// broker-reader template rendered for payments/github into a real Vault and
// checks, against the real engine, what tokens carrying only one of them may
// and may not do. It uses a stack of its own: the operator rewrites
// snyk/config, deletes an integration and rotates payments/github.
func TestBootstrapPolicies(t *testing.T) {
	s := newTestStack(t)
	i := s.sim.info
	s.ensurePaymentsGitHub(t)
	s.ensureIntegration(t, "platform", "github", map[string]interface{}{
		"org_id":      i.Orgs["platform"],
		"scm_token":   i.GitHubToken,
		"scm_api_url": i.GitHubURL,
	})

	operatorHCL := bootstrapReadFile(t, filepath.Join(bootstrapDir(t), "policies", "snyk-operator.hcl"))
	if err := s.vault.client.Sys().PutPolicy("snyk-operator", operatorHCL); err != nil {
		t.Fatalf("loading policies/snyk-operator.hcl: %v", err)
	}
	readerHCL := bootstrapReaderPolicy(t, mountPath, "payments", "github")
	if !strings.Contains(readerHCL, `path "snyk/broker/payments/github"`) {
		t.Fatalf("rendered broker-reader policy does not name snyk/broker/payments/github:\n%s", readerHCL)
	}
	if err := s.vault.client.Sys().PutPolicy("snyk-broker-payments-github", readerHCL); err != nil {
		t.Fatalf("loading the rendered broker-reader policy: %v", err)
	}

	brokerPath := mountPath + "/broker/payments/github"
	otherBroker := mountPath + "/broker/platform/github"
	rotatePath := brokerPath + "/rotate"
	validate := map[string]interface{}{"scm": "github", "scm_token": i.GitHubToken, "scm_api_url": i.GitHubURL}

	t.Run("operator", func(t *testing.T) {
		op := s.vault.tokenClient(t, bootstrapToken(t, s, false, "snyk-operator"))
		const who = "snyk-operator token"

		// snyk/config: read, update, delete, create.
		cfg := bootstrapAllowed(t, op, who, "read", mountPath+"/config", nil)
		if cfg == nil || str(cfg.Data["auth_method"]) != "api_token" {
			t.Fatalf("%s: read snyk/config = %v, want auth_method api_token", who, cfg)
		}
		bootstrapAllowed(t, op, who, "write", mountPath+"/config", map[string]interface{}{"ttl": "30m"})
		if got := num(t, s.read(t, mountPath+"/config").Data["ttl"]); got != 1800 {
			t.Errorf("snyk/config ttl after the operator's update = %d, want 1800", got)
		}
		bootstrapAllowed(t, op, who, "delete", mountPath+"/config", nil)
		if sec, err := s.vault.client.Logical().Read(mountPath + "/config"); err != nil || sec != nil {
			t.Fatalf("snyk/config after the operator's delete = (%v, %v), want nothing", sec, err)
		}
		ca := bootstrapReadFile(t, i.CACertFile)
		bootstrapAllowed(t, op, who, "write", mountPath+"/config", map[string]interface{}{
			"api_token": i.APIToken, "api_url": i.SnykURL, "ca_cert": ca, "ttl": "1h",
		})
		cfg = bootstrapAllowed(t, op, who, "read", mountPath+"/config", nil)
		if cfg == nil || str(cfg.Data["auth_method"]) != "api_token" || num(t, cfg.Data["ttl"]) != 3600 {
			t.Fatalf("%s: snyk/config after re-creating it = %v, want auth_method api_token, ttl 3600", who, cfg)
		}

		// scm/validate: a dry run that really reaches the GitHub fake.
		v := bootstrapAllowed(t, op, who, "write", mountPath+"/scm/validate", validate)
		if v == nil || v.Data["valid"] != true {
			t.Errorf("%s: scm/validate = %v, want valid true", who, v)
		}

		// integrations: create, read, update, list, delete.
		orgID := newUUID(t)
		s.sim.addIntegration(t, orgID, "github", false)
		intPath := mountPath + "/integrations/bootstrap-ops/github"
		bootstrapAllowed(t, op, who, "write", intPath, map[string]interface{}{
			"org_id": orgID, "scm_token": i.GitHubToken, "scm_api_url": i.GitHubURL, "ttl": "10m",
		})
		in := bootstrapAllowed(t, op, who, "read", intPath, nil)
		if in == nil || str(in.Data["org_id"]) != orgID || str(in.Data["rotation_state"]) != "active" || num(t, in.Data["ttl"]) != 600 {
			t.Fatalf("%s: read %s = %v, want org_id %s, rotation_state active, ttl 600", who, intPath, in, orgID)
		}
		if in.Data["broker_token_fingerprint"] != fingerprintOf(s.sim.integration(t, orgID, "github").CurrentToken) {
			t.Errorf("%s: %s broker_token_fingerprint %v does not match the token Snyk issued", who, intPath, in.Data["broker_token_fingerprint"])
		}
		bootstrapAllowed(t, op, who, "write", intPath, map[string]interface{}{"ttl": "5m"})
		if got := num(t, s.read(t, intPath).Data["ttl"]); got != 300 {
			t.Errorf("%s ttl after the operator's update = %d, want 300", intPath, got)
		}
		top := bootstrapKeys(t, bootstrapAllowed(t, op, who, "list", mountPath+"/integrations", nil))
		for _, want := range []string{"bootstrap-ops/", "payments/", "platform/"} {
			if !bootstrapHas(top, want) {
				t.Errorf("%s: list snyk/integrations = %v, missing %s", who, top, want)
			}
		}
		if scms := bootstrapKeys(t, bootstrapAllowed(t, op, who, "list", mountPath+"/integrations/bootstrap-ops", nil)); !reflect.DeepEqual(scms, []string{"github"}) {
			t.Errorf("%s: list snyk/integrations/bootstrap-ops = %v, want [github]", who, scms)
		}
		bootstrapAllowed(t, op, who, "delete", intPath, nil)
		if sec, err := s.vault.client.Logical().Read(intPath); err != nil || sec != nil {
			t.Errorf("%s after the operator's delete = (%v, %v), want nothing", intPath, sec, err)
		}

		// rotate: Snyk's current token changes and the response reports it.
		old := s.sim.integration(t, i.Orgs["payments"], "github").CurrentToken
		r := bootstrapAllowed(t, op, who, "write", rotatePath, nil)
		cur := s.sim.integration(t, i.Orgs["payments"], "github").CurrentToken
		if cur == "" || cur == old {
			t.Errorf("%s: rotate did not change Snyk's current token (%q -> %q)", who, old, cur)
		}
		if r == nil || r.Data["broker_token_fingerprint"] != fingerprintOf(cur) {
			t.Errorf("%s: rotate response %v, want broker_token_fingerprint %s", who, r, fingerprintOf(cur))
		}

		// Operators manage tokens; they do not read them.
		bootstrapDenied(t, op, who, "read", brokerPath, nil)
		bootstrapDenied(t, op, who, "read", otherBroker, nil)
		bootstrapDenied(t, op, who, "read", "sys/mounts", nil)
		bootstrapDenied(t, op, who, "write", "sys/policies/acl/bootstrap-escalate", map[string]interface{}{"policy": `path "*" { capabilities = ["sudo"] }`})
	})

	t.Run("broker-reader", func(t *testing.T) {
		rd := s.vault.tokenClient(t, bootstrapToken(t, s, false, "snyk-broker-payments-github"))
		const who = "snyk-broker-payments-github token"

		sec := bootstrapAllowed(t, rd, who, "read", brokerPath, nil)
		if sec == nil {
			t.Fatalf("%s: read %s returned nothing", who, brokerPath)
		}
		cur := s.sim.integration(t, i.Orgs["payments"], "github").CurrentToken
		if got := str(sec.Data["broker_token"]); got == "" || got != cur {
			t.Errorf("%s: broker_token %q, want Snyk's current token %q", who, got, cur)
		}
		if em := bootstrapEnvMap(t, sec); em["BROKER_TOKEN"] != cur || em["GITHUB_TOKEN"] != i.GitHubToken {
			t.Errorf("%s: env BROKER_TOKEN %q GITHUB_TOKEN %q, want %q and %q", who, em["BROKER_TOKEN"], em["GITHUB_TOKEN"], cur, i.GitHubToken)
		}
		if sec.LeaseID == "" || sec.LeaseDuration <= 0 {
			t.Errorf("%s: broker read has no lease (id %q, duration %d)", who, sec.LeaseID, sec.LeaseDuration)
		}

		bootstrapDenied(t, rd, who, "read", otherBroker, nil)
		bootstrapDenied(t, rd, who, "read", mountPath+"/config", nil)
		bootstrapDenied(t, rd, who, "write", mountPath+"/config", map[string]interface{}{"ttl": "1m"})
		bootstrapDenied(t, rd, who, "read", mountPath+"/integrations/payments/github", nil)
		bootstrapDenied(t, rd, who, "write", mountPath+"/integrations/payments/github", map[string]interface{}{"ttl": "1m"})
		bootstrapDenied(t, rd, who, "write", rotatePath, nil)
		bootstrapDenied(t, rd, who, "list", mountPath+"/integrations", nil)
		bootstrapDenied(t, rd, who, "list", mountPath+"/integrations/payments", nil)
		bootstrapDenied(t, rd, who, "write", mountPath+"/scm/validate", validate)

		// The 403 on the other org is the policy's: root sees it.
		if root := s.read(t, otherBroker); str(root.Data["broker_token"]) == "" {
			t.Errorf("root read of %s has no broker_token", otherBroker)
		}
	})
}

// bootstrapBareStack starts a simulator and a fresh, initialized and
// unsealed Vault in which the plugin is neither registered nor mounted.
func bootstrapBareStack(t *testing.T) *stack {
	t.Helper()
	requireEnv(t)
	dir := t.TempDir()
	s := &stack{dir: dir}
	t.Cleanup(s.stop)
	s.dumpOnFailure(t)
	var err error
	if s.sim, err = startSim(dir); err != nil {
		t.Fatal(err)
	}
	if s.vault, err = newVaultServer(dir); err != nil {
		t.Fatal(err)
	}
	if err := s.vault.start(); err != nil {
		t.Fatal(err)
	}
	if err := s.vault.initialize(); err != nil {
		t.Fatal(err)
	}
	return s
}

// runConfigureScript runs `bash bootstrap/configure.sh <plugin>` with exactly
// the given environment and returns its combined output and exit code.
func runConfigureScript(t *testing.T, dir string, environ []string) (string, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", filepath.Join(bootstrapDir(t), "configure.sh"), env.pluginBin)
	cmd.Env = environ
	cmd.Dir = dir
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	code := exitCode(err)
	t.Logf("$ bash bootstrap/configure.sh %s (exit %d)\n%s", env.pluginBin, code, out.String())
	return out.String(), code
}

// TestBootstrapConfigureScript runs configure.sh against a fresh Vault (the
// plugin neither in the catalog nor in the plugin directory) with MOUNT=snyk2,
// checks everything it set up, then runs it again (the upgrade path).
func TestBootstrapConfigureScript(t *testing.T) {
	s := bootstrapBareStack(t)
	i := s.sim.info
	const mount = "snyk2"

	// The script installs the binary itself (PLUGIN_DIRECTORY).
	pluginDir := filepath.Join(s.dir, "plugins")
	installed := filepath.Join(pluginDir, pluginName)
	if err := os.Remove(installed); err != nil {
		t.Fatal(err)
	}
	wantSHA, err := sha256File(env.pluginBin)
	if err != nil {
		t.Fatal(err)
	}
	environ := append(baseEnv(s.dir),
		"VAULT_ADDR="+s.vault.addr,
		"VAULT_TOKEN="+s.vault.rootToken,
		"VAULT="+env.vaultBin,
		"PLUGIN_VERSION="+env.version,
		"PLUGIN_DIRECTORY="+pluginDir,
		"MOUNT="+mount,
		"SNYK_API_TOKEN="+i.APIToken,
		"SNYK_API_URL="+i.SnykURL,
		"SNYK_CA_CERT_FILE="+i.CACertFile,
		"SNYK_CONFIG_ARGS=ttl=20m",
		"BROKER_READERS=payments/github",
	)
	noSecrets := func(run, out string) {
		t.Helper()
		for name, secret := range map[string]string{"the Snyk API token": i.APIToken, "the Vault token": s.vault.rootToken} {
			if strings.Contains(out, secret) {
				t.Errorf("%s run of configure.sh printed %s", run, name)
			}
		}
	}
	checkConfig := func(run string) {
		t.Helper()
		cfg := s.read(t, mount+"/config")
		if got := num(t, cfg.Data["ttl"]); got != 1200 {
			t.Errorf("after the %s run: %s/config ttl = %d, want 1200 (SNYK_CONFIG_ARGS=ttl=20m)", run, mount, got)
		}
		if got := str(cfg.Data["auth_method"]); got != "api_token" {
			t.Errorf("after the %s run: %s/config auth_method = %q, want api_token", run, mount, got)
		}
		for _, secret := range []string{"api_token", "client_secret"} {
			if _, ok := cfg.Data[secret]; ok {
				t.Errorf("after the %s run: %s/config read returns %s", run, mount, secret)
			}
		}
		if got := str(cfg.Data["api_url"]); got != i.SnykURL {
			t.Errorf("after the %s run: %s/config api_url = %q, want %q", run, mount, got, i.SnykURL)
		}
		if got, want := strings.TrimSpace(str(cfg.Data["ca_cert"])), strings.TrimSpace(bootstrapReadFile(t, i.CACertFile)); got != want {
			t.Errorf("after the %s run: %s/config ca_cert is not the content of SNYK_CA_CERT_FILE", run, mount)
		}
	}
	checkMount := func(run string) {
		t.Helper()
		mounts, err := s.vault.client.Sys().ListMounts()
		if err != nil {
			t.Fatal(err)
		}
		m, ok := mounts[mount+"/"]
		if !ok {
			t.Fatalf("after the %s run: sys/mounts has no %s/ (mounts: %v)", run, mount, bootstrapMountNames(mounts))
		}
		if m.Type != pluginName || m.RunningVersion != env.version || m.PluginVersion != env.version {
			t.Errorf("after the %s run: %s/ type %q plugin_version %q running_plugin_version %q, want %s pinned to and running %s",
				run, mount, m.Type, m.PluginVersion, m.RunningVersion, pluginName, env.version)
		}
		if _, ok := mounts[mountPath+"/"]; ok {
			t.Errorf("after the %s run: the engine is also mounted at %s/ although MOUNT=%s", run, mountPath, mount)
		}
	}

	out, code := runConfigureScript(t, s.dir, environ)
	if code != 0 {
		t.Fatalf("configure.sh exited %d:\n%s", code, out)
	}
	noSecrets("first", out)
	if !strings.Contains(out, "enabling "+pluginName+" at "+mount+"/") {
		t.Errorf("first run did not take the enable path:\n%s", out)
	}

	// The binary was installed, executable, and registered by its sha256.
	if fi, err := os.Stat(installed); err != nil {
		t.Errorf("PLUGIN_DIRECTORY: %v", err)
	} else if fi.Mode().Perm() != 0o755 {
		t.Errorf("installed plugin mode %v, want 0755", fi.Mode().Perm())
	}
	if got, err := sha256File(installed); err != nil || got != wantSHA {
		t.Errorf("installed plugin sha256 %s (%v), want %s", got, err, wantSHA)
	}
	reg, err := s.vault.client.Sys().GetPlugin(&api.GetPluginInput{Name: pluginName, Type: api.PluginTypeSecrets, Version: env.version})
	if err != nil {
		t.Fatalf("catalog entry %s %s: %v", pluginName, env.version, err)
	}
	if reg.SHA256 != wantSHA || reg.Version != env.version || reg.Command != pluginName {
		t.Errorf("catalog entry %+v, want command %s, sha256 %s, version %s", reg, pluginName, wantSHA, env.version)
	}

	checkMount("first")
	checkConfig("first")

	// The policies, rewritten for the mount.
	operator, err := s.vault.client.Sys().GetPolicy("snyk-operator")
	if err != nil || operator == "" {
		t.Fatalf("policy snyk-operator: %q, %v", operator, err)
	}
	if !strings.Contains(operator, `path "`+mount+`/config"`) || !strings.Contains(operator, `path "`+mount+`/broker/+/+/rotate"`) {
		t.Errorf("snyk-operator does not name %s/ paths:\n%s", mount, operator)
	}
	if strings.Contains(operator, `"snyk/`) {
		t.Errorf("snyk-operator still names snyk/ paths with MOUNT=%s:\n%s", mount, operator)
	}
	reader, err := s.vault.client.Sys().GetPolicy("snyk-broker-payments-github")
	if err != nil || reader == "" {
		t.Fatalf("policy snyk-broker-payments-github: %q, %v", reader, err)
	}
	if !strings.Contains(reader, `path "`+mount+`/broker/payments/github"`) || strings.Contains(reader, "__") {
		t.Errorf("snyk-broker-payments-github does not name %s/broker/payments/github:\n%s", mount, reader)
	}

	// The policies work on the new mount: the operator creates nothing here
	// but reads the config; the reader reads the broker secret.
	s.sim.addIntegration(t, i.Orgs["payments"], "github", false)
	s.write(t, mount+"/integrations/payments/github", map[string]interface{}{
		"org_id": i.Orgs["payments"], "scm_token": i.GitHubToken, "scm_api_url": i.GitHubURL,
	})
	op := s.vault.tokenClient(t, bootstrapToken(t, s, false, "snyk-operator"))
	if cfg := bootstrapAllowed(t, op, "snyk-operator token", "read", mount+"/config", nil); cfg == nil || num(t, cfg.Data["ttl"]) != 1200 {
		t.Errorf("snyk-operator token reading %s/config: %v", mount, cfg)
	}
	bootstrapDenied(t, op, "snyk-operator token", "read", mount+"/broker/payments/github", nil)
	rd := s.vault.tokenClient(t, bootstrapToken(t, s, false, "snyk-broker-payments-github"))
	want := s.sim.integration(t, i.Orgs["payments"], "github").CurrentToken
	if sec := bootstrapAllowed(t, rd, "snyk-broker-payments-github token", "read", mount+"/broker/payments/github", nil); sec == nil || str(sec.Data["broker_token"]) != want {
		t.Errorf("reader token reading %s/broker/payments/github: %v, want broker_token %q", mount, sec, want)
	}
	bootstrapDenied(t, rd, "snyk-broker-payments-github token", "read", mount+"/config", nil)

	// Second run: already mounted, so tune + reload.
	out, code = runConfigureScript(t, s.dir, environ)
	if code != 0 {
		t.Fatalf("second run of configure.sh exited %d:\n%s", code, out)
	}
	noSecrets("second", out)
	if !strings.Contains(out, "upgrading "+mount+"/ to "+env.version) {
		t.Errorf("second run did not take the upgrade path:\n%s", out)
	}
	checkMount("second")
	checkConfig("second")
	if sec, err := rd.Logical().Read(mount + "/broker/payments/github"); err != nil || sec == nil || str(sec.Data["broker_token"]) != want {
		t.Errorf("after the second run: reader token reading %s/broker/payments/github = (%v, %v), want broker_token %q", mount, sec, err, want)
	}
}

func bootstrapMountNames(m map[string]*api.MountOutput) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// bootstrapAgentAuth writes a token file holding token and an Agent config
// with this Vault's address and the token_file auto-auth method, in dir.
func bootstrapAgentAuth(t *testing.T, s *stack, dir, token string) string {
	t.Helper()
	tokenFile := filepath.Join(dir, "token")
	if err := os.WriteFile(tokenFile, []byte(token+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	auth := filepath.Join(dir, "auth.hcl")
	hcl := fmt.Sprintf(`vault {
  address = %q
}
auto_auth {
  method "token_file" {
    config {
      token_file_path = %q
    }
  }
}
`, s.vault.addr, tokenFile)
	if err := os.WriteFile(auth, []byte(hcl), 0o600); err != nil {
		t.Fatal(err)
	}
	return auth
}

// bootstrapStartAgent runs `vault agent -config=… -config=…` in wd with
// exactly environ; it is stopped in cleanup, and its log is printed when the
// test fails.
func bootstrapStartAgent(t *testing.T, logDir, wd string, environ []string, configs ...string) *proc {
	t.Helper()
	args := []string{"agent"}
	for _, c := range configs {
		args = append(args, "-config="+c)
	}
	args = append(args, "-log-level=debug")
	logPath := filepath.Join(logDir, "agent.log")
	p, err := startProc("vault agent", logPath, environ, wd, syscall.SIGTERM, env.vaultBin, args...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.stop(10 * time.Second) })
	t.Cleanup(func() {
		if t.Failed() {
			logTail(t, "Vault Agent log", logPath, 60)
		}
	})
	return p
}

// bootstrapWaitFile waits until path exists with content, failing the test
// if the Agent exits first.
func bootstrapWaitFile(t *testing.T, p *proc, path string) string {
	t.Helper()
	var content string
	err := waitFor(30*time.Second, 100*time.Millisecond, func() (bool, error) {
		if p.exited() {
			return false, fmt.Errorf("vault agent exited: %v", p.waitErr)
		}
		raw, err := os.ReadFile(path)
		if err != nil {
			return false, err
		}
		content = string(raw)
		return strings.TrimSpace(content) != "", errors.New("empty file")
	})
	if err != nil {
		t.Fatalf("waiting for %s: %v", path, err)
	}
	return content
}

var bootstrapEnvLine = regexp.MustCompile(`^([A-Z_][A-Z0-9_]*)=(.*)$`)

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

// bootstrapDotenvCheck parses an env file with the Broker's own dotenv
// module (scripts/broker, installed by `make broker`) when node and it are
// available, and compares the result with want.
func bootstrapDotenvCheck(t *testing.T, path string, want map[string]string) {
	t.Helper()
	dotenvDir, err := filepath.Abs(filepath.Join("..", "scripts", "broker", "node_modules", "dotenv"))
	if err != nil {
		t.Fatal(err)
	}
	node, err := exec.LookPath("node")
	if _, serr := os.Stat(dotenvDir); err != nil || serr != nil {
		t.Logf("node or the Broker's dotenv module is not installed: .env not parsed by dotenv")
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, "-e",
		`process.stdout.write(JSON.stringify(require(process.argv[1]).parse(require("fs").readFileSync(process.argv[2]))))`,
		dotenvDir, path)
	cmd.Env = []string{"PATH=" + filepath.Dir(node) + ":/usr/bin:/bin"}
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("dotenv.parse(%s): %v", path, err)
	}
	var got map[string]string
	if err := json.Unmarshal(out, &got); err != nil {
		t.Fatalf("dotenv.parse output %q: %v", out, err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("the Broker's dotenv reads .env as %v\nwant the engine's env map %v", got, want)
	}
}

// Kubernetes manifests: only the fields the checks below read.
type k8sEnvVar struct {
	Name  string `yaml:"name"`
	Value string `yaml:"value"`
}

type k8sContainer struct {
	Name            string   `yaml:"name"`
	Image           string   `yaml:"image"`
	Command         []string `yaml:"command"`
	WorkingDir      string   `yaml:"workingDir"`
	SecurityContext struct {
		RunAsUser int64 `yaml:"runAsUser"`
	} `yaml:"securityContext"`
	Env          []k8sEnvVar `yaml:"env"`
	VolumeMounts []struct {
		Name      string `yaml:"name"`
		MountPath string `yaml:"mountPath"`
	} `yaml:"volumeMounts"`
	Ports []struct {
		Name          string `yaml:"name"`
		ContainerPort int    `yaml:"containerPort"`
	} `yaml:"ports"`
}

type k8sMeta struct {
	Name        string            `yaml:"name"`
	Namespace   string            `yaml:"namespace"`
	Labels      map[string]string `yaml:"labels"`
	Annotations map[string]string `yaml:"annotations"`
}

type k8sDoc struct {
	APIVersion string            `yaml:"apiVersion"`
	Kind       string            `yaml:"kind"`
	Metadata   k8sMeta           `yaml:"metadata"`
	Data       map[string]string `yaml:"data"`
	Spec       struct {
		Selector map[string]interface{} `yaml:"selector"`
		Ports    []struct {
			TargetPort string `yaml:"targetPort"`
		} `yaml:"ports"`
		Template struct {
			Metadata k8sMeta `yaml:"metadata"`
			Spec     struct {
				ServiceAccountName    string         `yaml:"serviceAccountName"`
				ShareProcessNamespace bool           `yaml:"shareProcessNamespace"`
				Containers            []k8sContainer `yaml:"containers"`
				Volumes               []struct {
					Name      string `yaml:"name"`
					ConfigMap struct {
						Name string `yaml:"name"`
					} `yaml:"configMap"`
				} `yaml:"volumes"`
			} `yaml:"spec"`
		} `yaml:"template"`
	} `yaml:"spec"`
}

// parseK8sFile decodes every YAML document of a file.
func parseK8sFile(t *testing.T, path string) []k8sDoc {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	dec := yaml.NewDecoder(f)
	var docs []k8sDoc
	for n := 1; ; n++ {
		var node yaml.Node
		err := dec.Decode(&node)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("%s: document %d does not parse: %v", filepath.Base(path), n, err)
		}
		var d k8sDoc
		if err := node.Decode(&d); err != nil {
			t.Fatalf("%s: document %d: %v", filepath.Base(path), n, err)
		}
		if d.APIVersion == "" || d.Kind == "" || d.Metadata.Name == "" || d.Metadata.Namespace == "" {
			t.Errorf("%s: document %d lacks apiVersion, kind, metadata.name or metadata.namespace: %+v", filepath.Base(path), n, d)
		}
		docs = append(docs, d)
	}
	if len(docs) == 0 {
		t.Fatalf("%s: no YAML documents", filepath.Base(path))
	}
	return docs
}

func k8sEnvValue(c k8sContainer, name string) (string, bool) {
	for _, e := range c.Env {
		if e.Name == name {
			return e.Value, true
		}
	}
	return "", false
}

// bootstrapSplitBrokerPath splits "<mount>/broker/<org>/<scm>" and checks
// that the real engine serves it.
func bootstrapSplitBrokerPath(t *testing.T, s *stack, path string) (org, scm string) {
	t.Helper()
	parts := strings.Split(path, "/")
	if len(parts) != 4 || parts[0] != mountPath || parts[1] != "broker" {
		t.Fatalf("%q is not an engine broker path %s/broker/<org>/<scm>", path, mountPath)
	}
	sec, err := s.vault.client.Logical().Read(path)
	if err != nil || sec == nil || str(sec.Data["broker_token"]) == "" {
		t.Fatalf("the engine does not serve %s: (%v, %v)", path, sec, err)
	}
	return parts[2], parts[3]
}

// TestBootstrapKubernetesManifests parses every YAML document in
// bootstrap/kubernetes/ and checks the examples against the engine: the
// injector annotations name a path the engine serves, their template renders
// (with a real Agent) a file the container's command sources into the
// engine's env map, the role follows the policy naming of configure.sh, and
// the overlap pair differs only in SNYK_BROKER_ROLE.
func TestBootstrapKubernetesManifests(t *testing.T) {
	s := sharedStack(t)
	s.ensurePaymentsGitHub(t)
	root := bootstrapDir(t)
	files, err := filepath.Glob(filepath.Join(root, "kubernetes", "*.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	byFile := map[string][]k8sDoc{}
	for _, f := range files {
		byFile[filepath.Base(f)] = parseK8sFile(t, f)
	}
	for _, want := range []string{"broker-deployment.yaml", "broker-overlap.yaml"} {
		if _, ok := byFile[want]; !ok {
			t.Fatalf("bootstrap/kubernetes/%s is missing (found %v)", want, files)
		}
	}

	const secretPrefix = "vault.hashicorp.com/agent-inject-secret-"
	injected := 0
	for file, docs := range byFile {
		sas := map[string]bool{}
		for _, d := range docs {
			if d.Kind == "ServiceAccount" {
				sas[d.Metadata.Namespace+"/"+d.Metadata.Name] = true
			}
		}
		for _, d := range docs {
			if d.Kind != "Deployment" {
				continue
			}
			ann := d.Spec.Template.Metadata.Annotations
			for key, path := range ann {
				if !strings.HasPrefix(key, secretPrefix) {
					continue
				}
				injected++
				name := strings.TrimPrefix(key, secretPrefix)
				where := fmt.Sprintf("%s: Deployment %s: %s", file, d.Metadata.Name, key)
				org, scm := bootstrapSplitBrokerPath(t, s, path)
				if ann["vault.hashicorp.com/agent-inject"] != "true" {
					t.Errorf("%s: agent-inject is %q, want \"true\"", where, ann["vault.hashicorp.com/agent-inject"])
				}
				role := ann["vault.hashicorp.com/role"]
				if want := "snyk-broker-" + org + "-" + scm; role != want {
					t.Errorf("%s: role %q, want %q (configure.sh's policy name for %s/%s)", where, role, want, org, scm)
				}
				if sa := d.Spec.Template.Spec.ServiceAccountName; sa != role || !sas[d.Metadata.Namespace+"/"+sa] {
					t.Errorf("%s: serviceAccountName %q, want the role's name %q, declared in the file", where, sa, role)
				}
				tmpl, ok := ann["vault.hashicorp.com/agent-inject-template-"+name]
				if !ok {
					t.Fatalf("%s: no agent-inject-template-%s", where, name)
				}
				if !strings.Contains(tmpl, `secret "`+path+`"`) || !strings.Contains(tmpl, ".Data.env") {
					t.Errorf("%s: the template does not read .Data.env of secret %q:\n%s", where, path, tmpl)
				}
				// The Broker reads .env from its working directory: the
				// injected file must be that .env, in the container's cwd.
				fileName := ann["vault.hashicorp.com/agent-inject-file-"+name]
				if fileName == "" {
					fileName = name
				}
				var broker *k8sContainer
				for i, c := range d.Spec.Template.Spec.Containers {
					if filepath.Clean(c.WorkingDir) == "/vault/secrets" {
						broker = &d.Spec.Template.Spec.Containers[i]
					}
				}
				if fileName != ".env" || broker == nil {
					t.Fatalf("%s: the injected file is %q and no container works in /vault/secrets; the Broker only reads .env from its working directory", where, fileName)
				}
				// A 0400 file is readable by the Broker, and the hook may
				// signal it, only if the Agent runs as the Broker's user.
				if ann["vault.hashicorp.com/agent-run-as-same-user"] != "true" || broker.SecurityContext.RunAsUser == 0 {
					t.Errorf("%s: agent-run-as-same-user=%q, container runAsUser=%d: the Agent must run as the Broker's (non-root) user", where, ann["vault.hashicorp.com/agent-run-as-same-user"], broker.SecurityContext.RunAsUser)
				}
				if hook := ann["vault.hashicorp.com/agent-inject-command-"+name]; !strings.Contains(hook, "pkill") || !strings.Contains(hook, "-x node") {
					t.Errorf("%s: the render command %q does not stop the Broker's node process by exact name", where, hook)
				}
				if !d.Spec.Template.Spec.ShareProcessNamespace {
					t.Errorf("%s: shareProcessNamespace is off: the Agent sidecar cannot signal the Broker", where)
				}
				perms := ann["vault.hashicorp.com/agent-inject-perms-"+name]
				bootstrapRenderInjected(t, s, role, org, scm, path, tmpl, perms, fileName)
			}
			// A Service of the file selects this Deployment's pods on a
			// named port of its containers.
			for _, svc := range docs {
				if svc.Kind != "Service" {
					continue
				}
				for k, v := range svc.Spec.Selector {
					if d.Spec.Template.Metadata.Labels[k] != str(v) {
						t.Errorf("%s: Service %s selects %s=%v, not a label of Deployment %s's pods", file, svc.Metadata.Name, k, v, d.Metadata.Name)
					}
				}
				for _, p := range svc.Spec.Ports {
					found := false
					for _, c := range d.Spec.Template.Spec.Containers {
						for _, cp := range c.Ports {
							found = found || cp.Name == p.TargetPort
						}
					}
					if !found {
						t.Errorf("%s: Service %s targets port %q, which Deployment %s's containers do not name", file, svc.Metadata.Name, p.TargetPort, d.Metadata.Name)
					}
				}
			}
		}
	}
	if injected == 0 {
		t.Errorf("no Deployment carries a %s* annotation", secretPrefix)
	}

	t.Run("broker-overlap", func(t *testing.T) {
		docs := byFile["broker-overlap.yaml"]
		var deps []k8sDoc
		for _, d := range docs {
			if d.Kind == "Deployment" {
				deps = append(deps, d)
			}
		}
		// The ConfigMap is made from the repository's files, as the
		// manifest's header says; both must exist.
		header := bootstrapReadFile(t, filepath.Join(root, "kubernetes", "broker-overlap.yaml"))
		for _, f := range []string{"bootstrap/agent/broker-client-github.hcl", "bootstrap/kubernetes/agent-auth.hcl"} {
			if !strings.Contains(header, "--from-file="+f) {
				t.Errorf("broker-overlap.yaml does not say to build the ConfigMap --from-file=%s", f)
			}
			if _, err := os.Stat(filepath.Join(filepath.Dir(root), f)); err != nil {
				t.Errorf("%s: %v", f, err)
			}
		}
		if len(deps) != 2 {
			t.Fatalf("broker-overlap.yaml has %d Deployments, want 2", len(deps))
		}
		clientHCL := bootstrapReadFile(t, filepath.Join(root, "agent", "broker-client-github.hcl"))
		roles := map[string]bool{}
		var secrets []string
		var stripped [2]k8sContainer
		for n, d := range deps {
			cs := d.Spec.Template.Spec.Containers
			if len(cs) != 1 {
				t.Fatalf("Deployment %s has %d containers, want 1", d.Metadata.Name, len(cs))
			}
			c := cs[0]
			role, ok := k8sEnvValue(c, "SNYK_BROKER_ROLE")
			if !ok {
				t.Errorf("Deployment %s sets no SNYK_BROKER_ROLE", d.Metadata.Name)
			}
			roles[role] = true
			secret, ok := k8sEnvValue(c, "SNYK_BROKER_SECRET")
			if !ok {
				t.Fatalf("Deployment %s sets no SNYK_BROKER_SECRET", d.Metadata.Name)
			}
			secrets = append(secrets, secret)
			org, scm := bootstrapSplitBrokerPath(t, s, secret)
			if sa, want := d.Spec.Template.Spec.ServiceAccountName, "snyk-broker-"+org+"-"+scm; sa != want {
				t.Errorf("Deployment %s: serviceAccountName %q, want %q", d.Metadata.Name, sa, want)
			}
			// Every SNYK_* variable it sets is one the Agent config reads.
			for _, e := range c.Env {
				if strings.HasPrefix(e.Name, "SNYK_") && !strings.Contains(clientHCL, `env \"`+e.Name+`\"`) {
					t.Errorf("Deployment %s sets %s, which broker-client-github.hcl does not read", d.Metadata.Name, e.Name)
				}
			}
			// The command runs Agent with the bootstrap exec config and the
			// ConfigMap's auth file, both from the mounted config directory.
			var configs []string
			for _, a := range c.Command {
				if strings.HasPrefix(a, "-config=") {
					configs = append(configs, strings.TrimPrefix(a, "-config="))
				}
			}
			if len(c.Command) < 2 || c.Command[0] != "vault" || c.Command[1] != "agent" {
				t.Errorf("Deployment %s: command %v, want vault agent …", d.Metadata.Name, c.Command)
			}
			var haveClient, haveAuth bool
			for _, cfg := range configs {
				base := filepath.Base(cfg)
				haveClient = haveClient || base == "broker-client-github.hcl"
				if base == "agent-auth.hcl" {
					haveAuth = true
					bootstrapMountsConfigMap(t, d, c, filepath.Dir(cfg), "snyk-broker-agent")
					auth := bootstrapReadFile(t, filepath.Join(root, "kubernetes", base))
					if !strings.Contains(auth, `role = "snyk-broker-`+org+`-`+scm+`"`) {
						t.Errorf("bootstrap/kubernetes/agent-auth.hcl does not log in with role snyk-broker-%s-%s:\n%s", org, scm, auth)
					}
				}
			}
			if !haveClient || !haveAuth {
				t.Errorf("Deployment %s: command %v, want -config=…/broker-client-github.hcl and -config=…/agent-auth.hcl", d.Metadata.Name, c.Command)
			}
			stripped[n] = c
			stripped[n].Env = nil
			for _, e := range c.Env {
				if e.Name != "SNYK_BROKER_ROLE" {
					stripped[n].Env = append(stripped[n].Env, e)
				}
			}
		}
		if !roles["current"] || !roles["next"] {
			t.Errorf("SNYK_BROKER_ROLE values %v, want one current and one next", roles)
		}
		if secrets[0] != secrets[1] {
			t.Errorf("the two Deployments read different secrets %q and %q", secrets[0], secrets[1])
		}
		if !reflect.DeepEqual(stripped[0], stripped[1]) {
			t.Errorf("the two Deployments' containers differ in more than SNYK_BROKER_ROLE:\n%+v\n%+v", stripped[0], stripped[1])
		}
		if deps[0].Spec.Template.Metadata.Labels["app.kubernetes.io/instance"] != deps[1].Spec.Template.Metadata.Labels["app.kubernetes.io/instance"] {
			t.Errorf("the two Deployments are not the same instance: %v vs %v", deps[0].Spec.Template.Metadata.Labels, deps[1].Spec.Template.Metadata.Labels)
		}
	})
}

// bootstrapMountsConfigMap checks that container c mounts ConfigMap name at dir.
func bootstrapMountsConfigMap(t *testing.T, d k8sDoc, c k8sContainer, dir, name string) {
	t.Helper()
	for _, vm := range c.VolumeMounts {
		if filepath.Clean(vm.MountPath) != filepath.Clean(dir) {
			continue
		}
		for _, v := range d.Spec.Template.Spec.Volumes {
			if v.Name == vm.Name && v.ConfigMap.Name == name {
				return
			}
		}
	}
	t.Errorf("Deployment %s does not mount ConfigMap %s at %s", d.Metadata.Name, name, dir)
}

// bootstrapRenderInjected renders an injector template annotation as the
// injected Agent would (a real Agent, a token of the role's policy) into a
// file named fileName, and checks that the Broker's dotenv reads the engine's
// env map from it.
func bootstrapRenderInjected(t *testing.T, s *stack, role, org, scm, path, tmpl, perms, fileName string) {
	t.Helper()
	if err := s.vault.client.Sys().PutPolicy(role, bootstrapReaderPolicy(t, mountPath, org, scm)); err != nil {
		t.Fatal(err)
	}
	token := bootstrapToken(t, s, true, role)
	dir := t.TempDir()
	secrets := filepath.Join(dir, "secrets")
	if err := os.Mkdir(secrets, 0o700); err != nil {
		t.Fatal(err)
	}
	dest := filepath.Join(secrets, fileName)
	if strings.Contains(tmpl, "\nEOT") {
		t.Fatalf("the template contains a line EOT; pick another heredoc marker")
	}
	permsLine := ""
	if perms != "" {
		permsLine = fmt.Sprintf("  perms       = %q\n", perms)
	}
	cfg := filepath.Join(dir, "inject.hcl")
	hcl := fmt.Sprintf("template_config {\n  exit_on_retry_failure = true\n}\ntemplate {\n  destination = %q\n%s  contents    = <<EOT\n%s\nEOT\n}\n", dest, permsLine, strings.TrimRight(tmpl, "\n"))
	if err := os.WriteFile(cfg, []byte(hcl), 0o600); err != nil {
		t.Fatal(err)
	}
	auth := bootstrapAgentAuth(t, s, dir, token)
	p := bootstrapStartAgent(t, dir, dir, baseEnv(dir), cfg, auth)
	content := bootstrapWaitFile(t, p, dest)
	if perms != "" {
		fi, err := os.Stat(dest)
		if err != nil {
			t.Fatal(err)
		}
		if got := fmt.Sprintf("%04o", fi.Mode().Perm()); got != perms {
			t.Errorf("rendered %s mode %s, want %s", fileName, got, perms)
		}
	}
	want := bootstrapEnvMap(t, s.read(t, path))
	for _, line := range strings.Split(content, "\n") {
		if line != "" && !bootstrapEnvLine.MatchString(line) {
			t.Errorf("rendered line %q is not KEY=VALUE", line)
		}
	}
	bootstrapDotenvCheck(t, dest, want)
}

// TestBootstrapAgentExecConfigsEverySCM runs every bootstrap/agent/
// broker-client-<scm>.hcl with a real Vault Agent and a stand-in `broker`
// that records how it was started, for a real integration of that SCM: the
// client must get `broker client` and every variable of the engine's env map
// for it, with the engine's values (BROKER_CLIENT_URL excepted: it is the
// client's own address, passed through Agent's environment).
func TestBootstrapAgentExecConfigsEverySCM(t *testing.T) {
	s := sharedStack(t)
	agentDir := filepath.Join(bootstrapDir(t), "agent")
	cases := map[string]scmCase{}
	for _, tc := range scmCases(t, s) {
		if _, ok := cases[tc.scm]; !ok || tc.name == "scm-bitbucket-token" {
			cases[tc.scm] = tc
		}
	}
	configs, err := filepath.Glob(filepath.Join(agentDir, "broker-client-*.hcl"))
	if err != nil || len(configs) < 4 {
		t.Fatalf("exec-mode Agent configs: %v %v", configs, err)
	}
	for _, cfg := range configs {
		kind := strings.TrimSuffix(strings.TrimPrefix(filepath.Base(cfg), "broker-client-"), ".hcl")
		tc, ok := cases[kind]
		if !ok {
			t.Errorf("%s: no SCM named %q", cfg, kind)
			continue
		}
		t.Run(kind, func(t *testing.T) {
			name := "bootstrap-exec-" + strings.ReplaceAll(kind, "-", "")
			orgID := newUUID(t)
			s.sim.addOrg(t, orgID, "e2e "+name)
			data := map[string]interface{}{"org_id": orgID}
			for k, v := range tc.data {
				data[k] = v
			}
			s.ensureIntegration(t, name, kind, data)
			secretPath := mountPath + "/broker/" + name + "/" + kind
			policy := "bootstrap-exec-" + name
			if err := s.vault.client.Sys().PutPolicy(policy, bootstrapReaderPolicy(t, mountPath, name, kind)); err != nil {
				t.Fatal(err)
			}
			token := bootstrapToken(t, s, true, policy)

			got := bootstrapRunStubBroker(t, s, token, cfg, "SNYK_BROKER_SECRET="+secretPath)
			if got["ARGS"] != "client" {
				t.Errorf("broker started with arguments %q, want client", got["ARGS"])
			}
			want := bootstrapEnvMap(t, s.read(t, secretPath))
			delete(want, "BROKER_CLIENT_URL")
			if len(want) < 4 {
				t.Fatalf("env map %v too small", keysOf(want))
			}
			for k, v := range want {
				if got[k] != v {
					t.Errorf("broker client started with %s=%q, want the engine's %q", k, got[k], v)
				}
			}
		})
	}
}

// bootstrapRunStubBroker runs Vault Agent with an exec-mode config and a
// stand-in `broker` on PATH that records its arguments (ARGS) and
// environment, and returns what it recorded. extraEnv is Agent's environment
// beyond PATH and HOME.
func bootstrapRunStubBroker(t *testing.T, s *stack, token, config string, extraEnv ...string) map[string]string {
	t.Helper()
	dir := t.TempDir()
	wd, bin := filepath.Join(dir, "broker"), filepath.Join(dir, "bin")
	for _, d := range []string{wd, bin} {
		if err := os.Mkdir(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	out := filepath.Join(dir, "broker-env")
	stub := "#!/bin/sh\n{ echo \"ARGS=$*\"; env; } > \"$BOOTSTRAP_OUT.tmp\" && mv \"$BOOTSTRAP_OUT.tmp\" \"$BOOTSTRAP_OUT\"\nexec sleep 300\n"
	if err := os.WriteFile(filepath.Join(bin, "broker"), []byte(stub), 0o755); err != nil {
		t.Fatal(err)
	}
	environ := append([]string{
		"PATH=" + bin + ":/usr/local/bin:/usr/bin:/bin", "HOME=" + dir, "BOOTSTRAP_OUT=" + out,
	}, extraEnv...)
	p := bootstrapStartAgent(t, dir, wd, environ, config, bootstrapAgentAuth(t, s, dir, token))
	got := map[string]string{}
	for _, line := range strings.Split(bootstrapWaitFile(t, p, out), "\n") {
		if k, v, ok := strings.Cut(line, "="); ok {
			got[k] = v
		}
	}
	return got
}
