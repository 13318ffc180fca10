package backend

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"time"

	"github.com/hashicorp/vault/sdk/framework"
	"github.com/hashicorp/vault/sdk/logical"

	"github.com/snyk-vault/vault-plugin-secrets-snyk/backend/httpx"
	"github.com/snyk-vault/vault-plugin-secrets-snyk/backend/snyk"
)

// This file obtains Broker tokens from Snyk and switches them. Every call
// with an upstream side effect follows the same order, so that a kill -9
// between any two steps leaves something Vault can reason about:
//
//  1. a WAL entry (local storage) names the call about to be made;
//  2. the call;
//  3. whatever token Snyk returned is stored before anything else happens
//     (Snyk never shows it again);
//  4. the WAL entry is deleted.
//
// A WAL entry that survives therefore means "Snyk may hold a token Vault
// never stored"; walRollback reports it on the integration.

// WAL kinds.
const (
	walKindEnable    = "enable-broker"
	walKindProvision = "provision-token"
	walKindSwitch    = "switch-token"
)

// walRollbackMinAge must exceed the longest request (retries included), so
// that the rollback manager never treats an in-flight call as a crash.
const walRollbackMinAge = 10 * time.Minute

type walEntry struct {
	Name          string    `json:"name"`
	SCM           string    `json:"scm"`
	OrgID         string    `json:"org_id"`
	IntegrationID string    `json:"integration_id"`
	StartedAt     time.Time `json:"started_at"`
}

func (b *backend) putWAL(ctx context.Context, s logical.Storage, kind string, e *integrationEntry) (string, error) {
	return framework.PutWAL(ctx, s, kind, &walEntry{
		Name: e.Name, SCM: e.SCM, OrgID: e.OrgID, IntegrationID: e.IntegrationID, StartedAt: b.now().UTC(),
	})
}

// deleteWAL is best effort: a leftover entry only makes walRollback look at
// an integration that turns out to be consistent.
func (b *backend) deleteWAL(ctx context.Context, s logical.Storage, id string) {
	if err := framework.DeleteWAL(ctx, s, id); err != nil {
		b.log().Warn("could not delete WAL entry", "wal_id", id, "error", err)
	}
}

// persistObtained stores e right after Snyk returned a token. Storage
// hiccups are retried because the alternative is losing a token that can
// never be fetched again.
func (b *backend) persistObtained(ctx context.Context, s logical.Storage, e *integrationEntry) error {
	// The caller giving up (a client disconnect, Vault's request deadline,
	// unmount) must not drop a token Snyk will never show again.
	ctx = context.WithoutCancel(ctx)
	var err error
	for attempt := 0; attempt < 5; attempt++ {
		if err = putIntegration(ctx, s, e); err == nil {
			return nil
		}
		if sleepErr := httpx.SleepContext(ctx, time.Duration(attempt+1)*100*time.Millisecond); sleepErr != nil {
			break
		}
	}
	b.log().Error("a Broker token obtained from Snyk could not be stored; the integration must be adopted again",
		"name", e.Name, "scm", e.SCM, "integration_id", e.IntegrationID, "error", err)
	return fmt.Errorf("storing the Broker token Snyk returned: %w", err)
}

