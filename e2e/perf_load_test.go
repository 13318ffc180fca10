package e2e

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// The load generator of make bench: n clients, each with its own keep-alive
// connection, send one request after another for a fixed time; every
// latency is recorded. Speed is printed, never asserted.

// perfEnabled skips t unless make bench asked for the figures (they take
// minutes, and timings belong to a quiet machine, not to make test).
func perfEnabled(t *testing.T) {
	t.Helper()
	requireEnv(t)
	if os.Getenv("SNYK_PERF") == "" {
		t.Skip("performance figures run under make bench (SNYK_PERF=1)")
	}
}

// loadResult is one cell of the table.
type loadResult struct {
	requests, failures int
	elapsed            time.Duration
	p50, p99, max      time.Duration
	firstFailure       string
}

func (r loadResult) rps() float64 { return float64(r.requests) / r.elapsed.Seconds() }

func (r loadResult) String() string {
	s := fmt.Sprintf("%7.0f req/s  p50 %6.2f ms  p99 %6.2f ms", r.rps(), ms(r.p50), ms(r.p99))
	if r.failures > 0 {
		s += fmt.Sprintf("  %d FAILED (%s)", r.failures, r.firstFailure)
	}
	return s
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// vaultRequest is one request of a load: method, path under /v1, body.
type vaultRequest struct {
	method, path string
	body         []byte
}

// runLoad sends req from clients clients for d against addr with token.
func runLoad(addr, token string, clients int, d time.Duration, req vaultRequest) loadResult {
	transport := &http.Transport{MaxIdleConnsPerHost: clients, MaxConnsPerHost: clients, DisableCompression: true}
	defer transport.CloseIdleConnections()
	hc := &http.Client{Transport: transport, Timeout: 30 * time.Second}
	url := addr + "/v1/" + req.path
	var (
		mu        sync.Mutex
		latencies []time.Duration
		failures  atomic.Int64
		firstFail atomic.Value
		wg        sync.WaitGroup
	)
	start := time.Now()
	deadline := start.Add(d)
	for i := 0; i < clients; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			own := make([]time.Duration, 0, 4096)
			for time.Now().Before(deadline) {
				var body io.Reader
				if req.body != nil {
					body = bytes.NewReader(req.body)
				}
				r, _ := http.NewRequest(req.method, url, body)
				r.Header.Set("X-Vault-Token", token)
				t0 := time.Now()
				resp, err := hc.Do(r)
				if err == nil {
					_, _ = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					if resp.StatusCode/100 != 2 {
						err = fmt.Errorf("HTTP %d", resp.StatusCode)
					}
				}
				own = append(own, time.Since(t0))
				if err != nil {
					failures.Add(1)
					firstFail.CompareAndSwap(nil, err.Error())
				}
			}
			mu.Lock()
			latencies = append(latencies, own...)
			mu.Unlock()
		}()
	}
	wg.Wait()
	res := loadResult{requests: len(latencies), failures: int(failures.Load()), elapsed: time.Since(start)}
	if f, ok := firstFail.Load().(string); ok {
		res.firstFailure = f
	}
	res.p50, res.p99, res.max = percentiles(latencies)
	return res
}

// percentiles returns p50, p99 and the maximum of ds.
func percentiles(ds []time.Duration) (p50, p99, maxD time.Duration) {
	if len(ds) == 0 {
		return 0, 0, 0
	}
	sorted := append([]time.Duration(nil), ds...)
	sort.Slice(sorted, func(i, j int) bool { return sorted[i] < sorted[j] })
	at := func(q float64) time.Duration { return sorted[min(len(sorted)-1, int(q*float64(len(sorted))))] }
	return at(0.50), at(0.99), sorted[len(sorted)-1]
}

// procRSSKB is a process's resident set size in KiB, from /proc.
func procRSSKB(pid int) int64 {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(raw), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			n, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 10, 64)
			return n
		}
	}
	return 0
}

// procCPU is a process's user + system CPU time so far, from /proc.
func procCPU(pid int) time.Duration {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	// The command name may hold spaces: fields count from the last ')'.
	s := string(raw)
	fields := strings.Fields(s[strings.LastIndex(s, ")")+1:])
	if len(fields) < 13 {
		return 0
	}
	utime, _ := strconv.ParseInt(fields[11], 10, 64)
	stime, _ := strconv.ParseInt(fields[12], 10, 64)
	// Clock ticks are 100 per second on Linux.
	return time.Duration(utime+stime) * 10 * time.Millisecond
}
