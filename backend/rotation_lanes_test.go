package backend

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/vault/sdk/framework"
	"github.com/hashicorp/vault/sdk/logical"

	"github.com/snyk-vault/vault-plugin-secrets-snyk/backend/fault"
	"github.com/snyk-vault/vault-plugin-secrets-snyk/backend/snyk/snyktest"
)

// TestLaneReleasedWhereItWasReserved is the wedge once found in review: an
// adoption while the org's group look-up fails reserves the mount-wide lane;
// a later manual rotation resolves the group and switches. The mount lane
// must be freed by that switch, or every other integration of the mount
// waits silently forever.
func TestLaneReleasedWhereItWasReserved(t *testing.T) {
	env := newTestEnv(t)
	env.configure(map[string]interface{}{"rotation_period": "1h", "provision_ahead": "10m"})
	other, _ := env.snyk.AddIntegration(testOtherOrgID, "github", false)
	env.mustOK(logical.CreateOperation, "integrations/"+testOtherOrgID+"/github", env.integrationData("github"))
	env.initialize()

	env.snyk.Faults().Inject(snyktest.RouteOrg, fault.Fault{Status: http.StatusServiceUnavailable})
	env.snyk.AddIntegration(testOrgID, "github", true)
	env.clock.Advance(5 * time.Minute)
	resp := env.mustOK(logical.CreateOperation, "integrations/"+testOrgID+"/github", env.integrationData("github"))
	if resp.Data["token_source"] != sourceAdopted {
		t.Fatalf("setup: not adopted: %v", resp.Data)
	}
	if lane, ok := env.b.rotation.holdsSlot(testOrgID + "/github"); !ok || lane != laneMount {
		t.Fatalf("setup: the adoption holds %q, want the mount lane", lane)
	}
	env.snyk.Faults().Clear()
	env.mustOK(logical.UpdateOperation, "broker/"+testOrgID+"/github/rotate", nil)
	if snaps := env.b.rotation.laneSnapshots(); len(snaps) != 0 {
		t.Fatalf("lanes still held after the switch: %+v", snaps)
	}

	env.advance(50*time.Minute, time.Minute)
	if env.snyk.ProvisionalToken(other) == "" {
		t.Fatalf("the other integration never provisioned: %v", env.mustOK(logical.ReadOperation, "integrations/"+testOtherOrgID+"/github", nil).Data)
	}
}

// TestAdoptionFailuresReleaseTheSlot: every way a create can fail after
// reserving the group's slot releases it, so nothing waits on a key that
// holds no token.
func TestAdoptionFailuresReleaseTheSlot(t *testing.T) {
	cases := []struct {
		name    string
		arm     func(env *testEnv)
		wantWAL int
	}{
		{"WAL put fails", func(env *testEnv) { env.view.fail("put", "wal/", 0, 1) }, 0},
		{"provision refused", func(env *testEnv) {
			env.snyk.Faults().Inject(snyktest.RouteProvisionToken, fault.Fault{Status: http.StatusForbidden, Body: `{"code":403,"message":"Forbidden","error":"Forbidden"}`, Times: 1})
		}, 0},
		{"provision answer lost", func(env *testEnv) {
			env.snyk.Faults().Inject(snyktest.RouteProvisionToken, fault.Fault{Status: http.StatusBadGateway, AfterHandler: true, Times: 1})
		}, 1},
		{"provision times out", func(env *testEnv) {
			env.snyk.Faults().Inject(snyktest.RouteProvisionToken, fault.Fault{Status: http.StatusGatewayTimeout, AfterHandler: true, Times: 1})
		}, 1},
		{"adopted token not stored", func(env *testEnv) { env.view.fail("put", "integrations/", 0, 0) }, 1},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			env := newTestEnv(t)
			env.configure(map[string]interface{}{"rotation_period": "1h", "provision_ahead": "10m"})
			env.initialize()
			env.snyk.AddIntegration(testOrgID, "github", true)
			c.arm(env)
			resp, err := env.request(logical.CreateOperation, "integrations/"+testOrgID+"/github", env.integrationData("github"))
			if err == nil && (resp == nil || !resp.IsError()) {
				t.Fatal("the create succeeded")
			}
			env.view.clear()
			if snaps := env.b.rotation.laneSnapshots(); len(snaps) != 0 {
				t.Fatalf("the failed create left a slot held: %+v", snaps)
			}
			if _, held := env.b.rotation.holdsSlot(testOrgID + "/github"); held {
				t.Fatal("the failed create still holds a slot")
			}
			if e, _ := getIntegration(context.Background(), env.storage, testOrgID, "github"); e != nil {
				t.Fatal("the failed create stored the integration")
			}
			if wals, _ := framework.ListWAL(context.Background(), env.storage); len(wals) != c.wantWAL {
				t.Fatalf("WAL entries = %d, want %d", len(wals), c.wantWAL)
			}
		})
	}
}

