package manifests

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TestUniversalVSORecipe validates bootstrap/kubernetes/universal-broker-vso.yaml
// against Vault Secrets Operator's CRDs and cross-checks it with the
// snyk-universal-broker chart values beside it: the Secret VSO writes is the
// one the chart reads for both the platform credentials and the credential
// references, and what the transformation keeps is exactly the client's
// variables.
func TestUniversalVSORecipe(t *testing.T) {
	root := repoRoot(t)
	docs := decodeDocs(t, "universal-broker-vso.yaml", readFile(t, filepath.Join(root, "bootstrap", "kubernetes", "universal-broker-vso.yaml")))
	crds := loadCRDSchemas(t)
	for _, d := range docs {
		kind, _ := d["kind"].(string)
		if !strings.HasPrefix(fmt.Sprint(d["apiVersion"]), "secrets.hashicorp.com/") {
			continue
		}
		schema, ok := crds[kind]
		if !ok {
			t.Fatalf("no vendored CRD for kind %s", kind)
		}
		if err := schema.Validate(toJSONValue(t, d)); err != nil {
			t.Errorf("%s does not match VSO's CRD: %v", kind, err)
		}
	}
	vds := findKind(t, docs, "VaultDynamicSecret")
	spec := vds["spec"].(map[string]any)
	if spec["mount"] != "snyk" || spec["path"] != "universal/prod/env" || spec["allowStaticCreds"] != true {
		t.Fatalf("VaultDynamicSecret reads %v/%v (allowStaticCreds %v), want snyk/universal/prod/env with static creds", spec["mount"], spec["path"], spec["allowStaticCreds"])
	}
	if target := dig(spec, "rolloutRestartTargets", 0, "kind"); target != "StatefulSet" {
		t.Errorf("restart target kind %v: the snyk-universal-broker chart runs a StatefulSet", target)
	}
	secret := dig(spec, "destination", "name")

	values := decodeDocs(t, "values-snyk-universal-broker.yaml", readFile(t, filepath.Join(root, "bootstrap", "helm", "values-snyk-universal-broker.yaml")))
	if len(values) != 1 {
		t.Fatalf("values file: %d documents", len(values))
	}
	for _, key := range []string{"platformAuthSecret", "credentialReferencesSecret"} {
		if got := dig(values[0], key, "name"); got != secret {
			t.Errorf("values %s.name = %v, want the Secret VSO writes (%v)", key, got, secret)
		}
	}

	// What the engine's env read returns, and what the Secret must keep.
	served := []string{"DEPLOYMENT_ID", "CLIENT_ID", "CLIENT_SECRET", "UNIVERSAL_BROKER_ENABLED", "UNIVERSAL_BROKER_GA",
		"BROKER_SERVER_URL", "API_BASE_URL", "BROKER_CLIENT_URL", "MY_GITHUB_TOKEN", "app.pem",
		"env", "ttl", "next_client_secret", "next_switch_at", "last_vault_rotation", "next_vault_rotation", "rotation_period", "rotation_schedule", "rotation_window"}
	var excludes []*regexp.Regexp
	for _, e := range dig(spec, "destination", "transformation", "excludes").([]any) {
		excludes = append(excludes, regexp.MustCompile(e.(string)))
	}
	for i, key := range served {
		excluded := false
		for _, re := range excludes {
			excluded = excluded || re.MatchString(key)
		}
		client := i < 10
		if excluded == client {
			t.Errorf("key %s: excluded %v, want %v (the Secret keeps exactly the client's variables)", key, excluded, !client)
		}
	}
}

func readFile(t *testing.T, path string) []byte {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return raw
}
