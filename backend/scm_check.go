package backend

import (
	"context"
	"fmt"
	"strings"

	"github.com/hashicorp/vault/sdk/logical"

	"github.com/snyk-vault/vault-plugin-secrets-snyk/backend/httpx"
	"github.com/snyk-vault/vault-plugin-secrets-snyk/backend/scm"
)

// scmValidator builds a validator that trusts the config's CA bundle, the same
// trust the operator configured for Snyk (private GHE, GitLab and Bitbucket
// servers are usually behind the same private CA).
func (b *backend) scmValidator(cfg *snykConfig, kind string) (*scm.Validator, error) {
	client, err := httpx.NewClient(cfg.CACert, cfg.RequestTimeout)
	if err != nil {
		return nil, err
	}
	return &scm.Validator{
		Client: client,
		Retry:  b.retryPolicy(kind),
		Logger: b.log().Named("scm"),
		Now:    b.now,
	}, nil
}

// checkSCM runs the SCM checks on e's credential, as integration create and
// scm/validate both do. resp is a caller error (an unusable CA bundle).
func (b *backend) checkSCM(ctx context.Context, cfg *snykConfig, e *integrationEntry) (res scm.Result, resp *logical.Response, err error) {
	v, err := b.scmValidator(cfg, e.SCM)
	if err != nil {
		return scm.Result{}, logical.ErrorResponse(err.Error()), nil
	}
	res, err = v.Validate(ctx, scm.Target{Kind: e.SCM, APIURL: e.apiURL(), AzureOrg: e.AzureOrg},
		scm.Credential{Token: e.SCMToken, Username: e.SCMUsername, Password: e.SCMPassword})
	return res, nil, err
}

// validateSCM checks e's SCM credential and records what it learned (scopes,
// expiry, username) on e. A credential the SCM rejects is a 400 naming every
// problem; an unreachable SCM is a fault.
func (b *backend) validateSCM(ctx context.Context, cfg *snykConfig, e *integrationEntry) (*logical.Response, error) {
	res, resp, err := b.checkSCM(ctx, cfg, e)
	if resp != nil {
		return resp, nil
	}
	if err != nil {
		return nil, fmt.Errorf("validating the %s credential at %s (set skip_scm_validation=true to store it unchecked): %w", e.SCM, e.apiURL(), err)
	}
	if !res.Valid {
		msg := res.Message()
		if len(res.MissingScopes) > 0 {
			msg = fmt.Sprintf("scm_token is missing %s: %s", strings.Join(res.MissingScopes, ", "), msg)
		} else {
			field := "scm_token"
			if e.SCMToken == "" {
				field = "scm_username/scm_password"
			}
			msg = fmt.Sprintf("%s rejected by %s: %s", field, e.SCM, msg)
		}
		return logical.ErrorResponse(msg), nil
	}
	e.recordSCMResult(res, b.now().UTC(), cfg.scmExpiryWarning())
	return nil, nil
}
