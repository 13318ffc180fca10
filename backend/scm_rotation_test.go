package backend

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/vault/sdk/logical"

	"github.com/snyk-vault/vault-plugin-secrets-snyk/backend/fault"
	"github.com/snyk-vault/vault-plugin-secrets-snyk/backend/scm/scmtest"
)

const rotatingGitLabToken = "glpat-rotating00000000"

// gitlabRotationEnv: a GitLab integration whose token (expiring 24 days
// after the clock's start) rotates itself scm_rotate_before_expiry (7 days)
// before its expiry.
func gitlabRotationEnv(t *testing.T, extra map[string]interface{}) *testEnv {
	env := newTestEnv(t)
	env.configure(nil)
	env.gitlab.AddToken(rotatingGitLabToken, scmtest.GitLabToken{Username: "gl-bot", Scopes: []string{"api"}, ExpiresAt: "2026-12-20", AccessLevel: scmtest.GitLabMaintainer})
	env.snyk.AddIntegration(testOrgID, "gitlab", false)
	data := map[string]interface{}{"scm_token": rotatingGitLabToken, "scm_url": env.gitlabURL, "scm_token_auto_rotate": true}
	for k, v := range extra {
		data[k] = v
	}
	created := env.mustOK(logical.CreateOperation, "integrations/"+testOrgID+"/gitlab", data)
	if created.Data["next_scm_rotation"] == nil {
		t.Fatalf("no next_scm_rotation: %v", created.Data)
	}
	env.initialize()
	return env
}

func (env *testEnv) gitlabRead() map[string]interface{} {
	env.t.Helper()
	return env.mustOK(logical.ReadOperation, "broker/"+testOrgID+"/gitlab", nil).Data
}

// TestGitLabTokenRotatesBeforeExpiryOnce: the token is rotated once, at
// expiry − scm_rotate_before_expiry; the new token is served at once, the old
// one is revoked, leases end at the rotation, and nothing rotates twice.
func TestGitLabTokenRotatesBeforeExpiryOnce(t *testing.T) {
	env := gitlabRotationEnv(t, nil)
	if got := env.mustOK(logical.ReadOperation, "integrations/"+testOrgID+"/gitlab", nil).Data["next_scm_rotation"]; got != "2026-12-13T00:00:00Z" {
		t.Fatalf("next_scm_rotation = %v, want 7 days before the expiry", got)
	}
	// A lease issued shortly before ends at the rotation.
	env.advance(16*24*time.Hour+11*time.Hour+30*time.Minute, 30*time.Minute) // 2026-12-12 23:30
	if lease := env.mustOK(logical.ReadOperation, "broker/"+testOrgID+"/gitlab", nil).Secret.TTL; lease > 30*time.Minute {
		t.Errorf("a lease 30 minutes before the rotation lasts %s", lease)
	}
	if env.gitlabRead()["scm_token"] != rotatingGitLabToken {
		t.Fatal("rotated early")
	}
	env.advance(time.Hour, time.Minute)
	served := env.gitlabRead()["scm_token"].(string)
	if served == rotatingGitLabToken || !strings.HasPrefix(served, "glpat-") {
		t.Fatal("the rotated token is not served")
	}
	if env.gitlab.ActiveTokens(served) != 1 || !env.gitlab.TokenFamilyRevoked(rotatingGitLabToken) && env.gitlab.ActiveTokens(rotatingGitLabToken) != 1 {
		t.Fatal("the old token is still active beside the new one")
	}
	data := env.mustOK(logical.ReadOperation, "integrations/"+testOrgID+"/gitlab", nil).Data
	if data["scm_rotated_at"] == nil || data["scm_status"] != scmStatusOK {
		t.Errorf("after the rotation: %v", data)
	}
	if !strings.Contains(strings.Join(env.events.list(), "\n"), eventSCMTokenRotated) {
		t.Errorf("no %s event", eventSCMTokenRotated)
	}
	env.advance(10*24*time.Hour, time.Hour)
	if n := env.gitlab.Faults().Calls(scmtest.RouteGitLabTokenRotate); n != 1 {
		t.Fatalf("rotate calls = %d, want exactly 1", n)
	}
	if env.gitlab.TokenFamilyRevoked(served) {
		t.Fatal("the new token was revoked (a rotated token was reused)")
	}
	env.assertNoSecretsIn("logs", env.logs.String(), served)
}

