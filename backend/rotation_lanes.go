package backend

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/hashicorp/vault/sdk/logical"
	"github.com/hashicorp/vault/sdk/queue"
	"github.com/snyk-vault/vault-plugin-secrets-snyk/backend/snyk"
)

// Lanes serialize rotations that share one Snyk provisional-token slot. Snyk
// allows one provisional token per group and has no API to cancel it, so a
// second provision in the group while one is held is refused; Vault keeps
// that from happening instead of discovering it. A lane is a Snyk group, an
// org outside any group, or the whole mount for an integration whose group
// could not be looked up (it may share a group with anyone).
//
// Only the rotation manager touches lanes. A reservation is remembered by
// the integration that made it and released by that integration, whatever
// its group look-up says later: recomputing the lane at release time could
// miss the lane that was reserved and wedge every rotation behind it.

const laneMount = "mount"

// errWaitingForLane: the integration joined its lane's waiters and is queued
// again when the lane frees, not before.
var errWaitingForLane = errors.New("waiting for the Snyk group's provisional slot")

type lane struct {
	name string
	// busy is held for the duration of one provision or switch call.
	busy sync.Mutex
	// holder is the integration that holds the lane's provisional token (or
	// may: a provision whose answer was lost), from provision until its
	// switch completes.
	holder    string
	heldSince time.Time
	// waiters are integrations due to provision while the lane was held;
	// they are queued again when it frees, so waiting costs no ticks.
	waiters []laneWaiter
	// reportedAt is when the waiters were last told the lane is overdue.
	reportedAt time.Time
}

type laneWaiter struct {
	key   string
	since time.Time
}

// laneKey is the lane an integration's group look-up puts it in.
func laneKey(e *integrationEntry) string {
	switch {
	case e.GroupLookupFailed || !e.GroupResolved:
		return laneMount
	case e.GroupID != "":
		return "group:" + e.GroupID
	default:
		return "org:" + e.OrgID
	}
}

func (m *rotationManager) laneLocked(name string) *lane {
	l, ok := m.lanes[name]
	if !ok {
		l = &lane{name: name}
		m.lanes[name] = l
	}
	return l
}

// lane returns the named lane, creating it.
func (m *rotationManager) lane(name string) *lane {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.laneLocked(name)
}

// blockerLocked is the lane that keeps key from laneName's slot, if any: the
// lane's own holder, or, because an integration whose group is unknown may
// share a group with anyone, the mount lane against every group lane and
// every group lane against the mount lane.
func (m *rotationManager) blockerLocked(laneName, key string) *lane {
	blocks := func(l *lane) bool { return l.holder != "" && l.holder != key }
	own := m.laneLocked(laneName)
	switch {
	case blocks(own):
		return own
	case laneName == laneMount:
		for _, l := range m.lanes {
			if blocks(l) {
				return l
			}
		}
	default:
		if mount, ok := m.lanes[laneMount]; ok && blocks(mount) {
			return mount
		}
	}
	return nil
}

// reserve takes laneName's slot for key before the Snyk call, so that two
// lanes never provision in one group at once. It returns the integration
// that holds the slot instead, "" when key now holds it. A reservation key
// held in another lane (made before its group was known) moves here.
func (m *rotationManager) reserve(laneName, key string) (holder string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if b := m.blockerLocked(laneName, key); b != nil {
		return b.holder
	}
	m.holdLocked(laneName, key)
	return ""
}

// hold records that key holds laneName's provisional token, unconditionally:
// it is stored (rebuilding from storage) or Snyk just issued it.
func (m *rotationManager) hold(laneName, key string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.holdLocked(laneName, key)
}

func (m *rotationManager) holdLocked(laneName, key string) {
	if prev, ok := m.heldBy[key]; ok && prev != laneName {
		m.releaseLocked(key)
	}
	l := m.laneLocked(laneName)
	if l.holder != key {
		l.holder, l.heldSince = key, m.b.now()
	}
	m.heldBy[key] = laneName
	// A holder waits for nothing: it may have been parked before a manual
	// rotation got it the slot.
	m.stopWaitingLocked(key)
}

// stopWaitingLocked takes key off the waiters of the lane it waits on. The
// caller holds m.mu.
func (m *rotationManager) stopWaitingLocked(key string) {
	name, ok := m.waitingOn[key]
	if !ok {
		return
	}
	delete(m.waitingOn, key)
	l := m.lanes[name]
	if l == nil {
		return
	}
	for i, w := range l.waiters {
		if w.key == key {
			l.waiters = append(l.waiters[:i], l.waiters[i+1:]...)
			return
		}
	}
}

