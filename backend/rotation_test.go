package backend

import (
	"slices"
	"sync"

	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	hclog "github.com/hashicorp/go-hclog"
	"github.com/hashicorp/vault/sdk/helper/consts"

	"github.com/hashicorp/vault/sdk/logical"

	"github.com/snyk-vault/vault-plugin-secrets-snyk/backend/fault"
	"github.com/snyk-vault/vault-plugin-secrets-snyk/backend/snyk/snyktest"
)

// rotationEnv: a configured engine with one GitHub integration on a
// not-yet-brokered Snyk integration, rotated every hour with a 10-minute
// provision-ahead window.
func rotationEnv(t *testing.T, cfg map[string]interface{}) (*testEnv, string) {
	env := newTestEnv(t)
	base := map[string]interface{}{"rotation_period": "1h", "provision_ahead": "10m", "ttl": "30m"}
	for k, v := range cfg {
		base[k] = v
	}
	env.configure(base)
	integID, _ := env.snyk.AddIntegration(testOrgID, "github", false)
	env.mustOK(logical.CreateOperation, "integrations/"+testOrgID+"/github", env.integrationData("github"))
	env.initialize()
	env.snyk.Faults().ResetCalls()
	return env, integID
}

func (env *testEnv) broker() map[string]interface{} {
	env.t.Helper()
	return env.mustOK(logical.ReadOperation, "broker/"+testOrgID+"/github", nil).Data
}

func (env *testEnv) integration() map[string]interface{} {
	env.t.Helper()
	return env.mustOK(logical.ReadOperation, "integrations/"+testOrgID+"/github", nil).Data
}

func TestRotationPeriodTwoPhases(t *testing.T) {
	env, integID := rotationEnv(t, nil)
	created := env.clock.Now()
	first := env.snyk.CurrentToken(integID)

	// Leases end at the provision, so next_broker_token is seen at once.
	env.advance(45*time.Minute, time.Second)
	if lease := env.mustOK(logical.ReadOperation, "broker/"+testOrgID+"/github", nil).Secret.TTL; lease != 5*time.Minute {
		t.Errorf("lease TTL before the provision = %s, want 5m", lease)
	}
	// Nothing before next − provision_ahead.
	env.advance(4*time.Minute+59*time.Second, time.Second)
	if n := env.snyk.Faults().TotalCalls(); n != 0 {
		t.Fatalf("calls before the provision time: %s", env.snyk.Faults())
	}
	// Provision at 50m: the new token is stored and offered as next_broker_token.
	env.advance(time.Second, time.Second)
	provisional := env.snyk.ProvisionalToken(integID)
	if provisional == "" {
		t.Fatalf("not provisioned at next−provision_ahead: %s", env.snyk.Faults())
	}
	b := env.broker()
	if b["broker_token"] != first || b["next_broker_token"] != provisional {
		t.Errorf("during provision-ahead: broker_token must stay the current one and next_broker_token the provisional one")
	}
	switchAt := created.Add(time.Hour).Format(time.RFC3339)
	if b["next_switch_at"] != switchAt {
		t.Errorf("next_switch_at = %v, want %s", b["next_switch_at"], switchAt)
	}
	if st := env.integration()["rotation_state"]; st != stateProvisioned {
		t.Errorf("rotation_state = %v", st)
	}
	// Leases issued now end at the switch.
	lease := env.mustOK(logical.ReadOperation, "broker/"+testOrgID+"/github", nil).Secret.TTL
	if lease != 10*time.Minute {
		t.Errorf("lease TTL in the window = %s, want 10m (capped at the switch)", lease)
	}

	// Switch at 60m exactly.
	env.advance(10*time.Minute-time.Second, time.Second)
	if env.snyk.CurrentToken(integID) != first {
		t.Fatal("switched before next_vault_rotation")
	}
	env.advance(time.Second, time.Second)
	if env.snyk.CurrentToken(integID) != provisional {
		t.Fatalf("not switched at next_vault_rotation: %s", env.snyk.Faults())
	}
	b = env.broker()
	if b["broker_token"] != provisional {
		t.Error("the switched token is not served")
	}
	if _, has := b["next_broker_token"]; has {
		t.Error("next_broker_token after the switch")
	}
	if got := env.integration()["next_vault_rotation"]; got != created.Add(2*time.Hour).Format(time.RFC3339) {
		t.Errorf("next_vault_rotation = %v", got)
	}
	if n := env.snyk.Faults().Calls(snyktest.RouteProvisionToken); n != 1 {
		t.Errorf("provision calls = %d", n)
	}
	if n := env.snyk.Faults().Calls(snyktest.RouteSwitchToken); n != 1 {
		t.Errorf("switch calls = %d", n)
	}
	events := strings.Join(env.events.list(), "\n")
	for _, want := range []string{eventBrokerProvision, eventBrokerSwitch} {
		if !strings.Contains(events, want+" broker/"+testOrgID+"/github") {
			t.Errorf("no %s event in %v", want, events)
		}
	}
	env.assertNoSecretsIn("logs", env.logs.String(), first, provisional)
}

