package snyktest_test

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/snyk-vault/vault-plugin-secrets-snyk/backend/fault"
	"github.com/snyk-vault/vault-plugin-secrets-snyk/backend/snyk/snyktest"
)

// App-install secrets and the endpoints a Broker client calls.

func TestInstallSecrets(t *testing.T) {
	w := newUBWorld(t)
	path := "/rest/orgs/" + ubOrg + "/apps/installs/" + w.install + "/secrets?version=2024-05-23"
	call := func(mode, secret string) ubReply {
		return w.do("POST", path, ubAdminAuth, `{"data":{"type":"app","attributes":{"mode":"`+mode+`","secret":"`+secret+`"}}}`)
	}
	old := w.clientSecret

	r := call("create", "")
	w.expect(r, 200, `"app_install"`)
	d := r.doc(t)["data"].(map[string]any)
	second := dig(d, "attributes", "client_secret").(string)
	if d["id"] != w.install || dig(d, "attributes", "client_id") != w.clientID || dig(d, "attributes", "installed_at") != "2025-06-01T12:00:00Z" ||
		!strings.HasPrefix(second, "snyk_cs_") {
		t.Fatalf("create answered %s", r.body)
	}
	if got := w.s.InstallSecrets(w.install); !slices.Equal(got, []string{old, second}) {
		t.Fatalf("secrets %v", got)
	}
	w.mustToken(w.clientID, old)
	w.mustToken(w.clientID, second)

	w.expect(call("create", ""), 409, "cannot update secrets")
	w.s.SetBehaviour(snyktest.Behaviour{InstallSecretCapStatus: 400, InstallSecretCapMessage: "A maximum of two secrets"})
	w.expect(call("create", ""), 400, "A maximum of two secrets")
	w.s.SetBehaviour(snyktest.Behaviour{})

	r = call("delete", old)
	w.expect(r, 200, w.clientID)
	if strings.Contains(string(r.body), "client_secret") {
		t.Fatalf("delete answered a secret: %s", r.body)
	}
	if status, body := w.token(w.clientID, old); status != 401 || !strings.Contains(body, "invalid_client") {
		t.Fatalf("deleted secret: %d %s", status, body)
	}
	w.mustToken(w.clientID, second)
	w.expect(call("delete", second), 400, "last secret")
	w.expect(call("delete", old), 400, "not a current secret")
	w.expect(call("delete", "snyk_cs_never_issued_v1"), 400, "not a current secret")
	w.expect(call("delete", ""), 400, "secret is required")
	w.expect(call("rotate", ""), 400, "mode must be one of")
	w.expect(w.do("POST", strings.Replace(path, ubOrg, ubOtherOrg, 1), ubAdminAuth, `{"data":{"type":"app","attributes":{"mode":"create"}}}`), 404, "Install not found")
	w.expect(w.do("POST", strings.Replace(path, w.install, ubUnknown, 1), ubAdminAuth, `{"data":{"type":"app","attributes":{"mode":"create"}}}`), 404, "Install not found")

	third := dig(call("create", "").doc(t), "data", "attributes", "client_secret").(string)
	r = call("replace", "")
	w.expect(r, 200, "client_secret")
	replacement := dig(r.doc(t), "data", "attributes", "client_secret").(string)
	if got := w.s.InstallSecrets(w.install); !slices.Equal(got, []string{replacement}) {
		t.Fatalf("after replace %v", got)
	}
	for _, s := range []string{second, third} {
		if status, _ := w.token(w.clientID, s); status != 401 {
			t.Fatalf("replaced secret still valid (%d)", status)
		}
	}
	w.mustToken(w.clientID, replacement)

	outside := w.s.ReplaceInstallSecretOutsideVault(w.install)
	if status, _ := w.token(w.clientID, replacement); status != 401 || outside == "" {
		t.Fatal("outside replace left the old secret valid")
	}
	w.mustToken(w.clientID, outside)
	if c, d, rp := w.s.InstallSecretCalls(w.install); c != 2 || d != 1 || rp != 1 {
		t.Fatalf("calls %d %d %d", c, d, rp)
	}
	if !slices.Contains(w.s.Secrets(), third) {
		t.Fatal("an issued secret is missing from Secrets")
	}
	if slices.Contains(w.s.Secrets(), w.clientID) {
		t.Fatal("the client ID, an identifier Vault serves, is listed among the secrets")
	}
}

