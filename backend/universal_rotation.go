package backend

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/hashicorp/vault/sdk/framework"
	"github.com/hashicorp/vault/sdk/logical"

	"github.com/snyk-vault/vault-plugin-secrets-snyk/backend/httpx"
	"github.com/snyk-vault/vault-plugin-secrets-snyk/backend/snyk"
)

// Rotating a Universal Broker client's secret with overlap. The client
// reads CLIENT_SECRET only at start-up and exits about three renewal
// intervals after its secret stops working; Snyk lets an install hold two
// secrets and deletes one by value. So, in the same loop, budget and WAL
// order as the Broker-token steps:
//
//	next_vault_rotation - provision_ahead   create a second secret at Snyk (WAL,
//	                                        store it before anything else, verify
//	                                        it at /oauth2/token); reads add it
//	                                        as next_client_secret
//	next_vault_rotation                     serve it as CLIENT_SECRET (no call:
//	                                        leases end here, Agent restarts the
//	                                        client)
//	+ ttl + client_exit_window              delete the old secret at Snyk
//
// Never mode=replace: it invalidates every running client's secret at once.
// Whether a step happened is read from what is stored, and a delete whose
// answer is lost is settled by /oauth2/token, which knows whether the old
// secret still works.

const (
	universalRotatePrefix      = "universal|"
	universalCheckPrefix       = "universal-check|"
	walKindUniversalSecret     = "universal-secret-create"
	eventUniversalSecretCreate = "snyk/universal-secret-create" //nolint:gosec // an event name, not a credential
	eventUniversalSwitch       = "snyk/universal-secret-switch"
	eventUniversalRetire       = "snyk/universal-secret-retire"
	eventUniversalRotateFail   = "snyk/universal-rotate-fail" //nolint:gosec // an event name, not a credential
	// universalCheckCalls is what one check spends of the request budget:
	// four lists and the client secret's token.
	universalCheckCalls = 5
)

// universalWAL names a secret creation in flight.
type universalWAL struct {
	Name      string    `json:"name"`
	InstallID string    `json:"install_id"`
	StartedAt time.Time `json:"started_at"`
}

// universalStep is what a deployment's rotation does next.
type universalStep int

const (
	stepNone   universalStep = iota
	stepRetire               // delete the previous secret at Snyk
	stepVerify               // prove the next secret at /oauth2/token before it may be served
	stepSwitch               // serve the next secret as CLIENT_SECRET
	stepCreate               // create the next secret at Snyk
)

// newSecretGrace is how long a secret Snyk just created may be refused by
// /oauth2/token (not yet propagated) before Vault gives up on it.
const newSecretGrace = 2 * time.Minute

// nextStep is the deployment's next step and when it is due: the one place
// the schedule and processUniversal both read, so that what is queued is
// always what runs. A failure's RetryAt delays the step that failed; it
// never makes a step due by itself.
func (e *universalEntry) nextStep(p policy) (universalStep, time.Time) {
	after := func(t time.Time) time.Time {
		if e.RetryAt.After(t) {
			return e.RetryAt
		}
		return t
	}
	switch {
	case e.PreviousClientSecret != "":
		// First, even before a switch: the next creation needs its slot
		// (Snyk allows two secrets), and a switch would overwrite it.
		return stepRetire, after(e.RetirePreviousAt)
	case e.NextClientSecret != "" && e.NextVerifiedAt.IsZero():
		return stepVerify, after(e.NextCreatedAt)
	case e.NextClientSecret != "":
		return stepSwitch, after(e.NextVaultRotation)
	case !p.DisableAutomatedRotation && !e.NextVaultRotation.IsZero():
		return stepCreate, after(e.NextVaultRotation.Add(-p.ProvisionAhead))
	}
	return stepNone, time.Time{}
}

// nextAction is when the deployment next needs the engine, if ever.
func (e *universalEntry) nextAction(p policy) (time.Time, bool) {
	step, at := e.nextStep(p)
	return at, step != stepNone
}

