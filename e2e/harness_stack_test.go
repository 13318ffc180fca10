package e2e

import (
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/vault/api"
)

type stack struct {
	dir   string
	sim   *simulator
	vault *vaultServer
}

// newStack starts a simulator and a Vault server in dir, registers and
// enables the plugin and writes snyk/config against the simulator.
func newStack(dir string) (*stack, error) {
	return newStackWith(dir, stackOptions{})
}

// stackOptions change what newStackWith starts: the default is file
// storage, trace logs and a file audit device (the secret-hygiene scan
// reads both); make bench's figures want other storage and less logging.
type stackOptions struct {
	storage  func(dataDir string) string
	logLevel string
	noAudit  bool
	config   map[string]interface{} // extra snyk/config fields
}

func newStackWith(dir string, o stackOptions) (*stack, error) {
	s := &stack{dir: dir}
	var err error
	if s.sim, err = startSim(dir); err != nil {
		return nil, err
	}
	fail := func(err error) (*stack, error) {
		s.stop()
		return nil, err
	}
	if s.vault, err = newVaultServerWith(dir, o.storage, o.logLevel); err != nil {
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
	if !o.noAudit {
		if err := s.vault.enableFileAudit(); err != nil {
			return fail(err)
		}
	}
	ca, err := os.ReadFile(s.sim.info.CACertFile)
	if err != nil {
		return fail(err)
	}
	cfg := map[string]interface{}{
		"api_token": s.sim.info.APIToken,
		"api_url":   s.sim.info.SnykURL,
		"ca_cert":   string(ca),
		"ttl":       "1h",
	}
	for k, v := range o.config {
		cfg[k] = v
	}
	_, err = s.vault.client.Logical().Write(mountPath+"/config", cfg)
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
	// Runs before stop (cleanups run last-in first-out).
	t.Cleanup(func() {
		if leaks := s.secretLeaks(); len(leaks) > 0 {
			t.Errorf("secrets in the logs of this test's stack:\n%s", strings.Join(leaks, "\n"))
		}
	})
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