// createIntegration resolves the Snyk integration and obtains its Broker
// token in one of the three ways of the interface. Nothing is stored unless
// a token was obtained.
func (b *backend) createIntegration(ctx context.Context, s logical.Storage, cfg *snykConfig, e *integrationEntry, imported string) (*logical.Response, error) {
	client, err := b.snykClient(ctx, s)
	if err != nil {
		return nil, err
	}
	now := b.now().UTC()
	// Computed before any Snyk call, so that nothing can fail between
	// receiving a token and storing it.
	next, err := e.policy(cfg).nextRotation(now)
	if err != nil {
		return nil, err
	}

	if e.IntegrationID == "" {
		id, err := client.IntegrationByType(ctx, e.OrgID, e.SCM)
		switch {
		case err == nil:
			e.IntegrationID = id
		case snyk.StatusOf(err) == http.StatusNotFound && imported == "":
			// The org has no integration of this type: create it brokered,
			// which is how Snyk issues the first Broker token.
			return b.addBrokeredIntegration(ctx, s, client, cfg, e)
		default:
			return snykCallerError(err, e, "looking up the org's "+e.SCM+" integration")
		}
	}

	// startSchedule stamps how the token was obtained and starts the
	// rotation schedule from now.
	startSchedule := func(source string) {
		e.TokenSource = source
		e.LastVaultRotation = now
		e.NextVaultRotation = next
	}

	if imported != "" {
		e.CurrentToken = imported
		e.RotationState = stateActive
		startSchedule(sourceImported)
		if err := putIntegration(ctx, s, e); err != nil {
			return nil, err
		}
		return &logical.Response{Data: e.statusData(cfg)}, nil
	}

	// The org's Snyk group decides which rotations must be serialized with
	// this one; while it is unknown the integration shares the mount-wide
	// lane, which excludes every other.
	if _, err := b.rotation.resolveLane(ctx, s, client, cfg, e, false); err != nil {
		b.log().Debug("org group look-up deferred", "org_id", e.OrgID, "error", err)
	}
	key := queueKey(e.Name, e.SCM)
	laneName := laneKey(e)
	lane := b.rotation.lane(laneName)
	lane.busy.Lock()
	defer lane.busy.Unlock()
	// Reserve the group's provisional slot for an adoption; when another
	// integration Vault manages holds it, Snyk will refuse a provisional
	// token (or answer "not brokered", which needs no slot).
	_, slotHolder := b.rotation.reserveSlot(laneName, key)

	// Provision first: on an already-brokered integration it yields a
	// provisional token (adoption); on a not-yet-brokered one Snyk refuses
	// it, and only then is Broker enabled. Enabling Broker on an already-
	// brokered integration is undocumented and could mint a token that
	// breaks the clients running today, so it is never tried first.
	walID, err := b.putWAL(ctx, s, walKindProvision, e)
	if err != nil {
		return nil, err
	}
	provisional, err := client.ProvisionToken(ctx, e.OrgID, e.IntegrationID)
	if err == nil {
		e.ProvisionalToken = provisional
		e.ProvisionedAt = now
		e.RotationState = stateProvisioned
		startSchedule(sourceAdopted)
		if err := b.persistObtained(ctx, s, e); err != nil {
			return nil, err
		}
		b.deleteWAL(ctx, s, walID)
		b.rotation.claimLane(e)
		b.log().Info("adopted an already-brokered integration with a provisional token",
			"name", e.Name, "scm", e.SCM, "integration_id", e.IntegrationID, "switch_at", e.NextVaultRotation)
		return &logical.Response{
			Data: e.statusData(cfg),
			Warnings: []string{fmt.Sprintf(
				"the integration was already brokered with a token Vault does not hold: Vault obtained a provisional token and serves it now; "+
					"Broker clients still running the old token keep working until the switch at %s (or run broker/%s/%s/rotate once every client runs the new token)",
				e.NextVaultRotation.Format(time.RFC3339), e.Name, e.SCM)},
		}, nil
	}
	if slotHolder == "" {
		b.rotation.releaseUnlessUnknown(laneName, key, err)
	}
	if errors.Is(err, httpx.ErrOutcomeUnknown) {
		// Keep the WAL: Snyk may have issued a provisional token.
		return nil, fmt.Errorf("provisioning a Broker token: %w", err)
	}
	b.deleteWAL(ctx, s, walID)
	if snyk.IsProvisionalConflict(err) && slotHolder != "" {
		return logical.ErrorResponse(fmt.Sprintf(
			"the integration is already brokered, and Snyk refuses a provisional token for it while integration %s (managed by this mount) holds its group's only one: "+
				"create this integration again after that one's switch (or rotate it now with broker/%s/rotate)", slotHolder, slotHolder)), nil
	}
	if !snyk.IsNotBrokered(err) {
		return snykCallerError(err, e, "provisioning a Broker token")
	}

	walID, err = b.putWAL(ctx, s, walKindEnable, e)
	if err != nil {
		return nil, err
	}
	integ, err := client.EnableBroker(ctx, e.OrgID, e.IntegrationID, e.SCM)
	if err != nil {
		if !errors.Is(err, httpx.ErrOutcomeUnknown) {
			b.deleteWAL(ctx, s, walID)
		}
		return snykCallerError(err, e, "enabling Broker on the integration")
	}
	if integ.BrokerToken == "" {
		b.deleteWAL(ctx, s, walID)
		return nil, fmt.Errorf("snyk enabled Broker on integration %s but returned no brokerToken", e.IntegrationID)
	}
	e.CurrentToken = integ.BrokerToken
	e.RotationState = stateActive
	startSchedule(sourceEnabled)
	if err := b.persistObtained(ctx, s, e); err != nil {
		return nil, err
	}
	b.deleteWAL(ctx, s, walID)
	b.log().Info("enabled Broker on the integration", "name", e.Name, "scm", e.SCM, "integration_id", e.IntegrationID)
	return &logical.Response{Data: e.statusData(cfg)}, nil
}