// nextCheck is when the deployment is checked against Snyk again.
func (e *universalEntry) nextCheck(cfg *snykConfig, now time.Time) time.Time {
	if e.CheckedAt.IsZero() {
		return now
	}
	return e.CheckedAt.Add(e.checkPeriod(cfg))
}

// scheduleUniversal (re)queues a deployment's next action and next check.
func (m *rotationManager) scheduleUniversal(e *universalEntry, cfg *snykConfig) {
	key := universalRotatePrefix + e.Name
	at, ok := e.nextAction(e.policy(cfg))
	m.mu.Lock()
	defer m.mu.Unlock()
	_, _ = m.queue.PopByKey(key)
	if ok {
		m.pushLocked(key, at)
	}
	m.pushLocked(universalCheckPrefix+e.Name, e.nextCheck(cfg, m.b.now()))
	m.nudge()
}

// forgetUniversal drops a deleted deployment from the queue.
func (m *rotationManager) forgetUniversal(name string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	_, _ = m.queue.PopByKey(universalRotatePrefix + name)
	_, _ = m.queue.PopByKey(universalCheckPrefix + name)
	m.unsavedUniversal.drop(name)
}

// processUniversal takes one due deployment one step further.
func (m *rotationManager) processUniversal(ctx context.Context, s logical.Storage, name string) {
	b := m.b
	key := universalRotatePrefix + name
	unlock := b.lockUniversal(name)
	defer unlock()
	now := b.now().UTC()
	// A secret storage would not take comes first: the stored copy is stale.
	if err := m.flushUniversal(ctx, s, name); err != nil {
		b.log().Error("rotation: could not store a kept Snyk result", "deployment", name, "error", err)
		m.pushAt(key, now.Add(firstFailureBackoff))
		return
	}
	e, err := getUniversal(ctx, s, name)
	if err != nil {
		b.log().Error("rotation: could not read universal deployment", "deployment", name, "error", err)
		m.pushAt(key, now.Add(firstFailureBackoff))
		return
	}
	if e == nil {
		return
	}
	cfg, client, ok := m.configAndClient(ctx, s, key, now)
	if !ok {
		return
	}
	step, at := e.nextStep(e.policy(cfg))
	if step == stepNone {
		return
	}
	if now.Before(at) {
		m.scheduleUniversal(e, cfg)
		return
	}
	// Each step but the switch calls Snyk: one or two requests of the budget.
	calls := map[universalStep]int{stepRetire: 2, stepVerify: 1, stepCreate: 2}[step]
	if calls > 0 && !m.takeTokens(cfg, now, calls) {
		m.pushAt(key, now.Add(m.tokenWait(cfg)*time.Duration(calls)))
		return
	}
	switch step {
	case stepRetire:
		err = b.retirePreviousClientSecret(ctx, s, cfg, client, e)
	case stepVerify:
		err = b.verifyNextSecret(ctx, s, cfg, client, e)
	case stepSwitch:
		err = b.switchUniversalSecret(ctx, s, cfg, e)
	case stepCreate:
		err = b.createNextSecret(ctx, s, cfg, client, e)
	}
	var notStored *errNotStored
	switch {
	case errors.As(err, &notStored):
		// The only copy of a secret Snyk showed once: kept in memory and
		// stored before anything else happens to the deployment.
		m.keepUniversal(e, notStored)
		m.pushAt(key, now.Add(firstFailureBackoff))
		return
	case err != nil:
		m.recordUniversalFailure(ctx, s, cfg, e, err)
		return
	}
	m.scheduleUniversal(e, cfg)
}

// configAndClient is what a deployment's background step needs: the config
// and the Snyk client, or key requeued while the engine has no credential.
func (m *rotationManager) configAndClient(ctx context.Context, s logical.Storage, key string, now time.Time) (*snykConfig, *snyk.Client, bool) {
	cfg, err := m.b.config(ctx, s)
	client, cerr := m.b.snykClient(ctx, s)
	if err != nil || cfg == nil || cerr != nil || client == nil {
		m.pushAt(key, now.Add(configMissingRetry))
		return nil, nil, false
	}
	return cfg, client, true
}