// TestGitLabTokenRotationSurvivesStorageAndRestart: storage refusing the
// new token does not lose it (kept, served, stored when storage answers),
// and a restart after it was stored never rotates again.
func TestGitLabTokenRotationSurvivesStorageAndRestart(t *testing.T) {
	env := gitlabRotationEnv(t, nil)
	env.advance(16*24*time.Hour+11*time.Hour, time.Hour) // 2026-12-12 23:00
	env.view.fail("put", "integrations/", 0, 0)          // the WAL goes through; the token's store fails
	env.advance(2*time.Hour, time.Minute)
	served := env.gitlabRead()["scm_token"].(string)
	if served == rotatingGitLabToken {
		t.Fatal("the rotated token is not served while storage is down")
	}
	env.view.clear()
	env.advance(time.Minute, 10*time.Second)
	stored, err := getIntegration(context.Background(), env.storage, testOrgID, "gitlab")
	if err != nil || stored.SCMToken != served {
		t.Fatalf("the rotated token was not stored: %v", err)
	}
	env.restart()
	env.advance(3*24*time.Hour, time.Hour)
	if n := env.gitlab.Faults().Calls(scmtest.RouteGitLabTokenRotate); n != 1 {
		t.Fatalf("rotate calls = %d, want exactly 1", n)
	}
	if env.gitlab.TokenFamilyRevoked(served) || env.gitlabRead()["scm_token"] != served {
		t.Fatal("the stored token is not the live one")
	}
	if wals := env.walKinds(); len(wals) != 0 {
		t.Fatalf("WAL entries left: %v", wals)
	}
}

// TestGitLabTokenRotationAnswerLost: an answer lost after GitLab rotated is
// never retried (reuse would revoke the family); it is reported, and a new
// scm_token written by the operator resumes rotation.
func TestGitLabTokenRotationAnswerLost(t *testing.T) {
	env := gitlabRotationEnv(t, nil)
	env.advance(16*24*time.Hour+11*time.Hour, time.Hour) // 2026-12-12 23:00
	env.gitlab.Faults().Inject(scmtest.RouteGitLabTokenRotate, fault.Fault{Status: http.StatusBadGateway, AfterHandler: true, Times: 1})
	env.advance(2*24*time.Hour, time.Hour)
	if n := env.gitlab.Faults().Calls(scmtest.RouteGitLabTokenRotate); n != 1 {
		t.Fatalf("rotate calls = %d: a lost rotation was retried", n)
	}
	data := env.mustOK(logical.ReadOperation, "integrations/"+testOrgID+"/gitlab", nil).Data
	if !strings.Contains(str(data["scm_rotation_error"]), "write a new scm_token") || data["next_scm_rotation"] != nil {
		t.Fatalf("the lost rotation is not reported: %v", data["scm_rotation_error"])
	}
	env.gitlab.AddToken("glpat-replacement00000", scmtest.GitLabToken{Username: "gl-bot", Scopes: []string{"api"}, ExpiresAt: "2027-01-30", AccessLevel: scmtest.GitLabMaintainer})
	resp := env.mustOK(logical.UpdateOperation, "integrations/"+testOrgID+"/gitlab", map[string]interface{}{"scm_token": "glpat-replacement00000"})
	if resp.Data["next_scm_rotation"] == nil || resp.Data["scm_rotation_error"] != nil {
		t.Fatalf("a new token does not resume rotation: %v", resp.Data)
	}
}

