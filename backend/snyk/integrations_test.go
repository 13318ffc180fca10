package snyk_test

import (
	"context"
	"fmt"
	"net/http"
	"regexp"
	"strings"
	"testing"

	"github.com/snyk-vault/vault-plugin-secrets-snyk/backend/snyk"
	"github.com/snyk-vault/vault-plugin-secrets-snyk/backend/snyk/snyktest"
)

var uuidV4 = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)

func TestIntegrationLifecycle(t *testing.T) {
	e := newEnv(t, envOpts{})
	ctx := context.Background()
	e.secret("ghp_scmtoken")

	got, err := e.client.ListIntegrations(ctx, orgA1)
	if err != nil || len(got) != 0 {
		t.Fatalf("empty list: %v, %v", got, err)
	}

	gh, err := e.client.AddIntegration(ctx, orgA1, "github", false, map[string]string{"token": "ghp_scmtoken"})
	if err != nil || gh.ID == "" || gh.BrokerToken != "" {
		t.Fatalf("add github: %+v, %v", gh, err)
	}
	if r := e.lastRequest(); r.method != "POST" || r.header.Get("Content-Type") != "application/json; charset=utf-8" {
		t.Fatalf("add request: %s %v", r.method, r.header)
	}

	gl, err := e.client.AddIntegration(ctx, orgA1, "gitlab", true, nil)
	if err != nil {
		t.Fatal(err)
	}
	e.secret(gl.BrokerToken)
	if !uuidV4.MatchString(gl.BrokerToken) || gl.BrokerToken != e.fake.CurrentToken(gl.ID) || !e.fake.Brokered(gl.ID) {
		t.Fatalf("add gitlab: %+v (fake has %q)", gl, e.fake.CurrentToken(gl.ID))
	}

	got, err = e.client.ListIntegrations(ctx, orgA1)
	if err != nil || got["github"] != gh.ID || got["gitlab"] != gl.ID || len(got) != 2 {
		t.Fatalf("list: %v, %v", got, err)
	}
	if id, err := e.client.IntegrationByType(ctx, orgA1, "gitlab"); err != nil || id != gl.ID {
		t.Fatalf("by type: %q, %v", id, err)
	}
	_, err = e.client.IntegrationByType(ctx, orgA1, "azure-repos")
	if ae := apiErr(t, err); ae.Status != 404 || !strings.Contains(ae.Message, "was not found") {
		t.Fatalf("missing type: %+v", ae)
	}

	en, err := e.client.EnableBroker(ctx, orgA1, gh.ID, "github")
	if err != nil {
		t.Fatal(err)
	}
	e.secret(en.BrokerToken)
	if en.ID != gh.ID || en.BrokerToken != e.fake.CurrentToken(gh.ID) || !e.fake.Brokered(gh.ID) {
		t.Fatalf("enable: %+v", en)
	}
	if r := e.lastRequest(); r.method != "PUT" || r.path != "/v1/org/"+orgA1+"/integrations/"+gh.ID {
		t.Fatalf("enable request: %s %s", r.method, r.path)
	}

	p, err := e.client.ProvisionToken(ctx, orgA1, gl.ID)
	if err != nil {
		t.Fatal(err)
	}
	e.secret(p)
	if !uuidV4.MatchString(p) || p == gl.BrokerToken || e.fake.ProvisionalToken(gl.ID) != p || e.fake.GroupProvisionalHolder(groupA) != gl.ID {
		t.Fatalf("provision: %q", p)
	}
	if !e.fake.TokenIsCurrent(gl.BrokerToken) || e.fake.TokenIsCurrent(p) || !e.fake.TokenIsProvisional(p) {
		t.Fatal("before the switch the old token stays current")
	}

	if err := e.client.SwitchToken(ctx, orgA1, gl.ID); err != nil {
		t.Fatal(err)
	}
	if e.fake.CurrentToken(gl.ID) != p || e.fake.ProvisionalToken(gl.ID) != "" || e.fake.GroupProvisionalHolder(groupA) != "" {
		t.Fatal("switch did not make the provisional token current")
	}
	if e.fake.TokenIsCurrent(gl.BrokerToken) {
		t.Fatal("old token still current")
	}

	clone, err := e.client.CloneIntegration(ctx, orgA1, gl.ID, orgA2)
	if err != nil {
		t.Fatal(err)
	}
	if e.fake.IntegrationIDs(orgA2)["gitlab"] != clone || e.fake.CurrentToken(clone) != p || !e.fake.Brokered(clone) {
		t.Fatalf("clone %q: ids %v", clone, e.fake.IntegrationIDs(orgA2))
	}

	want := map[string]int{
		snyktest.RouteListIntegrations:  2,
		snyktest.RouteAddIntegration:    2,
		snyktest.RouteIntegrationByType: 2,
		snyktest.RouteUpdateIntegration: 1,
		snyktest.RouteProvisionToken:    1,
		snyktest.RouteSwitchToken:       1,
		snyktest.RouteClone:             1,
	}
	counts := e.fake.Faults().CallCounts()
	for route, n := range want {
		if counts[route] != n {
			t.Errorf("%s: %d calls, want %d (%s)", route, counts[route], n, e.fake.Faults())
		}
	}
	if len(counts) != len(want) {
		t.Errorf("unexpected routes called: %s", e.fake.Faults())
	}
}

