package backend

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/hashicorp/vault/sdk/framework"
	"github.com/hashicorp/vault/sdk/logical"
)

// Roles of dynamic Snyk API credentials: each creds read creates a Snyk
// service account (auth_type api_key) with the role's Snyk role in its org or
// group, and the lease deletes it.

const roleStoragePrefix = "roles/"

const (
	defaultCredsTTL    = time.Hour
	defaultCredsMaxTTL = 24 * time.Hour
)

// roleEntry is the stored form of roles/<name>.
type roleEntry struct {
	// StorageFormat is the layout version the entry was written in.
	StorageFormat int `json:"storage_format,omitempty"`

	Name    string        `json:"name"`
	OrgID   string        `json:"org_id,omitempty"`
	GroupID string        `json:"group_id,omitempty"`
	RoleID  string        `json:"role_id"`
	TTL     time.Duration `json:"ttl,omitempty"`
	MaxTTL  time.Duration `json:"max_ttl,omitempty"`
}

// owner is the REST path segment and ID of the org or group whose service
// accounts the role creates.
func (r *roleEntry) owner() (scope, id string) {
	if r.OrgID != "" {
		return "orgs", r.OrgID
	}
	return "groups", r.GroupID
}

func (r *roleEntry) ttls() (ttl, maxTTL time.Duration) {
	ttl, maxTTL = r.TTL, r.MaxTTL
	if ttl <= 0 {
		ttl = defaultCredsTTL
	}
	if maxTTL <= 0 {
		maxTTL = defaultCredsMaxTTL
	}
	return ttl, maxTTL
}

func getRole(ctx context.Context, s logical.Storage, name string) (*roleEntry, error) {
	entry, err := s.Get(ctx, roleStoragePrefix+name)
	if err != nil || entry == nil {
		return nil, err
	}
	var r roleEntry
	if err := entry.DecodeJSON(&r); err != nil {
		return nil, fmt.Errorf("%w: role %s: %w", errCorruptEntry, name, err)
	}
	if err := checkStorageFormat("role "+name, r.StorageFormat); err != nil {
		return nil, err
	}
	return &r, nil
}

func pathRoles(b *backend) []*framework.Path {
	name := map[string]*framework.FieldSchema{"name": {Type: framework.TypeString, Required: true, Description: "Name of the role (a slug)."}}
	fields := map[string]*framework.FieldSchema{
		"name":     name["name"],
		"org_id":   {Type: framework.TypeString, Description: "Snyk org (UUID) whose service accounts the role creates; or group_id."},
		"group_id": {Type: framework.TypeString, Description: "Snyk group (UUID) whose service accounts the role creates; or org_id."},
		"role_id":  {Type: framework.TypeString, Description: "Snyk role (UUID) the created service accounts get, e.g. a custom role that may only test projects."},
		"ttl":      {Type: framework.TypeDurationSecond, Description: "Lease TTL of the credentials (default 1h)."},
		"max_ttl":  {Type: framework.TypeDurationSecond, Description: "Longest a lease may be renewed to (default 24h)."},
	}
	return []*framework.Path{
		{
			Pattern:      "roles/?$",
			DisplayAttrs: &framework.DisplayAttributes{OperationPrefix: operationPrefix, OperationSuffix: "roles"},
			Operations: map[logical.Operation]framework.OperationHandler{
				logical.ListOperation: &framework.PathOperation{Callback: b.pathRolesList, Summary: "List the roles of dynamic Snyk API credentials."},
			},
			HelpSynopsis:    "List the roles of dynamic Snyk API credentials.",
			HelpDescription: "Lists every role, e.g. `vault list snyk/roles`.",
		},
		{
			Pattern:      "roles/" + framework.GenericNameRegex("name") + "$",
			DisplayAttrs: &framework.DisplayAttributes{OperationPrefix: operationPrefix, OperationSuffix: "role"},
			Fields:       fields,
			Operations: map[logical.Operation]framework.OperationHandler{
				logical.ReadOperation: &framework.PathOperation{Callback: b.pathRoleRead, Summary: "Read a role."},
				logical.CreateOperation: &framework.PathOperation{Callback: b.pathRoleWrite, Summary: "Create a role.",
					ForwardPerformanceStandby: true, ForwardPerformanceSecondary: true},
				logical.UpdateOperation: &framework.PathOperation{Callback: b.pathRoleWrite, Summary: "Update a role.",
					ForwardPerformanceStandby: true, ForwardPerformanceSecondary: true},
				logical.DeleteOperation: &framework.PathOperation{Callback: b.pathRoleDelete, Summary: "Delete a role (its leases keep their service accounts until they end).",
					ForwardPerformanceStandby: true, ForwardPerformanceSecondary: true},
			},
			ExistenceCheck:  b.pathRoleExists,
			HelpSynopsis:    "A role of dynamic Snyk API credentials.",
			HelpDescription: pathRoleHelpDesc,
		},
	}
}