// addBrokeredIntegration creates the org's integration with Broker enabled.
func (b *backend) addBrokeredIntegration(ctx context.Context, s logical.Storage, client *snyk.Client, cfg *snykConfig, e *integrationEntry) (*logical.Response, error) {
	now := b.now().UTC()
	next, err := e.policy(cfg).nextRotation(now)
	if err != nil {
		return nil, err
	}
	walID, err := b.putWAL(ctx, s, walKindEnable, e)
	if err != nil {
		return nil, err
	}
	integ, err := client.AddIntegration(ctx, e.OrgID, e.SCM, true, nil)
	if err != nil {
		if !errors.Is(err, httpx.ErrOutcomeUnknown) {
			b.deleteWAL(ctx, s, walID)
		}
		return snykCallerError(err, e, "creating a brokered "+e.SCM+" integration")
	}
	if integ.BrokerToken == "" || integ.ID == "" {
		b.deleteWAL(ctx, s, walID)
		return nil, fmt.Errorf("snyk created a brokered %s integration but returned no id or brokerToken", e.SCM)
	}
	e.IntegrationID = integ.ID
	e.CurrentToken = integ.BrokerToken
	e.RotationState = stateActive
	e.TokenSource = sourceEnabled
	e.LastVaultRotation = now
	e.NextVaultRotation = next
	if err := b.persistObtained(ctx, s, e); err != nil {
		return nil, err
	}
	b.deleteWAL(ctx, s, walID)
	b.log().Info("created a brokered integration", "name", e.Name, "scm", e.SCM, "integration_id", e.IntegrationID)
	return &logical.Response{Data: e.statusData(cfg)}, nil
}

// snykCallerError turns a Snyk failure into a 400 when the operator can fix
// it (wrong org, wrong integration, missing permission, a group blocked by a
// provisional token), and into a fault otherwise.
func snykCallerError(err error, e *integrationEntry, doing string) (*logical.Response, error) {
	status := snyk.StatusOf(err)
	switch {
	case snyk.IsProvisionalConflict(err):
		return logical.ErrorResponse(fmt.Sprintf(
			"%s: Snyk refuses because a provisional Broker token already exists in this org's group (only one may exist per group, and Snyk has no API to cancel it): "+
				"switch it (Snyk UI, or switch-token on the integration that holds it), or import the integration's current token with broker_token=<uuid>; Snyk said: %s", doing, err)), nil
	case status == http.StatusNotFound:
		return logical.ErrorResponse(fmt.Sprintf("%s: Snyk does not know org_id %s or integration_id %q, or the configured credential cannot see them: check org_id and integration_id; Snyk said: %s", doing, e.OrgID, e.IntegrationID, err)), nil
	case status == http.StatusUnauthorized:
		return logical.ErrorResponse(fmt.Sprintf("%s: Snyk rejected the configured credential: update snyk/config; Snyk said: %s", doing, err)), nil
	case status == http.StatusForbidden:
		return logical.ErrorResponse(fmt.Sprintf("%s: the configured Snyk credential lacks permission on org %s (it needs Edit Integrations): Snyk said: %s", doing, e.OrgID, err)), nil
	case status >= 400 && status < 500 && status != http.StatusTooManyRequests:
		return logical.ErrorResponse(fmt.Sprintf("%s: %s", doing, err)), nil
	default:
		return nil, fmt.Errorf("%s: %w", doing, err)
	}
}

// provision obtains a provisional token for e unless one is already held,
// and stores it before returning. The caller holds the integration lock.
func (b *backend) provision(ctx context.Context, s logical.Storage, client *snyk.Client, cfg *snykConfig, e *integrationEntry) error {
	if e.ProvisionalToken != "" {
		return nil
	}
	walID, err := b.putWAL(ctx, s, walKindProvision, e)
	if err != nil {
		return err
	}
	token, err := client.ProvisionToken(ctx, e.OrgID, e.IntegrationID)
	if err != nil {
		if !errors.Is(err, httpx.ErrOutcomeUnknown) {
			b.deleteWAL(ctx, s, walID)
		}
		return err
	}
	now := b.now().UTC()
	e.ProvisionalToken = token
	e.ProvisionedAt = now
	e.RotationState = stateProvisioned
	e.RetryAt, e.Failures, e.LastRotationError = time.Time{}, 0, ""
	// Clients need provision_ahead to start on the new token before the
	// switch; a late provision (Vault was down, the group was busy) moves
	// the switch rather than shortening that overlap. Stored with the token.
	if earliest := now.Add(e.policy(cfg).ProvisionAhead); e.NextVaultRotation.Before(earliest) {
		e.NextVaultRotation = earliest
	}
	if err := b.persistObtained(ctx, s, e); err != nil {
		return err
	}
	b.deleteWAL(ctx, s, walID)
	b.log().Info("provisioned a Broker token", "name", e.Name, "scm", e.SCM, "integration_id", e.IntegrationID)
	return nil
}

