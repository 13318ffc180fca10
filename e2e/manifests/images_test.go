package manifests

import (
	"context"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/moby/buildkit/client/llb"
	"github.com/moby/buildkit/client/llb/sourceresolver"
	"github.com/moby/buildkit/frontend/dockerfile/dockerfile2llb"
	"github.com/moby/buildkit/frontend/dockerfile/instructions"
	"github.com/moby/buildkit/frontend/dockerfile/parser"
	"github.com/moby/buildkit/frontend/dockerfile/shell"
	"github.com/moby/patternmatcher"
	"github.com/moby/patternmatcher/ignorefile"
	"github.com/opencontainers/go-digest"
)

// imageSpec is what the project promises of each Dockerfile: the stages an
// operator builds as targets, each of which must run as a non-root user.
type imageSpec struct {
	file    string
	targets []string // "" is the last stage, what a build without --target makes
}

var images = []imageSpec{
	{file: "vault-plugin.Dockerfile", targets: []string{"plugin", "vault"}},
	{file: "broker-vault-agent.Dockerfile", targets: []string{""}},
}

// exactTag accepts an image reference pinned to an exact release
// (name:1.2.3[-suffix]) optionally with a digest; "latest" or a bare major
// version float.
var exactTag = regexp.MustCompile(`^[a-z0-9./_-]+:v?[0-9]+\.[0-9]+\.[0-9]+(-[a-z0-9.-]+)?(@sha256:[0-9a-f]{64})?$`)

func TestDockerfilesPassBuildKitChecks(t *testing.T) {
	for _, img := range images {
		t.Run(img.file, func(t *testing.T) {
			dt := readImageFile(t, img.file)
			// The lint reports against a source map; with no build there is
			// no LLB definition behind it, only the Dockerfile's bytes.
			sourceMap := llb.NewSourceMap(nil, img.file, "Dockerfile", dt)
			sourceMap.Definition = &llb.Definition{}
			res, err := dockerfile2llb.DockerfileLint(context.Background(), dt, dockerfile2llb.ConvertOpt{
				SourceMap:    sourceMap,
				MetaResolver: offlineImageConfig{},
			})
			if err != nil {
				t.Fatalf("BuildKit cannot lint %s: %v", img.file, err)
			}
			for _, w := range res.Warnings {
				line := 0
				if len(w.Location.Ranges) > 0 {
					line = int(w.Location.Ranges[0].Start.Line)
				}
				t.Errorf("%s:%d: %s: %s (%s)", img.file, line, w.RuleName, w.Detail, w.URL)
			}
			if res.Error != nil {
				t.Errorf("%s: %s", img.file, res.Error.Message)
			}
		})
	}
}

func TestDockerfilesFollowImageRules(t *testing.T) {
	root := repoRoot(t)
	for _, img := range images {
		t.Run(img.file, func(t *testing.T) {
			stages, args := parseDockerfile(t, img.file)
			if len(stages) < 2 {
				t.Fatalf("%s has %d stage(s); the images are multi-stage (build tools stay out of what runs)", img.file, len(stages))
			}
			defaults := map[string]string{}
			for _, a := range args {
				for _, kv := range a.Args {
					if kv.Value != nil {
						defaults[kv.Key] = *kv.Value
					}
				}
			}
			byName := map[string]int{}
			for i, s := range stages {
				if s.Name != "" {
					byName[s.Name] = i
				}
				base := expandArgs(t, s.BaseName, defaults)
				if _, ok := byName[base]; ok || base == "scratch" {
					continue
				}
				if !exactTag.MatchString(base) {
					t.Errorf("%s: stage %d FROM %q is not pinned to an exact release (name:1.2.3)", img.file, i, base)
				}
			}
			for _, target := range img.targets {
				idx := len(stages) - 1
				if target != "" {
					var ok bool
					if idx, ok = byName[target]; !ok {
						t.Errorf("%s: target stage %q is missing", img.file, target)
						continue
					}
				}
				user := effectiveUser(stages, byName, idx)
				if user == "" || user == "root" || user == "0" || strings.HasPrefix(user, "0:") || strings.HasPrefix(user, "root:") {
					t.Errorf("%s: target %q runs as %q; every shipped image runs as a non-root user", img.file, stageLabel(target), user)
				}
			}
			checkCopySources(t, root, img.file, stages)
		})
	}
}

// TestBrokerImageSCMTemplatesExist checks the SCM names the broker image's
// header promises against the client templates of the pinned snyk-broker
// package, when it is installed (make broker).
func TestBrokerImageSCMTemplatesExist(t *testing.T) {
	templates := filepath.Join(repoRoot(t), "scripts", "broker", "node_modules", "snyk-broker", "dist", "client-templates")
	if _, err := os.Stat(templates); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("the snyk-broker package is not installed (make broker): %v", err)
		}
		t.Skipf("the snyk-broker package is not installed (make broker): %v", err)
	}
	for _, scm := range []string{"github-com", "github-enterprise", "gitlab", "azure-repos", "bitbucket-server", "bitbucket-server-bearer-auth"} {
		if _, err := os.Stat(filepath.Join(templates, scm, "accept.json.sample")); err != nil {
			t.Errorf("SCM=%s: the pinned snyk-broker ships no accept.json.sample for it: %v", scm, err)
		}
	}
	dt := string(readImageFile(t, "broker-vault-agent.Dockerfile"))
	if !strings.Contains(dt, "ARG SCM=github-com") {
		t.Errorf("broker-vault-agent.Dockerfile: the SCM build argument should default to github-com (what bootstrap/kubernetes runs)")
	}
}

