// Package e2e tests the Snyk secrets engine end to end: the real plugin
// binary, registered by sha256 and version in a real (non-dev) Vault server,
// driven through the Vault API, the vault CLI and Vault Agent, against the
// snyk-sim simulator (fake Snyk API and fake SCMs over TLS).
//
// Run it with
//
//	make e2e
//
// which builds bin/vault-plugin-secrets-snyk, bin/snyk-sim and bin/vault and
// runs `go test ./e2e/...` with VAULT_BINARY, PLUGIN_BINARY, SIM_BINARY (absolute
// paths) and PLUGIN_VERSION set. Without those variables every test is skipped.
// The equivalent by hand:
//
//	VAULT_BINARY=$PWD/bin/vault PLUGIN_BINARY=$PWD/bin/vault-plugin-secrets-snyk \
//	SIM_BINARY=$PWD/bin/snyk-sim PLUGIN_VERSION=v0.1.0 go test -count=1 -v ./e2e/...
//
// What a stack is: `snyk-sim -dir <tmp>` (waited for through its sim.json),
// then `vault server -config=<tmp>/vault.hcl` with `storage "file"`, a
// plugin_directory holding a copy of the plugin binary, a listener on a free
// 127.0.0.1 port without TLS and disable_mlock; then `operator init` with one
// key share, unseal, the plugin registered in the catalog
// (sys/plugins/catalog/secret/vault-plugin-secrets-snyk, sha256 + version),
// enabled at snyk/ pinned to that version, and snyk/config written against
// the simulator. Most tests share one stack, started on first use; the tests
// that restart Vault or run Vault Agent start their own. Every process is
// started in its own process group and stopped by PID (SIGTERM, then SIGKILL)
// in cleanup, also when a test fails; a failing test prints the tail of the
// Vault server log (which carries the plugin's log lines), the simulator log
// and, where relevant, the Agent log.
package e2e

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/vault/api"
)

const (
	pluginName = "vault-plugin-secrets-snyk"
	mountPath  = "snyk"
)

// env is the test environment handed in by `make e2e`.
var env struct {
	vaultBin, pluginBin, simBin, version string
	skipReason                           string
}

func TestMain(m *testing.M) {
	env.vaultBin = os.Getenv("VAULT_BINARY")
	env.pluginBin = os.Getenv("PLUGIN_BINARY")
	env.simBin = os.Getenv("SIM_BINARY")
	env.version = os.Getenv("PLUGIN_VERSION")
	var missing []string
	for _, kv := range [][2]string{{"VAULT_BINARY", env.vaultBin}, {"PLUGIN_BINARY", env.pluginBin}, {"SIM_BINARY", env.simBin}, {"PLUGIN_VERSION", env.version}} {
		if kv[1] == "" {
			missing = append(missing, kv[0])
		}
	}
	if len(missing) > 0 {
		env.skipReason = fmt.Sprintf("end-to-end tests need %s (run `make e2e`, which builds the binaries and sets them)", strings.Join(missing, ", "))
	} else {
		for _, p := range []string{env.vaultBin, env.pluginBin, env.simBin} {
			if !filepath.IsAbs(p) {
				env.skipReason = fmt.Sprintf("%s must be an absolute path (run `make e2e`)", p)
			} else if _, err := os.Stat(p); err != nil {
				env.skipReason = fmt.Sprintf("binary missing: %v (run `make build sim vault`)", err)
			}
		}
	}
	if env.skipReason != "" {
		fmt.Println("e2e: skipping:", env.skipReason)
	}
	code := m.Run()
	if shared.stack != nil {
		if leaks := shared.stack.secretLeaks(); len(leaks) > 0 {
			fmt.Printf("FAIL: secrets in the logs of the shared stack (%s):\n%s\n", shared.dir, strings.Join(leaks, "\n"))
			code = 1
		}
	}
	stopShared()
	os.Exit(code)
}

func requireEnv(t *testing.T) {
	t.Helper()
	if env.skipReason != "" {
		skipRealPart(t, "%s", env.skipReason)
	}
}

