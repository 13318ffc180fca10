package backend

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/vault/sdk/framework"
	"github.com/hashicorp/vault/sdk/logical"

	"github.com/snyk-vault/vault-plugin-secrets-snyk/backend/fault"
	"github.com/snyk-vault/vault-plugin-secrets-snyk/backend/snyk/snyktest"
)

// The behaviour matrix: every way a real Snyk might refuse the Broker-token
// calls whose failures it does not document (status × wording, and what
// enabling Broker twice does), against every path that meets those refusals.
// Each scenario asserts that the engine took the right path, or stopped with
// an error that shows Snyk's answer, and that nothing irreversible happened:
// no token Snyk minted that Vault does not hold, no switch Vault did not
// record.

const answersPath = "integrations/" + testOrgID + "/github"

type answersScenario struct {
	name string
	run  func(t *testing.T, env *testEnv, p snyktest.Profile)
}

var answersScenarios = []answersScenario{
	{"create/not-brokered/auto", answersCreateNotBrokeredAuto},
	{"create/not-brokered/enable", answersCreateNotBrokeredEnable},
	{"create/not-brokered/adopt", answersCreateNotBrokeredAdopt},
	{"create/brokered/auto", answersCreateBrokeredAuto},
	{"create/brokered/enable", answersCreateBrokeredEnable},
	{"create/group-holds-provisional", answersCreateGroupConflict},
	{"create/import", answersCreateImport},
	{"create/enable-answer-lost", answersCreateEnableAnswerLost},
	{"rotation/scheduled", answersScheduledRotation},
	{"rotation/manual", answersManualRotation},
	{"rotation/switched-outside-vault", answersSwitchedOutsideVault},
	{"recovery/switch-answer-lost", answersSwitchAnswerLost},
	{"recovery/crash-during-switch", answersCrashDuringSwitch},
	{"rotation/broker-disabled-outside-vault", answersBrokerDisabledOutsideVault},
}

func TestUndocumentedAnswersMatrix(t *testing.T) {
	for _, p := range snyktest.Profiles() {
		t.Run(p.Name, func(t *testing.T) {
			for _, sc := range answersScenarios {
				t.Run(sc.name, func(t *testing.T) {
					env := newTestEnv(t)
					env.snyk.SetBehaviour(p.Behaviour)
					env.configure(map[string]interface{}{"rotation_period": "1h", "provision_ahead": "10m", "ttl": "30m"})
					sc.run(t, env, p)
				})
			}
		})
	}
}

// TestCreateEnablesBrokerOn409NotBrokered is the case that once failed every
// create: provision-token answered 409 "… is not brokered.".
func TestCreateEnablesBrokerOn409NotBrokered(t *testing.T) {
	env := newTestEnv(t)
	env.snyk.SetBehaviour(snyktest.Behaviour{NotBrokeredStatus: http.StatusConflict, NotBrokeredMessage: "Integration %s is not brokered."})
	env.configure(nil)
	id, _ := env.snyk.AddIntegration(testOrgID, "github", false)
	resp := env.mustOK(logical.CreateOperation, answersPath, env.integrationData("github"))
	if resp.Data["token_source"] != sourceEnabled || !env.snyk.Brokered(id) {
		t.Fatalf("Broker was not enabled: %v", resp.Data)
	}
	if env.broker()["broker_token"] != env.snyk.CurrentToken(id) {
		t.Fatal("the served token is not the one Snyk issued")
	}
}

// answerShown checks an error shows Snyk's status, so the operator sees
// exactly what Snyk said.
func answerShown(t testing.TB, p snyktest.Profile, msg string) {
	t.Helper()
	if p.NotBrokeredStatus == 0 {
		return
	}
	status := p.NotBrokeredStatus
	if !strings.Contains(msg, fmt.Sprintf("HTTP %d", status)) && !strings.Contains(msg, fmt.Sprintf(": %d: ", status)) {
		t.Errorf("error does not show Snyk's answer (HTTP %d): %s", status, msg)
	}
}

