package backend

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"github.com/hashicorp/vault/sdk/logical"

	"github.com/snyk-vault/vault-plugin-secrets-snyk/backend/scm"
)

const integrationStoragePrefix = "integrations/"

// errCorruptEntry: a stored entry that does not decode; retrying cannot help.
var errCorruptEntry = errors.New("stored entry does not decode")

// Rotation states reported on the integration (rotation_state).
const (
	// stateActive: Vault holds the current token and no provisional one.
	stateActive = "active"
	// stateProvisioned: a provisional token is held and waits for its
	// scheduled switch (also the state of an adopted integration).
	stateProvisioned = "provisioned"
	// stateSwitchPending: the switch is due or was attempted and not
	// confirmed; the still-valid old token is served meanwhile.
	stateSwitchPending = "switch_pending"
)

// How Vault came to hold the integration's token.
const (
	sourceImported = "imported" // broker_token written by the operator
	sourceEnabled  = "enabled"  // returned by Snyk when Vault enabled Broker
	sourceAdopted  = "adopted"  // provisional token of an already-brokered integration
	sourceRotated  = "rotated"  // switched in by a rotation
)

// integrationEntry is the stored form of integrations/<name>/<scm>. It holds
// the Broker and SCM credentials and is therefore seal-wrapped.
type integrationEntry struct {
	// StorageFormat is the layout version the entry was written in.
	StorageFormat int    `json:"storage_format,omitempty"`
	Name          string `json:"name"`
	SCM           string `json:"scm"`
	OrgID         string `json:"org_id"`
	IntegrationID string `json:"integration_id"`

	SCMToken        string `json:"scm_token,omitempty"`
	SCMUsername     string `json:"scm_username,omitempty"`
	SCMPassword     string `json:"scm_password,omitempty"`
	SCMURL          string `json:"scm_url,omitempty"`
	SCMAPIURL       string `json:"scm_api_url,omitempty"`
	AzureOrg        string `json:"azure_org,omitempty"`
	BrokerClientURL string `json:"broker_client_url,omitempty"`
	// CodeAgentRole names a role of snyk/roles: broker reads then add the
	// Snyk Code Agent's SNYK_TOKEN, a service account leased with them.
	CodeAgentRole string `json:"code_agent_role,omitempty"`
	// TokenOwner, on a sharer, is the integration ("name/scm") whose Broker
	// token it shares (a clone); empty on owners and lone integrations.
	TokenOwner string `json:"token_owner,omitempty"`

	SkipSCMValidation bool `json:"skip_scm_validation"`
	// The SCM credential's health, from its last check (at create, then
	// every scm_check_period).
	scmHealth
	SCMCheckPeriod time.Duration `json:"scm_check_period,omitempty"`

	// GitLab PAT self-rotation: opt-in, scm_rotate_before_expiry ahead of
	// the token's expiry. SCMRotationError stops further attempts until a
	// new scm_token is written (a lost rotation answer may have revoked the
	// stored token; retrying with it would revoke its whole family).
	SCMTokenAutoRotate    bool          `json:"scm_token_auto_rotate,omitempty"`
	SCMRotateBeforeExpiry time.Duration `json:"scm_rotate_before_expiry,omitempty"`
	SCMRotatedAt          time.Time     `json:"scm_rotated_at,omitempty"`
	SCMRotationError      string        `json:"scm_rotation_error,omitempty"`

	// CurrentToken is the token Snyk currently routes by, as far as Vault
	// knows; empty for an adopted integration until its first switch.
	CurrentToken string `json:"current_token,omitempty"`
	// ProvisionalToken is held between provision-token and switch-token.
	ProvisionalToken string    `json:"provisional_token,omitempty"`
	ProvisionedAt    time.Time `json:"provisioned_at,omitempty"`
	// SwitchOutcomeUnknown: a switch-token call for the held provisional
	// token was sent and its answer lost (or the operator says it was
	// switched outside Vault). Only then may Snyk's "nothing to switch" be
	// read as "already switched".
	SwitchOutcomeUnknown bool   `json:"switch_outcome_unknown,omitempty"`
	TokenSource          string `json:"token_source"`

	// Per-integration overrides; zero values inherit the config defaults.
	rotationOverrides

	// The Snyk group the org belongs to, looked up once: rotations are
	// serialized per group because Snyk allows one provisional token per
	// group. GroupResolved with an empty GroupID means the org has no group;
	// GroupLookupFailed puts the integration in the mount-wide lane.
	GroupID           string `json:"group_id,omitempty"`
	GroupResolved     bool   `json:"group_resolved,omitempty"`
	GroupLookupFailed bool   `json:"group_lookup_failed,omitempty"`

	// RetryAt is when a failed rotation step is tried again; Failures counts
	// consecutive failures for the back-off.
	RetryAt  time.Time `json:"retry_at,omitempty"`
	Failures int       `json:"failures,omitempty"`

	RotationState     string    `json:"rotation_state"`
	LastVaultRotation time.Time `json:"last_vault_rotation,omitempty"`
	NextVaultRotation time.Time `json:"next_vault_rotation,omitempty"`
	LastRotationError string    `json:"last_rotation_error,omitempty"`
	CreatedAt         time.Time `json:"created_at"`
}

