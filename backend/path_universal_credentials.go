package backend

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/hashicorp/vault/sdk/framework"
	"github.com/hashicorp/vault/sdk/logical"
)

func pathUniversalCredentials(b *backend) []*framework.Path {
	return []*framework.Path{
		{
			Pattern:      "universal/" + universalNameSegment + "/credentials/?$",
			DisplayAttrs: &framework.DisplayAttributes{OperationPrefix: operationPrefix, OperationSuffix: "universal-credentials"},
			Fields:       map[string]*framework.FieldSchema{"name": universalNameField},
			Operations: map[logical.Operation]framework.OperationHandler{
				logical.ListOperation: &framework.PathOperation{Callback: b.pathUniversalCredentialList, Summary: "List the credential values a deployment holds."},
			},
			HelpSynopsis:    "List a Universal Broker deployment's credential values.",
			HelpDescription: "Lists the environment variable names Vault holds values for, e.g. `vault list snyk/universal/prod/credentials`.",
		},
		{
			Pattern:      "universal/" + universalNameSegment + "/credentials/(?P<env>[^/]+)$",
			DisplayAttrs: &framework.DisplayAttributes{OperationPrefix: operationPrefix, OperationSuffix: "universal-credential"},
			Fields:       universalCredentialFields(),
			Operations: map[logical.Operation]framework.OperationHandler{
				logical.ReadOperation:   &framework.PathOperation{Callback: b.pathUniversalCredentialRead, Summary: "Read a credential's type and check status (never its value)."},
				logical.CreateOperation: forwarded(b.pathUniversalCredentialWrite, "Store a credential reference's value, checked against Snyk and its SCM.", nil),
				logical.UpdateOperation: forwarded(b.pathUniversalCredentialWrite, "Replace a credential reference's value.", nil),
				logical.DeleteOperation: forwarded(b.pathUniversalCredentialDelete, "Forget a credential value no connection uses.", nil),
			},
			ExistenceCheck:  b.pathUniversalCredentialExists,
			HelpSynopsis:    "The value of one credential reference of a Universal Broker deployment.",
			HelpDescription: pathUniversalCredentialHelpDesc,
		},
	}
}

func (b *backend) pathUniversalCredentialExists(ctx context.Context, req *logical.Request, d *framework.FieldData) (bool, error) {
	name, env := d.Get("name").(string), d.Get("env").(string)
	if checkName(name) != "" || checkCredentialName(env) != "" {
		return false, nil
	}
	e, err := getUniversal(ctx, req.Storage, name)
	if err != nil || e == nil {
		return false, err
	}
	return e.Credentials[env] != nil, nil
}

func (b *backend) pathUniversalCredentialList(ctx context.Context, req *logical.Request, d *framework.FieldData) (*logical.Response, error) {
	e, resp, err := b.universalOfPath(ctx, req, d)
	if resp != nil || err != nil || e == nil {
		return resp, err
	}
	return logical.ListResponse(e.credentialNames()), nil
}

func (b *backend) pathUniversalCredentialRead(ctx context.Context, req *logical.Request, d *framework.FieldData) (*logical.Response, error) {
	e, resp, err := b.universalOfPath(ctx, req, d)
	if resp != nil || err != nil || e == nil {
		return resp, err
	}
	env := d.Get("env").(string)
	c := e.Credentials[env]
	if c == nil {
		return nil, nil
	}
	data := c.status()
	data["used_by"] = nonNil(e.usedBy(env))
	return &logical.Response{Data: data}, nil
}

// pathUniversalCredentialWrite stores one value after checking it: the
// deployment must have a credential reference of that name (and type),
// and an SCM credential must pass its scope checks.
func (b *backend) pathUniversalCredentialWrite(ctx context.Context, req *logical.Request, d *framework.FieldData) (*logical.Response, error) {
	name, env := d.Get("name").(string), d.Get("env").(string)
	if p := checkName(name); p != "" {
		return logical.ErrorResponse(p), nil
	}
	if p := checkCredentialName(env); p != "" {
		return logical.ErrorResponse(p), nil
	}
	unlock := b.lockUniversal(name)
	defer unlock()
	s := req.Storage
	stored, err := b.universalForWrite(ctx, s, name)
	if err != nil {
		return nil, err
	}
	if stored == nil {
		return logical.ErrorResponse("no Universal Broker deployment %q: write universal/%s first", name, name), nil
	}
	e := stored.clone()
	now := b.now().UTC()
	c := e.Credentials[env]
	if c == nil {
		c = &universalCredential{Name: env}
		e.Credentials[env] = c
	}
	if _, problems := credentialInputFromFields(d).apply(c); len(problems) > 0 {
		return logical.ErrorResponse(strings.Join(problems, "; ")), nil
	}
	cfg, err := b.config(ctx, s)
	if err != nil {
		return nil, err
	}
	if cfg == nil {
		return logical.ErrorResponse("the engine has no Snyk credential yet: write snyk/config first"), nil
	}
	client, err := b.snykClient(ctx, s)
	if err != nil {
		return nil, err
	}
	f, err := b.inspectDeployment(ctx, client, e)
	if err != nil {
		return universalCallerError(err, e)
	}
	if resp, err := b.checkWrittenCredentials(ctx, cfg, e, f, []string{env}, now); resp != nil || err != nil {
		return resp, err
	}
	f.record(e, now)
	if err := putUniversal(ctx, s, e); err != nil {
		return nil, err
	}
	resp := &logical.Response{Data: e.Credentials[env].status()}
	for _, problem := range e.Problems {
		resp.AddWarning(problem)
	}
	return resp, nil
}

