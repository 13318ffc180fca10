package backend

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	hclog "github.com/hashicorp/go-hclog"
	"github.com/hashicorp/vault/sdk/logical"

	"github.com/snyk-vault/vault-plugin-secrets-snyk/backend/httpx"
	"github.com/snyk-vault/vault-plugin-secrets-snyk/backend/scm/scmtest"
	"github.com/snyk-vault/vault-plugin-secrets-snyk/backend/snyk/snyktest"
	"github.com/snyk-vault/vault-plugin-secrets-snyk/backend/tlstest"
)

// Fixed identities of the fake world every test starts from.
const (
	testAPIToken     = "5f2c1e4a-9b7d-4c3e-8a1f-0d9e8c7b6a51"
	testClientID     = "64ae3415-5ccd-49e5-91f0-9101a6793ec2"
	testClientSecret = "snyk_cs_0123456789abcdef_v1"
	testGroupID      = "7d3f0a52-1c4e-4b9a-9e2d-5f6a7b8c9d01"
	testOrgID        = "0b3e1b1c-1b4e-4b8e-9d11-3c0f1b1d2a55"
	testOtherOrgID   = "2c4e6a8b-0d1f-4a3c-8e5b-7d9f1a3c5e70"

	ghGood     = "ghp_good0000000000000000000000000000000"
	gheGood    = "ghp_enterprise00000000000000000000000000"
	glGood     = "glpat-good00000000000000"
	azGood     = "azurepatgood0000000000000000000000000000000000000"
	bbToken    = "BBDC-goodtoken000000000000000000"
	bbUser     = "svc-snyk"
	bbPassword = "bitbucket-password-000"
)

// testEnv is one engine mount with in-memory storage, talking over TLS (with
// a test CA given as ca_cert) to a fake Snyk API and fake SCMs.
type testEnv struct {
	t       testing.TB
	b       *backend
	storage *logical.InmemStorage
	// view is what the engine uses: storage, with faults on demand.
	view  *faultyStorage
	clock *fakeClock
	logs  *syncBuffer

	ca      *tlstest.CA
	snyk    *snyktest.Server
	snykURL string

	github    *scmtest.GitHub
	githubURL string
	ghe       *scmtest.GitHub
	gheURL    string
	gitlab    *scmtest.GitLab
	gitlabURL string
	azure     *scmtest.Azure
	azureURL  string
	bitbucket *scmtest.Bitbucket
	bbURL     string

	sleeps *sleepRecorder
	retry  httpx.RetryPolicy
	events *eventRecorder
	// armFault injects the fault a table test chose, at the step it chooses.
	armFault func()
}

type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// sleepRecorder replaces the retry loop's sleep so tests see the waits
// without spending them.
type sleepRecorder struct {
	mu    sync.Mutex
	waits []time.Duration
}

func (s *sleepRecorder) Sleep(ctx context.Context, d time.Duration) error {
	s.mu.Lock()
	s.waits = append(s.waits, d)
	s.mu.Unlock()
	return ctx.Err()
}

func (s *sleepRecorder) Waits() []time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]time.Duration(nil), s.waits...)
}

type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.buf.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.buf.String()
}