// createFails runs a create that must be refused with a 400 and store
// nothing; it returns the error text.
func (env *testEnv) createFails(data map[string]interface{}) string {
	env.t.Helper()
	before := env.storedKeys()
	resp, err := env.request(logical.CreateOperation, answersPath, data)
	if err != nil {
		env.t.Fatalf("want a 400, got error %v", err)
	}
	if resp == nil || !resp.IsError() {
		env.t.Fatalf("want a 400, got %#v", resp)
	}
	if after := env.storedKeys(); !slices.Equal(before, after) {
		env.t.Errorf("a refused create changed storage: %v -> %v", before, after)
	}
	return resp.Error().Error()
}

func withData(env *testEnv, extra map[string]interface{}) map[string]interface{} {
	return mergeData(env.integrationData("github"), extra)
}

// agreesWithSnyk asserts that Vault and Snyk agree: every token Snyk minted
// since mark that is still live at Snyk (current or provisional) is held by
// Vault, unless listed as lost (minted by a call whose answer never arrived);
// and every stored integration either matches Snyk's current and provisional
// tokens or has recorded that its switch may have been applied.
func (env *testEnv) agreesWithSnyk(mark int, lost ...string) {
	env.t.Helper()
	entries, err := listIntegrations(context.Background(), env.storage)
	if err != nil {
		env.t.Fatal(err)
	}
	held := map[string]bool{}
	for _, e := range entries {
		held[e.CurrentToken], held[e.ProvisionalToken] = true, true
		cur, prov := env.snyk.CurrentToken(e.IntegrationID), env.snyk.ProvisionalToken(e.IntegrationID)
		switch {
		case e.ProvisionalToken == "":
			if cur != e.CurrentToken || prov != "" {
				env.t.Errorf("%s/%s: Vault serves a token Snyk does not route by, or Snyk holds a provisional token Vault does not", e.Name, e.SCM)
			}
		case prov == e.ProvisionalToken:
			if e.CurrentToken != "" && cur != e.CurrentToken {
				env.t.Errorf("%s/%s: Vault's current token is not Snyk's", e.Name, e.SCM)
			}
		case cur == e.ProvisionalToken && e.SwitchOutcomeUnknown:
			// The switch happened; Vault knows it may have and settles it.
		default:
			env.t.Errorf("%s/%s: Snyk switched a token Vault did not record", e.Name, e.SCM)
		}
	}
	minted := env.snyk.Minted()
	for _, tok := range minted[mark:] {
		live := env.snyk.TokenIsCurrent(tok) || env.snyk.TokenIsProvisional(tok)
		if live && !held[tok] && !slices.Contains(lost, tok) {
			env.t.Errorf("Snyk minted a token Vault does not store (…%s)", tok[len(tok)-4:])
		}
	}
}

func answersCreateNotBrokeredAuto(t *testing.T, env *testEnv, p snyktest.Profile) {
	id, _ := env.snyk.AddIntegration(testOrgID, "github", false)
	mark := len(env.snyk.Minted())
	if p.Meaningful() {
		resp := env.mustOK(logical.CreateOperation, answersPath, env.integrationData("github"))
		if resp.Data["token_source"] != sourceEnabled || resp.Data["rotation_state"] != stateActive {
			t.Fatalf("create: %v", resp.Data)
		}
		if env.broker()["broker_token"] != env.snyk.CurrentToken(id) {
			t.Fatal("the served token is not the one Snyk issued")
		}
	} else {
		msg := env.createFails(env.integrationData("github"))
		answerShown(t, p, msg)
		if !strings.Contains(msg, "broker_token_source=enable") {
			t.Errorf("the error does not say how to proceed: %s", msg)
		}
		if env.snyk.Brokered(id) || env.snyk.Faults().Calls(snyktest.RouteUpdateIntegration) != 0 {
			t.Fatal("Vault enabled Broker on an answer it could not read")
		}
		// The operator says what they know.
		env.mustOK(logical.CreateOperation, answersPath, withData(env, map[string]interface{}{"broker_token_source": tokenSourceEnable}))
	}
	if n := env.snyk.Faults().Calls(snyktest.RouteProvisionToken); n != 1 {
		t.Errorf("provision-token calls = %d, want 1", n)
	}
	env.agreesWithSnyk(mark)
}

