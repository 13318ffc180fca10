package backend

import (
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"regexp"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/hashicorp/vault/sdk/framework"
)

// Fields of universal/<name> and universal/<name>/credentials/<env>, and
// how a write applies them. Every problem names the field and the fix.

// credentialNamePattern is an environment variable name as Snyk's
// snyk-broker-config and its Helm chart accept it, or a file name ending in
// .pem (the chart mounts such keys as files: a GitHub App's private key).
var credentialNamePattern = regexp.MustCompile(`^([A-Za-z_][0-9A-Za-z_]*|[A-Za-z0-9_][0-9A-Za-z_.-]*\.pem)$`)

// universalConnectionTypes are the connection types of Snyk's Universal
// Broker API; a credential's type is one of them.
var universalConnectionTypes = []string{
	"github", "github-enterprise", "github-server-app", "github-cloud-app", "gitlab", "azure-repos", "bitbucket-server",
	"jira", "artifactory", "nexus", "apprisk",
	"acr", "artifactory-cr", "digitalocean-cr", "docker-hub", "ecr", "gcr", "github-cr", "gitlab-cr", "google-artifact-cr", "harbor-cr", "nexus-cr", "quay-cr",
}

// envReserved are the keys a read of universal/<name>/env serves besides
// the credentials: a credential of the same name would be shadowed.
var envReserved = []string{
	"DEPLOYMENT_ID", "CLIENT_ID", "CLIENT_SECRET", "UNIVERSAL_BROKER_ENABLED", "UNIVERSAL_BROKER_GA",
	"BROKER_SERVER_URL", "API_BASE_URL", "BROKER_CLIENT_URL",
	"env", "ttl", "next_client_secret", "next_switch_at", "last_vault_rotation", "next_vault_rotation",
	"rotation_period", "rotation_schedule", "rotation_window",
}

var universalNameField = &framework.FieldSchema{
	Type:        framework.TypeString,
	Description: "The deployment's name in Vault paths: a lower-case slug [a-z0-9][a-z0-9._-]*.",
	Required:    true,
}

func universalFields() map[string]*framework.FieldSchema {
	f := map[string]*framework.FieldSchema{
		"name":           universalNameField,
		"tenant_id":      {Type: framework.TypeString, Description: "Snyk tenant ID (UUID) the deployment belongs to. Fixed after create."},
		"install_id":     {Type: framework.TypeString, Description: "The Snyk Broker App install's ID (UUID). Fixed after create."},
		"install_org_id": {Type: framework.TypeString, Description: "The Snyk org (UUID) the Broker App is installed in; its install secrets are rotated there. Fixed after create."},
		"deployment_id":  {Type: framework.TypeString, Description: "The Universal Broker deployment's ID (UUID), served as DEPLOYMENT_ID. Fixed after create."},
		"client_id":      {Type: framework.TypeString, Description: "The install's OAuth client ID, served as CLIENT_ID. Fixed after create."},
		"client_secret": {
			Type:         framework.TypeString,
			Description:  "The install's client secret (shown once by Snyk), served as CLIENT_SECRET; verified at /oauth2/token. Required on create. Write-only.",
			DisplayAttrs: &framework.DisplayAttributes{Name: "Client secret", Sensitive: true},
		},
		"api_url":            {Type: framework.TypeString, Description: "API_BASE_URL served to the client; defaults to the config's region API URL."},
		"broker_server_url":  {Type: framework.TypeString, Description: "BROKER_SERVER_URL served to the client; defaults to the config's region broker server."},
		"broker_client_url":  {Type: framework.TypeString, Description: "The client's own URL (BROKER_CLIENT_URL), when its connections need one (container registries)."},
		"client_exit_window": {Type: framework.TypeDurationSecond, Description: "How long a client keeps running after its secret stops working (default 35m): the old secret is deleted at Snyk ttl + this after the switch."},
		"check_period":       {Type: framework.TypeDurationSecond, Description: "How often the deployment is checked against Snyk and its SCM credentials against their SCMs; defaults to config's scm_check_period."},
		"force":              {Type: framework.TypeBool, Description: "On delete only: forget the deployment even while its rotation holds a second client secret (remove that secret at Snyk yourself)."},
		"credentials": {
			Type: framework.TypeMap,
			Description: "Credential values to store with this write, by environment variable name: a string, or an object with the fields of " +
				"universal/<name>/credentials/<env> (value, type, scm_api_url, azure_org, bitbucket_username, skip_scm_validation).",
		},
	}
	for _, k := range []string{"rotation_schedule", "rotation_window"} {
		f[k] = integrationFields()[k]
	}
	f["ttl"] = &framework.FieldSchema{Type: framework.TypeDurationSecond, Description: "Lease TTL of universal/<name>/env; defaults to config's ttl."}
	f["rotation_period"] = &framework.FieldSchema{Type: framework.TypeDurationSecond, Description: "Rotate the client secret this often; mutually exclusive with rotation_schedule. Defaults to config's rotation_period."}
	f["provision_ahead"] = &framework.FieldSchema{Type: framework.TypeDurationSecond, Description: "How long before a scheduled switch the new client secret is created and served as next_client_secret; defaults to config's provision_ahead."}
	f["disable_automated_rotation"] = &framework.FieldSchema{Type: framework.TypeBool, Description: "Never rotate the client secret on a schedule; only universal/<name>/rotate rotates."}
	return f
}

