package backend

import (
	"bytes"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"google.golang.org/protobuf/proto"
)

// engineMetrics counts what this process of the engine did: rotation steps
// and upstream answers. Counters start at zero when the plugin starts, as
// Prometheus counters may.
type engineMetrics struct {
	mu         sync.Mutex
	provisions float64
	switches   float64
	failures   float64
	// upstream counts answers by upstream ("snyk", or the SCM kind) and
	// status ("0" when no answer came).
	upstream map[[2]string]float64
	// tickBuckets counts the rotation loop's passes by duration (cumulative,
	// as Prometheus histograms are, by tickBounds); tickSeconds is their sum.
	// An idle pass must cost the same at 10 and at 10,000 integrations, and
	// a pass that waits on slow steps shows in the upper buckets.
	tickBuckets []uint64
	ticks       uint64
	tickSeconds float64
}

// tickBounds are the upper bounds, in seconds, of the tick histogram's
// buckets: from an idle pass (microseconds) to one waiting on Snyk calls.
var tickBounds = []float64{10e-6, 25e-6, 50e-6, 100e-6, 250e-6, 1e-3, 10e-3, 0.1, 1, 10, 60}

func newEngineMetrics() *engineMetrics {
	return &engineMetrics{upstream: map[[2]string]float64{}, tickBuckets: make([]uint64, len(tickBounds))}
}

func (m *engineMetrics) upstreamAnswer(upstream string, status int) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.upstream[[2]string{upstream, strconv.Itoa(status)}]++
}

// tick counts one pass of the rotation loop and how long it took.
func (m *engineMetrics) tick(took time.Duration) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.ticks++
	m.tickSeconds += took.Seconds()
	for i, bound := range tickBounds {
		if took.Seconds() <= bound {
			m.tickBuckets[i]++
		}
	}
}

// rotationEvent counts the rotation steps the engine announces as events.
func (m *engineMetrics) rotationEvent(eventType string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	switch eventType {
	case eventBrokerProvision:
		m.provisions++
	case eventBrokerSwitch:
		m.switches++
	case eventBrokerRotateFail:
		m.failures++
	}
}

// exposition renders the metrics, with gauges computed from the stored
// integrations, in Prometheus's text format.
func (m *engineMetrics) exposition(entries []*integrationEntry, universalAttention int, cfg *snykConfig, now time.Time) ([]byte, error) {
	byState := map[string]float64{stateActive: 0, stateProvisioned: 0, stateSwitchPending: 0}
	byStatus := map[string]float64{scmStatusOK: 0, scmStatusExpiring: 0, scmStatusInvalid: 0, scmStatusUnknown: 0}
	nextSwitch := family("snyk_broker_next_switch_seconds", "Seconds until the integration's next scheduled switch (negative when overdue).", dto.MetricType_GAUGE)
	overdue := family("snyk_broker_switch_overdue_seconds", "How long a held provisional token is past its switch time (0 when on time).", dto.MetricType_GAUGE)
	expiry := family("snyk_broker_scm_token_expiry_timestamp_seconds", "When the integration's SCM token expires (Unix time), where the SCM says.", dto.MetricType_GAUGE)
	attention := 0.0
	for _, e := range entries {
		byState[e.RotationState]++
		status := e.SCMStatus
		if status == "" {
			status = scmStatusUnknown
		}
		byStatus[status]++
		labels := [][2]string{{"name", e.Name}, {"scm", e.SCM}}
		if !e.NextVaultRotation.IsZero() {
			nextSwitch.Metric = append(nextSwitch.Metric, gauge(e.NextVaultRotation.Sub(now).Seconds(), labels...))
		}
		late := 0.0
		if e.ProvisionalToken != "" && now.After(e.NextVaultRotation) {
			late = now.Sub(e.NextVaultRotation).Seconds()
		}
		overdue.Metric = append(overdue.Metric, gauge(late, labels...))
		if !e.SCMTokenExpiresAt.IsZero() {
			expiry.Metric = append(expiry.Metric, gauge(float64(e.SCMTokenExpiresAt.Unix()), labels...))
		}
		if len(e.attentionReasons(cfg, now)) > 0 {
			attention++
		}
	}

	m.mu.Lock()
	counters := []*dto.MetricFamily{
		counterFamily("snyk_broker_provisions_total", "Provisional Broker tokens obtained by rotations since the plugin started.", m.provisions),
		counterFamily("snyk_broker_switches_total", "Broker token switches since the plugin started.", m.switches),
		counterFamily("snyk_broker_rotation_failures_total", "Failed rotation steps since the plugin started.", m.failures),
		m.tickHistogram(),
	}
	upstream := family("snyk_broker_upstream_requests_total", "Requests to Snyk and the SCMs by answer status (0: no answer).", dto.MetricType_COUNTER)
	for k, v := range m.upstream {
		upstream.Metric = append(upstream.Metric, &dto.Metric{
			Label:   labelPairs([2]string{"upstream", k[0]}, [2]string{"status", k[1]}),
			Counter: &dto.Counter{Value: proto.Float64(v)},
		})
	}
	m.mu.Unlock()
	sortMetrics(upstream)

	families := []*dto.MetricFamily{
		byLabel("snyk_broker_integrations", "Integrations by rotation_state.", "rotation_state", byState),
		byLabel("snyk_broker_integrations_by_scm_status", "Integrations by scm_status.", "scm_status", byStatus),
		{Name: proto.String("snyk_broker_integrations_needing_attention"), Help: proto.String("Integrations snyk/status lists as needing attention."),
			Type: dto.MetricType_GAUGE.Enum(), Metric: []*dto.Metric{gauge(attention)}},
		{Name: proto.String("snyk_universal_deployments_needing_attention"), Help: proto.String("Universal Broker deployments snyk/status lists as needing attention."),
			Type: dto.MetricType_GAUGE.Enum(), Metric: []*dto.Metric{gauge(float64(universalAttention))}},
		nextSwitch, overdue, expiry, upstream,
	}
	families = append(families, counters...)
	var buf bytes.Buffer
	for _, f := range families {
		if len(f.Metric) == 0 {
			// Announced without samples, so that rules and dashboards can
			// rely on every name (the encoder refuses an empty family).
			fmt.Fprintf(&buf, "# HELP %s %s\n# TYPE %s %s\n", f.GetName(), f.GetHelp(), f.GetName(), strings.ToLower(f.GetType().String()))
			continue
		}
		if _, err := expfmt.MetricFamilyToText(&buf, f); err != nil {
			return nil, err
		}
	}
	return buf.Bytes(), nil
}