// TestWaitersRecordWhyAndOverdueHoldersAreReported: an integration that waits
// for its group's slot says so, and when the holder's switch is overdue the
// waiters are told who blocks them and since when.
func TestWaitersRecordWhyAndOverdueHoldersAreReported(t *testing.T) {
	env := newTestEnv(t)
	env.configure(map[string]interface{}{"rotation_period": "1h", "provision_ahead": "10m"})
	env.snyk.AddIntegration(testOrgID, "github", false)
	env.mustOK(logical.CreateOperation, "integrations/"+testOrgID+"/github", env.integrationData("github"))
	env.clock.Advance(2 * time.Minute)
	env.snyk.AddIntegration(testOtherOrgID, "github", false)
	env.mustOK(logical.CreateOperation, "integrations/"+testOtherOrgID+"/github", env.integrationData("github"))
	env.initialize()

	// The first provisions at 50m and its switches then fail for good.
	env.snyk.Faults().Inject(snyktest.RouteSwitchToken, fault.Fault{Status: http.StatusBadRequest, Body: `{"code":400,"message":"Bad Request","error":"Bad Request"}`})
	env.advance(55*time.Minute, time.Second)
	waiting := env.mustOK(logical.ReadOperation, "integrations/"+testOtherOrgID+"/github", nil).Data["last_rotation_error"].(string)
	if !strings.Contains(waiting, "waiting for "+testOrgID+"/github") {
		t.Fatalf("the waiter records no reason: %q", waiting)
	}
	env.advance(30*time.Minute, 10*time.Second)
	overdue := env.mustOK(logical.ReadOperation, "integrations/"+testOtherOrgID+"/github", nil).Data["last_rotation_error"].(string)
	if !strings.Contains(overdue, "has not happened") || !strings.Contains(overdue, "Bad Request") {
		t.Fatalf("the overdue holder is not reported to its waiter: %q", overdue)
	}
	if !strings.Contains(env.logs.String(), "rotations wait for an overdue switch") {
		t.Error("the overdue holder is not logged")
	}
}

// TestOrphanedSlotIsFreed: a slot whose holder no longer exists or holds no
// provisional token is freed by the loop, and its waiters go.
func TestOrphanedSlotIsFreed(t *testing.T) {
	env := newTestEnv(t)
	env.configure(map[string]interface{}{"rotation_period": "1h", "provision_ahead": "10m"})
	waiter, _ := env.snyk.AddIntegration(testOrgID, "github", false)
	env.mustOK(logical.CreateOperation, "integrations/"+testOrgID+"/github", env.integrationData("github"))
	env.initialize()
	// A reservation nothing backs, as a defect would leave behind.
	env.b.rotation.hold("group:"+testGroupID, "ghost/github")
	env.advance(52*time.Minute, time.Minute)
	if env.snyk.ProvisionalToken(waiter) == "" {
		t.Fatal("the waiter behind an orphaned slot never provisioned")
	}
	if !strings.Contains(env.logs.String(), "freeing a Snyk group slot that no provisional token holds") {
		t.Error("freeing the orphaned slot is not logged")
	}
}

// TestLaneInvariantsUnderRandomOperations drives random sequences of create
// (adopting or enabling), delete, manual rotation, time passing, Snyk and
// storage faults and restarts on integrations of one Snyk group, and checks
// after every step that every held slot is backed by a provisional token
// Vault holds (or may hold: a provision whose answer was lost), and that no
// due integration waits without a recorded reason.
func TestLaneInvariantsUnderRandomOperations(t *testing.T) {
	seeds := []uint64{1, 2, 3, 4, 5, 6, 7, 8}
	steps := 120
	if testing.Short() {
		seeds, steps = seeds[:2], 60
	}
	for _, seed := range seeds {
		t.Run(fmt.Sprintf("seed-%d", seed), func(t *testing.T) {
			runLaneProperty(t, seed, steps)
		})
	}
}

type laneSubject struct{ org, scm string }

