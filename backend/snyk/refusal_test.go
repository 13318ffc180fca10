package snyk_test

import (
	"errors"
	"fmt"
	"testing"

	"github.com/snyk-vault/vault-plugin-secrets-snyk/backend/httpx"
	"github.com/snyk-vault/vault-plugin-secrets-snyk/backend/snyk"
)

func TestClassifyRefusals(t *testing.T) {
	const id = "9a3e5d90-b782-468a-a042-9a2073736f0b"
	cases := []struct {
		op     snyk.Operation
		status int
		msg    string
		want   snyk.Refusal
	}{
		// Provision on a not-yet-brokered integration, any plausible status.
		{snyk.OpProvision, 409, "Integration " + id + " is not brokered.", snyk.RefusalNotBrokered},
		{snyk.OpProvision, 400, "Integration " + id + " is not brokered", snyk.RefusalNotBrokered},
		{snyk.OpProvision, 404, "Broker is not enabled for this integration", snyk.RefusalNotBrokered},
		{snyk.OpProvision, 422, id + " is not a brokered integration", snyk.RefusalNotBrokered},
		{snyk.OpProvision, 400, "This operation requires a brokered integration", snyk.RefusalNotBrokered},
		{snyk.OpProvision, 400, "Brokering is disabled for integration " + id, snyk.RefusalNotBrokered},
		{snyk.OpProvision, 403, "Integration is not brokered", snyk.RefusalNotBrokered},

		// Provision while the group holds its one provisional token.
		{snyk.OpProvision, 409, "A provisional token has already been provisioned for this integration or another integration in the same group.", snyk.RefusalProvisionalConflict},
		{snyk.OpProvision, 400, "Provisional broker token already exists in this group", snyk.RefusalProvisionalConflict},
		{snyk.OpProvision, 422, "Integration already has a provisioned token", snyk.RefusalProvisionalConflict},
		{snyk.OpProvision, 404, "Only one provisional token is allowed per group", snyk.RefusalProvisionalConflict},
		{snyk.OpProvision, 400, "An existing provisional token must be switched first", snyk.RefusalProvisionalConflict},

		// Switch with nothing provisioned.
		{snyk.OpSwitch, 400, "No provisional token exists for integration " + id + " or any integration sharing its token.", snyk.RefusalNothingToSwitch},
		{snyk.OpSwitch, 409, "There is no token provisioned for this integration or any integration in the same group", snyk.RefusalNothingToSwitch},
		{snyk.OpSwitch, 422, "The token has not been provisioned", snyk.RefusalNothingToSwitch},
		{snyk.OpSwitch, 404, "Provisional token does not exist", snyk.RefusalNothingToSwitch},
		{snyk.OpSwitch, 400, "Cannot switch without a provisioned token", snyk.RefusalNothingToSwitch},
		{snyk.OpSwitch, 400, "Integration " + id + " is not brokered", snyk.RefusalNotBrokered},

		// Refusals that only look like "nothing to switch": never "done".
		{snyk.OpSwitch, 400, "Switch not allowed: the provisioned token has no connected Broker client", snyk.RefusalUnknown},
		{snyk.OpSwitch, 409, "No provisioned token has a connected client yet", snyk.RefusalUnknown},
		{snyk.OpSwitch, 422, "A switch is already in progress for this provisioned token", snyk.RefusalUnknown},
		{snyk.OpSwitch, 400, "Bad Request", snyk.RefusalUnknown},

		// Enable on an already-brokered integration.
		{snyk.OpEnable, 409, "Integration " + id + " is already brokered.", snyk.RefusalAlreadyBrokered},
		{snyk.OpEnable, 400, "Broker is already enabled for this integration", snyk.RefusalAlreadyBrokered},
		{snyk.OpEnable, 422, "Integration already has a broker", snyk.RefusalAlreadyBrokered},
		{snyk.OpEnable, 400, "Invalid request", snyk.RefusalUnknown},

		// Meanings that belong to another call are not read into this one.
		{snyk.OpProvision, 400, "No provisional token exists", snyk.RefusalUnknown},
		{snyk.OpEnable, 400, "Integration is not brokered", snyk.RefusalUnknown},
		{snyk.OpSwitch, 409, "A provisional token already exists", snyk.RefusalUnknown},

		// Documented generic v1 answers, by their words.
		{snyk.OpProvision, 404, "Org " + id + " was not found or you may not have the correct permissions to access the org.", snyk.RefusalNotFound},
		{snyk.OpSwitch, 404, "Integration " + id + " was not found or you may not have the correct permissions to access it.", snyk.RefusalNotFound},
		{snyk.OpEnable, 401, "Not authorised", snyk.RefusalUnauthorized},
		{snyk.OpProvision, 403, "Forbidden", snyk.RefusalForbidden},
		{snyk.OpProvision, 403, "You do not have permission to edit integrations", snyk.RefusalForbidden},

		// A third client secret of an install or service account: Snyk words
		// it ("cannot update secrets") but documents no status.
		{snyk.OpManageSecret, 409, "cannot update secrets", snyk.RefusalSecretLimit},
		{snyk.OpManageSecret, 400, "Cannot update secrets", snyk.RefusalSecretLimit},
		{snyk.OpManageSecret, 422, "A maximum of 2 secrets can exist at a time", snyk.RefusalSecretLimit},
		{snyk.OpManageSecret, 400, "Secret limit reached", snyk.RefusalSecretLimit},
		{snyk.OpManageSecret, 403, "An app may hold at most two secrets", snyk.RefusalSecretLimit},
		{snyk.OpManageSecret, 400, "The secret to delete was not found", snyk.RefusalNotFound},
		{snyk.OpManageSecret, 400, "Invalid mode", snyk.RefusalUnknown},
		{snyk.OpProvision, 409, "cannot update secrets", snyk.RefusalUnknown},

		// Words that say nothing: unknown whatever the status.
		{snyk.OpProvision, 409, "Conflict", snyk.RefusalUnknown},
		{snyk.OpProvision, 422, "Unprocessable Entity", snyk.RefusalUnknown},
		{snyk.OpProvision, 400, "Error calling Snyk api (reference: 39db46b1-ad57-47e6-a87d-e34f6968030b)", snyk.RefusalUnknown},
		// Two readings; the status cannot pick one: unknown.
		{snyk.OpProvision, 400, "Integration is not brokered and a provisional token already exists", snyk.RefusalUnknown},
		// Two readings; the status favours exactly one.
		{snyk.OpProvision, 404, "Integration not found: not a brokered integration", snyk.RefusalNotFound},

		// Not refusals at all.
		{snyk.OpProvision, 429, "Too many requests", snyk.NotARefusal},
		{snyk.OpProvision, 500, "A provisional token already exists", snyk.NotARefusal},
		{snyk.OpSwitch, 503, "No provisional token exists", snyk.NotARefusal},
	}
	for _, c := range cases {
		err := fmt.Errorf("rotating: %w", &snyk.APIError{Status: c.status, Message: c.msg, Method: "POST", Path: "/v1/x"})
		if got := snyk.Classify(c.op, err); got != c.want {
			t.Errorf("Classify(%s, %d %q) = %q, want %q", c.op, c.status, c.msg, got, c.want)
		}
	}
	for _, err := range []error{nil, errors.New("boom"), fmt.Errorf("%w: POST /x answered 502", httpx.ErrOutcomeUnknown)} {
		if got := snyk.Classify(snyk.OpSwitch, err); got != snyk.NotARefusal {
			t.Errorf("Classify(%v) = %q, want not a refusal", err, got)
		}
	}
}

func TestAnswerQuotesSnyk(t *testing.T) {
	err := fmt.Errorf("x: %w", &snyk.APIError{Status: 422, Message: `Integration "a" is odd`})
	if got := snyk.Answer(err); got != `HTTP 422 "Integration \"a\" is odd"` {
		t.Fatalf("Answer = %s", got)
	}
	if snyk.Answer(errors.New("boom")) != "" {
		t.Fatal("Answer of a non-answer")
	}
}
