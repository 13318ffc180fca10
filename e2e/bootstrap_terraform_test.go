package e2e

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hashicorp/vault/api"
)

// TestBootstrapTerraform checks bootstrap/terraform with the real terraform
// binary and a real Vault running the engine. The hashicorp/vault provider
// cannot be downloaded here, so terraform cannot plan the module itself;
// instead terraform evaluates the module's provider-free part (variables.tf
// and payloads.tf: every request body and policy the module sends) and the
// test sends those bodies as the provider's resources do:
// vault_generic_endpoint writes data_json to its path and, on refresh with
// ignore_absent_fields, compares each field it wrote with the field read
// back (terraform-provider-vault v5.11.0 vault/resource_generic_endpoint.go).
// It shows: the module is formatted and parses; every field it writes is one
// the engine takes without a warning; a refresh after apply sees no drift
// (the secrets are absent from reads, everything else reads back equal); a
// second apply changes nothing at Snyk; the policies load and grant what
// configure.sh's do.
func TestBootstrapTerraform(t *testing.T) {
	tf := os.Getenv("TERRAFORM_BINARY")
	if tf == "" {
		var err error
		if tf, err = exec.LookPath("terraform"); err != nil {
			t.Skip("terraform is not installed (no package registry here offers it): bootstrap/terraform is untested on this machine")
		}
	}
	s := sharedStack(t)
	i := s.sim.info
	module := filepath.Join(bootstrapDir(t), "terraform")
	tfEnv := terraformEnv(t)

	if out, err := runTerraform(tfEnv, module, tf, "fmt", "-check", "-recursive", "-diff"); err != nil {
		t.Fatalf("terraform fmt -check bootstrap/terraform: %v\n%s", err, out)
	}

	const mount = "tfsnyk"
	ca, err := os.ReadFile(i.CACertFile)
	if err != nil {
		t.Fatal(err)
	}
	org := newUUID(t)
	s.sim.addOrg(t, org, "e2e terraform")
	s.sim.addIntegration(t, org, "github", false)
	s.sim.addIntegration(t, org, "bitbucket-server", false)
	vars := map[string]interface{}{
		"plugin_version": env.version,
		"plugin_sha256":  s.vault.pluginSHA,
		"mount_path":     mount,
		"snyk_api_token": i.APIToken,
		"config": map[string]interface{}{
			"api_url": i.SnykURL, "ca_cert": string(ca),
			"ttl": 1800, "rotation_period": 7776000, "provision_ahead": 7200, "request_timeout": 20,
		},
		"integrations": map[string]interface{}{
			"tf/github": map[string]interface{}{
				"org_id": org, "scm_api_url": i.GitHubURL, "broker_client_url": "http://tf-github.internal:8000", "ttl": 900,
			},
			"tf/bitbucket-server": map[string]interface{}{
				"org_id": org, "scm_url": i.BitbucketURL, "scm_username": i.BitbucketUsername, "rotation_period": 86400,
			},
		},
		"scm_credentials": map[string]interface{}{
			"tf/github":           map[string]interface{}{"token": i.GitHubToken},
			"tf/bitbucket-server": map[string]interface{}{"password": i.BitbucketPassword},
		},
	}
	out := evaluateTerraformPayloads(t, tf, tfEnv, module, vars)

	// vault_plugin and vault_mount.
	err = s.vault.client.Sys().RegisterPlugin(&api.RegisterPluginInput{
		Name: pluginName, Type: api.PluginTypeSecrets, Command: pluginName, SHA256: s.vault.pluginSHA, Version: env.version,
	})
	if err != nil {
		t.Fatalf("vault_plugin: %v", err)
	}
	if err := s.vault.client.Sys().Mount(mount, &api.MountInput{Type: pluginName, Config: api.MountConfigInput{PluginVersion: env.version}}); err != nil {
		t.Fatalf("vault_mount: %v", err)
	}
	t.Cleanup(func() { _ = s.vault.client.Sys().Unmount(mount) })

	// vault_generic_endpoint: config first (depends_on), then integrations.
	var configBody map[string]interface{}
	decodeJSON(t, out["config_payload"], &configBody)
	var integrationBodies map[string]map[string]interface{}
	decodeJSON(t, out["integration_payloads"], &integrationBodies)
	endpoints := []struct {
		path    string
		body    map[string]interface{}
		secrets []string
	}{{mount + "/config", configBody, []string{"api_token"}}}
	for key, body := range integrationBodies {
		endpoints = append(endpoints, struct {
			path    string
			body    map[string]interface{}
			secrets []string
		}{mount + "/integrations/" + key, body, []string{"scm_token", "scm_password"}})
	}
	if len(endpoints) != 3 {
		t.Fatalf("the module would write %d endpoints, want config and 2 integrations", len(endpoints))
	}
	for _, ep := range endpoints {
		resp, err := s.vault.client.Logical().Write(ep.path, ep.body)
		if err != nil {
			t.Fatalf("vault_generic_endpoint %s: %v", ep.path, err)
		}
		if resp != nil && len(resp.Warnings) > 0 {
			t.Errorf("vault_generic_endpoint %s: the engine warned %q (a field the module sends is not one the engine takes)", ep.path, resp.Warnings)
		}
	}
	before := map[string]simIntegration{}
	for _, scm := range []string{"github", "bitbucket-server"} {
		before[scm] = s.sim.integration(t, org, scm)
	}

	// terraform refresh: no drift, no secret read back.
	for _, ep := range endpoints {
		read := s.read(t, ep.path)
		for field, wrote := range ep.body {
			got, present := read.Data[field]
			isSecret := false
			for _, sf := range ep.secrets {
				isSecret = isSecret || sf == field
			}
			switch {
			case isSecret && present:
				t.Errorf("%s: the secret field %s is returned on read", ep.path, field)
			case isSecret:
			case !present:
				t.Errorf("%s: %s is written but never read back: with ignore_absent_fields it hides drift; is it write-only?", ep.path, field)
			case canonicalJSON(t, got) != canonicalJSON(t, wrote):
				t.Errorf("%s: %s is written as %s but reads back as %s: terraform would plan a change on every run", ep.path, field, canonicalJSON(t, wrote), canonicalJSON(t, got))
			}
		}
	}

	// A second apply (any change to a resource rewrites its whole body).
	for _, ep := range endpoints {
		if _, err := s.vault.client.Logical().Write(ep.path, ep.body); err != nil {
			t.Fatalf("second apply of %s: %v", ep.path, err)
		}
	}
	for scm, b := range before {
		a := s.sim.integration(t, org, scm)
		if a.Provisions != b.Provisions || a.Switches != b.Switches || a.CurrentToken != b.CurrentToken {
			t.Errorf("a second apply changed the %s integration at Snyk: provisions %d→%d, switches %d→%d, token changed %v",
				scm, b.Provisions, a.Provisions, b.Switches, a.Switches, a.CurrentToken != b.CurrentToken)
		}
	}

	// vault_policy: the operator policy and one broker reader per integration.
	var operator string
	decodeJSON(t, out["operator_policy"], &operator)
	if err := s.vault.client.Sys().PutPolicy("tf-snyk-operator", operator); err != nil {
		t.Fatalf("vault_policy operator: %v", err)
	}
	if strings.Contains(operator, "\"snyk/") {
		t.Errorf("the operator policy still names snyk/ with mount_path %s", mount)
	}
	var readers map[string]string
	decodeJSON(t, out["broker_reader_policies"], &readers)
	for _, key := range []string{"tf/github", "tf/bitbucket-server"} {
		name := "snyk-broker-" + strings.ReplaceAll(key, "/", "-")
		policy, ok := readers[name]
		if !ok {
			t.Errorf("no broker reader policy %s (have %v)", name, keysOf(readers))
			continue
		}
		if err := s.vault.client.Sys().PutPolicy("tf-"+name, policy); err != nil {
			t.Fatalf("vault_policy %s: %v", name, err)
		}
		tok := bootstrapToken(t, s, false, "tf-"+name)
		c, err := s.vault.client.Clone()
		if err != nil {
			t.Fatal(err)
		}
		c.SetToken(tok)
		if sec, err := c.Logical().Read(mount + "/broker/" + key); err != nil || sec == nil || str(sec.Data["broker_token"]) == "" {
			t.Errorf("%s cannot read %s/broker/%s: %v", name, mount, key, err)
		}
		if _, err := c.Logical().Read(mount + "/config"); err == nil {
			t.Errorf("%s can read %s/config", name, mount)
		}
	}
}