func universalCredentialFields() map[string]*framework.FieldSchema {
	return map[string]*framework.FieldSchema{
		"name": universalNameField,
		"env":  {Type: framework.TypeString, Required: true, Description: "The credential reference's environment variable name (or a file name ending in .pem for a GitHub App private key)."},
		"value": {
			Type:         framework.TypeString,
			Description:  "The credential's value; a GitHub App private key as PEM. Write-only.",
			DisplayAttrs: &framework.DisplayAttributes{Name: "Value", Sensitive: true},
		},
		"type":                {Type: framework.TypeString, Description: "The connection type of the credential reference (github, gitlab, …); defaults to the type Snyk records for it."},
		"scm_api_url":         {Type: framework.TypeString, Description: "SCM API base URL for the scope check, when it is not the one derived from the connection's host."},
		"azure_org":           {Type: framework.TypeString, Description: "Azure DevOps organization for the scope check, when the connection does not name one."},
		"bitbucket_username":  {Type: framework.TypeString, Description: "Bitbucket Server user for the check of a password, when the connection does not name one."},
		"skip_scm_validation": {Type: framework.TypeBool, Description: "Store the value without checking it against its SCM."},
	}
}

// applyUniversalIdentity sets the IDs, which are fixed at creation.
func (e *universalEntry) applyIdentity(d *framework.FieldData, creating bool) []string {
	r := fieldReader{d}
	var problems []string
	for _, f := range []struct {
		name string
		dst  *string
		what string
	}{
		{"tenant_id", &e.TenantID, "the Snyk tenant's ID"},
		{"install_id", &e.InstallID, "the Snyk Broker App install's ID"},
		{"install_org_id", &e.InstallOrgID, "the ID of the org the Broker App is installed in"},
		{"deployment_id", &e.DeploymentID, "the Universal Broker deployment's ID"},
		{"client_id", &e.ClientID, "the install's OAuth client ID"},
	} {
		v, ok := r.str(f.name)
		switch {
		case ok && v != "" && !strings.EqualFold(v, *f.dst) && !creating:
			problems = append(problems, fmt.Sprintf("%s cannot change on an existing deployment: delete universal/%s and create it again", f.name, e.Name))
		case ok && v != "" && !isUUID(v):
			problems = append(problems, fmt.Sprintf("%s must be %s (a UUID), got %q", f.name, f.what, v))
		case ok && v != "":
			*f.dst = strings.ToLower(v)
		case creating && *f.dst == "":
			problems = append(problems, fmt.Sprintf("%s is required: %s (a UUID)", f.name, f.what))
		}
	}
	return problems
}

