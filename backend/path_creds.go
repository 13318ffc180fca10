package backend

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"strings"
	"time"

	"github.com/hashicorp/vault/sdk/framework"
	"github.com/hashicorp/vault/sdk/logical"

	"github.com/snyk-vault/vault-plugin-secrets-snyk/backend/httpx"
	"github.com/snyk-vault/vault-plugin-secrets-snyk/backend/snyk"
)

// Dynamic Snyk API credentials, in the database and AWS engines' pattern: a
// WAL entry names the service account before it is created, so that one a
// crash orphans (created at Snyk, never leased by Vault) is found by name and
// deleted by the rollback; the lease deletes the account when it is revoked
// or expires.

const (
	secretTypeSnykToken     = "snyk_api_token" //nolint:gosec // a secret type name, not a credential
	walKindServiceAccount   = "service-account"
	serviceAccountNameLimit = 64
)

// serviceAccountWAL names a service account being created.
type serviceAccountWAL struct {
	Scope   string    `json:"scope"`
	OwnerID string    `json:"owner_id"`
	Name    string    `json:"name"`
	Started time.Time `json:"started_at"`
}

func pathCreds(b *backend) []*framework.Path {
	return []*framework.Path{{
		Pattern:      "creds/" + framework.GenericNameRegex("name") + "$",
		DisplayAttrs: &framework.DisplayAttributes{OperationPrefix: operationPrefix, OperationSuffix: "credentials"},
		Fields:       map[string]*framework.FieldSchema{"name": {Type: framework.TypeString, Required: true, Description: "Name of the role."}},
		Operations: map[logical.Operation]framework.OperationHandler{
			logical.ReadOperation: &framework.PathOperation{
				Callback: b.pathCredsRead,
				Summary:  "Create a Snyk service account for the role and return its API key under a lease.",
				// Creating the account is an upstream side effect.
				ForwardPerformanceStandby: true, ForwardPerformanceSecondary: true,
			},
		},
		HelpSynopsis:    "Dynamic Snyk API credentials.",
		HelpDescription: pathCredsHelpDesc,
	}}
}

func secretSnykToken(b *backend) *framework.Secret {
	return &framework.Secret{
		Type: secretTypeSnykToken,
		Fields: map[string]*framework.FieldSchema{
			"snyk_token":         {Type: framework.TypeString, Description: "The service account's API key (send as 'Authorization: token …')."},
			"service_account_id": {Type: framework.TypeString},
			"env":                {Type: framework.TypeMap, Description: "SNYK_TOKEN, ready to render into a container's environment."},
		},
		Renew:  b.renewSnykToken,
		Revoke: b.revokeSnykToken,
	}
}

var nameUnsafe = regexp.MustCompile(`[^a-z0-9-]+`)

// serviceAccountName is "vault-<display name>-<random>", at most 64 bytes:
// recognisable at Snyk, unique, and findable by the rollback.
func serviceAccountName(displayName string) string {
	var b [4]byte
	_, _ = rand.Read(b[:])
	suffix := hex.EncodeToString(b[:])
	display := strings.Trim(nameUnsafe.ReplaceAllString(strings.ToLower(displayName), "-"), "-")
	if max := serviceAccountNameLimit - len("vault--") - len(suffix); len(display) > max {
		display = display[:max]
	}
	if display == "" {
		return "vault-" + suffix
	}
	return "vault-" + display + "-" + suffix
}

