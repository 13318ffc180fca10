package backend

import (
	"context"
	"errors"

	"github.com/hashicorp/vault/sdk/framework"
	"github.com/hashicorp/vault/sdk/logical"
)

// sendEvent publishes a rotation event of an integration; a Vault without
// an event bus is fine.
func (b *backend) sendEvent(ctx context.Context, eventType string, e *integrationEntry, extra ...string) {
	b.publishEvent(ctx, eventType, "broker/"+e.Name+"/"+e.SCM,
		append([]string{"name", e.Name, "scm", e.SCM, "org_id", e.OrgID, "integration_id", e.IntegrationID}, extra...)...)
}

// publishEvent publishes an event about the secret served at path.
func (b *backend) publishEvent(ctx context.Context, eventType, path string, extra ...string) {
	// Every rotation step the engine announces is also counted for
	// snyk/metrics, so the two never disagree.
	b.metrics.rotationEvent(eventType)
	pairs := append([]string{
		logical.EventMetadataPath, path,
		logical.EventMetadataDataPath, path,
		logical.EventMetadataModified, "true",
	}, extra...)
	if err := logical.SendEvent(ctx, b, eventType, pairs...); err != nil && !errors.Is(err, framework.ErrNoEvents) {
		b.log().Debug("could not send event", "type", eventType, "error", err)
	}
}
