package backend

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/hashicorp/vault/sdk/logical"
)

// BenchmarkBrokerRead measures the in-process cost of serving the leased
// bundle (storage read, env map, lease) — no upstream call is made.
func BenchmarkBrokerRead(b *testing.B) {
	env := newTestEnv(b)
	env.configure(nil)
	env.snyk.AddIntegration(testOrgID, "github", false)
	env.mustOK(logical.CreateOperation, "integrations/"+testOrgID+"/github", env.integrationData("github"))
	req := &logical.Request{Operation: logical.ReadOperation, Path: "broker/" + testOrgID + "/github", Storage: env.storage}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		r := *req
		resp, err := env.b.HandleRequest(context.Background(), &r)
		if err != nil || resp == nil || resp.Secret == nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkRotationTickIdle shows that a tick costs O(due), not
// O(integrations): 10,000 integrations are queued and none is due.
func BenchmarkRotationTickIdle(b *testing.B) {
	for _, n := range []int{100, 10000} {
		b.Run(fmt.Sprintf("integrations=%d", n), func(b *testing.B) {
			env := newTestEnv(b)
			env.configure(nil)
			for i := 0; i < n; i++ {
				e := &integrationEntry{
					Name: fmt.Sprintf("org-%05d", i), SCM: "github", OrgID: testOrgID, IntegrationID: testOrgID,
					SCMToken: ghGood, CurrentToken: testOrgID, RotationState: stateActive,
					NextVaultRotation: env.clock.Now().Add(time.Duration(i+1) * time.Hour),
				}
				if err := putIntegration(context.Background(), env.storage, e); err != nil {
					b.Fatal(err)
				}
			}
			env.initialize()
			// A rotation action and an SCM check per integration.
			if env.b.rotation.queueLen() != 2*n {
				b.Fatalf("queued %d", env.b.rotation.queueLen())
			}
			// The lanes a round of rotations leaves behind: one per
			// ungrouped org, every one of them free.
			for i := 0; i < n; i++ {
				env.b.rotation.lane(fmt.Sprintf("org:%05d", i))
			}
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				env.tick()
			}
		})
	}
}