func (b *backend) pathCredsRead(ctx context.Context, req *logical.Request, d *framework.FieldData) (*logical.Response, error) {
	name := d.Get("name").(string)
	role, err := getRole(ctx, req.Storage, name)
	if err != nil {
		return nil, err
	}
	if role == nil {
		return logical.ErrorResponse("no role %q: create it with snyk/roles/%s", name, name), nil
	}
	sa, resp, err := b.createLeasedServiceAccount(ctx, req.Storage, role, req.DisplayName)
	if resp != nil || err != nil {
		return resp, err
	}
	ttl, maxTTL := role.ttls()
	out := b.Secret(secretTypeSnykToken).Response(map[string]interface{}{
		"snyk_token":         sa.key,
		"service_account_id": sa.id,
		"env":                map[string]string{"SNYK_TOKEN": sa.key},
	}, sa.internalData(name))
	out.Secret.TTL, out.Secret.MaxTTL, out.Secret.Renewable = ttl, maxTTL, true
	return out, nil
}

// leasedServiceAccount is a service account created for a lease.
type leasedServiceAccount struct{ id, key, scope, owner string }

// internalData is what the lease keeps to delete the account: identifiers,
// never the key.
func (sa leasedServiceAccount) internalData(role string) map[string]interface{} {
	return map[string]interface{}{"role": role, "scope": sa.scope, "owner_id": sa.owner, "service_account_id": sa.id}
}

// createLeasedServiceAccount creates a service account for role under a WAL
// entry that names it. Once it returns, the caller's lease owns the
// account: Vault revokes the lease (deleting the account) if it cannot
// register it. resp is a caller error.
func (b *backend) createLeasedServiceAccount(ctx context.Context, s logical.Storage, role *roleEntry, displayName string) (leasedServiceAccount, *logical.Response, error) {
	client, err := b.snykClient(ctx, s)
	if err != nil {
		return leasedServiceAccount{}, nil, err
	}
	if client == nil {
		return leasedServiceAccount{}, logical.ErrorResponse("the engine has no Snyk credential yet: write snyk/config first"), nil
	}
	scope, owner := role.owner()
	w := serviceAccountWAL{Scope: scope, OwnerID: owner, Name: serviceAccountName(displayName), Started: b.now().UTC()}
	walID, err := framework.PutWAL(ctx, s, walKindServiceAccount, &w)
	if err != nil {
		return leasedServiceAccount{}, nil, err
	}
	id, key, err := client.CreateAPIKeyServiceAccount(ctx, scope, owner, w.Name, role.RoleID)
	if err != nil {
		if !errors.Is(err, httpx.ErrOutcomeUnknown) {
			b.deleteWAL(ctx, s, walID)
		}
		// The rollback deletes an account a lost answer may have created.
		if snyk.Classify(snyk.OpLookup, err) == snyk.NotARefusal {
			return leasedServiceAccount{}, nil, fmt.Errorf("creating a Snyk service account: %w", err)
		}
		return leasedServiceAccount{}, logical.ErrorResponse(fmt.Sprintf("creating a Snyk service account for role %s: %v (the configured credential needs permission to create service accounts in %s %s)",
			role.Name, err, strings.TrimSuffix(scope, "s"), owner)), nil
	}
	// The WAL entry must go before the key is handed out: left behind, the
	// rollback would delete an account a lease still holds. If it cannot be
	// deleted, no key is handed out and the rollback deletes the account.
	if err := framework.DeleteWAL(ctx, s, walID); err != nil {
		return leasedServiceAccount{}, nil, fmt.Errorf("recording the new service account failed (it will be deleted): %w", err)
	}
	b.log().Info("created a Snyk service account", "role", role.Name, "service_account_id", id, "name", w.Name)
	return leasedServiceAccount{id: id, key: key, scope: scope, owner: owner}, nil, nil
}

// deleteLeasedServiceAccount deletes the account a lease's internal data
// names (none: nothing to do); one already gone counts as done.
func (b *backend) deleteLeasedServiceAccount(ctx context.Context, s logical.Storage, internal map[string]interface{}) error {
	id, _ := internal["service_account_id"].(string)
	if id == "" {
		return nil
	}
	scope, _ := internal["scope"].(string)
	owner, _ := internal["owner_id"].(string)
	client, err := b.snykClient(ctx, s)
	if err != nil || client == nil {
		return fmt.Errorf("revoking Snyk service account %s: the engine has no usable Snyk credential: %w", id, err)
	}
	if err := client.DeleteServiceAccount(ctx, scope, owner, id); err != nil && !serviceAccountGone(ctx, client, scope, owner, id, err) {
		return fmt.Errorf("deleting Snyk service account %s: %w", id, err)
	}
	b.log().Info("deleted a Snyk service account", "service_account_id", id)
	return nil
}

