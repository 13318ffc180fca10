package e2e

import (
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestPerformanceScale creates 10,000 integrations through Vault's API
// against the simulator, on single-node Raft storage, and prints what a
// company-scale mount costs: plugin memory at rest and in a rotation storm,
// mount initialisation after a plugin reload and a Vault restart, LIST
// latency, CPU per idle tick at 1 and 10,000 integrations, the storm's drain
// rate against the configured budget, and storage per integration.
//
// A Snyk org has at most one integration per SCM type: 8,000 integrations
// are 1,600 orgs in 20 groups with all 5 SCMs each, and the storm set is
// 2,000 orgs outside any group with one integration each, all due at once.
// The storm set needs a Snyk provisional-token slot per integration: Snyk
// allows one provisional token per group, so the engine serializes a
// group's rotations (and an ungrouped org's), and a storm inside a few
// groups drains at the pace of their switches, whatever the budget.
func TestPerformanceScale(t *testing.T) {
	perfEnabled(t)
	const (
		grouped, groups, stormOrgs = 1600, 20, 2000
		budget                     = 1800 // Snyk requests per minute for the storm
	)
	kinds := []string{"github", "github-enterprise", "gitlab", "azure-repos", "bitbucket-server"}
	s := perfStack(t, raftStorage, map[string]interface{}{
		"rotation_requests_per_minute": budget, "rotation_concurrency": 8, "scm_check_period": "720h",
	})
	i := s.sim.info
	pid := func() int {
		pids := pluginPIDs(t, s)
		if len(pids) == 0 {
			t.Fatal("no plugin process")
		}
		return pids[0]
	}
	// An idle pass of the rotation loop, as the engine times it (its tick
	// histogram: the median pass between two scrapes), and the plugin's
	// whole CPU over 20 s between them (from /proc, in 10 ms steps). A
	// scrape reads every integration, so a pass that overlaps one is slower;
	// the median leaves it out, and the scrape's own time is printed.
	idleTick := func(label string) {
		p := pid()
		t0 := time.Now()
		first := scrapeMetrics(t, s)
		took := time.Since(t0)
		time.Sleep(2 * time.Second)
		before := procCPU(p)
		time.Sleep(20 * time.Second)
		cpu := procCPU(p) - before
		last := scrapeMetrics(t, s)
		median, n := medianTick(t, first, last)
		report(t, fmt.Sprintf("scale: idle rotation tick with %s: median ≤ %.0f µs (%d passes); plugin CPU over 20 idle s: %.0f ms; one snyk/metrics scrape: %.0f ms",
			label, median*1e6, n, ms(cpu), ms(took)))
	}
	raftDir := filepath.Join(s.dir, "vault-data")
	// The idle baseline is one integration, not none: with nothing queued
	// the loop has nothing to look at, which is cheaper than any mount.
	first := newUUID(t)
	if err := s.sim.adminDo("POST", "/orgs", map[string]string{"org_id": first, "name": "first"}, nil); err != nil {
		t.Fatal(err)
	}
	firstID, _ := s.sim.addIntegration(t, first, "github", false)
	s.write(t, mountPath+"/integrations/first/github", map[string]interface{}{
		"org_id": first, "integration_id": firstID, "broker_token_source": "enable", "scm_token": i.GitHubToken, "scm_api_url": i.GitHubURL,
	})
	sizeBefore := dirSize(raftDir)
	idleTick("1 integration")

	// The storm set falls due at one instant: created with a daily
	// schedule whose provision time is 150 s from now, after every create,
	// and whose switch comes after the provisions have drained.
	now := time.Now().UTC()
	switchAt := now.Add(6 * time.Minute).Truncate(time.Minute)
	dueAt := now.Add(150 * time.Second)
	ahead := switchAt.Sub(dueAt).Round(time.Second)
	storm := map[string]interface{}{
		"rotation_schedule": fmt.Sprintf("%d %d * * *", switchAt.Minute(), switchAt.Hour()),
		"provision_ahead":   fmt.Sprintf("%ds", int(ahead.Seconds())),
	}

	scm := map[string]map[string]interface{}{
		"github":            {"scm_token": i.GitHubToken, "scm_api_url": i.GitHubURL},
		"github-enterprise": {"scm_token": i.GHEToken, "scm_url": i.GHEURL},
		"gitlab":            {"scm_token": i.GitLabToken, "scm_url": i.GitLabURL},
		"azure-repos":       {"scm_token": i.AzureToken, "scm_url": i.AzureURL, "azure_org": i.AzureOrg},
		"bitbucket-server":  {"scm_username": i.BitbucketUsername, "scm_password": i.BitbucketPassword, "scm_url": i.BitbucketURL},
	}
	type job struct {
		name, org, kind, id string
		storm               bool
	}
	jobs := make(chan job, 256)
	var created, failed atomic.Int64
	var firstErr atomic.Value
	var wg sync.WaitGroup
	start := time.Now()
	for w := 0; w < 16; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range jobs {
				data := map[string]interface{}{"org_id": j.org, "integration_id": j.id, "broker_token_source": "enable", "skip_scm_validation": true}
				for k, v := range scm[j.kind] {
					data[k] = v
				}
				if j.storm {
					for k, v := range storm {
						data[k] = v
					}
				}
				if _, err := s.vault.client.Logical().Write(mountPath+"/integrations/"+j.name+"/"+j.kind, data); err != nil {
					failed.Add(1)
					firstErr.CompareAndSwap(nil, err.Error())
					continue
				}
				created.Add(1)
			}
		}()
	}
	for n := 0; n < grouped+stormOrgs; n++ {
		org := newUUID(t)
		group, orgKinds := "", kinds
		if n < grouped {
			group = fmt.Sprintf("7d3f0a52-1c4e-4b9a-9e2d-%012d", n%groups)
		} else {
			orgKinds = kinds[n%len(kinds) : n%len(kinds)+1]
		}
		if err := s.sim.adminDo("POST", "/orgs", map[string]string{"org_id": org, "group_id": group, "name": fmt.Sprintf("org %d", n)}, nil); err != nil {
			t.Fatal(err)
		}
		for _, kind := range orgKinds {
			id, _ := s.sim.addIntegration(t, org, kind, false)
			jobs <- job{name: fmt.Sprintf("o%04d", n), org: org, kind: kind, id: id, storm: n >= grouped}
		}
	}
	close(jobs)
	wg.Wait()
	took := time.Since(start)
	if failed.Load() > 0 {
		t.Fatalf("%d creates failed (first: %v)", failed.Load(), firstErr.Load())
	}
	report(t, fmt.Sprintf("scale: created %d integrations in %.0f s (%.0f/s, 16 writers, Raft)", created.Load(), took.Seconds(), float64(created.Load())/took.Seconds()))
	if time.Now().After(dueAt) {
		t.Fatalf("creating took too long: the storm set fell due before the last create (%s)", took)
	}
	report(t, fmt.Sprintf("scale: plugin RSS at rest with %d integrations: %.1f MiB", created.Load(), float64(procRSSKB(pid()))/1024))
	report(t, fmt.Sprintf("scale: Raft storage grew %.1f MB, %.1f KB per integration", float64(dirSize(raftDir)-sizeBefore)/1e6, float64(dirSize(raftDir)-sizeBefore)/1e3/float64(created.Load())))
	for _, path := range []string{mountPath + "/integrations", mountPath + "/integrations/o0001"} {
		t0 := time.Now()
		for k := 0; k < 5; k++ {
			if _, err := s.vault.client.Logical().List(path); err != nil {
				t.Fatal(err)
			}
		}
		report(t, fmt.Sprintf("scale: LIST %s: %.1f ms", path, ms(time.Since(t0))/5))
	}

	// The storm: 2,000 provisions due at dueAt.
	provisionRoute := "POST /v1/org/{orgId}/integrations/{integrationId}/authentication/provision-token"
	provisionsBefore := s.sim.calls(t, "snyk")[provisionRoute]
	totalBefore := sumCalls(s.sim.calls(t, "snyk"))
	time.Sleep(time.Until(dueAt))
	var maxRSS int64
	var firstAt, lastAt time.Time
	stormSet := int64(stormOrgs)
	err := waitFor(10*time.Minute, time.Second, func() (bool, error) {
		maxRSS = max(maxRSS, procRSSKB(pid()))
		n := int64(s.sim.calls(t, "snyk")[provisionRoute] - provisionsBefore)
		if n > 0 && firstAt.IsZero() {
			firstAt = time.Now()
		}
		if n >= stormSet {
			lastAt = time.Now()
			return true, nil
		}
		return false, fmt.Errorf("%d of %d provisioned", n, stormSet)
	})
	if err != nil {
		t.Fatalf("the storm did not drain: %v", err)
	}
	total := sumCalls(s.sim.calls(t, "snyk")) - totalBefore
	minutes := time.Since(dueAt).Minutes()
	rate := float64(total) / minutes
	report(t, fmt.Sprintf("scale: storm of %d due at once drained in %.0f s: %d Snyk requests, %.0f per minute = %.0f%% of the budget (%d/min); plugin RSS peak %.1f MiB",
		stormSet, lastAt.Sub(dueAt).Seconds(), total, rate, 100*rate/budget, budget, float64(maxRSS)/1024))
	report(t, fmt.Sprintf("scale: Snyk 429 answers during the whole run: %.0f", metricIn(t, scrapeMetrics(t, s), "snyk_broker_upstream_requests_total", `status="429"`, `upstream="snyk"`)))
	// Idle: the storm's switches (and any retries) are over when Snyk
	// hears nothing for 20 s.
	quiet := sumCalls(s.sim.calls(t, "snyk"))
	if err := waitFor(10*time.Minute, 20*time.Second, func() (bool, error) {
		n := sumCalls(s.sim.calls(t, "snyk"))
		done := n == quiet
		quiet = n
		return done, nil
	}); err != nil {
		t.Fatalf("the mount never went quiet after the storm: %v", err)
	}
	idleTick(fmt.Sprintf("%d integrations", created.Load()+1))

	// Mount initialisation: the queue rebuilt from storage.
	reloadStart := time.Now()
	if _, stderr, err := s.vault.cli(t, "plugin", "reload", "-plugin="+pluginName); err != nil {
		t.Fatalf("plugin reload: %v: %s", err, stderr)
	}
	report(t, fmt.Sprintf("scale: mount initialised %.2f s after a plugin reload", waitLoaded(t, s, reloadStart, created.Load()+1).Seconds()))
	s.vault.stop()
	if err := s.vault.start(); err != nil {
		t.Fatal(err)
	}
	unsealStart := time.Now()
	if err := s.vault.unseal(); err != nil {
		t.Fatal(err)
	}
	report(t, fmt.Sprintf("scale: mount initialised %.2f s after a Vault restart's unseal", waitLoaded(t, s, unsealStart, created.Load()+1).Seconds()))
}

