package backend

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/hashicorp/vault/sdk/helper/locksutil"
	"github.com/hashicorp/vault/sdk/logical"
)

// A Snyk Universal Broker deployment in Vault. One client (or one set of
// replicas) serves every connection of the deployment; it needs the Snyk
// Broker App install's OAuth credentials (DEPLOYMENT_ID, CLIENT_ID,
// CLIENT_SECRET) and one environment variable per credential reference,
// whose value never reaches Snyk. Vault holds all of them in one entry, so
// that a read of the client's environment is one storage get.

const universalStoragePrefix = "universal/"

// Rotation state of a deployment's client secret, beside the integrations'
// active and provisioned: the switched-away secret still works and waits
// for its grace period to end before Vault deletes it at Snyk.
const stateRetiring = "retiring"

// defaultClientExitWindow is how long a Universal Broker client keeps
// running after its secret stops working: it renews its websocket
// authentication every 10 minutes and exits after three consecutive
// failures (snyk/broker v5.19.1 and later), plus a margin.
const defaultClientExitWindow = 35 * time.Minute

// universalEntry is the stored form of universal/<name>; it holds the
// client secret and every credential value, and is seal-wrapped.
type universalEntry struct {
	StorageFormat int    `json:"storage_format,omitempty"`
	Name          string `json:"name"`
	TenantID      string `json:"tenant_id"`
	InstallID     string `json:"install_id"`
	InstallOrgID  string `json:"install_org_id"`
	DeploymentID  string `json:"deployment_id"`
	ClientID      string `json:"client_id"`
	// Overrides of the config's region URLs; empty inherits them.
	APIURL          string `json:"api_url,omitempty"`
	BrokerServerURL string `json:"broker_server_url,omitempty"`
	BrokerClientURL string `json:"broker_client_url,omitempty"`

	// ClientSecret is the secret every client must start with now.
	ClientSecret string `json:"client_secret"`
	// NextClientSecret was created at Snyk beside ClientSecret (both are
	// valid) and becomes ClientSecret at NextVaultRotation.
	NextClientSecret string    `json:"next_client_secret,omitempty"`
	NextCreatedAt    time.Time `json:"next_created_at,omitempty"`
	// NextVerifiedAt: /oauth2/token accepted the next secret. It is never
	// served before.
	NextVerifiedAt time.Time `json:"next_verified_at,omitempty"`
	// PreviousClientSecret was switched away from; clients started with it
	// keep working until RetirePreviousAt, when Vault deletes it at Snyk.
	PreviousClientSecret string    `json:"previous_client_secret,omitempty"`
	RetirePreviousAt     time.Time `json:"retire_previous_at,omitempty"`
	// ClientExitWindow overrides defaultClientExitWindow.
	ClientExitWindow time.Duration `json:"client_exit_window,omitempty"`

	rotationOverrides
	RotationState     string    `json:"rotation_state"`
	LastVaultRotation time.Time `json:"last_vault_rotation,omitempty"`
	NextVaultRotation time.Time `json:"next_vault_rotation,omitempty"`
	LastRotationError string    `json:"last_rotation_error,omitempty"`
	RetryAt           time.Time `json:"retry_at,omitempty"`
	Failures          int       `json:"failures,omitempty"`

	// Credentials are the values of the deployment's credential
	// references, by environment variable name.
	Credentials map[string]*universalCredential `json:"credentials,omitempty"`

	// What the last check against Snyk found (at write, then every
	// check_period).
	CheckPeriod        time.Duration         `json:"check_period,omitempty"`
	CheckedAt          time.Time             `json:"checked_at,omitempty"`
	Problems           []string              `json:"problems,omitempty"`
	MissingCredentials []string              `json:"missing_credentials,omitempty"`
	UnusedCredentials  []string              `json:"unused_credentials,omitempty"`
	Connections        []universalConnection `json:"connections,omitempty"`
	// UsedBy maps each credential name a connection or context uses to
	// those users, as the last check saw them.
	UsedBy           map[string][]string `json:"used_by,omitempty"`
	SecretVerifiedAt time.Time           `json:"client_secret_verified_at,omitempty"`
	CreatedAt        time.Time           `json:"created_at"`
}

// universalCredential is the value of one credential reference and what
// its SCM check needs and found.
type universalCredential struct {
	Name  string `json:"name"`
	Type  string `json:"type"`
	Value string `json:"value"`
	// SCMAPIURL overrides the API host derived from the connection.
	SCMAPIURL         string `json:"scm_api_url,omitempty"`
	AzureOrg          string `json:"azure_org,omitempty"`
	BitbucketUsername string `json:"bitbucket_username,omitempty"`
	SkipSCMValidation bool   `json:"skip_scm_validation,omitempty"`
	scmHealth
	UpdatedAt time.Time `json:"updated_at"`
}

// universalConnection is a connection of the deployment as the last check
// saw it: never a value, only which references it uses.
type universalConnection struct {
	ID         string   `json:"id"`
	Name       string   `json:"name"`
	Type       string   `json:"type"`
	Integrated bool     `json:"integrated"`
	Uses       []string `json:"uses,omitempty"`
}

func universalStorageKey(name string) string { return universalStoragePrefix + name }

