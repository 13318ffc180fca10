package backend

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"time"

	"github.com/hashicorp/vault/sdk/logical"

	"github.com/snyk-vault/vault-plugin-secrets-snyk/backend/snyk"
)

const configStoragePath = "config"

// Defaults of the mount-wide settings of snyk/config.
const (
	defaultTTL            = time.Hour
	defaultRotationPeriod = 2160 * time.Hour // Snyk's 90-day advice
	defaultProvisionAhead = time.Hour
	defaultRequestTimeout = 30 * time.Second
	// SCM tokens are checked again daily and reported two weeks before
	// they expire.
	defaultSCMCheckPeriod   = 24 * time.Hour
	defaultSCMExpiryWarning = 336 * time.Hour
)

// snykConfig is the stored form of `config`. It holds the Snyk credential and
// is therefore seal-wrapped.
type snykConfig struct {
	// StorageFormat is the layout version the entry was written in.
	StorageFormat int `json:"storage_format,omitempty"`

	APIToken     string `json:"api_token,omitempty"`
	ClientID     string `json:"client_id,omitempty"`
	ClientSecret string `json:"client_secret,omitempty"`

	Region          string `json:"region"`
	APIURL          string `json:"api_url,omitempty"`
	BrokerServerURL string `json:"broker_server_url,omitempty"`
	CACert          string `json:"ca_cert,omitempty"`

	TTL            time.Duration `json:"ttl"`
	RotationPeriod time.Duration `json:"rotation_period"`
	ProvisionAhead time.Duration `json:"provision_ahead"`
	RequestTimeout time.Duration `json:"request_timeout"`
	SkipVerify     bool          `json:"skip_verify"`

	// RotationRequestsPerMinute bounds the rotation engine's Snyk requests
	// for the whole mount; RotationConcurrency bounds parallel rotations.
	RotationRequestsPerMinute int `json:"rotation_requests_per_minute,omitempty"`
	RotationConcurrency       int `json:"rotation_concurrency,omitempty"`

	// SCMCheckPeriod is how often every integration's SCM credential is
	// checked again; SCMExpiryWarning how long before its expiry a token is
	// reported expiring. Zero means the default.
	SCMCheckPeriod   time.Duration `json:"scm_check_period,omitempty"`
	SCMExpiryWarning time.Duration `json:"scm_expiry_warning,omitempty"`

	// The OAuth service account behind client_id, for rotate-root: its ID
	// and the org or group that owns it.
	ServiceAccountID      string `json:"service_account_id,omitempty"`
	ServiceAccountOrgID   string `json:"service_account_org_id,omitempty"`
	ServiceAccountGroupID string `json:"service_account_group_id,omitempty"`
	// RootRotationPeriod, when set, has the rotation loop rotate the client
	// secret that often.
	RootRotationPeriod time.Duration `json:"root_rotation_period,omitempty"`
	RootRotatedAt      time.Time     `json:"root_rotated_at,omitempty"`
	// RootRotationSince is when root_rotation_period was first set: the
	// first automatic rotation counts from it, not from the last restart.
	RootRotationSince time.Time `json:"root_rotation_since,omitempty"`
	RootRotationError string    `json:"root_rotation_error,omitempty"`
	// PendingClientSecret is a secret Snyk created for a rotation that has
	// not been switched to yet (stored first: Snyk never shows it again);
	// PreviousClientSecret one switched away from and not yet deleted at
	// Snyk. Both are credentials.
	PendingClientSecret  string `json:"pending_client_secret,omitempty"`
	PreviousClientSecret string `json:"previous_client_secret,omitempty"`
}

// serviceAccountScope is the REST path segment and ID of the service
// account's owner, "" when none is configured.
func (c *snykConfig) serviceAccountScope() (scope, owner string) {
	switch {
	case c.ServiceAccountOrgID != "":
		return "orgs", c.ServiceAccountOrgID
	case c.ServiceAccountGroupID != "":
		return "groups", c.ServiceAccountGroupID
	}
	return "", ""
}

func (c *snykConfig) scmCheckPeriod() time.Duration {
	if c.SCMCheckPeriod > 0 {
		return c.SCMCheckPeriod
	}
	return defaultSCMCheckPeriod
}

func (c *snykConfig) scmExpiryWarning() time.Duration {
	if c.SCMExpiryWarning > 0 {
		return c.SCMExpiryWarning
	}
	return defaultSCMExpiryWarning
}

func (c *snykConfig) rotationBudget() int {
	if c.RotationRequestsPerMinute > 0 {
		return c.RotationRequestsPerMinute
	}
	return defaultRotationBudget
}

func (c *snykConfig) rotationWorkers() int {
	if c.RotationConcurrency > 0 {
		return c.RotationConcurrency
	}
	return defaultRotationWorkers
}

func defaultConfig() *snykConfig {
	return &snykConfig{
		Region:         snyk.DefaultRegion,
		TTL:            defaultTTL,
		RotationPeriod: defaultRotationPeriod,
		ProvisionAhead: defaultProvisionAhead,
		RequestTimeout: defaultRequestTimeout,
	}
}

const (
	authMethodAPIToken = "api_token"
	authMethodOAuth    = "oauth_client_credentials"
)

func (c *snykConfig) authMethod() string {
	if c.APIToken != "" {
		return authMethodAPIToken
	}
	return authMethodOAuth
}

// fingerprint identifies the credential without revealing it, so operators can
// tell which credential is configured (and compare across clusters).
func (c *snykConfig) fingerprint() string {
	material := c.APIToken
	if material == "" {
		material = c.ClientID + ":" + c.ClientSecret
	}
	sum := sha256.Sum256([]byte(material))
	return "sha256:" + hex.EncodeToString(sum[:6])
}

func (c *snykConfig) effectiveAPIURL() string {
	if c.APIURL != "" {
		return c.APIURL
	}
	return snyk.Regions[c.Region].APIURL
}

func (c *snykConfig) effectiveBrokerServerURL() string {
	if c.BrokerServerURL != "" {
		return c.BrokerServerURL
	}
	return snyk.Regions[c.Region].BrokerServerURL
}

func getConfig(ctx context.Context, s logical.Storage) (*snykConfig, error) {
	entry, err := s.Get(ctx, configStoragePath)
	if err != nil {
		return nil, fmt.Errorf("reading config: %w", err)
	}
	if entry == nil {
		return nil, nil
	}
	cfg := defaultConfig()
	if err := entry.DecodeJSON(cfg); err != nil {
		return nil, fmt.Errorf("decoding config: %w", err)
	}
	if err := checkStorageFormat("the config", cfg.StorageFormat); err != nil {
		return nil, err
	}
	return cfg, nil
}

func putConfig(ctx context.Context, s logical.Storage, cfg *snykConfig) error {
	// A copy is stamped: cfg may be the cached config that readers share.
	stamped := *cfg
	stamped.StorageFormat = storageFormat
	entry, err := logical.StorageEntryJSON(configStoragePath, &stamped)
	if err != nil {
		return err
	}
	return s.Put(ctx, entry)
}

// configOrDefaults lets reads of stored integrations work even after the
// config was deleted (they then report the built-in defaults).
func (b *backend) configOrDefaults(ctx context.Context, s logical.Storage) (*snykConfig, error) {
	cfg, err := b.config(ctx, s)
	if err != nil {
		return nil, err
	}
	if cfg == nil {
		cfg = defaultConfig()
	}
	return cfg, nil
}