// TestGitLabTokenRotationJoinsASwitch: a Broker switch due inside the
// rotation window carries the SCM rotation, so the client restarts once.
func TestGitLabTokenRotationJoinsASwitch(t *testing.T) {
	// Created at 2026-11-26 12:00 with a 19-day period: the switch is on
	// 2026-12-15 12:00, inside [12-13, 12-19).
	env := gitlabRotationEnv(t, map[string]interface{}{"rotation_period": "456h"})
	data := env.mustOK(logical.ReadOperation, "integrations/"+testOrgID+"/gitlab", nil).Data
	if data["next_scm_rotation"] != data["next_vault_rotation"] {
		t.Fatalf("next_scm_rotation %v, next_vault_rotation %v: not joined", data["next_scm_rotation"], data["next_vault_rotation"])
	}
}

func str(v interface{}) string {
	s, _ := v.(string)
	return s
}

// TestGitLabRotationUnsettledIsNeverResent: a lost answer whose record could
// not be stored leaves the WAL entry, and while it is there nothing sends
// the rotation again, whatever requeues the integration.
func TestGitLabRotationUnsettledIsNeverResent(t *testing.T) {
	env := gitlabRotationEnv(t, nil)
	env.advance(16*24*time.Hour+11*time.Hour, time.Hour)
	env.gitlab.Faults().Inject(scmtest.RouteGitLabTokenRotate, fault.Fault{Status: http.StatusBadGateway, AfterHandler: true, Times: 1})
	env.view.fail("put", "integrations/", 0, 1) // recording the failure fails once
	env.advance(2*time.Hour, time.Minute)
	env.view.clear()
	env.mustOK(logical.UpdateOperation, "config", map[string]interface{}{"ttl": "2h"}) // requeues every integration
	env.advance(2*24*time.Hour, time.Hour)
	if n := env.gitlab.Faults().Calls(scmtest.RouteGitLabTokenRotate); n != 1 {
		t.Fatalf("rotate calls = %d after a lost answer: the family would be revoked", n)
	}
}

// TestGitLabRotationRetriesWhatNeverLeft: a failure before anything was sent
// to GitLab (here the WAL put) is retried, not a silent stop.
func TestGitLabRotationRetriesWhatNeverLeft(t *testing.T) {
	env := gitlabRotationEnv(t, nil)
	env.advance(16*24*time.Hour+11*time.Hour, time.Hour)
	env.view.fail("put", "wal/", 0, 1)
	env.advance(2*time.Hour, time.Minute)
	if n := env.gitlab.Faults().Calls(scmtest.RouteGitLabTokenRotate); n != 1 || env.gitlabRead()["scm_token"] == rotatingGitLabToken {
		t.Fatalf("rotate calls = %d: the rotation was not retried after a failure before the call", n)
	}
}

// TestGitLabRotationNextIsScheduledAfterAStoredLaterToken: after a rotated
// token that storage first refused is stored, the next rotation is queued.
func TestGitLabRotationNextIsScheduledAfterAStoredLaterToken(t *testing.T) {
	env := gitlabRotationEnv(t, nil)
	env.advance(16*24*time.Hour+11*time.Hour, time.Hour)
	env.view.fail("put", "integrations/", 0, 0)
	env.advance(2*time.Hour, time.Minute)
	env.view.clear()
	env.advance(time.Minute, 10*time.Second)
	stored, _ := getIntegration(context.Background(), env.storage, testOrgID, "gitlab")
	at, ok := stored.nextSCMRotation()
	if !ok {
		t.Fatal("no next rotation")
	}
	if queued, ok := env.b.rotation.queuedAt(scmRotateKey(testOrgID + "/gitlab")); !ok || !queued.Equal(at.Truncate(time.Millisecond)) {
		t.Fatalf("the next rotation (%s) is not queued (queued %v at %s)", at, ok, queued)
	}
	if read := env.mustOK(logical.ReadOperation, "integrations/"+testOrgID+"/gitlab", nil).Data; read["last_rotation_error"] != "" {
		t.Errorf("an SCM step marked the Broker rotation failed: %v", read["last_rotation_error"])
	}
}