func TestAddIntegrationDuplicate(t *testing.T) {
	e := newEnv(t, envOpts{})
	mustBrokered(t, e, orgA1, "github")
	_, err := e.client.AddIntegration(context.Background(), orgA1, "github", true, nil)
	if ae := apiErr(t, err); ae.Status != 409 || !strings.Contains(ae.Message, "already exists") {
		t.Fatalf("got %+v", ae)
	}
}

func TestEnableBrokerOnBrokered(t *testing.T) {
	ctx := context.Background()
	t.Run("same-token", func(t *testing.T) {
		e := newEnv(t, envOpts{})
		id, tok := mustBrokered(t, e, orgA1, "github")
		in, err := e.client.EnableBroker(ctx, orgA1, id, "github")
		if err != nil || in.BrokerToken != tok {
			t.Fatalf("got %+v, %v", in, err)
		}
	})
	t.Run("new-token", func(t *testing.T) {
		e := newEnv(t, envOpts{})
		e.fake.SetBehaviour(snyktest.Behaviour{EnableOnBrokered: snyktest.EnableNewToken})
		id, tok := mustBrokered(t, e, orgA1, "github")
		in, err := e.client.EnableBroker(ctx, orgA1, id, "github")
		e.secret(in.BrokerToken)
		if err != nil || in.BrokerToken == tok || e.fake.CurrentToken(id) != in.BrokerToken {
			t.Fatalf("got %+v, %v", in, err)
		}
	})
	t.Run("error", func(t *testing.T) {
		e := newEnv(t, envOpts{})
		e.fake.SetBehaviour(snyktest.Behaviour{EnableOnBrokered: snyktest.EnableError})
		id, tok := mustBrokered(t, e, orgA1, "github")
		_, err := e.client.EnableBroker(ctx, orgA1, id, "github")
		if snyk.StatusOf(err) != 409 || e.fake.CurrentToken(id) != tok {
			t.Fatalf("got %v", err)
		}
	})
	t.Run("type mismatch", func(t *testing.T) {
		e := newEnv(t, envOpts{})
		id, _ := mustBrokered(t, e, orgA1, "github")
		_, err := e.client.EnableBroker(ctx, orgA1, id, "gitlab")
		if snyk.StatusOf(err) != 400 {
			t.Fatalf("got %v", err)
		}
	})
	t.Run("unknown integration", func(t *testing.T) {
		e := newEnv(t, envOpts{})
		_, err := e.client.EnableBroker(ctx, orgA1, "e0e0e0e0-0000-4000-8000-000000000000", "github")
		if ae := apiErr(t, err); ae.Status != 404 || !strings.Contains(ae.Message, "was not found") {
			t.Fatalf("got %+v", ae)
		}
	})
}

