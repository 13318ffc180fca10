package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/vault/api"
)

// TestHACluster runs the engine on a 3-node Vault cluster with integrated
// storage (Raft) and changes leadership in the middle of rotations:
//
//   - kill -9 of the active node between provision and switch: a standby
//     takes over, rebuilds the queue from storage and switches the stored
//     provisional token at its time;
//   - kill -9 of the active node right after Snyk applied a switch whose
//     answer is held back: the new active node settles the switch from its
//     WAL without a second provision;
//   - `vault operator step-down` while a provision call is in flight.
//
// Writes go to a standby (forwarded to the active node). Across the test
// Snyk must see exactly one provision and one switch per rotation, never
// two. Meanwhile one reader per node reads snyk/broker/<name>/<scm> every
// 100 ms (failed reads and the longest gap are printed next to each
// leadership change), and a Vault Agent pointed at a standby re-renders the
// switched token.
func TestHACluster(t *testing.T) {
	requireEnv(t)
	dir, err := os.MkdirTemp("", "snyk-ha-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if !t.Failed() {
			_ = os.RemoveAll(dir)
		}
	})
	sim, err := startSim(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sim.proc.stop(5 * time.Second) })
	c, err := newVaultCluster(dir, 3)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.stop)
	t.Cleanup(func() { c.dumpOnFailure(t) })
	started := time.Now()
	if err := c.start(); err != nil {
		t.Fatal(err)
	}
	t.Logf("3-node Raft cluster up in %s", time.Since(started).Round(100*time.Millisecond))

	// Set-up through a standby: every write is forwarded to the active node.
	sb := c.standby(t)
	err = sb.client.Sys().RegisterPlugin(&api.RegisterPluginInput{
		Name: pluginName, Type: api.PluginTypeSecrets, Command: pluginName, SHA256: sb.pluginSHA, Version: env.version,
	})
	if err != nil {
		t.Fatalf("registering the plugin through a standby: %v", err)
	}
	if err := sb.client.Sys().Mount(mountPath, &api.MountInput{Type: pluginName, Config: api.MountConfigInput{PluginVersion: env.version}}); err != nil {
		t.Fatalf("mounting through a standby: %v", err)
	}
	ca, err := os.ReadFile(sim.info.CACertFile)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := sb.client.Logical().Write(mountPath+"/config", map[string]interface{}{
		"api_token": sim.info.APIToken, "api_url": sim.info.SnykURL, "ca_cert": string(ca),
	}); err != nil {
		t.Fatalf("writing config through a standby: %v", err)
	}
	org := newUUID(t)
	sim.addOrg(t, org, "e2e ha")
	sim.addIntegration(t, org, "gitlab", false)
	const period, ahead = 24 * time.Second, 12 * time.Second
	ipath := mountPath + "/integrations/ha/gitlab"
	bpath := mountPath + "/broker/ha/gitlab"
	if _, err := sb.client.Logical().Write(ipath, map[string]interface{}{
		"org_id": org, "scm_token": sim.info.GitLabToken, "scm_url": sim.info.GitLabURL,
		"ttl": "1h", "rotation_period": period.String(), "provision_ahead": ahead.String(),
	}); err != nil {
		t.Fatalf("creating the integration through a standby: %v", err)
	}
	base := sim.integration(t, org, "gitlab")
	if base.Provisions != 0 || base.Switches != 0 || base.CurrentToken == "" {
		t.Fatalf("after create: %d provisions, %d switches, token held %v", base.Provisions, base.Switches, base.CurrentToken != "")
	}

	readers := startHAReaders(t, c, bpath)
	agentFile := startHAAgent(t, c, sb, bpath)

	var figures []string
	rotation := func(n int, name string, disrupt func(a *vaultServer) (changed time.Duration)) {
		t.Helper()
		before := sim.integration(t, org, "gitlab")
		a, err := c.active()
		if err != nil {
			t.Fatal(err)
		}
		readersBefore := readers.snapshot()
		took := disrupt(a)
		// The rotation completes: Snyk routes by a new token, which the
		// engine serves from every node.
		var after simIntegration
		err = waitFor(period+30*time.Second, 200*time.Millisecond, func() (bool, error) {
			after = sim.integration(t, org, "gitlab")
			return after.CurrentToken != before.CurrentToken && after.ProvisionalToken == "", nil
		})
		if err != nil {
			t.Fatalf("%s: the rotation did not complete: %v", name, err)
		}
		for _, v := range c.nodes {
			if v.proc == nil || v.proc.exited() {
				continue
			}
			waitServed(t, v, bpath, "broker_token", after.CurrentToken, 20*time.Second)
		}
		if after.Provisions != n || after.Switches != n {
			t.Errorf("%s: Snyk saw %d provisions and %d switches after %d rotations, want exactly one of each per rotation", name, after.Provisions, after.Switches, n)
		}
		st := readers.since(readersBefore)
		figures = append(figures, fmt.Sprintf("| %s | %s | %d | %d | %s |", name, took.Round(100*time.Millisecond), st.ok, st.failed, st.longestGap.Round(100*time.Millisecond)))
	}

	// 1. kill -9 between provision and switch.
	// killActive kills the active node, waits for another to take over and
	// brings the killed one back as a standby; it returns how long the
	// cluster had no active node.
	killActive := func(a *vaultServer, when string) time.Duration {
		killedAt := time.Now()
		readers.down(a)
		c.kill9(t, a)
		next := c.waitActive(t, a, 60*time.Second)
		took := time.Since(killedAt)
		t.Logf("killed %s %s; %s active after %s", a.addr, when, next.addr, took.Round(100*time.Millisecond))
		c.restart(t, a)
		readers.up(a)
		return took
	}

	// 1. kill -9 between provision and switch.
	rotation(1, "kill -9 of the active node between provision and switch", func(a *vaultServer) time.Duration {
		waitSim(t, sim, org, period, func(in simIntegration) bool { return in.ProvisionalToken != "" })
		// Killed once the engine has stored the token (reads serve it):
		// a crash in the milliseconds between Snyk's answer and that write
		// is the one window no engine can close, since Snyk offers no way
		// to read a provisional token again.
		waitServed(t, a, bpath, "next_broker_token", sim.integration(t, org, "gitlab").ProvisionalToken, 10*time.Second)
		return killActive(a, "after the provision was stored")
	})
	final := sim.integration(t, org, "gitlab")
	err = waitFor(15*time.Second, 200*time.Millisecond, func() (bool, error) {
		b, err := os.ReadFile(agentFile)
		return err == nil && string(b) == final.CurrentToken, nil
	})
	if err != nil {
		t.Errorf("the Vault Agent on a standby did not re-render the switched token within 15 s")
	}

	// 2. kill -9 right after Snyk applied the switch, its answer held back.
	rotation(2, "kill -9 of the active node after Snyk applied a switch (answer held)", func(a *vaultServer) time.Duration {
		waitSim(t, sim, org, period, func(in simIntegration) bool { return in.ProvisionalToken != "" })
		if err := sim.adminDo("POST", "/faults", map[string]interface{}{
			"target": "snyk", "route": "POST /v1/org/{orgId}/integrations/{integrationId}/authentication/switch-token",
			"status": 504, "delay_ms": 8000, "after_handler": true, "times": 1,
		}, nil); err != nil {
			t.Fatal(err)
		}
		waitSim(t, sim, org, period, func(in simIntegration) bool { return in.Switches == 2 })
		return killActive(a, "after Snyk switched")
	})

	// 3. step-down while a provision call is in flight.
	rotation(3, "vault operator step-down during a provision call", func(a *vaultServer) time.Duration {
		route := "POST /v1/org/{orgId}/integrations/{integrationId}/authentication/provision-token"
		callsBefore := sim.calls(t, "snyk")[route]
		// Snyk applies the provision at once and answers 3 s later: the
		// stepping-down node must wait for the answer and store the token,
		// or no one could ever read it and the group would be blocked.
		if err := sim.adminDo("POST", "/faults", map[string]interface{}{
			"target": "snyk", "route": route, "delay_ms": 3000, "after_handler": true, "times": 1,
		}, nil); err != nil {
			t.Fatal(err)
		}
		err := waitFor(period, 50*time.Millisecond, func() (bool, error) {
			return sim.calls(t, "snyk")[route] > callsBefore, nil
		})
		if err != nil {
			t.Fatalf("no provision call arrived: %v", err)
		}
		steppedAt := time.Now()
		if err := a.client.Sys().StepDown(); err != nil {
			t.Fatalf("step-down: %v", err)
		}
		if h, err := a.client.Sys().Health(); err != nil || !h.Standby {
			t.Logf("right after its step-down %s reports standby=%v (%v): the node waits for the call in flight", a.addr, h != nil && h.Standby, err)
		}
		next := c.waitActive(t, a, 60*time.Second)
		took := time.Since(steppedAt)
		t.Logf("stepped %s down during the provision; %s active after %s", a.addr, next.addr, took.Round(100*time.Millisecond))
		return took
	})

	readers.stop()
	total := readers.since(readerStats{})
	report(t, "HA fail-over (3-node Raft, 1 reader per node every 100 ms; rotations exactly once each):\n"+
		"| leadership change | new active after | reads ok | reads failed | longest gap |\n|---|---|---|---|---|\n"+
		strings.Join(figures, "\n")+
		fmt.Sprintf("\n| whole run | | %d | %d | %s |", total.ok, total.failed, total.longestGap.Round(100*time.Millisecond)))
	if total.failed > 0 {
		t.Logf("failed reads by error: %v", readers.errorCounts())
	}
}

