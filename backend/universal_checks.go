package backend

import (
	"context"
	"fmt"
	"path"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/snyk-vault/vault-plugin-secrets-snyk/backend/scm"
	"github.com/snyk-vault/vault-plugin-secrets-snyk/backend/snyk"
)

// A Universal Broker deployment is checked against Snyk, not trusted
// blindly: every credential reference a connection or context uses must
// have a value in Vault, a value Vault holds for a name Snyk does not know is
// reported, and every SCM credential passes the classic Broker's scope
// checks against the host its connection names. Snyk never sees the values,
// so these checks are the only way to know a client will start with what
// its connections need.

// universalFindings is what one look at Snyk found about a deployment.
type universalFindings struct {
	references  map[string]snyk.CredentialReference // by env name
	connections []universalConnection
	// used maps a credential name to the connections and contexts using it.
	used map[string][]string
	// scmUses maps a credential name to the SCM checks it must pass.
	scmUses  map[string][]scmUse
	problems []string
	// wrongIDs: the deployment's IDs do not match what Snyk lists; a
	// write is refused, a scheduled check reports them.
	wrongIDs []string
}

// scmUse is one SCM a connection sends a credential to.
type scmUse struct {
	connection string
	kind       string
	apiURL     string
	azureOrg   string
	// basic: the value is a Bitbucket password sent with username (from the
	// connection; a "${NAME}" is read from the credential NAME).
	basic    bool
	username string
}

// checkPeriod is the deployment's period, or the config's SCM check period.
func (e *universalEntry) checkPeriod(cfg *snykConfig) time.Duration {
	if e.CheckPeriod > 0 {
		return e.CheckPeriod
	}
	return cfg.scmCheckPeriod()
}

// inspectDeployment lists the deployment's install, credential references,
// connections and contexts. A refusal that says the IDs are wrong is a
// finding; anything else (5xx, transport, a credential Snyk rejects) is an
// error, and nothing is concluded from it.
func (b *backend) inspectDeployment(ctx context.Context, client *snyk.Client, e *universalEntry) (*universalFindings, error) {
	f := &universalFindings{references: map[string]snyk.CredentialReference{}, used: map[string][]string{}, scmUses: map[string][]scmUse{}}
	deployments, err := client.ListInstallDeployments(ctx, e.TenantID, e.InstallID)
	if err != nil {
		return nil, fmt.Errorf("listing the deployments of install %s in tenant %s: %w", e.InstallID, e.TenantID, err)
	}
	found := false
	for _, d := range deployments {
		if d.ID != e.DeploymentID {
			continue
		}
		found = true
		if d.InstallOrgID != "" && !strings.EqualFold(d.InstallOrgID, e.InstallOrgID) {
			f.wrongIDs = append(f.wrongIDs, fmt.Sprintf("install_org_id is %s, but Snyk says the Broker App install is in org %s: the client secret is rotated there; fix install_org_id", e.InstallOrgID, d.InstallOrgID))
		}
	}
	if !found {
		f.wrongIDs = append(f.wrongIDs, fmt.Sprintf("Snyk lists no deployment %s under install %s of tenant %s (%d deployments there): check deployment_id, install_id and tenant_id",
			e.DeploymentID, e.InstallID, e.TenantID, len(deployments)))
		return f, nil
	}
	refs, err := client.ListDeploymentCredentials(ctx, e.TenantID, e.InstallID, e.DeploymentID)
	if err != nil {
		return nil, fmt.Errorf("listing the deployment's credential references: %w", err)
	}
	for _, r := range refs {
		f.references[r.EnvName] = r
	}
	conns, err := client.ListDeploymentConnections(ctx, e.TenantID, e.InstallID, e.DeploymentID)
	if err != nil {
		return nil, fmt.Errorf("listing the deployment's connections: %w", err)
	}
	names := map[string]string{}
	for _, c := range conns {
		names[c.ID] = c.Name
		uses := snyk.ReferencedNames(c.Required)
		if p := c.Required["github_app_private_pem_path"]; p != "" && len(snyk.References(p)) == 0 {
			// The key is a file the chart mounts from a .pem credential.
			uses = append(uses, path.Base(p))
		}
		for _, n := range uses {
			f.used[n] = append(f.used[n], "connection "+c.Name)
		}
		for name, use := range scmUsesOf(c) {
			f.scmUses[name] = append(f.scmUses[name], use)
		}
		f.connections = append(f.connections, universalConnection{ID: c.ID, Name: c.Name, Type: c.Type, Integrated: c.Identifier != "", Uses: uses})
	}
	contexts, err := client.ListDeploymentContexts(ctx, e.TenantID, e.InstallID, e.DeploymentID)
	switch {
	case err == nil:
		for _, bc := range contexts {
			label := "context " + bc.ID
			if n := names[bc.ConnectionID]; n != "" {
				label += " of connection " + n
			}
			for _, n := range snyk.ReferencedNames(bc.Values) {
				f.used[n] = append(f.used[n], label)
			}
		}
	case snyk.Classify(snyk.OpLookup, err) == snyk.NotARefusal:
		return nil, fmt.Errorf("listing the deployment's contexts: %w", err)
	default:
		// Contexts are optional and their endpoint the least documented;
		// a refusal leaves only their references unchecked.
		f.problems = append(f.problems, fmt.Sprintf("could not list the deployment's contexts (%s): credential references used only by contexts are not checked", snyk.Answer(err)))
	}
	return f, nil
}

