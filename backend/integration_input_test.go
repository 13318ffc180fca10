package backend

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/vault/sdk/framework"
)

func fieldData(t *testing.T, raw map[string]interface{}) *framework.FieldData {
	t.Helper()
	d := &framework.FieldData{Raw: raw, Schema: integrationFields()}
	if err := d.Validate(); err != nil {
		t.Fatalf("fields %v: %v", raw, err)
	}
	return d
}

// wantProblems checks that problems name every wanted fragment, or that
// there are none when none is wanted.
func wantProblems(t *testing.T, problems []string, want ...string) {
	t.Helper()
	joined := strings.Join(problems, "; ")
	if len(want) == 0 && len(problems) > 0 {
		t.Fatalf("unexpected problems: %s", joined)
	}
	if len(want) > 0 && len(problems) == 0 {
		t.Fatalf("no problem; want one naming %q", want)
	}
	for _, w := range want {
		if !strings.Contains(joined, w) {
			t.Errorf("problems %q do not name %q", joined, w)
		}
	}
}

func TestApplyIdentity(t *testing.T) {
	const org, integ = "0b3e1b1c-1b4e-4b8e-9d11-3c0f1b1d2a55", "9a3e5d90-b782-468a-a042-9a2073736f0b"
	cases := []struct {
		name      string
		entry     integrationEntry
		creating  bool
		raw       map[string]interface{}
		wantOrg   string
		wantInteg string
		want      []string
	}{
		{"uuid name implies org_id", integrationEntry{Name: strings.ToUpper(org)}, true, nil, org, "", nil},
		{"slug needs org_id", integrationEntry{Name: "payments"}, true, nil, "", "", []string{"org_id is required"}},
		{"org_id lower-cased", integrationEntry{Name: "payments"}, true, map[string]interface{}{"org_id": strings.ToUpper(org)}, org, "", nil},
		{"org_id not a uuid", integrationEntry{Name: "payments"}, true, map[string]interface{}{"org_id": "acme"}, "", "", []string{"org_id must be a Snyk org ID"}},
		{"org_id fixed after create", integrationEntry{Name: "payments", OrgID: org}, false, map[string]interface{}{"org_id": integ}, org, "", []string{"org_id cannot change"}},
		{"same org_id on update is fine", integrationEntry{Name: "payments", OrgID: org}, false, map[string]interface{}{"org_id": org}, org, "", nil},
		{"integration_id set", integrationEntry{Name: org}, true, map[string]interface{}{"integration_id": integ}, org, integ, nil},
		{"integration_id not a uuid", integrationEntry{Name: org}, true, map[string]interface{}{"integration_id": "x"}, org, "", []string{"integration_id must be"}},
		{"integration_id fixed after create", integrationEntry{Name: org, OrgID: org, IntegrationID: integ}, false, map[string]interface{}{"integration_id": org}, org, integ, []string{"integration_id cannot change"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			e := c.entry
			e.SCM = "github"
			wantProblems(t, e.applyIdentity(fieldData(t, c.raw), c.creating), c.want...)
			if e.OrgID != c.wantOrg || e.IntegrationID != c.wantInteg {
				t.Fatalf("org %q integration %q, want %q %q", e.OrgID, e.IntegrationID, c.wantOrg, c.wantInteg)
			}
		})
	}
}

