package backend

import (
	"context"
	"encoding/json"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/vault/sdk/framework"

	"github.com/hashicorp/vault/sdk/logical"

	"github.com/snyk-vault/vault-plugin-secrets-snyk/backend/fault"
	"github.com/snyk-vault/vault-plugin-secrets-snyk/backend/snyk/snyktest"
)

func (env *testEnv) upstreamCalls() int {
	return env.snyk.Faults().TotalCalls() + env.github.Faults().TotalCalls() + env.ghe.Faults().TotalCalls() +
		env.gitlab.Faults().TotalCalls() + env.azure.Faults().TotalCalls() + env.bitbucket.Faults().TotalCalls()
}

func TestBrokerReadLeaseAndNoUpstreamCalls(t *testing.T) {
	env := newTestEnv(t)
	env.configure(map[string]interface{}{"ttl": "45m"})
	env.snyk.AddIntegration(testOrgID, "github", false)
	env.mustOK(logical.CreateOperation, "integrations/"+testOrgID+"/github", env.integrationData("github"))
	calls := env.upstreamCalls()

	// Concurrent reads all see the same token.
	var wg sync.WaitGroup
	tokens := make([]string, 20)
	for i := range tokens {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			resp, err := env.request(logical.ReadOperation, "broker/"+testOrgID+"/github", nil)
			if err == nil && resp != nil && !resp.IsError() {
				tokens[i] = resp.Data["broker_token"].(string)
			}
		}(i)
	}
	wg.Wait()
	for _, tok := range tokens {
		if tok == "" || tok != tokens[0] {
			t.Fatalf("reads returned different tokens")
		}
	}
	if got := env.upstreamCalls(); got != calls {
		t.Errorf("reads made %d upstream calls", got-calls)
	}

	resp := env.mustOK(logical.ReadOperation, "broker/"+testOrgID+"/github", nil)
	if resp.Secret == nil {
		t.Fatal("no lease")
	}
	if resp.Secret.Renewable {
		t.Error("lease is renewable")
	}
	if resp.Secret.TTL != 45*time.Minute {
		t.Errorf("lease TTL = %s, want 45m", resp.Secret.TTL)
	}
	if resp.Secret.InternalData["secret_type"] != secretTypeBrokerToken {
		t.Errorf("secret type = %v", resp.Secret.InternalData["secret_type"])
	}
	internal, _ := json.Marshal(resp.Secret.InternalData)
	env.assertNoSecretsIn("lease internal data", string(internal), tokens[0])
	if resp.Data["ttl"] != int64(45*60) || resp.Data["rotation_period"] != int64(2160*3600) || resp.Data["last_vault_rotation"] == nil {
		t.Errorf("rotation metadata: ttl=%v rotation_period=%v last=%v", resp.Data["ttl"], resp.Data["rotation_period"], resp.Data["last_vault_rotation"])
	}
	if _, has := resp.Data["next_broker_token"]; has {
		t.Error("next_broker_token without a provisional token")
	}

	// Revoking the lease changes nothing upstream and keeps the token.
	revoke, err := env.b.HandleRequest(t.Context(), &logical.Request{
		Operation: logical.RevokeOperation, Storage: env.storage, Secret: resp.Secret, Data: resp.Data,
	})
	if err != nil || (revoke != nil && revoke.IsError()) {
		t.Fatalf("revoke: %v %v", revoke, err)
	}
	if got := env.upstreamCalls(); got != calls {
		t.Errorf("revoke made %d upstream calls", got-calls)
	}
	again := env.mustOK(logical.ReadOperation, "broker/"+testOrgID+"/github", nil)
	if again.Data["broker_token"] != tokens[0] {
		t.Error("token changed after a lease revocation")
	}
}