// applyUniversalSettings sets the URLs, windows and the rotation policy.
func (e *universalEntry) applySettings(d *framework.FieldData) (scheduleChanged bool, problems []string) {
	r := fieldReader{d}
	for _, f := range []struct {
		name string
		dst  *string
	}{{"api_url", &e.APIURL}, {"broker_server_url", &e.BrokerServerURL}} {
		if v, ok := r.str(f.name); ok {
			*f.dst = normalizeURL(v)
			if *f.dst != "" {
				if p := checkHTTPSURL(f.name, *f.dst); p != "" {
					problems = append(problems, p)
				}
			}
		}
	}
	if v, ok := r.str("broker_client_url"); ok {
		e.BrokerClientURL = normalizeURL(v)
		if e.BrokerClientURL != "" {
			if p := checkClientURL(e.BrokerClientURL); p != "" {
				problems = append(problems, p)
			}
		}
	}
	for _, f := range []struct {
		name string
		dst  *time.Duration
	}{{"client_exit_window", &e.ClientExitWindow}, {"check_period", &e.CheckPeriod}} {
		if v, ok := d.GetOk(f.name); ok {
			*f.dst = time.Duration(v.(int)) * time.Second
			if *f.dst < 0 {
				problems = append(problems, f.name+" must not be negative")
			}
		}
	}
	changed, policyProblems := e.apply(d)
	return changed, append(problems, policyProblems...)
}

// universalPolicyProblems adds the rule that a rotation must not start
// before the previous one's old secret is deleted: Snyk allows two secrets,
// so the next create needs the slot the old one frees.
func (e *universalEntry) policyProblems(p policy, now time.Time) []string {
	problems := p.problems(now)
	if len(problems) > 0 || p.DisableAutomatedRotation {
		return problems
	}
	first, _ := p.nextRotation(now)
	second, _ := p.nextRotation(first)
	needed := p.ProvisionAhead + p.TTL + e.clientExitWindow()
	if gap := second.Sub(first); gap <= needed {
		problems = append(problems, fmt.Sprintf("the interval between rotations (%s) must exceed provision_ahead + ttl + client_exit_window (%s): "+
			"Snyk allows two client secrets, so the old one must be deleted before the next is created; lengthen rotation_period or shorten those", gap, needed))
	}
	return problems
}

// credentialInput is one credential as a write gives it.
type credentialInput struct {
	value                                   *string
	typ, scmAPIURL, azureOrg, bitbucketUser *string
	skipSCM                                 *bool
}

// checkCredentialName returns a problem with a credential's name, or "".
func checkCredentialName(name string) string {
	switch {
	case !credentialNamePattern.MatchString(name):
		return fmt.Sprintf("credential name %q must be an environment variable name ([A-Za-z_][A-Za-z0-9_]*, as the credential reference's environment_variable_name) or a file name ending in .pem", name)
	case slices.Contains(envReserved, name):
		return fmt.Sprintf("credential name %q is served by the engine itself: rename the credential reference", name)
	}
	return ""
}

// apply sets c from in and returns the problems; valueChanged says whether
// the SCM check must run again.
func (in credentialInput) apply(c *universalCredential) (valueChanged bool, problems []string) {
	if in.value != nil {
		v := *in.value
		if isPEMFileName(c.Name) {
			v = strings.TrimSpace(v) + "\n"
		}
		valueChanged = v != c.Value
		c.Value = v
	}
	if c.Value == "" || strings.TrimSpace(c.Value) == "" {
		problems = append(problems, fmt.Sprintf("value of %s is required", c.Name))
	}
	if in.typ != nil {
		c.Type = strings.TrimSpace(*in.typ)
	}
	if c.Type != "" && !slices.Contains(universalConnectionTypes, c.Type) {
		problems = append(problems, fmt.Sprintf("type %q of %s is not a Universal Broker connection type: use one of %s", c.Type, c.Name, strings.Join(universalConnectionTypes, ", ")))
	}
	for _, f := range []struct {
		src *string
		dst *string
	}{{in.azureOrg, &c.AzureOrg}, {in.bitbucketUser, &c.BitbucketUsername}} {
		if f.src != nil {
			valueChanged = valueChanged || strings.TrimSpace(*f.src) != *f.dst
			*f.dst = strings.TrimSpace(*f.src)
		}
	}
	if in.scmAPIURL != nil {
		u := normalizeURL(*in.scmAPIURL)
		valueChanged = valueChanged || u != c.SCMAPIURL
		c.SCMAPIURL = u
		if u != "" {
			if p := checkHTTPSURL("scm_api_url", u); p != "" {
				problems = append(problems, p)
			}
		}
	}
	if in.skipSCM != nil {
		c.SkipSCMValidation = *in.skipSCM
	}
	problems = append(problems, checkPEMValue(c)...)
	return valueChanged, problems
}

