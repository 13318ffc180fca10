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
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/vault/api"
)

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
// with a copy of the plugin binary, loopback listener without TLS), logging
// at trace: the most the server and the plugin ever log, so that the
// secret-hygiene scan (harness_hygiene_test.go) sees all of it.
func newVaultServer(dir string) (*vaultServer, error) {
	return newVaultServerWith(dir, nil, "")
}

// newVaultServerWith is newVaultServer with another storage stanza (file
// storage when nil) and log level (trace when empty).
func newVaultServerWith(dir string, storage func(string) string, logLevel string) (*vaultServer, error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	clusterPort, err := freePort()
	if err != nil {
		return nil, err
	}
	if storage == nil {
		storage = fileStorage
	}
	if logLevel == "" {
		logLevel = "trace"
	}
	return newVaultServerOn(dir, port, clusterPort, storage, logLevel)
}

// inmemStorage keeps everything in the server's memory (lost on restart).
func inmemStorage(string) string { return "storage \"inmem\" {}\n" }

// raftStorage is a single-node integrated storage (Raft) cluster.
func raftStorage(dataDir string) string {
	return fmt.Sprintf("storage \"raft\" {\n  path    = %q\n  node_id = \"bench\"\n}\n", dataDir)
}

func fileStorage(dataDir string) string {
	return fmt.Sprintf("storage \"file\" {\n  path = %q\n}\n", dataDir)
}

// newVaultServerOn writes the config of a server listening on port (API)
// and clusterPort, with the storage stanza storage(dataDir) returns, logging
// at logLevel (the plugin's log, forwarded by Vault, follows it).
func newVaultServerOn(dir string, port, clusterPort int, storage func(dataDir string) string, logLevel string) (*vaultServer, error) {
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
	v.addr = fmt.Sprintf("http://127.0.0.1:%d", port)
	hcl := storage(dataDir) + fmt.Sprintf(`listener "tcp" {
  address         = "127.0.0.1:%d"
  cluster_address = "127.0.0.1:%d"
  tls_disable     = true
}
api_addr         = %q
cluster_addr     = "https://127.0.0.1:%d"
plugin_directory = %q
disable_mlock    = true
ui               = false
log_level        = %q
`, port, clusterPort, v.addr, clusterPort, pluginDir, logLevel)
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
			return false, fmt.Errorf("vault server exited: %w", p.waitErr)
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
		return fmt.Errorf("vault operator init: unexpected output (%w): %s", err, out)
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