func integrationStorageKey(name, scmKind string) string {
	return integrationStoragePrefix + name + "/" + scmKind
}

func getIntegration(ctx context.Context, s logical.Storage, name, scmKind string) (*integrationEntry, error) {
	entry, err := s.Get(ctx, integrationStorageKey(name, scmKind))
	if err != nil {
		return nil, fmt.Errorf("reading integration %s/%s: %w", name, scmKind, err)
	}
	if entry == nil {
		return nil, nil
	}
	var e integrationEntry
	if err := entry.DecodeJSON(&e); err != nil {
		return nil, fmt.Errorf("%w: integration %s/%s: %w", errCorruptEntry, name, scmKind, err)
	}
	if err := checkStorageFormat("integration "+name+"/"+scmKind, e.StorageFormat); err != nil {
		return nil, err
	}
	return &e, nil
}

func putIntegration(ctx context.Context, s logical.Storage, e *integrationEntry) error {
	// A copy is stamped: e may be an in-memory entry that readers share.
	stamped := *e
	stamped.StorageFormat = storageFormat
	entry, err := logical.StorageEntryJSON(integrationStorageKey(e.Name, e.SCM), &stamped)
	if err != nil {
		return err
	}
	return s.Put(ctx, entry)
}

// servedToken is the token every Broker client must run with now. An adopted
// integration has only the provisional token: Vault holds no other.
func (e *integrationEntry) servedToken() string {
	if e.CurrentToken != "" {
		return e.CurrentToken
	}
	return e.ProvisionalToken
}

func (e *integrationEntry) apiURL() string {
	if e.SCMAPIURL != "" {
		return e.SCMAPIURL
	}
	return scm.DefaultAPIURL(e.SCM, e.SCMURL)
}

// fingerprint identifies a token without revealing it.
func fingerprint(secret string) string {
	if secret == "" {
		return ""
	}
	sum := sha256.Sum256([]byte(secret))
	return "sha256:" + hex.EncodeToString(sum[:6])
}

// statusData is the non-secret view of an integration shared by the
// integration read and the rotate response.
func (e *integrationEntry) statusData(cfg *snykConfig) map[string]interface{} {
	p := e.policy(cfg)
	d := map[string]interface{}{
		"name":                       e.Name,
		"scm":                        e.SCM,
		"org_id":                     e.OrgID,
		"integration_id":             e.IntegrationID,
		"scm_url":                    e.SCMURL,
		"scm_api_url":                e.apiURL(),
		"skip_scm_validation":        e.SkipSCMValidation,
		"scm_scopes":                 nonNil(e.SCMScopes),
		"scm_token_expires_at":       timeOrNil(e.SCMTokenExpiresAt),
		"scm_validated_at":           timeOrNil(e.SCMValidatedAt),
		"broker_token_fingerprint":   fingerprint(e.servedToken()),
		"token_source":               e.TokenSource,
		"rotation_state":             e.RotationState,
		"last_vault_rotation":        timeOrNil(e.LastVaultRotation),
		"next_vault_rotation":        timeOrNil(e.NextVaultRotation),
		"last_rotation_error":        e.LastRotationError,
		"ttl":                        int64(p.TTL.Seconds()),
		"provision_ahead":            int64(p.ProvisionAhead.Seconds()),
		"disable_automated_rotation": e.DisableAutomatedRotation,
	}
	addPolicyData(d, p)
	if e.AzureOrg != "" {
		d["azure_org"] = e.AzureOrg
	}
	if e.BrokerClientURL != "" {
		d["broker_client_url"] = e.BrokerClientURL
	}
	if e.CodeAgentRole != "" {
		d["code_agent_role"] = e.CodeAgentRole
	}
	if e.SCMUsername != "" {
		d["scm_username"] = e.SCMUsername
	}
	if e.GroupResolved && e.GroupID != "" {
		d["snyk_group_id"] = e.GroupID
	}
	if !e.RetryAt.IsZero() {
		d["next_attempt_at"] = timeOrNil(e.RetryAt)
	}
	for k, v := range e.scmStatusData(cfg) {
		d[k] = v
	}
	if e.ProvisionalToken != "" {
		d["next_broker_token_fingerprint"] = fingerprint(e.ProvisionalToken)
		d["next_switch_at"] = timeOrNil(e.NextVaultRotation)
		d["switch_outcome_unknown"] = e.SwitchOutcomeUnknown
	}
	return d
}

// addPolicyData reports the schedule the way database static roles do: a
// period, or a schedule with its window, never both.
func addPolicyData(d map[string]interface{}, p policy) {
	if p.RotationSchedule != "" {
		d["rotation_schedule"] = p.RotationSchedule
		d["rotation_window"] = int64(p.RotationWindow.Seconds())
	} else {
		d["rotation_period"] = int64(p.RotationPeriod.Seconds())
	}
}

func timeOrNil(t time.Time) interface{} {
	if t.IsZero() {
		return nil
	}
	return t.UTC().Format(time.RFC3339)
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}