// waitLoaded waits for the plugin's "rotation engine loaded" log line with
// n integrations written after since, and returns how long after since it
// was logged.
func waitLoaded(t *testing.T, s *stack, since time.Time, n int64) time.Duration {
	t.Helper()
	want := fmt.Sprintf("integrations=%d", n)
	var at time.Time
	err := waitFor(2*time.Minute, 200*time.Millisecond, func() (bool, error) {
		// Ask the mount something: Vault starts a reloaded plugin lazily.
		_, _ = s.vault.client.Logical().Read(mountPath + "/config")
		raw, err := os.ReadFile(s.vault.logPath)
		if err != nil {
			return false, err
		}
		for _, line := range strings.Split(string(raw), "\n") {
			if !strings.Contains(line, "rotation engine loaded") || !strings.Contains(line, want) {
				continue
			}
			ts, err := time.Parse(time.RFC3339Nano, strings.Fields(line)[0])
			if err == nil && ts.After(since) {
				at = ts
				return true, nil
			}
		}
		return false, nil
	})
	if err != nil {
		t.Fatalf("the mount never logged its load of %d integrations: %v", n, err)
	}
	return at.Sub(since)
}

// scrapeMetrics reads snyk/metrics.
func scrapeMetrics(t *testing.T, s *stack) string {
	t.Helper()
	resp, err := s.vault.client.Logical().ReadRaw(mountPath + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(raw)
}

// medianTick is the upper bound of the tick-histogram bucket holding the
// median of the passes between two scrapes, and how many passes there were.
func medianTick(t *testing.T, first, last string) (float64, int) {
	t.Helper()
	buckets := func(scrape string) map[float64]float64 {
		out := map[float64]float64{}
		for _, line := range strings.Split(scrape, "\n") {
			rest, ok := strings.CutPrefix(line, `snyk_rotation_tick_duration_seconds_bucket{le="`)
			if !ok {
				continue
			}
			le, count, _ := strings.Cut(rest, `"} `)
			bound, err1 := strconv.ParseFloat(le, 64)
			v, err2 := strconv.ParseFloat(count, 64)
			if err1 != nil || err2 != nil {
				t.Fatalf("tick histogram line %q", line)
			}
			out[bound] = v
		}
		return out
	}
	before, after := buckets(first), buckets(last)
	var bounds []float64
	for b := range after {
		bounds = append(bounds, b)
	}
	sort.Float64s(bounds)
	if len(bounds) == 0 {
		t.Fatal("no tick histogram in snyk/metrics")
	}
	total := after[bounds[len(bounds)-1]] - before[bounds[len(bounds)-1]]
	for _, b := range bounds {
		if 2*(after[b]-before[b]) >= total {
			return b, int(total)
		}
	}
	return math.Inf(1), int(total)
}

// metricIn is the value in a scrape of the metric name whose labels contain
// every one of labels, 0 when there is none.
func metricIn(t *testing.T, scrape, name string, labels ...string) float64 {
	t.Helper()
lines:
	for _, line := range strings.Split(scrape, "\n") {
		if !strings.HasPrefix(line, name+" ") && !strings.HasPrefix(line, name+"{") {
			continue
		}
		for _, l := range labels {
			if !strings.Contains(line, l) {
				continue lines
			}
		}
		v, err := strconv.ParseFloat(line[strings.LastIndex(line, " ")+1:], 64)
		if err != nil {
			t.Fatalf("%s: %v", line, err)
		}
		return v
	}
	return 0
}

func sumCalls(m map[string]int) int {
	n := 0
	for _, v := range m {
		n += v
	}
	return n
}

// dirSize is the bytes of the files under dir.
func dirSize(dir string) int64 {
	var n int64
	_ = filepath.Walk(dir, func(_ string, info os.FileInfo, err error) error {
		if err == nil && !info.IsDir() {
			n += info.Size()
		}
		return nil
	})
	return n
}
