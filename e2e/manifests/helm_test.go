package manifests

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/santhosh-tekuri/jsonschema/v6"
	yamlv3 "gopkg.in/yaml.v3"
	"sigs.k8s.io/yaml"
)

// renderCase is one way an operator installs bootstrap/helm/snyk-broker-vault.
type renderCase struct {
	name        string
	release     string // the snyk-broker chart's release (broker.release)
	integration string // <name>/<scm> of the engine
	scmType     string // the snyk-broker chart's scmType
	extra       []string
	// what the rendered VaultDynamicSecret must say
	wantDeployment string
	wantSecret     string
	wantSCMField   string
	wantKinds      []string
}

var renderCases = []renderCase{
	{
		name: "github.com", release: "payments-github", integration: "payments/github", scmType: "github-com",
		wantDeployment: "github-com-broker-payments-github", wantSecret: "payments-github-vault", wantSCMField: "scm_token",
		wantKinds: []string{"ServiceAccount", "VaultAuth", "VaultDynamicSecret"},
	},
	{
		name: "GitHub Enterprise", release: "payments-ghe", integration: "payments/github-enterprise", scmType: "github-enterprise",
		wantDeployment: "github-enterprise-broker-payments-ghe", wantSecret: "payments-ghe-vault", wantSCMField: "scm_token",
		wantKinds: []string{"ServiceAccount", "VaultAuth", "VaultDynamicSecret"},
	},
	{
		name: "GitLab with a VaultConnection", release: "mobile-gitlab", integration: "mobile/gitlab", scmType: "gitlab",
		extra:          []string{"vault.connection.create=true", "vault.connection.address=https://vault.vault.svc:8200", "vault.connection.caCertSecretRef=vault-ca"},
		wantDeployment: "gitlab-broker-mobile-gitlab", wantSecret: "mobile-gitlab-vault", wantSCMField: "scm_token",
		wantKinds: []string{"ServiceAccount", "VaultAuth", "VaultConnection", "VaultDynamicSecret"},
	},
	{
		name: "Azure Repos with an existing VaultAuth", release: "infra-azure", integration: "infra/azure-repos", scmType: "azure-repos",
		extra:          []string{"vault.auth.create=false", "vault.auth.name=platform-vault"},
		wantDeployment: "azure-repos-broker-infra-azure", wantSecret: "infra-azure-vault", wantSCMField: "scm_token",
		wantKinds: []string{"VaultDynamicSecret"},
	},
	{
		name: "Bitbucket Server basic auth, suffixes disabled", release: "legacy-bb", integration: "legacy/bitbucket-server", scmType: "bitbucket-server",
		extra:          []string{"broker.disableSuffixes=true", "secret.name=bitbucket-from-vault"},
		wantDeployment: "bitbucket-server-broker", wantSecret: "bitbucket-from-vault", wantSCMField: "scm_password",
		wantKinds: []string{"ServiceAccount", "VaultAuth", "VaultDynamicSecret"},
	},
	{
		name: "Bitbucket Server bearer auth", release: "legacy-bbpat", integration: "legacy/bitbucket-server", scmType: "bitbucket-server-bearer-auth",
		wantDeployment: "bitbucket-server-bearer-auth-broker-legacy-bbpat", wantSecret: "legacy-bbpat-vault", wantSCMField: "scm_token",
		wantKinds: []string{"ServiceAccount", "VaultAuth", "VaultDynamicSecret"},
	},
}

