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
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
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

// proc is a process started by the tests, in its own process group.
type proc struct {
	name    string
	cmd     *exec.Cmd
	logPath string
	logFile *os.File
	done    chan struct{}
	waitErr error
}

// startProc starts bin with args, stdout and stderr appended to logPath, and
// exactly the environment given (no inheritance). deathSig is sent to the
// process if the test binary dies without cleaning up (a -timeout panic).
func startProc(name, logPath string, environ []string, dir string, deathSig syscall.Signal, bin string, args ...string) (*proc, error) {
	f, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, args...)
	cmd.Env = environ
	cmd.Dir = dir
	cmd.Stdout = f
	cmd.Stderr = f
	cmd.SysProcAttr = procAttr(deathSig)
	if err := cmd.Start(); err != nil {
		f.Close()
		return nil, fmt.Errorf("starting %s: %w", name, err)
	}
	p := &proc{name: name, cmd: cmd, logPath: logPath, logFile: f, done: make(chan struct{})}
	go func() {
		p.waitErr = cmd.Wait()
		f.Close()
		close(p.done)
	}()
	return p, nil
}

func (p *proc) pid() int { return p.cmd.Process.Pid }

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// stop sends SIGTERM to the process, waits up to grace, then SIGKILLs it;
// finally it SIGKILLs whatever is left in its process group (plugin
// processes of a killed Vault, an Agent's child), which only this process
// and its descendants can be in.
func (p *proc) stop(grace time.Duration) {
	if p == nil {
		return
	}
	pid := p.pid()
	if !p.exited() {
		_ = syscall.Kill(pid, syscall.SIGTERM)
		select {
		case <-p.done:
		case <-time.After(grace):
			_ = syscall.Kill(pid, syscall.SIGKILL)
			<-p.done
		}
	}
	_ = syscall.Kill(-pid, syscall.SIGKILL)
}

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

// simInfo is the part of the simulator's sim.json the tests use.
type simInfo struct {
	PID               int               `json:"pid"`
	CACertFile        string            `json:"ca_cert_file"`
	SnykURL           string            `json:"snyk_url"`
	GitHubURL         string            `json:"github_url"`
	GHEURL            string            `json:"ghe_url"`
	GitLabURL         string            `json:"gitlab_url"`
	AzureURL          string            `json:"azure_url"`
	BitbucketURL      string            `json:"bitbucket_url"`
	AdminURL          string            `json:"admin_url"`
	APIToken          string            `json:"api_token"`
	GroupID           string            `json:"group_id"`
	Orgs              map[string]string `json:"orgs"`
	GitHubToken       string            `json:"github_token"`
	GHEToken          string            `json:"ghe_token"`
	GitLabToken       string            `json:"gitlab_token"`
	AzureToken        string            `json:"azure_token"`
	AzureOrg          string            `json:"azure_org"`
	BitbucketUsername string            `json:"bitbucket_username"`
	BitbucketPassword string            `json:"bitbucket_password"`
	BitbucketToken    string            `json:"bitbucket_token"`
}

type simIntegration struct {
	OrgID            string `json:"org_id"`
	Type             string `json:"type"`
	ID               string `json:"id"`
	Brokered         bool   `json:"brokered"`
	CurrentToken     string `json:"current_token"`
	ProvisionalToken string `json:"provisional_token"`
}

type simulator struct {
	dir  string
	proc *proc
	info simInfo
	http *http.Client
}

func startSim(dir string) (*simulator, error) {
	simDir := filepath.Join(dir, "sim")
	if err := os.MkdirAll(simDir, 0o755); err != nil {
		return nil, err
	}
	p, err := startProc("snyk-sim", filepath.Join(dir, "sim.log"), baseEnv(dir), dir, syscall.SIGKILL, env.simBin, "-dir", simDir)
	if err != nil {
		return nil, err
	}
	s := &simulator{dir: dir, proc: p, http: &http.Client{Timeout: 10 * time.Second}}
	jsonPath := filepath.Join(simDir, "sim.json")
	err = waitFor(30*time.Second, 50*time.Millisecond, func() (bool, error) {
		if p.exited() {
			return false, fmt.Errorf("snyk-sim exited: %v", p.waitErr)
		}
		raw, err := os.ReadFile(jsonPath)
		if err != nil {
			return false, err
		}
		return true, json.Unmarshal(raw, &s.info)
	})
	if err == nil && (s.info.AdminURL == "" || s.info.SnykURL == "" || s.info.CACertFile == "") {
		err = fmt.Errorf("incomplete sim.json: %+v", s.info)
	}
	if err != nil {
		p.stop(5 * time.Second)
		return nil, fmt.Errorf("simulator did not come up: %w\n%s", err, tailFile(p.logPath, 40))
	}
	return s, nil
}

