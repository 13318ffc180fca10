package snyk_test

import (
	"context"
	"errors"
	"net/http"
	"testing"
	"time"

	"github.com/snyk-vault/vault-plugin-secrets-snyk/backend/fault"
	"github.com/snyk-vault/vault-plugin-secrets-snyk/backend/httpx"
	"github.com/snyk-vault/vault-plugin-secrets-snyk/backend/snyk/snyktest"
)

func TestRetriesHonourRetryAfter(t *testing.T) {
	cases := []struct {
		name  string
		fault func(now time.Time) fault.Fault
		want  []time.Duration
	}{
		{"429 Retry-After seconds", func(time.Time) fault.Fault {
			return fault.Fault{Status: 429, RetryAfter: "1", Times: 2}
		}, []time.Duration{time.Second, time.Second}},
		{"429 Retry-After HTTP date", func(now time.Time) fault.Fault {
			return fault.Fault{Status: 429, RetryAfter: now.Add(7 * time.Second).UTC().Format(http.TimeFormat), Times: 1}
		}, []time.Duration{7 * time.Second}},
		// Without Retry-After the policy's rate-limit back-off applies.
		{"429 without Retry-After", func(time.Time) fault.Fault {
			return fault.Fault{Status: 429, Times: 2}
		}, []time.Duration{2 * time.Second, 4 * time.Second}},
		{"503", func(time.Time) fault.Fault {
			return fault.Fault{Status: 503, Times: 2}
		}, []time.Duration{100 * time.Millisecond, 200 * time.Millisecond}},
		{"503 Retry-After", func(time.Time) fault.Fault {
			return fault.Fault{Status: 503, RetryAfter: "3", Times: 1}
		}, []time.Duration{3 * time.Second}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			e := newEnv(t, envOpts{})
			id, _ := mustBrokered(t, e, orgA1, "github")
			e.fake.Faults().Inject(snyktest.RouteListIntegrations, c.fault(e.clientClock.Now()))
			got, err := e.client.ListIntegrations(context.Background(), orgA1)
			if err != nil || got["github"] != id {
				t.Fatalf("got %v, %v", got, err)
			}
			if w := e.sleeper.Waits(); !equalWaits(w, c.want) {
				t.Fatalf("waits %v, want %v", w, c.want)
			}
			if n := e.fake.Faults().Calls(snyktest.RouteListIntegrations); n != len(c.want)+1 {
				t.Fatalf("calls %d", n)
			}
		})
	}
}

func TestRetriesAreBounded(t *testing.T) {
	t.Run("attempts", func(t *testing.T) {
		e := newEnv(t, envOpts{})
		e.fake.Faults().Inject(snyktest.RouteListIntegrations, fault.Fault{Status: 503})
		_, err := e.client.ListIntegrations(context.Background(), orgA1)
		if ae := apiErr(t, err); ae.Status != 503 || ae.Message != "Service Unavailable" {
			t.Fatalf("got %+v", ae)
		}
		if n := e.fake.Faults().Calls(snyktest.RouteListIntegrations); n != 4 {
			t.Fatalf("calls %d, want MaxAttempts=4", n)
		}
		want := []time.Duration{100 * time.Millisecond, 200 * time.Millisecond, 400 * time.Millisecond}
		if w := e.sleeper.Waits(); !equalWaits(w, want) {
			t.Fatalf("waits %v", w)
		}
	})
	t.Run("total wait", func(t *testing.T) {
		e := newEnv(t, envOpts{retry: func(p *httpx.RetryPolicy) {
			p.MaxAttempts = 10
			p.MaxDelay = time.Hour
			p.MaxTotalWait = 150 * time.Second
		}})
		e.fake.Faults().Inject(snyktest.RouteListIntegrations, fault.Fault{Status: 429, RetryAfter: "100"})
		_, err := e.client.ListIntegrations(context.Background(), orgA1)
		if ae := apiErr(t, err); ae.Status != 429 || ae.Message != "Too many requests" {
			t.Fatalf("got %+v", ae)
		}
		if w := e.sleeper.Waits(); !equalWaits(w, []time.Duration{100 * time.Second}) {
			t.Fatalf("waits %v", w)
		}
	})
	t.Run("max delay caps Retry-After", func(t *testing.T) {
		e := newEnv(t, envOpts{retry: func(p *httpx.RetryPolicy) { p.MaxDelay = 5 * time.Second }})
		e.fake.Faults().Inject(snyktest.RouteListIntegrations, fault.Fault{Status: 429, RetryAfter: "3600", Times: 1})
		if _, err := e.client.ListIntegrations(context.Background(), orgA1); err != nil {
			t.Fatal(err)
		}
		if w := e.sleeper.Waits(); !equalWaits(w, []time.Duration{5 * time.Second}) {
			t.Fatalf("waits %v", w)
		}
	})
}