func TestApplySCMLocation(t *testing.T) {
	cases := []struct {
		name        string
		scm         string
		stored      integrationEntry
		raw         map[string]interface{}
		wantURL     string
		wantChanged []string
		want        []string
	}{
		{"github default", "github", integrationEntry{}, nil, "https://github.com", nil, nil},
		{"gitlab self-hosted, trailing slash trimmed", "gitlab", integrationEntry{}, map[string]interface{}{"scm_url": "https://gitlab.example.com/"}, "https://gitlab.example.com", []string{"scm_url"}, nil},
		{"ghe needs scm_url", "github-enterprise", integrationEntry{}, nil, "", nil, []string{"scm_url is required"}},
		{"http refused", "bitbucket-server", integrationEntry{}, map[string]interface{}{"scm_url": "http://bb.example.com"}, "http://bb.example.com", []string{"scm_url"}, []string{"must use https"}},
		{"credentials in the URL refused", "gitlab", integrationEntry{}, map[string]interface{}{"scm_api_url": "https://u:p@gitlab.example.com"}, "https://gitlab.com", []string{"scm_api_url"}, []string{"must not embed credentials"}},
		{"azure needs azure_org", "azure-repos", integrationEntry{}, nil, "https://dev.azure.com", nil, []string{"azure_org is required"}},
		{"azure_org only for azure", "github", integrationEntry{}, map[string]interface{}{"azure_org": "contoso"}, "https://github.com", []string{"azure_org"}, []string{"azure_org applies only"}},
		{"unchanged values are not changes", "gitlab", integrationEntry{SCMURL: "https://gitlab.example.com"}, map[string]interface{}{"scm_url": "https://gitlab.example.com"}, "https://gitlab.example.com", nil, nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			e := c.stored
			e.SCM = c.scm
			changed, problems := e.applySCMLocation(fieldData(t, c.raw))
			wantProblems(t, problems, c.want...)
			if e.SCMURL != c.wantURL || !slices.Equal(changed, c.wantChanged) {
				t.Fatalf("scm_url %q changed %v, want %q %v", e.SCMURL, changed, c.wantURL, c.wantChanged)
			}
		})
	}
}

func TestApplySCMCredential(t *testing.T) {
	cases := []struct {
		name        string
		scm         string
		stored      integrationEntry
		raw         map[string]interface{}
		wantSent    bool
		wantChanged bool
		want        []string
	}{
		{"token", "github", integrationEntry{}, map[string]interface{}{"scm_token": " ghp_x "}, true, true, nil},
		{"token required", "gitlab", integrationEntry{}, nil, false, false, []string{"scm_token is required"}},
		{"both forms", "bitbucket-server", integrationEntry{}, map[string]interface{}{"scm_token": "t", "scm_username": "u"}, true, true, []string{"not both"}},
		{"basic auth for bitbucket", "bitbucket-server", integrationEntry{}, map[string]interface{}{"scm_username": "u", "scm_password": "p"}, true, true, nil},
		{"username alone is not the secret", "bitbucket-server", integrationEntry{SCMPassword: "p"}, map[string]interface{}{"scm_username": "u2"}, false, true, nil},
		{"bitbucket needs one form", "bitbucket-server", integrationEntry{}, map[string]interface{}{"scm_username": "u"}, false, true, []string{"bitbucket-server needs"}},
		{"basic auth only for bitbucket", "gitlab", integrationEntry{}, map[string]interface{}{"scm_username": "u", "scm_password": "p"}, true, true, []string{"apply only to bitbucket-server"}},
		{"stored token kept", "github", integrationEntry{SCMToken: "ghp_stored"}, nil, false, false, nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			e := c.stored
			e.SCM = c.scm
			sent, changed, problems := e.applySCMCredential(fieldData(t, c.raw))
			wantProblems(t, problems, c.want...)
			if sent != c.wantSent || changed != c.wantChanged {
				t.Fatalf("sent %v changed %v, want %v %v", sent, changed, c.wantSent, c.wantChanged)
			}
			if c.raw["scm_token"] != nil && len(c.want) == 0 && e.SCMToken != strings.TrimSpace(c.raw["scm_token"].(string)) {
				t.Fatalf("token %q not trimmed and stored", e.SCMToken)
			}
		})
	}
}

