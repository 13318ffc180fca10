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

// Token families: Snyk's documented way to run one Broker client (one
// token) for several orgs is to clone an integration into another org of the
// same group; clones share the token, and switch-token switches them all. In
// Vault one integration of the family owns the token and its rotation; the
// others are sharers: they hold their own SCM credential but no token, never
// provision or switch, and read the owner's token, schedule and state, so
// every member serves the same broker_token and changes at the same switch
// with nothing to propagate.

const (
	walKindClone = "clone"
	sourceCloned = "cloned" // a sharer of another integration's token
	sourceShared = "shared" // imported: the token another integration owns
)

// cloneWAL names a clone being made, so that recovery can find the new
// integration at Snyk (by type in the destination org) and record it.
type cloneWAL struct {
	Source   string    `json:"source"`
	DestOrg  string    `json:"dest_org"`
	DestName string    `json:"dest_name"`
	Started  time.Time `json:"started_at"`
}

// familyView returns e as its broker reads and status see it: a sharer with
// its owner's token, schedule and rotation state. ok is false when the
// owner is gone.
func (b *backend) familyView(ctx context.Context, s logical.Storage, e *integrationEntry) (*integrationEntry, bool, error) {
	if e.TokenOwner == "" {
		return e, true, nil
	}
	name, kind := splitQueueKey(e.TokenOwner)
	owner, err := b.currentIntegration(ctx, s, name, kind)
	if err != nil || owner == nil {
		return e, false, err
	}
	view := *e
	view.CurrentToken, view.ProvisionalToken, view.ProvisionedAt = owner.CurrentToken, owner.ProvisionalToken, owner.ProvisionedAt
	view.RotationState, view.RetryAt = owner.RotationState, owner.RetryAt
	view.LastVaultRotation, view.NextVaultRotation = owner.LastVaultRotation, owner.NextVaultRotation
	view.RotationPeriod, view.RotationSchedule, view.RotationWindow = owner.RotationPeriod, owner.RotationSchedule, owner.RotationWindow
	view.ProvisionAhead, view.DisableAutomatedRotation = owner.ProvisionAhead, owner.DisableAutomatedRotation
	view.LastRotationError = owner.LastRotationError
	return &view, true, nil
}

// sharersOf lists the integrations sharing key's token. Computed, not
// stored: a stored list would need the owner's and a sharer's locks at once.
func sharersOf(ctx context.Context, s logical.Storage, key string) ([]string, error) {
	return indexOf(s).find(ctx, s, func(_ string, r indexRow) bool { return r.tokenOwner == key })
}

// familyOwnerOfToken finds the integration that owns token (compared by
// fingerprint, so that no comparison of secrets is ever logged), "" if none.
func familyOwnerOfToken(ctx context.Context, s logical.Storage, token string) (string, error) {
	want := fingerprint(token)
	return indexOf(s).first(ctx, s, func(_ string, r indexRow) bool { return r.tokenOwner == "" && r.tokenFP == want })
}

func pathClone(b *backend) *framework.Path {
	return &framework.Path{
		Pattern: "integrations/" + nameSegment + "/" + scmSegment + "/clone$",
		DisplayAttrs: &framework.DisplayAttributes{
			OperationPrefix: operationPrefix, OperationVerb: "clone", OperationSuffix: "integration",
		},
		Fields: map[string]*framework.FieldSchema{
			"name":               pathNameFields["name"],
			"scm":                pathNameFields["scm"],
			"destination_org_id": {Type: framework.TypeString, Required: true, Description: "The Snyk org (UUID, same group) to clone the integration into."},
			"destination_name":   {Type: framework.TypeString, Description: "The clone's <name> in Vault paths (default: destination_org_id)."},
		},
		Operations: map[logical.Operation]framework.OperationHandler{
			logical.UpdateOperation: forwarded(b.pathIntegrationClone, "Clone the integration into another org of the group; the clone shares the Broker token.", nil),
		},
		HelpSynopsis:    "Share an integration's Broker token with another org of the group.",
		HelpDescription: pathCloneHelpDesc,
	}
}

