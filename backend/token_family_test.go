package backend

import (
	"context"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/vault/sdk/logical"

	"github.com/snyk-vault/vault-plugin-secrets-snyk/backend/fault"
	"github.com/snyk-vault/vault-plugin-secrets-snyk/backend/snyk/snyktest"
)

const testThirdOrgID = "4e6a8c0e-2f4b-4d6e-8a0c-2e4a6c8e0a12"

// familyEnv: payments/github owns a token that platform and billing share
// through clones into two more orgs of the group.
func familyEnv(t *testing.T) (*testEnv, []string) {
	env := newTestEnv(t)
	env.configure(map[string]interface{}{"rotation_period": "1h", "provision_ahead": "10m", "ttl": "30m"})
	env.snyk.AddOrg(testThirdOrgID, testGroupID, "Billing")
	env.snyk.AddIntegration(testOrgID, "github", false)
	env.mustOK(logical.CreateOperation, "integrations/payments/github", mergeData(env.integrationData("github"), map[string]interface{}{"org_id": testOrgID}))
	env.mustOK(logical.UpdateOperation, "integrations/payments/github/clone", map[string]interface{}{"destination_org_id": testOtherOrgID, "destination_name": "platform"})
	env.mustOK(logical.UpdateOperation, "integrations/payments/github/clone", map[string]interface{}{"destination_org_id": testThirdOrgID, "destination_name": "billing"})
	env.initialize()
	env.snyk.Faults().ResetCalls()
	return env, []string{"payments", "platform", "billing"}
}

func (env *testEnv) servedBy(name string) string {
	env.t.Helper()
	return env.mustOK(logical.ReadOperation, "broker/"+name+"/github", nil).Data["broker_token"].(string)
}

// TestTokenFamilyRotatesOnce: a family of three integrations across three
// orgs makes one provision and one switch per rotation, and every member
// serves the new token after the switch.
func TestTokenFamilyRotatesOnce(t *testing.T) {
	env, members := familyEnv(t)
	first := env.servedBy("payments")
	for _, m := range members {
		if env.servedBy(m) != first {
			t.Fatalf("%s serves another token", m)
		}
	}
	read := env.mustOK(logical.ReadOperation, "integrations/payments/github", nil).Data
	if read["token_family"] != "payments/github" || len(read["shares_token_with"].([]string)) != 2 {
		t.Fatalf("owner read: %v %v", read["token_family"], read["shares_token_with"])
	}
	if r := env.mustOK(logical.ReadOperation, "integrations/billing/github", nil).Data; r["token_family"] != "payments/github" {
		t.Fatalf("sharer read: %v", r["token_family"])
	}
	// A sharer's lease ends at the family's provision (then at its switch).
	env.advance(45*time.Minute, time.Minute)
	if lease := env.mustOK(logical.ReadOperation, "broker/billing/github", nil).Secret.TTL; lease > 5*time.Minute {
		t.Errorf("a sharer's lease 5 minutes before the family's provision lasts %s", lease)
	}
	env.advance(16*time.Minute, 10*time.Second)
	f := env.snyk.Faults()
	if p, s := f.Calls(snyktest.RouteProvisionToken), f.Calls(snyktest.RouteSwitchToken); p != 1 || s != 1 {
		t.Fatalf("provisions %d, switches %d: want one of each for the family", p, s)
	}
	next := env.servedBy("payments")
	if next == first {
		t.Fatal("not rotated")
	}
	integ := env.snyk.IntegrationIDs(testThirdOrgID)["github"]
	for _, m := range members {
		if env.servedBy(m) != next {
			t.Fatalf("%s does not serve the new token", m)
		}
	}
	if env.snyk.CurrentToken(integ) != next {
		t.Fatal("Snyk does not route the clone by the new token")
	}
}