// TestGitLabRotationRecoveryLeavesAReplacedTokenAlone: after a lost answer
// the operator writes a new token; recovery of the old attempt must not
// stop the new token's rotation.
func TestGitLabRotationRecoveryLeavesAReplacedTokenAlone(t *testing.T) {
	env := gitlabRotationEnv(t, nil)
	env.advance(16*24*time.Hour+11*time.Hour, time.Hour)
	env.gitlab.Faults().Inject(scmtest.RouteGitLabTokenRotate, fault.Fault{Status: http.StatusBadGateway, AfterHandler: true, Times: 1})
	env.view.fail("put", "integrations/", 0, 1) // the WAL entry stays
	env.advance(2*time.Hour, time.Minute)
	env.view.clear()
	env.gitlab.AddToken("glpat-replacement00000", scmtest.GitLabToken{Username: "gl-bot", Scopes: []string{"api"}, ExpiresAt: "2027-01-30", AccessLevel: scmtest.GitLabMaintainer})
	env.mustOK(logical.UpdateOperation, "integrations/"+testOrgID+"/gitlab", map[string]interface{}{"scm_token": "glpat-replacement00000"})
	env.restart()
	read := env.mustOK(logical.ReadOperation, "integrations/"+testOrgID+"/gitlab", nil).Data
	if read["scm_rotation_error"] != nil || read["next_scm_rotation"] == nil {
		t.Fatalf("recovery flagged the replacement token: %v", read["scm_rotation_error"])
	}
}

// TestGitLabRotationRefusedIsAlertable: a refused rotation (a token without
// api or self_rotate) shows on snyk/status and warns on broker reads.
func TestGitLabRotationRefusedIsAlertable(t *testing.T) {
	env := gitlabRotationEnv(t, nil)
	env.advance(16*24*time.Hour+11*time.Hour, time.Hour)
	env.gitlab.Faults().Inject(scmtest.RouteGitLabTokenRotate, fault.Fault{Status: http.StatusForbidden, Body: `{"message":"403 Forbidden - token is not allowed to rotate itself"}`, Times: 1})
	env.advance(2*time.Hour, time.Minute)
	rows := env.mustOK(logical.ReadOperation, "status", nil).Data["attention"].([]map[string]interface{})
	if len(rows) != 1 || !strings.Contains(strings.Join(rows[0]["reasons"].([]string), ","), "scm_rotation_error") {
		t.Fatalf("status rows: %v", rows)
	}
	resp := env.mustOK(logical.ReadOperation, "broker/"+testOrgID+"/gitlab", nil)
	if !strings.Contains(strings.Join(resp.Warnings, " "), "automatic rotation stopped") {
		t.Errorf("no warning on the broker read: %v", resp.Warnings)
	}
}

// TestGitLabRotationCapsLeasesEvenWithoutBrokerRotation: leases end at the
// SCM rotation when Broker rotation is disabled, and stay short while the
// SCM rotation is overdue.
func TestGitLabRotationCapsLeasesEvenWithoutBrokerRotation(t *testing.T) {
	env := gitlabRotationEnv(t, map[string]interface{}{"disable_automated_rotation": true, "ttl": "720h"})
	env.advance(16*24*time.Hour+11*time.Hour+30*time.Minute, 30*time.Minute)
	if lease := env.mustOK(logical.ReadOperation, "broker/"+testOrgID+"/gitlab", nil).Secret.TTL; lease > 30*time.Minute {
		t.Errorf("lease 30 minutes before the SCM rotation: %s", lease)
	}
	env.gitlab.Faults().Inject(scmtest.RouteGitLabTokenRotate, fault.Fault{Status: http.StatusTooManyRequests, RetryAfter: "1"})
	env.advance(time.Hour, time.Minute)
	if lease := env.mustOK(logical.ReadOperation, "broker/"+testOrgID+"/gitlab", nil).Secret.TTL; lease > time.Minute {
		t.Errorf("lease while the SCM rotation is overdue: %s", lease)
	}
}