func answersCreateNotBrokeredEnable(t *testing.T, env *testEnv, p snyktest.Profile) {
	id, _ := env.snyk.AddIntegration(testOrgID, "github", false)
	mark := len(env.snyk.Minted())
	resp := env.mustOK(logical.CreateOperation, answersPath, withData(env, map[string]interface{}{"broker_token_source": tokenSourceEnable}))
	if resp.Data["token_source"] != sourceEnabled || !env.snyk.Brokered(id) {
		t.Fatalf("create: %v", resp.Data)
	}
	if n := env.snyk.Faults().Calls(snyktest.RouteProvisionToken); n != 0 {
		t.Errorf("broker_token_source=enable called provision-token %d times", n)
	}
	env.agreesWithSnyk(mark)
}

func answersCreateNotBrokeredAdopt(t *testing.T, env *testEnv, p snyktest.Profile) {
	id, _ := env.snyk.AddIntegration(testOrgID, "github", false)
	mark := len(env.snyk.Minted())
	msg := env.createFails(withData(env, map[string]interface{}{"broker_token_source": tokenSourceAdopt}))
	answerShown(t, p, msg)
	if p.Meaningful() && !strings.Contains(msg, "broker_token_source=enable") {
		t.Errorf("the error does not say how to proceed: %s", msg)
	}
	if env.snyk.Brokered(id) || env.snyk.Faults().Calls(snyktest.RouteUpdateIntegration) != 0 {
		t.Fatal("broker_token_source=adopt enabled Broker")
	}
	env.agreesWithSnyk(mark)
}

func answersCreateBrokeredAuto(t *testing.T, env *testEnv, p snyktest.Profile) {
	id, old := env.snyk.AddIntegration(testOrgID, "github", true)
	mark := len(env.snyk.Minted())
	resp := env.mustOK(logical.CreateOperation, answersPath, env.integrationData("github"))
	if resp.Data["token_source"] != sourceAdopted || resp.Data["rotation_state"] != stateProvisioned {
		t.Fatalf("create: %v", resp.Data)
	}
	if env.snyk.CurrentToken(id) != old || env.snyk.Faults().Calls(snyktest.RouteUpdateIntegration) != 0 {
		t.Fatal("adoption changed the token running clients use")
	}
	env.agreesWithSnyk(mark)
}

func answersCreateBrokeredEnable(t *testing.T, env *testEnv, p snyktest.Profile) {
	id, old := env.snyk.AddIntegration(testOrgID, "github", true)
	mark := len(env.snyk.Minted())
	data := withData(env, map[string]interface{}{"broker_token_source": tokenSourceEnable})
	switch p.EnableOnBrokered {
	case snyktest.EnableSameToken, snyktest.EnableNewToken:
		resp := env.mustOK(logical.CreateOperation, answersPath, data)
		if resp.Data["token_source"] != sourceEnabled || env.broker()["broker_token"] != env.snyk.CurrentToken(id) {
			t.Fatalf("Vault does not serve the token Snyk returned: %v", resp.Data)
		}
		if p.EnableOnBrokered == snyktest.EnableSameToken && env.snyk.CurrentToken(id) != old {
			t.Fatal("the token changed")
		}
	default:
		msg := env.createFails(data)
		answerShown(t, p, msg)
		if p.Meaningful() && !strings.Contains(msg, "broker_token_source=adopt") {
			t.Errorf("the error does not say how to proceed: %s", msg)
		}
		if env.snyk.CurrentToken(id) != old {
			t.Fatal("the token changed")
		}
	}
	if n := env.snyk.Faults().Calls(snyktest.RouteProvisionToken); n != 0 {
		t.Errorf("broker_token_source=enable called provision-token %d times", n)
	}
	env.agreesWithSnyk(mark)
}