func TestProvisionConflictInGroup(t *testing.T) {
	ctx := context.Background()
	for _, status := range []int{0, http.StatusBadRequest, http.StatusUnprocessableEntity} {
		t.Run(fmt.Sprintf("status %d", status), func(t *testing.T) {
			e := newEnv(t, envOpts{})
			e.fake.SetBehaviour(snyktest.Behaviour{ProvisionConflictStatus: status})
			a1, _ := mustBrokered(t, e, orgA1, "github")
			a2, _ := mustBrokered(t, e, orgA2, "gitlab")
			b1, _ := mustBrokered(t, e, orgB1, "github")

			p, err := e.client.ProvisionToken(ctx, orgA1, a1)
			if err != nil {
				t.Fatal(err)
			}
			e.secret(p)
			// Another integration of the same group, not sharing the token.
			_, err = e.client.ProvisionToken(ctx, orgA2, a2)
			if snyk.Classify(snyk.OpProvision, err) != snyk.RefusalProvisionalConflict {
				t.Fatalf("want a provisional conflict, got %v", err)
			}
			if status != 0 && snyk.StatusOf(err) != status {
				t.Fatalf("status %d", snyk.StatusOf(err))
			}
			// The same integration again.
			if _, err = e.client.ProvisionToken(ctx, orgA1, a1); snyk.Classify(snyk.OpProvision, err) != snyk.RefusalProvisionalConflict {
				t.Fatalf("want a provisional conflict, got %v", err)
			}
			e.noLeak(err)
			if e.fake.GroupProvisionalHolder(groupA) != a1 || e.fake.ProvisionalToken(a1) != p || e.fake.ProvisionalToken(a2) != "" {
				t.Fatal("the conflict changed the group's provisional token")
			}
			// Another group is unaffected.
			pb, err := e.client.ProvisionToken(ctx, orgB1, b1)
			if err != nil {
				t.Fatal(err)
			}
			e.secret(pb)
		})
	}
}

func TestOrgsWithoutGroupHaveTheirOwnLane(t *testing.T) {
	e := newEnv(t, envOpts{})
	ctx := context.Background()
	n1, _ := mustBrokered(t, e, orgNoGrp, "github")
	n2, _ := mustBrokered(t, e, orgNoGrp2, "github")
	for _, c := range []struct{ org, id string }{{orgNoGrp, n1}, {orgNoGrp2, n2}} {
		p, err := e.client.ProvisionToken(ctx, c.org, c.id)
		if err != nil {
			t.Fatal(err)
		}
		e.secret(p)
		if e.fake.GroupProvisionalHolder(c.org) != c.id {
			t.Fatalf("holder of %s: %q", c.org, e.fake.GroupProvisionalHolder(c.org))
		}
	}
	if _, err := e.client.CloneIntegration(ctx, orgNoGrp, n1, orgNoGrp2); snyk.StatusOf(err) != 400 {
		t.Fatalf("clone without a group: %v", err)
	}
}