func (b *backend) pathIntegrationClone(ctx context.Context, req *logical.Request, d *framework.FieldData) (*logical.Response, error) {
	name, kind := d.Get("name").(string), d.Get("scm").(string)
	if p := checkPathNames(name, kind); p != "" {
		return logical.ErrorResponse(p), nil
	}
	destOrg := d.Get("destination_org_id").(string)
	if !isUUID(destOrg) {
		return logical.ErrorResponse("destination_org_id must be a Snyk org ID (UUID), got %q", destOrg), nil
	}
	destName := d.Get("destination_name").(string)
	if destName == "" {
		destName = destOrg
	}
	if p := checkName(destName); p != "" {
		return logical.ErrorResponse(p), nil
	}
	if destName == name {
		return logical.ErrorResponse("destination_name must differ from the source's name"), nil
	}
	unlock := b.lockIntegrations(queueKey(name, kind), queueKey(destName, kind))
	defer unlock()
	src, err := b.integrationForWrite(ctx, req.Storage, name, kind)
	if err != nil {
		return nil, err
	}
	switch {
	case src == nil:
		return logical.ErrorResponse("no integration %s/%s to clone", name, kind), nil
	case src.TokenOwner != "":
		return logical.ErrorResponse("%s/%s shares the token of %s: clone the owner instead", name, kind, src.TokenOwner), nil
	}
	if existing, err := getIntegration(ctx, req.Storage, destName, kind); err != nil || existing != nil {
		if err != nil {
			return nil, err
		}
		return logical.ErrorResponse("integrations/%s/%s exists already: choose another destination_name", destName, kind), nil
	}
	client, err := b.snykClient(ctx, req.Storage)
	if err != nil {
		return nil, err
	}
	if client == nil {
		return logical.ErrorResponse("the engine has no Snyk credential yet: write snyk/config first"), nil
	}
	w := cloneWAL{Source: queueKey(name, kind), DestOrg: destOrg, DestName: destName, Started: b.now().UTC()}
	walID, err := framework.PutWAL(ctx, req.Storage, walKindClone, &w)
	if err != nil {
		return nil, err
	}
	newID, err := client.CloneIntegration(ctx, src.OrgID, src.IntegrationID, destOrg)
	if err != nil {
		if !errors.Is(err, httpx.ErrOutcomeUnknown) {
			b.deleteWAL(ctx, req.Storage, walID)
			return snykCallerError(err, src, snyk.OpLookup, "cloning the integration")
		}
		// The WAL entry stays: recovery finds the clone and records it.
		return nil, fmt.Errorf("cloning the integration: %w", err)
	}
	dest := sharerOf(src, destName, destOrg, newID, b.now().UTC())
	if err := b.persistObtained(ctx, req.Storage, walKindClone, dest); err != nil {
		return nil, err
	}
	b.deleteWAL(ctx, req.Storage, walID)
	cfg, err := b.configOrDefaults(ctx, req.Storage)
	if err != nil {
		return nil, err
	}
	b.rotation.schedule(dest, cfg)
	b.log().Info("cloned an integration; the clone shares its Broker token", "source", w.Source, "clone", queueKey(destName, kind), "integration_id", newID)
	view, _, err := b.familyView(ctx, req.Storage, dest)
	if err != nil {
		return nil, err
	}
	return &logical.Response{Data: view.statusData(cfg)}, nil
}

// sharerOf is the entry of a clone of src: its own identity, src's SCM
// credential and location (Snyk copies them), src's token by reference.
func sharerOf(src *integrationEntry, name, orgID, integrationID string, now time.Time) *integrationEntry {
	// The clone's own problems are found by its own checks.
	health := src.scmHealth
	health.SCMProblems = nil
	return &integrationEntry{
		Name: name, SCM: src.SCM, OrgID: orgID, IntegrationID: integrationID,
		SCMToken: src.SCMToken, SCMUsername: src.SCMUsername, SCMPassword: src.SCMPassword,
		SCMURL: src.SCMURL, SCMAPIURL: src.SCMAPIURL, AzureOrg: src.AzureOrg, BrokerClientURL: src.BrokerClientURL,
		SkipSCMValidation: src.SkipSCMValidation, scmHealth: health,
		TokenOwner: queueKey(src.Name, src.SCM), TokenSource: sourceCloned, CreatedAt: now,
	}
}

