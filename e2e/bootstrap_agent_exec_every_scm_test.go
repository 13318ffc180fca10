package e2e

import (
	"path/filepath"
	"strings"
	"testing"
)

// TestBootstrapAgentExecConfigsEverySCM runs every bootstrap/agent/
// broker-client-<scm>.hcl with a real Vault Agent and a stand-in `broker`
// that records how it was started, for a real integration of that SCM: the
// client must get `broker client` and every variable of the engine's env map
// for it, with the engine's values (BROKER_CLIENT_URL excepted: it is the
// client's own address, passed through Agent's environment).
func TestBootstrapAgentExecConfigsEverySCM(t *testing.T) {
	s := sharedStack(t)
	agentDir := filepath.Join(bootstrapDir(t), "agent")
	cases := map[string]scmCase{}
	for _, tc := range scmCases(t, s) {
		if _, ok := cases[tc.scm]; !ok || tc.name == "scm-bitbucket-token" {
			cases[tc.scm] = tc
		}
	}
	configs, err := filepath.Glob(filepath.Join(agentDir, "broker-client-*.hcl"))
	if err != nil || len(configs) < 4 {
		t.Fatalf("exec-mode Agent configs: %v %v", configs, err)
	}
	for _, cfg := range configs {
		kind := strings.TrimSuffix(strings.TrimPrefix(filepath.Base(cfg), "broker-client-"), ".hcl")
		tc, ok := cases[kind]
		if !ok {
			t.Errorf("%s: no SCM named %q", cfg, kind)
			continue
		}
		t.Run(kind, func(t *testing.T) {
			name := "bootstrap-exec-" + strings.ReplaceAll(kind, "-", "")
			orgID := newUUID(t)
			s.sim.addOrg(t, orgID, "e2e "+name)
			data := map[string]interface{}{"org_id": orgID}
			for k, v := range tc.data {
				data[k] = v
			}
			s.ensureIntegration(t, name, kind, data)
			secretPath := mountPath + "/broker/" + name + "/" + kind
			policy := "bootstrap-exec-" + name
			if err := s.vault.client.Sys().PutPolicy(policy, bootstrapReaderPolicy(t, mountPath, name, kind)); err != nil {
				t.Fatal(err)
			}
			token := bootstrapToken(t, s, true, policy)

			got := bootstrapRunStubBroker(t, s, token, cfg, "SNYK_BROKER_SECRET="+secretPath)
			if got["ARGS"] != "client" {
				t.Errorf("broker started with arguments %q, want client", got["ARGS"])
			}
			want := bootstrapEnvMap(t, s.read(t, secretPath))
			delete(want, "BROKER_CLIENT_URL")
			if len(want) < 4 {
				t.Fatalf("env map %v too small", keysOf(want))
			}
			for k, v := range want {
				if got[k] != v {
					t.Errorf("broker client started with %s=%q, want the engine's %q", k, got[k], v)
				}
			}
		})
	}
}
