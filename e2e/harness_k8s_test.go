package e2e

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

// Kubernetes manifests: only the fields the checks below read.
type k8sEnvVar struct {
	Name  string `yaml:"name"`
	Value string `yaml:"value"`
}

type k8sContainer struct {
	Name            string   `yaml:"name"`
	Image           string   `yaml:"image"`
	Command         []string `yaml:"command"`
	WorkingDir      string   `yaml:"workingDir"`
	SecurityContext struct {
		RunAsUser int64 `yaml:"runAsUser"`
	} `yaml:"securityContext"`
	Env          []k8sEnvVar `yaml:"env"`
	VolumeMounts []struct {
		Name      string `yaml:"name"`
		MountPath string `yaml:"mountPath"`
	} `yaml:"volumeMounts"`
	Ports []struct {
		Name          string `yaml:"name"`
		ContainerPort int    `yaml:"containerPort"`
	} `yaml:"ports"`
}

type k8sMeta struct {
	Name        string            `yaml:"name"`
	Namespace   string            `yaml:"namespace"`
	Labels      map[string]string `yaml:"labels"`
	Annotations map[string]string `yaml:"annotations"`
}

type k8sDoc struct {
	APIVersion string            `yaml:"apiVersion"`
	Kind       string            `yaml:"kind"`
	Metadata   k8sMeta           `yaml:"metadata"`
	Data       map[string]string `yaml:"data"`
	Spec       struct {
		Selector map[string]interface{} `yaml:"selector"`
		Ports    []struct {
			TargetPort string `yaml:"targetPort"`
		} `yaml:"ports"`
		Template struct {
			Metadata k8sMeta `yaml:"metadata"`
			Spec     struct {
				ServiceAccountName    string         `yaml:"serviceAccountName"`
				ShareProcessNamespace bool           `yaml:"shareProcessNamespace"`
				Containers            []k8sContainer `yaml:"containers"`
				Volumes               []struct {
					Name      string `yaml:"name"`
					ConfigMap struct {
						Name string `yaml:"name"`
					} `yaml:"configMap"`
				} `yaml:"volumes"`
			} `yaml:"spec"`
		} `yaml:"template"`
	} `yaml:"spec"`
}

// parseK8sFile decodes every YAML document of a file.
func parseK8sFile(t *testing.T, path string) []k8sDoc {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	dec := yaml.NewDecoder(f)
	var docs []k8sDoc
	for n := 1; ; n++ {
		var node yaml.Node
		err := dec.Decode(&node)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("%s: document %d does not parse: %v", filepath.Base(path), n, err)
		}
		var d k8sDoc
		if err := node.Decode(&d); err != nil {
			t.Fatalf("%s: document %d: %v", filepath.Base(path), n, err)
		}
		if d.APIVersion == "" || d.Kind == "" || d.Metadata.Name == "" || d.Metadata.Namespace == "" {
			t.Errorf("%s: document %d lacks apiVersion, kind, metadata.name or metadata.namespace: %+v", filepath.Base(path), n, d)
		}
		docs = append(docs, d)
	}
	if len(docs) == 0 {
		t.Fatalf("%s: no YAML documents", filepath.Base(path))
	}
	return docs
}

func k8sEnvValue(c k8sContainer, name string) (string, bool) {
	for _, e := range c.Env {
		if e.Name == name {
			return e.Value, true
		}
	}
	return "", false
}

// bootstrapMountsConfigMap checks that container c mounts ConfigMap name at dir.
func bootstrapMountsConfigMap(t *testing.T, d k8sDoc, c k8sContainer, dir, name string) {
	t.Helper()
	for _, vm := range c.VolumeMounts {
		if filepath.Clean(vm.MountPath) != filepath.Clean(dir) {
			continue
		}
		for _, v := range d.Spec.Template.Spec.Volumes {
			if v.Name == vm.Name && v.ConfigMap.Name == name {
				return
			}
		}
	}
	t.Errorf("Deployment %s does not mount ConfigMap %s at %s", d.Metadata.Name, name, dir)
}

// bootstrapRenderInjected renders an injector template annotation as the
// injected Agent would (a real Agent, a token of the role's policy) into a
// file named fileName, and checks that the Broker's dotenv reads the engine's
// env map from it.
func bootstrapRenderInjected(t *testing.T, s *stack, role, org, scm, path, tmpl, perms, fileName string) {
	t.Helper()
	if err := s.vault.client.Sys().PutPolicy(role, bootstrapReaderPolicy(t, mountPath, org, scm)); err != nil {
		t.Fatal(err)
	}
	token := bootstrapToken(t, s, true, role)
	dir := t.TempDir()
	secrets := filepath.Join(dir, "secrets")
	if err := os.Mkdir(secrets, 0o700); err != nil {
		t.Fatal(err)
	}
	dest := filepath.Join(secrets, fileName)
	if strings.Contains(tmpl, "\nEOT") {
		t.Fatalf("the template contains a line EOT; pick another heredoc marker")
	}
	permsLine := ""
	if perms != "" {
		permsLine = fmt.Sprintf("  perms       = %q\n", perms)
	}
	cfg := filepath.Join(dir, "inject.hcl")
	hcl := fmt.Sprintf("template_config {\n  exit_on_retry_failure = true\n}\ntemplate {\n  destination = %q\n%s  contents    = <<EOT\n%s\nEOT\n}\n", dest, permsLine, strings.TrimRight(tmpl, "\n"))
	if err := os.WriteFile(cfg, []byte(hcl), 0o600); err != nil {
		t.Fatal(err)
	}
	auth := bootstrapAgentAuth(t, s, dir, token)
	p := bootstrapStartAgent(t, dir, dir, baseEnv(dir), cfg, auth)
	content := bootstrapWaitFile(t, p, dest)
	if perms != "" {
		fi, err := os.Stat(dest)
		if err != nil {
			t.Fatal(err)
		}
		if got := fmt.Sprintf("%04o", fi.Mode().Perm()); got != perms {
			t.Errorf("rendered %s mode %s, want %s", fileName, got, perms)
		}
	}
	want := bootstrapEnvMap(t, s.read(t, path))
	for _, line := range strings.Split(content, "\n") {
		if line != "" && !bootstrapEnvLine.MatchString(line) {
			t.Errorf("rendered line %q is not KEY=VALUE", line)
		}
	}
	bootstrapDotenvCheck(t, dest, want)
}
