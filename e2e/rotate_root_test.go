package e2e

import (
	"os"
	"strings"
	"testing"

	"github.com/hashicorp/vault/api"
)

// TestRotateRootInRealVault: a second mount of the engine, configured with an
// OAuth service account, rotates its own client secret through the real
// Vault; the new credential works (a config write verifies it at Snyk), and
// an API-token mount answers rotate-root with a 400 that says why.
func TestRotateRootInRealVault(t *testing.T) {
	s := sharedStack(t)
	const mount = "snyk-root"
	if err := s.vault.client.Sys().Mount(mount, &api.MountInput{
		Type: pluginName, Config: api.MountConfigInput{PluginVersion: env.version},
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.vault.client.Sys().Unmount(mount) })
	ca, err := os.ReadFile(s.sim.info.CACertFile)
	if err != nil {
		t.Fatal(err)
	}
	i := s.sim.info
	s.write(t, mount+"/config", map[string]interface{}{
		"client_id": i.RotatableClientID, "client_secret": i.RotatableClientSecret,
		"service_account_id": i.ServiceAccountID, "service_account_org_id": i.ServiceAccountOrgID,
		"api_url": i.SnykURL, "ca_cert": string(ca),
	})
	before := str(s.read(t, mount+"/config").Data["credential_fingerprint"])

	rotated := s.write(t, mount+"/config/rotate-root", nil)
	if rotated.Data["root_rotated_at"] == nil || rotated.Data["previous_secret_retired"] != true {
		t.Fatalf("rotate-root: %v", rotated.Data)
	}
	cfg := s.read(t, mount+"/config")
	if str(cfg.Data["credential_fingerprint"]) == before || cfg.Data["root_rotated_at"] == nil {
		t.Fatalf("the credential did not change: %v", cfg.Data)
	}
	// A config write verifies the stored (new) credential at Snyk.
	s.write(t, mount+"/config", map[string]interface{}{"ttl": "30m"})
	// The old secret is gone at Snyk: configuring it again is refused.
	if _, err := s.vault.client.Logical().Write(mount+"/config", map[string]interface{}{"client_secret": i.RotatableClientSecret}); responseStatus(err) != 400 {
		t.Fatalf("the old client secret still works at Snyk: %v", err)
	}

	// The API-token mount cannot rotate its credential, and says why.
	_, err = s.vault.client.Logical().Write(mountPath+"/config/rotate-root", nil)
	if responseStatus(err) != 400 || !containsAll(err.Error(), "API token", "no API to rotate") {
		t.Fatalf("rotate-root on an API token: %v", err)
	}
}

func containsAll(s string, parts ...string) bool {
	for _, p := range parts {
		if !strings.Contains(s, p) {
			return false
		}
	}
	return true
}