// TestBrokerLeaseCappedAtSwitch: a lease never outlives the next scheduled
// switch, with a floor that keeps Agent's re-reads in distinct seconds.
func TestBrokerLeaseCappedAtSwitch(t *testing.T) {
	env := newTestEnv(t)
	env.configure(map[string]interface{}{"ttl": "1h", "rotation_period": "2h", "provision_ahead": "10m"})
	env.snyk.AddIntegration(testOrgID, "github", true)
	env.mustOK(logical.CreateOperation, "integrations/"+testOrgID+"/github", env.integrationData("github"))

	resp := env.mustOK(logical.ReadOperation, "broker/"+testOrgID+"/github", nil)
	if resp.Secret.TTL != time.Hour {
		t.Errorf("TTL = %s, want 1h", resp.Secret.TTL)
	}
	env.clock.Advance(90 * time.Minute)
	resp = env.mustOK(logical.ReadOperation, "broker/"+testOrgID+"/github", nil)
	if resp.Secret.TTL != 30*time.Minute || resp.Data["ttl"] != int64(1800) {
		t.Errorf("TTL = %s, want 30m (capped at the switch)", resp.Secret.TTL)
	}
	env.clock.Advance(30*time.Minute - time.Second)
	resp = env.mustOK(logical.ReadOperation, "broker/"+testOrgID+"/github", nil)
	if resp.Secret.TTL != minLeaseTTL {
		t.Errorf("TTL = %s, want the %s floor", resp.Secret.TTL, minLeaseTTL)
	}

	// A held provisional token is switched even with automated rotation
	// disabled (it would block the Snyk group otherwise), so the cap stays.
	env.mustOK(logical.UpdateOperation, "integrations/"+testOrgID+"/github", map[string]interface{}{"disable_automated_rotation": true})
	resp = env.mustOK(logical.ReadOperation, "broker/"+testOrgID+"/github", nil)
	if resp.Secret.TTL != minLeaseTTL {
		t.Errorf("TTL = %s with rotation disabled and a provisional token held, want the %s floor", resp.Secret.TTL, minLeaseTTL)
	}
	// Once switched, nothing is scheduled, and leases get the full ttl.
	env.mustOK(logical.UpdateOperation, "broker/"+testOrgID+"/github/rotate", nil)
	env.clock.Advance(5 * time.Hour)
	resp = env.mustOK(logical.ReadOperation, "broker/"+testOrgID+"/github", nil)
	if resp.Secret.TTL != time.Hour {
		t.Errorf("TTL = %s with rotation disabled, want 1h", resp.Secret.TTL)
	}
}

func TestBrokerRotate(t *testing.T) {
	env := newTestEnv(t)
	env.configure(map[string]interface{}{"rotation_period": "24h"})
	integID, _ := env.snyk.AddIntegration(testOrgID, "github", false)
	env.mustOK(logical.CreateOperation, "integrations/"+testOrgID+"/github", env.integrationData("github"))
	old := env.snyk.CurrentToken(integID)
	env.snyk.Faults().ResetCalls()
	env.clock.Advance(3 * time.Hour)

	resp := env.mustOK(logical.UpdateOperation, "broker/"+testOrgID+"/github/rotate", nil)
	if n := env.snyk.Faults().Calls(snyktest.RouteProvisionToken); n != 1 {
		t.Errorf("provision calls = %d", n)
	}
	if n := env.snyk.Faults().Calls(snyktest.RouteSwitchToken); n != 1 {
		t.Errorf("switch calls = %d", n)
	}
	current := env.snyk.CurrentToken(integID)
	if current == old || env.snyk.ProvisionalToken(integID) != "" {
		t.Fatal("Snyk did not switch")
	}
	raw, _ := json.Marshal(resp.Data)
	env.assertNoSecretsIn("rotate response", string(raw), current, old)
	if resp.Data["rotation_state"] != stateActive || resp.Data["token_source"] != sourceRotated {
		t.Errorf("state after rotate: %v", resp.Data)
	}
	// The schedule restarts from the manual rotation.
	wantNext := env.clock.Now().Add(24 * time.Hour).Format(time.RFC3339)
	if resp.Data["next_vault_rotation"] != wantNext || resp.Data["last_vault_rotation"] != env.clock.Now().Format(time.RFC3339) {
		t.Errorf("next=%v last=%v", resp.Data["next_vault_rotation"], resp.Data["last_vault_rotation"])
	}
	broker := env.mustOK(logical.ReadOperation, "broker/"+testOrgID+"/github", nil)
	if broker.Data["broker_token"] != current {
		t.Error("the new token is not served")
	}
	env.assertNoSecretsIn("logs", env.logs.String(), current, old)
}

