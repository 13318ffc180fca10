package e2e

import (
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/vault/api"
)

// The delivery chain, for real: the simulator as Snyk (it knows which token
// is current, as Snyk's router does), a real Vault with the plugin, the real
// `broker server` and `broker client` from npm, and Vault Agent in process-
// supervisor mode running the client with bootstrap/agent/broker-client-
// github.hcl (the file operators deploy, not a copy). A traffic generator
// sends a request every 100 ms to the Broker server at /broker/<current
// token>/user, exactly as Snyk routes by the integration's current token,
// while the engine rotates the token on a seconds-long schedule.

const (
	chainPeriod         = 30 * time.Second
	chainProvisionAhead = 12 * time.Second
	chainRun            = 130 * time.Second
	chainInterval       = 100 * time.Millisecond
)

// brokerHarness locates the npm-installed Broker (scripts/broker, installed
// by `make broker`); the test is skipped when npm could not install it.
type brokerHarness struct {
	root, dir, bin, nodeDir, clientAccept, serverAccept string
}

func findBroker(t *testing.T) brokerHarness {
	t.Helper()
	requireEnv(t)
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	h := brokerHarness{root: root, dir: filepath.Join(root, "scripts", "broker")}
	h.bin = filepath.Join(h.dir, "node_modules", ".bin", "broker")
	if _, err := os.Stat(h.bin); err != nil {
		skipRealPart(t, "the Snyk Broker from npm is not installed (scripts/broker/node_modules): npm was unreachable when `make broker` ran; skipping the delivery-chain test")
	}
	node, err := exec.LookPath("node")
	if err != nil {
		skipRealPart(t, "node is not installed; skipping the delivery-chain test")
	}
	h.nodeDir = filepath.Dir(node)
	h.clientAccept = filepath.Join(h.dir, "node_modules", "snyk-broker", "dist", "client-templates", "github-com", "accept.json.sample")
	h.serverAccept = filepath.Join(h.dir, "server-accept.json")
	return h
}

func (h brokerHarness) path() string {
	return filepath.Join(h.dir, "node_modules", ".bin") + ":" + h.nodeDir + ":/usr/local/bin:/usr/bin:/bin"
}

// startBrokerServer runs `broker server` with an allow-all filter.
func (h brokerHarness) startBrokerServer(t *testing.T, dir string) int {
	t.Helper()
	port, err := freePort()
	if err != nil {
		t.Fatal(err)
	}
	wd := filepath.Join(dir, "broker-server")
	if err := os.MkdirAll(wd, 0o700); err != nil {
		t.Fatal(err)
	}
	logPath := filepath.Join(dir, "broker-server.log")
	environ := []string{"PATH=" + h.path(), "HOME=" + wd, fmt.Sprintf("PORT=%d", port), "ACCEPT=" + h.serverAccept, "LOG_LEVEL=info"}
	p, err := startProc("broker server", logPath, environ, wd, syscall.SIGTERM, h.bin, "server")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.stop(5 * time.Second) })
	t.Cleanup(func() {
		if t.Failed() {
			logTail(t, "broker server log", logPath, 40)
		}
	})
	err = waitFor(30*time.Second, 200*time.Millisecond, func() (bool, error) {
		resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/healthcheck", port))
		if err != nil {
			return false, err
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK, nil
	})
	if err != nil {
		t.Fatalf("broker server not healthy: %v", err)
	}
	return port
}

