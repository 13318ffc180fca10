package backend

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/vault/sdk/logical"

	"github.com/snyk-vault/vault-plugin-secrets-snyk/backend/snyk/snyktest"
)

// TestRecoveryAfterProvisionNotStored: Snyk issued a provisional token and
// storage refused it. Once storage answers, the token is stored with the
// phase it had (switch at next_vault_rotation, not a retry 10 s later), the
// slot stays held meanwhile (Snyk did issue a token), and
// last_rotation_error names the step.
func TestRecoveryAfterProvisionNotStored(t *testing.T) {
	env, integID := rotationEnv(t, nil)
	key := testOrgID + "/github"
	env.advance(49*time.Minute, time.Minute)
	switchAt := env.integration()["next_vault_rotation"]

	env.view.fail("put", "integrations/", 0, 0)
	env.advance(2*time.Minute, 10*time.Second)
	provisional := env.snyk.ProvisionalToken(integID)
	if provisional == "" {
		t.Fatal("setup: Snyk issued no provisional token")
	}
	if _, held := env.b.rotation.holdsSlot(key); !held {
		t.Fatal("the slot was released although Snyk issued a token")
	}
	env.view.clear()
	env.advance(10*time.Second, 10*time.Second)
	stored, err := getIntegration(context.Background(), env.storage, testOrgID, "github")
	if err != nil || stored == nil || stored.ProvisionalToken != provisional || stored.RotationState != stateProvisioned {
		t.Fatalf("the kept token was not stored: %+v %v", stored, err)
	}
	data := env.integration()
	if data["next_vault_rotation"] != switchAt || data["next_attempt_at"] != nil {
		t.Fatalf("the phase changed: switch at %v (was %v), next attempt %v", data["next_vault_rotation"], switchAt, data["next_attempt_at"])
	}
	if !strings.Contains(data["last_rotation_error"].(string), "storing it failed") {
		t.Errorf("last_rotation_error does not name the step: %v", data["last_rotation_error"])
	}
	// No switch before its time, then exactly one, and no second provision.
	env.advance(5*time.Minute, 10*time.Second)
	if env.snyk.Switches() != 0 {
		t.Fatal("switched before next_vault_rotation")
	}
	env.advance(6*time.Minute, 10*time.Second)
	if env.snyk.CurrentToken(integID) != provisional || env.broker()["broker_token"] != provisional {
		t.Fatal("the kept token was not switched at its time")
	}
	if n := env.snyk.Faults().Calls(snyktest.RouteProvisionToken); n != 1 {
		t.Errorf("provision calls = %d, want 1", n)
	}
}

// TestRecoveryAfterSwitchNotStored: Snyk switched and storage refused the
// record. The next action is never a new provision: once storage answers,
// the switch is stored as done and the schedule goes on from it.
func TestRecoveryAfterSwitchNotStored(t *testing.T) {
	env, integID := rotationEnv(t, nil)
	env.advance(51*time.Minute, time.Minute)
	provisional := env.snyk.ProvisionalToken(integID)
	// The switch_pending mark goes through; the record of the switch fails.
	env.view.fail("put", "integrations/", 1, 0)
	env.advance(10*time.Minute, 10*time.Second)
	if env.snyk.CurrentToken(integID) != provisional || env.snyk.Switches() != 1 {
		t.Fatal("setup: Snyk did not switch")
	}
	if data := env.integration(); data["rotation_state"] != stateActive || !strings.Contains(data["last_rotation_error"].(string), "storing the switch failed") {
		t.Fatalf("reads do not show the kept switch: %v", data)
	}
	env.view.clear()
	env.advance(time.Minute, 10*time.Second)
	stored, err := getIntegration(context.Background(), env.storage, testOrgID, "github")
	if err != nil || stored == nil || stored.CurrentToken != provisional || stored.ProvisionalToken != "" {
		t.Fatalf("the switch was not stored: %+v %v", stored, err)
	}
	if n := env.snyk.Faults().Calls(snyktest.RouteProvisionToken); n != 1 {
		t.Fatalf("provision calls = %d: a new provision followed a switch that was not stored", n)
	}
	// The next rotation comes on schedule.
	env.advance(50*time.Minute, time.Minute)
	if n := env.snyk.Faults().Calls(snyktest.RouteProvisionToken); n != 2 {
		t.Fatalf("provision calls = %d, want the next scheduled one", n)
	}
}

// TestStartupNeverGivesUp: a storage error while the mount initializes (here
// the first WAL listing) does not leave it without rotations: the loop runs
// and loads once storage answers.
func TestStartupNeverGivesUp(t *testing.T) {
	env, integID := rotationEnv(t, nil)
	env.b.Cleanup(context.Background())
	env.b = env.newBackend()
	env.view.fail("list", "wal/", 0, 1)
	if err := env.b.Initialize(context.Background(), &logical.InitializationRequest{Storage: env.view}); err != nil {
		t.Fatalf("initialization failed: %v", err)
	}
	if !strings.Contains(env.logs.String(), "loading from storage failed") {
		t.Error("the failed load is not logged")
	}
	if env.b.rotation.queueLen() != 0 {
		t.Fatal("setup: the queue loaded although storage failed")
	}
	env.advance(5*time.Second, time.Second)
	// The integration's rotation action and its SCM check.
	if env.b.rotation.queueLen() != 2 {
		t.Fatalf("queue length = %d after storage answered, want 2", env.b.rotation.queueLen())
	}
	env.advance(51*time.Minute, time.Minute)
	if env.snyk.ProvisionalToken(integID) == "" {
		t.Fatal("no rotation after a failed start-up")
	}
}