func TestSwitchSemanticsWithClones(t *testing.T) {
	e := newEnv(t, envOpts{})
	ctx := context.Background()
	id1, tok0 := mustBrokered(t, e, orgA1, "github")
	id2, err := e.client.CloneIntegration(ctx, orgA1, id1, orgA2)
	if err != nil {
		t.Fatal(err)
	}
	if e.fake.CurrentToken(id2) != tok0 {
		t.Fatal("the clone does not share the token")
	}

	// Provisioning through the clone provisions for the shared token.
	p, err := e.client.ProvisionToken(ctx, orgA2, id2)
	if err != nil {
		t.Fatal(err)
	}
	e.secret(p)
	if e.fake.ProvisionalToken(id1) != p || e.fake.GroupProvisionalHolder(groupA) != id2 {
		t.Fatal("the provisional token is not shared")
	}
	if _, err := e.client.ProvisionToken(ctx, orgA1, id1); snyk.Classify(snyk.OpProvision, err) != snyk.RefusalProvisionalConflict {
		t.Fatalf("want conflict, got %v", err)
	}

	// Switching through the original switches both.
	if err := e.client.SwitchToken(ctx, orgA1, id1); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{id1, id2} {
		if e.fake.CurrentToken(id) != p || e.fake.ProvisionalToken(id) != "" {
			t.Fatalf("%s: current %q provisional %q", id, e.fake.CurrentToken(id), e.fake.ProvisionalToken(id))
		}
	}
	if e.fake.GroupProvisionalHolder(groupA) != "" || e.fake.TokenIsCurrent(tok0) || !e.fake.TokenIsCurrent(p) {
		t.Fatal("old provisional state left behind")
	}

	// Nothing left to switch to.
	err = e.client.SwitchToken(ctx, orgA2, id2)
	if snyk.StatusOf(err) != 400 || snyk.Classify(snyk.OpSwitch, err) != snyk.RefusalNothingToSwitch {
		t.Fatalf("switch without provisional: %v", err)
	}

	// The lane is free again.
	p2, err := e.client.ProvisionToken(ctx, orgA1, id1)
	if err != nil {
		t.Fatal(err)
	}
	e.secret(p2)
}

func TestCloneRules(t *testing.T) {
	e := newEnv(t, envOpts{})
	ctx := context.Background()
	id, _ := mustBrokered(t, e, orgA1, "github")
	if _, err := e.client.CloneIntegration(ctx, orgA1, id, orgB1); snyk.StatusOf(err) != 400 || !strings.Contains(err.Error(), "same group") {
		t.Fatalf("other group: %v", err)
	}
	if _, err := e.client.CloneIntegration(ctx, orgA1, id, "d0d0d0d0-0000-4000-8000-000000000000"); snyk.StatusOf(err) != 404 {
		t.Fatalf("unknown destination: %v", err)
	}
	mustBrokered(t, e, orgA2, "github")
	if _, err := e.client.CloneIntegration(ctx, orgA1, id, orgA2); snyk.StatusOf(err) != 409 {
		t.Fatalf("type present in destination: %v", err)
	}
	if _, err := e.client.CloneIntegration(ctx, orgA1, id, ""); err == nil {
		t.Fatal("empty destination accepted")
	}
}

func TestNotBrokered(t *testing.T) {
	ctx := context.Background()
	for _, status := range []int{0, http.StatusUnprocessableEntity} {
		t.Run(fmt.Sprintf("status %d", status), func(t *testing.T) {
			e := newEnv(t, envOpts{})
			e.fake.SetBehaviour(snyktest.Behaviour{NotBrokeredStatus: status})
			id, tok := e.fake.AddIntegration(orgA1, "github", false)
			if tok != "" || e.fake.Brokered(id) {
				t.Fatal("fake integration should not be brokered")
			}
			_, err := e.client.ProvisionToken(ctx, orgA1, id)
			if snyk.Classify(snyk.OpProvision, err) != snyk.RefusalNotBrokered {
				t.Fatalf("provision: %v", err)
			}
			if !strings.Contains(err.Error(), "Integration "+id+" is not brokered") {
				t.Fatalf("message: %v", err)
			}
			if err := e.client.SwitchToken(ctx, orgA1, id); snyk.Classify(snyk.OpSwitch, err) != snyk.RefusalNotBrokered {
				t.Fatalf("switch: %v", err)
			}
			if e.fake.GroupProvisionalHolder(groupA) != "" {
				t.Fatal("a provisional token was minted")
			}
		})
	}
}