func TestInstallSecretRevocationRevokesTokens(t *testing.T) {
	for _, tc := range []struct {
		mode   string
		revoke bool
		want   int
	}{
		{"delete", false, 200}, {"delete", true, 401}, {"replace", false, 200}, {"replace", true, 401},
	} {
		t.Run(fmt.Sprintf("%s-revoke-%v", tc.mode, tc.revoke), func(t *testing.T) {
			w := newUBWorld(t)
			w.s.SetBehaviour(snyktest.Behaviour{RevokeAccessTokensWithSecret: tc.revoke})
			bearer := "bearer " + w.mustToken(w.clientID, w.clientSecret)
			w.expect(w.hiddenConnections(w.dep, bearer), 200, `"data"`)
			path := "/rest/orgs/" + ubOrg + "/apps/installs/" + w.install + "/secrets?version=2024-05-23"
			w.expect(w.do("POST", path, ubAdminAuth, `{"data":{"type":"app","attributes":{"mode":"create"}}}`), 200, "client_secret")
			body := `{"data":{"type":"app","attributes":{"mode":"` + tc.mode + `","secret":"` + w.clientSecret + `"}}}`
			w.expect(w.do("POST", path, ubAdminAuth, body), 200, w.install)
			w.expect(w.hiddenConnections(w.dep, bearer), tc.want, "")
		})
	}
}

