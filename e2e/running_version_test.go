package e2e

import (
	"encoding/json"
	"strings"
	"testing"
)

// TestSecretsListRunningVersion checks that the snyk/ mount runs the
// registered plugin version (CLI `vault secrets list -detailed` and the
// sys/mounts API).
func TestSecretsListRunningVersion(t *testing.T) {
	s := sharedStack(t)
	checkRunningVersion(t, s)
}

func checkRunningVersion(t *testing.T, s *stack) {
	t.Helper()
	out, errOut, err := s.vault.cli(t, "secrets", "list", "-detailed", "-format=json")
	if err != nil {
		t.Fatalf("vault secrets list -detailed: %v\n%s", err, errOut)
	}
	var mounts map[string]struct {
		Type                 string `json:"type"`
		PluginVersion        string `json:"plugin_version"`
		RunningPluginVersion string `json:"running_plugin_version"`
		RunningSHA256        string `json:"running_sha256"`
	}
	if err := json.Unmarshal([]byte(out), &mounts); err != nil {
		t.Fatalf("decoding secrets list: %v\n%s", err, out)
	}
	m, ok := mounts[mountPath+"/"]
	if !ok {
		t.Fatalf("secrets list has no %s/ mount: %s", mountPath, out)
	}
	if m.Type != pluginName || m.PluginVersion != env.version || m.RunningPluginVersion != env.version || m.RunningSHA256 != s.vault.pluginSHA {
		t.Errorf("CLI: snyk/ mount type %q plugin_version %q running_plugin_version %q running_sha256 %q; want %q, %q, %q, %q",
			m.Type, m.PluginVersion, m.RunningPluginVersion, m.RunningSHA256, pluginName, env.version, env.version, s.vault.pluginSHA)
	}

	// The table form shows the version too.
	table, _, err := s.vault.cli(t, "secrets", "list", "-detailed")
	if err != nil {
		t.Fatal(err)
	}
	var row string
	for _, l := range strings.Split(table, "\n") {
		if strings.HasPrefix(l, mountPath+"/ ") {
			row = l
		}
	}
	if !strings.Contains(row, pluginName) || !strings.Contains(row, env.version) {
		t.Errorf("secrets list -detailed row for %s/ = %q, want the plugin name and %s", mountPath, row, env.version)
	}

	apiMounts, err := s.vault.client.Sys().ListMounts()
	if err != nil {
		t.Fatal(err)
	}
	am := apiMounts[mountPath+"/"]
	if am == nil || am.RunningVersion != env.version {
		t.Errorf("sys/mounts: snyk/ = %+v, want running_plugin_version %s", am, env.version)
	}
}