// checkPEMValue: a GitHub App private key must be PEM under a .pem name (the
// client reads it from a file), and a .pem name must hold a private key.
func checkPEMValue(c *universalCredential) []string {
	looksPEM := strings.Contains(c.Value, "-----BEGIN ")
	switch {
	case isPEMFileName(c.Name):
		block, _ := pem.Decode([]byte(c.Value))
		if block == nil || !parsesAsPrivateKey(block.Bytes) {
			return []string{fmt.Sprintf("%s is named like a .pem file, so its value must be a PEM private key (a GitHub App's key as GitHub issues it)", c.Name)}
		}
	case looksPEM:
		return []string{fmt.Sprintf("the value of %s is PEM: store a GitHub App private key under a name ending in .pem (the client reads it from a file of that name)", c.Name)}
	}
	return nil
}

func parsesAsPrivateKey(der []byte) bool {
	if _, err := x509.ParsePKCS1PrivateKey(der); err == nil {
		return true
	}
	if _, err := x509.ParsePKCS8PrivateKey(der); err == nil {
		return true
	}
	_, err := x509.ParseECPrivateKey(der)
	return err == nil
}

// credentialInputFromFields reads a credentials-path write.
func credentialInputFromFields(d *framework.FieldData) credentialInput {
	var in credentialInput
	str := func(k string) *string {
		if v, ok := d.GetOk(k); ok {
			s := v.(string)
			return &s
		}
		return nil
	}
	in.value, in.typ, in.scmAPIURL, in.azureOrg, in.bitbucketUser = str("value"), str("type"), str("scm_api_url"), str("azure_org"), str("bitbucket_username")
	if v, ok := d.GetOk("skip_scm_validation"); ok {
		b := v.(bool)
		in.skipSCM = &b
	}
	return in
}

// credentialInputsFromMap reads the credentials field of a deployment
// write: name → value, or name → {value, type, …}.
func credentialInputsFromMap(raw map[string]interface{}) (map[string]credentialInput, []string) {
	out := map[string]credentialInput{}
	var problems []string
	names := make([]string, 0, len(raw))
	for n := range raw {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, name := range names {
		if p := checkCredentialName(name); p != "" {
			problems = append(problems, "credentials: "+p)
			continue
		}
		switch v := raw[name].(type) {
		case string:
			out[name] = credentialInput{value: &v}
		case map[string]interface{}:
			var in credentialInput
			for k, field := range v {
				s, isString := field.(string)
				switch k {
				case "value":
					in.value = &s
				case "type":
					in.typ = &s
				case "scm_api_url":
					in.scmAPIURL = &s
				case "azure_org":
					in.azureOrg = &s
				case "bitbucket_username":
					in.bitbucketUser = &s
				case "skip_scm_validation":
					b, ok := field.(bool)
					if !ok {
						problems = append(problems, fmt.Sprintf("credentials.%s.skip_scm_validation must be true or false", name))
					}
					in.skipSCM = &b
					continue
				default:
					problems = append(problems, fmt.Sprintf("credentials.%s has an unknown field %q: use value, type, scm_api_url, azure_org, bitbucket_username or skip_scm_validation", name, k))
					continue
				}
				if !isString {
					problems = append(problems, fmt.Sprintf("credentials.%s.%s must be a string", name, k))
				}
			}
			out[name] = in
		default:
			problems = append(problems, fmt.Sprintf("credentials.%s must be a string (the value) or an object with a value field", name))
		}
	}
	return out, problems
}
