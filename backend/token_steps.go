package backend

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/hashicorp/vault/sdk/logical"
	"github.com/snyk-vault/vault-plugin-secrets-snyk/backend/httpx"
	"github.com/snyk-vault/vault-plugin-secrets-snyk/backend/snyk"
)

// The token steps: enable Broker, provision and switch, each one function
// used by integration create, the rotation loop and manual rotation. Every call
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
		return fmt.Errorf("snyk says there is no provisional token to switch (%s), but Vault never sent this switch before: "+
			"the token may have been switched outside Vault (Snyk UI) or lost at Snyk; Vault keeps serving the current token and retries. "+
			"If you switched it yourself, confirm with broker/<name>/<scm>/rotate switched_outside_vault=true: %w", snyk.Answer(err), err)
	case snyk.RefusalUnknown:
		return fmt.Errorf("snyk refused the switch with %s, an answer Vault cannot read: Vault keeps serving the current token and retries: %w", snyk.Answer(err), err)
	}
	return err
}