func TestApplyBrokerFields(t *testing.T) {
	const tok = "4a18d42f-0706-4ad0-b127-24078731fbed"
	cases := []struct {
		name       string
		creating   bool
		raw        map[string]interface{}
		wantToken  string
		wantSource string
		want       []string
	}{
		{"import lower-cased", true, map[string]interface{}{"broker_token": strings.ToUpper(tok)}, tok, "", nil},
		{"token not a uuid", true, map[string]interface{}{"broker_token": "x"}, "", "", []string{"broker_token must be"}},
		{"source", true, map[string]interface{}{"broker_token_source": "adopt"}, "", "adopt", nil},
		{"unknown source", true, map[string]interface{}{"broker_token_source": "magic"}, "", "", []string{"broker_token_source must be one of"}},
		{"source only on create", false, map[string]interface{}{"broker_token_source": "enable"}, "", "", []string{"only when the integration is created"}},
		{"import and a source", true, map[string]interface{}{"broker_token": tok, "broker_token_source": "enable"}, tok, "", []string{"cannot apply"}},
		{"client url http is fine", true, map[string]interface{}{"broker_client_url": "http://broker:8000"}, "", "", nil},
		{"client url with credentials", true, map[string]interface{}{"broker_client_url": "http://u:p@broker:8000"}, "", "", []string{"must not embed credentials"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			e := integrationEntry{Name: "payments", SCM: "github"}
			var in integrationInput
			wantProblems(t, e.applyBrokerFields(fieldData(t, c.raw), c.creating, &in), c.want...)
			if in.brokerToken != c.wantToken || in.tokenSource != c.wantSource {
				t.Fatalf("token %q source %q, want %q %q", in.brokerToken, in.tokenSource, c.wantToken, c.wantSource)
			}
		})
	}
}

func TestApplyRotationPolicy(t *testing.T) {
	cases := []struct {
		name        string
		stored      integrationEntry
		raw         map[string]interface{}
		wantChanged bool
		check       func(e integrationEntry) bool
		want        []string
	}{
		{"period", integrationEntry{}, map[string]interface{}{"rotation_period": "24h"}, true, func(e integrationEntry) bool { return e.RotationPeriod == 24*time.Hour }, nil},
		{"period replaces a schedule", integrationEntry{rotationOverrides: rotationOverrides{RotationSchedule: "0 3 * * 1", RotationWindow: time.Hour}}, map[string]interface{}{"rotation_period": "24h"}, true,
			func(e integrationEntry) bool { return e.RotationSchedule == "" && e.RotationWindow == 0 }, nil},
		{"schedule replaces a period", integrationEntry{rotationOverrides: rotationOverrides{RotationPeriod: time.Hour}}, map[string]interface{}{"rotation_schedule": "0 3 * * 1"}, true,
			func(e integrationEntry) bool { return e.RotationPeriod == 0 }, nil},
		{"both", integrationEntry{}, map[string]interface{}{"rotation_period": "1h", "rotation_schedule": "0 3 * * 1"}, true, nil, []string{"mutually exclusive"}},
		{"window without schedule", integrationEntry{}, map[string]interface{}{"rotation_window": "2h"}, true, nil, []string{"rotation_window applies only"}},
		{"ttl alone keeps the schedule", integrationEntry{}, map[string]interface{}{"ttl": "30m"}, false, func(e integrationEntry) bool { return e.TTL == 30*time.Minute }, nil},
		{"provision_ahead", integrationEntry{}, map[string]interface{}{"provision_ahead": "10m"}, true, func(e integrationEntry) bool { return e.ProvisionAhead == 10*time.Minute }, nil},
		{"disable", integrationEntry{}, map[string]interface{}{"disable_automated_rotation": true}, false, func(e integrationEntry) bool { return e.DisableAutomatedRotation }, nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			e := c.stored
			e.SCM = "github"
			changed, problems := e.applyRotationPolicy(fieldData(t, c.raw))
			wantProblems(t, problems, c.want...)
			if changed != c.wantChanged {
				t.Fatalf("scheduleChanged = %v, want %v", changed, c.wantChanged)
			}
			if c.check != nil && !c.check(e) {
				t.Fatalf("entry after the write: %+v", e)
			}
		})
	}
}
