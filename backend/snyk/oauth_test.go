package snyk_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/snyk-vault/vault-plugin-secrets-snyk/backend/fault"
	"github.com/snyk-vault/vault-plugin-secrets-snyk/backend/httpx"
	"github.com/snyk-vault/vault-plugin-secrets-snyk/backend/snyk"
	"github.com/snyk-vault/vault-plugin-secrets-snyk/backend/snyk/snyktest"
)

func TestOAuthTokenIsCachedAndRefreshedBeforeExpiry(t *testing.T) {
	e := newEnv(t, envOpts{oauth: true})
	ctx := context.Background()

	id, err := e.client.Verify(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if id.Type != "service_account" || id.ID == "" {
		t.Fatalf("identity %+v", id)
	}
	if _, err := e.client.ListIntegrations(ctx, orgA1); err != nil {
		t.Fatal(err)
	}
	if e.client.AccessTokenFetches() != 1 || e.fake.AccessTokensIssued() != 1 {
		t.Fatalf("fetches %d, issued %d", e.client.AccessTokenFetches(), e.fake.AccessTokensIssued())
	}

	tokReq := e.requestsTo("/oauth2/token")
	if len(tokReq) != 1 || tokReq[0].method != "POST" ||
		tokReq[0].header.Get("Content-Type") != "application/x-www-form-urlencoded" ||
		tokReq[0].header.Get("Authorization") != "" {
		t.Fatalf("token request: %+v", tokReq)
	}
	auth := e.lastRequest().header.Get("Authorization")
	if !strings.HasPrefix(auth, "bearer ") || len(auth) < 20 {
		t.Fatalf("Authorization %q", auth)
	}

	// 1h token: refreshed once less than 60s of it remain.
	e.clientClock.Advance(58 * time.Minute)
	if _, err := e.client.Verify(ctx); err != nil {
		t.Fatal(err)
	}
	if e.client.AccessTokenFetches() != 1 {
		t.Fatal("refreshed too early")
	}
	e.clientClock.Advance(90 * time.Second)
	if _, err := e.client.Verify(ctx); err != nil {
		t.Fatal(err)
	}
	if e.client.AccessTokenFetches() != 2 || e.fake.AccessTokensIssued() != 2 {
		t.Fatalf("want a refresh: fetches %d", e.client.AccessTokenFetches())
	}
	if e.lastRequest().header.Get("Authorization") == auth {
		t.Fatal("still using the old access token")
	}
}

func TestOAuthServerSide401RefetchesOnce(t *testing.T) {
	// The fake's clock runs ahead of the client's, so the client still
	// trusts a token the server considers expired.
	e := newEnv(t, envOpts{oauth: true, separateClocks: true})
	ctx := context.Background()
	if _, err := e.client.Verify(ctx); err != nil {
		t.Fatal(err)
	}
	e.serverClock.Advance(2 * time.Hour)
	if _, err := e.client.Verify(ctx); err != nil {
		t.Fatal(err)
	}
	if e.client.AccessTokenFetches() != 2 {
		t.Fatalf("fetches %d", e.client.AccessTokenFetches())
	}
	if n := e.fake.Faults().Calls(snyktest.RouteSelf); n != 3 {
		t.Fatalf("self calls %d", n)
	}
	// Works for POSTs too: a 401 means the request was not applied.
	id, _ := mustBrokered(t, e, orgA1, "github")
	e.serverClock.Advance(2 * time.Hour)
	p, err := e.client.ProvisionToken(ctx, orgA1, id)
	if err != nil {
		t.Fatal(err)
	}
	e.secret(p)
	if e.client.AccessTokenFetches() != 3 {
		t.Fatalf("fetches %d", e.client.AccessTokenFetches())
	}
}

func TestOAuthPersistent401IsRetriedOnlyOnce(t *testing.T) {
	e := newEnv(t, envOpts{oauth: true})
	e.fake.Faults().Inject(snyktest.RouteSelf, fault.Fault{
		Status: 401, Body: `{"code":401,"error":"Not authorised","message":"Not authorised"}`,
	})
	_, err := e.client.Verify(context.Background())
	if ae := apiErr(t, err); ae.Status != 401 || ae.Message != "Not authorised" {
		t.Fatalf("got %+v", ae)
	}
	e.noLeak(err)
	if e.client.AccessTokenFetches() != 2 || e.fake.Faults().Calls(snyktest.RouteSelf) != 2 {
		t.Fatalf("fetches %d, calls %s", e.client.AccessTokenFetches(), e.fake.Faults())
	}
}

func TestOAuthBadClientSecret(t *testing.T) {
	e := newEnv(t, envOpts{oauth: true, clientSecret: "snyk_cs_wrongwrongwrong_v1"})
	_, err := e.client.Verify(context.Background())
	ae := apiErr(t, err)
	if ae.Status != 401 || ae.Message != "Client authentication failed" || ae.Method != "POST" || ae.Path != "/oauth2/token" {
		t.Fatalf("got %+v", ae)
	}
	if snyk.StatusOf(err) != 401 {
		t.Fatal("StatusOf")
	}
	e.noLeak(err)
	if e.fake.Faults().Calls(snyktest.RouteSelf) != 0 {
		t.Fatal("called the API without a token")
	}
	// The token endpoint's 401 is not the API's: no second fetch.
	if e.client.AccessTokenFetches() != 1 {
		t.Fatalf("fetches %d", e.client.AccessTokenFetches())
	}
}

func TestOAuthConcurrentCallersShareOneFetch(t *testing.T) {
	e := newEnv(t, envOpts{oauth: true})
	e.fake.Faults().Inject(snyktest.RouteOAuthToken, fault.Fault{Delay: 150 * time.Millisecond, Times: 1})
	var wg sync.WaitGroup
	errs := make(chan error, 10)
	for i := 0; i < 10; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := e.client.Verify(context.Background())
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if e.client.AccessTokenFetches() != 1 || e.fake.AccessTokensIssued() != 1 {
		t.Fatalf("fetches %d, issued %d", e.client.AccessTokenFetches(), e.fake.AccessTokensIssued())
	}
}

func TestOAuthWaiterHonoursItsContext(t *testing.T) {
	e := newEnv(t, envOpts{oauth: true})
	e.fake.Faults().Inject(snyktest.RouteOAuthToken, fault.Fault{Delay: 300 * time.Millisecond, Times: 1})
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if _, err := e.client.Verify(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("got %v", err)
	}
	// The fetch carried on for everyone else.
	if _, err := e.client.Verify(context.Background()); err != nil {
		t.Fatal(err)
	}
	if e.client.AccessTokenFetches() != 1 {
		t.Fatalf("fetches %d", e.client.AccessTokenFetches())
	}
}

// A token-endpoint timeout happens before the caller's own POST is sent, so
// it must not look like an unknown outcome of that POST.
func TestOAuthFetchTimeoutIsNotOutcomeUnknown(t *testing.T) {
	e := newEnv(t, envOpts{oauth: true, timeout: 2 * time.Second})
	id, _ := mustBrokered(t, e, orgA1, "github")
	e.fake.Faults().Inject(snyktest.RouteOAuthToken, fault.Fault{Delay: 6 * time.Second, Times: 1})
	_, err := e.client.ProvisionToken(context.Background(), orgA1, id)
	if err == nil || errors.Is(err, httpx.ErrOutcomeUnknown) {
		t.Fatalf("got %v", err)
	}
	e.noLeak(err)
	if e.fake.Faults().Calls(snyktest.RouteProvisionToken) != 0 || e.fake.ProvisionalToken(id) != "" {
		t.Fatal("provision was sent")
	}
}

func TestOAuthTokenEndpointErrorsAreRetriedLikeAnyOther(t *testing.T) {
	e := newEnv(t, envOpts{oauth: true})
	e.fake.Faults().Inject(snyktest.RouteOAuthToken, fault.Fault{Status: 429, RetryAfter: "2", Times: 1})
	if _, err := e.client.Verify(context.Background()); err != nil {
		t.Fatal(err)
	}
	if w := e.sleeper.Waits(); !equalWaits(w, []time.Duration{2 * time.Second}) {
		t.Fatalf("waits %v", w)
	}
	if e.client.AccessTokenFetches() != 2 || e.fake.AccessTokensIssued() != 1 {
		t.Fatalf("fetches %d, issued %d", e.client.AccessTokenFetches(), e.fake.AccessTokensIssued())
	}
}

func TestAPITokenClientMakesNoFetch(t *testing.T) {
	e := newEnv(t, envOpts{})
	if _, err := e.client.Verify(context.Background()); err != nil {
		t.Fatal(err)
	}
	if e.client.AccessTokenFetches() != 0 || e.fake.Faults().Calls(snyktest.RouteOAuthToken) != 0 {
		t.Fatal("API-token client used OAuth")
	}
}