// startSupervisedClient runs Vault Agent with the bootstrap config; Agent
// runs `broker client` with the rendered variables and restarts it when they
// change. role is "current" or "next" (the overlap pattern). It runs on the
// test's goroutine (it may fail the test) and returns a wait for the client's
// health, which may run on any goroutine.
func (h brokerHarness) startSupervisedClient(t *testing.T, s *stack, dir, role, token string, serverPort int) func() error {
	t.Helper()
	wd := filepath.Join(dir, "agent-"+role)
	if err := os.MkdirAll(wd, 0o700); err != nil {
		t.Fatal(err)
	}
	auth := bootstrapAgentAuth(t, s, wd, token)
	clientPort, err := freePort()
	if err != nil {
		t.Fatal(err)
	}
	gh := strings.TrimPrefix(s.sim.info.GitHubURL, "https://")
	// Agent's own environment is the Broker client's non-secret config; it
	// is clean because the Broker turns every variable into config.
	environ := []string{
		"PATH=" + h.path(), "HOME=" + wd,
		"SNYK_BROKER_SECRET=" + mountPath + "/broker/payments/github",
		"SNYK_BROKER_ROLE=" + role,
		fmt.Sprintf("PORT=%d", clientPort),
		fmt.Sprintf("BROKER_CLIENT_URL=http://127.0.0.1:%d", clientPort),
		fmt.Sprintf("API_BASE_URL=http://127.0.0.1:%d", serverPort),
		"ACCEPT=" + h.clientAccept,
		"GITHUB_RAW=" + gh,
		"PREFLIGHT_CHECKS_ENABLED=false",
		"IPV6_CONNECTIVITY_CHECK_ENABLED=false",
		"NODE_EXTRA_CA_CERTS=" + s.sim.info.CACertFile,
		"LOG_LEVEL=info",
	}
	bootstrapCfg := filepath.Join(h.root, "bootstrap", "agent", "broker-client-github.hcl")
	logPath := filepath.Join(dir, "agent-"+role+".log")
	p, err := startProc("vault agent ("+role+")", logPath, environ, wd, syscall.SIGTERM, env.vaultBin,
		"agent", "-config="+bootstrapCfg, "-config="+auth, "-log-level=info")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.stop(10 * time.Second) })
	t.Cleanup(func() {
		if t.Failed() {
			logTail(t, "Vault Agent ("+role+") log (includes the Broker client's output)", logPath, 60)
		}
	})
	return func() error {
		err := waitFor(30*time.Second, 200*time.Millisecond, func() (bool, error) {
			if p.exited() {
				return false, fmt.Errorf("vault agent exited: %w", p.waitErr)
			}
			resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/healthcheck", clientPort))
			if err != nil {
				return false, err
			}
			resp.Body.Close()
			return resp.StatusCode == http.StatusOK, nil
		})
		if err != nil {
			return fmt.Errorf("Broker client (%s) under Vault Agent not healthy: %w\n%s", role, err, tailFile(logPath, 40))
		}
		return nil
	}
}

// chainSetup: a stack whose broker_server_url is a real Broker server, the
// payments/github integration on a seconds-long schedule, and a token that
// may only read its broker secret (the bootstrap broker-reader policy).
func chainSetup(t *testing.T, h brokerHarness) (*stack, string, int) {
	t.Helper()
	s := newTestStack(t)
	dir := filepath.Join(s.dir, "chain")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	serverPort := h.startBrokerServer(t, dir)
	// broker_server_url is a trust-boundary field: the credential goes along.
	s.write(t, mountPath+"/config", map[string]interface{}{"broker_server_url": fmt.Sprintf("http://127.0.0.1:%d", serverPort), "api_token": s.sim.info.APIToken})
	s.ensureIntegration(t, "payments", "github", map[string]interface{}{
		"org_id":          s.sim.info.Orgs["payments"],
		"scm_token":       s.sim.info.GitHubToken,
		"scm_url":         s.sim.info.GitHubURL,
		"scm_api_url":     s.sim.info.GitHubURL,
		"ttl":             "1h",
		"rotation_period": fmt.Sprintf("%ds", int(chainPeriod.Seconds())),
		"provision_ahead": fmt.Sprintf("%ds", int(chainProvisionAhead.Seconds())),
	})
	policy, err := os.ReadFile(filepath.Join(h.root, "bootstrap", "policies", "broker-reader.hcl.tmpl"))
	if err != nil {
		t.Fatal(err)
	}
	rendered := strings.NewReplacer("__MOUNT__", mountPath, "__ORG__", "payments", "__SCM__", "github").Replace(string(policy))
	if err := s.vault.client.Sys().PutPolicy("snyk-broker-payments-github", rendered); err != nil {
		t.Fatal(err)
	}
	tok, err := s.vault.client.Auth().Token().Create(&api.TokenCreateRequest{Policies: []string{"snyk-broker-payments-github"}, TTL: "1h"})
	if err != nil {
		t.Fatal(err)
	}
	return s, tok.Auth.ClientToken, serverPort
}

type outcome struct {
	at     time.Time
	token  string
	ok     bool
	status int
}

// generateTraffic asks "Snyk" (the simulator) for the integration's current
// token and sends one request through the Broker server with it, every
// 100 ms, for d.
func generateTraffic(t *testing.T, s *stack, serverPort int, d time.Duration) []outcome {
	t.Helper()
	org := s.sim.info.Orgs["payments"]
	client := &http.Client{Timeout: 2 * time.Second}
	var out []outcome
	tick := time.NewTicker(chainInterval)
	defer tick.Stop()
	end := time.Now().Add(d)
	for now := range tick.C {
		if now.After(end) {
			break
		}
		cur := s.sim.integration(t, org, "github").CurrentToken
		o := outcome{at: now, token: cur}
		resp, err := client.Get(fmt.Sprintf("http://127.0.0.1:%d/broker/%s/user", serverPort, cur))
		if err == nil {
			o.status = resp.StatusCode
			resp.Body.Close()
			o.ok = resp.StatusCode == http.StatusOK
		}
		out = append(out, o)
	}
	return out
}

