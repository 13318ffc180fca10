package e2e

import (
	"strings"
	"testing"
)

// TestUndocumentedAnswersThroughVault drives two behaviour profiles through
// the real Vault and plugin binary: a 409 "… is not brokered." must lead to
// Broker being enabled, and a refusal whose words say nothing must stop the
// create with Snyk's answer and the way to proceed, storing nothing.
func TestUndocumentedAnswersThroughVault(t *testing.T) {
	s := sharedStack(t)
	gh := map[string]interface{}{"scm_token": s.sim.info.GitHubToken, "scm_api_url": s.sim.info.GitHubURL}
	create := func(org string, extra map[string]interface{}) (map[string]interface{}, error) {
		data := map[string]interface{}{"org_id": org}
		for k, v := range gh {
			data[k] = v
		}
		for k, v := range extra {
			data[k] = v
		}
		sec, err := s.vault.client.Logical().Write(mountPath+"/integrations/"+org+"/github", data)
		if err != nil || sec == nil {
			return nil, err
		}
		return sec.Data, nil
	}

	t.Run("409 not brokered enables Broker", func(t *testing.T) {
		s.sim.setProfile(t, "status-409-wording-1")
		org := newUUID(t)
		s.sim.addOrg(t, org, "answers-409")
		id, _ := s.sim.addIntegration(t, org, "github", false)
		data, err := create(org, nil)
		if err != nil {
			t.Fatalf("create: %v", err)
		}
		if data["token_source"] != "enabled" || data["integration_id"] != id {
			t.Fatalf("create: %v", data)
		}
		tok := str(s.read(t, mountPath+"/broker/"+org+"/github").Data["broker_token"])
		if current, _ := s.sim.tokenStatus(t, tok); !current {
			t.Fatal("the served token is not the one Snyk routes by")
		}
	})

	t.Run("unreadable refusal stops the create", func(t *testing.T) {
		s.sim.setProfile(t, "status-422-wording-3")
		org := newUUID(t)
		s.sim.addOrg(t, org, "answers-422")
		s.sim.addIntegration(t, org, "github", false)
		before := s.sim.calls(t, "snyk")["PUT /v1/org/{orgId}/integrations/{integrationId}"]
		_, err := create(org, nil)
		if responseStatus(err) != 400 || !strings.Contains(err.Error(), "HTTP 422") || !strings.Contains(err.Error(), "broker_token_source=enable") {
			t.Fatalf("want a 400 showing Snyk's answer and the way on, got %v", err)
		}
		if sec, err := s.vault.client.Logical().Read(mountPath + "/integrations/" + org + "/github"); err != nil || sec != nil {
			t.Fatalf("a refused create stored the integration: %v %v", sec, err)
		}
		if after := s.sim.calls(t, "snyk")["PUT /v1/org/{orgId}/integrations/{integrationId}"]; after != before {
			t.Fatal("Vault enabled Broker on an answer it could not read")
		}
		data, err := create(org, map[string]interface{}{"broker_token_source": "enable"})
		if err != nil || data["token_source"] != "enabled" {
			t.Fatalf("create with broker_token_source=enable: %v %v", data, err)
		}
	})
}