// TestHelmRecipeRendersValidVSOResources renders the chart with the real
// helm binary for each supported SCM and validates every resource against
// the Vault Secrets Operator CRD it instantiates.
func TestHelmRecipeRendersValidVSOResources(t *testing.T) {
	helm := helmBinary(t)
	crds := loadCRDSchemas(t)
	for _, tc := range renderCases {
		t.Run(tc.name, func(t *testing.T) {
			docs := helmTemplate(t, helm, tc.release+"-vault", tc.set()...)
			var kinds []string
			for _, d := range docs {
				kind, _ := d["kind"].(string)
				kinds = append(kinds, kind)
				if strings.HasPrefix(fmt.Sprint(d["apiVersion"]), "secrets.hashicorp.com/") {
					schema, ok := crds[kind]
					if !ok {
						t.Fatalf("%s: no vendored CRD for kind %s", tc.name, kind)
					}
					if err := schema.Validate(toJSONValue(t, d)); err != nil {
						t.Errorf("%s: %s does not match VSO's CRD: %v", tc.name, kind, err)
					}
				}
			}
			if strings.Join(kinds, ",") != strings.Join(tc.wantKinds, ",") {
				t.Errorf("rendered kinds %v, want %v", kinds, tc.wantKinds)
			}
			vds := findKind(t, docs, "VaultDynamicSecret")
			spec := vds["spec"].(map[string]any)
			checks := map[string][2]any{
				"mount":                                 {spec["mount"], "snyk"},
				"path":                                  {spec["path"], "broker/" + tc.integration},
				"allowStaticCreds":                      {spec["allowStaticCreds"], true},
				"destination.name":                      {dig(spec, "destination", "name"), tc.wantSecret},
				"destination.transformation.excludeRaw": {dig(spec, "destination", "transformation", "excludeRaw"), true},
				"destination.transformation.templates.broker-token.text": {dig(spec, "destination", "transformation", "templates", "broker-token", "text"), "{{ .Secrets.broker_token }}"},
				"destination.transformation.templates.scm-token.text":    {dig(spec, "destination", "transformation", "templates", "scm-token", "text"), "{{ .Secrets." + tc.wantSCMField + " }}"},
				"rolloutRestartTargets[0].name":                          {dig(spec, "rolloutRestartTargets", 0, "name"), tc.wantDeployment},
				"rolloutRestartTargets[0].kind":                          {dig(spec, "rolloutRestartTargets", 0, "kind"), "Deployment"},
			}
			for field, c := range checks {
				if fmt.Sprint(c[0]) != fmt.Sprint(c[1]) {
					t.Errorf("VaultDynamicSecret spec.%s = %v, want %v", field, c[0], c[1])
				}
			}
			// The templates must leave nothing else in the Secret: every raw
			// field is excluded, so next_broker_token (which appears at the
			// provision) cannot change the data and restart the Broker early.
			if ex := dig(spec, "destination", "transformation", "excludes"); fmt.Sprint(ex) != "[.*]" {
				t.Errorf("transformation.excludes = %v, want [.*]", ex)
			}
			if _, err := os.Stat(filepath.Join(repoRoot(t), "bootstrap", "policies", "broker-reader.hcl.tmpl")); err == nil {
				if auth := findKindOptional(docs, "VaultAuth"); auth != nil {
					if role := dig(auth["spec"].(map[string]any), "kubernetes", "role"); role != "snyk-broker-"+strings.ReplaceAll(tc.integration, "/", "-") {
						t.Errorf("VaultAuth role %v, want the policy name configure.sh writes for %s (snyk-broker-<name>-<scm>)", role, tc.integration)
					}
				}
			}
		})
	}
}

func (tc renderCase) set() []string {
	args := []string{"--namespace", "snyk-broker",
		"--set", "broker.release=" + tc.release,
		"--set", "broker.scmType=" + tc.scmType,
		"--set", "vault.integration=" + tc.integration}
	for _, e := range tc.extra {
		args = append(args, "--set", e)
	}
	return args
}

// TestHelmRecipeRefusesMismatches: what an operator could get wrong stops
// the install with a message naming the value and the fix.
func TestHelmRecipeRefusesMismatches(t *testing.T) {
	helm := helmBinary(t)
	for _, tc := range []struct {
		name string
		set  []string
		want string
	}{
		{"no integration", []string{"broker.release=x"}, "vault.integration is required"},
		{"no broker release", []string{"vault.integration=payments/github"}, "broker.release is required"},
		{"unknown engine SCM", []string{"broker.release=x", "vault.integration=payments/bitbucket-cloud"}, "must be <name>/<scm>"},
		{"chart SCM for another engine SCM", []string{"broker.release=x", "vault.integration=payments/gitlab", "broker.scmType=github-com"}, `broker.scmType "github-com" does not serve the engine's gitlab integration`},
		{"existing VaultAuth without a name", []string{"broker.release=x", "vault.integration=payments/github", "vault.auth.create=false"}, "vault.auth.name is required"},
		{"connection without an address", []string{"broker.release=x", "vault.integration=payments/github", "vault.connection.create=true"}, "vault.connection.address is required"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			args := []string{"template", "r", chartDir(t)}
			for _, s := range tc.set {
				args = append(args, "--set", s)
			}
			out, err := exec.Command(helm, args...).CombinedOutput()
			if err == nil {
				t.Fatalf("helm template succeeded, want it to refuse with %q:\n%s", tc.want, out)
			}
			if !strings.Contains(string(out), tc.want) {
				t.Errorf("helm template refused with:\n%s\nwant a message containing %q", out, tc.want)
			}
		})
	}
}

