package e2e

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"text/template"
	"time"

	"github.com/hashicorp/vault/api"
	"gopkg.in/yaml.v3"
)

// TestVSORecipeRestartsTheBrokerAtTheSwitch renders the VaultDynamicSecret of
// bootstrap/helm/snyk-broker-vault with the real helm and plays Vault Secrets
// Operator's static-creds sync against the real engine in a real Vault,
// through a scheduled rotation, with a token carrying the broker-reader
// policy VSO's role would have.
//
// VSO is a Kubernetes controller and no cluster runs here, so its decisions
// are taken as VSO v1.4.1 takes them for a VaultDynamicSecret with
// allowStaticCreds (controllers/vaultdynamicsecret_controller.go:
// vaultStaticCredsMetaDataFromData, isStaticCreds, awaitVaultSecretRotation,
// computePostSyncHorizon; helpers/secrets.go: the HMAC of the rendered data
// decides a sync and a rollout restart):
//   - the response must carry last_vault_rotation (RFC 3339) and
//     rotation_period >= 1 or rotation_schedule, or VSO never re-reads;
//   - the next read is ttl (from the data) + 0.5 s later;
//   - while last_vault_rotation is unchanged and ttl <= 2, it re-reads for up
//     to 10 s waiting for the rotation;
//   - the Secret is written, and the Deployment restarted, only when the
//     rendered templates differ from the last sync.
//
// What it shows: the rendered keys are the Broker token and the SCM token;
// next_broker_token appearing at the provision restarts nothing; exactly
// one restart follows the switch, within seconds, onto the token Snyk now
// routes by; and VSO's reads stay few (no hot loop).
func TestVSORecipeRestartsTheBrokerAtTheSwitch(t *testing.T) {
	helm := os.Getenv("HELM_BINARY")
	if helm == "" {
		if os.Getenv("CI") != "" {
			t.Fatal("HELM_BINARY is not set (make e2e sets it)")
		}
		t.Skip("HELM_BINARY is not set (make e2e sets it)")
	}
	const period, ahead = 20 * time.Second, 8 * time.Second
	s := sharedStack(t)
	i := s.sim.info
	org := newUUID(t)
	s.sim.addOrg(t, org, "e2e vso")
	s.sim.addIntegration(t, org, "gitlab", false)
	s.write(t, mountPath+"/integrations/vso/gitlab", map[string]interface{}{
		"org_id": org, "scm_token": i.GitLabToken, "scm_url": i.GitLabURL,
		"ttl": "1h", "rotation_period": period.String(), "provision_ahead": ahead.String(),
	})
	switchAt, err := time.Parse(time.RFC3339, str(s.read(t, mountPath+"/integrations/vso/gitlab").Data["next_vault_rotation"]))
	if err != nil {
		t.Fatal(err)
	}

	vds := renderVaultDynamicSecret(t, helm, "vso-gitlab", "gitlab", "vso/gitlab")
	if vds.Spec.Mount != mountPath || vds.Spec.Path != "broker/vso/gitlab" || !vds.Spec.AllowStaticCreds {
		t.Fatalf("rendered VaultDynamicSecret spec %+v, want mount %s, path broker/vso/gitlab, allowStaticCreds", vds.Spec, mountPath)
	}
	policy := "snyk-broker-vso-gitlab"
	if err := s.vault.client.Sys().PutPolicy(policy, bootstrapReaderPolicy(t, mountPath, "vso", "gitlab")); err != nil {
		t.Fatal(err)
	}
	vso, err := s.vault.client.Clone()
	if err != nil {
		t.Fatal(err)
	}
	vso.SetToken(bootstrapToken(t, s, true, policy))

	op := &vsoStaticCredsModel{t: t, client: vso, path: vds.Spec.Mount + "/" + vds.Spec.Path, render: vds.renderer(t)}
	op.sync(time.Now()) // the initial sync (VSO restarts on it too; not counted)
	sawProvisional := false
	// Up to 10 s past the first switch: the next rotation's provision comes
	// period-ahead (12 s) after it, out of this window.
	deadline := switchAt.Add(10 * time.Second)
	for op.nextReadAt.Before(deadline) {
		time.Sleep(time.Until(op.nextReadAt))
		op.sync(time.Now())
		if op.lastRaw["next_broker_token"] != nil {
			sawProvisional = true
		}
	}

	current := s.sim.integration(t, org, "gitlab").CurrentToken
	in := s.read(t, mountPath+"/integrations/vso/gitlab")
	switched, err := time.Parse(time.RFC3339, str(in.Data["last_vault_rotation"]))
	if err != nil {
		t.Fatal(err)
	}
	if !sawProvisional {
		t.Errorf("VSO's reads never fell in the provision-ahead window (reads at %v): the lease should end at the provision", op.readTimes())
	}
	if len(op.restarts) != 1 {
		t.Fatalf("rollout restarts after the initial sync: %d at %v, want exactly one, at the switch (%s)", len(op.restarts), op.restartTimes(), switchAt.Format(time.RFC3339))
	}
	r := op.restarts[0]
	if r.data["broker-token"] != current {
		t.Errorf("the restart rendered broker-token %q, want the token Snyk routes by now", redact(r.data["broker-token"]))
	}
	if r.data["scm-token"] != i.GitLabToken {
		t.Errorf("the restart rendered scm-token of %d bytes, want the integration's SCM token", len(r.data["scm-token"]))
	}
	// last_vault_rotation has whole seconds; the restart may not precede it.
	delay := r.at.Sub(switched)
	if delay < -time.Second || delay > 5*time.Second {
		t.Errorf("the restart came %s after the switch (%s), want within 5 s", delay.Round(100*time.Millisecond), switched.Format(time.RFC3339))
	}
	if n := len(op.reads); n > 12 {
		t.Errorf("VSO read the secret %d times in %s: a hot loop", n, period+15*time.Second)
	}
	report(t, fmt.Sprintf("VSO recipe (static-creds sync of snyk/broker/vso/gitlab, rotation_period %s): %d reads, one rollout restart %s after the switch",
		period, len(op.reads), delay.Round(100*time.Millisecond)))
}

