package backend

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/hashicorp/vault/sdk/framework"
	"github.com/hashicorp/vault/sdk/logical"

	"github.com/snyk-vault/vault-plugin-secrets-snyk/backend/snyk"
)

const universalNameSegment = `(?P<name>[^/]+)`

func pathUniversal(b *backend) []*framework.Path {
	return []*framework.Path{
		{
			Pattern:      "universal/?$",
			DisplayAttrs: &framework.DisplayAttributes{OperationPrefix: operationPrefix, OperationSuffix: "universal-deployments"},
			Operations: map[logical.Operation]framework.OperationHandler{
				logical.ListOperation: &framework.PathOperation{Callback: b.pathUniversalList, Summary: "List the Universal Broker deployments."},
			},
			HelpSynopsis:    "List the Universal Broker deployments.",
			HelpDescription: "Lists the <name> of every Universal Broker deployment, e.g. `vault list snyk/universal`.",
		},
		{
			Pattern:      "universal/" + universalNameSegment + "$",
			DisplayAttrs: &framework.DisplayAttributes{OperationPrefix: operationPrefix, OperationSuffix: "universal-deployment"},
			Fields:       universalFields(),
			Operations: map[logical.Operation]framework.OperationHandler{
				logical.ReadOperation: &framework.PathOperation{Callback: b.pathUniversalRead, Summary: "Read a deployment's settings, rotation status and last check (no secrets)."},
				logical.CreateOperation: forwarded(b.pathUniversalWrite, "Check the deployment at Snyk and store its client credentials.",
					&framework.DisplayAttributes{OperationVerb: "configure"}),
				logical.UpdateOperation: forwarded(b.pathUniversalWrite, "Update a deployment's settings or credentials.", &framework.DisplayAttributes{OperationVerb: "configure"}),
				logical.DeleteOperation: forwarded(b.pathUniversalDelete, "Forget a deployment in Vault (nothing changes at Snyk).", nil),
			},
			ExistenceCheck:  b.pathUniversalExists,
			HelpSynopsis:    "A Snyk Universal Broker deployment: its client's credentials and credential references.",
			HelpDescription: pathUniversalHelpDesc,
		},
	}
}

func (b *backend) pathUniversalExists(ctx context.Context, req *logical.Request, d *framework.FieldData) (bool, error) {
	name := d.Get("name").(string)
	if checkName(name) != "" {
		return false, nil
	}
	e, err := getUniversal(ctx, req.Storage, name)
	return e != nil, err
}

func (b *backend) pathUniversalList(ctx context.Context, req *logical.Request, _ *framework.FieldData) (*logical.Response, error) {
	names, err := listUniversalNames(ctx, req.Storage)
	if err != nil {
		return nil, err
	}
	return logical.ListResponse(names), nil
}

func (b *backend) pathUniversalRead(ctx context.Context, req *logical.Request, d *framework.FieldData) (*logical.Response, error) {
	e, resp, err := b.universalOfPath(ctx, req, d)
	if resp != nil || err != nil || e == nil {
		return resp, err
	}
	cfg, err := b.configOrDefaults(ctx, req.Storage)
	if err != nil {
		return nil, err
	}
	return &logical.Response{Data: e.statusData(cfg)}, nil
}

