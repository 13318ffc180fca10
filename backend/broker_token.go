package backend

import (
	"context"
	"errors"
	"fmt"
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

// errNotStored: Snyk returned a result (a token, a switch) that could not be
// stored. The entry given to the step holds it in memory.
type errNotStored struct {
	step string // a WAL kind: which call's result
	err  error
}

func (e *errNotStored) Error() string {
	return fmt.Sprintf("storing the result of %s failed: %v", e.step, e.err)
}

func (e *errNotStored) Unwrap() error { return e.err }

// persistObtained stores e right after Snyk returned the result of step.
// Storage hiccups are retried because the alternative is losing a token that
// can never be fetched again.
func (b *backend) persistObtained(ctx context.Context, s logical.Storage, step string, e *integrationEntry) error {
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
	b.log().Error("a result obtained from Snyk could not be stored", "step", step,
		"name", e.Name, "scm", e.SCM, "integration_id", e.IntegrationID, "error", err)
	return &errNotStored{step: step, err: err}
}

// How a create obtains the Broker token, as the operator may say with
// broker_token_source (broker_token itself always means import).
const (
	// tokenSourceAuto: provision first (adoption when Snyk issues one);
	// enable Broker only when Snyk answers that the integration is not
	// brokered.
	tokenSourceAuto = "auto"
	// tokenSourceEnable: the operator knows the integration is not brokered:
	// enable Broker, never provision.
	tokenSourceEnable = "enable"
	// tokenSourceAdopt: the operator knows it is brokered: provision, never
	// enable.
	tokenSourceAdopt = "adopt"
)

var tokenSources = []string{tokenSourceAuto, tokenSourceEnable, tokenSourceAdopt}

// createIntegration resolves the Snyk integration and obtains its Broker
// token in one of the three ways of the interface. Nothing is stored unless
// a token was obtained.
func (b *backend) createIntegration(ctx context.Context, s logical.Storage, cfg *snykConfig, e *integrationEntry, in integrationInput) (*logical.Response, error) {
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
	source := in.tokenSource
	if source == "" {
		source = tokenSourceAuto
	}

	if e.IntegrationID == "" {
		id, found, err := b.findIntegration(ctx, client, e)
		switch {
		case err != nil:
			return createCallerError(err, e, snyk.OpLookup, "looking up the org's "+e.SCM+" integration")
		case found:
			e.IntegrationID = id
		case in.brokerToken != "":
			return logical.ErrorResponse(fmt.Sprintf(
				"org %s has no %s integration at Snyk, so there is nothing to import broker_token into: "+
					"drop broker_token to have Vault create the integration brokered, or pass the right org_id", e.OrgID, e.SCM)), nil
		case source == tokenSourceAdopt:
			return logical.ErrorResponse(fmt.Sprintf(
				"broker_token_source=adopt, but org %s has no %s integration at Snyk to adopt: "+
					"use broker_token_source=enable (or auto) to have Vault create it brokered", e.OrgID, e.SCM)), nil
		default:
			// The org has no integration of this type: create it brokered,
			// which is how Snyk issues the first Broker token.
			return b.addBrokeredIntegration(ctx, s, client, cfg, e)
		}
	}

	// startSchedule stamps how the token was obtained and starts the
	// rotation schedule from now.
	startSchedule := func(how string) {
		e.TokenSource = how
		e.LastVaultRotation = now
		e.NextVaultRotation = next
	}

	if in.brokerToken != "" {
		e.CurrentToken = in.brokerToken
		e.RotationState = stateActive
		startSchedule(sourceImported)
		if err := putIntegration(ctx, s, e); err != nil {
			return nil, err
		}
		return &logical.Response{Data: e.statusData(cfg)}, nil
	}

	var warnings []string
	if source == tokenSourceEnable {
		pending, err := b.enableOutcomeUnknown(ctx, s, e)
		if err != nil {
			return nil, err
		}
		if pending {
			// An earlier enable of this integration lost its answer: Snyk
			// may have enabled Broker with a token Vault never stored, and
			// enabling an already-brokered integration again is undocumented.
			// Provisioning first is safe either way.
			source = tokenSourceAuto
			warnings = append(warnings, "an earlier attempt to enable Broker on this integration lost Snyk's answer, so Vault asked for a provisional token first instead of enabling Broker again")
		}
	}

	if source == tokenSourceEnable {
		resp, err := b.enableBroker(ctx, s, client, cfg, e, source, "", startSchedule)
		return withWarnings(resp, warnings), err
	}

	// Provision first: on an already-brokered integration it yields a
	// provisional token (adoption); on a not-yet-brokered one Snyk refuses
	// it, and only then is Broker enabled. Enabling Broker on an already-
	// brokered integration is undocumented and could mint a token that
	// breaks the clients running today, so it is never tried first. The
	// fields below are stored only together with a token.
	e.RotationState = stateProvisioned
	startSchedule(sourceAdopted)
	result, err := b.rotation.obtainProvisional(ctx, s, client, cfg, e, provisionAdoption)
	if err == nil {
		b.log().Info("adopted an already-brokered integration with a provisional token",
			"name", e.Name, "scm", e.SCM, "integration_id", e.IntegrationID, "switch_at", e.NextVaultRotation)
		return &logical.Response{
			Data: e.statusData(cfg),
			Warnings: append(warnings, fmt.Sprintf(
				"the integration was already brokered with a token Vault does not hold: Vault obtained a provisional token and serves it now; "+
					"Broker clients still running the old token keep working until the switch at %s (or run broker/%s/%s/rotate once every client runs the new token)",
				e.NextVaultRotation.Format(time.RFC3339), e.Name, e.SCM)),
		}, nil
	}
	if errors.Is(err, httpx.ErrOutcomeUnknown) {
		// The WAL entry stays: Snyk may have issued a provisional token.
		return nil, fmt.Errorf("provisioning a Broker token: %w", err)
	}
	var notStored *errNotStored
	if errors.As(err, &notStored) {
		return nil, err
	}
	refusal := snyk.Classify(snyk.OpProvision, err)
	switch {
	case refusal == snyk.RefusalProvisionalConflict && result.Holder != "":
		return logical.ErrorResponse(fmt.Sprintf(
			"the integration is already brokered, and Snyk refuses a provisional token for it while integration %s (managed by this mount) holds its group's only one: "+
				"create this integration again after that one's switch (or rotate it now with broker/%s/rotate)", result.Holder, result.Holder)), nil
	case refusal == snyk.RefusalNotBrokered && source == tokenSourceAdopt:
		return logical.ErrorResponse(fmt.Sprintf(
			"broker_token_source=adopt, but Snyk refused a provisional token because the integration is not brokered (Snyk said %s): "+
				"nothing was stored; use broker_token_source=enable (or auto) to have Vault enable Broker", snyk.Answer(err))), nil
	case refusal == snyk.RefusalNotBrokered:
		resp, err := b.enableBroker(ctx, s, client, cfg, e, source, snyk.Answer(err), startSchedule)
		return withWarnings(resp, warnings), err
	}
	return createCallerError(err, e, snyk.OpProvision, "provisioning a Broker token")
}

// enableBroker enables Broker on the integration and stores the token Snyk
// returns. provisionAnswer is Snyk's "not brokered" answer that led here in
// auto mode ("" when the operator chose broker_token_source=enable).
func (b *backend) enableBroker(ctx context.Context, s logical.Storage, client *snyk.Client, cfg *snykConfig, e *integrationEntry,
	source, provisionAnswer string, startSchedule func(string)) (*logical.Response, error) {
	walID, err := b.putWAL(ctx, s, walKindEnable, e)
	if err != nil {
		return nil, err
	}
	integ, err := client.EnableBroker(ctx, e.OrgID, e.IntegrationID, e.SCM)
	if errors.Is(err, httpx.ErrOutcomeUnknown) {
		// Keep the WAL: Snyk may have enabled Broker and minted a token Vault
		// never saw. The next create of this integration provisions first.
		b.log().Warn("the answer to enabling Broker was lost; the next create of this integration adopts it",
			"name", e.Name, "scm", e.SCM, "integration_id", e.IntegrationID)
		return nil, fmt.Errorf("enabling Broker on the integration: Snyk may or may not have applied it (%w); "+
			"write the integration again: Vault will ask for a provisional token first and adopt the integration if it is now brokered", err)
	}
	if err != nil {
		b.deleteWAL(ctx, s, walID)
		switch snyk.Classify(snyk.OpEnable, err) {
		case snyk.RefusalAlreadyBrokered:
			if provisionAnswer != "" {
				return logical.ErrorResponse(fmt.Sprintf(
					"Snyk contradicts itself about integration %s: provision-token said it is not brokered (%s), enabling Broker said it already is (%s); "+
						"nothing was stored and no token was obtained: check the integration in the Snyk UI, then create it again with "+
						"broker_token_source=adopt (brokered) or import its token with broker_token=<uuid>",
					e.IntegrationID, provisionAnswer, snyk.Answer(err))), nil
			}
			return logical.ErrorResponse(fmt.Sprintf(
				"broker_token_source=enable, but Snyk says the integration is already brokered (%s): nothing was stored; "+
					"use broker_token_source=adopt (Vault obtains a provisional token and switches to it) or import its token with broker_token=<uuid>",
				snyk.Answer(err))), nil
		}
		return createCallerError(err, e, snyk.OpEnable, "enabling Broker on the integration")
	}
	if integ.BrokerToken == "" {
		b.deleteWAL(ctx, s, walID)
		return nil, fmt.Errorf("snyk enabled Broker on integration %s but returned no brokerToken", e.IntegrationID)
	}
	e.CurrentToken = integ.BrokerToken
	e.RotationState = stateActive
	startSchedule(sourceEnabled)
	if err := b.persistObtained(ctx, s, walKindEnable, e); err != nil {
		return nil, err
	}
	b.deleteWAL(ctx, s, walID)
	b.log().Info("enabled Broker on the integration", "name", e.Name, "scm", e.SCM, "integration_id", e.IntegrationID, "broker_token_source", source)
	return &logical.Response{Data: e.statusData(cfg)}, nil
}

// findIntegration returns the ID of the org's integration of e's type, and
// whether the org has one. "Has none" is concluded only from the documented
// list of the org's integrations, never from a refusal of the by-type read,
// whose answer for a missing type Snyk does not document.
func (b *backend) findIntegration(ctx context.Context, client *snyk.Client, e *integrationEntry) (string, bool, error) {
	id, err := client.IntegrationByType(ctx, e.OrgID, e.SCM)
	if err == nil {
		return id, true, nil
	}
	if snyk.Classify(snyk.OpLookup, err) == snyk.NotARefusal {
		return "", false, err
	}
	all, listErr := client.ListIntegrations(ctx, e.OrgID)
	if listErr != nil {
		return "", false, listErr
	}
	if id, ok := all[e.SCM]; ok && id != "" {
		return id, true, nil
	}
	return "", false, nil
}

// enableOutcomeUnknown reports whether an enable-Broker call for e lost its
// answer and has not been reconciled yet (its WAL entry is still there).
func (b *backend) enableOutcomeUnknown(ctx context.Context, s logical.Storage, e *integrationEntry) (bool, error) {
	ids, err := framework.ListWAL(ctx, s)
	if err != nil {
		return false, err
	}
	for _, id := range ids {
		w, err := framework.GetWAL(ctx, s, id)
		if err != nil {
			return false, err
		}
		if w == nil || w.Kind != walKindEnable {
			continue
		}
		var entry walEntry
		if err := mapToStruct(w.Data, &entry); err != nil {
			continue
		}
		if entry.OrgID == e.OrgID && (entry.IntegrationID == e.IntegrationID || (entry.Name == e.Name && entry.SCM == e.SCM)) {
			return true, nil
		}
	}
	return false, nil
}

func withWarnings(resp *logical.Response, warnings []string) *logical.Response {
	if resp != nil && len(warnings) > 0 {
		resp.Warnings = append(warnings, resp.Warnings...)
	}
	return resp
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
		return createCallerError(err, e, snyk.OpEnable, "creating a brokered "+e.SCM+" integration")
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
	if err := b.persistObtained(ctx, s, walKindEnable, e); err != nil {
		return nil, err
	}
	b.deleteWAL(ctx, s, walID)
	b.log().Info("created a brokered integration", "name", e.Name, "scm", e.SCM, "integration_id", e.IntegrationID)
	return &logical.Response{Data: e.statusData(cfg)}, nil
}

// snykCallerError turns a Snyk refusal of op into a 400 when the operator
// can act on it (wrong org, wrong integration, missing permission, a group
// blocked by a provisional token, an answer Vault cannot read), and into a
// fault otherwise (5xx, rate limiting that outlasted the retries, transport).
func snykCallerError(err error, e *integrationEntry, op snyk.Operation, doing string) (*logical.Response, error) {
	return callerError(err, e, op, doing, false)
}

// createCallerError is snykCallerError for an integration create, where an
// unreadable answer comes with the fields the operator can use instead.
func createCallerError(err error, e *integrationEntry, op snyk.Operation, doing string) (*logical.Response, error) {
	return callerError(err, e, op, doing, true)
}

func callerError(err error, e *integrationEntry, op snyk.Operation, doing string, creating bool) (*logical.Response, error) {
	switch snyk.Classify(op, err) {
	case snyk.RefusalProvisionalConflict:
		return logical.ErrorResponse(fmt.Sprintf(
			"%s: Snyk refuses because a provisional Broker token already exists in this org's group (only one may exist per group, and Snyk has no API to cancel it): "+
				"switch it (Snyk UI, or switch-token on the integration that holds it), or import the integration's current token with broker_token=<uuid>; Snyk said: %s", doing, err)), nil
	case snyk.RefusalNotFound:
		return logical.ErrorResponse(fmt.Sprintf("%s: Snyk does not know org_id %s or integration_id %q, or the configured credential cannot see them: check org_id and integration_id; Snyk said: %s", doing, e.OrgID, e.IntegrationID, err)), nil
	case snyk.RefusalUnauthorized:
		return logical.ErrorResponse(fmt.Sprintf("%s: Snyk rejected the configured credential: update snyk/config; Snyk said: %s", doing, err)), nil
	case snyk.RefusalForbidden:
		return logical.ErrorResponse(fmt.Sprintf("%s: the configured Snyk credential lacks permission on org %s (it needs Edit Integrations): Snyk said: %s", doing, e.OrgID, err)), nil
	case snyk.RefusalNothingToSwitch:
		return logical.ErrorResponse(fmt.Sprintf("%s: %v", doing, err)), nil
	case snyk.RefusalNotBrokered:
		return logical.ErrorResponse(fmt.Sprintf(
			"%s: Snyk says integration %s is not brokered (%s); Broker may have been disabled outside Vault: "+
				"Vault never enables Broker outside an integration create; enable it again by deleting and creating the integration in Vault", doing, e.IntegrationID, snyk.Answer(err))), nil
	case snyk.RefusalUnknown, snyk.RefusalAlreadyBrokered:
		return logical.ErrorResponse(unreadableAnswer(doing, err, creating)), nil
	default:
		return nil, fmt.Errorf("%s: %w", doing, err)
	}
}

// unreadableAnswer explains a refusal Vault could not read: what Snyk said,
// that Vault did nothing irreversible, and, on create, how the operator can
// say what they know instead.
func unreadableAnswer(doing string, err error, creating bool) string {
	msg := fmt.Sprintf("%s: Snyk refused with %s, an answer Snyk does not document and Vault cannot read, so Vault stopped: "+
		"nothing was stored and no token was obtained", doing, snyk.Answer(err))
	if creating {
		msg += ". If you know the integration's state, say so: broker_token_source=enable (not brokered yet: Vault enables Broker), " +
			"broker_token_source=adopt (already brokered: Vault obtains a provisional token), or import its current token with broker_token=<uuid>"
	}
	return msg
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
	e.SwitchOutcomeUnknown = false
	e.RotationState = stateProvisioned
	e.RetryAt, e.Failures, e.LastRotationError = time.Time{}, 0, ""
	// Clients need provision_ahead to start on the new token before the
	// switch; a late provision (Vault was down, the group was busy) moves
	// the switch rather than shortening that overlap. Stored with the token.
	if earliest := now.Add(e.policy(cfg).ProvisionAhead); e.NextVaultRotation.Before(earliest) {
		e.NextVaultRotation = earliest
	}
	if err := b.persistObtained(ctx, s, walKindProvision, e); err != nil {
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
	refusal := snyk.Classify(snyk.OpSwitch, err)
	if refusal == snyk.RefusalNothingToSwitch && e.SwitchOutcomeUnknown {
		// An earlier attempt of this very switch was sent and its answer
		// lost, and Snyk now has nothing to switch: provisional tokens leave
		// that state only by being switched (there is no cancel), so that
		// attempt made the held token current.
		b.log().Info("switch-token found no provisional token after an earlier attempt lost its answer; the held token is current",
			"name", e.Name, "scm", e.SCM, "integration_id", e.IntegrationID)
		err = nil
	}
	if errors.Is(err, httpx.ErrOutcomeUnknown) {
		// Remember that this switch may have been applied: if Snyk later
		// answers "nothing to switch", that is why. The WAL entry stays as
		// the record should this store fail or the process die.
		e.SwitchOutcomeUnknown = true
		if perr := putIntegration(context.WithoutCancel(ctx), s, e); perr != nil {
			b.log().Warn("could not record the lost switch answer; the WAL entry keeps it", "name", e.Name, "scm", e.SCM, "error", perr)
		}
		return err
	}
	if err != nil {
		b.deleteWAL(ctx, s, walID)
		return switchRefused(err, refusal)
	}
	now := b.now().UTC()
	e.CurrentToken = e.ProvisionalToken
	e.ProvisionalToken = ""
	e.ProvisionedAt = time.Time{}
	e.SwitchOutcomeUnknown = false
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
	if err := b.persistObtained(ctx, s, walKindSwitch, e); err != nil {
		return err
	}
	b.deleteWAL(ctx, s, walID)
	b.log().Info("switched the Broker token", "name", e.Name, "scm", e.SCM, "integration_id", e.IntegrationID, "next_vault_rotation", next)
	return nil
}

// switchRefused explains a refused switch. Whatever Snyk said, Vault keeps
// serving the current token (still valid) and retries with back-off: the
// only refusal that can mean "already switched" is "nothing to switch" after
// an attempt whose answer was lost, handled by the caller.
func switchRefused(err error, refusal snyk.Refusal) error {
	switch refusal {
	case snyk.RefusalNothingToSwitch:
		return fmt.Errorf("Snyk says there is no provisional token to switch (%s), but Vault never sent this switch before: "+
			"the token may have been switched outside Vault (Snyk UI) or lost at Snyk; Vault keeps serving the current token and retries. "+
			"If you switched it yourself, confirm with broker/<name>/<scm>/rotate switched_outside_vault=true: %w", snyk.Answer(err), err)
	case snyk.RefusalUnknown:
		return fmt.Errorf("Snyk refused the switch with %s, an answer Vault cannot read: Vault keeps serving the current token and retries: %w", snyk.Answer(err), err)
	}
	return err
}

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
		if b.rotation.unsavedEntry(queueKey(w.Name, w.SCM)) != nil {
			// The token is kept in memory until storage takes it; the entry
			// stays as the record should this process die first.
			return fmt.Errorf("the result of this call is not stored yet")
		}
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
		// The switch was sent (or about to be) and its answer is unknown.
		// Recording that on the integration lets the next attempt read a
		// "nothing to switch" answer as "the switch happened"; without the
		// record the same answer keeps the old token served.
		if e == nil || e.ProvisionalToken == "" || e.SwitchOutcomeUnknown || e.ProvisionedAt.After(w.StartedAt) {
			return nil
		}
		e.SwitchOutcomeUnknown = true
		b.log().Warn("a switch-token call was interrupted; its outcome is settled by the next attempt",
			"name", w.Name, "scm", w.SCM, "integration_id", w.IntegrationID, "started_at", w.StartedAt)
		return putIntegration(ctx, req.Storage, e)
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
