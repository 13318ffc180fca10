package backend

import (
	"context"
	"net/http"
	"strings"

	"github.com/hashicorp/vault/sdk/framework"
	"github.com/hashicorp/vault/sdk/logical"

	"github.com/snyk-vault/vault-plugin-secrets-snyk/backend/scm"
)

func pathSCMValidate(b *backend) []*framework.Path {
	fields := integrationFields()
	validateFields := map[string]*framework.FieldSchema{
		"scm": {
			Type:          framework.TypeString,
			Description:   pathNameFields["scm"].Description,
			Required:      true,
			AllowedValues: pathNameFields["scm"].AllowedValues,
		},
	}
	for _, k := range []string{"scm_token", "scm_username", "scm_password", "scm_url", "scm_api_url", "azure_org"} {
		validateFields[k] = fields[k]
	}
	return []*framework.Path{{
		Pattern: "scm/validate$",
		DisplayAttrs: &framework.DisplayAttributes{
			OperationPrefix: operationPrefix,
			OperationVerb:   "validate",
			OperationSuffix: "scm-credential",
		},
		Fields: validateFields,
		Operations: map[logical.Operation]framework.OperationHandler{
			logical.UpdateOperation: &framework.PathOperation{
				Callback: b.pathSCMValidate,
				Summary:  "Dry-run the SCM credential checks; stores nothing.",
				Responses: map[int][]framework.Response{http.StatusOK: {{
					Description: "OK",
					Fields: map[string]*framework.FieldSchema{
						"valid":          {Type: framework.TypeBool},
						"scopes":         {Type: framework.TypeStringSlice},
						"missing_scopes": {Type: framework.TypeStringSlice},
						"expires_at":     {Type: framework.TypeTime},
						"username":       {Type: framework.TypeString},
						"problems":       {Type: framework.TypeStringSlice},
						"notes":          {Type: framework.TypeStringSlice},
					},
				}}},
			},
		},
		HelpSynopsis:    "Check an SCM credential the way integration create does, without storing anything.",
		HelpDescription: pathSCMValidateHelpDesc,
	}}
}

func (b *backend) pathSCMValidate(ctx context.Context, req *logical.Request, d *framework.FieldData) (*logical.Response, error) {
	kind := strings.TrimSpace(d.Get("scm").(string))
	if !scm.Valid(kind) {
		return logical.ErrorResponse("scm must be one of " + strings.Join(scm.Kinds, ", ")), nil
	}
	// The integration's two SCM field groups: the dry run accepts and
	// refuses exactly the SCM fields a create would.
	e := integrationEntry{SCM: kind}
	_, problems := e.applySCMLocation(d)
	_, _, credentialProblems := e.applySCMCredential(d)
	if problems = append(problems, credentialProblems...); len(problems) > 0 {
		return logical.ErrorResponse(strings.Join(problems, "; ")), nil
	}
	cfg, err := b.configOrDefaults(ctx, req.Storage)
	if err != nil {
		return nil, err
	}
	res, resp, err := b.checkSCM(ctx, cfg, &e)
	if resp != nil || err != nil {
		return resp, err
	}
	return &logical.Response{Data: map[string]interface{}{
		"valid":          res.Valid,
		"scopes":         nonNil(res.Scopes),
		"missing_scopes": nonNil(res.MissingScopes),
		"expires_at":     timeOrNil(res.ExpiresAt),
		"username":       res.Username,
		"problems":       nonNil(res.Problems),
		"notes":          nonNil(res.Notes),
	}}, nil
}

const pathSCMValidateHelpDesc = `
A dry run of the SCM checks integration create performs. Fields: scm,
scm_token (or scm_username and scm_password for bitbucket-server), scm_url,
scm_api_url, azure_org. Returns valid, scopes, missing_scopes, expires_at,
username, and problems/notes in words. Stores nothing.

  vault write snyk/scm/validate scm=github scm_token=@github-pat
`