func runLaneProperty(t *testing.T, seed uint64, steps int) {
	rng := rand.New(rand.NewPCG(seed, seed*7919))
	env := newTestEnv(t)
	env.configure(map[string]interface{}{"rotation_period": "1h", "provision_ahead": "10m", "ttl": "30m"})
	env.initialize()
	subjects := []laneSubject{{testOrgID, "github"}, {testOtherOrgID, "github"}, {testOrgID, "gitlab"}}
	var log []string

	for step := 0; step < steps; step++ {
		s := subjects[rng.IntN(len(subjects))]
		path := "integrations/" + s.org + "/" + s.scm
		var op string
		switch r := rng.IntN(100); {
		case r < 20:
			op = "create " + path
			if _, ok := env.snyk.IntegrationIDs(s.org)[s.scm]; !ok {
				env.snyk.AddIntegration(s.org, s.scm, rng.IntN(2) == 0)
			}
			_, _ = env.request(logical.CreateOperation, path, env.integrationData(s.scm))
		case r < 27:
			op = "delete " + path
			_, _ = env.request(logical.DeleteOperation, path, nil)
		case r < 40:
			op = "rotate " + path
			_, _ = env.request(logical.UpdateOperation, "broker/"+s.org+"/"+s.scm+"/rotate", nil)
		case r < 70:
			d := time.Duration(1+rng.IntN(30*60)) * time.Second
			op = fmt.Sprintf("advance %s", d)
			env.advance(d, 10*time.Second)
		case r < 78:
			route := []string{snyktest.RouteProvisionToken, snyktest.RouteSwitchToken, snyktest.RouteOrg}[rng.IntN(3)]
			f := fault.Fault{Status: http.StatusBadGateway, AfterHandler: rng.IntN(2) == 0, Times: 1 + rng.IntN(3)}
			op = fmt.Sprintf("fault %s %+v", route, f)
			env.snyk.Faults().Inject(route, f)
		case r < 84:
			op = "storage put fault"
			env.view.fail("put", "integrations/", rng.IntN(2), 1+rng.IntN(6))
		case r < 90:
			op = "clear faults"
			env.snyk.Faults().Clear()
			env.view.clear()
		default:
			op = "restart"
			env.view.clear()
			env.restart()
		}
		log = append(log, op)
		env.view.clear() // invariants are read with storage answering
		if problem := env.laneProblem(); problem != "" {
			t.Fatalf("after step %d (%s): %s\nsteps:\n  %s", step, op, problem, strings.Join(log, "\n  "))
		}
	}
}

// laneProblem checks the lane invariants, "" when they hold.
func (env *testEnv) laneProblem() string {
	ctx := context.Background()
	m := env.b.rotation
	pendingProvision := map[string]bool{}
	ids, _ := framework.ListWAL(ctx, env.storage)
	for _, id := range ids {
		if w, _ := framework.GetWAL(ctx, env.storage, id); w != nil && w.Kind == walKindProvision {
			var entry walEntry
			if mapToStruct(w.Data, &entry) == nil {
				pendingProvision[queueKey(entry.Name, entry.SCM)] = true
			}
		}
	}
	waiters := map[string]bool{}
	for _, snap := range m.laneSnapshots() {
		for _, w := range snap.waiters {
			waiters[w.key] = true
		}
		if snap.holder == "" {
			continue
		}
		name, kind := splitQueueKey(snap.holder)
		e, err := env.b.currentIntegration(ctx, env.storage, name, kind)
		if err != nil {
			return err.Error()
		}
		switch {
		case e == nil && len(snap.waiters) > 0:
			return fmt.Sprintf("lane %s is held by %s, which does not exist, with %d waiters", snap.name, snap.holder, len(snap.waiters))
		case e != nil && e.ProvisionalToken == "" && !pendingProvision[snap.holder] && e.RetryAt.IsZero() && len(snap.waiters) > 0:
			return fmt.Sprintf("lane %s is held by %s, which holds no provisional token, with waiters", snap.name, snap.holder)
		case e != nil && e.ProvisionalToken != "":
			if p := env.snyk.ProvisionalToken(e.IntegrationID); p != e.ProvisionalToken && !e.SwitchOutcomeUnknown && env.snyk.CurrentToken(e.IntegrationID) != e.ProvisionalToken {
				return fmt.Sprintf("%s holds a provisional token Snyk does not know", snap.holder)
			}
		}
	}
	entries, err := listIntegrations(ctx, env.storage)
	if err != nil {
		return err.Error()
	}
	holders := map[string]string{}
	for _, e := range entries {
		key := queueKey(e.Name, e.SCM)
		if kept := m.unsaved.get(key); kept != nil {
			e = kept
		}
		if e.ProvisionalToken != "" {
			lane, ok := m.holdsSlot(key)
			if !ok {
				return fmt.Sprintf("%s holds a provisional token but no slot", key)
			}
			if prev, dup := holders[lane]; dup {
				return fmt.Sprintf("lane %s backs two provisional tokens: %s and %s", lane, prev, key)
			}
			holders[lane] = key
		}
		if waiters[key] && e.LastRotationError == "" {
			return fmt.Sprintf("%s waits without a recorded reason", key)
		}
		cfg, _ := env.b.configOrDefaults(ctx, env.storage)
		if at, ok := e.nextAction(e.policy(cfg)); ok && env.clock.Now().Sub(at) > time.Minute && !waiters[key] && !m.queued(key) {
			return fmt.Sprintf("%s was due at %s and is neither queued nor waiting", key, at.Format(time.RFC3339))
		}
	}
	return ""
}