// missing lists the names used by Snyk without a value in Vault; unused
// the values Vault holds that nothing uses; unknown the values whose name
// is no credential reference of the deployment.
func (f *universalFindings) missing(e *universalEntry) []string {
	var out []string
	for n := range f.used {
		if _, ok := e.Credentials[n]; !ok {
			out = append(out, n)
		}
	}
	sort.Strings(out)
	return out
}

func (f *universalFindings) unused(e *universalEntry) []string {
	var out []string
	for _, n := range e.credentialNames() {
		if _, ok := f.used[n]; !ok {
			out = append(out, n)
		}
	}
	return out
}

func (f *universalFindings) unknown(e *universalEntry) []string {
	var out []string
	for _, n := range e.credentialNames() {
		if _, ok := f.references[n]; !ok && !isPEMFileName(n) {
			out = append(out, n)
		}
	}
	return out
}

// missingProblem is the 400 or the problem that names every missing value
// and who uses it.
func (f *universalFindings) missingProblem(e *universalEntry) string {
	missing := f.missing(e)
	if len(missing) == 0 {
		return ""
	}
	parts := make([]string, 0, len(missing))
	for _, n := range missing {
		parts = append(parts, fmt.Sprintf("%s (used by %s)", n, strings.Join(f.used[n], ", ")))
	}
	return fmt.Sprintf("the deployment's connections use credential references Vault holds no value for: %s; "+
		"write each with universal/%s/credentials/<name> value=… (or in this write's credentials field); a client started without them disables those connections",
		strings.Join(parts, "; "), e.Name)
}

// record stores the findings on e.
func (f *universalFindings) record(e *universalEntry, now time.Time) {
	e.CheckedAt = now
	e.Connections = f.connections
	e.UsedBy = f.used
	e.MissingCredentials = f.missing(e)
	e.UnusedCredentials = f.unused(e)
	problems := append(append([]string(nil), f.wrongIDs...), f.problems...)
	if p := f.missingProblem(e); p != "" {
		problems = append(problems, p)
	}
	if unknown := f.unknown(e); len(unknown) > 0 {
		problems = append(problems, fmt.Sprintf("Vault holds values for %s, which the deployment has no credential reference for: create the references at Snyk, or delete the values", strings.Join(unknown, ", ")))
	}
	for _, n := range e.credentialNames() {
		c := e.Credentials[n]
		if c.SCMStatus == scmStatusInvalid {
			problems = append(problems, fmt.Sprintf("%s failed its SCM check at %s: %s", n, c.SCMCheckedAt.UTC().Format(time.RFC3339), strings.Join(c.SCMProblems, "; ")))
		}
	}
	e.Problems = problems
}

// scmUsesOf maps the credential fields of an SCM connection to the checks
// their values must pass, against the host the connection names (the
// classic Broker's scope requirements apply to Universal Broker too).
func scmUsesOf(c snyk.Connection) map[string]scmUse {
	r := c.Required
	out := map[string]scmUse{}
	add := func(field string, use scmUse) {
		refs := snyk.References(r[field])
		if len(refs) != 1 {
			return
		}
		use.connection = c.Name
		out[refs[0]] = use
	}
	switch c.Type {
	case scm.GitHub:
		add("github_token", scmUse{kind: scm.GitHub, apiURL: scm.DefaultAPIURL(scm.GitHub, "")})
	case scm.GitHubEnterprise:
		add("github_token", scmUse{kind: scm.GitHubEnterprise, apiURL: hostURL(r["github"]) + "/api/v3"})
	case scm.GitLab:
		add("gitlab_token", scmUse{kind: scm.GitLab, apiURL: hostURL(r["gitlab"]) + "/api/v4"})
	case scm.AzureRepos:
		add("azure_repos_token", scmUse{kind: scm.AzureRepos, apiURL: hostURL(r["azure_repos_host"]), azureOrg: r["azure_repos_org"]})
	case scm.BitbucketServer:
		add("bitbucket_pat", scmUse{kind: scm.BitbucketServer, apiURL: hostURL(r["bitbucket"])})
		add("bitbucket_password", scmUse{kind: scm.BitbucketServer, apiURL: hostURL(r["bitbucket"]), basic: true, username: r["bitbucket_username"]})
	}
	return out
}

