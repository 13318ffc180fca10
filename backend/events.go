package backend

import (
	"context"
	"errors"

	"github.com/hashicorp/vault/sdk/framework"
	"github.com/hashicorp/vault/sdk/logical"
)

// sendEvent publishes a rotation event; a Vault without an event bus is fine.
func (b *backend) sendEvent(ctx context.Context, eventType string, e *integrationEntry, extra ...string) {
	// Every rotation step the engine announces is also counted for
	// snyk/metrics, so the two never disagree.
	b.metrics.rotationEvent(eventType)
	pairs := append([]string{
		logical.EventMetadataPath, "broker/" + e.Name + "/" + e.SCM,
		logical.EventMetadataDataPath, "broker/" + e.Name + "/" + e.SCM,
		logical.EventMetadataModified, "true",
		"name", e.Name, "scm", e.SCM, "org_id", e.OrgID, "integration_id", e.IntegrationID,
	}, extra...)
	if err := logical.SendEvent(ctx, b, eventType, pairs...); err != nil && !errors.Is(err, framework.ErrNoEvents) {
		b.log().Debug("could not send event", "type", eventType, "error", err)
	}
}