func TestTokenFamilyRules(t *testing.T) {
	env, _ := familyEnv(t)
	env.mustFail400(logical.UpdateOperation, "broker/platform/github/rotate", nil, "payments/github")
	env.mustFail400(logical.DeleteOperation, "integrations/payments/github", nil, "platform/github", "billing/github")
	env.mustFail400(logical.UpdateOperation, "integrations/platform/github/clone", map[string]interface{}{"destination_org_id": testThirdOrgID, "destination_name": "other"}, "clone the owner")
	env.mustOK(logical.DeleteOperation, "integrations/platform/github", nil)
	env.mustOK(logical.DeleteOperation, "integrations/billing/github", nil)
	env.mustOK(logical.DeleteOperation, "integrations/payments/github", nil)
}

// TestTokenFamilyImportJoins: an integration imported with another's token
// joins its family instead of holding a copy.
func TestTokenFamilyImportJoins(t *testing.T) {
	env := newTestEnv(t)
	env.configure(nil)
	env.snyk.AddIntegration(testOrgID, "github", false)
	env.mustOK(logical.CreateOperation, "integrations/payments/github", mergeData(env.integrationData("github"), map[string]interface{}{"org_id": testOrgID}))
	token := env.servedBy("payments")
	id, _ := env.snyk.AddIntegration(testOtherOrgID, "github", false)
	resp := env.mustOK(logical.CreateOperation, "integrations/platform/github", mergeData(env.integrationData("github"),
		map[string]interface{}{"org_id": testOtherOrgID, "integration_id": id, "broker_token": token}))
	if !strings.Contains(strings.Join(resp.Warnings, " "), "joins its token family") {
		t.Fatalf("warnings: %v", resp.Warnings)
	}
	e, _ := getIntegration(context.Background(), env.storage, "platform", "github")
	if e.TokenOwner != "payments/github" || e.CurrentToken != "" {
		t.Fatalf("the import holds a copy: owner %q", e.TokenOwner)
	}
}

// TestConcurrentCreatesOfOneIntegration: two creates of one Snyk integration
// under different names at the same moment, each past the stored-entry check
// before the other stored anything: exactly one succeeds, the other is
// refused naming it, and Snyk mints one token.
func TestConcurrentCreatesOfOneIntegration(t *testing.T) {
	env := newTestEnv(t)
	env.configure(nil)
	env.snyk.AddIntegration(testOrgID, "github", false)
	// The look-up and the enabling are slow enough for both creates to be
	// past the stored-entry check before either stores its entry.
	env.snyk.Faults().Inject(snyktest.RouteIntegrationByType, fault.Fault{Delay: 200 * time.Millisecond})
	env.snyk.Faults().Inject(snyktest.RouteUpdateIntegration, fault.Fault{Delay: 300 * time.Millisecond})
	minted := len(env.snyk.Minted())
	var wg sync.WaitGroup
	results := make([]*logical.Response, 2)
	errs := make([]error, 2)
	for i, name := range []string{"first", "second"} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i], errs[i] = env.request(logical.CreateOperation, "integrations/"+name+"/github",
				mergeData(env.integrationData("github"), map[string]interface{}{"org_id": testOrgID}))
		}()
	}
	wg.Wait()
	ok, refused := 0, 0
	for i := range results {
		switch {
		case errs[i] != nil:
			t.Fatalf("create %d: %v", i, errs[i])
		case results[i].IsError():
			refused++
			if msg := results[i].Error().Error(); !strings.Contains(msg, "being created for the same Snyk integration") {
				t.Errorf("refusal: %s", msg)
			}
		default:
			ok++
		}
	}
	if ok != 1 || refused != 1 {
		t.Fatalf("%d creates succeeded and %d were refused, want one of each", ok, refused)
	}
	if got := len(env.snyk.Minted()) - minted; got != 1 {
		t.Errorf("Snyk minted %d tokens, want 1", got)
	}
	integrations := 0
	for _, k := range env.storedKeys() {
		if strings.HasPrefix(k, "integrations/") {
			integrations++
		}
	}
	if integrations != 1 {
		t.Errorf("stored entries: %v, want one integration", env.storedKeys())
	}
}

