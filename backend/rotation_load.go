package backend

import (
	"context"
	"time"

	"github.com/hashicorp/vault/sdk/logical"
	"github.com/hashicorp/vault/sdk/queue"
)

// initialize is the backend's InitializeFunc.
func (b *backend) initialize(ctx context.Context, req *logical.InitializationRequest) error {
	if !b.WriteSafeReplicationState() {
		b.log().Info("not starting the rotation engine: this node cannot write (standby or secondary)")
		return nil
	}
	m := b.rotation
	s := b.withCache(req.Storage)
	// Vault logs a failed initialization once and never retries it, which
	// would leave the mount without rotations until the next reload. So a
	// storage error here only defers the load to the loop, with back-off.
	if err := m.load(ctx, s, 0); err != nil {
		b.log().Error("rotation engine: loading from storage failed; the loop starts anyway and retries the load", "error", err)
		m.deferLoad(s)
	}
	if !b.opts.NoTicker {
		m.start(s)
	}
	return nil
}

const (
	firstLoadRetry = time.Second
	maxLoadRetry   = time.Minute
)

// deferLoad marks the queue as not loaded: the loop retries load first.
func (m *rotationManager) deferLoad(s logical.Storage) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.storage = s
	m.loadPending = true
	m.loadRetry = firstLoadRetry
	m.loadAt = m.b.now().Add(m.loadRetry)
}

// retryLoad runs a deferred load when it is due; it reports whether the
// queue is loaded.
func (m *rotationManager) retryLoad(ctx context.Context, s logical.Storage) bool {
	m.mu.Lock()
	pending, at := m.loadPending, m.loadAt
	m.mu.Unlock()
	if !pending {
		return true
	}
	if m.b.now().Before(at) {
		return false
	}
	if err := m.load(ctx, s, walRollbackMinAge); err != nil {
		m.mu.Lock()
		m.loadRetry *= 2
		if m.loadRetry > maxLoadRetry {
			m.loadRetry = maxLoadRetry
		}
		m.loadAt = m.b.now().Add(m.loadRetry)
		m.mu.Unlock()
		m.b.log().Error("rotation engine: loading from storage failed again", "error", err, "retry_in", m.loadRetry)
		return false
	}
	m.mu.Lock()
	m.loadPending = false
	m.mu.Unlock()
	return true
}

// clean is the backend's Clean: it stops the ticker on unmount or shutdown.
func (b *backend) clean(context.Context) {
	b.rotation.stop()
	b.integrations.purge()
	b.index.invalidate()
}

// load reconciles interrupted calls and rebuilds the queue and the lanes.
func (m *rotationManager) load(ctx context.Context, s logical.Storage, walAge time.Duration) error {
	if err := m.b.reconcileWALs(ctx, s, walAge); err != nil {
		return err
	}
	cfg, err := m.b.config(ctx, s)
	if err != nil {
		return err
	}
	// The queue is reset before the scan: a write made while the scan runs
	// queues its integration in the new queue, and the scan's copy, which
	// may be older, does not replace it.
	m.mu.Lock()
	m.storage = s
	m.queue = queue.New()
	m.lanes = map[string]*lane{}
	m.waitingOn = map[string]string{}
	m.heldBy = map[string]string{}
	// unsaved survives: a result kept in memory is still the newest copy.
	m.mu.Unlock()
	entries, err := getIntegrations(ctx, s, func(key string, err error) {
		// Retrying cannot help; every other integration still rotates.
		m.b.log().Error("could not load integration for rotation", "integration", key, "error", err)
	})
	if err != nil {
		return err
	}
	if cfg == nil {
		// Schedules are still known; processing waits for a credential.
		cfg = defaultConfig()
	}
	for _, e := range entries {
		if e == nil {
			continue
		}
		key := queueKey(e.Name, e.SCM)
		if e.ProvisionalToken != "" {
			// Held even when a write queued it meanwhile: a slot held by an
			// integration that switched since is freed by checkLanes, a slot
			// missed would let its group provision twice.
			m.hold(laneKey(e), key)
		}
		if !m.queued(key) {
			m.schedule(e, cfg)
		}
	}
	deployments, err := m.loadUniversal(ctx, s, cfg)
	if err != nil {
		return err
	}
	if stored, err := getConfig(ctx, s); err == nil {
		m.scheduleRootRotation(stored)
	}
	m.b.log().Info("rotation engine loaded", "integrations", len(entries), "universal_deployments", deployments, "queued", m.queueLen())
	return nil
}

// queued reports whether key's rotation is in the queue.
func (m *rotationManager) queued(key string) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	item, _ := m.queue.PopByKey(key)
	if item == nil {
		return false
	}
	_ = m.queue.Push(item)
	return true
}
