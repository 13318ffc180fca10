package backend

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/vault/sdk/logical"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/snyk-vault/vault-plugin-secrets-snyk/backend/fault"
	"github.com/snyk-vault/vault-plugin-secrets-snyk/backend/snyk/snyktest"
)

// statusWorld: three integrations of one group: one healthy, one whose SCM
// token was revoked, one whose switch keeps failing.
func statusWorld(t *testing.T) *testEnv {
	env := newTestEnv(t)
	env.configure(map[string]interface{}{"rotation_period": "1h", "provision_ahead": "10m", "scm_check_period": "1h"})
	for _, c := range []struct{ org, scm string }{{testOrgID, "github"}, {testOtherOrgID, "github"}, {testOrgID, "gitlab"}} {
		env.snyk.AddIntegration(c.org, c.scm, false)
		env.mustOK(logical.CreateOperation, "integrations/"+c.org+"/"+c.scm, env.integrationData(c.scm))
		env.clock.Advance(20 * time.Minute) // one due at a time
	}
	env.initialize()
	env.gitlab.RevokeToken(glGood)
	env.snyk.Faults().Inject(snyktest.RouteSwitchToken, fault.Fault{Status: http.StatusBadRequest, Body: `{"code":400,"message":"Bad Request","error":"Bad Request"}`})
	env.advance(75*time.Minute, time.Minute) // past every SCM check's period
	return env
}

func TestStatusListsWhatNeedsAttention(t *testing.T) {
	env := statusWorld(t)
	data := env.mustOK(logical.ReadOperation, "status", nil).Data
	if data["integrations"] != 3 {
		t.Fatalf("integrations = %v", data["integrations"])
	}
	if states := data["rotation_state"].(map[string]int); states[stateSwitchPending] != 1 {
		t.Errorf("rotation_state counts = %v, want one switch_pending", states)
	}
	if statuses := data["scm_status"].(map[string]int); statuses[scmStatusInvalid] != 1 {
		t.Errorf("scm_status counts = %v, want one invalid", statuses)
	}
	rows := data["attention"].([]map[string]interface{})
	reasons := map[string]string{}
	for _, r := range rows {
		reasons[r["integration"].(string)] = strings.Join(r["reasons"].([]string), ",")
	}
	if !strings.Contains(reasons[testOrgID+"/github"], "switch_pending") || !strings.Contains(reasons[testOrgID+"/gitlab"], "scm_invalid") {
		t.Fatalf("attention rows: %v", reasons)
	}
	if _, healthy := reasons[testOtherOrgID+"/github"]; healthy && len(rows) != 3 {
		t.Errorf("a healthy integration is listed: %v", reasons)
	}

	// Pages.
	first := env.mustOK(logical.ReadOperation, "status", map[string]interface{}{"limit": 1}).Data
	if len(first["attention"].([]map[string]interface{})) != 1 || first["next_after"] == nil {
		t.Fatalf("first page: %v", first)
	}
	second := env.mustOK(logical.ReadOperation, "status", map[string]interface{}{"limit": 1, "after": first["next_after"]}).Data
	if got := second["attention"].([]map[string]interface{}); len(got) != 1 || got[0]["integration"] == first["attention"].([]map[string]interface{})[0]["integration"] {
		t.Fatalf("second page: %v", second)
	}
	env.mustFail400(logical.ReadOperation, "status", map[string]interface{}{"limit": 5000}, "limit")
}