// switchToken makes the held provisional token current at Snyk. The state
// is recorded as switch_pending before the call so that a crash during it is
// visible; the still-valid old token is served until the switch is confirmed.
func (b *backend) switchToken(ctx context.Context, s logical.Storage, client *snyk.Client, cfg *snykConfig, e *integrationEntry) error {
	if e.ProvisionalToken == "" {
		return errors.New("no provisional token is held")
	}
	e.RotationState = stateSwitchPending
	if err := putIntegration(ctx, s, e); err != nil {
		return err
	}
	walID, err := b.putWAL(ctx, s, walKindSwitch, e)
	if err != nil {
		return err
	}
	err = client.SwitchToken(ctx, e.OrgID, e.IntegrationID)
	if err != nil && switchAlreadyHappened(err) {
		// Snyk says the group has no provisional token, yet Vault holds one:
		// provisional tokens leave that state only by being switched (there
		// is no cancel), so an earlier switch whose answer was lost, or one
		// made in the Snyk UI, already made it current.
		b.log().Info("switch-token found no provisional token; the held token is already current",
			"name", e.Name, "scm", e.SCM, "integration_id", e.IntegrationID)
		err = nil
	}
	if err != nil {
		if !errors.Is(err, httpx.ErrOutcomeUnknown) {
			b.deleteWAL(ctx, s, walID)
		}
		return err
	}
	now := b.now().UTC()
	e.CurrentToken = e.ProvisionalToken
	e.ProvisionalToken = ""
	e.ProvisionedAt = time.Time{}
	e.TokenSource = sourceRotated
	e.RotationState = stateActive
	e.LastVaultRotation = now
	e.LastRotationError = ""
	e.RetryAt, e.Failures = time.Time{}, 0
	next, err := e.policy(cfg).nextRotation(now)
	if err != nil {
		return err
	}
	e.NextVaultRotation = next
	if err := b.persistObtained(ctx, s, e); err != nil {
		return err
	}
	b.deleteWAL(ctx, s, walID)
	b.log().Info("switched the Broker token", "name", e.Name, "scm", e.SCM, "integration_id", e.IntegrationID, "next_vault_rotation", next)
	return nil
}

// switchAlreadyHappened recognises Snyk's refusal of a switch because the
// group holds no provisional token. Snyk documents no status or body for it,
// so it is recognised by its words; anything else stays a failure (retried
// with back-off and reported), because concluding "switched" wrongly would
// serve a token Snyk does not route by.
func switchAlreadyHappened(err error) bool {
	status := snyk.StatusOf(err)
	if status < 400 || status > 499 || status == http.StatusTooManyRequests || status == http.StatusUnauthorized || status == http.StatusForbidden || status == http.StatusNotFound {
		return false
	}
	var ae *snyk.APIError
	if !errors.As(err, &ae) {
		return false
	}
	return noProvisionalPattern.MatchString(ae.Message)
}

// noProvisionalPattern matches "No provisional token exists …", "no token
// provisioned", "not provisioned" and the like.
var noProvisionalPattern = regexp.MustCompile(`(?i)\b(no|not|without|missing)\b.{0,40}\bprovision`)

// walRollback runs for WAL entries that outlived walRollbackMinAge: the
// process died (or storage failed) between a Snyk call and storing its
// result. Nothing upstream can be undone, and a token Snyk returned cannot
// be fetched again, so the job is to make the situation visible on the
// integration and in the log, then drop the entry.
func (b *backend) walRollback(ctx context.Context, req *logical.Request, kind string, data interface{}) error {
	var w walEntry
	if err := mapToStruct(data, &w); err != nil {
		return err
	}
	unlock := b.lockIntegration(w.Name, w.SCM)
	defer unlock()
	e, err := getIntegration(ctx, req.Storage, w.Name, w.SCM)
	if err != nil {
		return err
	}

	var msg string
	switch kind {
	case walKindProvision:
		if e != nil && (e.ProvisionalToken != "" || e.LastVaultRotation.After(w.StartedAt)) {
			return nil // the token was stored (and maybe switched); only the WAL delete was lost
		}
		msg = "a provision-token call was interrupted; Snyk may hold a provisional token Vault never stored, which blocks rotations in the org's group until it is switched in the Snyk UI"
	case walKindEnable:
		if e != nil && e.servedToken() != "" {
			return nil
		}
		msg = "enabling Broker was interrupted; the integration may now be brokered with a token Vault never stored: write the integration again to adopt it"
	case walKindSwitch:
		// The next rotation attempt resolves it: Snyk either still has the
		// provisional token (the switch is retried) or not (it happened).
		return nil
	default:
		return nil
	}
	b.log().Warn("interrupted Snyk call", "kind", kind, "name", w.Name, "scm", w.SCM, "integration_id", w.IntegrationID, "started_at", w.StartedAt, "detail", msg)
	if e == nil {
		return nil
	}
	e.LastRotationError = fmt.Sprintf("%s: %s", b.now().UTC().Format(time.RFC3339), msg)
	return putIntegration(ctx, req.Storage, e)
}