// The fake's own rate limiter: 429 until requests stop for a whole window.
func TestFakeRateLimitWindow(t *testing.T) {
	t.Run("with Retry-After", func(t *testing.T) {
		e := newEnv(t, envOpts{})
		e.fake.SetBehaviour(snyktest.Behaviour{RateLimitWindow: time.Minute, RateLimitPerWindow: 3, RateLimitRetryAfter: true})
		for i := 0; i < 4; i++ {
			if _, err := e.client.ListIntegrations(context.Background(), orgA1); err != nil {
				t.Fatalf("call %d: %v", i, err)
			}
		}
		if w := e.sleeper.Waits(); !equalWaits(w, []time.Duration{time.Minute}) {
			t.Fatalf("waits %v", w)
		}
		if n := e.fake.Faults().Calls(snyktest.RouteListIntegrations); n != 5 {
			t.Fatalf("calls %d", n)
		}
	})
	t.Run("without Retry-After, early retries extend the window", func(t *testing.T) {
		e := newEnv(t, envOpts{retry: func(p *httpx.RetryPolicy) {
			p.MaxAttempts = 6
			p.RateLimitDelay = 10 * time.Second
			p.MaxDelay = time.Minute
		}})
		e.fake.SetBehaviour(snyktest.Behaviour{RateLimitWindow: time.Minute, RateLimitPerWindow: 3})
		for i := 0; i < 4; i++ {
			if _, err := e.client.ListIntegrations(context.Background(), orgA1); err != nil {
				t.Fatalf("call %d: %v", i, err)
			}
		}
		want := []time.Duration{10 * time.Second, 20 * time.Second, 40 * time.Second, time.Minute}
		if w := e.sleeper.Waits(); !equalWaits(w, want) {
			t.Fatalf("waits %v, want %v", w, want)
		}
	})
}

func TestProvision5xxIsRetriedAndYieldsOneProvisionalToken(t *testing.T) {
	e := newEnv(t, envOpts{})
	a1, _ := mustBrokered(t, e, orgA1, "github")
	a2, _ := mustBrokered(t, e, orgA2, "github")
	e.fake.Faults().Inject(snyktest.RouteProvisionToken, fault.Fault{Status: 503, Times: 1})
	p, err := e.client.ProvisionToken(context.Background(), orgA1, a1)
	if err != nil {
		t.Fatal(err)
	}
	e.secret(p)
	if n := e.fake.Faults().Calls(snyktest.RouteProvisionToken); n != 2 {
		t.Fatalf("calls %d", n)
	}
	if e.fake.ProvisionalToken(a1) != p || e.fake.ProvisionalToken(a2) != "" || e.fake.GroupProvisionalHolder(groupA) != a1 {
		t.Fatal("want exactly the returned provisional token in the group")
	}
}

// The real-world hazard: Snyk minted the provisional token and the client
// saw a 500. Repeating the call would only be refused (the token now exists)
// and the token would be lost, so the client does not repeat it and reports
// an unknown outcome instead (the engine keeps its WAL entry).
func TestProvisionAmbiguous5xxIsOutcomeUnknown(t *testing.T) {
	e := newEnv(t, envOpts{})
	id, _ := mustBrokered(t, e, orgA1, "github")
	e.fake.Faults().Inject(snyktest.RouteProvisionToken, fault.Fault{Status: 500, AfterHandler: true, Times: 1})
	_, err := e.client.ProvisionToken(context.Background(), orgA1, id)
	if !errors.Is(err, httpx.ErrOutcomeUnknown) {
		t.Fatalf("want ErrOutcomeUnknown, got %v", err)
	}
	e.secret(e.fake.ProvisionalToken(id))
	e.noLeak(err)
	if e.fake.ProvisionalToken(id) == "" || e.fake.GroupProvisionalHolder(groupA) != id {
		t.Fatal("the first attempt should have minted a provisional token")
	}
	if n := e.fake.Faults().Calls(snyktest.RouteProvisionToken); n != 1 {
		t.Fatalf("calls %d, want 1 (no repeat after an ambiguous 5xx)", n)
	}
}

func TestPOSTTimeoutIsOutcomeUnknown(t *testing.T) {
	ctx := context.Background()
	calls := map[string]func(e *env, id string) error{
		snyktest.RouteProvisionToken: func(e *env, id string) error {
			_, err := e.client.ProvisionToken(ctx, orgA1, id)
			return err
		},
		snyktest.RouteSwitchToken: func(e *env, id string) error {
			return e.client.SwitchToken(ctx, orgA1, id)
		},
		snyktest.RouteClone: func(e *env, id string) error {
			_, err := e.client.CloneIntegration(ctx, orgA1, id, orgA2)
			return err
		},
		snyktest.RouteAddIntegration: func(e *env, _ string) error {
			_, err := e.client.AddIntegration(ctx, orgA1, "gitlab", true, nil)
			return err
		},
	}
	for route, call := range calls {
		t.Run(route, func(t *testing.T) {
			e := newEnv(t, envOpts{timeout: 2 * time.Second})
			id, _ := mustBrokered(t, e, orgA1, "github")
			e.fake.Faults().Inject(route, fault.Fault{Delay: 6 * time.Second, Times: 1})
			err := call(e, id)
			if !errors.Is(err, httpx.ErrOutcomeUnknown) {
				t.Fatalf("want ErrOutcomeUnknown, got %v; calls %s; logs:\n%s", err, e.fake.Faults(), e.logs.String())
			}
			if n := e.fake.Faults().Calls(route); n != 1 {
				t.Fatalf("a non-idempotent call was repeated: %d calls", n)
			}
			e.noLeak(err)
		})
	}
}

func TestGETTimeoutIsRetried(t *testing.T) {
	e := newEnv(t, envOpts{timeout: 2 * time.Second})
	e.fake.Faults().Inject(snyktest.RouteListIntegrations, fault.Fault{Delay: 6 * time.Second, Times: 1})
	if _, err := e.client.ListIntegrations(context.Background(), orgA1); err != nil {
		t.Fatal(err)
	}
	if n := e.fake.Faults().Calls(snyktest.RouteListIntegrations); n != 2 {
		t.Fatalf("calls %d", n)
	}
}
