package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/hashicorp/vault/api"
)

// perfCell is how long each cell of the read table runs.
func perfCell() time.Duration {
	if v, err := time.ParseDuration(os.Getenv("SNYK_PERF_CELL")); err == nil && v > 0 {
		return v
	}
	return 10 * time.Second
}

// perfStack is a stack for figures: the given storage, info logs, no audit
// device (each would cost every request alike).
func perfStack(t *testing.T, storage func(string) string, config map[string]interface{}) *stack {
	t.Helper()
	s, err := newStackWith(t.TempDir(), stackOptions{storage: storage, logLevel: "info", noAudit: true, config: config})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.stop)
	s.dumpOnFailure(t)
	return s
}

// TestPerformanceReadTable prints, for in-memory and single-node Raft
// storage, the read table at 1, 8 and 64 concurrent clients: KV v2, the
// engine's config, an integration (no lease) and the leased broker bundle,
// a KV v2 write for scale and Vault's own leased KV read of the same bundle;
// then the ratios broker/config, broker/KV v2 and broker/leased KV.
func TestPerformanceReadTable(t *testing.T) {
	perfEnabled(t)
	cell := perfCell()
	for _, st := range []struct {
		name    string
		storage func(string) string
	}{{"in-memory", inmemStorage}, {"raft", raftStorage}} {
		t.Run(st.name, func(t *testing.T) {
			s := perfStack(t, st.storage, nil)
			c := s.vault.client
			org := s.sim.info.Orgs["payments"]
			s.sim.addIntegration(t, org, "github", false)
			s.write(t, mountPath+"/integrations/payments/github", map[string]interface{}{
				"org_id": org, "scm_token": s.sim.info.GitHubToken, "scm_api_url": s.sim.info.GitHubURL,
			})
			broker := s.read(t, mountPath+"/broker/payments/github")
			if err := c.Sys().Mount("kv", &api.MountInput{Type: "kv", Options: map[string]string{"version": "2"}}); err != nil {
				t.Fatal(err)
			}
			if _, err := c.Logical().Write("kv/data/bench", map[string]interface{}{"data": broker.Data}); err != nil {
				t.Fatal(err)
			}
			// Vault's own leased read of the same bundle, in process: what a
			// lease costs Vault without a plugin.
			if err := c.Sys().Mount("leased-kv", &api.MountInput{Type: "kv", Options: map[string]string{"version": "1", "leased_passthrough": "true"}}); err != nil {
				t.Fatal(err)
			}
			leased := map[string]interface{}{"ttl": "1h"}
			for k, v := range broker.Data {
				leased[k] = v
			}
			if _, err := c.Logical().Write("leased-kv/bench", leased); err != nil {
				t.Fatal(err)
			}
			write, _ := json.Marshal(map[string]interface{}{"data": map[string]string{"broker_token": str(broker.Data["broker_token"])}})
			ops := []struct {
				name string
				req  vaultRequest
			}{
				{"KV v2 read", vaultRequest{method: "GET", path: "kv/data/bench"}},
				{"snyk/config", vaultRequest{method: "GET", path: mountPath + "/config"}},
				{"snyk/integrations/<name>/<scm> (no lease)", vaultRequest{method: "GET", path: mountPath + "/integrations/payments/github"}},
				{"snyk/broker/<name>/<scm> (leased)", vaultRequest{method: "GET", path: mountPath + "/broker/payments/github"}},
				{"KV v2 write", vaultRequest{method: "POST", path: "kv/data/bench-write", body: write}},
				{"Vault's leased KV (same bundle)", vaultRequest{method: "GET", path: "leased-kv/bench"}},
			}
			token := s.vault.rootToken
			results := map[string]map[int]loadResult{}
			for _, clients := range []int{1, 8, 64} {
				for _, op := range ops {
					r := runLoad(s.vault.addr, token, clients, cell, op.req)
					if results[op.name] == nil {
						results[op.name] = map[int]loadResult{}
					}
					results[op.name][clients] = r
					report(t, fmt.Sprintf("bench %-9s %2d clients  %-44s %s", st.name, clients, op.name, r))
					if r.failures > 0 {
						t.Errorf("%s with %d clients: %d requests failed (first: %s)", op.name, clients, r.failures, r.firstFailure)
					}
				}
				b := results[ops[3].name][clients].rps()
				report(t, fmt.Sprintf("bench %-9s %2d clients  ratios: broker/config %.2f×, broker/KV v2 read %.2f×, broker/KV v2 write %.2f×, broker/leased KV %.2f×",
					st.name, clients, b/results[ops[1].name][clients].rps(), b/results[ops[0].name][clients].rps(), b/results[ops[4].name][clients].rps(), b/results[ops[5].name][clients].rps()))
			}
			if pids := pluginPIDs(t, s); len(pids) > 0 {
				report(t, fmt.Sprintf("bench %-9s plugin RSS after the table: %.1f MiB", st.name, float64(procRSSKB(pids[0]))/1024))
			}
		})
	}
}

