package backend

import (
	"context"
	"strings"
	"sync"
	"time"

	hclog "github.com/hashicorp/go-hclog"
	"github.com/hashicorp/vault/sdk/framework"
	"github.com/hashicorp/vault/sdk/helper/locksutil"
	"github.com/hashicorp/vault/sdk/logical"

	"github.com/snyk-vault/vault-plugin-secrets-snyk/backend/httpx"
	"github.com/snyk-vault/vault-plugin-secrets-snyk/backend/snyk"
)

// Version is reported to Vault as the plugin's RunningVersion. The plugin's
// main package sets it from a value stamped in with -ldflags.
var Version = "v0.0.0-dev"

const backendHelp = `
The Snyk secrets engine manages Snyk Broker tokens.

It holds a Snyk credential (config), enables Broker on an organization's SCM
integration and keeps its Broker token (integrations/<org>/<scm>), validates
the SCM credential the Broker client needs, and serves both as one leased
bundle with a ready-to-render environment map (broker/<org>/<scm>).
`

// operationPrefix drives the OpenAPI operation IDs (e.g. snyk-read-broker-token).
const operationPrefix = "snyk"

// Factory is the entry point Vault calls to create a mount of this engine.
func Factory(ctx context.Context, conf *logical.BackendConfig) (logical.Backend, error) {
	b := newBackend(Options{})
	if err := b.Setup(ctx, conf); err != nil {
		return nil, err
	}
	return b, nil
}

// Options are the test seams of the engine; the zero value is production.
type Options struct {
	// Now is the engine's clock.
	Now func() time.Time
	// Retry overrides the retry policy of upstream calls.
	Retry *httpx.RetryPolicy
	// Tick is the rotation engine's tick (1s by default).
	Tick time.Duration
	// NoTicker leaves the rotation queue to be driven by tests.
	NoTicker bool
}

type backend struct {
	*framework.Backend

	opts Options
	now  func() time.Time

	// clientMu guards the cached Snyk client, which is built from the stored
	// config on first use and dropped when the config changes (locally or, on
	// a replica, through Invalidate).
	clientMu sync.RWMutex
	client   *snyk.Client
	// cachedConfig spares every broker read and every rotation tick a
	// storage round trip (a gRPC call back to Vault); dropped with client.
	cachedConfig *snykConfig
	// configGen counts resets, so a read that raced a config write does not
	// cache what it read before the write.
	configGen uint64

	// integrationLocks serialize every read-modify-write of one integration:
	// writes, rotations and deletes. Reads of the broker secret do not take
	// them: storage writes are atomic, so a read sees either the old or the
	// new entry, never a mix.
	integrationLocks []*locksutil.LockEntry

	rotation *rotationManager
	// integrations caches decoded integration entries for reads
	// (integration_cache.go).
	integrations *integrationCache
	// index answers mount-wide questions without reading every entry
	// (integration_index.go).
	index *integrationIndex
	// metrics counts what the engine did since this process started.
	metrics *engineMetrics

	// configWriteMu serializes config writes: each is a read-modify-write of
	// a partial update.
	configWriteMu sync.Mutex

	// creates holds the Snyk integrations being created right now
	// (integration_create_claims.go).
	creates createClaims
}

func newBackend(opts Options) *backend {
	b := &backend{
		opts:             opts,
		now:              opts.Now,
		integrationLocks: locksutil.CreateLocks(),
	}
	if b.now == nil {
		b.now = time.Now
	}
	b.rotation = newRotationManager(b)
	b.integrations = newIntegrationCache(integrationCacheSize)
	b.index = newIntegrationIndex()
	b.metrics = newEngineMetrics()
	b.Backend = &framework.Backend{
		Help:        strings.TrimSpace(backendHelp),
		BackendType: logical.TypeLogical,
		PathsSpecial: &logical.Paths{
			// Seal-wrap everything that holds a credential: the Snyk
			// credential, every integration (Broker and SCM tokens) and every
			// Universal Broker deployment (client secret, credential values).
			SealWrapStorage: []string{
				configStoragePath,
				integrationStoragePrefix,
				universalStoragePrefix,
			},
			// WALs describe in-flight upstream calls of this cluster only.
			LocalStorage: []string{
				framework.WALPrefix,
			},
		},
		Paths: framework.PathAppend(
			pathConfig(b),
			pathIntegrations(b),
			pathBroker(b),
			pathSCMValidate(b),
			pathStatus(b),
			pathRoles(b),
			pathCreds(b),
			pathUniversal(b),
			pathUniversalCredentials(b),
			pathUniversalEnv(b),
			pathUniversalRotate(b),
		),
		Secrets: []*framework.Secret{
			secretBrokerToken(b),
			secretSnykToken(b),
			secretUniversalEnv(b),
		},
		InitializeFunc:    b.initialize,
		Clean:             b.clean,
		Invalidate:        b.invalidate,
		WALRollback:       b.walRollback,
		WALRollbackMinAge: walRollbackMinAge,
		RunningVersion:    Version,
	}
	return b
}

