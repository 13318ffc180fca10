package e2e

import (
	"strings"
	"testing"

	"github.com/hashicorp/vault/api"
)

// TestACLBrokerPolicy checks that a policy on snyk/broker/payments/* lets a
// token read only that org's broker secrets.
func TestACLBrokerPolicy(t *testing.T) {
	s := sharedStack(t)
	s.ensurePaymentsGitHub(t)
	s.ensureIntegration(t, "platform", "github", map[string]interface{}{
		"org_id":      s.sim.info.Orgs["platform"],
		"scm_token":   s.sim.info.GitHubToken,
		"scm_api_url": s.sim.info.GitHubURL,
	})
	policy := `path "snyk/broker/payments/*" {
  capabilities = ["read"]
}
`
	if err := s.vault.client.Sys().PutPolicy("payments-broker-reader", policy); err != nil {
		t.Fatal(err)
	}
	tok, err := s.vault.client.Auth().Token().Create(&api.TokenCreateRequest{
		Policies: []string{"payments-broker-reader"},
		TTL:      "10m",
	})
	if err != nil {
		t.Fatal(err)
	}
	c := s.vault.tokenClient(t, tok.Auth.ClientToken)

	sec, err := c.Logical().Read(mountPath + "/broker/payments/github")
	if err != nil || sec == nil {
		t.Fatalf("policy holder reading snyk/broker/payments/github: %v (secret %v)", err, sec)
	}
	want := s.sim.integration(t, s.sim.info.Orgs["payments"], "github").CurrentToken
	if got := str(sec.Data["broker_token"]); got != want {
		t.Errorf("broker_token = %q, want %q", got, want)
	}

	denied := []struct{ op, path string }{
		{"read", mountPath + "/broker/platform/github"},
		{"read", mountPath + "/config"},
		{"read", mountPath + "/integrations/payments/github"},
		{"write", mountPath + "/broker/payments/github/rotate"},
		{"list", mountPath + "/integrations"},
	}
	for _, d := range denied {
		var err error
		switch d.op {
		case "read":
			_, err = c.Logical().Read(d.path)
		case "write":
			_, err = c.Logical().Write(d.path, nil)
		case "list":
			_, err = c.Logical().List(d.path)
		}
		if responseStatus(err) != 403 || !strings.Contains(err.Error(), "permission denied") {
			t.Errorf("%s %s with the payments-only token: err %v, want 403 permission denied", d.op, d.path, err)
		}
	}
	// The root token does see the other org: the 403 above is the policy's.
	if sec := s.read(t, mountPath+"/broker/platform/github"); str(sec.Data["broker_token"]) == "" {
		t.Errorf("root read of snyk/broker/platform/github has no broker_token")
	}
}