// offlineImageConfig stands in for a registry: no registry is reachable
// from the tests, and the checks need only a base image's platform and
// environment, not its layers.
type offlineImageConfig struct{}

func (offlineImageConfig) ResolveImageConfig(_ context.Context, ref string, _ sourceresolver.Opt) (string, digest.Digest, []byte, error) {
	return ref, "", []byte(`{"architecture":"amd64","os":"linux","rootfs":{"type":"layers"},` +
		`"config":{"Env":["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"]}}`), nil
}

func stageLabel(target string) string {
	if target == "" {
		return "(final)"
	}
	return target
}

// effectiveUser is the USER a stage runs as, following FROM <stage> chains
// (a stage inherits the user of the stage it starts from); "" means none set.
func effectiveUser(stages []instructions.Stage, byName map[string]int, idx int) string {
	for seen := 0; seen <= len(stages); seen++ {
		s := stages[idx]
		user := ""
		for _, c := range s.Commands {
			if u, ok := c.(*instructions.UserCommand); ok {
				user = u.User
			}
		}
		if user != "" {
			return user
		}
		parent, ok := byName[s.BaseName]
		if !ok {
			return ""
		}
		idx = parent
	}
	return ""
}

// checkCopySources checks that every file a COPY takes from the build
// context exists in the repository and is let through by the Dockerfile's
// own .dockerignore (BuildKit reads <Dockerfile>.dockerignore beside it).
func checkCopySources(t *testing.T, root, file string, stages []instructions.Stage) {
	t.Helper()
	ignorePath := filepath.Join(root, "bootstrap", "images", file+".dockerignore")
	f, err := os.Open(ignorePath)
	if err != nil {
		t.Fatalf("%s has no %s.dockerignore beside it: the whole repository (bin/, dist/, node_modules) would be sent as the build context", file, file)
	}
	patterns, err := ignorefile.ReadAll(f)
	_ = f.Close()
	if err != nil {
		t.Fatal(err)
	}
	pm, err := patternmatcher.New(patterns)
	if err != nil {
		t.Fatal(err)
	}
	copied := 0
	for _, s := range stages {
		for _, c := range s.Commands {
			cp, ok := c.(*instructions.CopyCommand)
			if !ok || cp.From != "" {
				continue
			}
			for _, src := range cp.SourcePaths {
				copied++
				p := filepath.Join(root, filepath.FromSlash(src))
				if _, err := os.Stat(p); err != nil {
					t.Errorf("%s: COPY %s: not in the repository: %v", file, src, err)
					continue
				}
				ignored, err := pm.MatchesOrParentMatches(strings.TrimSuffix(src, "/"))
				if err != nil {
					t.Fatal(err)
				}
				if ignored {
					t.Errorf("%s: COPY %s: excluded by %s.dockerignore, the build would fail", file, src, file)
				}
			}
		}
	}
	if copied == 0 {
		t.Errorf("%s copies nothing from the build context", file)
	}
}

func parseDockerfile(t *testing.T, file string) ([]instructions.Stage, []instructions.ArgCommand) {
	t.Helper()
	res, err := parser.Parse(strings.NewReader(string(readImageFile(t, file))))
	if err != nil {
		t.Fatalf("%s: %v", file, err)
	}
	stages, args, err := instructions.Parse(res.AST, nil)
	if err != nil {
		t.Fatalf("%s: %v", file, err)
	}
	return stages, args
}

func expandArgs(t *testing.T, word string, defaults map[string]string) string {
	t.Helper()
	lex := shell.NewLex('\\')
	res, err := lex.ProcessWordWithMatches(word, envGetter(defaults))
	if err != nil {
		t.Fatalf("expanding %q: %v", word, err)
	}
	return res.Result
}

type envGetter map[string]string

func (e envGetter) Get(key string) (string, bool) { v, ok := e[key]; return v, ok }
func (e envGetter) Keys() []string {
	keys := make([]string, 0, len(e))
	for k := range e {
		keys = append(keys, k)
	}
	return keys
}

func readImageFile(t *testing.T, file string) []byte {
	t.Helper()
	dt, err := os.ReadFile(filepath.Join(repoRoot(t), "bootstrap", "images", file))
	if err != nil {
		t.Fatal(err)
	}
	return dt
}

// repoRoot is the repository root: this module lives in e2e/manifests.
func repoRoot(t *testing.T) string {
	t.Helper()
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "bootstrap")); err != nil {
		t.Fatalf("repository root not found from %s: %v", root, err)
	}
	return root
}