func TestMetricsParseAsPrometheusText(t *testing.T) {
	env := statusWorld(t)
	resp := env.mustOK(logical.ReadOperation, "metrics", nil)
	if resp.Data[logical.HTTPStatusCode] != http.StatusOK || !strings.HasPrefix(resp.Data[logical.HTTPContentType].(string), "text/plain; version=0.0.4") {
		t.Fatalf("not a raw Prometheus body: %v", resp.Data[logical.HTTPContentType])
	}
	body := resp.Data[logical.HTTPRawBody].([]byte)
	env.assertNoSecretsIn("metrics", string(body))
	parser := expfmt.NewTextParser(model.LegacyValidation)
	families, err := parser.TextToMetricFamilies(bytes.NewReader(body))
	if err != nil {
		t.Fatalf("not Prometheus text: %v\n%s", err, body)
	}
	value := func(name string, labels map[string]string) (float64, bool) {
		f, ok := families[name]
		if !ok {
			return 0, false
		}
	metrics:
		for _, m := range f.Metric {
			for _, l := range m.Label {
				if want, ok := labels[l.GetName()]; ok && want != l.GetValue() {
					continue metrics
				}
			}
			if m.Gauge != nil {
				return m.Gauge.GetValue(), true
			}
			return m.Counter.GetValue(), true
		}
		return 0, false
	}
	checks := []struct {
		name   string
		labels map[string]string
		want   func(float64) bool
	}{
		{"snyk_broker_integrations", map[string]string{"rotation_state": stateSwitchPending}, func(v float64) bool { return v == 1 }},
		{"snyk_broker_integrations_by_scm_status", map[string]string{"scm_status": scmStatusInvalid}, func(v float64) bool { return v == 1 }},
		{"snyk_broker_integrations_needing_attention", nil, func(v float64) bool { return v >= 2 }},
		{"snyk_broker_switch_overdue_seconds", map[string]string{"name": testOrgID, "scm": "github"}, func(v float64) bool { return v > 0 }},
		// Waiting behind the failing switch: its own switch is past due.
		{"snyk_broker_next_switch_seconds", map[string]string{"name": testOtherOrgID, "scm": "github"}, func(v float64) bool { return v < 0 }},
		{"snyk_broker_scm_token_expiry_timestamp_seconds", map[string]string{"name": testOrgID, "scm": "gitlab"}, func(v float64) bool { return v > 0 }},
		{"snyk_broker_provisions_total", nil, func(v float64) bool { return v >= 1 }},
		{"snyk_broker_rotation_failures_total", nil, func(v float64) bool { return v >= 1 }},
		{"snyk_broker_upstream_requests_total", map[string]string{"upstream": "snyk", "status": "400"}, func(v float64) bool { return v >= 1 }},
		{"snyk_broker_upstream_requests_total", map[string]string{"upstream": "gitlab", "status": "401"}, func(v float64) bool { return v >= 1 }},
	}
	for _, c := range checks {
		v, ok := value(c.name, c.labels)
		if !ok || !c.want(v) {
			t.Errorf("%s%v = %v (present %v)", c.name, c.labels, v, ok)
		}
	}
	if t.Failed() {
		fmt.Println(string(body))
	}
}

// TestMetricsAnnounceEveryFamily: with no integration at all, every metric
// name is still announced and the body parses.
func TestMetricsAnnounceEveryFamily(t *testing.T) {
	env := newTestEnv(t)
	env.configure(nil)
	body := env.mustOK(logical.ReadOperation, "metrics", nil).Data[logical.HTTPRawBody].([]byte)
	parser := expfmt.NewTextParser(model.LegacyValidation)
	if _, err := parser.TextToMetricFamilies(bytes.NewReader(body)); err != nil {
		t.Fatalf("not Prometheus text: %v\n%s", err, body)
	}
	// The parser drops families without samples; the announcement is in
	// the text.
	for _, name := range []string{"snyk_broker_integrations", "snyk_broker_switch_overdue_seconds", "snyk_broker_scm_token_expiry_timestamp_seconds", "snyk_broker_next_switch_seconds", "snyk_broker_upstream_requests_total"} {
		if !bytes.Contains(body, []byte("# TYPE "+name+" ")) {
			t.Errorf("%s is not announced", name)
		}
	}
}

// TestMetricsCountRotationTicks: the running loop's passes, by duration, as
// a Prometheus histogram an operator can read an idle pass's cost from.
func TestMetricsCountRotationTicks(t *testing.T) {
	env := newTestEnv(t)
	env.configure(nil)
	b := env.startLoopBackend(5*time.Millisecond, nil)
	defer b.Cleanup(context.Background())
	histogram := func() *dto.Histogram {
		resp, err := b.HandleRequest(context.Background(), &logical.Request{Operation: logical.ReadOperation, Path: "metrics", Storage: env.view})
		if err != nil {
			t.Fatal(err)
		}
		parser := expfmt.NewTextParser(model.LegacyValidation)
		families, err := parser.TextToMetricFamilies(bytes.NewReader(resp.Data[logical.HTTPRawBody].([]byte)))
		f := families["snyk_rotation_tick_duration_seconds"]
		if err != nil || f == nil || f.GetType() != dto.MetricType_HISTOGRAM {
			t.Fatalf("no tick histogram: %v", err)
		}
		return f.Metric[0].Histogram
	}
	deadline := time.Now().Add(10 * time.Second)
	h := histogram()
	for h.GetSampleCount() < 3 {
		if time.Now().After(deadline) {
			t.Fatal("the loop ticked fewer than 3 times in 10 s")
		}
		time.Sleep(10 * time.Millisecond)
		h = histogram()
	}
	if h.GetSampleSum() <= 0 {
		t.Fatalf("ticks took %v s in all", h.GetSampleSum())
	}
	last := h.Bucket[len(h.Bucket)-1]
	if last.GetCumulativeCount() != h.GetSampleCount() {
		t.Fatalf("the %v s bucket holds %d of %d passes", last.GetUpperBound(), last.GetCumulativeCount(), h.GetSampleCount())
	}
	for i := 1; i < len(h.Bucket); i++ {
		if h.Bucket[i].GetCumulativeCount() < h.Bucket[i-1].GetCumulativeCount() {
			t.Fatalf("buckets are not cumulative: %v", h.Bucket)
		}
	}
}
