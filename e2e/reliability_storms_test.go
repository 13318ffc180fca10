package e2e

import (
	"fmt"
	"net/http"
	"os"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"
)

// stormCase is one upstream fault, applied to every call of one fake for a
// while, with a rotation falling due in the middle of it.
type stormCase struct {
	name   string
	target string // the simulator's fake: snyk, or an SCM (gitlab)
	// fault is the /faults body (route "*"), or nil for a TLS mode.
	fault func() map[string]interface{}
	tls   string // expired, wrong-host
}

func stormCases() []stormCase {
	status := func(code int, extra map[string]interface{}) func() map[string]interface{} {
		return func() map[string]interface{} {
			f := map[string]interface{}{"status": code}
			for k, v := range extra {
				f[k] = v
			}
			return f
		}
	}
	return []stormCase{
		{name: "429, no Retry-After", target: "snyk", fault: status(429, nil)},
		{name: "429, Retry-After: 2 (seconds)", target: "snyk", fault: status(429, map[string]interface{}{"retry_after": "2"})},
		{name: "429, Retry-After: HTTP date", target: "snyk", fault: func() map[string]interface{} {
			return map[string]interface{}{"status": 429, "retry_after": time.Now().Add(3 * time.Second).UTC().Format(http.TimeFormat)}
		}},
		{name: "500", target: "snyk", fault: status(500, nil)},
		{name: "502", target: "snyk", fault: status(502, nil)},
		{name: "503", target: "snyk", fault: status(503, nil)},
		{name: "connection reset", target: "snyk", fault: status(0, map[string]interface{}{"reset": true})},
		{name: "accepts, never answers (timeouts)", target: "snyk", fault: status(0, map[string]interface{}{"delay_ms": 120000})},
		{name: "malformed JSON", target: "snyk", fault: status(200, map[string]interface{}{"body": `{"token": "abc`})},
		{name: "200 with an unexpected body", target: "snyk", fault: status(200, map[string]interface{}{"body": `{"data":{"unexpected":true}}`})},
		{name: "expired TLS certificate (Snyk)", target: "snyk", tls: "expired"},
		{name: "wrong-host TLS certificate (Snyk)", target: "snyk", tls: "wrong-host"},
		{name: "expired TLS certificate (SCM)", target: "gitlab", tls: "expired"},
		{name: "wrong-host TLS certificate (SCM)", target: "gitlab", tls: "wrong-host"},
	}
}

// stormResult is one row of the printed table.
type stormResult struct {
	name                 string
	readsOK, readsFailed int
	rotations            int
	upstreamCalls        int
	waited               time.Duration
}

// TestReliabilityFaultStorms runs each upstream fault for 15 s on its own
// stack (a Vault and a simulator, all cases at once), with a GitLab
// integration whose provision and switch fall due during the storm
// (rotation_period 20s, provision_ahead 8s, request_timeout 3s) and whose
// SCM credential is checked every 2 s. Throughout, a reader reads the
// broker secret every 250 ms. It shows: every read succeeds with a token
// Snyk routes by; the rotation completes after the storm with exactly one
// provision and one switch; the calls to the faulty upstream during the
// storm stay within the retry budget (a hot loop would make hundreds); and
// how long the due rotation waited past its time. The table is printed.
func TestReliabilityFaultStorms(t *testing.T) {
	requireEnv(t)
	var mu sync.Mutex
	var rows []stormResult
	t.Cleanup(func() {
		sort.Slice(rows, func(i, j int) bool { return rows[i].name < rows[j].name })
		lines := []string{"Upstream fault storms (15 s each, a rotation due during each; reads every 250 ms):",
			"| fault | reads ok | reads failed | rotations completed | upstream calls during the storm | due rotation waited |", "|---|---|---|---|---|---|"}
		for _, r := range rows {
			lines = append(lines, fmt.Sprintf("| %s | %d | %d | %d | %d | %s |", r.name, r.readsOK, r.readsFailed, r.rotations, r.upstreamCalls, r.waited.Round(100*time.Millisecond)))
		}
		report(t, strings.Join(lines, "\n"))
	})
	for _, tc := range stormCases() {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r := runStorm(t, tc)
			mu.Lock()
			rows = append(rows, r)
			mu.Unlock()
		})
	}
}