// waitSim waits until the fake Snyk's view of the integration satisfies ok.
func waitSim(t *testing.T, sim *simulator, org string, timeout time.Duration, ok func(simIntegration) bool) {
	t.Helper()
	err := waitFor(timeout+10*time.Second, 50*time.Millisecond, func() (bool, error) {
		return ok(sim.integration(t, org, "gitlab")), nil
	})
	if err != nil {
		t.Fatalf("waiting on Snyk's state: %v", err)
	}
}

// waitServed waits until node v serves token at path as field
// (broker_token, or next_broker_token while a provisional token is held).
func waitServed(t *testing.T, v *vaultServer, path, field, token string, timeout time.Duration) {
	t.Helper()
	c := clientOf(t, v, 5*time.Second)
	err := waitFor(timeout, 20*time.Millisecond, func() (bool, error) {
		sec, err := c.Logical().Read(path)
		if err != nil || sec == nil {
			return false, nil
		}
		return str(sec.Data[field]) == token, nil
	})
	if err != nil {
		t.Fatalf("%s does not serve the token Snyk expects as %s: %v", v.addr, field, err)
	}
}

// haReaders reads one path from every node in a loop.
type haReaders struct {
	mu      sync.Mutex
	stopped chan struct{}
	wg      sync.WaitGroup
	isDown  map[*vaultServer]bool
	reads   []haRead
}