// TestRotationAcrossRestart: a restart never rotates early and never skips:
// the schedule is persisted, and a provisional token stored before the
// restart is switched after it without a second provision.
func TestRotationAcrossRestart(t *testing.T) {
	env, integID := rotationEnv(t, nil)
	env.advance(30*time.Minute, time.Minute)
	env.restart()
	env.advance(19*time.Minute, time.Minute)
	if n := env.snyk.Faults().TotalCalls(); n != 0 {
		t.Fatalf("restart rotated early: %s", env.snyk.Faults())
	}
	env.advance(time.Minute, time.Minute) // 50m: provision
	provisional := env.snyk.ProvisionalToken(integID)
	if provisional == "" {
		t.Fatal("no provision after restart")
	}
	// Crash between provision and switch.
	env.restart()
	if env.broker()["next_broker_token"] != provisional {
		t.Fatal("provisional token lost across restart")
	}
	env.advance(10*time.Minute, time.Second)
	if env.snyk.CurrentToken(integID) != provisional {
		t.Fatalf("not switched after restart: %s", env.snyk.Faults())
	}
	if n := env.snyk.Faults().Calls(snyktest.RouteProvisionToken); n != 1 {
		t.Errorf("provision calls = %d, want 1", n)
	}
}

// TestRotationDowntimeProvisionsLate: Vault was down through the provision
// time; on return it provisions at once and moves the switch so clients still
// get provision_ahead to start on the new token.
func TestRotationDowntimeProvisionsLate(t *testing.T) {
	env, integID := rotationEnv(t, nil)
	env.clock.Advance(58 * time.Minute) // down: no ticks
	env.restart()
	env.tick()
	if env.snyk.ProvisionalToken(integID) == "" {
		t.Fatal("no late provision")
	}
	want := env.clock.Now().Add(10 * time.Minute).Format(time.RFC3339)
	if got := env.integration()["next_vault_rotation"]; got != want {
		t.Errorf("next_vault_rotation = %v, want %s (provision + provision_ahead)", got, want)
	}
	env.advance(9*time.Minute, time.Minute)
	if env.snyk.Faults().Calls(snyktest.RouteSwitchToken) != 0 {
		t.Error("switched before the moved switch time")
	}
	env.advance(time.Minute, time.Second)
	if env.snyk.Faults().Calls(snyktest.RouteSwitchToken) != 1 {
		t.Error("not switched at the moved time")
	}
}

func TestRotationCronWithWindow(t *testing.T) {
	env, integID := rotationEnv(t, nil)
	// Clock starts at 12:00; rotate daily at 03:00 UTC, within 1h.
	env.mustOK(logical.UpdateOperation, "integrations/"+testOrgID+"/github", map[string]interface{}{
		"rotation_schedule": "0 3 * * *", "rotation_window": "1h", "provision_ahead": "30m",
	})
	next := env.integration()["next_vault_rotation"]
	if next != "2026-11-27T03:00:00Z" {
		t.Fatalf("next_vault_rotation = %v", next)
	}
	first := env.snyk.CurrentToken(integID)
	env.advance(14*time.Hour+29*time.Minute, time.Minute) // 02:29
	if env.snyk.Faults().TotalCalls() != 0 {
		t.Fatalf("early calls: %s", env.snyk.Faults())
	}
	env.advance(time.Minute, time.Minute) // 02:30 provision
	if env.snyk.ProvisionalToken(integID) == "" {
		t.Fatal("no provision at 02:30")
	}
	env.advance(30*time.Minute, time.Minute) // 03:00 switch
	if env.snyk.CurrentToken(integID) == first {
		t.Fatal("no switch at 03:00")
	}
	if got := env.integration()["next_vault_rotation"]; got != "2026-11-28T03:00:00Z" {
		t.Errorf("next_vault_rotation after the switch = %v", got)
	}

	// Vault is down across the next window: the rotation is skipped, like
	// a database static role's, and runs at the following time.
	env.snyk.Faults().ResetCalls()
	env.clock.Advance(25 * time.Hour) // 2026-11-28 04:00, past 03:00 + 1h
	env.restart()
	env.tick()
	if n := env.snyk.Faults().TotalCalls(); n != 0 {
		t.Errorf("rotated outside the window: %s", env.snyk.Faults())
	}
	if got := env.integration()["next_vault_rotation"]; got != "2026-11-29T03:00:00Z" {
		t.Errorf("next_vault_rotation after a missed window = %v", got)
	}
}

