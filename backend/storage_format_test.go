package backend

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/vault/sdk/logical"
)

// rewriteStored rewrites the stored JSON at key through edit, as an older or
// newer version of the plugin would have left it.
func (env *testEnv) rewriteStored(key string, edit func(map[string]interface{})) {
	env.t.Helper()
	ctx := context.Background()
	entry, err := env.storage.Get(ctx, key)
	if err != nil || entry == nil {
		env.t.Fatalf("stored %s: %v", key, err)
	}
	var raw map[string]interface{}
	if err := json.Unmarshal(entry.Value, &raw); err != nil {
		env.t.Fatal(err)
	}
	edit(raw)
	value, err := json.Marshal(raw)
	if err != nil {
		env.t.Fatal(err)
	}
	if err := env.storage.Put(ctx, &logical.StorageEntry{Key: key, Value: value}); err != nil {
		env.t.Fatal(err)
	}
}

func (env *testEnv) storedFormat(key string) interface{} {
	env.t.Helper()
	entry, err := env.storage.Get(context.Background(), key)
	if err != nil || entry == nil {
		env.t.Fatalf("stored %s: %v", key, err)
	}
	var raw map[string]interface{}
	if err := json.Unmarshal(entry.Value, &raw); err != nil {
		env.t.Fatal(err)
	}
	return raw["storage_format"]
}

// TestStorageFormatUpgradesOlderEntries: entries written before entries
// carried a format (format 0) are read after a restart as they were: the
// same token served, the same schedule, and the next write stamps the current
// format.
func TestStorageFormatUpgradesOlderEntries(t *testing.T) {
	env := newTestEnv(t)
	env.configure(nil)
	env.snyk.AddIntegration(testOrgID, "github", false)
	env.mustOK(logical.CreateOperation, "integrations/payments/github", mergeData(env.integrationData("github"), map[string]interface{}{"org_id": testOrgID}))
	env.mustOK(logical.CreateOperation, "roles/ci", map[string]interface{}{"org_id": testOrgID, "role_id": "11111111-2222-4333-8444-555555555555"})
	before := env.mustOK(logical.ReadOperation, "integrations/payments/github", nil).Data
	token := env.servedBy("payments")

	keys := []string{configStoragePath, integrationStorageKey("payments", "github"), roleStoragePrefix + "ci"}
	for _, key := range keys {
		if got := env.storedFormat(key); got != float64(storageFormat) {
			t.Fatalf("%s stored with format %v, want %d", key, got, storageFormat)
		}
		env.rewriteStored(key, func(raw map[string]interface{}) { delete(raw, "storage_format") })
	}
	env.restart()

	after := env.mustOK(logical.ReadOperation, "integrations/payments/github", nil).Data
	for _, field := range []string{"next_vault_rotation", "next_switch_at", "rotation_state", "broker_token_fingerprint", "ttl"} {
		if after[field] != before[field] {
			t.Fatalf("%s: %v before the upgrade, %v after", field, before[field], after[field])
		}
	}
	if env.servedBy("payments") != token {
		t.Fatal("another token is served after the upgrade")
	}
	env.mustOK(logical.ReadOperation, "roles/ci", nil)
	env.mustOK(logical.UpdateOperation, "integrations/payments/github", map[string]interface{}{"ttl": "2h"})
	env.mustOK(logical.UpdateOperation, "config", map[string]interface{}{"ttl": "2h"})
	for _, key := range keys[:2] {
		if got := env.storedFormat(key); got != float64(storageFormat) {
			t.Fatalf("%s: format %v after a write, want %d", key, got, storageFormat)
		}
	}
}

// TestStorageFormatNewerRefused: an entry written by a newer version (after a
// downgrade) is refused with what to do, never misread or rotated.
func TestStorageFormatNewerRefused(t *testing.T) {
	env := newTestEnv(t)
	env.configure(nil)
	env.snyk.AddIntegration(testOrgID, "github", false)
	env.mustOK(logical.CreateOperation, "integrations/payments/github", mergeData(env.integrationData("github"), map[string]interface{}{"org_id": testOrgID}))
	env.rewriteStored(integrationStorageKey("payments", "github"), func(raw map[string]interface{}) { raw["storage_format"] = storageFormat + 1 })
	minted := len(env.snyk.Minted())
	env.restart()
	env.advance(100*24*time.Hour, time.Hour)

	_, err := env.request(logical.ReadOperation, "broker/payments/github", nil)
	if err == nil || !strings.Contains(err.Error(), "newer version of this plugin") || !strings.Contains(err.Error(), "-plugin-version") {
		t.Fatalf("reading an entry of a newer format: %v", err)
	}
	if got := len(env.snyk.Minted()); got != minted {
		t.Fatalf("%d tokens minted for an entry this version cannot read", got-minted)
	}
	// The unreadable entry does not block the rest of the mount.
	env.snyk.AddIntegration(testOtherOrgID, "github", false)
	env.mustOK(logical.CreateOperation, "integrations/platform/github", mergeData(env.integrationData("github"), map[string]interface{}{"org_id": testOtherOrgID}))
}
