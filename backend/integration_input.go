package backend

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/hashicorp/vault/sdk/framework"

	"github.com/snyk-vault/vault-plugin-secrets-snyk/backend/scm"
)

// The fields of an integration write, one method per group: identity, SCM
// location, SCM credential, Broker token and client, rotation policy. Each
// applies its fields to the entry and returns every problem it found, each
// naming the field and the fix. scm/validate uses only the two SCM groups.

// integrationInput is what a write asked for beyond the stored fields.
type integrationInput struct {
	brokerToken     string
	tokenSource     string
	scmChanged      bool
	scheduleChanged bool
	// locationChanged lists the changed fields that decide where the SCM
	// credential is sent; credentialSent: the write carries it.
	locationChanged []string
	credentialSent  bool
}

// fieldReader reads a request's string fields trimmed.
type fieldReader struct{ d *framework.FieldData }

func (r fieldReader) str(field string) (string, bool) {
	v, ok := r.d.GetOk(field)
	if !ok {
		return "", false
	}
	return strings.TrimSpace(v.(string)), true
}

// parseIntegrationInput applies every field group of the request to e.
func parseIntegrationInput(e *integrationEntry, creating bool, d *framework.FieldData) (integrationInput, []string) {
	var in integrationInput
	problems := e.applyIdentity(d, creating)
	location, locationProblems := e.applySCMLocation(d)
	problems = append(problems, locationProblems...)
	in.locationChanged = location
	sent, changed, credentialProblems := e.applySCMCredential(d)
	problems = append(problems, credentialProblems...)
	in.credentialSent = sent
	in.scmChanged = changed || len(location) > 0
	if v, ok := d.GetOk("skip_scm_validation"); ok {
		e.SkipSCMValidation = v.(bool)
	}
	problems = append(problems, e.applyBrokerFields(d, creating, &in)...)
	scheduleChanged, policyProblems := e.applyRotationPolicy(d)
	in.scheduleChanged = scheduleChanged
	problems = append(problems, policyProblems...)
	return in, problems
}

// applyIdentity sets org_id and integration_id, which are fixed at creation.
func (e *integrationEntry) applyIdentity(d *framework.FieldData, creating bool) []string {
	r := fieldReader{d}
	var problems []string
	if v, ok := r.str("org_id"); ok && v != e.OrgID {
		switch {
		case !creating:
			problems = append(problems, "org_id cannot change on an existing integration: delete it and create it again")
		case !isUUID(v):
			problems = append(problems, fmt.Sprintf("org_id must be a Snyk org ID (a UUID such as 4a18d42f-0706-4ad0-b127-24078731fbed), got %q", v))
		default:
			e.OrgID = strings.ToLower(v)
		}
	}
	if creating && e.OrgID == "" {
		if isUUID(e.Name) {
			e.OrgID = strings.ToLower(e.Name)
		} else {
			problems = append(problems, fmt.Sprintf("org_id is required because the name %q is not a Snyk org ID: pass org_id=<the org's UUID>", e.Name))
		}
	}
	if v, ok := r.str("integration_id"); ok && v != e.IntegrationID {
		switch {
		case !creating:
			problems = append(problems, "integration_id cannot change on an existing integration: delete it and create it again")
		case !isUUID(v):
			problems = append(problems, fmt.Sprintf("integration_id must be a Snyk integration ID (UUID), got %q", v))
		default:
			e.IntegrationID = strings.ToLower(v)
		}
	}
	return problems
}