// TestSnykBrokerChartValues validates the values file the README hands to
// Snyk's snyk-broker chart against that chart's own values schema, and
// checks that it reads the Secret, keys and release the recipe renders.
func TestSnykBrokerChartValues(t *testing.T) {
	helm := helmBinary(t)
	valuesPath := filepath.Join(repoRoot(t), "bootstrap", "helm", "values-snyk-broker.yaml")
	raw, err := os.ReadFile(valuesPath)
	if err != nil {
		t.Fatal(err)
	}
	values := map[string]any{}
	if err := yaml.Unmarshal(raw, &values); err != nil {
		t.Fatalf("%s: %v", valuesPath, err)
	}
	schema := compileSchemaFile(t, filepath.Join("testdata", "snyk-broker-chart", "values.schema.json"))
	if err := schema.Validate(toJSONValue(t, values)); err != nil {
		t.Fatalf("values-snyk-broker.yaml does not match the snyk-broker chart's values schema: %v", err)
	}
	if values["useExternalSecrets"] != true {
		t.Errorf("useExternalSecrets = %v, want true: otherwise the chart creates its own Secret from brokerToken", values["useExternalSecrets"])
	}
	for _, k := range []string{"brokerToken", "scmToken"} {
		if v, ok := values[k]; ok && v != "" {
			t.Errorf("%s is set in the values file: secrets come from Vault only", k)
		}
	}
	// The values file documents release payments-github and integration
	// payments/github: render the recipe for the same and compare.
	docs := helmTemplate(t, helm, "payments-github-vault", renderCases[0].set()...)
	spec := findKind(t, docs, "VaultDynamicSecret")["spec"].(map[string]any)
	secret := dig(spec, "destination", "name")
	for field, want := range map[string]any{
		"scmType":                       renderCases[0].scmType,
		"brokerTokenSecret.name":        secret,
		"brokerTokenSecret.key":         "broker-token",
		"externalCredentialSecret.name": secret,
		"externalCredentialSecret.key":  "scm-token",
	} {
		path := strings.Split(field, ".")
		keys := make([]any, len(path))
		for i, p := range path {
			keys[i] = p
		}
		if got := dig(values, keys...); fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("values-snyk-broker.yaml %s = %v, want %v (what the recipe renders)", field, got, want)
		}
	}
	for _, k := range []string{"broker-token", "scm-token"} {
		if dig(spec, "destination", "transformation", "templates", k) == nil {
			t.Errorf("the recipe renders no %q key, which the values file reads", k)
		}
	}
}

// loadCRDSchemas compiles the openAPIV3Schema of each vendored VSO CRD's
// served version, keyed by kind.
func loadCRDSchemas(t *testing.T) map[string]*jsonschema.Schema {
	t.Helper()
	files, err := filepath.Glob(filepath.Join("testdata", "vault-secrets-operator", "*.yaml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no vendored VSO CRDs: %v", err)
	}
	out := map[string]*jsonschema.Schema{}
	for _, f := range files {
		raw, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var crd struct {
			Spec struct {
				Names    struct{ Kind string }
				Versions []struct {
					Name   string
					Served bool
					Schema struct {
						OpenAPIV3Schema map[string]any `json:"openAPIV3Schema"`
					}
				}
			}
		}
		if err := yaml.Unmarshal(raw, &crd); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		for _, v := range crd.Spec.Versions {
			if v.Name != "v1beta1" || !v.Served {
				continue
			}
			schema := closeObjects(v.Schema.OpenAPIV3Schema)
			c := jsonschema.NewCompiler()
			url := "file:///" + filepath.Base(f) + ".json"
			if err := c.AddResource(url, toJSONValue(t, schema)); err != nil {
				t.Fatal(err)
			}
			s, err := c.Compile(url)
			if err != nil {
				t.Fatalf("%s: %v", f, err)
			}
			out[crd.Spec.Names.Kind] = s
		}
	}
	return out
}