func newTestEnv(t testing.TB) *testEnv {
	t.Helper()
	ca, err := tlstest.NewCA()
	if err != nil {
		t.Fatal(err)
	}
	env := &testEnv{
		t:      t,
		ca:     ca,
		clock:  &fakeClock{now: time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)},
		logs:   &syncBuffer{},
		sleeps: &sleepRecorder{},
	}

	env.snyk = snyktest.New(snyktest.Options{
		APITokens:      []string{testAPIToken},
		OAuthClients:   map[string]string{testClientID: testClientSecret},
		AccessTokenTTL: time.Hour,
		Now:            env.clock.Now,
	})
	env.snyk.AddOrg(testOrgID, testGroupID, "Payments")
	env.snyk.AddOrg(testOtherOrgID, testGroupID, "Platform")
	env.snykURL = env.serve(env.snyk)

	env.github = scmtest.NewGitHub(false)
	env.github.AddToken(ghGood, scmtest.GitHubToken{Login: "octocat", Scopes: []string{"admin:repo_hook", "read:org", "repo"}})
	env.githubURL = env.serve(env.github)

	env.ghe = scmtest.NewGitHub(true)
	env.ghe.AddToken(gheGood, scmtest.GitHubToken{Login: "ghe-bot", Scopes: []string{"admin:org", "admin:repo_hook", "repo"}})
	env.gheURL = env.serve(env.ghe)

	env.gitlab = scmtest.NewGitLab(scmtest.GitLabOptions{Now: env.clock.Now})
	env.gitlab.AddToken(glGood, scmtest.GitLabToken{Username: "gl-bot", Scopes: []string{"api"}, ExpiresAt: "2027-06-30", AccessLevel: scmtest.GitLabMaintainer})
	env.gitlabURL = env.serve(env.gitlab)

	env.azure = scmtest.NewAzure("contoso")
	env.azure.AddToken(azGood, scmtest.AzureToken{DisplayName: "Snyk Broker", CodeRead: true})
	env.azureURL = env.serve(env.azure)

	env.bitbucket = scmtest.NewBitbucket()
	env.bitbucket.AddUser(scmtest.BitbucketUser{Username: bbUser, Password: bbPassword, Tokens: []string{bbToken}, RepoAdmin: true})
	env.bbURL = env.serve(env.bitbucket)

	retry := httpx.RetryPolicy{
		MaxAttempts:    4,
		BaseDelay:      100 * time.Millisecond,
		RateLimitDelay: 2 * time.Second,
		MaxDelay:       10 * time.Second,
		MaxTotalWait:   20 * time.Second,
		Sleep:          env.sleeps.Sleep,
		// Retry-After dates are read against the same clock as the rest.
		Now: env.clock.Now,
	}
	env.retry = retry
	env.events = &eventRecorder{}
	env.storage = &logical.InmemStorage{}
	env.view = &faultyStorage{InmemStorage: env.storage}
	env.b = env.newBackend()
	return env
}

// newBackend builds an engine on the environment's storage, as Vault does
// when it (re)starts the plugin. Its rotation queue is driven by tick().
func (env *testEnv) newBackend() *backend {
	env.t.Helper()
	retry := env.retry
	b := newBackend(Options{Now: env.clock.Now, Retry: &retry, NoTicker: true})
	conf := logical.TestBackendConfig()
	conf.StorageView = env.view
	conf.Logger = hclog.New(&hclog.LoggerOptions{Level: hclog.Trace, Output: env.logs})
	conf.EventsSender = env.events
	if err := b.Setup(context.Background(), conf); err != nil {
		env.t.Fatal(err)
	}
	return b
}

// restart replaces the engine with a new one on the same storage (a plugin
// crash and restart) and runs its initialization.
func (env *testEnv) restart() {
	env.t.Helper()
	env.b.Cleanup(context.Background())
	env.b = env.newBackend()
	env.initialize()
}

func (env *testEnv) initialize() {
	env.t.Helper()
	if err := env.b.Initialize(context.Background(), &logical.InitializationRequest{Storage: env.view}); err != nil {
		env.t.Fatal(err)
	}
}

// tick runs one pass of the rotation queue at the fake clock's time.
func (env *testEnv) tick() {
	env.b.rotation.tick(context.Background())
	env.b.rotation.waitSCMChecks()
}

// advance moves the clock in steps, ticking after each, as the real ticker would.
func (env *testEnv) advance(total, step time.Duration) {
	for elapsed := time.Duration(0); elapsed < total; elapsed += step {
		env.clock.Advance(step)
		env.tick()
	}
}

type eventRecorder struct {
	mu     sync.Mutex
	events []string
}

func (r *eventRecorder) SendEvent(_ context.Context, eventType logical.EventType, ev *logical.EventData) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.events = append(r.events, string(eventType)+" "+ev.Metadata.Fields["path"].GetStringValue())
	return nil
}

func (r *eventRecorder) list() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.events...)
}

func (env *testEnv) serve(h http.Handler) string {
	env.t.Helper()
	srv, err := env.ca.StartServer(h)
	if err != nil {
		env.t.Fatal(err)
	}
	env.t.Cleanup(srv.Close)
	return srv.URL
}