// TestBrokerRotateCompletesAdoption: rotating an adopted integration uses
// the provisional token already held (no second provision).
func TestBrokerRotateCompletesAdoption(t *testing.T) {
	env := newTestEnv(t)
	env.configure(nil)
	integID, _ := env.snyk.AddIntegration(testOrgID, "gitlab", true)
	env.mustOK(logical.CreateOperation, "integrations/"+testOrgID+"/gitlab", env.integrationData("gitlab"))
	provisional := env.snyk.ProvisionalToken(integID)
	env.snyk.Faults().ResetCalls()

	env.mustOK(logical.UpdateOperation, "broker/"+testOrgID+"/gitlab/rotate", nil)
	if n := env.snyk.Faults().Calls(snyktest.RouteProvisionToken); n != 0 {
		t.Errorf("provisioned again (%d) instead of switching the held token", n)
	}
	if env.snyk.CurrentToken(integID) != provisional {
		t.Error("the adopted provisional token is not current after rotate")
	}
	broker := env.mustOK(logical.ReadOperation, "broker/"+testOrgID+"/gitlab", nil)
	if broker.Data["broker_token"] != provisional {
		t.Error("served token changed")
	}
	if _, has := broker.Data["next_broker_token"]; has {
		t.Error("next_broker_token still present after the switch")
	}
}

// TestBrokerRotateRetriesUpstream: 429s (with and without Retry-After) and
// 5xx are retried within the bound, and exactly one provisional token is
// created.
func TestBrokerRotateRetriesUpstream(t *testing.T) {
	env := newTestEnv(t)
	env.configure(nil)
	integID, _ := env.snyk.AddIntegration(testOrgID, "github", false)
	env.mustOK(logical.CreateOperation, "integrations/"+testOrgID+"/github", env.integrationData("github"))
	env.snyk.Faults().ResetCalls()

	inj := env.snyk.Faults()
	inj.Inject(snyktest.RouteProvisionToken, fault.Fault{Status: http.StatusTooManyRequests, RetryAfter: "3", Times: 1})
	inj.Inject(snyktest.RouteProvisionToken, fault.Fault{Status: http.StatusTooManyRequests, Times: 1})
	// 503 proves the call was not applied, so even provision-token is
	// repeated; an ambiguous 5xx is not (TestBrokerRotateSwitchAnswerLost).
	inj.Inject(snyktest.RouteProvisionToken, fault.Fault{Status: http.StatusServiceUnavailable, Times: 1})
	inj.Inject(snyktest.RouteSwitchToken, fault.Fault{Status: http.StatusServiceUnavailable, RetryAfter: env.clock.Now().Add(5 * time.Second).UTC().Format(http.TimeFormat), Times: 1})

	env.mustOK(logical.UpdateOperation, "broker/"+testOrgID+"/github/rotate", nil)
	if n := inj.Calls(snyktest.RouteProvisionToken); n != 4 {
		t.Errorf("provision attempts = %d, want 4", n)
	}
	if n := inj.Calls(snyktest.RouteSwitchToken); n != 2 {
		t.Errorf("switch attempts = %d, want 2", n)
	}
	// 3s (Retry-After), 4s (429 back-off, doubled), 400ms (503 back-off,
	// doubled twice from 100ms), 5s (the switch's HTTP-date Retry-After).
	want := []time.Duration{3 * time.Second, 4 * time.Second, 400 * time.Millisecond, 5 * time.Second}
	if waits := env.sleeps.Waits(); !slices.Equal(waits, want) {
		t.Fatalf("waits = %v, want %v", waits, want)
	}
	if env.snyk.ProvisionalToken(integID) != "" || env.snyk.GroupProvisionalHolder(testGroupID) != "" {
		t.Error("a provisional token was left behind")
	}

	// A 429 storm beyond the budget fails the rotation without looping and
	// records the error; the old token stays served.
	served := env.mustOK(logical.ReadOperation, "broker/"+testOrgID+"/github", nil).Data["broker_token"]
	inj.ResetCalls()
	inj.Inject(snyktest.RouteProvisionToken, fault.Fault{Status: http.StatusTooManyRequests, RetryAfter: "60"})
	resp, err := env.request(logical.UpdateOperation, "broker/"+testOrgID+"/github/rotate", nil)
	if err == nil && (resp == nil || !resp.IsError()) {
		t.Fatal("rotate succeeded under a 429 storm")
	}
	// Retry-After 60 is capped at MaxDelay (10s); the total budget (20s)
	// allows two waits, so three attempts.
	if n := inj.Calls(snyktest.RouteProvisionToken); n != 3 {
		t.Errorf("provision attempts under a 429 storm = %d, want 3", n)
	}
	inj.Clear()
	read := env.mustOK(logical.ReadOperation, "integrations/"+testOrgID+"/github", nil)
	if !strings.Contains(read.Data["last_rotation_error"].(string), "429") {
		t.Errorf("last_rotation_error = %q", read.Data["last_rotation_error"])
	}
	if got := env.mustOK(logical.ReadOperation, "broker/"+testOrgID+"/github", nil).Data["broker_token"]; got != served {
		t.Error("a failed rotation changed the served token")
	}
}