func (s *simulator) adminDo(method, path string, in, out interface{}) error {
	var body io.Reader
	if in != nil {
		raw, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(raw)
	}
	req, err := http.NewRequest(method, s.info.AdminURL+path, body)
	if err != nil {
		return err
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := s.http.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("simulator %s %s: %d %s", method, path, resp.StatusCode, raw)
	}
	if out != nil {
		return json.Unmarshal(raw, out)
	}
	return nil
}

func (s *simulator) state(t *testing.T) []simIntegration {
	t.Helper()
	var out []simIntegration
	if err := s.adminDo("GET", "/state", nil, &out); err != nil {
		t.Fatalf("simulator state: %v", err)
	}
	return out
}

// integration returns the simulator's view of an org's integration of a type.
func (s *simulator) integration(t *testing.T, orgID, typ string) simIntegration {
	t.Helper()
	for _, in := range s.state(t) {
		if in.OrgID == orgID && in.Type == typ {
			return in
		}
	}
	t.Fatalf("the simulator has no %s integration in org %s", typ, orgID)
	return simIntegration{}
}

func (s *simulator) calls(t *testing.T, target string) map[string]int {
	t.Helper()
	out := map[string]int{}
	if err := s.adminDo("GET", "/calls?target="+url.QueryEscape(target), nil, &out); err != nil {
		t.Fatalf("simulator calls: %v", err)
	}
	return out
}

// seen returns the credentials an SCM fake has been presented.
func (s *simulator) seen(t *testing.T, target string) []string {
	t.Helper()
	var out []string
	if err := s.adminDo("GET", "/seen?target="+url.QueryEscape(target), nil, &out); err != nil {
		t.Fatalf("simulator seen: %v", err)
	}
	return out
}

func (s *simulator) tokenStatus(t *testing.T, token string) (current, provisional bool) {
	t.Helper()
	var out map[string]bool
	if err := s.adminDo("GET", "/token-status?token="+url.QueryEscape(token), nil, &out); err != nil {
		t.Fatalf("simulator token-status: %v", err)
	}
	return out["current"], out["provisional"]
}

// addOrg creates an org outside any Snyk group (so it has a provisional-
// token lane of its own) and makes it visible in GET /state.
func (s *simulator) addOrg(t *testing.T, orgID, name string) {
	t.Helper()
	// The admin API decodes this body into an untagged struct, so the Go
	// field names are what it matches; the documented snake_case keys are
	// sent too in case it gains tags.
	err := s.adminDo("POST", "/orgs", map[string]string{
		"OrgID": orgID, "GroupID": "", "Name": name,
		"org_id": orgID, "group_id": "", "name": name,
	}, nil)
	if err != nil {
		t.Fatalf("simulator add org: %v", err)
	}
}

// addIntegration creates (or returns) an integration at the fake Snyk; an
// org that does not exist yet is created outside any group.
func (s *simulator) addIntegration(t *testing.T, orgID, typ string, brokered bool) (id, token string) {
	t.Helper()
	var out struct {
		ID          string `json:"id"`
		BrokerToken string `json:"broker_token"`
	}
	err := s.adminDo("POST", "/integrations", map[string]interface{}{"org_id": orgID, "type": typ, "brokered": brokered}, &out)
	if err != nil {
		t.Fatalf("simulator add integration: %v", err)
	}
	return out.ID, out.BrokerToken
}

// ---------------------------------------------------------------------------
// Vault server

type vaultServer struct {
	dir        string
	addr       string
	configPath string
	logPath    string
	pluginSHA  string
	proc       *proc
	unsealKey  string
	rootToken  string
	client     *api.Client
	starts     int
}