// applySCMLocation sets scm_url, scm_api_url and azure_org, and returns the
// fields that changed: they decide where the SCM credential is sent.
func (e *integrationEntry) applySCMLocation(d *framework.FieldData) (changed []string, problems []string) {
	r := fieldReader{d}
	for _, f := range []struct {
		name string
		dst  *string
	}{{"scm_url", &e.SCMURL}, {"scm_api_url", &e.SCMAPIURL}} {
		if v, ok := r.str(f.name); ok {
			v = normalizeURL(v)
			if v != *f.dst {
				changed = append(changed, f.name)
			}
			*f.dst = v
		}
	}
	if e.SCMURL == "" {
		e.SCMURL = scm.DefaultSCMURL(e.SCM)
	}
	if e.SCMURL == "" {
		problems = append(problems, fmt.Sprintf("scm_url is required for %s: pass the server's base URL, e.g. scm_url=https://%s.example.com", e.SCM, strings.Split(e.SCM, "-")[0]))
	} else if p := checkHTTPSURL("scm_url", e.SCMURL); p != "" {
		problems = append(problems, p)
	}
	if e.SCMAPIURL != "" {
		if p := checkHTTPSURL("scm_api_url", e.SCMAPIURL); p != "" {
			problems = append(problems, p)
		}
	}
	if v, ok := r.str("azure_org"); ok {
		if v != e.AzureOrg {
			changed = append(changed, "azure_org")
		}
		e.AzureOrg = v
	}
	if e.SCM == scm.AzureRepos && e.AzureOrg == "" {
		problems = append(problems, "azure_org is required for azure-repos: pass the Azure DevOps organization name (the <org> in https://dev.azure.com/<org>)")
	}
	if e.SCM != scm.AzureRepos && e.AzureOrg != "" {
		problems = append(problems, "azure_org applies only to azure-repos: remove it")
	}
	return changed, problems
}

// applySCMCredential sets scm_token or scm_username/scm_password. sent: the
// write carries a secret (scm_token or scm_password); changed: any of the
// three was given.
func (e *integrationEntry) applySCMCredential(d *framework.FieldData) (sent, changed bool, problems []string) {
	r := fieldReader{d}
	token, hasToken := r.str("scm_token")
	user, hasUser := r.str("scm_username")
	pass, hasPass := r.str("scm_password")
	sent = hasToken || hasPass
	changed = hasToken || hasUser || hasPass
	if hasToken {
		// A new token ends a failed rotation's stop.
		e.SCMRotationError = ""
	}
	if v, ok := d.GetOk("scm_token_auto_rotate"); ok {
		e.SCMTokenAutoRotate = v.(bool)
	}
	if v, ok := d.GetOk("scm_rotate_before_expiry"); ok {
		e.SCMRotateBeforeExpiry = time.Duration(v.(int)) * time.Second
	}
	if e.SCMTokenAutoRotate && e.SCM != scm.GitLab {
		problems = append(problems, "scm_token_auto_rotate applies only to gitlab (the only SCM whose token can rotate itself by API): remove it")
	}
	switch {
	case hasToken && (hasUser || hasPass):
		problems = append(problems, "send either scm_token, or scm_username with scm_password, not both")
	case hasToken:
		e.SCMToken, e.SCMUsername, e.SCMPassword = token, "", ""
	case changed:
		e.SCMToken = ""
		if hasUser {
			e.SCMUsername = user
		}
		if hasPass {
			e.SCMPassword = pass
		}
	}
	switch {
	case e.SCM == scm.BitbucketServer:
		if e.SCMToken == "" && (e.SCMUsername == "" || e.SCMPassword == "") {
			problems = append(problems, "bitbucket-server needs scm_token (an HTTP access token, sent as bearer) or scm_username with scm_password")
		}
	case e.SCMUsername != "" || e.SCMPassword != "":
		problems = append(problems, fmt.Sprintf("scm_username/scm_password apply only to bitbucket-server: pass the %s token as scm_token", e.SCM))
	case e.SCMToken == "":
		problems = append(problems, fmt.Sprintf("scm_token is required: pass the %s personal access token the Broker client will use", e.SCM))
	}
	return sent, changed, problems
}