// TestBrokerRotateSwitchAnswerLost: the switch reached Snyk but its answer
// was lost (server-side success, client-side 500). The call is not repeated
// blindly: the rotate fails with an unknown outcome and the provisional token
// stays held. The next rotate's switch is refused because no provisional
// token is left, and the engine concludes the switch happened instead of
// provisioning again.
func TestBrokerRotateSwitchAnswerLost(t *testing.T) {
	env := newTestEnv(t)
	env.configure(nil)
	integID, _ := env.snyk.AddIntegration(testOrgID, "github", false)
	env.mustOK(logical.CreateOperation, "integrations/"+testOrgID+"/github", env.integrationData("github"))
	env.snyk.Faults().ResetCalls()
	env.snyk.Faults().Inject(snyktest.RouteSwitchToken, fault.Fault{Status: http.StatusInternalServerError, AfterHandler: true, Times: 1})

	if _, err := env.request(logical.UpdateOperation, "broker/"+testOrgID+"/github/rotate", nil); err == nil {
		t.Fatal("rotate reported success although the switch's outcome is unknown")
	}
	if st := env.integration()["rotation_state"]; st != stateSwitchPending {
		t.Errorf("rotation_state after an unknown switch outcome = %v", st)
	}
	env.mustOK(logical.UpdateOperation, "broker/"+testOrgID+"/github/rotate", nil)
	if n := env.snyk.Faults().Calls(snyktest.RouteProvisionToken); n != 1 {
		t.Errorf("provision calls = %d, want 1", n)
	}
	served := env.mustOK(logical.ReadOperation, "broker/"+testOrgID+"/github", nil).Data["broker_token"]
	if served != env.snyk.CurrentToken(integID) {
		t.Error("served token is not Snyk's current token")
	}
}

