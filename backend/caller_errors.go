package backend

import (
	"fmt"

	"github.com/hashicorp/vault/sdk/logical"
	"github.com/snyk-vault/vault-plugin-secrets-snyk/backend/snyk"
)

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