type haRead struct {
	node *vaultServer
	at   time.Time
	err  string
}

type readerStats struct {
	ok, failed int
	longestGap time.Duration
	upTo       int
}

func startHAReaders(t *testing.T, c *vaultCluster, path string) *haReaders {
	t.Helper()
	r := &haReaders{stopped: make(chan struct{}), isDown: map[*vaultServer]bool{}}
	for _, v := range c.nodes {
		client := clientOf(t, v, 2*time.Second)
		r.wg.Add(1)
		go func(v *vaultServer) {
			defer r.wg.Done()
			for {
				select {
				case <-r.stopped:
					return
				case <-time.After(100 * time.Millisecond):
				}
				r.mu.Lock()
				down := r.isDown[v]
				r.mu.Unlock()
				if down {
					continue
				}
				sec, err := client.Logical().Read(path)
				msg := ""
				switch {
				case err != nil:
					msg = err.Error()
				case sec == nil || str(sec.Data["broker_token"]) == "":
					msg = "no broker_token"
				}
				r.mu.Lock()
				// A read that raced the node's kill is not the cluster's
				// failure: only reads of a node that was up count.
				if !r.isDown[v] {
					r.reads = append(r.reads, haRead{node: v, at: time.Now(), err: msg})
				}
				r.mu.Unlock()
			}
		}(v)
	}
	t.Cleanup(r.stop)
	return r
}

// down marks a node as about to be killed; up as back in the cluster.
func (r *haReaders) down(v *vaultServer) { r.mu.Lock(); r.isDown[v] = true; r.mu.Unlock() }
func (r *haReaders) up(v *vaultServer)   { r.mu.Lock(); delete(r.isDown, v); r.mu.Unlock() }

func (r *haReaders) stop() {
	select {
	case <-r.stopped:
	default:
		close(r.stopped)
	}
	r.wg.Wait()
}

func (r *haReaders) snapshot() readerStats {
	r.mu.Lock()
	defer r.mu.Unlock()
	return readerStats{upTo: len(r.reads)}
}

// since counts the reads after from and the longest time any node went
// without a successful read while it was up.
func (r *haReaders) since(from readerStats) readerStats {
	r.mu.Lock()
	defer r.mu.Unlock()
	st := readerStats{upTo: len(r.reads)}
	lastOK := map[*vaultServer]time.Time{}
	for _, rd := range r.reads[from.upTo:] {
		if rd.err != "" {
			st.failed++
			continue
		}
		st.ok++
		if prev, ok := lastOK[rd.node]; ok && rd.at.Sub(prev) > st.longestGap {
			st.longestGap = rd.at.Sub(prev)
		}
		lastOK[rd.node] = rd.at
	}
	return st
}

func (r *haReaders) errorCounts() map[string]int {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := map[string]int{}
	for _, rd := range r.reads {
		if rd.err != "" {
			msg := rd.err
			if i := strings.LastIndex(msg, "* "); i >= 0 {
				msg = msg[i:]
			}
			if len(msg) > 120 {
				msg = msg[:120]
			}
			out[fmt.Sprintf("reader of %s: %s", rd.node.addr, strings.TrimSpace(msg))]++
		}
	}
	return out
}

// startHAAgent runs a Vault Agent in template mode against standby sb,
// rendering the broker token to a file; it returns the file's path.
func startHAAgent(t *testing.T, c *vaultCluster, sb *vaultServer, path string) string {
	t.Helper()
	dir := filepath.Join(c.dir, "agent")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	tokenFile := filepath.Join(dir, "token")
	if err := os.WriteFile(tokenFile, []byte(sb.rootToken+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "broker_token")
	hcl := tokenFileAuthHCL(sb.addr, tokenFile) + fmt.Sprintf(`template {
  contents    = %q
  destination = %q
}
`, fmt.Sprintf("{{ with secret %q }}{{ .Data.broker_token }}{{ end }}", path), out)
	startAgent(t, dir, hcl, out)
	err := waitFor(30*time.Second, 100*time.Millisecond, func() (bool, error) {
		b, err := os.ReadFile(out)
		return err == nil && len(b) > 0, nil
	})
	if err != nil {
		t.Fatalf("the Agent on standby %s rendered nothing: %v", sb.addr, err)
	}
	return out
}