// skipRealPart skips a test whose real part (Vault, the Broker from npm,
// node) is missing on a developer's machine; under CI (CI set, as .ci/run
// runs) it fails instead, so that CI can never pass without the real parts.
func skipRealPart(t *testing.T, format string, args ...interface{}) {
	t.Helper()
	if os.Getenv("CI") != "" {
		t.Fatalf("CI requires this test's real parts: "+format, args...)
	}
	t.Skipf(format, args...)
}

// ---------------------------------------------------------------------------
// Processes

// tailFile returns the last n lines of a file.
func tailFile(path string, n int) string {
	raw, err := os.ReadFile(path)
	if err != nil {
		return fmt.Sprintf("(cannot read %s: %v)", path, err)
	}
	lines := strings.Split(strings.TrimRight(string(raw), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

func logTail(t *testing.T, title, path string, n int) {
	t.Helper()
	t.Logf("----- last %d lines of %s (%s) -----\n%s\n----- end of %s -----", n, title, path, tailFile(path, n), title)
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// baseEnv is the minimal environment given to every process started here.
func baseEnv(home string) []string {
	path := os.Getenv("PATH")
	if path == "" {
		path = "/usr/local/bin:/usr/bin:/bin"
	}
	return []string{"PATH=" + path, "HOME=" + home}
}

// waitFor polls cond every interval until it returns true or timeout passes.
// It returns the last error cond reported.
func waitFor(timeout, interval time.Duration, cond func() (bool, error)) error {
	deadline := time.Now().Add(timeout)
	var last error
	for {
		ok, err := cond()
		if ok {
			return nil
		}
		last = err
		if time.Now().After(deadline) {
			if last == nil {
				last = errors.New("condition not met")
			}
			return fmt.Errorf("timed out after %s: %w", timeout, last)
		}
		time.Sleep(interval)
	}
}

func sha256File(path string) (string, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	sum := sha256.Sum256(raw)
	return hex.EncodeToString(sum[:]), nil
}

func copyFile(src, dst string, mode os.FileMode) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, mode)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// ---------------------------------------------------------------------------
// Simulator

// fingerprintOf is the engine's broker_token_fingerprint of a token.
func fingerprintOf(tok string) string {
	sum := sha256.Sum256([]byte(tok))
	return "sha256:" + hex.EncodeToString(sum[:6])
}

// newUUID returns a random (version 4) UUID.
func newUUID(t *testing.T) string {
	t.Helper()
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		t.Fatal(err)
	}
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	h := hex.EncodeToString(b[:])
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}

// hostOf returns host[:port] of a URL, as the Broker env expects it.
func hostOf(t *testing.T, raw string) string {
	t.Helper()
	u, err := url.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	return u.Host
}

func str(v interface{}) string {
	s, _ := v.(string)
	return s
}

// num converts a JSON number from an api.Secret's data to int64.
func num(t *testing.T, v interface{}) int64 {
	t.Helper()
	switch x := v.(type) {
	case json.Number:
		n, err := x.Int64()
		if err != nil {
			t.Fatalf("not an integer: %v", x)
		}
		return n
	case float64:
		return int64(x)
	case int64:
		return x
	case int:
		return int64(x)
	}
	t.Fatalf("not a number: %#v", v)
	return 0
}

// responseStatus returns the HTTP status of a Vault API error (0 if none).
func responseStatus(err error) int {
	var re *api.ResponseError
	if errors.As(err, &re) {
		return re.StatusCode
	}
	return 0
}

func equalMaps(a, b map[string]int) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

func envMap(t *testing.T, v interface{}) map[string]string {
	t.Helper()
	m, ok := v.(map[string]interface{})
	if !ok {
		t.Fatalf("env is %T, want a map", v)
	}
	out := make(map[string]string, len(m))
	for k, x := range m {
		s, ok := x.(string)
		if !ok {
			t.Errorf("env[%s] is %T, want a string", k, x)
		}
		out[k] = s
	}
	return out
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func keysOf[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// report prints a measured figure and appends it to $E2E_FIGURES (make
// prints that file after the run: go test hides a passing test's output).
func report(t *testing.T, line string) {
	t.Helper()
	t.Log(line)
	if path := os.Getenv("E2E_FIGURES"); path != "" {
		f, err := os.OpenFile(path, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
		if err != nil {
			t.Errorf("writing figures: %v", err)
			return
		}
		defer f.Close()
		fmt.Fprintln(f, line)
	}
}