// cloneRollback records a clone whose answer or store was lost: Snyk made
// it, so it shares the token, and an unknown sharer would be switched by the
// owner's rotation without Vault knowing.
func (b *backend) cloneRollback(ctx context.Context, s logical.Storage, data interface{}) error {
	var w cloneWAL
	if err := mapToStruct(data, &w); err != nil {
		return err
	}
	srcName, kind := splitQueueKey(w.Source)
	unlock := b.lockIntegrations(w.Source, queueKey(w.DestName, kind))
	defer unlock()
	src, err := getIntegration(ctx, s, srcName, kind)
	if err != nil || src == nil {
		return err
	}
	if existing, err := getIntegration(ctx, s, w.DestName, kind); err != nil || existing != nil {
		return err
	}
	client, err := b.snykClient(ctx, s)
	if err != nil || client == nil {
		return fmt.Errorf("cannot look for a lost clone without a Snyk credential: %w", err)
	}
	all, err := client.ListIntegrations(ctx, w.DestOrg)
	if err != nil {
		return err
	}
	id, ok := all[kind]
	if !ok {
		return nil // the clone never happened
	}
	dest := sharerOf(src, w.DestName, w.DestOrg, id, b.now().UTC())
	if err := putIntegration(ctx, s, dest); err != nil {
		return err
	}
	b.log().Warn("recorded a clone whose answer was lost; it shares the token", "source", w.Source, "clone", queueKey(w.DestName, kind), "integration_id", id)
	return nil
}

const pathCloneHelpDesc = `
Clone the integration into another org of the same Snyk group
(POST /v1/org/{org}/integrations/{id}/clone): Snyk copies its settings and
credentials, Broker token included, so one Broker client serves both orgs.
The clone is stored as integrations/<destination_name>/<scm>, a sharer of
this integration's token: it never provisions or switches; this integration's
rotation switches every member of the family at once (Snyk's switch-token
switches all integrations sharing the token), and every member's broker read
serves the same token, with leases ending at the family's next switch.

  vault write snyk/integrations/payments/github/clone destination_org_id=<org UUID> destination_name=platform
`

const walKindPromote = "promote-token-owner"

// promoteWAL names a hand-over of a family's token from one member to
// another, so that recovery can finish it.
type promoteWAL struct {
	OldOwner string `json:"old_owner"`
	NewOwner string `json:"new_owner"`
}

// pathPromote handles promote_token_owner=true on a sharer's write: it
// makes the sharer the owner of its family: it takes the token, its state
// and schedule; the old owner and every other member become its sharers.
// Every step is idempotent, and the WAL entry lets recovery finish a
// hand-over a crash interrupted.
func (b *backend) pathPromote(ctx context.Context, req *logical.Request, name, kind string) (*logical.Response, error) {
	s := req.Storage
	probe, err := getIntegration(ctx, s, name, kind)
	if err != nil || probe == nil {
		return nil, err
	}
	if probe.TokenOwner == "" {
		return logical.ErrorResponse("%s/%s owns its token already", name, kind), nil
	}
	newKey, oldKey := queueKey(name, kind), probe.TokenOwner
	// Both locks at once: the old owner's keeps its rotation (and any other
	// change) out until the family points at the new owner.
	unlock := b.lockIntegrations(newKey, oldKey)
	defer unlock()
	sharer, err := b.integrationForWrite(ctx, s, name, kind)
	if err != nil || sharer == nil {
		return nil, err
	}
	if sharer.TokenOwner != oldKey {
		return logical.ErrorResponse("the token family of %s/%s changed meanwhile: read it and try again", name, kind), nil
	}
	if err := b.rotation.flushUnsaved(ctx, s, oldKey); err != nil {
		return nil, err
	}
	walID, err := framework.PutWAL(ctx, s, walKindPromote, &promoteWAL{OldOwner: oldKey, NewOwner: newKey})
	if err != nil {
		return nil, err
	}
	if err := b.finishPromotion(ctx, s, oldKey, sharer); err != nil {
		return nil, err
	}
	b.deleteWAL(ctx, s, walID)
	cfg, err := b.configOrDefaults(ctx, s)
	if err != nil {
		return nil, err
	}
	return &logical.Response{Data: sharer.statusData(cfg)}, nil
}

