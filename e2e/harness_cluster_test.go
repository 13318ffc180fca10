package e2e

import (
	"errors"
	"fmt"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/vault/api"
)

// vaultCluster is Vault servers on loopback sharing integrated storage
// (Raft): each with its own data directory, plugin directory (holding the
// same plugin binary), API and cluster ports, and a retry_join stanza for
// every node, as a production cluster is configured.
type vaultCluster struct {
	dir   string
	nodes []*vaultServer
}

func newVaultCluster(dir string, n int) (*vaultCluster, error) {
	type ports struct{ api, cluster int }
	all := make([]ports, n)
	for i := range all {
		var err error
		if all[i].api, err = freePort(); err != nil {
			return nil, err
		}
		if all[i].cluster, err = freePort(); err != nil {
			return nil, err
		}
	}
	c := &vaultCluster{dir: dir}
	for i, p := range all {
		nodeID := fmt.Sprintf("node%d", i+1)
		joins := ""
		for j, q := range all {
			if j != i {
				joins += fmt.Sprintf("  retry_join {\n    leader_api_addr = \"http://127.0.0.1:%d\"\n  }\n", q.api)
			}
		}
		// performance_multiplier 1: Raft's own timings (elections in about a
		// second), as HashiCorp advises for fast, reliable networks; the
		// default 5 suits cloud VMs and would only slow the fail-overs
		// measured here.
		storage := func(dataDir string) string {
			return fmt.Sprintf("storage \"raft\" {\n  path                   = %q\n  node_id                = %q\n  performance_multiplier = 1\n%s}\n", dataDir, nodeID, joins)
		}
		v, err := newVaultServerOn(filepath.Join(dir, nodeID), p.api, p.cluster, storage, "debug")
		if err != nil {
			return nil, err
		}
		c.nodes = append(c.nodes, v)
	}
	return c, nil
}

// start starts every node, initialises the first (one Shamir key) and
// unseals the others, which join it through retry_join.
func (c *vaultCluster) start() error {
	for _, v := range c.nodes {
		if err := v.start(); err != nil {
			return err
		}
	}
	first := c.nodes[0]
	if err := first.initialize(); err != nil {
		return fmt.Errorf("%w\n%s", err, tailFile(first.logPath, 60))
	}
	for _, v := range c.nodes[1:] {
		v.unsealKey, v.rootToken = first.unsealKey, first.rootToken
		v.client.SetToken(first.rootToken)
		if err := c.unsealStandby(v); err != nil {
			return err
		}
	}
	return c.waitVoters(len(c.nodes))
}

// unsealStandby unseals a node that joins (or rejoins) the cluster and waits
// until it serves as a standby.
func (c *vaultCluster) unsealStandby(v *vaultServer) error {
	// One unseal call, once the node has joined (retry_join makes it
	// initialized): supplying the key again while it unseals starts a
	// second unseal, after which the node ignores step-down requests once
	// active (seen with Vault 1.21).
	err := waitFor(60*time.Second, 250*time.Millisecond, func() (bool, error) {
		st, err := v.client.Sys().SealStatus()
		if err != nil {
			return false, err
		}
		return st.Initialized, nil
	})
	if err != nil {
		return fmt.Errorf("%s never joined the cluster: %w\n%s", v.addr, err, tailFile(v.logPath, 40))
	}
	if _, err := v.client.Sys().Unseal(v.unsealKey); err != nil {
		return fmt.Errorf("unsealing %s: %w", v.addr, err)
	}
	err = waitFor(60*time.Second, 250*time.Millisecond, func() (bool, error) {
		st, err := v.client.Sys().SealStatus()
		if err != nil {
			return false, err
		}
		return !st.Sealed, nil
	})
	if err != nil {
		return fmt.Errorf("unsealing %s: %w\n%s", v.addr, err, tailFile(v.logPath, 40))
	}
	return waitFor(60*time.Second, 250*time.Millisecond, func() (bool, error) {
		h, err := v.client.Sys().Health()
		if err != nil {
			return false, err
		}
		return !h.Sealed && h.Standby, nil
	})
}