func getUniversal(ctx context.Context, s logical.Storage, name string) (*universalEntry, error) {
	entry, err := s.Get(ctx, universalStorageKey(name))
	if err != nil {
		return nil, fmt.Errorf("reading universal deployment %s: %w", name, err)
	}
	if entry == nil {
		return nil, nil
	}
	var e universalEntry
	if err := entry.DecodeJSON(&e); err != nil {
		return nil, fmt.Errorf("%w: universal deployment %s: %w", errCorruptEntry, name, err)
	}
	if err := checkStorageFormat("universal deployment "+name, e.StorageFormat); err != nil {
		return nil, err
	}
	if e.Credentials == nil {
		e.Credentials = map[string]*universalCredential{}
	}
	return &e, nil
}

func putUniversal(ctx context.Context, s logical.Storage, e *universalEntry) error {
	stamped := *e
	stamped.StorageFormat = storageFormat
	entry, err := logical.StorageEntryJSON(universalStorageKey(e.Name), &stamped)
	if err != nil {
		return err
	}
	return s.Put(ctx, entry)
}

func listUniversalNames(ctx context.Context, s logical.Storage) ([]string, error) {
	return s.List(ctx, universalStoragePrefix)
}

// lockUniversal takes the write lock of one deployment: writes, checks,
// rotations and deletes are read-modify-writes of its one entry.
func (b *backend) lockUniversal(name string) func() {
	l := locksutil.LockForKey(b.integrationLocks, universalStorageKey(name))
	l.Lock()
	return l.Unlock
}

// clientExitWindow is the deployment's window, or the default.
func (e *universalEntry) clientExitWindow() time.Duration {
	if e.ClientExitWindow > 0 {
		return e.ClientExitWindow
	}
	return defaultClientExitWindow
}

// effectiveAPIURL and effectiveBrokerServerURL are the deployment's
// overrides, or the config's region.
func (e *universalEntry) effectiveAPIURL(cfg *snykConfig) string {
	if e.APIURL != "" {
		return e.APIURL
	}
	return cfg.effectiveAPIURL()
}

func (e *universalEntry) effectiveBrokerServerURL(cfg *snykConfig) string {
	if e.BrokerServerURL != "" {
		return e.BrokerServerURL
	}
	return cfg.effectiveBrokerServerURL()
}

// credentialNames returns the names of the held credentials, sorted.
func (e *universalEntry) credentialNames() []string {
	out := make([]string, 0, len(e.Credentials))
	for n := range e.Credentials {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// statusData is what a read of universal/<name> returns: every field but
// the secrets, with fingerprints of those, and the last check's findings.
func (e *universalEntry) statusData(cfg *snykConfig) map[string]interface{} {
	d := map[string]interface{}{
		"tenant_id":                 e.TenantID,
		"install_id":                e.InstallID,
		"install_org_id":            e.InstallOrgID,
		"deployment_id":             e.DeploymentID,
		"client_id":                 e.ClientID,
		"api_url":                   e.effectiveAPIURL(cfg),
		"broker_server_url":         e.effectiveBrokerServerURL(cfg),
		"broker_client_url":         e.BrokerClientURL,
		"client_secret_fingerprint": fingerprint(e.ClientSecret),
		"client_exit_window":        int64(e.clientExitWindow().Seconds()),
		"rotation_state":            e.RotationState,
		"last_vault_rotation":       timeOrNil(e.LastVaultRotation),
		"next_vault_rotation":       timeOrNil(e.NextVaultRotation),
		"last_rotation_error":       e.LastRotationError,
		"retire_previous_at":        timeOrNil(e.RetirePreviousAt),
		"credentials":               nonNil(e.credentialNames()),
		"checked_at":                timeOrNil(e.CheckedAt),
		"check_period":              int64(e.checkPeriod(cfg).Seconds()),
		"problems":                  nonNil(e.Problems),
		"missing_credentials":       nonNil(e.MissingCredentials),
		"unused_credentials":        nonNil(e.UnusedCredentials),
		"client_secret_verified_at": timeOrNil(e.SecretVerifiedAt),
	}
	if e.NextClientSecret != "" {
		d["next_client_secret_fingerprint"] = fingerprint(e.NextClientSecret)
	}
	conns := make([]map[string]interface{}, 0, len(e.Connections))
	for _, c := range e.Connections {
		conns = append(conns, map[string]interface{}{"id": c.ID, "name": c.Name, "type": c.Type, "integrated": c.Integrated, "uses": nonNil(c.Uses)})
	}
	d["connections"] = conns
	addPolicyData(d, e.policy(cfg))
	return d
}

// credentialStatus is what a read of one credential returns.
func (c *universalCredential) status() map[string]interface{} {
	return map[string]interface{}{
		"name":                 c.Name,
		"type":                 c.Type,
		"served_as":            c.Name,
		"scm_api_url":          c.SCMAPIURL,
		"azure_org":            c.AzureOrg,
		"bitbucket_username":   c.BitbucketUsername,
		"skip_scm_validation":  c.SkipSCMValidation,
		"scm_status":           c.SCMStatus,
		"scm_scopes":           nonNil(c.SCMScopes),
		"scm_token_expires_at": timeOrNil(c.SCMTokenExpiresAt),
		"scm_validated_at":     timeOrNil(c.SCMValidatedAt),
		"scm_checked_at":       timeOrNil(c.SCMCheckedAt),
		"scm_problems":         nonNil(c.SCMProblems),
		"updated_at":           timeOrNil(c.UpdatedAt),
	}
}

// isPEMFileName: a credential named like a file ending in .pem is mounted
// as a file by Snyk's Universal Broker Helm chart (a GitHub App's private
// key, which the connection names by path).
func isPEMFileName(name string) bool { return strings.HasSuffix(name, ".pem") }