func (b *backend) pathRolesList(ctx context.Context, req *logical.Request, _ *framework.FieldData) (*logical.Response, error) {
	keys, err := req.Storage.List(ctx, roleStoragePrefix)
	if err != nil {
		return nil, err
	}
	return logical.ListResponse(keys), nil
}

func (b *backend) pathRoleExists(ctx context.Context, req *logical.Request, d *framework.FieldData) (bool, error) {
	r, err := getRole(ctx, req.Storage, d.Get("name").(string))
	return r != nil, err
}

func (b *backend) pathRoleRead(ctx context.Context, req *logical.Request, d *framework.FieldData) (*logical.Response, error) {
	r, err := getRole(ctx, req.Storage, d.Get("name").(string))
	if err != nil || r == nil {
		return nil, err
	}
	ttl, maxTTL := r.ttls()
	data := map[string]interface{}{"role_id": r.RoleID, "ttl": int64(ttl.Seconds()), "max_ttl": int64(maxTTL.Seconds())}
	if r.OrgID != "" {
		data["org_id"] = r.OrgID
	} else {
		data["group_id"] = r.GroupID
	}
	return &logical.Response{Data: data}, nil
}

func (b *backend) pathRoleWrite(ctx context.Context, req *logical.Request, d *framework.FieldData) (*logical.Response, error) {
	name := d.Get("name").(string)
	if p := checkName(name); p != "" {
		return logical.ErrorResponse(p), nil
	}
	r, err := getRole(ctx, req.Storage, name)
	if err != nil {
		return nil, err
	}
	if r == nil {
		r = &roleEntry{Name: name}
	}
	var problems []string
	for _, f := range []struct {
		field string
		dst   *string
	}{{"org_id", &r.OrgID}, {"group_id", &r.GroupID}, {"role_id", &r.RoleID}} {
		if v, ok := d.GetOk(f.field); ok {
			v := strings.ToLower(strings.TrimSpace(v.(string)))
			if v != "" && !isUUID(v) {
				problems = append(problems, fmt.Sprintf("%s must be a UUID, got %q", f.field, v))
			}
			*f.dst = v
		}
	}
	switch {
	case r.OrgID == "" && r.GroupID == "":
		problems = append(problems, "org_id or group_id is required: the org or group whose service accounts the role creates")
	case r.OrgID != "" && r.GroupID != "":
		problems = append(problems, "org_id and group_id are mutually exclusive: send one of them")
	}
	if r.RoleID == "" {
		problems = append(problems, "role_id is required: the Snyk role (UUID) the service accounts get")
	}
	if v, ok := d.GetOk("ttl"); ok {
		r.TTL = time.Duration(v.(int)) * time.Second
	}
	if v, ok := d.GetOk("max_ttl"); ok {
		r.MaxTTL = time.Duration(v.(int)) * time.Second
	}
	if ttl, maxTTL := r.ttls(); ttl > maxTTL {
		problems = append(problems, fmt.Sprintf("ttl (%s) must not exceed max_ttl (%s)", ttl, maxTTL))
	}
	if len(problems) > 0 {
		return logical.ErrorResponse(strings.Join(problems, "; ")), nil
	}
	r.StorageFormat = storageFormat
	entry, err := logical.StorageEntryJSON(roleStoragePrefix+name, r)
	if err != nil {
		return nil, err
	}
	if err := req.Storage.Put(ctx, entry); err != nil {
		return nil, err
	}
	return b.pathRoleRead(ctx, req, d)
}

func (b *backend) pathRoleDelete(ctx context.Context, req *logical.Request, d *framework.FieldData) (*logical.Response, error) {
	name := d.Get("name").(string)
	entries, err := listIntegrations(ctx, req.Storage)
	if err != nil {
		return nil, err
	}
	var users []string
	for _, e := range entries {
		if e.CodeAgentRole == name {
			users = append(users, queueKey(e.Name, e.SCM))
		}
	}
	if len(users) > 0 {
		return logical.ErrorResponse(fmt.Sprintf("role %s is the code_agent_role of %s: clear it there first (code_agent_role=%q)", name, strings.Join(users, ", "), "")), nil
	}
	return nil, req.Storage.Delete(ctx, roleStoragePrefix+name)
}

const pathRoleHelpDesc = `
A role of dynamic Snyk API credentials: reading snyk/creds/<name> creates a
Snyk service account (auth_type api_key) in the role's org or group with the
role's Snyk role, and returns its API key under a lease; revoking or
expiring the lease deletes the service account, which revokes the key.

  vault write snyk/roles/code-agent org_id=<org UUID> role_id=<role UUID> ttl=1h max_ttl=24h
  vault read snyk/creds/code-agent
`
