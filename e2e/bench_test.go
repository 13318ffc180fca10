package e2e

import (
	"github.com/hashicorp/vault/api"

	"os"
	"strconv"
	"strings"
	"testing"
)

// BenchmarkVaultRead compares, on the same real Vault, a read of the
// engine's leased broker secret with a read of the same data from KV v2.
// The engine's read also creates a lease; KV's does not. Reported per op:
// the client-observed latency (ns/op) and the Vault server's RSS growth.
//
//	make bench
func BenchmarkVaultRead(b *testing.B) {
	if env.skipReason != "" {
		b.Skip(env.skipReason)
	}
	dir := b.TempDir()
	s, err := newStack(dir)
	if err != nil {
		b.Fatal(err)
	}
	defer s.stop()
	c := s.vault.client
	org := s.sim.info.Orgs["payments"]
	if err := s.sim.adminDo("POST", "/integrations", map[string]interface{}{"org_id": org, "type": "github", "brokered": false}, nil); err != nil {
		b.Fatal(err)
	}
	if _, err := c.Logical().Write(mountPath+"/integrations/payments/github", map[string]interface{}{
		"org_id": org, "scm_token": s.sim.info.GitHubToken, "scm_api_url": s.sim.info.GitHubURL,
	}); err != nil {
		b.Fatal(err)
	}
	broker, err := c.Logical().Read(mountPath + "/broker/payments/github")
	if err != nil || broker == nil {
		b.Fatalf("broker read: %v", err)
	}
	if err := c.Sys().Mount("kv", &api.MountInput{Type: "kv", Options: map[string]string{"version": "2"}}); err != nil {
		b.Fatal(err)
	}
	if _, err := c.Logical().Write("kv/data/snyk/broker/payments/github", map[string]interface{}{"data": broker.Data}); err != nil {
		b.Fatal(err)
	}

	for _, bc := range []struct{ name, path string }{
		{"engine-broker-read", mountPath + "/broker/payments/github"},
		{"kv-v2-read", "kv/data/snyk/broker/payments/github"},
		// The same plugin round trip without a lease, to tell the cost of
		// the plugin RPC from the cost of Vault storing a lease.
		{"engine-integration-read-no-lease", mountPath + "/integrations/payments/github"},
	} {
		b.Run(bc.name, func(b *testing.B) {
			rssBefore := rssKB(s.vault.proc.pid())
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				sec, err := c.Logical().Read(bc.path)
				if err != nil || sec == nil {
					b.Fatalf("read %s: %v", bc.path, err)
				}
			}
			b.StopTimer()
			if rssBefore > 0 {
				b.ReportMetric(float64(rssKB(s.vault.proc.pid())-rssBefore)*1024/float64(b.N), "server-RSS-B/op")
			}
		})
	}
}

// rssKB reads a process's resident set size from /proc (0 when unknown).
func rssKB(pid int) int64 {
	raw, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(raw), "\n") {
		if strings.HasPrefix(line, "VmRSS:") {
			f := strings.Fields(line)
			if len(f) >= 2 {
				n, _ := strconv.ParseInt(f[1], 10, 64)
				return n
			}
		}
	}
	return 0
}