// release frees the slot key reserved or holds, wherever that is, and wakes
// the lane's waiters.
func (m *rotationManager) release(key string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.releaseLocked(key)
}

func (m *rotationManager) releaseLocked(key string) {
	name, ok := m.heldBy[key]
	if !ok {
		return
	}
	delete(m.heldBy, key)
	l := m.lanes[name]
	if l == nil || l.holder != key {
		return
	}
	l.holder, l.heldSince, l.reportedAt = "", time.Time{}, time.Time{}
	now := m.b.now().UnixMilli()
	for _, w := range l.waiters {
		_, _ = m.queue.PopByKey(w.key)
		_ = m.queue.Push(&queue.Item{Key: w.key, Priority: now})
		delete(m.waitingOn, w.key)
	}
	// Waiters are parked on the lane that blocked them; one still blocked
	// elsewhere parks there when it runs again.
	l.waiters = nil
	m.nudge()
}

// wait parks key behind the lane whose holder blocks laneName, and returns
// that holder and since when it holds the slot.
func (m *rotationManager) wait(laneName, key string) (holder string, since time.Time, ok bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	b := m.blockerLocked(laneName, key)
	if b == nil {
		return "", time.Time{}, false
	}
	if m.waitingOn[key] == b.name {
		return b.holder, b.heldSince, true
	}
	// Blocked by another lane than before: it waits on this one only.
	m.stopWaitingLocked(key)
	b.waiters = append(b.waiters, laneWaiter{key: key, since: m.b.now()})
	m.waitingOn[key] = b.name
	return b.holder, b.heldSince, true
}

// holdsSlot reports which lane key holds, if any.
func (m *rotationManager) holdsSlot(key string) (string, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	name, ok := m.heldBy[key]
	return name, ok
}

// forget drops a deleted integration from the queue, its slot and every
// lane's waiters.
func (m *rotationManager) forget(key string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	_, _ = m.queue.PopByKey(key)
	_, _ = m.queue.PopByKey(scmCheckKey(key))
	_, _ = m.queue.PopByKey(scmRotateKey(key))
	m.unsaved.drop(key)
	m.releaseLocked(key)
	m.stopWaitingLocked(key)
}

// laneSnapshot is one lane's state, for reports and tests.
type laneSnapshot struct {
	name      string
	holder    string
	heldSince time.Time
	waiters   []laneWaiter
}

func (m *rotationManager) laneSnapshots() []laneSnapshot {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []laneSnapshot
	for _, l := range m.lanes {
		if l.holder == "" && len(l.waiters) == 0 {
			continue
		}
		out = append(out, l.snapshot())
	}
	return out
}

// waitedLaneSnapshots are the lanes someone waits on. Their number follows
// the waiters, not the lanes: an idle tick costs the same at 10 and at
// 10,000 integrations, whose lanes stay in the map after their rotations.
func (m *rotationManager) waitedLaneSnapshots() []laneSnapshot {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []laneSnapshot
	seen := map[string]bool{}
	for _, name := range m.waitingOn {
		if l := m.lanes[name]; l != nil && !seen[name] {
			seen[name] = true
			out = append(out, l.snapshot())
		}
	}
	return out
}

func (l *lane) snapshot() laneSnapshot {
	return laneSnapshot{name: l.name, holder: l.holder, heldSince: l.heldSince, waiters: append([]laneWaiter(nil), l.waiters...)}
}

// errLaneBusy is a manual rotation refused because another integration of
// the same Snyk group holds the group's only provisional token.
type errLaneBusy struct{ holder string }

func (e errLaneBusy) Error() string {
	return fmt.Sprintf("integration %s holds the Snyk group's provisional Broker token until its switch; "+
		"Snyk allows one per group: rotate %s first (or wait for its scheduled switch), then retry", e.holder, e.holder)
}

// Overdue lanes: a holder whose switch is late keeps its whole group
// waiting. That must never be silent.
const (
	laneOverdueGrace = time.Minute
	laneReportEvery  = 10 * time.Minute
)