// newVaultServer writes the server config (file storage, plugin_directory
// with a copy of the plugin binary, loopback listener without TLS).
func newVaultServer(dir string) (*vaultServer, error) {
	v := &vaultServer{dir: dir, configPath: filepath.Join(dir, "vault.hcl"), logPath: filepath.Join(dir, "vault.log")}
	pluginDir := filepath.Join(dir, "plugins")
	dataDir := filepath.Join(dir, "vault-data")
	for _, d := range []string{pluginDir, dataDir} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, err
		}
	}
	pluginCopy := filepath.Join(pluginDir, pluginName)
	if err := copyFile(env.pluginBin, pluginCopy, 0o755); err != nil {
		return nil, err
	}
	sha, err := sha256File(pluginCopy)
	if err != nil {
		return nil, err
	}
	v.pluginSHA = sha
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	clusterPort, err := freePort()
	if err != nil {
		return nil, err
	}
	v.addr = fmt.Sprintf("http://127.0.0.1:%d", port)
	hcl := fmt.Sprintf(`storage "file" {
  path = %q
}
listener "tcp" {
  address         = "127.0.0.1:%d"
  cluster_address = "127.0.0.1:%d"
  tls_disable     = true
}
api_addr         = %q
cluster_addr     = "https://127.0.0.1:%d"
plugin_directory = %q
disable_mlock    = true
ui               = false
log_level        = "debug"
`, dataDir, port, clusterPort, v.addr, clusterPort, pluginDir)
	if err := os.WriteFile(v.configPath, []byte(hcl), 0o600); err != nil {
		return nil, err
	}
	cfg := api.DefaultConfig()
	cfg.Address = v.addr
	cfg.Timeout = 60 * time.Second
	cfg.MaxRetries = 0
	c, err := api.NewClient(cfg)
	if err != nil {
		return nil, err
	}
	c.ClearToken()
	c.SetNamespace("")
	v.client = c
	return v, nil
}

// start starts the server process and waits until its API answers.
func (v *vaultServer) start() error {
	v.starts++
	appendLine(v.logPath, fmt.Sprintf("===== e2e: vault server start #%d at %s =====", v.starts, time.Now().Format(time.RFC3339)))
	// SIGTERM, not SIGKILL, on the test binary's death: Vault then stops
	// its plugin processes itself.
	p, err := startProc("vault", v.logPath, baseEnv(v.dir), v.dir, syscall.SIGTERM, env.vaultBin, "server", "-config="+v.configPath)
	if err != nil {
		return err
	}
	v.proc = p
	err = waitFor(60*time.Second, 100*time.Millisecond, func() (bool, error) {
		if p.exited() {
			return false, fmt.Errorf("vault server exited: %v", p.waitErr)
		}
		_, err := v.client.Sys().SealStatus()
		return err == nil, err
	})
	if err != nil {
		return fmt.Errorf("vault server did not come up: %w\n%s", err, tailFile(v.logPath, 60))
	}
	return nil
}

// appendLine appends a marker line to a log file.
func appendLine(path, line string) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return
	}
	defer f.Close()
	_, _ = fmt.Fprintln(f, line)
}

func (v *vaultServer) stop() {
	if v.proc != nil {
		v.proc.stop(20 * time.Second)
	}
}

// initialize runs `vault operator init -key-shares=1 -key-threshold=1` and
// unseals with the one key.
func (v *vaultServer) initialize() error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, env.vaultBin, "operator", "init", "-key-shares=1", "-key-threshold=1", "-format=json")
	cmd.Env = append(baseEnv(v.dir), "VAULT_ADDR="+v.addr)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return fmt.Errorf("vault operator init: %w: %s", err, stderr.String())
	}
	var resp struct {
		UnsealKeysB64 []string `json:"unseal_keys_b64"`
		RootToken     string   `json:"root_token"`
	}
	if err := json.Unmarshal(out, &resp); err != nil || len(resp.UnsealKeysB64) != 1 || resp.RootToken == "" {
		return fmt.Errorf("vault operator init: unexpected output (%v): %s", err, out)
	}
	v.unsealKey = resp.UnsealKeysB64[0]
	v.rootToken = resp.RootToken
	v.client.SetToken(v.rootToken)
	return v.unseal()
}

