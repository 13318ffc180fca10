package e2e

import (
	"bytes"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"gopkg.in/yaml.v3"
)

// TestStatusAndMetricsInRealVault reads snyk/status, and scrapes
// snyk/metrics the way Prometheus does (a raw body at /v1/snyk/metrics, with
// a token whose only policy is bootstrap/policies/metrics-reader.hcl); the
// body parses as Prometheus text, and every metric the shipped alert rules
// use is in it.
func TestStatusAndMetricsInRealVault(t *testing.T) {
	s := sharedStack(t)
	s.ensurePaymentsGitHub(t)

	status := s.read(t, mountPath+"/status")
	if num(t, status.Data["integrations"]) < 1 {
		t.Fatalf("snyk/status: %v", status.Data)
	}
	for _, k := range []string{"rotation_state", "scm_status", "needing_attention", "attention"} {
		if _, ok := status.Data[k]; !ok {
			t.Errorf("snyk/status lacks %s", k)
		}
	}

	policy := bootstrapReadFile(t, filepath.Join(bootstrapDir(t), "policies", "metrics-reader.hcl"))
	if err := s.vault.client.Sys().PutPolicy("snyk-metrics-reader", policy); err != nil {
		t.Fatal(err)
	}
	scraper := bootstrapToken(t, s, false, "snyk-metrics-reader")
	scrape := func(token string) (int, string, []byte) {
		req, _ := http.NewRequest(http.MethodGet, s.vault.addr+"/v1/"+mountPath+"/metrics", nil)
		// Prometheus sends the token as a bearer token (bootstrap/prometheus/scrape.yml).
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, resp.Header.Get("Content-Type"), body
	}
	code, contentType, body := scrape(scraper)
	if code != http.StatusOK || !strings.HasPrefix(contentType, "text/plain") {
		t.Fatalf("scrape: %d %s\n%s", code, contentType, body)
	}
	parser := expfmt.NewTextParser(model.LegacyValidation)
	families, err := parser.TextToMetricFamilies(bytes.NewReader(body))
	if err != nil {
		t.Fatalf("snyk/metrics is not Prometheus text: %v\n%s", err, body)
	}
	if _, ok := families["snyk_broker_integrations"]; !ok {
		t.Fatalf("no snyk_broker_integrations in\n%s", body)
	}
	if strings.Contains(string(body), s.sim.info.GitHubToken) || strings.Contains(string(body), s.sim.info.APIToken) {
		t.Fatal("the metrics carry a secret")
	}
	// The scraper's token reads nothing else.
	if _, err := s.vault.tokenClient(t, scraper).Logical().Read(mountPath + "/status"); responseStatus(err) != http.StatusForbidden {
		t.Errorf("the metrics token reads snyk/status: %v", err)
	}
	if code, _, _ := scrape("not-a-token"); code != http.StatusForbidden {
		t.Errorf("scrape without a valid token: %d", code)
	}

	// The shipped alert rules use only metrics the engine serves.
	raw, err := os.ReadFile(filepath.Join(bootstrapDir(t), "prometheus", "alerts.yml"))
	if err != nil {
		t.Fatal(err)
	}
	var rules struct {
		Groups []struct {
			Rules []struct {
				Alert string `yaml:"alert"`
				Expr  string `yaml:"expr"`
			} `yaml:"rules"`
		} `yaml:"groups"`
	}
	if err := yaml.Unmarshal(raw, &rules); err != nil {
		t.Fatal(err)
	}
	names := regexp.MustCompile(`snyk_(broker|universal)_[a-z_]+`)
	n := 0
	for _, g := range rules.Groups {
		for _, r := range g.Rules {
			n++
			for _, m := range names.FindAllString(r.Expr, -1) {
				if !bytes.Contains(body, []byte("# TYPE "+m+" ")) {
					t.Errorf("alert %s uses %s, which snyk/metrics does not serve", r.Alert, m)
				}
			}
		}
	}
	if n != 3 {
		t.Errorf("alert rules = %d, want the three shipped", n)
	}
}