// finishPromotion runs (or re-runs) a hand-over: new owner first, then the
// old owner, then every other member.
func (b *backend) finishPromotion(ctx context.Context, s logical.Storage, oldKey string, newOwner *integrationEntry) error {
	oldName, kind := splitQueueKey(oldKey)
	newKey := queueKey(newOwner.Name, newOwner.SCM)
	old, err := getIntegration(ctx, s, oldName, kind)
	if err != nil {
		return err
	}
	if old != nil && old.TokenOwner == "" {
		newOwner.CurrentToken, newOwner.ProvisionalToken, newOwner.ProvisionedAt = old.CurrentToken, old.ProvisionalToken, old.ProvisionedAt
		newOwner.SwitchOutcomeUnknown, newOwner.RotationState, newOwner.TokenSource = old.SwitchOutcomeUnknown, old.RotationState, old.TokenSource
		newOwner.LastVaultRotation, newOwner.NextVaultRotation = old.LastVaultRotation, old.NextVaultRotation
		newOwner.RetryAt, newOwner.Failures, newOwner.LastRotationError = old.RetryAt, old.Failures, old.LastRotationError
		newOwner.RotationPeriod, newOwner.RotationSchedule, newOwner.RotationWindow = old.RotationPeriod, old.RotationSchedule, old.RotationWindow
		newOwner.ProvisionAhead, newOwner.DisableAutomatedRotation = old.ProvisionAhead, old.DisableAutomatedRotation
		newOwner.GroupID, newOwner.GroupResolved, newOwner.GroupLookupFailed = old.GroupID, old.GroupResolved, old.GroupLookupFailed
	}
	newOwner.TokenOwner = ""
	if err := putIntegration(ctx, s, newOwner); err != nil {
		return err
	}
	if old != nil && old.TokenOwner == "" {
		old.TokenOwner = newKey
		old.CurrentToken, old.ProvisionalToken, old.ProvisionedAt, old.SwitchOutcomeUnknown = "", "", time.Time{}, false
		old.RotationState, old.RetryAt, old.Failures, old.LastRotationError = "", time.Time{}, 0, ""
		old.TokenSource = sourceCloned
		if err := putIntegration(ctx, s, old); err != nil {
			return err
		}
	}
	entries, err := listIntegrations(ctx, s)
	if err != nil {
		return err
	}
	for _, e := range entries {
		if e.TokenOwner != oldKey || queueKey(e.Name, e.SCM) == newKey {
			continue
		}
		e.TokenOwner = newKey
		if err := putIntegration(ctx, s, e); err != nil {
			return err
		}
	}
	// The queue and the group's slot follow the token.
	cfg, err := b.configOrDefaults(ctx, s)
	if err != nil {
		return err
	}
	if newOwner.ProvisionalToken != "" {
		b.rotation.release(oldKey)
		b.rotation.hold(laneKey(newOwner), newKey)
	}
	b.rotation.forget(oldKey)
	b.rotation.schedule(newOwner, cfg)
	if old != nil {
		b.rotation.schedule(old, cfg)
	}
	b.log().Info("handed a token family over", "old_owner", oldKey, "new_owner", newKey)
	return nil
}

// promoteRollback finishes a hand-over a crash interrupted.
func (b *backend) promoteRollback(ctx context.Context, s logical.Storage, data interface{}) error {
	var w promoteWAL
	if err := mapToStruct(data, &w); err != nil {
		return err
	}
	name, kind := splitQueueKey(w.NewOwner)
	unlock := b.lockIntegrations(w.NewOwner, w.OldOwner)
	defer unlock()
	e, err := getIntegration(ctx, s, name, kind)
	if err != nil || e == nil {
		return err
	}
	return b.finishPromotion(ctx, s, w.OldOwner, e)
}