func redact(s string) string {
	if len(s) <= 4 {
		return "…"
	}
	return s[:4] + "…"
}

// renderedVDS is the part of a rendered VaultDynamicSecret the model needs.
type renderedVDS struct {
	Kind string `yaml:"kind"`
	Spec struct {
		Mount            string `yaml:"mount"`
		Path             string `yaml:"path"`
		AllowStaticCreds bool   `yaml:"allowStaticCreds"`
		Destination      struct {
			Transformation struct {
				ExcludeRaw bool     `yaml:"excludeRaw"`
				Excludes   []string `yaml:"excludes"`
				Templates  map[string]struct {
					Text string `yaml:"text"`
				} `yaml:"templates"`
			} `yaml:"transformation"`
		} `yaml:"destination"`
	} `yaml:"spec"`
}

// renderer is what VSO writes into the Secret from the data it read: the
// transformation's templates, executed as VSO does.
func (v renderedVDS) renderer(t *testing.T) func(map[string]interface{}) map[string]string {
	tmpls := map[string]*template.Template{}
	for key, tmpl := range v.Spec.Destination.Transformation.Templates {
		tmpls[key] = template.Must(template.New(key).Option("missingkey=error").Parse(tmpl.Text))
	}
	return func(data map[string]interface{}) map[string]string {
		rendered := map[string]string{}
		for key, tmpl := range tmpls {
			var b bytes.Buffer
			if err := tmpl.Execute(&b, map[string]interface{}{"Secrets": data}); err != nil {
				t.Fatalf("rendering template %s: %v", key, err)
			}
			rendered[key] = b.String()
		}
		return rendered
	}
}

func renderVaultDynamicSecret(t *testing.T, helm, release, scmType, integration string) renderedVDS {
	t.Helper()
	chart := filepath.Join(bootstrapDir(t), "helm", "snyk-broker-vault")
	cmd := exec.Command(helm, "template", release+"-vault", chart, "--namespace", "snyk-broker",
		"--set", "broker.release="+release, "--set", "broker.scmType="+scmType,
		"--set", "vault.integration="+integration, "--set", "vault.mount="+mountPath)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("helm template: %v\n%s", err, stderr.String())
	}
	d, ok := yamlDocOfKind[renderedVDS](t, out, "VaultDynamicSecret")
	if !ok {
		t.Fatalf("helm rendered no VaultDynamicSecret:\n%s", out)
	}
	tr := d.Spec.Destination.Transformation
	if !tr.ExcludeRaw || strings.Join(tr.Excludes, ",") != ".*" {
		t.Fatalf("the recipe keeps raw fields in the Secret (excludeRaw %v, excludes %v)", tr.ExcludeRaw, tr.Excludes)
	}
	return d
}

// yamlDocOfKind decodes into a T the first document of the multi-document
// YAML raw whose kind is kind.
func yamlDocOfKind[T any](t *testing.T, raw []byte, kind string) (T, bool) {
	t.Helper()
	var zero T
	dec := yaml.NewDecoder(bytes.NewReader(raw))
	for {
		var node yaml.Node
		err := dec.Decode(&node)
		if errors.Is(err, io.EOF) {
			return zero, false
		}
		if err != nil {
			t.Fatalf("YAML document: %v", err)
		}
		var head struct {
			Kind string `yaml:"kind"`
		}
		if node.Decode(&head) != nil || head.Kind != kind {
			continue
		}
		var d T
		if err := node.Decode(&d); err != nil {
			t.Fatalf("%s: %v", kind, err)
		}
		return d, true
	}
}