func answersCreateGroupConflict(t *testing.T, env *testEnv, p snyktest.Profile) {
	other, _ := env.snyk.AddIntegration(testOtherOrgID, "gitlab", true)
	if env.snyk.ProvisionOutsideVault(other) == "" {
		t.Fatal("setup: no provisional token")
	}
	id, old := env.snyk.AddIntegration(testOrgID, "github", true)
	mark := len(env.snyk.Minted())
	msg := env.createFails(env.integrationData("github"))
	answerShown(t, p, msg)
	if p.Meaningful() && !strings.Contains(msg, "already exists in this org's group") {
		t.Errorf("the error does not name the blocked group: %s", msg)
	}
	if n := env.snyk.Faults().Calls(snyktest.RouteUpdateIntegration); n != 0 {
		t.Fatalf("Vault tried to enable Broker on a group conflict (%d calls)", n)
	}
	if env.snyk.CurrentToken(id) != old {
		t.Fatal("the token changed")
	}
	env.agreesWithSnyk(mark)
}

func answersCreateImport(t *testing.T, env *testEnv, p snyktest.Profile) {
	id, old := env.snyk.AddIntegration(testOrgID, "github", true)
	mark := len(env.snyk.Minted())
	env.mustOK(logical.CreateOperation, answersPath, withData(env, map[string]interface{}{"integration_id": id, "broker_token": old}))
	f := env.snyk.Faults()
	if f.Calls(snyktest.RouteProvisionToken)+f.Calls(snyktest.RouteUpdateIntegration)+f.Calls(snyktest.RouteAddIntegration) != 0 {
		t.Fatal("an import called Snyk")
	}
	env.agreesWithSnyk(mark)
}

// An enable whose answer was lost: Snyk brokered the integration and minted a
// token Vault never saw. The next create must not enable again (undocumented
// on a brokered integration) but provision and adopt.
func answersCreateEnableAnswerLost(t *testing.T, env *testEnv, p snyktest.Profile) {
	id, _ := env.snyk.AddIntegration(testOrgID, "github", false)
	mark := len(env.snyk.Minted())
	env.snyk.Faults().Inject(snyktest.RouteUpdateIntegration, fault.Fault{Status: http.StatusBadGateway, AfterHandler: true, Times: 1})
	data := withData(env, map[string]interface{}{"broker_token_source": tokenSourceEnable})
	if _, err := env.request(logical.CreateOperation, answersPath, data); err == nil {
		t.Fatal("a lost answer reported success")
	}
	if n := env.snyk.Faults().Calls(snyktest.RouteUpdateIntegration); n != 1 {
		t.Fatalf("the enable PUT was sent %d times after an ambiguous answer, want 1", n)
	}
	lost := env.snyk.CurrentToken(id)
	if e, _ := getIntegration(context.Background(), env.storage, testOrgID, "github"); e != nil {
		t.Fatal("an integration was stored without its token")
	}
	if wals, _ := framework.ListWAL(context.Background(), env.storage); len(wals) != 1 {
		t.Fatalf("WAL entries = %d, want the enable's", len(wals))
	}
	resp := env.mustOK(logical.CreateOperation, answersPath, data)
	if resp.Data["token_source"] != sourceAdopted || len(resp.Warnings) == 0 || !strings.Contains(resp.Warnings[0], "lost Snyk's answer") {
		t.Fatalf("the second create did not adopt: %v %v", resp.Data, resp.Warnings)
	}
	if n := env.snyk.Faults().Calls(snyktest.RouteUpdateIntegration); n != 1 {
		t.Fatalf("Broker was enabled again (%d PUTs)", n)
	}
	env.agreesWithSnyk(mark, lost)
}

// createEnabled creates the integration on a not-yet-brokered Snyk
// integration, the way that works under every profile.
func (env *testEnv) createEnabled() string {
	env.t.Helper()
	id, _ := env.snyk.AddIntegration(testOrgID, "github", false)
	env.mustOK(logical.CreateOperation, answersPath, withData(env, map[string]interface{}{"broker_token_source": tokenSourceEnable}))
	env.initialize()
	return id
}

