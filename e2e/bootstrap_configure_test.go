package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hashicorp/vault/api"
)

// TestBootstrapConfigureScript runs configure.sh against a fresh Vault (the
// plugin neither in the catalog nor in the plugin directory) with MOUNT=snyk2,
// checks everything it set up, then runs it again (the upgrade path).
func TestBootstrapConfigureScript(t *testing.T) {
	s := bootstrapBareStack(t)
	i := s.sim.info
	const mount = "snyk2"

	// The script installs the binary itself (PLUGIN_DIRECTORY).
	pluginDir := filepath.Join(s.dir, "plugins")
	installed := filepath.Join(pluginDir, pluginName)
	if err := os.Remove(installed); err != nil {
		t.Fatal(err)
	}
	wantSHA, err := sha256File(env.pluginBin)
	if err != nil {
		t.Fatal(err)
	}
	environ := append(baseEnv(s.dir),
		"VAULT_ADDR="+s.vault.addr,
		"VAULT_TOKEN="+s.vault.rootToken,
		"VAULT="+env.vaultBin,
		"PLUGIN_VERSION="+env.version,
		"PLUGIN_DIRECTORY="+pluginDir,
		"MOUNT="+mount,
		"SNYK_API_TOKEN="+i.APIToken,
		"SNYK_API_URL="+i.SnykURL,
		"SNYK_CA_CERT_FILE="+i.CACertFile,
		"SNYK_CONFIG_ARGS=ttl=20m",
		"BROKER_READERS=payments/github",
	)
	noSecrets := func(run, out string) {
		t.Helper()
		for name, secret := range map[string]string{"the Snyk API token": i.APIToken, "the Vault token": s.vault.rootToken} {
			if strings.Contains(out, secret) {
				t.Errorf("%s run of configure.sh printed %s", run, name)
			}
		}
	}
	checkConfig := func(run string) {
		t.Helper()
		cfg := s.read(t, mount+"/config")
		if got := num(t, cfg.Data["ttl"]); got != 1200 {
			t.Errorf("after the %s run: %s/config ttl = %d, want 1200 (SNYK_CONFIG_ARGS=ttl=20m)", run, mount, got)
		}
		if got := str(cfg.Data["auth_method"]); got != "api_token" {
			t.Errorf("after the %s run: %s/config auth_method = %q, want api_token", run, mount, got)
		}
		for _, secret := range []string{"api_token", "client_secret"} {
			if _, ok := cfg.Data[secret]; ok {
				t.Errorf("after the %s run: %s/config read returns %s", run, mount, secret)
			}
		}
		if got := str(cfg.Data["api_url"]); got != i.SnykURL {
			t.Errorf("after the %s run: %s/config api_url = %q, want %q", run, mount, got, i.SnykURL)
		}
		if got, want := strings.TrimSpace(str(cfg.Data["ca_cert"])), strings.TrimSpace(bootstrapReadFile(t, i.CACertFile)); got != want {
			t.Errorf("after the %s run: %s/config ca_cert is not the content of SNYK_CA_CERT_FILE", run, mount)
		}
	}
	checkMount := func(run string) {
		t.Helper()
		mounts, err := s.vault.client.Sys().ListMounts()
		if err != nil {
			t.Fatal(err)
		}
		m, ok := mounts[mount+"/"]
		if !ok {
			t.Fatalf("after the %s run: sys/mounts has no %s/ (mounts: %v)", run, mount, bootstrapMountNames(mounts))
		}
		if m.Type != pluginName || m.RunningVersion != env.version || m.PluginVersion != env.version {
			t.Errorf("after the %s run: %s/ type %q plugin_version %q running_plugin_version %q, want %s pinned to and running %s",
				run, mount, m.Type, m.PluginVersion, m.RunningVersion, pluginName, env.version)
		}
		if _, ok := mounts[mountPath+"/"]; ok {
			t.Errorf("after the %s run: the engine is also mounted at %s/ although MOUNT=%s", run, mountPath, mount)
		}
	}

	out, code := runConfigureScript(t, s.dir, environ)
	if code != 0 {
		t.Fatalf("configure.sh exited %d:\n%s", code, out)
	}
	noSecrets("first", out)
	if !strings.Contains(out, "enabling "+pluginName+" at "+mount+"/") {
		t.Errorf("first run did not take the enable path:\n%s", out)
	}

	// The binary was installed, executable, and registered by its sha256.
	if fi, err := os.Stat(installed); err != nil {
		t.Errorf("PLUGIN_DIRECTORY: %v", err)
	} else if fi.Mode().Perm() != 0o755 {
		t.Errorf("installed plugin mode %v, want 0755", fi.Mode().Perm())
	}
	if got, err := sha256File(installed); err != nil || got != wantSHA {
		t.Errorf("installed plugin sha256 %s (%v), want %s", got, err, wantSHA)
	}
	reg, err := s.vault.client.Sys().GetPlugin(&api.GetPluginInput{Name: pluginName, Type: api.PluginTypeSecrets, Version: env.version})
	if err != nil {
		t.Fatalf("catalog entry %s %s: %v", pluginName, env.version, err)
	}
	if reg.SHA256 != wantSHA || reg.Version != env.version || reg.Command != pluginName {
		t.Errorf("catalog entry %+v, want command %s, sha256 %s, version %s", reg, pluginName, wantSHA, env.version)
	}

	checkMount("first")
	checkConfig("first")

	// The policies, rewritten for the mount.
	operator, err := s.vault.client.Sys().GetPolicy("snyk-operator")
	if err != nil || operator == "" {
		t.Fatalf("policy snyk-operator: %q, %v", operator, err)
	}
	if !strings.Contains(operator, `path "`+mount+`/config"`) || !strings.Contains(operator, `path "`+mount+`/broker/+/+/rotate"`) {
		t.Errorf("snyk-operator does not name %s/ paths:\n%s", mount, operator)
	}
	if strings.Contains(operator, `"snyk/`) {
		t.Errorf("snyk-operator still names snyk/ paths with MOUNT=%s:\n%s", mount, operator)
	}
	reader, err := s.vault.client.Sys().GetPolicy("snyk-broker-payments-github")
	if err != nil || reader == "" {
		t.Fatalf("policy snyk-broker-payments-github: %q, %v", reader, err)
	}
	if !strings.Contains(reader, `path "`+mount+`/broker/payments/github"`) || strings.Contains(reader, "__") {
		t.Errorf("snyk-broker-payments-github does not name %s/broker/payments/github:\n%s", mount, reader)
	}

	// The policies work on the new mount: the operator creates nothing here
	// but reads the config; the reader reads the broker secret.
	s.sim.addIntegration(t, i.Orgs["payments"], "github", false)
	s.write(t, mount+"/integrations/payments/github", map[string]interface{}{
		"org_id": i.Orgs["payments"], "scm_token": i.GitHubToken, "scm_api_url": i.GitHubURL,
	})
	op := s.vault.tokenClient(t, bootstrapToken(t, s, false, "snyk-operator"))
	if cfg := bootstrapAllowed(t, op, "snyk-operator token", "read", mount+"/config", nil); cfg == nil || num(t, cfg.Data["ttl"]) != 1200 {
		t.Errorf("snyk-operator token reading %s/config: %v", mount, cfg)
	}
	bootstrapDenied(t, op, "snyk-operator token", "read", mount+"/broker/payments/github", nil)
	rd := s.vault.tokenClient(t, bootstrapToken(t, s, false, "snyk-broker-payments-github"))
	want := s.sim.integration(t, i.Orgs["payments"], "github").CurrentToken
	if sec := bootstrapAllowed(t, rd, "snyk-broker-payments-github token", "read", mount+"/broker/payments/github", nil); sec == nil || str(sec.Data["broker_token"]) != want {
		t.Errorf("reader token reading %s/broker/payments/github: %v, want broker_token %q", mount, sec, want)
	}
	bootstrapDenied(t, rd, "snyk-broker-payments-github token", "read", mount+"/config", nil)

	// Second run: already mounted, so tune + reload.
	out, code = runConfigureScript(t, s.dir, environ)
	if code != 0 {
		t.Fatalf("second run of configure.sh exited %d:\n%s", code, out)
	}
	noSecrets("second", out)
	if !strings.Contains(out, "upgrading "+mount+"/ to "+env.version) {
		t.Errorf("second run did not take the upgrade path:\n%s", out)
	}
	checkMount("second")
	checkConfig("second")
	if sec, err := rd.Logical().Read(mount + "/broker/payments/github"); err != nil || sec == nil || str(sec.Data["broker_token"]) != want {
		t.Errorf("after the second run: reader token reading %s/broker/payments/github = (%v, %v), want broker_token %q", mount, sec, err, want)
	}
}