// TestRotationSwitchFailureKeepsOldToken: a failing switch keeps serving the
// still-valid old token, retries with back-off and surfaces the error.
func TestRotationSwitchFailureKeepsOldToken(t *testing.T) {
	env, integID := rotationEnv(t, nil)
	first := env.snyk.CurrentToken(integID)
	env.advance(50*time.Minute, time.Minute)
	env.snyk.Faults().Inject(snyktest.RouteSwitchToken, fault.Fault{Status: http.StatusInternalServerError, Times: 2})
	env.advance(10*time.Minute, time.Second)
	data := env.integration()
	if data["rotation_state"] != stateSwitchPending || !strings.Contains(data["last_rotation_error"].(string), "switch failed") {
		t.Fatalf("after a failed switch: state=%v error=%v", data["rotation_state"], data["last_rotation_error"])
	}
	if env.broker()["broker_token"] != first {
		t.Fatal("a failed switch stopped serving the old token")
	}
	// Leases now end when the switch is retried.
	lease := env.mustOK(logical.ReadOperation, "broker/"+testOrgID+"/github", nil).Secret.TTL
	if lease > firstFailureBackoff || lease < minLeaseTTL {
		t.Errorf("lease during a pending switch = %s", lease)
	}
	attempts := env.snyk.Faults().Calls(snyktest.RouteSwitchToken)
	env.advance(5*time.Second, time.Second)
	if env.snyk.Faults().Calls(snyktest.RouteSwitchToken) != attempts {
		t.Error("retried before the back-off")
	}
	env.advance(10*time.Minute, time.Second)
	if env.snyk.CurrentToken(integID) != env.broker()["broker_token"] || env.integration()["last_rotation_error"] != "" {
		t.Fatalf("not recovered: %v", env.integration()["last_rotation_error"])
	}
	if n := env.snyk.Faults().Calls(snyktest.RouteProvisionToken); n != 1 {
		t.Errorf("provision calls = %d, want 1", n)
	}
	if !strings.Contains(strings.Join(env.events.list(), " "), eventBrokerRotateFail) {
		t.Error("no rotate-fail event")
	}
}

// TestRotationSwitchOutcomeUnknown: the switch went through at Snyk but the
// answer was lost, and the plugin restarted. The switch is resolved without
// a second provision.
func TestRotationSwitchOutcomeUnknown(t *testing.T) {
	env, integID := rotationEnv(t, nil)
	env.advance(50*time.Minute, time.Minute)
	provisional := env.snyk.ProvisionalToken(integID)
	env.snyk.Faults().Inject(snyktest.RouteSwitchToken, fault.Fault{Status: http.StatusBadGateway, AfterHandler: true, Times: 1})
	env.snyk.Faults().Inject(snyktest.RouteSwitchToken, fault.Fault{Status: http.StatusBadGateway, Times: 10})
	env.advance(10*time.Minute, time.Second)
	if env.snyk.CurrentToken(integID) != provisional {
		t.Fatal("setup: Snyk did not switch")
	}
	env.snyk.Faults().Clear()
	env.restart()
	env.advance(15*time.Minute, time.Second)
	if env.broker()["broker_token"] != provisional || env.integration()["rotation_state"] != stateActive {
		t.Fatalf("not resolved: %v", env.integration())
	}
	if n := env.snyk.Faults().Calls(snyktest.RouteProvisionToken); n != 1 {
		t.Errorf("provision calls = %d, want 1", n)
	}
}

// TestRotationProvisionFailures: a provision that fails is retried with
// back-off; a storage failure after Snyk issued the token leaves a WAL that
// re-init reports, and the group then blocked by the lost token is reported
// loudly and retried with a long back-off, never looped on.
func TestRotationProvisionFailures(t *testing.T) {
	env, integID := rotationEnv(t, nil)
	env.snyk.Faults().Inject(snyktest.RouteProvisionToken, fault.Fault{Status: http.StatusServiceUnavailable, Times: 4})
	env.advance(50*time.Minute, time.Minute)
	if !strings.Contains(env.integration()["last_rotation_error"].(string), "provision failed") {
		t.Fatalf("last_rotation_error = %v", env.integration()["last_rotation_error"])
	}
	env.advance(time.Minute, time.Second)
	if env.snyk.ProvisionalToken(integID) == "" || env.integration()["last_rotation_error"] != "" {
		t.Fatal("provision not retried")
	}

	// Second integration: storage dies right after Snyk answers.
	env2, integ2 := rotationEnv(t, nil)
	env2.clock.Advance(50 * time.Minute)
	failing := &failingPutStorage{InmemStorage: env2.storage, failAfter: 1} // the WAL put passes
	env2.b.rotation.mu.Lock()
	env2.b.rotation.storage = failing
	env2.b.rotation.mu.Unlock()
	env2.tick()
	if env2.snyk.ProvisionalToken(integ2) == "" {
		t.Fatal("setup: no provisional token at Snyk")
	}
	env2.restart()
	data := env2.integration()
	if !strings.Contains(data["last_rotation_error"].(string), "provision-token call was interrupted") {
		t.Errorf("re-init did not report the interrupted provision: %v", data["last_rotation_error"])
	}
	if _, has := env2.broker()["next_broker_token"]; has {
		t.Error("serves a provisional token it never stored")
	}
	env2.snyk.Faults().ResetCalls()
	env2.advance(30*time.Minute, time.Second)
	data = env2.integration()
	if !strings.Contains(data["last_rotation_error"].(string), "BLOCKED") {
		t.Errorf("a group blocked by a lost provisional token is not reported: %v", data["last_rotation_error"])
	}
	if n := env2.snyk.Faults().Calls(snyktest.RouteProvisionToken); n != 1 {
		t.Errorf("provision attempts in 30 minutes while blocked = %d, want 1 (long back-off)", n)
	}
	if !strings.Contains(env2.logs.String(), "rotation blocked by a provisional token Vault does not hold") {
		t.Error("blocked group not logged")
	}
	// The old token is still served and valid.
	if env2.broker()["broker_token"] != env2.snyk.CurrentToken(integ2) {
		t.Error("served token is not Snyk's current token")
	}
}