// TestBrokerRotateStorageFailure: when storage fails after Snyk issued the
// provisional token, the request fails, the token is kept in memory (reads
// serve it, the WAL entry stays as the record), and the first pass once
// storage answers stores it; rotating again switches to it without a second
// provision.
func TestBrokerRotateStorageFailure(t *testing.T) {
	env := newTestEnv(t)
	env.configure(nil)
	integID, _ := env.snyk.AddIntegration(testOrgID, "github", false)
	env.mustOK(logical.CreateOperation, "integrations/"+testOrgID+"/github", env.integrationData("github"))
	env.initialize()
	env.snyk.Faults().ResetCalls()

	failing := &failingPutStorage{InmemStorage: env.storage, failAfter: 1}
	resp, err := env.b.HandleRequest(t.Context(), &logical.Request{Operation: logical.UpdateOperation, Path: "broker/" + testOrgID + "/github/rotate", Storage: failing})
	if err == nil && (resp == nil || !resp.IsError()) {
		t.Fatal("rotate succeeded although storage failed")
	}
	provisional := env.snyk.ProvisionalToken(integID)
	if provisional == "" {
		t.Fatal("setup: Snyk issued no provisional token")
	}
	if wals, _ := env.storage.List(t.Context(), "wal/"); len(wals) != 1 {
		t.Fatalf("WAL entries = %v, want the provision entry kept", wals)
	}
	read := env.mustOK(logical.ReadOperation, "integrations/"+testOrgID+"/github", nil)
	if !strings.Contains(read.Data["last_rotation_error"].(string), "storing it failed") || read.Data["next_broker_token_fingerprint"] != fingerprint(provisional) {
		t.Fatalf("the kept token is not reported: %v", read.Data)
	}
	// The rollback manager leaves the WAL entry while the token is only in memory.
	env.clock.Advance(time.Hour)
	if _, err := env.b.HandleRequest(t.Context(), &logical.Request{Operation: logical.RollbackOperation, Storage: env.storage, Data: map[string]interface{}{"immediate": true}}); err != nil {
		t.Fatalf("rollback: %v", err)
	}
	if wals, _ := env.storage.List(t.Context(), "wal/"); len(wals) != 1 {
		t.Fatalf("WAL entries = %v, want it kept until the token is stored", wals)
	}
	env.tick()
	stored, err := getIntegration(t.Context(), env.storage, testOrgID, "github")
	if err != nil || stored == nil || stored.ProvisionalToken != provisional || stored.RotationState != stateProvisioned {
		t.Fatalf("the kept token was not stored: %+v %v", stored, err)
	}
	env.mustOK(logical.UpdateOperation, "broker/"+testOrgID+"/github/rotate", nil)
	if env.snyk.CurrentToken(integID) != provisional || env.snyk.Faults().Calls(snyktest.RouteProvisionToken) != 1 {
		t.Fatalf("rotate did not switch to the kept token (provisions: %d)", env.snyk.Faults().Calls(snyktest.RouteProvisionToken))
	}
	if _, err := env.b.HandleRequest(t.Context(), &logical.Request{Operation: logical.RollbackOperation, Storage: env.storage, Data: map[string]interface{}{"immediate": true}}); err != nil {
		t.Fatalf("rollback: %v", err)
	}
	if wals, _ := env.storage.List(t.Context(), "wal/"); len(wals) != 0 {
		t.Errorf("WAL entries left: %v", wals)
	}
}

// failingPutStorage lets failAfter puts through (the WAL) and fails the rest.
type failingPutStorage struct {
	*logical.InmemStorage
	mu        sync.Mutex
	failAfter int
}

func (f *failingPutStorage) Put(ctx context.Context, e *logical.StorageEntry) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.failAfter <= 0 {
		return errStorageDown
	}
	f.failAfter--
	return f.InmemStorage.Put(ctx, e)
}