// checkLanes runs once per tick before any work. For every lane with
// waiters it frees a reservation nothing backs any more (its holder was
// deleted, or holds no provisional token and has no failed step to retry),
// and tells the waiters of a lane whose holder's switch is overdue why they
// wait, on their last_rotation_error and in the log.
func (m *rotationManager) checkLanes(ctx context.Context, s logical.Storage) {
	now := m.b.now()
	for _, snap := range m.waitedLaneSnapshots() {
		if snap.holder == "" || len(snap.waiters) == 0 {
			continue
		}
		l := m.lane(snap.name)
		if !l.busy.TryLock() {
			continue // a provision or switch is in flight
		}
		holder, err := getIntegration(ctx, s, splitKeyName(snap.holder), splitKeySCM(snap.holder))
		l.busy.Unlock()
		if err != nil {
			continue
		}
		if kept := m.unsaved.get(snap.holder); kept != nil {
			holder = kept
		}
		switch {
		case holder == nil || (holder.ProvisionalToken == "" && holder.RetryAt.IsZero()):
			m.b.log().Warn("freeing a Snyk group slot that no provisional token holds", "lane", snap.name, "holder", snap.holder)
			m.release(snap.holder)
			continue
		case now.Before(holder.NextVaultRotation.Add(laneOverdueGrace)):
			continue
		}
		m.mu.Lock()
		due := now.Sub(l.reportedAt) >= laneReportEvery
		if due {
			l.reportedAt = now
		}
		m.mu.Unlock()
		if !due {
			continue
		}
		msg := fmt.Sprintf("waiting for %s, which has held the Snyk group's only provisional token since %s; its switch was due at %s and has not happened",
			snap.holder, snap.heldSince.UTC().Format(time.RFC3339), holder.NextVaultRotation.UTC().Format(time.RFC3339))
		if holder.LastRotationError != "" {
			msg += " (its last error: " + holder.LastRotationError + ")"
		}
		m.b.log().Warn("rotations wait for an overdue switch", "lane", snap.name, "holder", snap.holder, "waiters", len(snap.waiters))
		for _, w := range snap.waiters {
			m.b.recordWaiting(ctx, s, w.key, now, fmt.Sprintf("%s (waiting since %s)", msg, w.since.UTC().Format(time.RFC3339)))
		}
	}
}

// recordWaiting stores why a due integration is not rotating.
func (b *backend) recordWaiting(ctx context.Context, s logical.Storage, key string, now time.Time, why string) {
	unlock := b.lockIntegration(splitKeyName(key), splitKeySCM(key))
	defer unlock()
	e, err := getIntegration(ctx, s, splitKeyName(key), splitKeySCM(key))
	if err != nil || e == nil {
		return
	}
	e.LastRotationError = now.UTC().Format(time.RFC3339) + ": " + why
	if err := putIntegration(ctx, s, e); err != nil {
		b.log().Warn("could not record why an integration waits", "integration", key, "error", err)
	}
}

func splitKeyName(key string) string { n, _ := splitQueueKey(key); return n }
func splitKeySCM(key string) string  { _, k := splitQueueKey(key); return k }

// resolveLane looks the org's Snyk group up once and remembers it.
func (m *rotationManager) resolveLane(ctx context.Context, s logical.Storage, client *snyk.Client, cfg *snykConfig, e *integrationEntry, background bool) (string, error) {
	if e.GroupResolved {
		return laneKey(e), nil
	}
	now := m.b.now()
	if background {
		if !m.takeToken(cfg, now) {
			return "", errBudgetExhausted
		}
	} else {
		m.chargeToken(cfg, now)
	}
	group, err := client.OrgGroupID(ctx, e.OrgID)
	switch {
	case err == nil:
		e.GroupID = group
	case snyk.Classify(snyk.OpLookup, err) == snyk.NotARefusal:
		// Rate limited, a 5xx or the network: try again later.
		return "", err
	case snyk.Classify(snyk.OpLookup, err) == snyk.RefusalUnauthorized || snyk.Classify(snyk.OpLookup, err) == snyk.RefusalForbidden:
		// A credential being replaced or a permission being fixed: a failure
		// to record and retry, not a reason to serialize this org with the
		// whole mount for good.
		return "", fmt.Errorf("looking up the org's Snyk group (GET /rest/orgs/%s) was refused; the configured credential needs to read the org: %w", e.OrgID, err)
	default:
		// The REST org endpoint may be refused to this credential; a single
		// lane for the whole mount is always safe, only slower.
		m.b.log().Warn("could not look up the org's Snyk group; serializing its rotations with the whole mount",
			"org_id", e.OrgID, "error", err)
		e.GroupLookupFailed = true
	}
	e.GroupResolved = true
	if stored, err := getIntegration(ctx, s, e.Name, e.SCM); err != nil {
		return "", err
	} else if stored != nil {
		if err := putIntegration(ctx, s, e); err != nil {
			return "", err
		}
	}
	return laneKey(e), nil
}