// TestRotationGroupSerialization: two integrations of one Snyk group due at
// the same moment never hold provisional tokens at once.
func TestRotationGroupSerialization(t *testing.T) {
	env := newTestEnv(t)
	env.configure(map[string]interface{}{"rotation_period": "1h", "provision_ahead": "10m"})
	a, _ := env.snyk.AddIntegration(testOrgID, "github", false)
	b, _ := env.snyk.AddIntegration(testOtherOrgID, "github", false)
	env.mustOK(logical.CreateOperation, "integrations/"+testOrgID+"/github", env.integrationData("github"))
	env.mustOK(logical.CreateOperation, "integrations/"+testOtherOrgID+"/github", env.integrationData("github"))
	env.initialize()
	env.snyk.Faults().ResetCalls()

	both := 0
	for i := 0; i < 90*60; i++ {
		env.clock.Advance(time.Second)
		env.tick()
		if env.snyk.ProvisionalToken(a) != "" && env.snyk.ProvisionalToken(b) != "" {
			both++
		}
	}
	if both != 0 {
		t.Errorf("both held provisional tokens for %d ticks", both)
	}
	// Both rotated: the second after the first's switch, with its own
	// provision_ahead, and no 409 from Snyk on the way.
	if n := env.snyk.Faults().Calls(snyktest.RouteProvisionToken); n != 2 {
		t.Errorf("provision calls = %d, want 2 (no conflicts)", n)
	}
	if n := env.snyk.Faults().Calls(snyktest.RouteSwitchToken); n != 2 {
		t.Errorf("switch calls = %d, want 2", n)
	}
	// The group was looked up once per org, at create, and remembered.
	if n := env.snyk.Faults().Calls(snyktest.RouteOrg); n != 0 {
		t.Errorf("group look-ups during rotation = %d, want 0", n)
	}
	if g := env.integration()["snyk_group_id"]; g != testGroupID {
		t.Errorf("snyk_group_id = %v", g)
	}
}

// TestRotationManualRotateInWindow: a manual rotate during the provision-ahead
// window completes the pending rotation with the token already provisioned.
func TestRotationManualRotateInWindow(t *testing.T) {
	env, integID := rotationEnv(t, nil)
	env.advance(50*time.Minute, time.Minute)
	provisional := env.snyk.ProvisionalToken(integID)
	env.mustOK(logical.UpdateOperation, "broker/"+testOrgID+"/github/rotate", nil)
	if env.snyk.CurrentToken(integID) != provisional {
		t.Error("manual rotate did not switch to the held token")
	}
	if n := env.snyk.Faults().Calls(snyktest.RouteProvisionToken); n != 1 {
		t.Errorf("provision calls = %d, want 1", n)
	}
	// The schedule restarts from the manual switch.
	want := env.clock.Now().Add(time.Hour).Format(time.RFC3339)
	if got := env.integration()["next_vault_rotation"]; got != want {
		t.Errorf("next_vault_rotation = %v, want %s", got, want)
	}
	env.advance(10*time.Minute, time.Second)
	if n := env.snyk.Faults().Calls(snyktest.RouteSwitchToken); n != 1 {
		t.Errorf("the old schedule still fired: %d switches", n)
	}
}

func TestRotationDisabled(t *testing.T) {
	env, _ := rotationEnv(t, nil)
	env.mustOK(logical.UpdateOperation, "integrations/"+testOrgID+"/github", map[string]interface{}{"disable_automated_rotation": true})
	env.advance(3*time.Hour, time.Minute)
	if n := env.snyk.Faults().TotalCalls(); n != 0 {
		t.Errorf("disabled rotation made calls: %s", env.snyk.Faults())
	}
}

// TestRotation429PausesEverything: a 429 stops all background calls for
// Snyk's one-minute window instead of retrying into it.
func TestRotation429PausesEverything(t *testing.T) {
	env, integID := rotationEnv(t, nil)
	env.snyk.Faults().Inject(fault.AnyRoute, fault.Fault{Status: http.StatusTooManyRequests, Times: 4})
	env.advance(50*time.Minute, time.Minute)
	calls := env.snyk.Faults().TotalCalls()
	env.advance(59*time.Second, time.Second)
	if got := env.snyk.Faults().TotalCalls(); got != calls {
		t.Errorf("%d calls during the 429 pause", got-calls)
	}
	env.advance(5*time.Second, time.Second)
	if env.snyk.ProvisionalToken(integID) == "" {
		t.Error("not resumed after the pause")
	}
}

