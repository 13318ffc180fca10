package backend

import (
	"context"
	"errors"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/vault/sdk/logical"
	"github.com/hashicorp/vault/sdk/queue"
	"golang.org/x/time/rate"
)

// The rotation engine. Vault Community Edition has no rotation manager for
// plugins, and Vault's periodic function ticks only about once a minute, so
// the engine owns its schedule, as the database and openldap engines do for
// static roles: a priority queue of "next action" times, a short ticker that
// pops only what is due, and per-integration locks shared with the API paths.
//
// An integration goes through two actions per rotation:
//
//	next_vault_rotation - provision_ahead   provision a token and store it
//	next_vault_rotation                     switch to it
//
// Everything the queue knows is derived from stored integrations, so it is
// rebuilt from storage whenever the mount is initialized (start-up, plugin
// restart, leadership change). Background work runs only where writes are
// safe (not on performance standbys or secondaries).

const (
	defaultTick               = time.Second
	defaultRotationBudget     = 600 // Snyk requests per minute, well under Snyk's 2,000
	defaultRotationWorkers    = 4
	rateLimitPause            = time.Minute // Snyk: "until requests stop for ... a minute"
	blockedGroupBackoff       = time.Hour
	firstFailureBackoff       = 10 * time.Second
	maxFailureBackoff         = 30 * time.Minute
	configMissingRetry        = time.Minute
	eventBrokerProvision      = "snyk/broker-provision"
	eventBrokerSwitch         = "snyk/broker-switch"
	eventBrokerRotateFail     = "snyk/broker-rotate-fail"
	errBudgetExhaustedMessage = "request budget exhausted"
)

var errBudgetExhausted = errors.New(errBudgetExhaustedMessage)

type rotationManager struct {
	b *backend

	mu    sync.Mutex
	queue *queue.PriorityQueue
	lanes map[string]*lane
	// heldBy maps an integration to the lane whose slot it reserved or
	// holds, so that it is released where it was taken.
	heldBy map[string]string
	// waitingOn maps an integration to the lane whose waiters it is among.
	waitingOn map[string]string
	// unsaved holds integrations whose Snyk result (a provisional token, a
	// switch) could not be stored; they are stored before anything else
	// happens to them (rotation_unsaved.go).
	unsaved *keptResults[integrationEntry]
	// unsavedUniversal is the same for Universal Broker deployments, by name
	// (universal_unsaved.go).
	unsavedUniversal *keptResults[universalEntry]
	// limiter is the mount's Snyk request budget; pausedUntil stops every
	// background call after a 429 (rotation_budget.go).
	limiter     *rate.Limiter
	scmLimiter  *rate.Limiter
	pausedUntil time.Time
	storage     logical.Storage
	// cancel cancels the context of upstream calls; stopping is closed
	// first, when the mount stops, so that no new item starts while a call
	// in flight may finish (stop).
	cancel   context.CancelFunc
	stopping chan struct{}
	done     chan struct{}
	// SCM checks run beside the tick (startSCMCheck): checking marks the
	// integrations whose check runs, checkSlots bounds how many run at
	// once, background counts them for stop.
	checking   map[string]bool
	checkSlots chan struct{}
	background sync.WaitGroup
	// wake nudges the loop to recompute its sleep after a queue change.
	wake chan struct{}
	// onSleep, when set (tests), sees every sleep the loop chooses.
	onSleep func(time.Duration)
	// loadPending: the queue could not be loaded from storage yet; the loop
	// retries at loadAt, backing off by loadRetry.
	loadPending bool
	loadAt      time.Time
	loadRetry   time.Duration
}

func newRotationManager(b *backend) *rotationManager {
	return &rotationManager{b: b, queue: queue.New(), lanes: map[string]*lane{}, heldBy: map[string]string{}, waitingOn: map[string]string{}, unsaved: newKeptResults((*integrationEntry).clone, putIntegration),
		unsavedUniversal: newKeptResults((*universalEntry).clone, putUniversal), wake: make(chan struct{}, 1), checking: map[string]bool{}, checkSlots: make(chan struct{}, defaultRotationWorkers)}
}