func answersScheduledRotation(t *testing.T, env *testEnv, p snyktest.Profile) {
	mark := len(env.snyk.Minted())
	id := env.createEnabled()
	env.advance(51*time.Minute, time.Minute)
	provisional := env.snyk.ProvisionalToken(id)
	if provisional == "" || env.integration()["rotation_state"] != stateProvisioned {
		t.Fatalf("not provisioned: %v", env.integration())
	}
	env.agreesWithSnyk(mark)
	env.advance(10*time.Minute, 10*time.Second)
	if env.broker()["broker_token"] != provisional || env.snyk.CurrentToken(id) != provisional || env.snyk.Switches() != 1 {
		t.Fatalf("not switched: %v", env.integration())
	}
	env.agreesWithSnyk(mark)
}

func answersManualRotation(t *testing.T, env *testEnv, p snyktest.Profile) {
	mark := len(env.snyk.Minted())
	id := env.createEnabled()
	env.mustOK(logical.UpdateOperation, "broker/"+testOrgID+"/github/rotate", nil)
	if env.broker()["broker_token"] != env.snyk.CurrentToken(id) || env.snyk.Switches() != 1 {
		t.Fatal("manual rotation did not switch")
	}
	env.agreesWithSnyk(mark)
}

// A provisional token switched in Snyk's UI: Snyk then has nothing to switch,
// but Vault never sent this switch, so it keeps serving the old token until
// the operator says what happened.
func answersSwitchedOutsideVault(t *testing.T, env *testEnv, p snyktest.Profile) {
	mark := len(env.snyk.Minted())
	id := env.createEnabled()
	old := env.snyk.CurrentToken(id)
	env.advance(51*time.Minute, time.Minute)
	provisional := env.snyk.ProvisionalToken(id)
	if !env.snyk.SwitchOutsideVault(id) {
		t.Fatal("setup: nothing to switch")
	}
	env.advance(10*time.Minute, 10*time.Second)
	st := env.integration()
	if st["rotation_state"] != stateSwitchPending || env.broker()["broker_token"] != old {
		t.Fatalf("Vault took an unrecorded switch for done: %v", st)
	}
	lastErr, _ := st["last_rotation_error"].(string)
	answerShown(t, p, lastErr)
	rotate := "broker/" + testOrgID + "/github/rotate"
	if p.Meaningful() {
		if !strings.Contains(lastErr, "switched_outside_vault=true") {
			t.Errorf("last_rotation_error does not say how to confirm: %s", lastErr)
		}
		env.mustOK(logical.UpdateOperation, rotate, map[string]interface{}{"switched_outside_vault": true})
	} else {
		env.mustFail400(logical.UpdateOperation, rotate, map[string]interface{}{"switched_outside_vault": true})
		// The operator states the current token instead.
		env.mustOK(logical.UpdateOperation, answersPath, map[string]interface{}{"broker_token": provisional})
	}
	if st := env.integration(); st["rotation_state"] != stateActive || env.broker()["broker_token"] != provisional {
		t.Fatalf("not settled: %v", st)
	}
	env.agreesWithSnyk(mark)
	// The lane is free: the next rotation provisions again.
	env.advance(51*time.Minute, time.Minute)
	if env.snyk.ProvisionalToken(id) == "" {
		t.Fatal("the next rotation did not provision")
	}
}

// switchAnswerLost provisions, then lets Snyk apply the switch while its
// answer is lost.
func (env *testEnv) switchAnswerLost() (id, old, provisional string) {
	env.t.Helper()
	id = env.createEnabled()
	old = env.snyk.CurrentToken(id)
	env.advance(51*time.Minute, time.Minute)
	provisional = env.snyk.ProvisionalToken(id)
	env.snyk.Faults().Inject(snyktest.RouteSwitchToken, fault.Fault{Status: http.StatusBadGateway, AfterHandler: true, Times: 1})
	// Stop right after the attempt, before the engine retries it.
	for i := 0; i < 60 && env.snyk.Switches() == 0; i++ {
		env.advance(10*time.Second, 10*time.Second)
	}
	if env.snyk.CurrentToken(id) != provisional || env.snyk.Switches() != 1 {
		env.t.Fatal("setup: Snyk did not switch")
	}
	if st := env.integration(); st["rotation_state"] != stateSwitchPending || env.broker()["broker_token"] != old {
		env.t.Fatalf("a lost answer was taken as a switch: %v", st)
	}
	return id, old, provisional
}