// request runs one request through the framework, as Vault would.
func (env *testEnv) request(op logical.Operation, path string, data map[string]interface{}) (*logical.Response, error) {
	env.t.Helper()
	return env.b.HandleRequest(context.Background(), &logical.Request{
		Operation: op,
		Path:      path,
		Data:      data,
		Storage:   env.view,
	})
}

// mustOK runs a request and fails the test on an error or error response.
func (env *testEnv) mustOK(op logical.Operation, path string, data map[string]interface{}) *logical.Response {
	env.t.Helper()
	resp, err := env.request(op, path, data)
	if err != nil {
		env.t.Fatalf("%s %s: error: %v", op, path, err)
	}
	if resp != nil && resp.IsError() {
		env.t.Fatalf("%s %s: error response: %v", op, path, resp.Error())
	}
	return resp
}

// mustFail400 runs a request that must be refused as the caller's fault and
// checks the message names every wanted fragment.
func (env *testEnv) mustFail400(op logical.Operation, path string, data map[string]interface{}, want ...string) string {
	env.t.Helper()
	resp, err := env.request(op, path, data)
	if err != nil {
		env.t.Fatalf("%s %s: want a 400 error response, got error %v", op, path, err)
	}
	if resp == nil || !resp.IsError() {
		env.t.Fatalf("%s %s: want a 400 error response, got %#v", op, path, resp)
	}
	msg := resp.Error().Error()
	for _, w := range want {
		if !strings.Contains(msg, w) {
			env.t.Errorf("%s %s: error %q does not mention %q", op, path, msg, w)
		}
	}
	return msg
}

func (env *testEnv) configure(extra map[string]interface{}) {
	env.t.Helper()
	data := map[string]interface{}{
		"api_token":         testAPIToken,
		"api_url":           env.snykURL,
		"broker_server_url": "https://broker.snyk.io",
		"ca_cert":           string(env.ca.CertPEM),
	}
	for k, v := range extra {
		data[k] = v
	}
	env.mustOK(logical.UpdateOperation, "config", data)
}

// integrationData is a valid create request for each SCM against the fakes.
func (env *testEnv) integrationData(kind string) map[string]interface{} {
	switch kind {
	case "github":
		return map[string]interface{}{"scm_token": ghGood, "scm_api_url": env.githubURL}
	case "github-enterprise":
		return map[string]interface{}{"scm_token": gheGood, "scm_url": env.gheURL}
	case "gitlab":
		return map[string]interface{}{"scm_token": glGood, "scm_url": env.gitlabURL}
	case "azure-repos":
		return map[string]interface{}{"scm_token": azGood, "scm_url": env.azureURL, "azure_org": "contoso"}
	case "bitbucket-server":
		return map[string]interface{}{"scm_username": bbUser, "scm_password": bbPassword, "scm_url": env.bbURL}
	}
	env.t.Fatalf("unknown scm %s", kind)
	return nil
}

// storedKeys lists every storage key, to prove a failed write stored nothing.
func (env *testEnv) storedKeys() []string {
	env.t.Helper()
	keys, err := logical.CollectKeys(context.Background(), env.storage)
	if err != nil {
		env.t.Fatal(err)
	}
	return keys
}

// secrets is everything that must never appear in a log line, an error, a
// config read or lease internal data.
func (env *testEnv) secrets() []string {
	return []string{testAPIToken, testClientSecret, ghGood, gheGood, glGood, azGood, bbToken, bbPassword}
}

func (env *testEnv) assertNoSecretsIn(where, text string, extra ...string) {
	env.t.Helper()
	for _, s := range append(env.secrets(), extra...) {
		if s != "" && strings.Contains(text, s) {
			env.t.Errorf("%s contains a secret (%s…)", where, s[:6])
		}
	}
}

func scmtestGitHubToken(login string, scopes ...string) scmtest.GitHubToken {
	return scmtest.GitHubToken{Login: login, Scopes: scopes}
}

var errStorageDown = errors.New("storage unavailable")