// serviceAccountGone reads a failed delete: Snyk answers 404 both for an
// account that is gone and for an org the credential cannot see, so a 404
// counts as done only when the owner's list is readable and lacks the
// account.
func serviceAccountGone(ctx context.Context, client *snyk.Client, scope, owner, id string, err error) bool {
	if snyk.StatusOf(err) != http.StatusNotFound {
		return false
	}
	accounts, lerr := client.ListServiceAccounts(ctx, scope, owner)
	if lerr != nil {
		return false
	}
	for _, a := range accounts {
		if a.ID == id {
			return false
		}
	}
	return true
}

// renewSnykToken extends a lease up to the role's max_ttl, with no call to
// Snyk: an API key has no expiry of its own.
func (b *backend) renewSnykToken(ctx context.Context, req *logical.Request, _ *framework.FieldData) (*logical.Response, error) {
	name, _ := req.Secret.InternalData["role"].(string)
	role, err := getRole(ctx, req.Storage, name)
	if err != nil {
		return nil, err
	}
	if role == nil {
		return logical.ErrorResponse("role %q no longer exists: the credential is not renewed", name), nil
	}
	ttl, maxTTL := role.ttls()
	resp := &logical.Response{Secret: req.Secret}
	resp.Secret.TTL, resp.Secret.MaxTTL = ttl, maxTTL
	return resp, nil
}

// revokeSnykToken deletes the lease's service account.
func (b *backend) revokeSnykToken(ctx context.Context, req *logical.Request, _ *framework.FieldData) (*logical.Response, error) {
	return nil, b.deleteLeasedServiceAccount(ctx, req.Storage, req.Secret.InternalData)
}

// serviceAccountRollback deletes a service account a crash orphaned: one
// with the WAL entry's name.
func (b *backend) serviceAccountRollback(ctx context.Context, s logical.Storage, data interface{}) error {
	var w serviceAccountWAL
	if err := mapToStruct(data, &w); err != nil {
		return err
	}
	client, err := b.snykClient(ctx, s)
	if err != nil || client == nil {
		return fmt.Errorf("cannot look for an orphaned service account without a Snyk credential: %w", err)
	}
	accounts, err := client.ListServiceAccounts(ctx, w.Scope, w.OwnerID)
	if err != nil {
		return err
	}
	for _, a := range accounts {
		if a.Name != w.Name {
			continue
		}
		if err := client.DeleteServiceAccount(ctx, w.Scope, w.OwnerID, a.ID); err != nil && !serviceAccountGone(ctx, client, w.Scope, w.OwnerID, a.ID, err) {
			return err
		}
		b.log().Warn("deleted a Snyk service account a crash left without a lease", "service_account_id", a.ID, "name", w.Name)
	}
	return nil
}

//nolint:gosec // help text, not a credential
const pathCredsHelpDesc = `
Reading snyk/creds/<role> creates a Snyk service account (auth_type api_key)
with the role's Snyk role in its org or group, and returns under a lease:

  snyk_token           the API key (Authorization: token …)
  service_account_id
  env                  {"SNYK_TOKEN": …}, e.g. for the Snyk Code Agent

Revoking the lease, or its expiry, deletes the service account at Snyk,
which revokes the key. Leases renew up to the role's max_ttl with no call to
Snyk. A crash between creating the account and returning the lease is
repaired by the rollback, which finds the account by its name and deletes it.

  vault read snyk/creds/code-agent
`