// pathUniversalWrite creates or updates a deployment. Nothing is stored
// unless the client secret works at /oauth2/token, Snyk knows the
// deployment under the install and tenant given, every credential written
// is a reference of the deployment and passes its SCM checks, and every
// reference a connection or context uses has a value.
func (b *backend) pathUniversalWrite(ctx context.Context, req *logical.Request, d *framework.FieldData) (*logical.Response, error) {
	name := d.Get("name").(string)
	if p := checkName(name); p != "" {
		return logical.ErrorResponse(p), nil
	}
	unlock := b.lockUniversal(name)
	defer unlock()
	s := req.Storage
	existing, err := b.universalForWrite(ctx, s, name)
	if err != nil {
		return nil, err
	}
	now := b.now().UTC()
	creating := existing == nil
	e := &universalEntry{Name: name, CreatedAt: now, RotationState: stateActive, Credentials: map[string]*universalCredential{}}
	if !creating {
		e = existing.clone()
	}
	problems := e.applyIdentity(d, creating)
	apiURL := e.APIURL
	scheduleChanged, settingProblems := e.applySettings(d)
	problems = append(problems, settingProblems...)
	secret, _ := fieldReader{d}.str("client_secret")
	if creating && secret == "" {
		problems = append(problems, "client_secret is required: the Snyk Broker App install's client secret (Snyk shows it once, when the app is installed or its secret replaced)")
	}
	written, credProblems := b.applyCredentialMap(d, e)
	problems = append(problems, credProblems...)
	cfg, err := b.config(ctx, s)
	if err != nil {
		return nil, err
	}
	if cfg == nil {
		return logical.ErrorResponse("the engine has no Snyk credential yet: write snyk/config first"), nil
	}
	p := e.policy(cfg)
	problems = append(problems, e.policyProblems(p, now)...)
	if len(problems) > 0 {
		return logical.ErrorResponse(strings.Join(problems, "; ")), nil
	}

	client, err := b.snykClient(ctx, s)
	if err != nil {
		return nil, err
	}
	if creating {
		if resp, err := b.checkInstall(ctx, client, e); resp != nil || err != nil {
			return resp, err
		}
	}
	// The secret is checked where the client will use it: again when
	// api_url moves.
	if resp, err := b.applyClientSecret(ctx, cfg, e, secret, e.APIURL != apiURL, now); resp != nil || err != nil {
		return resp, err
	}
	f, err := b.inspectDeployment(ctx, client, e)
	if err != nil {
		return universalCallerError(err, e)
	}
	if len(f.wrongIDs) > 0 {
		// The IDs do not name what Snyk knows: nothing is stored.
		return logical.ErrorResponse(strings.Join(f.wrongIDs, "; ")), nil
	}
	if resp, err := b.checkWrittenCredentials(ctx, cfg, e, f, written, now); resp != nil || err != nil {
		return resp, err
	}
	if p := f.missingProblem(e); p != "" {
		return logical.ErrorResponse(p), nil
	}
	if scheduleChanged {
		// A failure's back-off belongs to the old schedule.
		e.RetryAt, e.Failures = time.Time{}, 0
	}
	if creating || (scheduleChanged && e.NextClientSecret == "") {
		if e.LastVaultRotation.IsZero() {
			e.LastVaultRotation = now
		}
		if e.NextVaultRotation, err = p.nextRotation(now); err != nil {
			return logical.ErrorResponse(err.Error()), nil
		}
	}
	f.record(e, now)
	if err := putUniversal(ctx, s, e); err != nil {
		return nil, err
	}
	b.rotation.scheduleUniversal(e, cfg)
	resp := &logical.Response{Data: e.statusData(cfg)}
	for _, problem := range e.Problems {
		resp.AddWarning(problem)
	}
	if len(e.UnusedCredentials) > 0 {
		resp.AddWarning(fmt.Sprintf("no connection or context uses %s: the client gets them all the same", strings.Join(e.UnusedCredentials, ", ")))
	}
	return resp, nil
}

// applyCredentialMap applies the credentials field of a deployment write
// and returns the names it wrote.
func (b *backend) applyCredentialMap(d *framework.FieldData, e *universalEntry) ([]string, []string) {
	raw, ok := d.GetOk("credentials")
	if !ok {
		return nil, nil
	}
	inputs, problems := credentialInputsFromMap(raw.(map[string]interface{}))
	var written []string
	for name, in := range inputs {
		c := &universalCredential{Name: name}
		if old := e.Credentials[name]; old != nil {
			cp := *old
			c = &cp
		}
		_, p := in.apply(c)
		problems = append(problems, p...)
		e.Credentials[name] = c
		written = append(written, name)
	}
	return written, problems
}

