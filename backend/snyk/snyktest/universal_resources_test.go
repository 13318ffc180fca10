package snyktest_test

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
)

// Credential references, connections and contexts of the fake's
// Universal Broker API.

func TestUBCreateCredentials(t *testing.T) {
	w := newUBWorld(t)
	w.s.AddCredentialReference(w.dep, "EXISTING", "github", "")
	item := func(env string) string {
		return `{"environment_variable_name":"` + env + `","type":"github","comment":"c"}`
	}
	many := make([]string, 11)
	for i := range many {
		many[i] = item(fmt.Sprintf("T_%d", i))
	}
	body := func(items ...string) string {
		return `{"data":{"type":"deployment_credential","attributes":[` + strings.Join(items, ",") + `]}}`
	}
	for _, tc := range []struct {
		name, body string
		status     int
		contains   string
	}{
		{"eleven", body(many...), 400, "between 1 and 10"},
		{"none", body(), 400, "between 1 and 10"},
		{"not an array", `{"data":{"type":"deployment_credential","attributes":` + item("ONE") + `}}`, 400, "array"},
		{"bad name", body(item("GOOD"), item("my-token")), 400, `my-token`},
		{"lower case", body(item("my_token")), 400, "/data/attributes/0/environment_variable_name"},
		{"unknown type", body(`{"environment_variable_name":"X","type":"svn"}`), 400, "svn"},
		{"existing name", body(item("NEW"), item("EXISTING")), 409, "EXISTING"},
		{"twice in one call", body(item("DUP"), item("DUP")), 409, "DUP"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w.expect(w.do("POST", w.depPath("credentials"), ubAdminAuth, tc.body), tc.status, tc.contains)
		})
	}
	if n := len(w.do("GET", w.depPath("credentials"), ubAdminAuth, "").doc(t)["data"].([]any)); n != 1 {
		t.Fatalf("refused calls created references: %d", n)
	}
	r := w.do("POST", w.depPath("credentials"), ubAdminAuth, body(item("MY_GITHUB_TOKEN"), `{"environment_variable_name":"MY_GITLAB_TOKEN","type":"gitlab"}`))
	w.expect(r, 201, "MY_GITLAB_TOKEN")
	data := r.doc(t)["data"].([]any)
	first := data[0].(map[string]any)
	if len(data) != 2 || first["type"] != "deployment_credential" || dig(first, "attributes", "deployment_id") != w.dep ||
		dig(first, "attributes", "type") != "github" || dig(first, "attributes", "comment") != "c" {
		t.Fatalf("created %s", r.body)
	}
	if rel, ok := dig(first, "relationships", "broker_connections").([]any); !ok || len(rel) != 0 {
		t.Fatalf("relationships %v", first["relationships"])
	}
}