// closeObjects makes the schema judge what the API server would accept:
// undeclared fields are errors in every object schema that declares its
// properties (unless it preserves unknown fields), since the server's pruning
// would drop them silently; and a required field with a default may be
// omitted, since the server fills defaults in before it validates.
func closeObjects(s map[string]any) map[string]any {
	if props, ok := s["properties"].(map[string]any); ok {
		if _, set := s["additionalProperties"]; !set && s["x-kubernetes-preserve-unknown-fields"] != true {
			s["additionalProperties"] = false
		}
		if req, ok := s["required"].([]any); ok {
			kept := []any{}
			for _, r := range req {
				if p, ok := props[fmt.Sprint(r)].(map[string]any); ok {
					if _, hasDefault := p["default"]; hasDefault {
						continue
					}
				}
				kept = append(kept, r)
			}
			s["required"] = kept
		}
		for _, p := range props {
			if m, ok := p.(map[string]any); ok {
				closeObjects(m)
			}
		}
	}
	for _, key := range []string{"items", "additionalProperties"} {
		if m, ok := s[key].(map[string]any); ok {
			closeObjects(m)
		}
	}
	return s
}

func compileSchemaFile(t *testing.T, path string) *jsonschema.Schema {
	t.Helper()
	c := jsonschema.NewCompiler()
	c.AssertFormat()
	s, err := c.Compile(path)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return s
}

// toJSONValue turns YAML-decoded data into what the validator expects
// (JSON numbers and plain maps).
func toJSONValue(t *testing.T, v any) any {
	t.Helper()
	b, err := yaml.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	j, err := yaml.YAMLToJSON(b)
	if err != nil {
		t.Fatal(err)
	}
	out, err := jsonschema.UnmarshalJSON(bytes.NewReader(j))
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func helmTemplate(t *testing.T, helm, release string, args ...string) []map[string]any {
	t.Helper()
	cmd := exec.Command(helm, append([]string{"template", release, chartDir(t)}, args...)...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("helm template %v: %v\n%s", args, err, stderr.String())
	}
	return decodeDocs(t, "helm output", out)
}

// decodeDocs reads a multi-document YAML stream.
func decodeDocs(t *testing.T, what string, raw []byte) []map[string]any {
	t.Helper()
	var docs []map[string]any
	dec := yamlv3.NewDecoder(bytes.NewReader(raw))
	for {
		var d map[string]any
		err := dec.Decode(&d)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("%s is not YAML: %v\n%s", what, err, raw)
		}
		if d != nil {
			docs = append(docs, d)
		}
	}
	return docs
}

func chartDir(t *testing.T) string {
	return filepath.Join(repoRoot(t), "bootstrap", "helm", "snyk-broker-vault")
}

// helmBinary is the pinned helm that make builds (HELM_BINARY). Without it
// the rendering tests cannot run: a skip locally, a failure under CI.
func helmBinary(t *testing.T) string {
	t.Helper()
	h := os.Getenv("HELM_BINARY")
	if h == "" {
		if os.Getenv("CI") != "" {
			t.Fatal("HELM_BINARY is not set (run through make manifests)")
		}
		t.Skip("HELM_BINARY is not set (run through make manifests)")
	}
	return h
}

func findKind(t *testing.T, docs []map[string]any, kind string) map[string]any {
	t.Helper()
	d := findKindOptional(docs, kind)
	if d == nil {
		t.Fatalf("no %s rendered", kind)
	}
	return d
}

func findKindOptional(docs []map[string]any, kind string) map[string]any {
	for _, d := range docs {
		if d["kind"] == kind {
			return d
		}
	}
	return nil
}

// dig walks maps by string keys and lists by int indexes; nil when absent.
func dig(v any, keys ...any) any {
	for _, k := range keys {
		switch key := k.(type) {
		case string:
			m, ok := v.(map[string]any)
			if !ok {
				return nil
			}
			v = m[key]
		case int:
			l, ok := v.([]any)
			if !ok || key >= len(l) {
				return nil
			}
			v = l[key]
		}
	}
	return v
}
