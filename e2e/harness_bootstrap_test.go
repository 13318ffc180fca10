package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
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
		if data == nil {
			return c.Logical().Delete(path)
		}
		query := map[string][]string{}
		for k, v := range data {
			query[k] = []string{fmt.Sprint(v)}
		}
		return c.Logical().DeleteWithData(path, query)
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
	if err := os.WriteFile(auth, []byte(tokenFileAuthHCL(s.vault.addr, tokenFile)), 0o600); err != nil {
		t.Fatal(err)
	}
	return auth
}

// tokenFileAuthHCL is the Agent config naming a Vault address and logging
// in with the token in tokenFile.
func tokenFileAuthHCL(addr, tokenFile string) string {
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
`, addr, tokenFile)
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
			return false, fmt.Errorf("vault agent exited: %w", p.waitErr)
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
