package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"testing"
	"time"
)

// TestVSOUniversalRecipeRestartsAtTheSwitch plays Vault Secrets Operator's
// static-creds sync (as TestVSORecipeRestartsTheBrokerAtTheSwitch models
// VSO v1.4.1) of bootstrap/kubernetes/universal-broker-vso.yaml against the
// real engine through a scheduled client-secret rotation: the Secret holds
// the client's variables only, the creation of the next secret changes
// nothing, and exactly one rollout restart follows the switch, onto the new
// CLIENT_SECRET.
func TestVSOUniversalRecipeRestartsAtTheSwitch(t *testing.T) {
	s := newTestStack(t)
	u := s.sim.info.Universal
	createUniversal(t, s)
	switchAt, err := time.Parse(time.RFC3339, str(s.read(t, universalPath).Data["next_vault_rotation"]))
	if err != nil {
		t.Fatal(err)
	}
	vds := universalVDS(t)
	if vds.Spec.Mount+"/"+vds.Spec.Path != mountPath+"/universal/demo/env" || !vds.Spec.AllowStaticCreds {
		t.Fatalf("the recipe reads %s/%s (static creds %v)", vds.Spec.Mount, vds.Spec.Path, vds.Spec.AllowStaticCreds)
	}
	if err := s.vault.client.Sys().PutPolicy("universal-vso", `path "snyk/universal/demo/env" {
  capabilities = ["read"]
}
`); err != nil {
		t.Fatal(err)
	}
	vso, err := s.vault.client.Clone()
	if err != nil {
		t.Fatal(err)
	}
	vso.SetToken(bootstrapToken(t, s, true, "universal-vso"))

	op := &vsoStaticCredsModel{t: t, client: vso, path: vds.Spec.Mount + "/" + vds.Spec.Path, render: vds.renderer()}
	op.sync(time.Now())
	initial := op.lastData
	want := []string{"DEPLOYMENT_ID", "CLIENT_ID", "CLIENT_SECRET", "UNIVERSAL_BROKER_ENABLED", "UNIVERSAL_BROKER_GA", "BROKER_SERVER_URL", "API_BASE_URL", "MY_GITHUB_TOKEN", "MY_GITLAB_TOKEN"}
	if len(initial) != len(want) {
		t.Errorf("the Secret holds %d keys, want %d (%v)", len(initial), len(want), want)
	}
	for _, k := range want {
		if _, ok := initial[k]; !ok {
			t.Errorf("the Secret lacks %s", k)
		}
	}
	sawNext := false
	for deadline := switchAt.Add(10 * time.Second); op.nextReadAt.Before(deadline); {
		time.Sleep(time.Until(op.nextReadAt))
		op.sync(time.Now())
		sawNext = sawNext || op.lastRaw["next_client_secret"] != nil
	}
	if !sawNext {
		t.Errorf("VSO's reads never saw the next secret (reads at %v): the lease should end at its creation", op.readTimes())
	}
	if len(op.restarts) != 1 {
		t.Fatalf("rollout restarts after the initial sync: %d at %v, want exactly one, at the switch (%s)", len(op.restarts), op.restartTimes(), switchAt.Format(time.RFC3339))
	}
	r := op.restarts[0]
	served := str(s.read(t, universalEnvPath).Data["CLIENT_SECRET"])
	if r.data["CLIENT_SECRET"] == u.ClientSecret || r.data["CLIENT_SECRET"] != served {
		t.Errorf("the restart wrote a CLIENT_SECRET other than the one served after the switch")
	}
	if delay := r.at.Sub(switchAt); delay < -time.Second || delay > 5*time.Second {
		t.Errorf("the restart came %s after the switch, want within 5 s", delay.Round(100*time.Millisecond))
	}
	report(t, fmt.Sprintf("VSO universal recipe (static-creds sync of snyk/universal/demo/env, rotation_period %s): %d reads, one rollout restart %s after the switch",
		universalPeriod, len(op.reads), r.at.Sub(switchAt).Round(100*time.Millisecond)))
}

// universalVDSDoc is the part of the recipe's VaultDynamicSecret the model needs.
type universalVDSDoc struct {
	Kind string `yaml:"kind"`
	Spec struct {
		Mount            string `yaml:"mount"`
		Path             string `yaml:"path"`
		AllowStaticCreds bool   `yaml:"allowStaticCreds"`
		Destination      struct {
			Transformation struct {
				ExcludeRaw bool     `yaml:"excludeRaw"`
				Excludes   []string `yaml:"excludes"`
			} `yaml:"transformation"`
		} `yaml:"destination"`
	} `yaml:"spec"`
}

func universalVDS(t *testing.T) universalVDSDoc {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(bootstrapDir(t), "kubernetes", "universal-broker-vso.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	d, ok := yamlDocOfKind[universalVDSDoc](t, raw, "VaultDynamicSecret")
	if !ok {
		t.Fatal("no VaultDynamicSecret in universal-broker-vso.yaml")
	}
	// The recipe names deployment prod; the test's is demo.
	d.Spec.Path = "universal/demo/env"
	return d
}

// renderer keeps the raw fields the transformation does not exclude, as
// VSO writes them (strings as they are).
func (v universalVDSDoc) renderer() func(map[string]interface{}) map[string]string {
	var excludes []*regexp.Regexp
	for _, e := range v.Spec.Destination.Transformation.Excludes {
		excludes = append(excludes, regexp.MustCompile(e))
	}
	return func(data map[string]interface{}) map[string]string {
		out := map[string]string{}
	fields:
		for k, val := range data {
			for _, re := range excludes {
				if re.MatchString(k) {
					continue fields
				}
			}
			out[k] = fmt.Sprint(val)
		}
		return out
	}
}
