package e2e

import (
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// TestBootstrapPolicies loads policies/snyk-operator.hcl as shipped and the
// broker-reader template rendered for payments/github into a real Vault and
// checks, against the real engine, what tokens carrying only one of them may
// and may not do. It uses a stack of its own: the operator rewrites
// snyk/config, deletes an integration and rotates payments/github.
func TestBootstrapPolicies(t *testing.T) {
	s := newTestStack(t)
	i := s.sim.info
	s.ensurePaymentsGitHub(t)
	s.ensureIntegration(t, "platform", "github", map[string]interface{}{
		"org_id":      i.Orgs["platform"],
		"scm_token":   i.GitHubToken,
		"scm_api_url": i.GitHubURL,
	})

	operatorHCL := bootstrapReadFile(t, filepath.Join(bootstrapDir(t), "policies", "snyk-operator.hcl"))
	if err := s.vault.client.Sys().PutPolicy("snyk-operator", operatorHCL); err != nil {
		t.Fatalf("loading policies/snyk-operator.hcl: %v", err)
	}
	readerHCL := bootstrapReaderPolicy(t, mountPath, "payments", "github")
	if !strings.Contains(readerHCL, `path "snyk/broker/payments/github"`) {
		t.Fatalf("rendered broker-reader policy does not name snyk/broker/payments/github:\n%s", readerHCL)
	}
	if err := s.vault.client.Sys().PutPolicy("snyk-broker-payments-github", readerHCL); err != nil {
		t.Fatalf("loading the rendered broker-reader policy: %v", err)
	}

	brokerPath := mountPath + "/broker/payments/github"
	otherBroker := mountPath + "/broker/platform/github"
	rotatePath := brokerPath + "/rotate"
	validate := map[string]interface{}{"scm": "github", "scm_token": i.GitHubToken, "scm_api_url": i.GitHubURL}

	t.Run("operator", func(t *testing.T) {
		op := s.vault.tokenClient(t, bootstrapToken(t, s, false, "snyk-operator"))
		const who = "snyk-operator token"

		// snyk/config: read, update, delete, create.
		cfg := bootstrapAllowed(t, op, who, "read", mountPath+"/config", nil)
		if cfg == nil || str(cfg.Data["auth_method"]) != "api_token" {
			t.Fatalf("%s: read snyk/config = %v, want auth_method api_token", who, cfg)
		}
		bootstrapAllowed(t, op, who, "write", mountPath+"/config", map[string]interface{}{"ttl": "30m"})
		if got := num(t, s.read(t, mountPath+"/config").Data["ttl"]); got != 1800 {
			t.Errorf("snyk/config ttl after the operator's update = %d, want 1800", got)
		}
		bootstrapAllowed(t, op, who, "delete", mountPath+"/config", nil)
		if sec, err := s.vault.client.Logical().Read(mountPath + "/config"); err != nil || sec != nil {
			t.Fatalf("snyk/config after the operator's delete = (%v, %v), want nothing", sec, err)
		}
		ca := bootstrapReadFile(t, i.CACertFile)
		bootstrapAllowed(t, op, who, "write", mountPath+"/config", map[string]interface{}{
			"api_token": i.APIToken, "api_url": i.SnykURL, "ca_cert": ca, "ttl": "1h",
		})
		cfg = bootstrapAllowed(t, op, who, "read", mountPath+"/config", nil)
		if cfg == nil || str(cfg.Data["auth_method"]) != "api_token" || num(t, cfg.Data["ttl"]) != 3600 {
			t.Fatalf("%s: snyk/config after re-creating it = %v, want auth_method api_token, ttl 3600", who, cfg)
		}

		// scm/validate: a dry run that really reaches the GitHub fake.
		v := bootstrapAllowed(t, op, who, "write", mountPath+"/scm/validate", validate)
		if v == nil || v.Data["valid"] != true {
			t.Errorf("%s: scm/validate = %v, want valid true", who, v)
		}

		// integrations: create, read, update, list, delete.
		orgID := newUUID(t)
		s.sim.addIntegration(t, orgID, "github", false)
		intPath := mountPath + "/integrations/bootstrap-ops/github"
		bootstrapAllowed(t, op, who, "write", intPath, map[string]interface{}{
			"org_id": orgID, "scm_token": i.GitHubToken, "scm_api_url": i.GitHubURL, "ttl": "10m",
		})
		in := bootstrapAllowed(t, op, who, "read", intPath, nil)
		if in == nil || str(in.Data["org_id"]) != orgID || str(in.Data["rotation_state"]) != "active" || num(t, in.Data["ttl"]) != 600 {
			t.Fatalf("%s: read %s = %v, want org_id %s, rotation_state active, ttl 600", who, intPath, in, orgID)
		}
		if in.Data["broker_token_fingerprint"] != fingerprintOf(s.sim.integration(t, orgID, "github").CurrentToken) {
			t.Errorf("%s: %s broker_token_fingerprint %v does not match the token Snyk issued", who, intPath, in.Data["broker_token_fingerprint"])
		}
		bootstrapAllowed(t, op, who, "write", intPath, map[string]interface{}{"ttl": "5m"})
		if got := num(t, s.read(t, intPath).Data["ttl"]); got != 300 {
			t.Errorf("%s ttl after the operator's update = %d, want 300", intPath, got)
		}
		top := bootstrapKeys(t, bootstrapAllowed(t, op, who, "list", mountPath+"/integrations", nil))
		for _, want := range []string{"bootstrap-ops/", "payments/", "platform/"} {
			if !bootstrapHas(top, want) {
				t.Errorf("%s: list snyk/integrations = %v, missing %s", who, top, want)
			}
		}
		if scms := bootstrapKeys(t, bootstrapAllowed(t, op, who, "list", mountPath+"/integrations/bootstrap-ops", nil)); !reflect.DeepEqual(scms, []string{"github"}) {
			t.Errorf("%s: list snyk/integrations/bootstrap-ops = %v, want [github]", who, scms)
		}
		bootstrapAllowed(t, op, who, "delete", intPath, nil)
		if sec, err := s.vault.client.Logical().Read(intPath); err != nil || sec != nil {
			t.Errorf("%s after the operator's delete = (%v, %v), want nothing", intPath, sec, err)
		}

		// rotate: Snyk's current token changes and the response reports it.
		old := s.sim.integration(t, i.Orgs["payments"], "github").CurrentToken
		r := bootstrapAllowed(t, op, who, "write", rotatePath, nil)
		cur := s.sim.integration(t, i.Orgs["payments"], "github").CurrentToken
		if cur == "" || cur == old {
			t.Errorf("%s: rotate did not change Snyk's current token (%q -> %q)", who, old, cur)
		}
		if r == nil || r.Data["broker_token_fingerprint"] != fingerprintOf(cur) {
			t.Errorf("%s: rotate response %v, want broker_token_fingerprint %s", who, r, fingerprintOf(cur))
		}

		// Universal Broker deployments: managed, rotated, never read.
		bootstrapAllowed(t, op, who, "write", universalPath, universalData(s))
		if ub := bootstrapAllowed(t, op, who, "read", universalPath, nil); ub == nil || str(ub.Data["deployment_id"]) != i.Universal.DeploymentID {
			t.Errorf("%s: read %s = %v", who, universalPath, ub)
		}
		if keys := bootstrapKeys(t, bootstrapAllowed(t, op, who, "list", mountPath+"/universal", nil)); !bootstrapHas(keys, "demo") {
			t.Errorf("%s: list snyk/universal = %v", who, keys)
		}
		bootstrapAllowed(t, op, who, "write", universalPath+"/credentials/MY_GITLAB_TOKEN", map[string]interface{}{"value": i.GitLabToken})
		if keys := bootstrapKeys(t, bootstrapAllowed(t, op, who, "list", universalPath+"/credentials", nil)); len(keys) != 2 {
			t.Errorf("%s: list credentials = %v", who, keys)
		}
		bootstrapAllowed(t, op, who, "write", universalPath+"/rotate", nil)
		bootstrapDenied(t, op, who, "read", universalEnvPath, nil)
		// The rotation's old secret is in its grace: deleting needs force.
		bootstrapAllowed(t, op, who, "delete", universalPath, map[string]interface{}{"force": true})

		// Operators manage tokens; they do not read them.
		bootstrapDenied(t, op, who, "read", brokerPath, nil)
		bootstrapDenied(t, op, who, "read", otherBroker, nil)
		bootstrapDenied(t, op, who, "read", "sys/mounts", nil)
		bootstrapDenied(t, op, who, "write", "sys/policies/acl/bootstrap-escalate", map[string]interface{}{"policy": `path "*" { capabilities = ["sudo"] }`})
	})

	t.Run("broker-reader", func(t *testing.T) {
		rd := s.vault.tokenClient(t, bootstrapToken(t, s, false, "snyk-broker-payments-github"))
		const who = "snyk-broker-payments-github token"

		sec := bootstrapAllowed(t, rd, who, "read", brokerPath, nil)
		if sec == nil {
			t.Fatalf("%s: read %s returned nothing", who, brokerPath)
		}
		cur := s.sim.integration(t, i.Orgs["payments"], "github").CurrentToken
		if got := str(sec.Data["broker_token"]); got == "" || got != cur {
			t.Errorf("%s: broker_token %q, want Snyk's current token %q", who, got, cur)
		}
		if em := bootstrapEnvMap(t, sec); em["BROKER_TOKEN"] != cur || em["GITHUB_TOKEN"] != i.GitHubToken {
			t.Errorf("%s: env BROKER_TOKEN %q GITHUB_TOKEN %q, want %q and %q", who, em["BROKER_TOKEN"], em["GITHUB_TOKEN"], cur, i.GitHubToken)
		}
		if sec.LeaseID == "" || sec.LeaseDuration <= 0 {
			t.Errorf("%s: broker read has no lease (id %q, duration %d)", who, sec.LeaseID, sec.LeaseDuration)
		}

		bootstrapDenied(t, rd, who, "read", otherBroker, nil)
		bootstrapDenied(t, rd, who, "read", mountPath+"/config", nil)
		bootstrapDenied(t, rd, who, "write", mountPath+"/config", map[string]interface{}{"ttl": "1m"})
		bootstrapDenied(t, rd, who, "read", mountPath+"/integrations/payments/github", nil)
		bootstrapDenied(t, rd, who, "write", mountPath+"/integrations/payments/github", map[string]interface{}{"ttl": "1m"})
		bootstrapDenied(t, rd, who, "write", rotatePath, nil)
		bootstrapDenied(t, rd, who, "list", mountPath+"/integrations", nil)
		bootstrapDenied(t, rd, who, "list", mountPath+"/integrations/payments", nil)
		bootstrapDenied(t, rd, who, "write", mountPath+"/scm/validate", validate)

		// The 403 on the other org is the policy's: root sees it.
		if root := s.read(t, otherBroker); str(root.Data["broker_token"]) == "" {
			t.Errorf("root read of %s has no broker_token", otherBroker)
		}
	})
}