// tickHistogram is the rotation loop's passes by duration. The caller holds
// m.mu.
func (m *engineMetrics) tickHistogram() *dto.MetricFamily {
	f := family("snyk_rotation_tick_duration_seconds", "Passes of the rotation loop since the plugin started, by how long each took (popping what is due to the last step's end).", dto.MetricType_HISTOGRAM)
	h := &dto.Histogram{SampleCount: proto.Uint64(m.ticks), SampleSum: proto.Float64(m.tickSeconds)}
	for i, bound := range tickBounds {
		h.Bucket = append(h.Bucket, &dto.Bucket{UpperBound: proto.Float64(bound), CumulativeCount: proto.Uint64(m.tickBuckets[i])})
	}
	f.Metric = []*dto.Metric{{Histogram: h}}
	return f
}

func family(name, help string, typ dto.MetricType) *dto.MetricFamily {
	return &dto.MetricFamily{Name: proto.String(name), Help: proto.String(help), Type: typ.Enum()}
}

func counterFamily(name, help string, v float64) *dto.MetricFamily {
	f := family(name, help, dto.MetricType_COUNTER)
	f.Metric = []*dto.Metric{{Counter: &dto.Counter{Value: proto.Float64(v)}}}
	return f
}

func byLabel(name, help, label string, values map[string]float64) *dto.MetricFamily {
	f := family(name, help, dto.MetricType_GAUGE)
	for k, v := range values {
		f.Metric = append(f.Metric, gauge(v, [2]string{label, k}))
	}
	sortMetrics(f)
	return f
}

func gauge(v float64, labels ...[2]string) *dto.Metric {
	return &dto.Metric{Label: labelPairs(labels...), Gauge: &dto.Gauge{Value: proto.Float64(v)}}
}

func labelPairs(labels ...[2]string) []*dto.LabelPair {
	out := make([]*dto.LabelPair, 0, len(labels))
	for _, l := range labels {
		out = append(out, &dto.LabelPair{Name: proto.String(l[0]), Value: proto.String(l[1])})
	}
	return out
}

// sortMetrics orders a family's series by their labels, so scrapes diff well.
func sortMetrics(f *dto.MetricFamily) {
	key := func(m *dto.Metric) string {
		var b bytes.Buffer
		for _, l := range m.Label {
			b.WriteString(l.GetValue())
			b.WriteByte(0)
		}
		return b.String()
	}
	sort.Slice(f.Metric, func(i, j int) bool { return key(f.Metric[i]) < key(f.Metric[j]) })
}
