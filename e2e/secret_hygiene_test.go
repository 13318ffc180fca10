package e2e

import (
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestSecretHygiene drives the flows that handle every kind of secret
// (the Snyk credential, SCM tokens and a Bitbucket password, Broker tokens
// current and provisional, an imported Broker token) through a Vault at log
// level trace with a file audit device, including the failures whose
// messages an operator reads, and checks:
//   - no error message and no non-secret read (config, integrations, lists,
//     status, metrics, scm/validate) holds a secret;
//   - the audit log holds each of them only as the HMAC Vault's own
//     sys/audit-hash computes, never in clear (the cleanup scan of every
//     stack checks the clear part for all logs);
//   - a field the engine does not know is reported to the caller as a
//     warning, not dropped in silence;
//   - the log scan itself finds a secret that is there.
func TestSecretHygiene(t *testing.T) {
	s := newTestStack(t)
	i := s.sim.info
	org := newUUID(t)
	s.sim.addOrg(t, org, "e2e hygiene")
	_, imported := s.sim.addIntegration(t, org, "gitlab", true)
	s.sim.addIntegration(t, org, "github", false)
	s.sim.addIntegration(t, org, "bitbucket-server", false)

	var errs []string
	expectError := func(path string, data map[string]interface{}) {
		t.Helper()
		_, err := s.vault.client.Logical().Write(path, data)
		if err == nil {
			t.Errorf("write %s succeeded, want a refusal", path)
			return
		}
		errs = append(errs, err.Error())
	}

	// Writes that carry secrets, and refusals that could echo them.
	s.write(t, mountPath+"/integrations/hyg/github", map[string]interface{}{
		"org_id": org, "scm_token": i.GitHubToken, "scm_api_url": i.GitHubURL,
	})
	s.write(t, mountPath+"/integrations/hyg/bitbucket-server", map[string]interface{}{
		"org_id": org, "scm_username": i.BitbucketUsername, "scm_password": i.BitbucketPassword, "scm_url": i.BitbucketURL,
	})
	s.write(t, mountPath+"/integrations/hyg/gitlab", map[string]interface{}{
		"org_id": org, "scm_token": i.GitLabToken, "scm_url": i.GitLabURL, "broker_token": imported,
	})
	wrongSnyk := "wrong-" + i.APIToken
	wrongSCM := i.GitHubToken + "-revoked"
	expectError(mountPath+"/config", map[string]interface{}{"api_token": wrongSnyk, "api_url": i.SnykURL})
	expectError(mountPath+"/integrations/hyg2/github", map[string]interface{}{
		"org_id": org, "scm_token": wrongSCM, "scm_api_url": i.GitHubURL,
	})
	expectError(mountPath+"/integrations/hyg/gitlab", map[string]interface{}{"broker_token": "not-a-uuid " + imported})
	validated := s.write(t, mountPath+"/scm/validate", map[string]interface{}{"scm": "github", "scm_token": i.GitHubToken, "scm_api_url": i.GitHubURL})

	// Broker tokens: served, then rotated (a provision and a switch).
	served := []string{str(s.read(t, mountPath+"/broker/hyg/github").Data["broker_token"])}
	rotated := s.write(t, mountPath+"/broker/hyg/github/rotate", nil)
	served = append(served, str(s.read(t, mountPath+"/broker/hyg/github").Data["broker_token"]))
	if served[0] == served[1] {
		t.Fatal("rotate served the same Broker token")
	}

	// Unknown fields are warned about.
	warned := s.write(t, mountPath+"/integrations/hyg/github", map[string]interface{}{"scm_tokn": "x", "ttl": "30m"})
	if warned == nil || !strings.Contains(strings.Join(warned.Warnings, " "), "scm_tokn") {
		t.Errorf("an unknown field was dropped without a warning naming it: %+v", warned)
	}

	secrets, err := s.sim.secrets()
	if err != nil {
		t.Fatal(err)
	}
	secrets = append(secrets, wrongSnyk, wrongSCM)
	check := func(what, text string) {
		t.Helper()
		for _, sec := range heldSecrets(text, secrets) {
			t.Errorf("%s holds a credential (%s…): %s", what, sec[:4], redactLine(text, secrets))
		}
	}
	for _, e := range errs {
		check("an error message", e)
	}
	for _, p := range []string{"/config", "/integrations/hyg/github", "/integrations/hyg/bitbucket-server", "/integrations/hyg/gitlab", "/status"} {
		check("read "+p, canonicalJSON(t, s.read(t, mountPath+p).Data))
	}
	for _, p := range []string{"/integrations", "/integrations/hyg"} {
		l, err := s.vault.client.Logical().List(mountPath + p)
		if err != nil || l == nil {
			t.Fatalf("list %s: %v", p, err)
		}
		check("list "+p, canonicalJSON(t, l.Data))
	}
	check("scm/validate's answer", canonicalJSON(t, validated.Data))
	check("rotate's answer", canonicalJSON(t, rotated.Data))
	check("a write's warnings", strings.Join(warned.Warnings, " "))
	req, _ := http.NewRequest(http.MethodGet, s.vault.addr+"/v1/"+mountPath+"/metrics", nil)
	req.Header.Set("X-Vault-Token", s.vault.rootToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	check("snyk/metrics", string(body))

	// The audit log: each secret that passed through Vault is there as the
	// HMAC Vault computes for this device, and never in clear.
	audit, err := os.ReadFile(s.vault.auditPath())
	if err != nil {
		t.Fatal(err)
	}
	passed := map[string]string{
		"the Snyk API token (config write)":     i.APIToken,
		"a GitHub token (integration write)":    i.GitHubToken,
		"a Bitbucket password":                  i.BitbucketPassword,
		"an imported Broker token":              imported,
		"the Broker token served before rotate": served[0],
		"the Broker token served after rotate":  served[1],
		"a wrong Snyk token (refused write)":    wrongSnyk,
	}
	for what, sec := range passed {
		h, err := s.vault.client.Logical().Write("sys/audit-hash/file", map[string]interface{}{"input": sec})
		if err != nil {
			t.Fatalf("sys/audit-hash: %v", err)
		}
		hash := str(h.Data["hash"])
		if !strings.HasPrefix(hash, "hmac-sha256:") || !strings.Contains(string(audit), hash) {
			t.Errorf("%s: its HMAC (%s) is not in the audit log", what, hash)
		}
	}
	if leaks := scanForSecrets("audit log", s.vault.auditPath(), secrets); len(leaks) > 0 {
		t.Errorf("the audit log holds secrets in clear:\n%s", strings.Join(leaks, "\n"))
	}

	// The scan finds a secret that is there: a copy of the server log with
	// one planted.
	planted := filepath.Join(t.TempDir(), "planted.log")
	log, err := os.ReadFile(s.vault.logPath)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(planted, append(log, []byte("2026-01-01T00:00:00Z [DEBUG] token="+served[1]+"\n")...), 0o600); err != nil {
		t.Fatal(err)
	}
	if leaks := scanForSecrets("planted", planted, secrets); len(leaks) != 1 {
		t.Errorf("the scan found %d leaks in a log with one planted, want 1", len(leaks))
	}
}