// createNextSecret creates the next client secret at Snyk beside the
// current one, stores it before anything else, and verifies it. The caller
// holds the deployment's lock.
func (b *backend) createNextSecret(ctx context.Context, s logical.Storage, cfg *snykConfig, client *snyk.Client, e *universalEntry) error {
	walID, err := framework.PutWAL(ctx, s, walKindUniversalSecret, &universalWAL{Name: e.Name, InstallID: e.InstallID, StartedAt: b.now().UTC()})
	if err != nil {
		return err
	}
	secret, err := client.ManageInstallSecret(ctx, e.InstallOrgID, e.InstallID, snyk.SecretModeCreate, "")
	if err != nil {
		if !errors.Is(err, httpx.ErrOutcomeUnknown) {
			b.deleteWAL(ctx, s, walID)
		}
		return fmt.Errorf("creating the next client secret of install %s: %w", e.InstallID, err)
	}
	now := b.now().UTC()
	p := e.policy(cfg)
	e.NextClientSecret, e.NextCreatedAt, e.NextVerifiedAt = secret, now, time.Time{}
	e.RotationState = stateProvisioned
	e.RetryAt, e.Failures, e.LastRotationError = time.Time{}, 0, ""
	// Clients need provision_ahead to see the next secret before the
	// switch; a late creation moves the switch rather than shortening that.
	if earliest := now.Add(p.ProvisionAhead); e.NextVaultRotation.Before(earliest) {
		e.NextVaultRotation = earliest
	}
	if err := persistUniversal(ctx, s, e); err != nil {
		// Not stored: deleted at Snyk again, or it would take the second of
		// Snyk's two slots for good. If that fails too, the value is the
		// only copy and is kept in memory until storage takes it.
		if _, derr := client.ManageInstallSecret(context.WithoutCancel(ctx), e.InstallOrgID, e.InstallID, snyk.SecretModeDelete, secret); derr != nil {
			return &errNotStored{step: walKindUniversalSecret, err: err}
		}
		b.deleteWAL(ctx, s, walID)
		e.NextClientSecret, e.NextCreatedAt = "", time.Time{}
		e.RotationState = e.stateWithoutNext()
		return fmt.Errorf("storing the next client secret failed, so Vault deleted it at Snyk again: %w", err)
	}
	b.deleteWAL(ctx, s, walID)
	b.log().Info("created the next Universal Broker client secret", "deployment", e.Name, "install_id", e.InstallID, "switch_at", e.NextVaultRotation)
	b.publishEvent(ctx, eventUniversalSecretCreate, "universal/"+e.Name+"/env", "name", e.Name, "deployment_id", e.DeploymentID,
		"next_switch_at", e.NextVaultRotation.Format(time.RFC3339))
	// Proven at once when Snyk allows; otherwise the verify step retries
	// before the switch. A secret the token endpoint refuses is never served.
	if err := b.verifyNextSecret(ctx, s, cfg, client, e); err != nil {
		b.log().Warn("the next client secret is not verified yet; it is not served before it is", "deployment", e.Name, "error", err)
	}
	return nil
}

// verifyNextSecret proves the next secret at /oauth2/token and records it.
// A refusal within newSecretGrace of its creation is retried (Snyk may not
// have propagated it yet); after that the secret is deleted and created
// again. The caller holds the deployment's lock.
func (b *backend) verifyNextSecret(ctx context.Context, s logical.Storage, cfg *snykConfig, client *snyk.Client, e *universalEntry) error {
	err := b.checkClientSecret(ctx, cfg, e, e.NextClientSecret)
	now := b.now().UTC()
	switch {
	case err == nil:
		e.NextVerifiedAt = now
		e.RetryAt, e.Failures, e.LastRotationError = time.Time{}, 0, ""
		return persistUniversal(ctx, s, e)
	case snyk.Classify(snyk.OpLookup, err) == snyk.NotARefusal:
		return fmt.Errorf("verifying the next client secret at /oauth2/token (it is not switched to before it is): %w", err)
	case now.Sub(e.NextCreatedAt) < newSecretGrace:
		return fmt.Errorf("snyk's /oauth2/token does not accept the next client secret yet (%s); verifying again", snyk.Answer(err))
	}
	return b.dropNextSecret(ctx, s, client, e, err)
}