// applyBrokerFields sets broker_client_url and reads broker_token and
// broker_token_source into in.
func (e *integrationEntry) applyBrokerFields(d *framework.FieldData, creating bool, in *integrationInput) []string {
	r := fieldReader{d}
	var problems []string
	if v, ok := r.str("broker_client_url"); ok {
		if v != "" {
			// The Broker client's own URL is often plain http inside a
			// cluster network; it is shown in reads, so no credentials.
			if p := checkClientURL(v); p != "" {
				problems = append(problems, p)
			}
		}
		e.BrokerClientURL = v
	}
	if v, ok := r.str("code_agent_role"); ok {
		if v != "" && checkName(v) != "" {
			problems = append(problems, fmt.Sprintf("code_agent_role must name a role of snyk/roles, got %q", v))
		}
		e.CodeAgentRole = v
	}
	if v, ok := r.str("broker_token"); ok && v != "" {
		if !isUUID(v) {
			problems = append(problems, "broker_token must be a Snyk Broker token: a UUID such as 4a18d42f-0706-4ad0-b127-24078731fbed")
		} else {
			in.brokerToken = strings.ToLower(v)
		}
	}
	if v, ok := r.str("broker_token_source"); ok && v != "" {
		switch {
		case !creating:
			problems = append(problems, "broker_token_source applies only when the integration is created: drop it (to replace the token, rotate with broker/<name>/<scm>/rotate or import one with broker_token)")
		case !slices.Contains(tokenSources, v):
			problems = append(problems, fmt.Sprintf("broker_token_source must be one of %s, got %q", strings.Join(tokenSources, ", "), v))
		case in.brokerToken != "" && v != tokenSourceAuto:
			problems = append(problems, "broker_token imports a token, so broker_token_source="+v+" cannot apply: send one of them")
		default:
			in.tokenSource = v
		}
	}
	return problems
}

// apply sets the overrides a write carries, with the database static
// roles' rules: rotation_period xor rotation_schedule, a window only with a
// schedule. scheduleChanged: the next rotation must be recomputed.
func (o *rotationOverrides) apply(d *framework.FieldData) (scheduleChanged bool, problems []string) {
	r := fieldReader{d}
	if v, ok := d.GetOk("ttl"); ok {
		o.TTL = time.Duration(v.(int)) * time.Second
		if o.TTL < 0 {
			problems = append(problems, "ttl must not be negative")
		}
	}
	period, hasPeriod := d.GetOk("rotation_period")
	schedule, hasSchedule := r.str("rotation_schedule")
	window, hasWindow := d.GetOk("rotation_window")
	if hasPeriod && period.(int) != 0 && hasSchedule && schedule != "" {
		problems = append(problems, "rotation_period and rotation_schedule are mutually exclusive: send one of them")
	}
	if hasPeriod {
		o.RotationPeriod = time.Duration(period.(int)) * time.Second
		if o.RotationPeriod > 0 {
			o.RotationSchedule, o.RotationWindow = "", 0
		}
		scheduleChanged = true
	}
	if hasSchedule {
		o.RotationSchedule = schedule
		if schedule != "" {
			o.RotationPeriod = 0
		} else {
			o.RotationWindow = 0
		}
		scheduleChanged = true
	}
	if hasWindow {
		o.RotationWindow = time.Duration(window.(int)) * time.Second
		scheduleChanged = true
	}
	if o.RotationWindow != 0 && o.RotationSchedule == "" {
		problems = append(problems, "rotation_window applies only with rotation_schedule: set rotation_schedule too, or drop rotation_window")
	}
	if v, ok := d.GetOk("provision_ahead"); ok {
		o.ProvisionAhead = time.Duration(v.(int)) * time.Second
		scheduleChanged = true
	}
	if v, ok := d.GetOk("disable_automated_rotation"); ok {
		o.DisableAutomatedRotation = v.(bool)
	}
	return scheduleChanged, problems
}

// applyRotationPolicy sets the per-integration overrides and the SCM
// check's period. scheduleChanged: the next rotation must be recomputed.
func (e *integrationEntry) applyRotationPolicy(d *framework.FieldData) (scheduleChanged bool, problems []string) {
	scheduleChanged, problems = e.apply(d)
	// The SCM check's period: checking is part of keeping the credential
	// valid, so it belongs with the rotation policy.
	if v, ok := d.GetOk("scm_check_period"); ok {
		e.SCMCheckPeriod = time.Duration(v.(int)) * time.Second
	}
	return scheduleChanged, problems
}