func TestUBConnections(t *testing.T) {
	w := newUBWorld(t)
	gh := w.s.AddCredentialReference(w.dep, "MY_GH", "github", "")
	tenant2 := w.s.AddTenant("Other", ubAdminToken)
	install2, _, _ := w.s.AddAppInstall(ubOtherOrg)
	foreign := w.s.AddCredentialReference(w.s.AddDeployment(tenant2, install2, nil), "MY_GH", "github", "")

	conn := func(typ string, required map[string]any) string {
		raw, _ := json.Marshal(map[string]any{"data": map[string]any{"type": "broker_connection", "attributes": map[string]any{
			"name": "gh", "deployment_id": w.dep, "configuration": map[string]any{"type": typ, "required": required}}}})
		return string(raw)
	}
	const brokerURL = "https://broker-client.example:8000"
	for _, tc := range []struct {
		name     string
		body     string
		contains string
	}{
		{"unknown reference", conn("github", map[string]any{"broker_client_url": brokerURL, "github_token": ubUnknown}), "required/github_token"},
		{"reference of another deployment", conn("github", map[string]any{"broker_client_url": brokerURL, "github_token": foreign}), "github_token must name"},
		{"placeholder instead of UUID", conn("github", map[string]any{"broker_client_url": brokerURL, "github_token": "${MY_GH}"}), "github_token"},
		{"pasted secret", conn("github", map[string]any{"broker_client_url": brokerURL, "github_token": "ghp_pasted_secret_value"}), "github_token"},
		{"missing key", conn("github", map[string]any{"broker_client_url": brokerURL}), "needs github_token"},
		{"unknown type", conn("svn", map[string]any{"broker_client_url": brokerURL}), "svn"},
		{"not a string", conn("github", map[string]any{"broker_client_url": 8000, "github_token": gh}), "broker_client_url must be a string"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := w.do("POST", w.depPath("connections"), ubAdminAuth, tc.body)
			w.expect(r, 400, tc.contains)
			if strings.Contains(string(r.body), "ghp_pasted_secret_value") {
				t.Fatal("value echoed")
			}
		})
	}

	r := w.do("POST", w.depPath("connections"), ubAdminAuth, conn("github", map[string]any{"broker_client_url": brokerURL, "github_token": gh}))
	w.expect(r, 201, `"${MY_GH}"`)
	created := r.doc(t)["data"].(map[string]any)
	id := created["id"].(string)
	a := created["attributes"].(map[string]any)
	if a["identifier"] != nil || a["name"] != "gh" || a["deployment_id"] != w.dep || dig(a, "configuration", "type") != "github" ||
		dig(a, "configuration", "required", "broker_client_url") != brokerURL || dig(a, "secrets", "secondary", "nonce") != "not-yet-implemented" {
		t.Fatalf("created %s", r.body)
	}
	if strings.Contains(string(r.body), gh) {
		t.Fatal("a read shows the reference UUID instead of ${ENV}")
	}
	w.s.IntegrateConnection(id, ubOrg)
	listed := w.do("GET", w.depPath("connections"), ubAdminAuth, "").doc(t)["data"].([]any)[0]
	if dig(listed, "attributes", "configuration", "required", "github_token") != "${MY_GH}" || !ubUUIDv4.MatchString(dig(listed, "attributes", "identifier").(string)) {
		t.Fatalf("listed %v", listed)
	}
	creds := w.do("GET", w.depPath("credentials"), ubAdminAuth, "").doc(t)["data"].([]any)
	if rel := dig(creds[0], "relationships", "broker_connections").([]any); len(rel) != 1 || dig(rel[0], "data", "id") != id {
		t.Fatalf("credential relationships %v", creds[0])
	}

	// The seeding helper takes ${ENV} and checks it.
	if _, err := w.s.AddConnection(w.dep, "x", "github", map[string]string{"broker_client_url": brokerURL, "github_token": "${NOPE}"}); err == nil {
		t.Fatal("unknown ${ENV} accepted")
	}
	bb := w.s.AddCredentialReference(w.dep, "BB_PAT", "bitbucket-server", "")
	if _, err := w.s.AddConnection(w.dep, "bb", "bitbucket-server", map[string]string{"broker_client_url": brokerURL, "bitbucket": "bb.example"}); err == nil {
		t.Fatal("bitbucket-server without credentials accepted")
	}
	if _, err := w.s.AddConnection(w.dep, "bb", "bitbucket-server", map[string]string{"broker_client_url": brokerURL, "bitbucket": "bb.example", "bitbucket_pat": bb}); err != nil {
		t.Fatal(err)
	}

	// A deleted reference leaves the connection naming it.
	w.s.DeleteCredentialReference(gh)
	if n := len(w.do("GET", w.depPath("credentials"), ubAdminAuth, "").doc(t)["data"].([]any)); n != 1 {
		t.Fatalf("deleted reference listed (%d)", n)
	}
	w.expect(w.do("GET", w.depPath("connections"), ubAdminAuth, ""), 200, `"${MY_GH}"`)
	w.s.DeleteConnection(id)
	if got := w.do("GET", w.depPath("connections"), ubAdminAuth, ""); strings.Contains(string(got.body), id) {
		t.Fatalf("deleted connection listed: %s", got.body)
	}
}

func TestUBContexts(t *testing.T) {
	w := newUBWorld(t)
	w.s.AddCredentialReference(w.dep, "MY_GH", "github", "")
	w.s.AddCredentialReference(w.dep, "OTHER_GH", "github", "")
	conn, err := w.s.AddConnection(w.dep, "gh", "github", map[string]string{"broker_client_url": "https://b.example", "github_token": "${MY_GH}"})
	if err != nil {
		t.Fatal(err)
	}
	ctx, err := w.s.AddContext(w.dep, conn, map[string]string{"github_token": "${OTHER_GH}", "github": "ghe.example"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.s.AddContext(w.dep, conn, map[string]string{"github_token": "${NOPE}"}); err == nil {
		t.Fatal("unknown ${ENV} accepted")
	}
	if _, err := w.s.AddContext(ubUnknown, conn, nil); err == nil {
		t.Fatal("connection of another deployment accepted")
	}
	data := w.do("GET", w.depPath("contexts"), ubAdminAuth, "").doc(t)["data"].([]any)
	if len(data) != 1 || dig(data[0], "id") != ctx || dig(data[0], "type") != "broker_context" ||
		dig(data[0], "attributes", "context", "github_token") != "${OTHER_GH}" || dig(data[0], "attributes", "context", "github") != "ghe.example" ||
		dig(data[0], "relationships", "broker_connection", "data", "id") != conn {
		t.Fatalf("contexts %v", data)
	}
	// The client sees the context as a relationship of its connection.
	r := w.hiddenConnections(w.dep, "bearer "+w.mustToken(w.clientID, w.clientSecret))
	rel := dig(r.doc(t)["data"].([]any)[0], "relationships").([]any)
	if len(rel) != 1 || dig(rel[0], "attributes", "context", "github_token") != "${OTHER_GH}" {
		t.Fatalf("hidden relationships %s", r.body)
	}
}