// unseal unseals with the single key and waits until the node is active and
// serves requests.
func (v *vaultServer) unseal() error {
	st, err := v.client.Sys().Unseal(v.unsealKey)
	if err != nil {
		return fmt.Errorf("unseal: %w", err)
	}
	if st.Sealed {
		return errors.New("still sealed after unseal")
	}
	return waitFor(60*time.Second, 100*time.Millisecond, func() (bool, error) {
		h, err := v.client.Sys().Health()
		if err != nil {
			return false, err
		}
		if h.Sealed || h.Standby {
			return false, fmt.Errorf("health: sealed=%v standby=%v", h.Sealed, h.Standby)
		}
		_, err = v.client.Sys().ListMounts()
		return err == nil, err
	})
}

// registerAndEnable registers the plugin by sha256 and version and enables
// it at snyk/ pinned to that version.
func (v *vaultServer) registerAndEnable() error {
	err := v.client.Sys().RegisterPlugin(&api.RegisterPluginInput{
		Name:    pluginName,
		Type:    api.PluginTypeSecrets,
		Command: pluginName,
		SHA256:  v.pluginSHA,
		Version: env.version,
	})
	if err != nil {
		return fmt.Errorf("registering the plugin: %w", err)
	}
	err = v.client.Sys().Mount(mountPath, &api.MountInput{
		Type:        pluginName,
		Description: "Snyk Broker tokens (e2e)",
		Config:      api.MountConfigInput{PluginVersion: env.version},
	})
	if err != nil {
		return fmt.Errorf("enabling the plugin at %s/: %w", mountPath, err)
	}
	return nil
}

// cliEnv is the environment of a vault CLI call: this server and token only.
func (v *vaultServer) cliEnv(token string) []string {
	return append(baseEnv(v.dir), "VAULT_ADDR="+v.addr, "VAULT_TOKEN="+token, "VAULT_FORMAT=table")
}

// cli runs the vault CLI as root against this server.
func (v *vaultServer) cli(t *testing.T, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	return v.cliAs(t, v.rootToken, args...)
}

func (v *vaultServer) cliAs(t *testing.T, token string, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, env.vaultBin, args...)
	cmd.Env = v.cliEnv(token)
	cmd.Dir = v.dir
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	err = cmd.Run()
	t.Logf("$ vault %s (exit %v)", strings.Join(args, " "), exitCode(err))
	return o.String(), e.String(), err
}

func exitCode(err error) int {
	if err == nil {
		return 0
	}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return ee.ExitCode()
	}
	return -1
}

// tokenClient returns an API client of this server using token.
func (v *vaultServer) tokenClient(t *testing.T, token string) *api.Client {
	t.Helper()
	c, err := v.client.Clone()
	if err != nil {
		t.Fatal(err)
	}
	c.SetToken(token)
	return c
}

// ---------------------------------------------------------------------------
// Stacks: simulator + Vault with the engine mounted and configured

type stack struct {
	dir   string
	sim   *simulator
	vault *vaultServer
}

// newStack starts a simulator and a Vault server in dir, registers and
// enables the plugin and writes snyk/config against the simulator.
func newStack(dir string) (*stack, error) {
	s := &stack{dir: dir}
	var err error
	if s.sim, err = startSim(dir); err != nil {
		return nil, err
	}
	fail := func(err error) (*stack, error) {
		s.stop()
		return nil, err
	}
	if s.vault, err = newVaultServer(dir); err != nil {
		return fail(err)
	}
	if err := s.vault.start(); err != nil {
		return fail(err)
	}
	if err := s.vault.initialize(); err != nil {
		return fail(fmt.Errorf("%w\n%s", err, tailFile(s.vault.logPath, 60)))
	}
	if err := s.vault.registerAndEnable(); err != nil {
		return fail(fmt.Errorf("%w\n%s", err, tailFile(s.vault.logPath, 60)))
	}
	ca, err := os.ReadFile(s.sim.info.CACertFile)
	if err != nil {
		return fail(err)
	}
	_, err = s.vault.client.Logical().Write(mountPath+"/config", map[string]interface{}{
		"api_token": s.sim.info.APIToken,
		"api_url":   s.sim.info.SnykURL,
		"ca_cert":   string(ca),
		"ttl":       "1h",
	})
	if err != nil {
		return fail(fmt.Errorf("writing snyk/config: %w\n%s", err, tailFile(s.vault.logPath, 60)))
	}
	return s, nil
}