// evaluateTerraformPayloads runs terraform on a copy of the module's
// provider-free files (with the policies beside them, as in the repository)
// and returns the payloads as JSON.
func evaluateTerraformPayloads(t *testing.T, tf string, tfEnv []string, module string, vars map[string]interface{}) map[string]json.RawMessage {
	t.Helper()
	dir := t.TempDir()
	work := filepath.Join(dir, "terraform")
	if err := os.Mkdir(work, 0o700); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"variables.tf", "payloads.tf"} {
		b, err := os.ReadFile(filepath.Join(module, f))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(work, f), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink(filepath.Join(bootstrapDir(t), "policies"), filepath.Join(dir, "policies")); err != nil {
		t.Fatal(err)
	}
	outputs := ""
	for _, o := range []string{"config_payload", "integration_payloads", "operator_policy", "broker_reader_policies"} {
		outputs += "output \"" + o + "\" {\n  value     = local." + o + "\n  sensitive = true\n}\n"
	}
	if err := os.WriteFile(filepath.Join(work, "payload_outputs.tf"), []byte(outputs), 0o600); err != nil {
		t.Fatal(err)
	}
	varsJSON, err := json.Marshal(vars)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(work, "test.tfvars.json"), varsJSON, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{
		{"init", "-input=false", "-backend=false"},
		{"validate"},
		{"apply", "-auto-approve", "-input=false", "-var-file=test.tfvars.json"},
	} {
		if out, err := runTerraform(tfEnv, work, tf, args...); err != nil {
			t.Fatalf("terraform %s: %v\n%s", args[0], err, out)
		}
	}
	raw, err := runTerraform(tfEnv, work, tf, "output", "-json")
	if err != nil {
		t.Fatalf("terraform output: %v", err)
	}
	var outs map[string]struct {
		Value json.RawMessage `json:"value"`
	}
	if err := json.Unmarshal([]byte(raw), &outs); err != nil {
		t.Fatalf("terraform output -json: %v", err)
	}
	res := map[string]json.RawMessage{}
	for k, v := range outs {
		res[k] = v.Value
	}
	return res
}

// terraformEnv keeps terraform offline and away from the user's own CLI
// configuration.
func terraformEnv(t *testing.T) []string {
	t.Helper()
	rc := filepath.Join(t.TempDir(), "terraformrc")
	if err := os.WriteFile(rc, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	return append(baseEnv(t.TempDir()), "TF_CLI_CONFIG_FILE="+rc, "CHECKPOINT_DISABLE=1", "TF_IN_AUTOMATION=1")
}

// runTerraform returns terraform's combined output; it may hold secrets, so
// callers print it only for commands that handle none (fmt, init, validate)
// and for apply, whose outputs are all marked sensitive.
func runTerraform(environ []string, dir, tf string, args ...string) (string, error) {
	cmd := exec.Command(tf, append([]string{"-chdir=" + dir}, args...)...)
	cmd.Env = environ
	var b bytes.Buffer
	cmd.Stdout = &b
	if args[0] != "output" {
		cmd.Stderr = &b
	}
	err := cmd.Run()
	return b.String(), err
}

func decodeJSON(t *testing.T, raw json.RawMessage, v interface{}) {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	if err := dec.Decode(v); err != nil {
		t.Fatalf("terraform output: %v", err)
	}
}

func canonicalJSON(t *testing.T, v interface{}) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