func (b *backend) invalidate(_ context.Context, key string) {
	switch {
	case key == configStoragePath:
		b.resetClient()
	case strings.HasPrefix(key, integrationStoragePrefix):
		b.integrations.drop(key)
		b.index.invalidate()
	}
}

// resetClient drops the cached client and config after the stored config
// changed (here, or on another node: Invalidate).
func (b *backend) resetClient() {
	b.clientMu.Lock()
	defer b.clientMu.Unlock()
	b.client = nil
	b.cachedConfig = nil
	b.configGen++
}

// config returns a copy of the stored config (nil when unset), cached.
func (b *backend) config(ctx context.Context, s logical.Storage) (*snykConfig, error) {
	b.clientMu.RLock()
	cached, gen := b.cachedConfig, b.configGen
	b.clientMu.RUnlock()
	if cached != nil {
		cp := *cached
		return &cp, nil
	}
	cfg, err := getConfig(ctx, s)
	if err != nil || cfg == nil {
		return cfg, err
	}
	b.clientMu.Lock()
	if b.configGen == gen {
		stored := *cfg
		b.cachedConfig = &stored
	}
	b.clientMu.Unlock()
	return cfg, nil
}

// snykClient returns the cached client for the stored config, building it on
// first use. It returns (nil, nil) when the engine is not configured.
func (b *backend) snykClient(ctx context.Context, s logical.Storage) (*snyk.Client, error) {
	b.clientMu.RLock()
	c := b.client
	b.clientMu.RUnlock()
	if c != nil {
		return c, nil
	}

	b.clientMu.Lock()
	defer b.clientMu.Unlock()
	if b.client != nil {
		return b.client, nil
	}
	cfg, err := getConfig(ctx, s)
	if err != nil || cfg == nil {
		return nil, err
	}
	c, err = b.newSnykClient(cfg)
	if err != nil {
		return nil, err
	}
	b.client = c
	return c, nil
}

func (b *backend) newSnykClient(cfg *snykConfig) (*snyk.Client, error) {
	return snyk.NewClient(snyk.Config{
		APIURL: cfg.effectiveAPIURL(),
		Credential: snyk.Credential{
			APIToken:     cfg.APIToken,
			ClientID:     cfg.ClientID,
			ClientSecret: cfg.ClientSecret,
		},
		CACert:         cfg.CACert,
		RequestTimeout: cfg.RequestTimeout,
		Retry:          b.retryPolicy("snyk"),
		Logger:         b.log().Named("snyk"),
		Now:            b.now,
	})
}

func (b *backend) retryPolicy(upstream string) httpx.RetryPolicy {
	p := httpx.DefaultRetryPolicy()
	if b.opts.Retry != nil {
		p = *b.opts.Retry
	}
	if p.Logger == nil {
		p.Logger = b.log().Named("http")
	}
	p.Observe = func(status int) { b.metrics.upstreamAnswer(upstream, status) }
	return p
}

// forwarded is an operation with an upstream side effect or a storage write:
// performance standbys and secondaries hand it to the primary's active node,
// so that Snyk is called, and the result stored, exactly once.
func forwarded(callback framework.OperationFunc, summary string, attrs *framework.DisplayAttributes) *framework.PathOperation {
	return &framework.PathOperation{
		Callback:                    callback,
		Summary:                     summary,
		DisplayAttrs:                attrs,
		ForwardPerformanceStandby:   true,
		ForwardPerformanceSecondary: true,
	}
}

// lockIntegration takes the write lock of one integration.
func (b *backend) lockIntegration(name, scmKind string) func() {
	l := locksutil.LockForKey(b.integrationLocks, integrationStorageKey(name, scmKind))
	l.Lock()
	return l.Unlock
}

// lockIntegrations takes the locks of several integrations ("name/scm")
// at once, in the one global order and each stripe once, so that two
// callers locking overlapping sets never deadlock (nor one caller whose keys
// share a stripe).
func (b *backend) lockIntegrations(keys ...string) func() {
	storageKeys := make([]string, 0, len(keys))
	for _, k := range keys {
		name, kind := splitQueueKey(k)
		storageKeys = append(storageKeys, integrationStorageKey(name, kind))
	}
	locks := locksutil.LocksForKeys(b.integrationLocks, storageKeys)
	for _, l := range locks {
		l.Lock()
	}
	return func() {
		for i := len(locks) - 1; i >= 0; i-- {
			locks[i].Unlock()
		}
	}
}

// log returns the engine's logger, falling back to a null logger before
// Setup ran (unit tests construct the backend directly).
func (b *backend) log() hclog.Logger {
	if l := b.Logger(); l != nil {
		return l
	}
	return hclog.NewNullLogger()
}