func (s *stack) stop() {
	if s.vault != nil {
		s.vault.stop()
	}
	if s.sim != nil {
		s.sim.proc.stop(5 * time.Second)
	}
}

// dumpOnFailure prints the log tails when t fails.
func (s *stack) dumpOnFailure(t *testing.T) {
	t.Helper()
	t.Cleanup(func() {
		if !t.Failed() {
			return
		}
		if s.vault != nil {
			logTail(t, "Vault server log", s.vault.logPath, 120)
		}
		if s.sim != nil {
			logTail(t, "simulator log", s.sim.proc.logPath, 40)
		}
	})
}

// newTestStack starts a stack owned by t and stopped in t's cleanup.
func newTestStack(t *testing.T) *stack {
	t.Helper()
	requireEnv(t)
	dir := t.TempDir()
	start := time.Now()
	s, err := newStack(dir)
	if err != nil {
		t.Fatalf("starting the stack: %v", err)
	}
	t.Logf("stack up in %s: vault %s, simulator admin %s", time.Since(start).Round(time.Millisecond), s.vault.addr, s.sim.info.AdminURL)
	t.Cleanup(s.stop)
	s.dumpOnFailure(t)
	return s
}

var shared struct {
	once  sync.Once
	stack *stack
	dir   string
	err   error
}

// sharedStack returns the package's shared stack, starting it on first use.
// Tests using it must leave the state they rely on intact for the others
// (they run one after another).
func sharedStack(t *testing.T) *stack {
	t.Helper()
	requireEnv(t)
	shared.once.Do(func() {
		dir, err := os.MkdirTemp("", "snyk-e2e-shared-")
		if err != nil {
			shared.err = err
			return
		}
		shared.dir = dir
		start := time.Now()
		shared.stack, shared.err = newStack(dir)
		if shared.err == nil {
			t.Logf("shared stack up in %s: vault %s, simulator admin %s", time.Since(start).Round(time.Millisecond), shared.stack.vault.addr, shared.stack.sim.info.AdminURL)
		}
	})
	if shared.err != nil {
		t.Fatalf("starting the shared stack: %v", shared.err)
	}
	shared.stack.dumpOnFailure(t)
	return shared.stack
}

func stopShared() {
	if shared.stack != nil {
		shared.stack.stop()
	}
	if shared.dir != "" {
		_ = os.RemoveAll(shared.dir)
	}
}

// ---------------------------------------------------------------------------
// Engine helpers

func (s *stack) read(t *testing.T, path string) *api.Secret {
	t.Helper()
	sec, err := s.vault.client.Logical().Read(path)
	if err != nil {
		t.Fatalf("read %s: %v", path, err)
	}
	if sec == nil {
		t.Fatalf("read %s: no data", path)
	}
	return sec
}

func (s *stack) write(t *testing.T, path string, data map[string]interface{}) *api.Secret {
	t.Helper()
	sec, err := s.vault.client.Logical().Write(path, data)
	if err != nil {
		t.Fatalf("write %s: %v", path, err)
	}
	return sec
}

// ensureIntegration creates snyk/integrations/<name>/<scm> with data unless
// it exists; it makes the fake Snyk hold a not-yet-brokered integration of
// that type for data's org_id first.
func (s *stack) ensureIntegration(t *testing.T, name, scmKind string, data map[string]interface{}) {
	t.Helper()
	path := mountPath + "/integrations/" + name + "/" + scmKind
	sec, err := s.vault.client.Logical().Read(path)
	if err != nil {
		t.Fatalf("read %s: %v", path, err)
	}
	if sec != nil {
		return
	}
	s.sim.addIntegration(t, data["org_id"].(string), scmKind, false)
	s.write(t, path, data)
}

// ensurePaymentsGitHub creates the demo integration payments/github (the
// demo org's GitHub integration, not brokered yet at Snyk) with a 15m ttl.
func (s *stack) ensurePaymentsGitHub(t *testing.T) {
	t.Helper()
	s.ensureIntegration(t, "payments", "github", map[string]interface{}{
		"org_id":            s.sim.info.Orgs["payments"],
		"scm_token":         s.sim.info.GitHubToken,
		"scm_api_url":       s.sim.info.GitHubURL,
		"broker_client_url": "http://broker.payments.internal:8000",
		"ttl":               "15m",
	})
}

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
