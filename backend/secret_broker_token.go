package backend

import (
	"context"
	"strings"
	"time"

	"github.com/hashicorp/vault/sdk/framework"
	"github.com/hashicorp/vault/sdk/logical"
	"github.com/snyk-vault/vault-plugin-secrets-snyk/backend/scm"
)

const secretTypeBrokerToken = "snyk_broker_token" //nolint:gosec // a secret type name, not a credential

// minLeaseTTL keeps leases near a switch from being so short that Vault
// Agent's re-read lands in the same second as the previous one: Agent's
// template engine compares the new secret with the last and renders nothing
// when they are equal, and a lease that ends within a second of the previous
// read can hand back the same data.
const minLeaseTTL = 2 * time.Second

func secretBrokerToken(b *backend) *framework.Secret {
	return &framework.Secret{
		Type: secretTypeBrokerToken,
		Fields: map[string]*framework.FieldSchema{
			"broker_token": {Type: framework.TypeString, Description: "Snyk Broker token"},
		},
		// No Renew: the lease is non-renewable so that consumers re-read at
		// its end, which is never past the next switch.
		Revoke: b.revokeBrokerLease,
	}
}

// revokeBrokerLease changes nothing about the Broker token: it is shared by
// every Broker client of the integration, and one consumer's lease ending
// must not cut off the others. Only the Code Agent's service account, which
// is this lease's own, is deleted.
func (b *backend) revokeBrokerLease(ctx context.Context, req *logical.Request, _ *framework.FieldData) (*logical.Response, error) {
	return nil, b.deleteLeasedServiceAccount(ctx, req.Storage, req.Secret.InternalData)
}

// While a due provision has not happened yet, the new token may appear any
// moment. For the first overdueGrace (the ticker's lag, a retry) leases get
// the floor so next_broker_token is seen within seconds; after that (waiting
// for the Snyk group's slot or the request budget, possibly for hours) they
// get overdueProvisionLeaseTTL, to not turn every consumer into a poller.
const (
	overdueGrace             = 30 * time.Second
	overdueProvisionLeaseTTL = 15 * time.Second
)

// leaseTTL is the integration's ttl, but never past its next phase change:
// the switch (so every consumer re-reads right after it) and, before that,
// the provision (so consumers of next_broker_token see it at once).
func (e *integrationEntry) leaseTTL(p policy, now time.Time) time.Duration {
	ttl := p.TTL
	// A GitLab token rotation revokes the served token at once: leases end
	// then too, so that clients re-read the new one; while one is overdue,
	// leases stay short, as for an overdue provision.
	if at, ok := e.nextSCMRotation(); ok {
		until := at.Sub(now)
		if until <= 0 {
			until = overdueProvisionLeaseTTL
		}
		if until < ttl {
			ttl = until
		}
	}
	if ttl < minLeaseTTL {
		ttl = minLeaseTTL
	}
	if e.NextVaultRotation.IsZero() || (p.DisableAutomatedRotation && e.ProvisionalToken == "") {
		return ttl
	}
	phase := e.switchNotBefore(p, now)
	if e.ProvisionalToken == "" {
		provisionAt := e.NextVaultRotation.Add(-p.ProvisionAhead)
		if !e.RetryAt.IsZero() {
			provisionAt = e.RetryAt
		}
		phase = phaseAt(provisionAt, now)
	}
	return capAtPhase(ttl, phase, now)
}

// phaseAt is when leases should end for a phase change due at at: then,
// or, once it is overdue, soon: within minLeaseTTL during overdueGrace, then
// every overdueProvisionLeaseTTL.
func phaseAt(at, now time.Time) time.Time {
	switch {
	case at.After(now):
		return at
	case now.Sub(at) < overdueGrace:
		return now.Add(minLeaseTTL)
	default:
		return now.Add(overdueProvisionLeaseTTL)
	}
}

// capAtPhase caps ttl at the phase change (none when zero), never below
// minLeaseTTL.
func capAtPhase(ttl time.Duration, phase, now time.Time) time.Duration {
	if !phase.IsZero() {
		if untilPhase := phase.Sub(now); untilPhase < ttl {
			ttl = untilPhase
		}
	}
	if ttl < minLeaseTTL {
		ttl = minLeaseTTL
	}
	return ttl
}

// brokerEnv is the Snyk Broker client's environment for this integration:
// what a Vault Agent template ranges over to render the container's env.
// Host values carry no scheme, as the Broker's client templates expect.
func (e *integrationEntry) brokerEnv(brokerToken, brokerServerURL string) map[string]string {
	env := map[string]string{
		"BROKER_TOKEN":      brokerToken,
		"BROKER_SERVER_URL": brokerServerURL,
	}
	if e.BrokerClientURL != "" {
		env["BROKER_CLIENT_URL"] = e.BrokerClientURL
	}
	api := hostPath(e.apiURL())
	switch e.SCM {
	case scm.GitHub:
		env["GITHUB_TOKEN"] = e.SCMToken
		env["GITHUB"] = hostPath(e.SCMURL)
		env["GITHUB_API"] = api
		// github.com serves GraphQL on the REST API host.
		env["GITHUB_GRAPHQL"] = api
	case scm.GitHubEnterprise:
		env["GITHUB_TOKEN"] = e.SCMToken
		env["GITHUB"] = hostPath(e.SCMURL)
		env["GITHUB_API"] = api
		// GHE serves GraphQL at <host>/api, beside REST at <host>/api/v3.
		env["GITHUB_GRAPHQL"] = strings.TrimSuffix(api, "/v3")
	case scm.GitLab:
		env["GITLAB_TOKEN"] = e.SCMToken
		env["GITLAB"] = hostPath(e.SCMURL)
	case scm.AzureRepos:
		env["AZURE_REPOS_TOKEN"] = e.SCMToken
		env["AZURE_REPOS_ORG"] = e.AzureOrg
		env["AZURE_REPOS_HOST"] = api
	case scm.BitbucketServer:
		if e.SCMToken != "" {
			env["BITBUCKET_PAT"] = e.SCMToken
		} else {
			env["BITBUCKET_USERNAME"] = e.SCMUsername
			env["BITBUCKET_PASSWORD"] = e.SCMPassword
		}
		env["BITBUCKET"] = hostPath(e.SCMURL)
		env["BITBUCKET_API"] = api + "/rest/api/1.0"
	}
	return env
}