// hostURL turns a connection's host ("ghe.example.com", or a URL) into an
// https base URL.
func hostURL(host string) string {
	host = strings.TrimRight(strings.TrimSpace(host), "/")
	if host == "" || strings.Contains(host, "://") {
		return host
	}
	return "https://" + host
}

// checkCredentialSCM runs the SCM checks of one credential: against every
// connection that uses it, or, for a credential no connection uses yet,
// against its own scm_api_url. checked is false when there is nothing to
// check (not an SCM credential, skip_scm_validation, no host known).
func (b *backend) checkCredentialSCM(ctx context.Context, cfg *snykConfig, e *universalEntry, f *universalFindings, name string) (res scm.Result, checked bool, err error) {
	c := e.Credentials[name]
	if c == nil || c.SkipSCMValidation {
		return scm.Result{}, false, nil
	}
	uses := f.scmUses[name]
	if len(uses) == 0 && c.SCMAPIURL != "" && scm.Valid(c.Type) {
		uses = []scmUse{{connection: "(scm_api_url)", kind: c.Type, apiURL: c.SCMAPIURL}}
	}
	if len(uses) == 0 {
		return scm.Result{}, false, nil
	}
	res = scm.Result{Valid: true}
	for _, u := range uses {
		target := scm.Target{Kind: u.kind, APIURL: u.apiURL, AzureOrg: u.azureOrg}
		if c.SCMAPIURL != "" {
			target.APIURL = c.SCMAPIURL
		}
		if target.AzureOrg == "" {
			target.AzureOrg = c.AzureOrg
		}
		cred := scm.Credential{Token: c.Value}
		if u.basic {
			cred = scm.Credential{Username: resolveReference(u.username, e), Password: c.Value}
			if cred.Username == "" {
				cred.Username = c.BitbucketUsername
			}
		}
		if target.APIURL == "" {
			res.Valid = false
			res.Problems = append(res.Problems, fmt.Sprintf("connection %s names no %s host: fix the connection at Snyk, or set scm_api_url on %s", u.connection, u.kind, name))
			continue
		}
		v, err := b.scmValidator(cfg, u.kind)
		if err != nil {
			return scm.Result{}, false, err
		}
		one, err := v.Validate(ctx, target, cred)
		if err != nil {
			return scm.Result{}, false, fmt.Errorf("checking %s against %s (connection %s; set skip_scm_validation=true to store it unchecked): %w", name, target.APIURL, u.connection, err)
		}
		res = mergeSCMResults(res, one, u.connection)
	}
	return res, true, nil
}

// mergeSCMResults combines the checks of one credential at several
// connections: invalid if any is, problems named by connection.
func mergeSCMResults(acc, one scm.Result, connection string) scm.Result {
	if !one.Valid {
		acc.Valid = false
		for _, p := range one.Problems {
			acc.Problems = append(acc.Problems, "connection "+connection+": "+p)
		}
		acc.MissingScopes = append(acc.MissingScopes, one.MissingScopes...)
	}
	for _, s := range one.Scopes {
		if !slices.Contains(acc.Scopes, s) {
			acc.Scopes = append(acc.Scopes, s)
		}
	}
	if !one.ExpiresAt.IsZero() && (acc.ExpiresAt.IsZero() || one.ExpiresAt.Before(acc.ExpiresAt)) {
		acc.ExpiresAt = one.ExpiresAt
	}
	return acc
}

// resolveReference reads "${NAME}" from the deployment's credentials; any
// other value is returned as it is.
func resolveReference(v string, e *universalEntry) string {
	refs := snyk.References(v)
	if len(refs) != 1 || v != "${"+refs[0]+"}" {
		return v
	}
	if c := e.Credentials[refs[0]]; c != nil {
		return c.Value
	}
	return ""
}