// queueKey names an integration in the queue and in lanes.
func queueKey(name, scmKind string) string { return name + "/" + scmKind }

func splitQueueKey(key string) (name, scmKind string) {
	i := strings.LastIndex(key, "/")
	return key[:i], key[i+1:]
}

func (m *rotationManager) start(s logical.Storage) {
	m.stop() // a second initialization replaces the ticker, never doubles it
	ctx, cancel := context.WithCancel(context.Background())
	stopping := make(chan struct{})
	m.mu.Lock()
	m.storage = s
	m.cancel = cancel
	m.stopping = stopping
	m.done = make(chan struct{})
	done := m.done
	m.mu.Unlock()
	tick := m.b.opts.Tick
	if tick <= 0 {
		tick = defaultTick
	}
	go func() {
		defer close(done)
		t := time.NewTimer(m.sleepFor(tick))
		defer t.Stop()
		for {
			select {
			case <-stopping:
				return
			case <-m.wake:
				// Something was queued: it may be due before the timer.
				if !t.Stop() {
					<-t.C
				}
				t.Reset(m.sleepFor(tick))
			case <-t.C:
				began := time.Now()
				m.tick(ctx)
				m.b.metrics.tick(time.Since(began))
				t.Reset(m.sleepFor(tick))
			}
		}
	}()
}

// sleepFor is the loop's next sleep; onSleep lets tests see it.
func (m *rotationManager) sleepFor(tick time.Duration) time.Duration {
	d := m.untilNextDue(tick)
	if m.onSleep != nil {
		m.onSleep(d)
	}
	return d
}

// nudge tells the loop that the queue changed. Never blocks: one pending
// nudge is enough.
func (m *rotationManager) nudge() {
	select {
	case m.wake <- struct{}{}:
	default:
	}
}

// untilNextDue is how long the loop may sleep: until the earliest queued
// action, but at most one tick. Waking on time matters at a switch: Broker
// clients re-read right after it, and a late switch hands them the old token
// for one more short lease.
func (m *rotationManager) untilNextDue(tick time.Duration) time.Duration {
	m.mu.Lock()
	defer m.mu.Unlock()
	now := m.b.now()
	if now.Before(m.pausedUntil) {
		if d := m.pausedUntil.Sub(now); d < tick {
			return d
		}
		return tick
	}
	item, err := m.queue.Pop()
	if err != nil {
		return tick
	}
	_ = m.queue.Push(item)
	d := time.UnixMilli(item.Priority).Sub(now)
	switch {
	case d < 10*time.Millisecond:
		return 10 * time.Millisecond
	case d > tick:
		return tick
	}
	return d
}

// stop ends the loop when the mount stops: a step-down, a seal, an unmount
// or a plugin reload. No new item starts, but a step already talking to Snyk
// may finish and store its result, for up to one request timeout and a
// margin: cancelled halfway, a provision whose answer is lost leaves Snyk
// holding a provisional token nobody can read or cancel, which blocks every
// rotation in its group. Vault keeps the node active while its backends
// clean up, so the result is stored where the next active node finds it.
// After the grace the call is cancelled; its WAL entry settles it later.
func (m *rotationManager) stop() {
	m.mu.Lock()
	// stopping stays set (closed): a tick still dispatching sees it.
	cancel, stopping, done := m.cancel, m.stopping, m.done
	m.cancel, m.done = nil, nil
	m.mu.Unlock()
	if cancel == nil {
		return
	}
	close(stopping)
	finished := make(chan struct{})
	go func() {
		<-done
		m.background.Wait()
		close(finished)
	}()
	grace := m.drainGrace()
	select {
	case <-finished:
	case <-time.After(grace):
		m.b.log().Warn("stopping: an upstream call is still in flight; cancelling it (its WAL entry settles its outcome later)", "waited", grace)
	}
	cancel()
	<-finished
}