// TestPerformanceHerd: 1,000 concurrent readers of one integration, each
// re-reading when its lease ends, as Vault Agent does; at the switch every
// lease ends at once. Every read must succeed; printed are the read p99 and
// how long after the switch the last reader held the new token.
func TestPerformanceHerd(t *testing.T) {
	perfEnabled(t)
	s := perfStack(t, inmemStorage, nil)
	org := s.sim.info.Orgs["payments"]
	s.sim.addIntegration(t, org, "github", false)
	const readers = 1000
	s.write(t, mountPath+"/integrations/payments/github", map[string]interface{}{
		"org_id": org, "scm_token": s.sim.info.GitHubToken, "scm_api_url": s.sim.info.GitHubURL,
		"rotation_period": "40s", "provision_ahead": "15s", "ttl": "30s",
	})
	integ := s.read(t, mountPath+"/integrations/payments/github")
	switchAt, err := time.Parse(time.RFC3339, str(integ.Data["next_vault_rotation"]))
	if err != nil {
		t.Fatal(err)
	}
	old := str(s.read(t, mountPath+"/broker/payments/github").Data["broker_token"])

	type outcome struct {
		latencies []time.Duration
		failures  int
		newAt     time.Time
		reads     int
	}
	results := make(chan outcome, readers)
	deadline := switchAt.Add(45 * time.Second)
	for i := 0; i < readers; i++ {
		go func() {
			var o outcome
			// Each reader its own client and connection, as separate Agents.
			cfg := api.DefaultConfig()
			cfg.Address = s.vault.addr
			cfg.MaxRetries = 0
			cfg.Timeout = 30 * time.Second
			c, err := api.NewClient(cfg)
			if err != nil {
				o.failures++
				results <- o
				return
			}
			c.SetToken(s.vault.rootToken)
			for time.Now().Before(deadline) {
				t0 := time.Now()
				sec, err := c.Logical().Read(mountPath + "/broker/payments/github")
				o.latencies = append(o.latencies, time.Since(t0))
				o.reads++
				if err != nil || sec == nil {
					o.failures++
					time.Sleep(time.Second)
					continue
				}
				if tok := str(sec.Data["broker_token"]); tok != old {
					o.newAt = time.Now()
					break
				}
				// Re-read when the lease ends, as Agent does with a
				// non-renewable lease.
				time.Sleep(time.Duration(sec.LeaseDuration) * time.Second)
			}
			results <- o
		}()
	}
	var all []time.Duration
	failures, reads := 0, 0
	var last time.Time
	missing := 0
	for i := 0; i < readers; i++ {
		o := <-results
		all = append(all, o.latencies...)
		failures += o.failures
		reads += o.reads
		if o.newAt.IsZero() {
			missing++
		} else if o.newAt.After(last) {
			last = o.newAt
		}
	}
	switched, err := time.Parse(time.RFC3339, str(s.read(t, mountPath+"/integrations/payments/github").Data["last_vault_rotation"]))
	if err != nil {
		t.Fatal(err)
	}
	p50, p99, maxD := percentiles(all)
	report(t, fmt.Sprintf("herd: %d readers, %d reads, %d failed, read p50 %.1f ms p99 %.1f ms max %.1f ms; last reader on the new token %.2f s after the switch (%d never saw it)",
		readers, reads, failures, ms(p50), ms(p99), ms(maxD), last.Sub(switched).Seconds(), missing))
	if failures > 0 || missing > 0 {
		t.Errorf("herd: %d reads failed, %d readers never saw the new token", failures, missing)
	}
}