// checkWrittenCredentials checks the credentials a write stored against
// what Snyk lists and against their SCMs, and records their SCM health.
// Every problem is one 400.
func (b *backend) checkWrittenCredentials(ctx context.Context, cfg *snykConfig, e *universalEntry, f *universalFindings, names []string, now time.Time) (*logical.Response, error) {
	sort.Strings(names)
	var problems []string
	for _, name := range names {
		c := e.Credentials[name]
		ref, known := f.references[name]
		switch {
		case !known && !isPEMFileName(name):
			problems = append(problems, fmt.Sprintf("the deployment has no credential reference %s (it has: %s): create it at Snyk first (snyk-broker-config, or the API), or fix the name",
				name, strings.Join(f.referenceNames(), ", ")))
			continue
		case known && c.Type == "":
			c.Type = ref.Type
		case known && ref.Type != "" && c.Type != ref.Type:
			problems = append(problems, fmt.Sprintf("type of %s is %s, but Snyk records its credential reference as %s: drop type or fix it", name, c.Type, ref.Type))
			continue
		}
		res, checked, err := b.checkCredentialSCM(ctx, cfg, e, f, name)
		if err != nil {
			return nil, err
		}
		if !checked {
			c.scmHealth = scmHealth{}
			continue
		}
		if !res.Valid {
			msg := res.Message()
			if len(res.MissingScopes) > 0 {
				msg = fmt.Sprintf("missing %s: %s", strings.Join(res.MissingScopes, ", "), msg)
			}
			problems = append(problems, fmt.Sprintf("%s was rejected by its SCM: %s", name, msg))
			continue
		}
		c.recordSCMResult(res, now, cfg.scmExpiryWarning())
	}
	if len(problems) > 0 {
		return logical.ErrorResponse(strings.Join(problems, "; ")), nil
	}
	for _, name := range names {
		e.Credentials[name].UpdatedAt = now
	}
	return nil, nil
}

func (f *universalFindings) referenceNames() []string {
	out := make([]string, 0, len(f.references))
	for n := range f.references {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// pathUniversalCredentialDelete forgets a value, unless a connection or
// context uses it by the last check: a client restarted without it would
// disable that connection.
func (b *backend) pathUniversalCredentialDelete(ctx context.Context, req *logical.Request, d *framework.FieldData) (*logical.Response, error) {
	name, env := d.Get("name").(string), d.Get("env").(string)
	if p := checkName(name); p != "" {
		return logical.ErrorResponse(p), nil
	}
	unlock := b.lockUniversal(name)
	defer unlock()
	stored, err := b.universalForWrite(ctx, req.Storage, name)
	if err != nil || stored == nil || stored.Credentials[env] == nil {
		return nil, err
	}
	if usedBy := stored.usedBy(env); len(usedBy) > 0 {
		return logical.ErrorResponse("%s is used by %s (as of the check at %s): remove it there at Snyk first; a client started without it disables that connection or context",
			env, strings.Join(stored.usedBy(env), ", "), stored.CheckedAt.UTC().Format(time.RFC3339)), nil
	}
	e := stored.clone()
	delete(e.Credentials, env)
	e.UnusedCredentials = removeString(e.UnusedCredentials, env)
	return nil, putUniversal(ctx, req.Storage, e)
}

// usedBy lists the connections and contexts that used env at the last
// check.
func (e *universalEntry) usedBy(env string) []string { return e.UsedBy[env] }

func removeString(list []string, v string) []string {
	out := list[:0:0]
	for _, s := range list {
		if s != v {
			out = append(out, s)
		}
	}
	return out
}

const pathUniversalCredentialHelpDesc = `
The value of one credential reference of a Universal Broker deployment: the
environment variable the client expands a connection's ${ENV_NAME} from.
Snyk never sees it. A write is checked: the deployment must have a credential
reference of that name (and type), and an SCM token (GitHub, GitHub
Enterprise, GitLab, Azure Repos, Bitbucket Server) must pass the classic
Broker's scope checks against the host every connection using it names
(scm_api_url overrides it). A GitHub App private key is stored as PEM under
a name ending in .pem, which Snyk's Helm chart mounts as a file.

  vault write snyk/universal/prod/credentials/MY_GITHUB_TOKEN value=ghp_…
  vault read snyk/universal/prod/credentials/MY_GITHUB_TOKEN
`