// vsoStaticCredsModel takes VSO v1.4.1's static-creds decisions (see the
// test's comment) against a real Vault.
type vsoStaticCredsModel struct {
	t          *testing.T
	client     *api.Client
	path       string
	render     func(map[string]interface{}) map[string]string
	last       vsoStaticMeta
	lastData   map[string]string
	lastRaw    map[string]interface{}
	nextReadAt time.Time
	reads      []time.Time
	restarts   []vsoRestart
}

type vsoRestart struct {
	at   time.Time
	data map[string]string
}

type vsoStaticMeta struct {
	lastVaultRotation int64
	rotationPeriod    int64
	rotationSchedule  string
	ttl               int64
}

func (m *vsoStaticCredsModel) read() (map[string]interface{}, vsoStaticMeta) {
	m.t.Helper()
	m.reads = append(m.reads, time.Now())
	sec, err := m.client.Logical().Read(m.path)
	if err != nil || sec == nil {
		m.t.Fatalf("VSO's read of %s: %v", m.path, err)
	}
	meta, err := vsoParseStaticMeta(sec.Data)
	if err != nil {
		m.t.Fatalf("VSO cannot parse the static-creds fields of %s: %v", m.path, err)
	}
	if meta.lastVaultRotation <= 0 || (meta.rotationPeriod < 1 && meta.rotationSchedule == "") {
		m.t.Fatalf("%s lacks what VSO needs to re-read (last_vault_rotation, rotation_period>=1 or rotation_schedule): %+v; VSO would never sync again", m.path, meta)
	}
	return sec.Data, meta
}

func (m *vsoStaticCredsModel) sync(now time.Time) {
	m.t.Helper()
	data, meta := m.read()
	// awaitVaultSecretRotation: near a rotation whose result is not visible
	// yet, poll (backoff up to 2 s apart, 10 s in all).
	if m.lastData != nil && meta.lastVaultRotation == m.last.lastVaultRotation && meta.ttl <= 2 {
		for start := time.Now(); time.Since(start) < 10*time.Second; {
			time.Sleep(time.Second)
			data, meta = m.read()
			if meta.lastVaultRotation != m.last.lastVaultRotation || meta.ttl > 2 {
				break
			}
		}
		now = time.Now()
	}
	rendered := m.render(data)
	if m.lastData != nil && !equalStringMaps(rendered, m.lastData) {
		m.restarts = append(m.restarts, vsoRestart{at: now, data: rendered})
	}
	m.last, m.lastData, m.lastRaw = meta, rendered, data
	horizon := time.Duration(meta.ttl) * time.Second
	if meta.rotationPeriod > 0 {
		horizon += 500 * time.Millisecond
	}
	m.nextReadAt = now.Add(horizon)
}

func (m *vsoStaticCredsModel) restartTimes() []string {
	var out []string
	for _, r := range m.restarts {
		out = append(out, r.at.Format("15:04:05.0"))
	}
	return out
}

func (m *vsoStaticCredsModel) readTimes() []string {
	var out []string
	for _, r := range m.reads {
		out = append(out, r.Format("15:04:05.0"))
	}
	return out
}

// vsoParseStaticMeta reads the fields as VSO does: last_vault_rotation as an
// RFC 3339 time, rotation_period and ttl as JSON integers.
func vsoParseStaticMeta(d map[string]interface{}) (vsoStaticMeta, error) {
	var m vsoStaticMeta
	if v, ok := d["last_vault_rotation"].(string); ok {
		ts, err := time.Parse(time.RFC3339Nano, v)
		if err != nil {
			return m, fmt.Errorf("invalid last_vault_rotation: %w", err)
		}
		m.lastVaultRotation = ts.Unix()
	}
	ints := map[string]*int64{"rotation_period": &m.rotationPeriod, "ttl": &m.ttl}
	for key, dst := range ints {
		v, ok := d[key]
		if !ok || v == nil {
			continue
		}
		n, ok := v.(json.Number)
		if !ok {
			return m, fmt.Errorf("invalid %s: %T, want a JSON integer", key, v)
		}
		i, err := n.Int64()
		if err != nil {
			return m, fmt.Errorf("invalid %s: %w", key, err)
		}
		*dst = i
	}
	if v, ok := d["rotation_schedule"].(string); ok {
		m.rotationSchedule = v
	}
	return m, nil
}

func equalStringMaps(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}