// drainGrace is how long stop lets calls in flight finish: the configured
// request timeout (the longest one call may take) and a margin for storing
// its result.
func (m *rotationManager) drainGrace() time.Duration {
	timeout := defaultRequestTimeout
	m.b.clientMu.RLock()
	if cfg := m.b.cachedConfig; cfg != nil && cfg.RequestTimeout > 0 {
		timeout = cfg.RequestTimeout
	}
	m.b.clientMu.RUnlock()
	return timeout + 5*time.Second
}

// isClosed reports whether ch is closed; a nil channel never is.
func isClosed(ch <-chan struct{}) bool {
	if ch == nil {
		return false
	}
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

func (m *rotationManager) queueLen() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.queue.Len()
}

// schedule (re)queues an integration at its next action, or drops it.
func (m *rotationManager) schedule(e *integrationEntry, cfg *snykConfig) {
	key := queueKey(e.Name, e.SCM)
	at, ok := e.nextAction(e.policy(cfg))
	m.mu.Lock()
	defer m.mu.Unlock()
	_, _ = m.queue.PopByKey(key)
	if ok {
		_ = m.queue.Push(&queue.Item{Key: key, Priority: at.UnixMilli()})
	}
	// The SCM check has its own time, stable whatever the rotation does.
	check := scmCheckKey(key)
	_, _ = m.queue.PopByKey(check)
	_ = m.queue.Push(&queue.Item{Key: check, Priority: e.nextSCMCheck(cfg, m.b.now()).UnixMilli()})
	rotate := scmRotateKey(key)
	_, _ = m.queue.PopByKey(rotate)
	if at, ok := e.nextSCMRotation(); ok {
		_ = m.queue.Push(&queue.Item{Key: rotate, Priority: at.UnixMilli()})
	}
	m.nudge()
}

func (m *rotationManager) pushAt(key string, at time.Time) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.pushLocked(key, at)
	m.nudge()
}

// pushLocked (re)queues key at at. The caller holds m.mu.
func (m *rotationManager) pushLocked(key string, at time.Time) {
	_, _ = m.queue.PopByKey(key)
	_ = m.queue.Push(&queue.Item{Key: key, Priority: at.UnixMilli()})
}

// tick pops what is due (no more than the budget allows) and works through
// it with bounded concurrency. Its cost is proportional to the due work, not
// to the number of integrations.
func (m *rotationManager) tick(ctx context.Context) {
	m.mu.Lock()
	// Nil when the loop never started (tests drive tick): never stopping.
	s, stopping := m.storage, m.stopping
	m.mu.Unlock()
	if isClosed(stopping) {
		return
	}
	if s == nil || !m.retryLoad(ctx, s) {
		return
	}
	cfg, err := m.b.config(ctx, s)
	if err != nil || cfg == nil {
		return
	}
	m.checkLanes(ctx, s)
	now := m.b.now()

	m.mu.Lock()
	if now.Before(m.pausedUntil) {
		m.mu.Unlock()
		return
	}
	// Each popped item spends at most one token, plus one for a first group
	// look-up; popping more than that would only push them back.
	limit := int(m.tokensLocked(cfg, now)) + cfg.rotationWorkers()
	var due []string
	for len(due) < limit && m.queue.Len() > 0 {
		item, err := m.queue.Pop()
		if err != nil {
			break
		}
		if item.Priority > now.UnixMilli() {
			_ = m.queue.Push(item)
			break
		}
		due = append(due, item.Key)
	}
	m.mu.Unlock()
	due = m.startSCMChecks(ctx, s, stopping, due)
	if len(due) == 0 {
		return
	}

	work := make(chan string)
	var wg sync.WaitGroup
	for i := 0; i < cfg.rotationWorkers() && i < len(due); i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for key := range work {
				m.process(ctx, s, key)
			}
		}()
	}
	for i, key := range due {
		// A stop while waiting for a free worker starts nothing more: a
		// step begun during the drain grace could be cut off halfway.
		select {
		case work <- key:
			continue
		case <-stopping:
		}
		// Not started: back in the queue for whoever runs it next (a
		// restarted loop; on a new active node the queue is rebuilt from
		// storage anyway).
		for _, rest := range due[i:] {
			m.pushAt(rest, m.b.now())
		}
		break
	}
	close(work)
	wg.Wait()
}