// waitVoters waits until the Raft configuration lists n voters.
func (c *vaultCluster) waitVoters(n int) error {
	return waitFor(60*time.Second, 250*time.Millisecond, func() (bool, error) {
		a, err := c.active()
		if err != nil {
			return false, nil
		}
		sec, err := a.client.Logical().Read("sys/storage/raft/configuration")
		if err != nil || sec == nil {
			return false, err
		}
		cfg, _ := sec.Data["config"].(map[string]interface{})
		servers, _ := cfg["servers"].([]interface{})
		voters := 0
		for _, s := range servers {
			if m, ok := s.(map[string]interface{}); ok && m["voter"] == true {
				voters++
			}
		}
		return voters == n, nil
	})
}

// active is the node that reports itself active (unsealed, not standby).
func (c *vaultCluster) active() (*vaultServer, error) {
	for _, v := range c.nodes {
		if v.proc == nil || v.proc.exited() {
			continue
		}
		h, err := v.client.Sys().Health()
		if err == nil && !h.Sealed && !h.Standby {
			return v, nil
		}
	}
	return nil, errors.New("no active node")
}

// waitActive waits for an active node other than not (nil: any).
func (c *vaultCluster) waitActive(t *testing.T, not *vaultServer, timeout time.Duration) *vaultServer {
	t.Helper()
	var a *vaultServer
	err := waitFor(timeout, 100*time.Millisecond, func() (bool, error) {
		v, err := c.active()
		if err != nil || v == not {
			return false, nil
		}
		a = v
		return true, nil
	})
	if err != nil {
		t.Fatalf("no new active node within %s", timeout)
	}
	return a
}

// standby is a live node other than the active one.
func (c *vaultCluster) standby(t *testing.T) *vaultServer {
	t.Helper()
	a, err := c.active()
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range c.nodes {
		if v != a && v.proc != nil && !v.proc.exited() {
			return v
		}
	}
	t.Fatal("no live standby")
	return nil
}

// kill9 kills a node and its plugin processes (its process group) with
// SIGKILL: no step-down, no cleanup, as a crashed machine.
func (c *vaultCluster) kill9(t *testing.T, v *vaultServer) {
	t.Helper()
	pid := v.proc.pid()
	if err := syscall.Kill(-pid, syscall.SIGKILL); err != nil {
		t.Fatalf("kill -9 %d: %v", pid, err)
	}
	<-v.proc.done
	appendLine(v.logPath, fmt.Sprintf("===== e2e: killed with SIGKILL at %s =====", time.Now().Format(time.RFC3339Nano)))
}

// restart starts a killed node again and unseals it back into the cluster.
func (c *vaultCluster) restart(t *testing.T, v *vaultServer) {
	t.Helper()
	if err := v.start(); err != nil {
		t.Fatal(err)
	}
	if err := c.unsealStandby(v); err != nil {
		t.Fatal(err)
	}
}

func (c *vaultCluster) stop() {
	for _, v := range c.nodes {
		v.stop()
	}
}

// dumpOnFailure prints the tail of every node's log.
func (c *vaultCluster) dumpOnFailure(t *testing.T) {
	t.Helper()
	if !t.Failed() {
		return
	}
	for i, v := range c.nodes {
		logTail(t, fmt.Sprintf("node%d (%s) Vault log", i+1, v.addr), v.logPath, 80)
	}
}

// clientOf is a root client of node v with its own timeout, for readers
// that must not wait a minute on a dead node.
func clientOf(t *testing.T, v *vaultServer, timeout time.Duration) *api.Client {
	t.Helper()
	c := v.tokenClient(t, v.rootToken)
	c.SetClientTimeout(timeout)
	return c
}
