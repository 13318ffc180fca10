package snyktest

import (
	"fmt"
	"slices"
	"strings"
)

// connType is what a Universal Broker connection type demands of
// configuration.required, per Snyk's REST specification of broker
// connections (docs.snyk.io, "Universal Broker"). Whether the server itself
// checks the keys and the credential fields is not documented; the fake
// checks them so that an engine cannot rely on a lax server.
type connType struct {
	// required keys must all be present.
	required []string
	// oneOf, when set, needs at least one complete set besides required
	// (Bitbucket and Jira: basic auth or a PAT; AppRisk: Checkmarx and/or
	// SonarQube).
	oneOf [][]string
	// cred keys hold a credential reference: its UUID on create, its
	// "${ENV_NAME}" on every read.
	cred []string
	// either keys may hold a credential reference or a plain value: the
	// specification types github_app_client_id as a string while Snyk's CLI
	// and docs treat it as a reference, and the GitHub App private key is a
	// file path that Snyk's Helm chart mounts from a credential.
	either []string
}

// fieldKind is how a configuration key's value is stored.
type fieldKind int

const (
	plainField fieldKind = iota
	credField
	eitherField
)

var crCommon = []string{"broker_client_url", "cr_agent_url", "cr_base"}

var crType = connType{required: append(slices.Clone(crCommon), "cr_username", "cr_password"), cred: []string{"cr_password"}}

var githubAppType = connType{
	required: []string{"broker_client_url", "github", "github_api", "github_app_id", "github_app_installation_id", "github_app_private_pem_path", "github_app_client_id"},
	either:   []string{"github_app_client_id", "github_app_private_pem_path"},
}

// connTypes are the connection types of the public API. It has no
// bitbucket-server-bearer-auth, jira-bearer-auth or bare quay type: the
// client picks the bearer variants itself when a PAT is configured.
var connTypes = map[string]connType{
	"github":            {required: []string{"broker_client_url", "github_token"}, cred: []string{"github_token"}},
	"github-enterprise": {required: []string{"broker_client_url", "github", "github_token"}, cred: []string{"github_token"}},
	"github-server-app": githubAppType,
	"github-cloud-app":  githubAppType,
	"gitlab":            {required: []string{"broker_client_url", "gitlab", "gitlab_token"}, cred: []string{"gitlab_token"}},
	"azure-repos": {required: []string{"broker_client_url", "azure_repos_host", "azure_repos_org", "azure_repos_token"},
		cred: []string{"azure_repos_token"}},
	"bitbucket-server": {required: []string{"broker_client_url", "bitbucket"},
		oneOf: [][]string{{"bitbucket_username", "bitbucket_password"}, {"bitbucket_pat"}},
		cred:  []string{"bitbucket_password", "bitbucket_pat"}},
	"jira": {required: []string{"jira_hostname"},
		oneOf: [][]string{{"jira_username", "jira_password"}, {"jira_pat"}},
		cred:  []string{"jira_password", "jira_pat"}},
	// The URL itself carries user:password, hence a credential.
	"artifactory": {required: []string{"artifactory_url"}, cred: []string{"artifactory_url"}},
	"nexus":       {required: []string{"base_nexus_url"}, cred: []string{"base_nexus_url"}},
	"apprisk": {oneOf: [][]string{{"checkmarx", "checkmarx_username", "checkmarx_password"}, {"sonarqube_host_url", "sonarqube_api_token"}},
		cred: []string{"checkmarx_password", "sonarqube_api_token"}},
	"acr": crType, "artifactory-cr": crType, "docker-hub": crType, "gcr": crType, "github-cr": crType,
	"gitlab-cr": crType, "google-artifact-cr": crType, "harbor-cr": crType, "nexus-cr": crType, "quay-cr": crType,
	"digitalocean-cr": {required: append(slices.Clone(crCommon), "cr_token"), cred: []string{"cr_token"}},
	// ECR authenticates by role, so it has no credential field.
	"ecr": {required: append(slices.Clone(crCommon), "cr_role_arn", "cr_region", "cr_external_id")},
}

func (c connType) kind(key string) fieldKind {
	switch {
	case slices.Contains(c.cred, key):
		return credField
	case slices.Contains(c.either, key):
		return eitherField
	}
	return plainField
}

// missing names what config lacks, "" when it is complete.
func (c connType) missing(config map[string]string) string {
	var out []string
	for _, k := range c.required {
		if config[k] == "" {
			out = append(out, k)
		}
	}
	if len(c.oneOf) == 0 {
		return strings.Join(out, ", ")
	}
	var alternatives []string
	for _, set := range c.oneOf {
		complete := true
		for _, k := range set {
			complete = complete && config[k] != ""
		}
		if complete {
			return strings.Join(out, ", ")
		}
		alternatives = append(alternatives, strings.Join(set, " + "))
	}
	out = append(out, fmt.Sprintf("one of (%s)", strings.Join(alternatives, " | ")))
	return strings.Join(out, ", ")
}

// envPlaceholder reports whether v is "${NAME}" and returns NAME.
func envPlaceholder(v string) (string, bool) {
	if len(v) > 3 && strings.HasPrefix(v, "${") && strings.HasSuffix(v, "}") {
		return v[2 : len(v)-1], true
	}
	return "", false
}
