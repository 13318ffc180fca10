package backend

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/vault/sdk/logical"

	"github.com/snyk-vault/vault-plugin-secrets-snyk/backend/fault"

	"github.com/snyk-vault/vault-plugin-secrets-snyk/backend/scm/scmtest"
)

// TestSCMTokenRevokedIsReportedInvalid: a token revoked at the SCM is
// reported invalid within one check period, while broker reads go on (with
// a warning) and an event is sent.
func TestSCMTokenRevokedIsReportedInvalid(t *testing.T) {
	env := newTestEnv(t)
	env.configure(map[string]interface{}{"scm_check_period": "1h"})
	env.snyk.AddIntegration(testOrgID, "github", false)
	created := env.mustOK(logical.CreateOperation, "integrations/"+testOrgID+"/github", env.integrationData("github"))
	if created.Data["scm_status"] != scmStatusOK || created.Data["scm_checked_at"] == nil {
		t.Fatalf("after create: scm_status %v checked %v", created.Data["scm_status"], created.Data["scm_checked_at"])
	}
	env.initialize()
	served := env.broker()["broker_token"]

	env.github.RevokeToken(ghGood)
	env.advance(66*time.Minute, time.Minute) // one period plus the spread (at most a tenth)
	data := env.integration()
	if data["scm_status"] != scmStatusInvalid || len(data["scm_problems"].([]string)) == 0 {
		t.Fatalf("a revoked token is not reported: scm_status %v problems %v", data["scm_status"], data["scm_problems"])
	}
	resp := env.mustOK(logical.ReadOperation, "broker/"+testOrgID+"/github", nil)
	if resp.Data["broker_token"] != served || resp.Data["scm_status"] != scmStatusInvalid {
		t.Fatalf("the broker read stopped serving or does not report the status: %v", resp.Data["scm_status"])
	}
	if w := strings.Join(resp.Warnings, " "); !strings.Contains(w, "failed its last check") {
		t.Errorf("the broker read carries no warning: %v", resp.Warnings)
	}
	if !strings.Contains(strings.Join(env.events.list(), "\n"), eventSCMTokenInvalid+" broker/"+testOrgID+"/github") {
		t.Errorf("no %s event: %v", eventSCMTokenInvalid, env.events.list())
	}
	env.assertNoSecretsIn("logs", env.logs.String())
	// Checks stay one period apart: none in the next half hour.
	calls := env.github.Faults().TotalCalls()
	env.advance(30*time.Minute, time.Minute)
	if n := env.github.Faults().TotalCalls(); n != calls {
		t.Errorf("%d SCM calls within half a period of the last check", n-calls)
	}
}

// TestSCMTokenExpiringIsWarned: a token that comes within scm_expiry_warning
// of its expiry is reported expiring, with a warning and an event, and is
// still served.
func TestSCMTokenExpiringIsWarned(t *testing.T) {
	env := newTestEnv(t)
	env.configure(map[string]interface{}{"scm_check_period": "24h", "scm_expiry_warning": "336h"})
	// The clock starts on 2026-11-26; the token expires 19 days later.
	env.gitlab.AddToken("glpat-expiring000000000", scmtest.GitLabToken{Username: "gl-bot", Scopes: []string{"api"}, ExpiresAt: "2026-12-15", AccessLevel: scmtest.GitLabMaintainer})
	env.snyk.AddIntegration(testOrgID, "gitlab", false)
	data := map[string]interface{}{"scm_token": "glpat-expiring000000000", "scm_url": env.gitlabURL}
	created := env.mustOK(logical.CreateOperation, "integrations/"+testOrgID+"/gitlab", data)
	if created.Data["scm_status"] != scmStatusOK {
		t.Fatalf("after create: scm_status %v", created.Data["scm_status"])
	}
	env.initialize()
	env.advance(6*24*time.Hour, 10*time.Minute)
	read := env.mustOK(logical.ReadOperation, "integrations/"+testOrgID+"/gitlab", nil)
	if read.Data["scm_status"] != scmStatusExpiring {
		t.Fatalf("scm_status %v, want expiring", read.Data["scm_status"])
	}
	resp := env.mustOK(logical.ReadOperation, "broker/"+testOrgID+"/gitlab", nil)
	if resp.Data["scm_token"] != "glpat-expiring000000000" || !strings.Contains(strings.Join(resp.Warnings, " "), "expires at 2026-12-15") {
		t.Fatalf("the broker read: token served %v, warnings %v", resp.Data["scm_token"] != nil, resp.Warnings)
	}
	if !strings.Contains(strings.Join(env.events.list(), "\n"), eventSCMTokenExpiring+" broker/"+testOrgID+"/gitlab") {
		t.Errorf("no %s event: %v", eventSCMTokenExpiring, env.events.list())
	}
}