// dropNextSecret forgets a next secret /oauth2/token keeps refusing, and
// deletes it at Snyk (it may hold one of the two slots). The caller holds
// the deployment's lock.
func (b *backend) dropNextSecret(ctx context.Context, s logical.Storage, client *snyk.Client, e *universalEntry, refusal error) error {
	if _, err := client.ManageInstallSecret(ctx, e.InstallOrgID, e.InstallID, snyk.SecretModeDelete, e.NextClientSecret); err != nil {
		b.log().Warn("could not delete a refused next client secret at Snyk; forgetting it", "deployment", e.Name, "error", err)
	}
	e.NextClientSecret, e.NextCreatedAt, e.NextVerifiedAt = "", time.Time{}, time.Time{}
	e.RotationState = e.stateWithoutNext()
	if err := persistUniversal(ctx, s, e); err != nil {
		return err
	}
	return fmt.Errorf("snyk's /oauth2/token refused the client secret Snyk created for this rotation (%s); Vault dropped it and creates another", snyk.Answer(refusal))
}

// stateWithoutNext is the rotation state once the next secret is gone.
func (e *universalEntry) stateWithoutNext() string {
	if e.PreviousClientSecret != "" {
		return stateRetiring
	}
	return stateActive
}

// switchUniversalSecret serves the next secret as CLIENT_SECRET. No call:
// both secrets work; the old one is deleted after the grace period.
func (b *backend) switchUniversalSecret(ctx context.Context, s logical.Storage, cfg *snykConfig, e *universalEntry) error {
	now := b.now().UTC()
	p := e.policy(cfg)
	next, err := p.nextRotation(now)
	if err != nil {
		return err
	}
	e.PreviousClientSecret, e.ClientSecret = e.ClientSecret, e.NextClientSecret
	e.NextClientSecret, e.NextCreatedAt, e.NextVerifiedAt = "", time.Time{}, time.Time{}
	e.RetirePreviousAt = now.Add(p.TTL + e.clientExitWindow())
	e.LastVaultRotation, e.NextVaultRotation = now, next
	e.RotationState, e.LastRotationError = stateRetiring, ""
	e.RetryAt, e.Failures = time.Time{}, 0
	if err := persistUniversal(ctx, s, e); err != nil {
		return err
	}
	b.log().Info("switched the Universal Broker client secret", "deployment", e.Name, "retire_previous_at", e.RetirePreviousAt, "next_vault_rotation", next)
	b.publishEvent(ctx, eventUniversalSwitch, "universal/"+e.Name+"/env", "name", e.Name, "deployment_id", e.DeploymentID,
		"retire_previous_at", e.RetirePreviousAt.Format(time.RFC3339))
	return nil
}