// settleLostSwitch checks what happens after a lost switch answer: with a
// readable "nothing to switch" the switch is taken as done; otherwise the old
// token stays served and the operator settles it by naming the current token.
func (env *testEnv) settleLostSwitch(p snyktest.Profile, old, provisional string) {
	env.t.Helper()
	env.advance(20*time.Minute, 10*time.Second)
	st := env.integration()
	if p.Meaningful() {
		if st["rotation_state"] != stateActive || env.broker()["broker_token"] != provisional {
			env.t.Fatalf("not settled: %v", st)
		}
	} else {
		if st["rotation_state"] != stateSwitchPending || env.broker()["broker_token"] != old {
			env.t.Fatalf("an unreadable answer was taken as done: %v", st)
		}
		answerShown(env.t, p, st["last_rotation_error"].(string))
		env.mustOK(logical.UpdateOperation, answersPath, map[string]interface{}{"broker_token": provisional})
	}
	if env.snyk.Switches() != 1 {
		env.t.Fatalf("switches = %d, want 1", env.snyk.Switches())
	}
}

func answersSwitchAnswerLost(t *testing.T, env *testEnv, p snyktest.Profile) {
	mark := len(env.snyk.Minted())
	_, old, provisional := env.switchAnswerLost()
	env.agreesWithSnyk(mark)
	env.restart()
	env.settleLostSwitch(p, old, provisional)
	env.agreesWithSnyk(mark)
}

// The process dies after sending the switch and before recording anything:
// only the WAL entry knows, and recovery turns it into the record.
func answersCrashDuringSwitch(t *testing.T, env *testEnv, p snyktest.Profile) {
	mark := len(env.snyk.Minted())
	_, old, provisional := env.switchAnswerLost()
	e, err := getIntegration(context.Background(), env.storage, testOrgID, "github")
	if err != nil || e == nil || !e.SwitchOutcomeUnknown {
		t.Fatalf("the lost answer was not recorded: %+v %v", e, err)
	}
	e.SwitchOutcomeUnknown = false // as if the process died before that store
	if err := putIntegration(context.Background(), env.storage, e); err != nil {
		t.Fatal(err)
	}
	if wals, _ := framework.ListWAL(context.Background(), env.storage); len(wals) != 1 {
		t.Fatalf("WAL entries = %d, want the switch's", len(wals))
	}
	env.restart()
	env.settleLostSwitch(p, old, provisional)
	env.agreesWithSnyk(mark)
}

// Broker disabled at Snyk behind Vault's back: a scheduled provision is
// refused; Vault never enables Broker during a rotation.
func answersBrokerDisabledOutsideVault(t *testing.T, env *testEnv, p snyktest.Profile) {
	id := env.createEnabled()
	env.snyk.DisableBrokerOutsideVault(id)
	env.snyk.Faults().ResetCalls()
	env.advance(51*time.Minute, time.Minute)
	st := env.integration()
	if st["rotation_state"] != stateActive || st["last_rotation_error"] == "" {
		t.Fatalf("the refusal is not reported: %v", st)
	}
	answerShown(t, p, st["last_rotation_error"].(string))
	if p.Meaningful() && !strings.Contains(st["last_rotation_error"].(string), "not brokered") {
		t.Errorf("last_rotation_error does not say why: %v", st["last_rotation_error"])
	}
	if n := env.snyk.Faults().Calls(snyktest.RouteUpdateIntegration); n != 0 {
		t.Fatalf("a rotation enabled Broker (%d calls)", n)
	}
}
