package backend

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/hashicorp/vault/sdk/logical"
	"github.com/snyk-vault/vault-plugin-secrets-snyk/backend/httpx"
	"github.com/snyk-vault/vault-plugin-secrets-snyk/backend/snyk"
)

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
	release, busy := b.claimCreate(e)
	if busy != nil {
		return busy, nil
	}
	defer release()

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
	// Two entries rotating one Snyk integration would each switch its token
	// from under the other, leaving one serving a dead token.
	if other, err := entryManaging(ctx, s, e); err != nil {
		return nil, err
	} else if other != "" {
		return logical.ErrorResponse(fmt.Sprintf(
			"Snyk integration %s (org %s, %s) is already managed by this mount as %s: read broker/%s instead, or delete that entry first; "+
				"to serve its token to another org, clone it with integrations/%s/clone", e.IntegrationID, e.OrgID, e.SCM, other, other, other)), nil
	}

	// startSchedule stamps how the token was obtained and starts the
	// rotation schedule from now.
	startSchedule := func(how string) {
		e.TokenSource = how
		e.LastVaultRotation = now
		e.NextVaultRotation = next
	}

	if in.brokerToken != "" {
		// A token another integration owns (a clone made outside Vault, or
		// its org sharing it): join its family instead of holding a copy
		// that the owner's switch would leave stale.
		owner, err := familyOwnerOfToken(ctx, s, in.brokerToken)
		if err != nil {
			return nil, err
		}
		if owner != "" && owner != queueKey(e.Name, e.SCM) {
			e.TokenOwner, e.TokenSource = owner, sourceShared
			if err := putIntegration(ctx, s, e); err != nil {
				return nil, err
			}
			view, _, err := b.familyView(ctx, s, e)
			if err != nil {
				return nil, err
			}
			return &logical.Response{Data: view.statusData(cfg), Warnings: []string{
				fmt.Sprintf("this Broker token is %s's: the integration joins its token family and follows its rotation", owner)}}, nil
		}
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

func withWarnings(resp *logical.Response, warnings []string) *logical.Response {
	if resp != nil && len(warnings) > 0 {
		resp.Warnings = append(warnings, resp.Warnings...)
	}
	return resp
}

// entryManaging names the stored integration, other than e, that manages the
// same Snyk integration ("" if none).
func entryManaging(ctx context.Context, s logical.Storage, e *integrationEntry) (string, error) {
	self, id := queueKey(e.Name, e.SCM), strings.ToLower(e.IntegrationID)
	return indexOf(s).first(ctx, s, func(key string, r indexRow) bool { return key != self && r.integrationID == id })
}