// process takes one due integration one step further.
func (m *rotationManager) process(ctx context.Context, s logical.Storage, key string) {
	if integrationKey, ok := strings.CutPrefix(key, scmCheckPrefix); ok {
		m.processSCMCheck(ctx, s, integrationKey)
		return
	}
	if integrationKey, ok := strings.CutPrefix(key, scmRotatePrefix); ok {
		m.processSCMRotate(ctx, s, integrationKey)
		return
	}
	if key == rootRotationKey {
		m.processRootRotation(ctx, s)
		return
	}
	if name, ok := strings.CutPrefix(key, universalRotatePrefix); ok {
		m.processUniversal(ctx, s, name)
		return
	}
	b := m.b
	name, kind := splitQueueKey(key)
	unlock := b.lockIntegration(name, kind)
	defer unlock()

	// A Snyk result that could not be stored comes first: the stored copy is
	// stale until it is, and acting on it would repeat a step Snyk did.
	if err := m.flushUnsaved(ctx, s, key); err != nil {
		b.log().Error("rotation: could not store a kept Snyk result", "integration", key, "error", err)
		m.pushAt(key, b.now().Add(firstFailureBackoff))
		return
	}
	e, err := getIntegration(ctx, s, name, kind)
	if err != nil {
		b.log().Error("rotation: could not read integration", "integration", key, "error", err)
		m.pushAt(key, b.now().Add(firstFailureBackoff))
		return
	}
	if e == nil {
		return
	}
	cfg, err := b.config(ctx, s)
	if err != nil || cfg == nil {
		m.pushAt(key, b.now().Add(configMissingRetry))
		return
	}
	p := e.policy(cfg)
	now := b.now().UTC()
	at, ok := e.nextAction(p)
	if !ok {
		return
	}
	if now.Before(at) {
		m.pushAt(key, at)
		return
	}

	if e.ProvisionalToken == "" && p.RotationWindow > 0 && p.RotationSchedule != "" && !now.Add(p.ProvisionAhead).Before(e.NextVaultRotation.Add(p.RotationWindow)) {
		// A provision now could not switch inside the window (Vault was
		// down, or the group was busy): like a database static role, skip
		// to the next scheduled time.
		missed := e.NextVaultRotation
		if e.NextVaultRotation, err = p.nextRotation(now); err != nil {
			b.log().Error("rotation: bad schedule", "integration", key, "error", err)
			return
		}
		e.RetryAt, e.Failures = time.Time{}, 0
		if err := putIntegration(ctx, s, e); err != nil {
			m.pushAt(key, now.Add(firstFailureBackoff))
			return
		}
		b.log().Warn("rotation window missed; skipping to the next scheduled rotation", "integration", key, "missed", missed, "next", e.NextVaultRotation)
		m.schedule(e, cfg)
		return
	}

	client, err := b.snykClient(ctx, s)
	if err != nil || client == nil {
		m.pushAt(key, now.Add(configMissingRetry))
		return
	}

	if e.ProvisionalToken == "" {
		err = m.provisionStep(ctx, s, client, cfg, e)
	} else {
		if !m.takeToken(cfg, now) {
			m.pushAt(key, now.Add(m.tokenWait(cfg)))
			return
		}
		err = m.switchStep(ctx, s, client, cfg, e, key)
	}
	if errors.Is(err, errBudgetExhausted) {
		m.pushAt(key, now.Add(m.tokenWait(cfg)))
		return
	}
	var notStored *errNotStored
	switch {
	case errors.Is(err, errWaitingForLane):
		return
	case errors.As(err, &notStored):
		// Kept in memory: the next pass stores it, then resumes from it.
		m.pushAt(key, now.Add(firstFailureBackoff))
		return
	case err != nil:
		m.recordFailure(ctx, s, cfg, e, err)
		return
	}
	m.schedule(e, cfg)
}
