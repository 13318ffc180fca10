package e2e

import (
	"testing"
	"time"
)

// TestTokenFamilyInRealVault: an integration cloned into two more orgs of
// the group through the real Vault: the family's rotation switches every
// member's token together, and all three serve the same token after it.
func TestTokenFamilyInRealVault(t *testing.T) {
	s := sharedStack(t)
	var orgs []string
	for _, name := range []string{"family-a", "family-b", "family-c"} {
		org := newUUID(t)
		if err := s.sim.adminDo("POST", "/orgs", map[string]string{"OrgID": org, "GroupID": s.sim.info.GroupID, "Name": name, "org_id": org, "group_id": s.sim.info.GroupID, "name": name}, nil); err != nil {
			t.Fatal(err)
		}
		orgs = append(orgs, org)
	}
	s.sim.addIntegration(t, orgs[0], "github", false)
	s.write(t, mountPath+"/integrations/family-a/github", map[string]interface{}{
		"org_id": orgs[0], "scm_token": s.sim.info.GitHubToken, "scm_api_url": s.sim.info.GitHubURL,
		"rotation_period": "20s", "provision_ahead": "8s", "ttl": "10s",
	})
	s.write(t, mountPath+"/integrations/family-a/github/clone", map[string]interface{}{"destination_org_id": orgs[1], "destination_name": "family-b"})
	s.write(t, mountPath+"/integrations/family-a/github/clone", map[string]interface{}{"destination_org_id": orgs[2], "destination_name": "family-c"})
	t.Cleanup(func() {
		for _, n := range []string{"family-b", "family-c", "family-a"} {
			_, _ = s.vault.client.Logical().Delete(mountPath + "/integrations/" + n + "/github")
		}
	})
	served := func(name string) string {
		return str(s.read(t, mountPath+"/broker/"+name+"/github").Data["broker_token"])
	}
	first := served("family-a")
	for _, n := range []string{"family-b", "family-c"} {
		if served(n) != first {
			t.Fatalf("%s serves another token", n)
		}
	}
	start := time.Now()
	var next string
	err := waitFor(60*time.Second, 250*time.Millisecond, func() (bool, error) {
		next = served("family-a")
		return next != first, nil
	})
	if err != nil {
		t.Fatalf("the family did not rotate: %v", err)
	}
	report(t, "token family: three orgs rotated together "+time.Since(start).Round(100*time.Millisecond).String()+" after cloning")
	for i, n := range []string{"family-a", "family-b", "family-c"} {
		if served(n) != next {
			t.Fatalf("%s does not serve the new token", n)
		}
		in := s.sim.integration(t, orgs[i], "github")
		if in.CurrentToken != next {
			t.Fatalf("Snyk routes %s by another token", n)
		}
		// One rotation of the family is one provision and one switch, both
		// made by the owner; the owner may already have provisioned the
		// next rotation's token, which Snyk then holds as provisional.
		wantProvisions, wantSwitches := 0, 0
		if i == 0 {
			wantProvisions, wantSwitches = 1, 1
			if in.ProvisionalToken != "" {
				wantProvisions = 2
			}
		}
		if in.Provisions != wantProvisions || in.Switches != wantSwitches {
			t.Fatalf("%s: %d provisions and %d switches at Snyk, want %d and %d", n, in.Provisions, in.Switches, wantProvisions, wantSwitches)
		}
	}
	report(t, "token family of three orgs: one provision and one switch per rotation, all made by the owner")
	if _, err := s.vault.client.Logical().Write(mountPath+"/broker/family-b/github/rotate", nil); responseStatus(err) != 400 {
		t.Fatalf("rotating a sharer: %v", err)
	}
}
