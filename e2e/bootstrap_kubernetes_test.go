package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// TestBootstrapKubernetesManifests parses every YAML document in
// bootstrap/kubernetes/ and checks the examples against the engine: the
// injector annotations name a path the engine serves, their template renders
// (with a real Agent) a file the container's command sources into the
// engine's env map, the role follows the policy naming of configure.sh, and
// the overlap pair differs only in SNYK_BROKER_ROLE.
func TestBootstrapKubernetesManifests(t *testing.T) {
	s := sharedStack(t)
	s.ensurePaymentsGitHub(t)
	root := bootstrapDir(t)
	files, err := filepath.Glob(filepath.Join(root, "kubernetes", "*.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	byFile := map[string][]k8sDoc{}
	for _, f := range files {
		byFile[filepath.Base(f)] = parseK8sFile(t, f)
	}
	for _, want := range []string{"broker-deployment.yaml", "broker-overlap.yaml"} {
		if _, ok := byFile[want]; !ok {
			t.Fatalf("bootstrap/kubernetes/%s is missing (found %v)", want, files)
		}
	}

	const secretPrefix = "vault.hashicorp.com/agent-inject-secret-"
	injected := 0
	for file, docs := range byFile {
		sas := map[string]bool{}
		for _, d := range docs {
			if d.Kind == "ServiceAccount" {
				sas[d.Metadata.Namespace+"/"+d.Metadata.Name] = true
			}
		}
		for _, d := range docs {
			if d.Kind != "Deployment" {
				continue
			}
			ann := d.Spec.Template.Metadata.Annotations
			for key, path := range ann {
				if !strings.HasPrefix(key, secretPrefix) {
					continue
				}
				injected++
				name := strings.TrimPrefix(key, secretPrefix)
				where := fmt.Sprintf("%s: Deployment %s: %s", file, d.Metadata.Name, key)
				org, scm := bootstrapSplitBrokerPath(t, s, path)
				if ann["vault.hashicorp.com/agent-inject"] != "true" {
					t.Errorf("%s: agent-inject is %q, want \"true\"", where, ann["vault.hashicorp.com/agent-inject"])
				}
				role := ann["vault.hashicorp.com/role"]
				if want := "snyk-broker-" + org + "-" + scm; role != want {
					t.Errorf("%s: role %q, want %q (configure.sh's policy name for %s/%s)", where, role, want, org, scm)
				}
				if sa := d.Spec.Template.Spec.ServiceAccountName; sa != role || !sas[d.Metadata.Namespace+"/"+sa] {
					t.Errorf("%s: serviceAccountName %q, want the role's name %q, declared in the file", where, sa, role)
				}
				tmpl, ok := ann["vault.hashicorp.com/agent-inject-template-"+name]
				if !ok {
					t.Fatalf("%s: no agent-inject-template-%s", where, name)
				}
				if !strings.Contains(tmpl, `secret "`+path+`"`) || !strings.Contains(tmpl, ".Data.env") {
					t.Errorf("%s: the template does not read .Data.env of secret %q:\n%s", where, path, tmpl)
				}
				// The Broker reads .env from its working directory: the
				// injected file must be that .env, in the container's cwd.
				fileName := ann["vault.hashicorp.com/agent-inject-file-"+name]
				if fileName == "" {
					fileName = name
				}
				var broker *k8sContainer
				for i, c := range d.Spec.Template.Spec.Containers {
					if filepath.Clean(c.WorkingDir) == "/vault/secrets" {
						broker = &d.Spec.Template.Spec.Containers[i]
					}
				}
				if fileName != ".env" || broker == nil {
					t.Fatalf("%s: the injected file is %q and no container works in /vault/secrets; the Broker only reads .env from its working directory", where, fileName)
				}
				// A 0400 file is readable by the Broker, and the hook may
				// signal it, only if the Agent runs as the Broker's user.
				if ann["vault.hashicorp.com/agent-run-as-same-user"] != "true" || broker.SecurityContext.RunAsUser == 0 {
					t.Errorf("%s: agent-run-as-same-user=%q, container runAsUser=%d: the Agent must run as the Broker's (non-root) user", where, ann["vault.hashicorp.com/agent-run-as-same-user"], broker.SecurityContext.RunAsUser)
				}
				if hook := ann["vault.hashicorp.com/agent-inject-command-"+name]; !strings.Contains(hook, "pkill") || !strings.Contains(hook, "-x node") {
					t.Errorf("%s: the render command %q does not stop the Broker's node process by exact name", where, hook)
				}
				if !d.Spec.Template.Spec.ShareProcessNamespace {
					t.Errorf("%s: shareProcessNamespace is off: the Agent sidecar cannot signal the Broker", where)
				}
				perms := ann["vault.hashicorp.com/agent-inject-perms-"+name]
				bootstrapRenderInjected(t, s, role, org, scm, path, tmpl, perms, fileName)
			}
			// A Service of the file selects this Deployment's pods on a
			// named port of its containers.
			for _, svc := range docs {
				if svc.Kind != "Service" {
					continue
				}
				for k, v := range svc.Spec.Selector {
					if d.Spec.Template.Metadata.Labels[k] != str(v) {
						t.Errorf("%s: Service %s selects %s=%v, not a label of Deployment %s's pods", file, svc.Metadata.Name, k, v, d.Metadata.Name)
					}
				}
				for _, p := range svc.Spec.Ports {
					found := false
					for _, c := range d.Spec.Template.Spec.Containers {
						for _, cp := range c.Ports {
							found = found || cp.Name == p.TargetPort
						}
					}
					if !found {
						t.Errorf("%s: Service %s targets port %q, which Deployment %s's containers do not name", file, svc.Metadata.Name, p.TargetPort, d.Metadata.Name)
					}
				}
			}
		}
	}
	if injected == 0 {
		t.Errorf("no Deployment carries a %s* annotation", secretPrefix)
	}

	t.Run("broker-overlap", func(t *testing.T) {
		docs := byFile["broker-overlap.yaml"]
		var deps []k8sDoc
		for _, d := range docs {
			if d.Kind == "Deployment" {
				deps = append(deps, d)
			}
		}
		// The ConfigMap is made from the repository's files, as the
		// manifest's header says; both must exist.
		header := bootstrapReadFile(t, filepath.Join(root, "kubernetes", "broker-overlap.yaml"))
		for _, f := range []string{"bootstrap/agent/broker-client-github.hcl", "bootstrap/kubernetes/agent-auth.hcl"} {
			if !strings.Contains(header, "--from-file="+f) {
				t.Errorf("broker-overlap.yaml does not say to build the ConfigMap --from-file=%s", f)
			}
			if _, err := os.Stat(filepath.Join(filepath.Dir(root), f)); err != nil {
				t.Errorf("%s: %v", f, err)
			}
		}
		if len(deps) != 2 {
			t.Fatalf("broker-overlap.yaml has %d Deployments, want 2", len(deps))
		}
		clientHCL := bootstrapReadFile(t, filepath.Join(root, "agent", "broker-client-github.hcl"))
		roles := map[string]bool{}
		var secrets []string
		var stripped [2]k8sContainer
		for n, d := range deps {
			cs := d.Spec.Template.Spec.Containers
			if len(cs) != 1 {
				t.Fatalf("Deployment %s has %d containers, want 1", d.Metadata.Name, len(cs))
			}
			c := cs[0]
			role, ok := k8sEnvValue(c, "SNYK_BROKER_ROLE")
			if !ok {
				t.Errorf("Deployment %s sets no SNYK_BROKER_ROLE", d.Metadata.Name)
			}
			roles[role] = true
			secret, ok := k8sEnvValue(c, "SNYK_BROKER_SECRET")
			if !ok {
				t.Fatalf("Deployment %s sets no SNYK_BROKER_SECRET", d.Metadata.Name)
			}
			secrets = append(secrets, secret)
			org, scm := bootstrapSplitBrokerPath(t, s, secret)
			if sa, want := d.Spec.Template.Spec.ServiceAccountName, "snyk-broker-"+org+"-"+scm; sa != want {
				t.Errorf("Deployment %s: serviceAccountName %q, want %q", d.Metadata.Name, sa, want)
			}
			// Every SNYK_* variable it sets is one the Agent config reads.
			for _, e := range c.Env {
				if strings.HasPrefix(e.Name, "SNYK_") && !strings.Contains(clientHCL, `env \"`+e.Name+`\"`) {
					t.Errorf("Deployment %s sets %s, which broker-client-github.hcl does not read", d.Metadata.Name, e.Name)
				}
			}
			// The command runs Agent with the bootstrap exec config and the
			// ConfigMap's auth file, both from the mounted config directory.
			var configs []string
			for _, a := range c.Command {
				if strings.HasPrefix(a, "-config=") {
					configs = append(configs, strings.TrimPrefix(a, "-config="))
				}
			}
			if len(c.Command) < 2 || c.Command[0] != "vault" || c.Command[1] != "agent" {
				t.Errorf("Deployment %s: command %v, want vault agent …", d.Metadata.Name, c.Command)
			}
			var haveClient, haveAuth bool
			for _, cfg := range configs {
				base := filepath.Base(cfg)
				haveClient = haveClient || base == "broker-client-github.hcl"
				if base == "agent-auth.hcl" {
					haveAuth = true
					bootstrapMountsConfigMap(t, d, c, filepath.Dir(cfg), "snyk-broker-agent")
					auth := bootstrapReadFile(t, filepath.Join(root, "kubernetes", base))
					if !strings.Contains(auth, `role = "snyk-broker-`+org+`-`+scm+`"`) {
						t.Errorf("bootstrap/kubernetes/agent-auth.hcl does not log in with role snyk-broker-%s-%s:\n%s", org, scm, auth)
					}
				}
			}
			if !haveClient || !haveAuth {
				t.Errorf("Deployment %s: command %v, want -config=…/broker-client-github.hcl and -config=…/agent-auth.hcl", d.Metadata.Name, c.Command)
			}
			stripped[n] = c
			stripped[n].Env = nil
			for _, e := range c.Env {
				if e.Name != "SNYK_BROKER_ROLE" {
					stripped[n].Env = append(stripped[n].Env, e)
				}
			}
		}
		if !roles["current"] || !roles["next"] {
			t.Errorf("SNYK_BROKER_ROLE values %v, want one current and one next", roles)
		}
		if secrets[0] != secrets[1] {
			t.Errorf("the two Deployments read different secrets %q and %q", secrets[0], secrets[1])
		}
		if !reflect.DeepEqual(stripped[0], stripped[1]) {
			t.Errorf("the two Deployments' containers differ in more than SNYK_BROKER_ROLE:\n%+v\n%+v", stripped[0], stripped[1])
		}
		if deps[0].Spec.Template.Metadata.Labels["app.kubernetes.io/instance"] != deps[1].Spec.Template.Metadata.Labels["app.kubernetes.io/instance"] {
			t.Errorf("the two Deployments are not the same instance: %v vs %v", deps[0].Spec.Template.Metadata.Labels, deps[1].Spec.Template.Metadata.Labels)
		}
	})
}