// TestRotationStormRespectsBudget: 1,000 integrations due at once drain at
// the configured request budget, with no 429s and no conflicts.
func TestRotationStormRespectsBudget(t *testing.T) {
	if testing.Short() {
		t.Skip("storm test")
	}
	env := newTestEnv(t)
	const budget = 120
	env.configure(map[string]interface{}{
		"rotation_period": "1h", "provision_ahead": "10m", "rotation_requests_per_minute": budget,
	})
	// 1,000 orgs, each in its own group so that only the budget limits the
	// pace, one imported integration each (no Snyk call at create).
	const n = 1000
	for i := 0; i < n; i++ {
		org := fmt.Sprintf("00000000-0000-4000-8000-%012d", i)
		env.snyk.AddOrg(org, fmt.Sprintf("10000000-0000-4000-8000-%012d", i), "org")
		integ, tok := env.snyk.AddIntegration(org, "github", true)
		env.mustOK(logical.CreateOperation, "integrations/"+org+"/github", map[string]interface{}{
			"integration_id": integ, "broker_token": tok, "scm_token": ghGood, "skip_scm_validation": true,
		})
	}
	env.initialize()
	env.snyk.Faults().ResetCalls()
	env.clock.Advance(50 * time.Minute) // all due at once

	// Each rotation costs three requests (group look-up, provision, switch):
	// 3,000 at 120 a minute is 25 minutes.
	perMinute := []int{}
	for minute := 0; minute < 40; minute++ {
		before := env.snyk.Faults().TotalCalls()
		for s := 0; s < 60; s++ {
			env.clock.Advance(time.Second)
			env.tick()
		}
		perMinute = append(perMinute, env.snyk.Faults().TotalCalls()-before)
	}
	t.Logf("Snyk requests per fake minute: %v", perMinute)
	burst := budget / 60
	for i, c := range perMinute {
		if c > budget+burst {
			t.Errorf("minute %d: %d Snyk requests, budget %d", i, c, budget)
		}
	}
	// While provisions are outstanding (the first ~17 minutes) the budget is
	// the only limit; the tail waits for each switch's provision_ahead.
	for i := 1; i < 16; i++ {
		if perMinute[i] < budget*9/10 {
			t.Errorf("minute %d: only %d requests while work was due; the budget is not used", i, perMinute[i])
		}
	}
	inj := env.snyk.Faults()
	if got := inj.Calls(snyktest.RouteSwitchToken); got != n {
		t.Errorf("switches = %d, want %d (every integration rotated)", got, n)
	}
	if got := inj.Calls(snyktest.RouteProvisionToken); got != n {
		t.Errorf("provisions = %d, want %d (no duplicates, no conflicts)", got, n)
	}
	// Each integration's next rotation and its SCM check.
	if env.b.rotation.queueLen() != 2*n {
		t.Errorf("queue holds %d items, want %d", env.b.rotation.queueLen(), 2*n)
	}
}

// TestRotationAdoptionSwitchesAtFirstSchedule: an adopted integration serves
// its provisional token and switches it at the first scheduled switch, with
// no further provision.
func TestRotationAdoptionSwitchesAtFirstSchedule(t *testing.T) {
	env := newTestEnv(t)
	env.configure(map[string]interface{}{"rotation_period": "1h", "provision_ahead": "10m"})
	integID, old := env.snyk.AddIntegration(testOrgID, "github", true)
	env.mustOK(logical.CreateOperation, "integrations/"+testOrgID+"/github", env.integrationData("github"))
	env.initialize()
	provisional := env.snyk.ProvisionalToken(integID)
	env.snyk.Faults().ResetCalls()

	env.advance(59*time.Minute, time.Minute)
	if env.snyk.CurrentToken(integID) != old || env.snyk.Faults().TotalCalls() != 0 {
		t.Fatalf("adoption acted before its switch: %s", env.snyk.Faults())
	}
	env.advance(time.Minute, time.Second)
	if env.snyk.CurrentToken(integID) != provisional {
		t.Fatal("adopted token not switched at the first scheduled switch")
	}
	if n := env.snyk.Faults().Calls(snyktest.RouteProvisionToken); n != 0 {
		t.Errorf("provision calls = %d, want 0", n)
	}
	if env.integration()["rotation_state"] != stateActive {
		t.Error("state not active after the switch")
	}
}