func (b *backend) pathUniversalDelete(ctx context.Context, req *logical.Request, d *framework.FieldData) (*logical.Response, error) {
	name := d.Get("name").(string)
	if p := checkName(name); p != "" {
		return logical.ErrorResponse(p), nil
	}
	unlock := b.lockUniversal(name)
	defer unlock()
	e, err := b.universalForWrite(ctx, req.Storage, name)
	if err != nil || e == nil {
		return nil, err
	}
	held := e.NextClientSecret != "" || e.PreviousClientSecret != ""
	if held && !d.Get("force").(bool) {
		// Forgetting it would leave the install with a second secret nobody
		// can delete (Snyk deletes by value only), blocking every later
		// rotation of the install.
		return logical.ErrorResponse("universal/%s holds a second client secret of a rotation in progress (rotation_state %s, retire_previous_at %s): "+
			"wait until it completes, or delete with force=true and remove that secret at Snyk yourself", name, e.RotationState, timeOrNil(e.RetirePreviousAt)), nil
	}
	if err := req.Storage.Delete(ctx, universalStorageKey(name)); err != nil {
		return nil, err
	}
	b.rotation.forgetUniversal(name)
	if held {
		resp := &logical.Response{}
		resp.AddWarning("the install at Snyk still holds the second client secret of the rotation (Snyk allows two): " +
			"the next create of a secret for this install will be refused until it is removed at Snyk")
		return resp, nil
	}
	return nil, nil
}

// universalCallerError turns a refused look at Snyk into a 400 the operator
// can act on; anything else stays a fault.
func universalCallerError(err error, e *universalEntry) (*logical.Response, error) {
	switch snyk.Classify(snyk.OpLookup, err) {
	case snyk.RefusalUnauthorized:
		return logical.ErrorResponse(fmt.Sprintf("checking the deployment at Snyk: Snyk rejected the configured credential: update snyk/config; Snyk said: %v", err)), nil
	case snyk.RefusalForbidden:
		return logical.ErrorResponse(fmt.Sprintf("checking the deployment at Snyk: the configured Snyk credential must be a tenant admin of tenant %s (Universal Broker deployments are managed by tenant admins); Snyk said: %v", e.TenantID, err)), nil
	case snyk.NotARefusal:
		return nil, fmt.Errorf("checking the deployment at Snyk: %w", err)
	default:
		return logical.ErrorResponse(fmt.Sprintf("checking the deployment at Snyk: Snyk refused to list tenant %s, install %s or deployment %s (%s): check the three IDs and that the configured credential is a tenant admin",
			e.TenantID, e.InstallID, e.DeploymentID, snyk.Answer(err))), nil
	}
}

// clone copies e deeply enough for a write to change it without touching
// the stored or cached copy.
func (e *universalEntry) clone() *universalEntry {
	cp := *e
	cp.Credentials = make(map[string]*universalCredential, len(e.Credentials))
	for n, c := range e.Credentials {
		cc := *c
		cp.Credentials[n] = &cc
	}
	return &cp
}

const pathUniversalHelpDesc = `
A Snyk Universal Broker deployment: one client (or one set of replicas)
serving every connection of the deployment. Vault holds what the client
needs and Snyk never sees: the Snyk Broker App install's client secret and
the value of every credential reference.

On every write Vault checks, and stores nothing unless all pass:
  - client_secret works (a client-credentials grant at <api_url>/oauth2/token);
  - Snyk lists deployment_id under install_id of tenant_id (the configured
    Snyk credential must be a tenant admin), and install_org_id is the org
    the Broker App is installed in;
  - every credential written is a credential reference of the deployment,
    of the type Snyk records, and SCM credentials pass the classic Broker's
    scope checks against the host their connection names;
  - every ${ENV_NAME} a connection or context uses has a value in Vault.
The same checks run again every check_period; a read reports problems,
missing_credentials and unused_credentials.

Reads of universal/<name>/env serve the client's whole environment as one
lease. The client secret is rotated on the rotation policy with overlap:
create a second secret (both valid), serve it as next_client_secret, switch
to it at next_vault_rotation, and delete the old one at Snyk ttl +
client_exit_window later.

  vault write snyk/universal/prod tenant_id=… install_id=… install_org_id=… \
      deployment_id=… client_id=… client_secret=… \
      credentials='{"MY_GITHUB_TOKEN":"ghp_…","MY_GITLAB_TOKEN":"glpat-…"}'
`