// TestSideEffectPathsAreForwarded: every operation that calls Snyk or writes
// storage runs on the primary's active node (HA checklist).
func TestSideEffectPathsAreForwarded(t *testing.T) {
	env := newTestEnv(t)
	want := map[string][]logical.Operation{
		"config": {logical.CreateOperation, logical.UpdateOperation, logical.DeleteOperation},
		"integrations/" + nameSegment + "/" + scmSegment + "$":  {logical.CreateOperation, logical.UpdateOperation, logical.DeleteOperation},
		"broker/" + nameSegment + "/" + scmSegment + "/rotate$": {logical.UpdateOperation},
	}
	seen := 0
	for _, p := range env.b.Paths {
		ops, ok := want[p.Pattern]
		if !ok {
			continue
		}
		for _, op := range ops {
			po, ok := p.Operations[op].(*framework.PathOperation)
			if !ok {
				t.Errorf("%s %s: no operation", op, p.Pattern)
				continue
			}
			seen++
			if !po.ForwardPerformanceStandby || !po.ForwardPerformanceSecondary {
				t.Errorf("%s %s is not forwarded to the primary's active node", op, p.Pattern)
			}
		}
	}
	if seen != 7 {
		t.Errorf("checked %d operations, want 7", seen)
	}
}

// countingSystemView counts the plugin's LocalMount questions to Vault.
type countingSystemView struct {
	logical.StaticSystemView
	localMountCalls atomic.Int64
}

func (v *countingSystemView) LocalMount() bool {
	v.localMountCalls.Add(1)
	return v.StaticSystemView.LocalMount()
}

// Broker reads do not ask Vault whether the mount is local each time: from a
// plugin every question is a gRPC round trip, and the answer never changes.
func TestBrokerReadsAskLocalMountOnce(t *testing.T) {
	env := newTestEnv(t)
	view := &countingSystemView{StaticSystemView: logical.StaticSystemView{LocalMountVal: true, DefaultLeaseTTLVal: time.Hour, MaxLeaseTTLVal: 24 * time.Hour}}
	retry := env.retry
	b := newBackend(Options{Now: env.clock.Now, Retry: &retry, NoTicker: true})
	conf := logical.TestBackendConfig()
	conf.StorageView = env.view
	conf.System = view
	if err := b.Setup(context.Background(), conf); err != nil {
		t.Fatal(err)
	}
	env.b = b
	env.configure(nil)
	env.snyk.AddIntegration(testOrgID, "github", false)
	env.mustOK(logical.CreateOperation, "integrations/"+testOrgID+"/github", env.integrationData("github"))
	for i := 0; i < 20; i++ {
		env.mustOK(logical.ReadOperation, "broker/"+testOrgID+"/github", nil)
	}
	if !b.System().LocalMount() {
		t.Error("the remembered answer differs from Vault's")
	}
	if got := view.localMountCalls.Load(); got != 1 {
		t.Fatalf("Vault was asked LocalMount %d times over 20 broker reads; want once for the backend's life", got)
	}
}

// TestBrokerReadDuringARotationCall: reads never wait on a rotation. While a
// switch's Snyk call is in flight, with the integration's lock held, a broker
// read is answered at once with a token Snyk knows; the rotation finishes
// after it.
func TestBrokerReadDuringARotationCall(t *testing.T) {
	env, integID := rotationEnv(t, nil)
	env.snyk.Faults().Inject(snyktest.RouteSwitchToken, fault.Fault{Delay: 3 * time.Second, Times: 1})
	rotated := make(chan error, 1)
	go func() {
		_, err := env.request(logical.UpdateOperation, "broker/"+testOrgID+"/github/rotate", nil)
		rotated <- err
	}()
	for env.snyk.Faults().Calls(snyktest.RouteSwitchToken) == 0 {
		select {
		case err := <-rotated:
			t.Fatalf("the rotation ended before its switch reached Snyk: %v", err)
		case <-time.After(time.Millisecond):
		}
	}
	served := env.broker()["broker_token"]
	select {
	case <-rotated:
		t.Fatal("the read was answered only after the rotation's Snyk call: it waited on the rotation")
	default:
	}
	if served != env.snyk.CurrentToken(integID) && served != env.snyk.ProvisionalToken(integID) {
		t.Fatalf("served %v during the switch: neither current nor provisional at Snyk", served)
	}
	if err := <-rotated; err != nil {
		t.Fatal(err)
	}
	if got := env.broker()["broker_token"]; got != env.snyk.CurrentToken(integID) {
		t.Fatal("after the rotation, the read does not serve the switched token")
	}
}