// TestRotationNotStartedOnStandby: background work runs only where writes
// are safe.
func TestRotationNotStartedOnStandby(t *testing.T) {
	env := newTestEnv(t)
	retry := env.retry
	b := newBackend(Options{Now: env.clock.Now, Retry: &retry, Tick: 10 * time.Millisecond})
	conf := logical.TestBackendConfig()
	conf.StorageView = env.storage
	conf.Logger = hclog.NewNullLogger()
	conf.System = &logical.StaticSystemView{ReplicationStateVal: consts.ReplicationPerformanceStandby}
	if err := b.Setup(t.Context(), conf); err != nil {
		t.Fatal(err)
	}
	if err := b.Initialize(t.Context(), &logical.InitializationRequest{Storage: env.storage}); err != nil {
		t.Fatal(err)
	}
	b.rotation.mu.Lock()
	started := b.rotation.cancel != nil || b.rotation.storage != nil
	b.rotation.mu.Unlock()
	if started {
		t.Error("the rotation engine started on a performance standby")
	}

	// On the active node it starts, and Clean stops it.
	b2 := newBackend(Options{Now: env.clock.Now, Retry: &retry, Tick: 10 * time.Millisecond})
	conf2 := logical.TestBackendConfig()
	conf2.StorageView = env.storage
	conf2.Logger = hclog.NewNullLogger()
	if err := b2.Setup(t.Context(), conf2); err != nil {
		t.Fatal(err)
	}
	if err := b2.Initialize(t.Context(), &logical.InitializationRequest{Storage: env.storage}); err != nil {
		t.Fatal(err)
	}
	b2.rotation.mu.Lock()
	started = b2.rotation.cancel != nil
	b2.rotation.mu.Unlock()
	if !started {
		t.Error("the rotation engine did not start on the active node")
	}
	b2.Cleanup(t.Context())
	b2.rotation.mu.Lock()
	stopped := b2.rotation.cancel == nil
	b2.rotation.mu.Unlock()
	if !stopped {
		t.Error("Clean did not stop the rotation engine")
	}
}

// TestRotationConcurrentReadsAndRotations runs reads, manual rotations and
// queue ticks at once (meaningful under -race): every read returns a token
// Snyk knows, and nothing is lost.
func TestRotationConcurrentReadsAndRotations(t *testing.T) {
	env, integID := rotationEnv(t, map[string]interface{}{"rotation_period": "20m", "provision_ahead": "5m"})
	done := make(chan struct{})
	errs := make(chan string, 100)
	var wg sync.WaitGroup
	for i := 0; i < 4; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-done:
					return
				default:
				}
				resp, err := env.request(logical.ReadOperation, "broker/"+testOrgID+"/github", nil)
				if err != nil || resp == nil || resp.IsError() {
					errs <- fmt.Sprintf("read failed: %v %v", resp, err)
					return
				}
				tok := resp.Data["broker_token"].(string)
				if !env.snyk.TokenIsCurrent(tok) && !env.snyk.TokenIsProvisional(tok) {
					// A read racing a switch may return the token that was
					// current a moment ago; it must at least be one Snyk issued.
					if !slices.Contains(env.snyk.Minted(), tok) {
						errs <- "served a token Snyk never issued"
					}
				}
			}
		}()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; i < 10; i++ {
			resp, err := env.request(logical.UpdateOperation, "broker/"+testOrgID+"/github/rotate", nil)
			if err != nil {
				errs <- fmt.Sprintf("rotate: %v", err)
			} else if resp != nil && resp.IsError() && !strings.Contains(resp.Error().Error(), "holds the Snyk group") {
				errs <- fmt.Sprintf("rotate: %v", resp.Error())
			}
		}
	}()
	for i := 0; i < 200; i++ {
		env.clock.Advance(15 * time.Second)
		env.tick()
	}
	close(done)
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Error(e)
	}
	if served := env.broker()["broker_token"]; served != env.snyk.CurrentToken(integID) && served != env.snyk.ProvisionalToken(integID) {
		t.Error("served token is neither current nor provisional at Snyk")
	}
	if p, s := env.snyk.Faults().Calls(snyktest.RouteProvisionToken), env.snyk.Faults().Calls(snyktest.RouteSwitchToken); p-s > 1 || s == 0 {
		t.Errorf("provisions=%d switches=%d", p, s)
	}
}

// TestRotationManualSwitchFailureRetried: a manual rotation whose switch
// fails keeps the provisional token and has the engine retry the switch with
// back-off, not at the next scheduled time.
func TestRotationManualSwitchFailureRetried(t *testing.T) {
	env, integID := rotationEnv(t, map[string]interface{}{"rotation_period": "2160h"})
	env.snyk.Faults().Inject(snyktest.RouteSwitchToken, fault.Fault{Status: http.StatusInternalServerError, Times: 1})
	if _, err := env.request(logical.UpdateOperation, "broker/"+testOrgID+"/github/rotate", nil); err == nil {
		t.Fatal("rotate succeeded although the switch failed")
	}
	data := env.integration()
	if data["rotation_state"] != stateSwitchPending || data["next_attempt_at"] == nil {
		t.Fatalf("after a failed manual switch: state=%v next_attempt_at=%v", data["rotation_state"], data["next_attempt_at"])
	}
	provisional := env.snyk.ProvisionalToken(integID)
	env.advance(15*time.Second, time.Second)
	if env.snyk.CurrentToken(integID) != provisional || env.integration()["rotation_state"] != stateActive {
		t.Fatalf("the owed switch was not retried: %s", env.snyk.Faults())
	}
}