func TestHiddenConnections(t *testing.T) {
	w := newUBWorld(t)
	w.s.AddCredentialReference(w.dep, "MY_GH", "github", "")
	w.s.AddCredentialReference(w.dep, "MY_GL", "gitlab", "")
	gh, err := w.s.AddConnection(w.dep, "gh", "github", map[string]string{"broker_client_url": "https://b.example:8000", "github_token": "${MY_GH}"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.s.AddConnection(w.dep, "gl", "gitlab", map[string]string{"broker_client_url": "https://b.example:8000", "gitlab": "gitlab.example", "gitlab_token": "${MY_GL}"}); err != nil {
		t.Fatal(err)
	}
	w.s.IntegrateConnection(gh, ubOrg)
	bearer := "bearer " + w.mustToken(w.clientID, w.clientSecret)

	r := w.hiddenConnections(w.dep, bearer)
	w.expect(r, 200, `"data"`)
	data := r.doc(t)["data"].([]any)
	if len(data) != 2 {
		t.Fatalf("connections %s", r.body)
	}
	a0, a1 := dig(data[0], "attributes"), dig(data[1], "attributes")
	if dig(data[0], "type") != "broker_connection" || dig(a0, "name") != "gh" || dig(a0, "deployment_id") != w.dep ||
		!ubUUIDv4.MatchString(dig(a0, "identifier").(string)) || dig(a0, "configuration", "type") != "github" ||
		dig(a0, "configuration", "required", "github_token") != "${MY_GH}" || dig(a0, "configuration", "default") == nil ||
		dig(a1, "identifier") != nil || dig(a1, "configuration", "required", "gitlab_token") != "${MY_GL}" {
		t.Fatalf("connections %s", r.body)
	}
	if n := w.s.UniversalClientConnects(w.dep); n != 1 {
		t.Fatalf("connects %d", n)
	}

	_, otherClient, otherSecret := w.s.AddAppInstall(ubOrg)
	otherBearer := "bearer " + w.mustToken(otherClient, otherSecret)
	for _, tc := range []struct {
		name, dep, auth, query string
		status                 int
		contains               string
	}{
		{"no credential", w.dep, "", hiddenQuery, 401, `"invalid_token"`},
		{"API token", w.dep, ubAdminAuth, hiddenQuery, 401, `"invalid_token"`},
		{"unknown bearer", w.dep, "bearer nope", hiddenQuery, 401, `"invalid_token"`},
		{"another install's token", w.dep, otherBearer, hiddenQuery, 401, `"invalid_token"`},
		{"unknown deployment", ubUnknown, bearer, hiddenQuery, 404, `{"error":"not_found","error_description":"No deployment found"}`},
		{"no version", w.dep, bearer, "", 400, `"invalid_request"`},
		{"bad version", w.dep, bearer, "?version=soon", 400, `"invalid_request"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w.expect(w.do("GET", "/hidden/brokers/deployments/"+tc.dep+"/connections"+tc.query, tc.auth, ""), tc.status, tc.contains)
		})
	}
	w.clock.Advance(11 * time.Minute)
	w.expect(w.hiddenConnections(w.dep, bearer), 401, "invalid_token")
	if n := w.s.UniversalClientConnects(w.dep); n != 1 {
		t.Fatalf("refused fetches counted: %d", n)
	}
}

func TestHiddenAuthRefresh(t *testing.T) {
	w := newUBWorld(t)
	w.s.AddCredentialReference(w.dep, "MY_GH", "github", "")
	gh, _ := w.s.AddConnection(w.dep, "gh", "github", map[string]string{"broker_client_url": "https://b.example", "github_token": "${MY_GH}"})
	w.s.IntegrateConnection(gh, ubOrg)
	bearer := "bearer " + w.mustToken(w.clientID, w.clientSecret)
	identifier := dig(w.hiddenConnections(w.dep, bearer).doc(t)["data"].([]any)[0], "attributes", "identifier").(string)
	_, otherClient, otherSecret := w.s.AddAppInstall(ubOrg)
	const body = `{"data":{"type":"broker_connection","attributes":{"broker_client_id":"client-7"}}}`
	refresh := func(id, query, auth, body string) ubReply {
		return w.do("POST", "/hidden/brokers/connections/"+id+"/auth/refresh"+query, auth, body)
	}
	w.expect(refresh(identifier, "?connection_role=primary", bearer, body), 201, "{}")
	w.expect(refresh(identifier, "?connection_role=secondary&server_id=1", bearer, body), 201, "{}")
	w.expect(refresh(identifier, "?connection_role=tertiary", bearer, body), 400, "connection_role")
	w.expect(refresh(identifier, "?connection_role=primary", bearer, `{"data":{}}`), 400, "broker_client_id")
	w.expect(refresh(ubUnknown, "?connection_role=primary", bearer, body), 404, "not_found")
	w.expect(refresh(identifier, "?connection_role=primary", "", body), 401, "invalid_token")
	w.expect(refresh(identifier, "?connection_role=primary", "bearer "+w.mustToken(otherClient, otherSecret), body), 401, "invalid_token")
}

func TestUBRoutesFaultedAndCounted(t *testing.T) {
	w := newUBWorld(t)
	bearer := "bearer " + w.mustToken(w.clientID, w.clientSecret)
	w.s.Faults().Inject(snyktest.RouteHiddenConnections, fault.Fault{Status: 500, Times: 1})
	w.s.Faults().Inject(snyktest.RouteUBCredentials, fault.Fault{Status: 429, RetryAfter: "1", Times: 1})
	w.expect(w.hiddenConnections(w.dep, bearer), 500, "")
	w.expect(w.hiddenConnections(w.dep, bearer), 200, `"data"`)
	w.expect(w.do("GET", w.depPath("credentials"), ubAdminAuth, ""), 429, "")
	w.expect(w.do("GET", w.depPath("credentials"), ubAdminAuth, ""), 200, `"data"`)
	if w.s.Faults().Calls(snyktest.RouteHiddenConnections) != 2 || w.s.Faults().Calls(snyktest.RouteUBCredentials) != 2 ||
		w.s.UniversalClientConnects(w.dep) != 1 {
		t.Fatalf("counters %s connects %d", w.s.Faults(), w.s.UniversalClientConnects(w.dep))
	}
}