// TestSecondEntryForOneIntegrationRefused: a second name for a Snyk
// integration this mount already manages is refused, with or without its
// token, and nothing is stored or minted: both entries would rotate it.
func TestSecondEntryForOneIntegrationRefused(t *testing.T) {
	env := newTestEnv(t)
	env.configure(nil)
	env.snyk.AddIntegration(testOrgID, "github", false)
	env.mustOK(logical.CreateOperation, "integrations/payments/github", mergeData(env.integrationData("github"), map[string]interface{}{"org_id": testOrgID}))
	token := env.servedBy("payments")
	keys, minted := env.storedKeys(), len(env.snyk.Minted())
	for _, extra := range []map[string]interface{}{
		{"org_id": testOrgID},
		{"org_id": testOrgID, "broker_token": token},
		{"org_id": testOrgID, "broker_token_source": "adopt"},
	} {
		env.mustFail400(logical.CreateOperation, "integrations/again/github", mergeData(env.integrationData("github"), extra),
			"already managed by this mount as payments/github", "integrations/payments/github/clone")
	}
	if got := env.storedKeys(); strings.Join(got, ",") != strings.Join(keys, ",") {
		t.Fatalf("storage changed: %v -> %v", keys, got)
	}
	if got := len(env.snyk.Minted()); got != minted {
		t.Fatalf("%d tokens minted by refused writes", got-minted)
	}
}

// TestTokenFamilyLostCloneIsRecorded: a clone whose answer was lost is found
// at Snyk and recorded by recovery: no unknown sharer.
func TestTokenFamilyLostCloneIsRecorded(t *testing.T) {
	env := newTestEnv(t)
	env.configure(nil)
	env.snyk.AddIntegration(testOrgID, "github", false)
	env.mustOK(logical.CreateOperation, "integrations/payments/github", mergeData(env.integrationData("github"), map[string]interface{}{"org_id": testOrgID}))
	env.snyk.Faults().Inject(snyktest.RouteClone, fault.Fault{Status: http.StatusBadGateway, AfterHandler: true, Times: 1})
	if _, err := env.request(logical.UpdateOperation, "integrations/payments/github/clone", map[string]interface{}{"destination_org_id": testOtherOrgID, "destination_name": "platform"}); err == nil {
		t.Fatal("a lost answer reported success")
	}
	if e, _ := getIntegration(context.Background(), env.storage, "platform", "github"); e != nil {
		t.Fatal("setup: the clone was stored")
	}
	env.restart()
	e, err := getIntegration(context.Background(), env.storage, "platform", "github")
	if err != nil || e == nil || e.TokenOwner != "payments/github" || e.IntegrationID != env.snyk.IntegrationIDs(testOtherOrgID)["github"] {
		t.Fatalf("recovery did not record the clone: %+v %v", e, err)
	}
	if env.servedBy("platform") != env.servedBy("payments") {
		t.Fatal("the recorded clone serves another token")
	}
}

// TestTokenFamilyHandOver: a sharer promoted to owner takes over the token
// and its rotation; the old owner can then be deleted and the family still
// rotates once per period.
func TestTokenFamilyHandOver(t *testing.T) {
	env, _ := familyEnv(t)
	token := env.servedBy("payments")
	resp := env.mustOK(logical.UpdateOperation, "integrations/platform/github", map[string]interface{}{"promote_token_owner": true})
	if resp.Data["broker_token_fingerprint"] != fingerprint(token) {
		t.Fatalf("the new owner does not hold the token: %v", resp.Data)
	}
	for name, owner := range map[string]string{"payments": "platform/github", "billing": "platform/github"} {
		e, _ := getIntegration(context.Background(), env.storage, name, "github")
		if e.TokenOwner != owner || e.CurrentToken != "" {
			t.Fatalf("%s after the hand-over: owner %q", name, e.TokenOwner)
		}
	}
	env.mustOK(logical.DeleteOperation, "integrations/payments/github", nil)
	env.advance(61*time.Minute, 10*time.Second)
	f := env.snyk.Faults()
	if p, s := f.Calls(snyktest.RouteProvisionToken), f.Calls(snyktest.RouteSwitchToken); p != 1 || s != 1 {
		t.Fatalf("provisions %d, switches %d after the hand-over", p, s)
	}
	if next := env.servedBy("platform"); next == token || env.servedBy("billing") != next {
		t.Fatal("the family did not rotate together after the hand-over")
	}
}