// TestRotationUnknownGroupSharesMountLane: when the group look-up fails at
// adoption, the adopted integration takes the mount-wide lane, which keeps
// any other integration from provisioning until its switch: no 409, no false
// "BLOCKED".
func TestRotationUnknownGroupSharesMountLane(t *testing.T) {
	env := newTestEnv(t)
	env.configure(map[string]interface{}{"rotation_period": "1h", "provision_ahead": "10m"})
	env.snyk.AddIntegration(testOtherOrgID, "github", false)
	env.mustOK(logical.CreateOperation, "integrations/"+testOtherOrgID+"/github", env.integrationData("github")) // group known
	env.snyk.Faults().Inject(snyktest.RouteOrg, fault.Fault{Status: http.StatusServiceUnavailable, Times: 4})
	adopted, _ := env.snyk.AddIntegration(testOrgID, "github", true)
	env.clock.Advance(30 * time.Minute)
	env.mustOK(logical.CreateOperation, "integrations/"+testOrgID+"/github", env.integrationData("github")) // adoption, group unknown
	env.initialize()
	env.snyk.Faults().ResetCalls()

	// The first integration is due to provision at 50m; the adopted one
	// switches at 90m. In between, the first must wait.
	env.advance(55*time.Minute, time.Second)
	if n := env.snyk.Faults().Calls(snyktest.RouteProvisionToken); n != 0 {
		t.Fatalf("provisioned while an integration of unknown group held a provisional token (%d calls)", n)
	}
	// It waits with a recorded reason, never silently.
	if e := env.mustOK(logical.ReadOperation, "integrations/"+testOtherOrgID+"/github", nil).Data["last_rotation_error"].(string); !strings.Contains(e, "waiting for "+testOrgID+"/github") {
		t.Errorf("last_rotation_error = %v", e)
	}
	env.advance(30*time.Minute, time.Second)
	if env.snyk.ProvisionalToken(adopted) != "" {
		t.Fatal("the adopted token was not switched")
	}
	if n := env.snyk.Faults().Calls(snyktest.RouteProvisionToken); n != 1 {
		t.Errorf("provision calls after the adopted switch = %d, want 1 (the waiter, woken)", n)
	}
}

// TestRotationWindowCountsTheSwitch: a provision that could not switch
// inside the window is skipped to the next scheduled time.
func TestRotationWindowCountsTheSwitch(t *testing.T) {
	env, _ := rotationEnv(t, nil)
	env.mustOK(logical.UpdateOperation, "integrations/"+testOrgID+"/github", map[string]interface{}{
		"rotation_schedule": "0 3 * * *", "rotation_window": "1h", "provision_ahead": "30m",
	})
	env.clock.Advance(15*time.Hour + 50*time.Minute) // 03:50: a switch would land at 04:20
	env.restart()
	env.tick()
	if n := env.snyk.Faults().TotalCalls(); n != 0 {
		t.Errorf("provisioned although the switch could not fit in the window: %s", env.snyk.Faults())
	}
	if got := env.integration()["next_vault_rotation"]; got != "2026-11-28T03:00:00Z" {
		t.Errorf("next_vault_rotation = %v", got)
	}
}

// TestRotationDisabledStillSwitchesHeldToken: a provisional token Vault holds
// is switched at its time even with automated rotation disabled.
func TestRotationDisabledStillSwitchesHeldToken(t *testing.T) {
	env := newTestEnv(t)
	env.configure(map[string]interface{}{"rotation_period": "1h", "provision_ahead": "10m"})
	integID, _ := env.snyk.AddIntegration(testOrgID, "github", true)
	env.mustOK(logical.CreateOperation, "integrations/"+testOrgID+"/github",
		mergeData(env.integrationData("github"), map[string]interface{}{"disable_automated_rotation": true}))
	env.initialize()
	provisional := env.snyk.ProvisionalToken(integID)
	env.advance(61*time.Minute, time.Minute)
	if env.snyk.CurrentToken(integID) != provisional {
		t.Fatal("the held provisional token was never switched")
	}
	env.snyk.Faults().ResetCalls()
	env.advance(3*time.Hour, time.Minute)
	if n := env.snyk.Faults().TotalCalls(); n != 0 {
		t.Errorf("a disabled integration rotated again: %s", env.snyk.Faults())
	}
}

// TestRotationSwitchRefusedForOtherReasons: a 400 that does not say "no
// provisional token" is a failure, not proof that the switch happened.
func TestRotationSwitchRefusedForOtherReasons(t *testing.T) {
	env, integID := rotationEnv(t, nil)
	old := env.snyk.CurrentToken(integID)
	env.snyk.Faults().Inject(snyktest.RouteSwitchToken, fault.Fault{Status: http.StatusBadRequest, Times: 1,
		Body: `{"code":400,"message":"Invalid request","error":"Invalid request"}`})
	env.advance(60*time.Minute, time.Second)
	if env.broker()["broker_token"] != old {
		t.Fatal("served the provisional token as current after a refused switch")
	}
	if st := env.integration()["rotation_state"]; st != stateSwitchPending {
		t.Errorf("rotation_state = %v", st)
	}
	env.advance(time.Minute, time.Second)
	if env.snyk.CurrentToken(integID) == old || env.broker()["broker_token"] != env.snyk.CurrentToken(integID) {
		t.Error("the switch was not retried")
	}
}