// retirePreviousClientSecret deletes the switched-away secret at Snyk. Whatever
// Snyk answers, /oauth2/token knows whether the secret still works: a
// delete whose answer was lost, or one made outside Vault, leaves nothing
// to delete, and a refused delete of a working secret is retried.
func (b *backend) retirePreviousClientSecret(ctx context.Context, s logical.Storage, cfg *snykConfig, client *snyk.Client, e *universalEntry) error {
	// Never delete the old secret while the served one does not work: the
	// old one may be all the running clients have.
	if err := b.checkClientSecret(ctx, cfg, e, e.ClientSecret); err != nil {
		if snyk.Classify(snyk.OpLookup, err) != snyk.NotARefusal {
			return fmt.Errorf("snyk's /oauth2/token refuses CLIENT_SECRET (%s): the previous secret is kept, not deleted; "+
				"if the install's secret was replaced outside Vault, write the new one as client_secret", snyk.Answer(err))
		}
		return fmt.Errorf("verifying CLIENT_SECRET before deleting the previous secret: %w", err)
	}
	_, err := client.ManageInstallSecret(ctx, e.InstallOrgID, e.InstallID, snyk.SecretModeDelete, e.PreviousClientSecret)
	if err != nil {
		check := b.checkClientSecret(ctx, cfg, e, e.PreviousClientSecret)
		if check == nil || snyk.Classify(snyk.OpLookup, check) == snyk.NotARefusal {
			return fmt.Errorf("deleting the previous client secret at Snyk (it still works, and takes one of Snyk's two slots): %w", err)
		}
		b.log().Info("the previous client secret no longer works at /oauth2/token; it is gone", "deployment", e.Name, "delete_answer", snyk.Answer(err))
	}
	e.PreviousClientSecret, e.RetirePreviousAt = "", time.Time{}
	e.RotationState = stateActive
	if e.NextClientSecret != "" {
		e.RotationState = stateProvisioned
	}
	e.RetryAt, e.Failures, e.LastRotationError = time.Time{}, 0, ""
	if err := persistUniversal(ctx, s, e); err != nil {
		return err
	}
	b.log().Info("deleted the previous Universal Broker client secret", "deployment", e.Name, "install_id", e.InstallID)
	b.publishEvent(ctx, eventUniversalRetire, "universal/"+e.Name+"/env", "name", e.Name, "deployment_id", e.DeploymentID)
	return nil
}

// recordUniversalFailure stores why a step failed and when it is retried.
func (m *rotationManager) recordUniversalFailure(ctx context.Context, s logical.Storage, cfg *snykConfig, e *universalEntry, err error) {
	b := m.b
	now := b.now().UTC()
	var msg string
	switch {
	case snyk.StatusOf(err) == http.StatusTooManyRequests:
		e.RetryAt = m.pauseFor429(now)
		msg = fmt.Sprintf("Snyk rate limit (429): background calls paused until %s", e.RetryAt.Format(time.RFC3339))
	case snyk.Classify(snyk.OpManageSecret, err) == snyk.RefusalSecretLimit && e.PreviousClientSecret == "":
		e.Failures++
		e.RetryAt = now.Add(blockedGroupBackoff)
		msg = fmt.Sprintf("BLOCKED: Snyk refuses a new client secret because install %s holds two already and Vault holds only one of them "+
			"(an earlier create whose answer was lost, or a secret made outside Vault). Snyk deletes a secret only by its value, so Vault cannot remove the other: "+
			"delete it where it was made, or replace the install's secret (snyk-broker-config; running clients stop at once) and write the new client_secret to universal/%s. "+
			"Retrying at %s. Snyk said: %v", e.InstallID, e.Name, e.RetryAt.Format(time.RFC3339), err)
	default:
		e.RetryAt = backOff(&e.Failures, now)
		msg = fmt.Sprintf("attempt %d failed, next at %s: %v", e.Failures, e.RetryAt.Format(time.RFC3339), err)
	}
	e.LastRotationError = now.Format(time.RFC3339) + ": " + msg
	if perr := persistUniversal(ctx, s, e); perr != nil {
		b.log().Error("rotation: could not record the failure", "deployment", e.Name, "error", perr)
	}
	b.log().Error("Universal Broker client secret rotation step failed", "deployment", e.Name, "error", err, "retry_at", e.RetryAt)
	b.publishEvent(ctx, eventUniversalRotateFail, "universal/"+e.Name+"/env", "name", e.Name, "deployment_id", e.DeploymentID, "error", msg)
	m.scheduleUniversal(e, cfg)
}

// persistUniversal stores e right after Snyk answered, retrying storage
// hiccups: the caller giving up must not lose a secret Snyk shows once.
func persistUniversal(ctx context.Context, s logical.Storage, e *universalEntry) error {
	ctx = context.WithoutCancel(ctx)
	var err error
	for attempt := 0; attempt < 5; attempt++ {
		if err = putUniversal(ctx, s, e); err == nil {
			return nil
		}
		if httpx.SleepContext(ctx, time.Duration(attempt+1)*100*time.Millisecond) != nil {
			break
		}
	}
	return err
}