type chainFigures struct {
	rotations, sent, failed int
	longestGap              time.Duration
	switchToFirstOK         []time.Duration
}

func summarize(outs []outcome) chainFigures {
	f := chainFigures{sent: len(outs)}
	var lastOK time.Time
	for i, o := range outs {
		if !o.ok {
			f.failed++
		} else {
			if !lastOK.IsZero() && o.at.Sub(lastOK) > f.longestGap {
				f.longestGap = o.at.Sub(lastOK)
			}
			lastOK = o.at
		}
		if i > 0 && o.token != outs[i-1].token {
			f.rotations++
			switchAt := o.at
			recovered := time.Duration(-1)
			for _, later := range outs[i:] {
				if later.token != o.token {
					break
				}
				if later.ok {
					recovered = later.at.Sub(switchAt)
					break
				}
			}
			f.switchToFirstOK = append(f.switchToFirstOK, recovered)
		}
	}
	return f
}

func (f chainFigures) String() string {
	var per []string
	for _, d := range f.switchToFirstOK {
		if d < 0 {
			per = append(per, "never")
		} else {
			per = append(per, d.Round(10*time.Millisecond).String())
		}
	}
	return fmt.Sprintf("rotations=%d requests=%d failed=%d longest_gap=%s switch_to_first_success=[%s]",
		f.rotations, f.sent, f.failed, f.longestGap.Round(10*time.Millisecond), strings.Join(per, " "))
}

func failureStatuses(outs []outcome) string {
	counts := map[int]int{}
	for _, o := range outs {
		if !o.ok {
			counts[o.status]++
		}
	}
	var keys []int
	for k := range counts {
		keys = append(keys, k)
	}
	sort.Ints(keys)
	var parts []string
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("%d×%d", counts[k], k))
	}
	return strings.Join(parts, " ")
}

func runChain(t *testing.T, roles ...string) chainFigures {
	h := findBroker(t)
	s, readerToken, serverPort := chainSetup(t, h)
	dir := filepath.Join(s.dir, "chain")
	// Start every client here (a failure ends the test on its own
	// goroutine), then wait for their health in parallel: waits only report.
	var waits []func() error
	for _, role := range roles {
		waits = append(waits, h.startSupervisedClient(t, s, dir, role, readerToken, serverPort))
	}
	errs := make([]error, len(waits))
	var wg sync.WaitGroup
	for i, wait := range waits {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = wait()
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
	if t.Failed() {
		t.FailNow()
	}
	outs := generateTraffic(t, s, serverPort, chainRun)
	f := summarize(outs)
	label := strings.Join(roles, "+")
	report(t, fmt.Sprintf("delivery chain (%s, period %s, provision_ahead %s, run %s): %s; failures by status: %s",
		label, chainPeriod, chainProvisionAhead, chainRun, f, failureStatuses(outs)))

	if f.rotations < 3 {
		t.Errorf("only %d rotations in %s", f.rotations, chainRun)
	}
	// The fake GitHub only ever saw the configured SCM token.
	if seen := s.sim.seen(t, "github"); len(seen) != 1 || seen[0] != s.sim.info.GitHubToken {
		t.Errorf("the fake GitHub saw %d credentials, want only the configured one", len(seen))
	}
	return f
}

// TestBrokerChainSingleClient: one Broker client supervised by Vault Agent in
// exec mode; target: the longest gap around each rotation ≤ 5 s.
func TestBrokerChainSingleClient(t *testing.T) {
	f := runChain(t, "current")
	for i, d := range f.switchToFirstOK {
		if d < 0 || d > 5*time.Second {
			t.Errorf("rotation %d: %s from switch to the first successful request, target ≤ 5s", i+1, d)
		}
	}
	if f.longestGap > 5*time.Second {
		t.Errorf("longest gap %s, target ≤ 5s", f.longestGap)
	}
}

// TestBrokerChainOverlap: two clients, "current" on broker_token and "next"
// on next_broker_token during the provision-ahead window; target: no failed
// request across all rotations.
func TestBrokerChainOverlap(t *testing.T) {
	f := runChain(t, "current", "next")
	if f.failed != 0 {
		t.Errorf("%d failed requests with the overlap pattern, target 0", f.failed)
	}
}