func runStorm(t *testing.T, tc stormCase) stormResult {
	const period, ahead, storm = 20 * time.Second, 8 * time.Second, 15 * time.Second
	const callBudget = 40
	s := newTestStack(t)
	i := s.sim.info
	s.write(t, mountPath+"/config", map[string]interface{}{"request_timeout": "3s"})
	org := newUUID(t)
	s.sim.addOrg(t, org, "e2e storm")
	s.sim.addIntegration(t, org, "gitlab", false)
	ipath := mountPath + "/integrations/storm/gitlab"
	bpath := mountPath + "/broker/storm/gitlab"
	s.write(t, ipath, map[string]interface{}{
		"org_id": org, "scm_token": i.GitLabToken, "scm_url": i.GitLabURL,
		"ttl": "1h", "rotation_period": period.String(), "provision_ahead": ahead.String(), "scm_check_period": "2s",
	})
	switchAt, err := time.Parse(time.RFC3339, str(s.read(t, ipath).Data["next_vault_rotation"]))
	if err != nil {
		t.Fatal(err)
	}
	before := s.sim.integration(t, org, "gitlab")

	// The reader: every answer must be a token Snyk routes by when read.
	res := stormResult{name: tc.name}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var served []string
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			case <-time.After(250 * time.Millisecond):
			}
			sec, err := s.vault.client.Logical().Read(bpath)
			if err != nil || sec == nil || str(sec.Data["broker_token"]) == "" {
				res.readsFailed++
				continue
			}
			res.readsOK++
			served = append(served, str(sec.Data["broker_token"]))
		}
	}()
	// The watcher notes when Snyk first routes by a new token.
	var completedAt time.Time
	wg.Add(1)
	go func() {
		defer wg.Done()
		for completedAt.IsZero() {
			select {
			case <-stop:
				return
			case <-time.After(200 * time.Millisecond):
			}
			var state []simIntegration
			if s.sim.adminDo("GET", "/state", nil, &state) != nil {
				continue
			}
			for _, in := range state {
				if in.OrgID == org && in.Type == "gitlab" && in.CurrentToken != before.CurrentToken && in.ProvisionalToken == "" {
					completedAt = time.Now()
				}
			}
		}
	}()
	stopReader := sync.OnceFunc(func() { close(stop); wg.Wait() })
	defer stopReader()

	// The storm covers the provision (switch − 8 s) and the switch.
	stormAt := switchAt.Add(-ahead - 3*time.Second)
	time.Sleep(time.Until(stormAt))
	callsBefore := s.stormCalls(t, tc)
	if tc.tls != "" {
		if err := s.sim.adminDo("POST", "/tls", map[string]interface{}{"target": tc.target, "mode": tc.tls}, nil); err != nil {
			t.Fatal(err)
		}
	} else {
		f := tc.fault()
		f["target"], f["route"] = tc.target, "*"
		if err := s.sim.adminDo("POST", "/faults", f, nil); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(storm)
	if tc.tls != "" {
		if err := s.sim.adminDo("POST", "/tls", map[string]interface{}{"target": tc.target, "mode": "valid"}, nil); err != nil {
			t.Fatal(err)
		}
	} else if err := s.sim.adminDo("POST", "/faults/clear", map[string]interface{}{"target": tc.target}, nil); err != nil {
		t.Fatal(err)
	}
	res.upstreamCalls = s.stormCalls(t, tc) - callsBefore
	calm := s.read(t, ipath)
	t.Logf("at the end of the storm: rotation_state %v, last_rotation_error %v, scm_status %v", calm.Data["rotation_state"], calm.Data["last_rotation_error"], calm.Data["scm_status"])

	// After the storm the rotation completes (a 429 pauses background
	// calls for Snyk's one-minute window).
	var after simIntegration
	err = waitFor(2*time.Minute, 250*time.Millisecond, func() (bool, error) {
		after = s.sim.integration(t, org, "gitlab")
		return after.CurrentToken != before.CurrentToken && after.ProvisionalToken == "", nil
	})
	if err != nil {
		in := s.read(t, ipath)
		t.Fatalf("the rotation did not complete within 2 min of the storm: %v (rotation_state %v, last_rotation_error %v)", err, in.Data["rotation_state"], in.Data["last_rotation_error"])
	}
	detected := time.Now()
	stopReader()
	// The watcher saw it first, unless this loop did (it stops the watcher).
	if completedAt.IsZero() || detected.Before(completedAt) {
		completedAt = detected
	}
	if res.waited = completedAt.Sub(switchAt); res.waited < 0 {
		res.waited = 0
	}
	if os.Getenv("STORM_DEBUG") != "" {
		logTail(t, "vault log", s.vault.logPath, 4000)
	}
	res.rotations = after.Switches - before.Switches
	if after.Provisions-before.Provisions != 1 || res.rotations != 1 {
		t.Errorf("Snyk saw %d provisions and %d switches for one rotation, want one of each", after.Provisions-before.Provisions, res.rotations)
	}
	if res.readsFailed > 0 {
		t.Errorf("%d reads failed during the storm", res.readsFailed)
	}
	for _, tok := range served {
		if tok != before.CurrentToken && tok != after.CurrentToken {
			t.Errorf("a read served a token Snyk never routed by")
			break
		}
	}
	if res.upstreamCalls > callBudget {
		t.Errorf("%d calls to %s during a %s storm: more than the retry budget allows (%d), a hot loop", res.upstreamCalls, tc.target, storm, callBudget)
	}
	return res
}

// stormCalls counts the calls that reached the faulty fake: HTTP requests,
// or for a certificate fault TLS handshakes (a refused certificate ends the
// call before HTTP).
func (s *stack) stormCalls(t *testing.T, tc stormCase) int {
	t.Helper()
	if tc.tls == "" {
		n := 0
		for _, c := range s.sim.calls(t, tc.target) {
			n += c
		}
		return n
	}
	var st struct {
		Handshakes int `json:"handshakes"`
	}
	if err := s.sim.adminDo("GET", "/tls?target="+tc.target, nil, &st); err != nil {
		t.Fatal(err)
	}
	return st.Handshakes
}