// TestSCMCheckPeriodOverrideAndSkip: an integration's own period wins over
// the config's, and an unchecked credential is reported unknown, never
// called.
func TestSCMCheckPeriodOverrideAndSkip(t *testing.T) {
	env := newTestEnv(t)
	env.configure(map[string]interface{}{"scm_check_period": "24h"})
	env.snyk.AddIntegration(testOrgID, "github", false)
	env.mustOK(logical.CreateOperation, "integrations/"+testOrgID+"/github", mergeData(env.integrationData("github"), map[string]interface{}{"scm_check_period": "10m"}))
	env.snyk.AddIntegration(testOrgID, "gitlab", false)
	env.mustOK(logical.CreateOperation, "integrations/"+testOrgID+"/gitlab", map[string]interface{}{"scm_token": "glpat-unchecked0000000", "scm_url": env.gitlabURL, "skip_scm_validation": true})
	env.initialize()
	env.github.Faults().ResetCalls()
	env.gitlab.Faults().ResetCalls()
	env.advance(62*time.Minute, time.Minute)
	if n := env.github.Faults().Calls(scmtest.RouteGitHubUser); n < 5 || n > 7 {
		t.Errorf("GitHub /user calls in an hour at a 10m period = %d, want about 6", n)
	}
	gl := env.mustOK(logical.ReadOperation, "integrations/"+testOrgID+"/gitlab", nil).Data
	if gl["scm_status"] != scmStatusUnknown || env.gitlab.Faults().TotalCalls() != 0 {
		t.Fatalf("an unchecked credential: scm_status %v, GitLab calls %d", gl["scm_status"], env.gitlab.Faults().TotalCalls())
	}
	if gh := env.mustOK(logical.ReadOperation, "integrations/"+testOrgID+"/github", nil).Data; gh["scm_check_period"] != int64(600) {
		t.Errorf("scm_check_period = %v", gh["scm_check_period"])
	}
}

// TestSCMNeverCheckedIsChecked: an integration stored without a check
// (before monitoring existed) is checked within a period.
func TestSCMNeverCheckedIsChecked(t *testing.T) {
	env := newTestEnv(t)
	env.configure(map[string]interface{}{"scm_check_period": "1h"})
	env.snyk.AddIntegration(testOrgID, "github", false)
	env.mustOK(logical.CreateOperation, "integrations/"+testOrgID+"/github", env.integrationData("github"))
	e, _ := getIntegration(t.Context(), env.storage, testOrgID, "github")
	e.SCMCheckedAt, e.SCMStatus = time.Time{}, ""
	if err := putIntegration(t.Context(), env.storage, e); err != nil {
		t.Fatal(err)
	}
	env.initialize()
	env.github.RevokeToken(ghGood)
	env.advance(2*time.Hour, time.Minute)
	if got := env.integration()["scm_status"]; got != scmStatusInvalid {
		t.Fatalf("scm_status = %v: a never-checked credential was never checked", got)
	}
}

// TestSlowSCMCheckHoldsUpNothing: an SCM check waiting on a slow SCM runs
// beside the rotation tick and without the integration's lock: a provision
// due at the same moment happens at once, and a write of the integration
// does not wait for the check.
func TestSlowSCMCheckHoldsUpNothing(t *testing.T) {
	env, integID := rotationEnv(t, map[string]interface{}{"scm_check_period": "50m"})
	// Past the provision (50m) and the check (50m plus up to a tenth of the
	// period of per-integration offset): both are due.
	env.clock.Advance(56 * time.Minute)
	env.github.Faults().Inject(fault.AnyRoute, fault.Fault{Delay: 1500 * time.Millisecond})
	checksBefore := env.github.Faults().TotalCalls()

	start := time.Now()
	env.b.rotation.tick(context.Background())
	if took := time.Since(start); took > time.Second {
		t.Errorf("the tick took %s: it waited for the SCM check", took.Round(10*time.Millisecond))
	}
	if env.snyk.ProvisionalToken(integID) == "" {
		t.Fatal("the provision due with the SCM check did not happen")
	}
	start = time.Now()
	env.mustOK(logical.UpdateOperation, "integrations/"+testOrgID+"/github", map[string]interface{}{"ttl": "20m"})
	if took := time.Since(start); took > time.Second {
		t.Errorf("a write waited %s for the SCM check", took.Round(10*time.Millisecond))
	}
	env.b.rotation.waitSCMChecks()
	if env.github.Faults().TotalCalls() == checksBefore {
		t.Fatal("no SCM check ran")
	}
	in := env.integration()
	if in["scm_status"] != "ok" || in["scm_validated_at"] == nil {
		t.Errorf("the check's result was not recorded: scm_status %v", in["scm_status"])
	}
	if in["ttl"] != int64(1200) {
		t.Errorf("the check overwrote the write made meanwhile: ttl %v", in["ttl"])
	}
}