// TestRotationLoopWakesAtNextAction: the loop sleeps until the earliest
// queued action (at most a tick), and through a 429 pause.
func TestRotationLoopWakesAtNextAction(t *testing.T) {
	env, _ := rotationEnv(t, nil)
	m := env.b.rotation
	// The only item is the provision at 50m.
	if d := m.untilNextDue(time.Second); d != time.Second {
		t.Errorf("far action: sleep %s, want the 1s tick", d)
	}
	env.clock.Advance(50*time.Minute - 300*time.Millisecond)
	if d := m.untilNextDue(time.Second); d != 300*time.Millisecond {
		t.Errorf("action in 300ms: sleep %s", d)
	}
	env.clock.Advance(time.Second)
	if d := m.untilNextDue(time.Second); d != 10*time.Millisecond {
		t.Errorf("overdue action: sleep %s, want 10ms", d)
	}
	m.mu.Lock()
	m.pausedUntil = env.clock.Now().Add(400 * time.Millisecond)
	m.mu.Unlock()
	if d := m.untilNextDue(time.Second); d != 400*time.Millisecond {
		t.Errorf("paused: sleep %s, want the rest of the pause", d)
	}
}

// TestRotationLoopSleepsUntilTheNextAction: the running loop (not only its
// helper) sleeps until the earliest queued action, and a newly queued earlier
// action shortens a sleep already begun.
func TestRotationLoopSleepsUntilTheNextAction(t *testing.T) {
	env := newTestEnv(t)
	sleeps := make(chan time.Duration, 16)
	b := env.startLoopBackend(time.Hour, func(d time.Duration) {
		select {
		case sleeps <- d:
		default:
		}
	})
	defer b.Cleanup(t.Context())
	next := func() time.Duration {
		select {
		case d := <-sleeps:
			return d
		case <-time.After(10 * time.Second):
			t.Fatal("the loop chose no sleep")
			return 0
		}
	}
	if d := next(); d != time.Hour {
		t.Fatalf("empty queue: sleep %s, want the tick", d)
	}
	b.rotation.pushAt("payments/github", env.clock.Now().Add(250*time.Millisecond))
	if d := next(); d != 250*time.Millisecond {
		t.Fatalf("after queueing an action due in 250ms the loop sleeps %s", d)
	}
}

// TestRotationStopLetsACallInFlightFinish: when the mount stops (Vault's
// step-down, seal, unmount or reload call Cleanup) while a provision call is
// in flight, the call is not cancelled: Snyk's answer arrives, the
// provisional token is stored, and the next active node switches it.
// Cancelled, the answer to a provision Snyk applied would be lost, leaving a
// provisional token no one can read, which blocks the group.
func TestRotationStopLetsACallInFlightFinish(t *testing.T) {
	env, integID := rotationEnv(t, nil)
	b := env.startLoopBackend(10*time.Millisecond, nil)
	// Snyk applies the provision at once and answers 400ms later: a client
	// that stops waiting loses the token for good.
	env.snyk.Faults().Inject(snyktest.RouteProvisionToken, fault.Fault{Delay: 400 * time.Millisecond, AfterHandler: true, Times: 1})
	env.clock.Advance(50 * time.Minute)
	deadline := time.Now().Add(10 * time.Second)
	for env.snyk.Faults().Calls(snyktest.RouteProvisionToken) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the loop sent no provision call")
		}
		time.Sleep(5 * time.Millisecond)
	}
	stopped := time.Now()
	b.Cleanup(t.Context())
	t.Logf("Cleanup returned after %s", time.Since(stopped).Round(10*time.Millisecond))

	held := env.snyk.ProvisionalToken(integID)
	if held == "" {
		t.Fatal("Snyk holds no provisional token")
	}
	e, err := getIntegration(t.Context(), env.view, testOrgID, "github")
	if err != nil || e == nil {
		t.Fatalf("stored integration: %v", err)
	}
	if e.ProvisionalToken != held {
		t.Errorf("stored provisional token differs from Snyk's (stored %v): the next active node could not switch it", e.ProvisionalToken != "")
	}
	// The next active node (here: the engine initialized again) switches it.
	env.initialize()
	env.advance(10*time.Minute, time.Second)
	if cur := env.snyk.CurrentToken(integID); cur != held {
		t.Errorf("after the switch Snyk routes by another token than the one stored at the stop")
	}
	if n := env.snyk.Faults().Calls(snyktest.RouteProvisionToken); n != 1 {
		t.Errorf("provision calls = %d, want 1", n)
	}
}

// startLoopBackend starts a second engine on env's storage whose rotation
// loop really runs (the env's own engine is driven by tick), ticking at
// tick; onSleep, when set, sees every sleep the loop chooses.
func (env *testEnv) startLoopBackend(tick time.Duration, onSleep func(time.Duration)) *backend {
	env.t.Helper()
	retry := env.retry
	b := newBackend(Options{Now: env.clock.Now, Retry: &retry, Tick: tick})
	b.rotation.onSleep = onSleep
	conf := logical.TestBackendConfig()
	conf.StorageView = env.view
	if err := b.Setup(env.t.Context(), conf); err != nil {
		env.t.Fatal(err)
	}
	if err := b.Initialize(env.t.Context(), &logical.InitializationRequest{Storage: env.view}); err != nil {
		env.t.Fatal(err)
	}
	return b
}
