package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"sort"
	"strconv"
	"sync"
	"time"

	"github.com/snyk-vault/vault-plugin-secrets-snyk/backend/fault"
	"github.com/snyk-vault/vault-plugin-secrets-snyk/backend/scm/scmtest"
	"github.com/snyk-vault/vault-plugin-secrets-snyk/backend/snyk/snyktest"
)

// The demo world. IDs and credentials are fixed so that docs, `make dev` and
// tests can name them; they are fake and only valid against this simulator.
const (
	demoAPIToken = "0d3c9c1e-7a0b-4e55-9f0e-5a1b2c3d4e5f"
	demoClientID = "6f1e2d3c-4b5a-4968-8776-655443322110"
	// A second OAuth client whose service account rotate-root may rotate,
	// so that rotating it never disturbs what uses the first.
	demoRotatableClientID     = "7a2b3c4d-5e6f-4a8b-9c0d-1e2f3a4b5c6d"
	demoRotatableClientSecret = "snyk_cs_rotatable0000000000_v1"
	demoClientSecret          = "snyk_cs_demo_0123456789abcdef_v1"
	demoGroupID               = "8e2c4a61-9b3d-4f7e-a5c8-1d2e3f405162"
	demoPaymentsOrg           = "3f6a9c2e-5b8d-4e1f-9a3c-7b6d5e4f3a21"
	demoPlatformOrg           = "9a1b2c3d-4e5f-4a6b-8c7d-0e1f2a3b4c5d"

	demoGitHubToken  = "ghp_demo1234567890abcdefghijklmnopqrstuv"
	demoGHEToken     = "ghp_demoenterprise1234567890abcdefghijkl"
	demoGitLabToken  = "glpat-demo1234567890abcdef"
	demoAzureToken   = "demoazurepat0123456789abcdefghijklmnopqrstuvwxyz0123"
	demoAzureOrg     = "contoso"
	demoBBUser       = "snyk-broker"
	demoBBPassword   = "demo-bitbucket-password"
	demoBBToken      = "BBDC-demo0123456789abcdefghij"
	demoReadOnlyPAT  = "ghp_demoreadonly1234567890abcdefghijklmn"
	demoFineGrained  = "github_pat_demo_0123456789abcdefghijklmnopqrstuvwxyz"
	demoExpiredToken = "ghp_demoexpired1234567890abcdefghijklmno"
)

// Info is what sim.json holds: every URL and every demo credential.
type Info struct {
	PID          int    `json:"pid"`
	CACertFile   string `json:"ca_cert_file"`
	SnykURL      string `json:"snyk_url"`
	GitHubURL    string `json:"github_url"`
	GHEURL       string `json:"ghe_url"`
	GitLabURL    string `json:"gitlab_url"`
	AzureURL     string `json:"azure_url"`
	BitbucketURL string `json:"bitbucket_url"`
	AdminURL     string `json:"admin_url"`
	// Profile names how the fake answers Snyk's undocumented refusals.
	Profile string `json:"profile"`

	APIToken     string `json:"api_token"`
	ClientID     string `json:"client_id"`
	ClientSecret string `json:"client_secret"`
	// An OAuth client of a service account that rotate-root may rotate.
	RotatableClientID     string            `json:"rotatable_client_id"`
	RotatableClientSecret string            `json:"rotatable_client_secret"`
	ServiceAccountID      string            `json:"service_account_id"`
	ServiceAccountOrgID   string            `json:"service_account_org_id"`
	GroupID               string            `json:"group_id"`
	Orgs                  map[string]string `json:"orgs"`

	GitHubToken         string `json:"github_token"`
	GHEToken            string `json:"ghe_token"`
	GitLabToken         string `json:"gitlab_token"`
	AzureToken          string `json:"azure_token"`
	AzureOrg            string `json:"azure_org"`
	BitbucketUsername   string `json:"bitbucket_username"`
	BitbucketPassword   string `json:"bitbucket_password"`
	BitbucketToken      string `json:"bitbucket_token"`
	GitHubReadOnlyToken string `json:"github_readonly_token"`
	GitHubFineGrained   string `json:"github_fine_grained_token"`
	GitHubExpiredToken  string `json:"github_expired_token"`

	// Universal is the demo Universal Broker deployment (universal.go).
	Universal UniversalInfo `json:"universal"`
}

type world struct {
	mu   sync.Mutex
	info Info

	snyk      *snyktest.Server
	github    *scmtest.GitHub
	ghe       *scmtest.GitHub
	gitlab    *scmtest.GitLab
	azure     *scmtest.Azure
	bitbucket *scmtest.Bitbucket
	// certs switches each TLS server's certificate (tls_modes.go).
	certs  map[string]*certSwitch
	orgIDs []string

	behaviour    snyktest.Behaviour
	behaviourSet bool
}

func newWorld() *world {
	w := &world{
		snyk: snyktest.New(snyktest.Options{
			APITokens:    []string{demoAPIToken},
			OAuthClients: map[string]string{demoClientID: demoClientSecret, demoRotatableClientID: demoRotatableClientSecret},
		}),
		github:    scmtest.NewGitHub(false),
		ghe:       scmtest.NewGitHub(true),
		gitlab:    scmtest.NewGitLab(scmtest.GitLabOptions{}),
		azure:     scmtest.NewAzure(demoAzureOrg),
		bitbucket: scmtest.NewBitbucket(),
		certs:     map[string]*certSwitch{},
	}
	w.addOrg(demoPaymentsOrg, demoGroupID, "Payments")
	w.addOrg(demoPlatformOrg, demoGroupID, "Platform")
	// payments has a GitHub integration that is not brokered yet (the
	// engine enables Broker on it) and a GitLab one that already is (the
	// engine adopts it). platform starts empty.
	w.snyk.AddIntegration(demoPaymentsOrg, "github", false)
	w.snyk.AddIntegration(demoPaymentsOrg, "gitlab", true)

	scopes := []string{"admin:repo_hook", "read:org", "repo"}
	w.github.AddToken(demoGitHubToken, scmtest.GitHubToken{Login: "snyk-broker-bot", Scopes: scopes, ExpiresAt: time.Now().AddDate(0, 6, 0).UTC().Truncate(time.Second)})
	w.github.AddToken(demoReadOnlyPAT, scmtest.GitHubToken{Login: "readonly-bot", Scopes: []string{"read:org", "public_repo"}})
	w.github.AddToken(demoFineGrained, scmtest.GitHubToken{Login: "fine-grained-bot"})
	w.github.AddToken(demoExpiredToken, scmtest.GitHubToken{Login: "expired-bot", Scopes: scopes, ExpiresAt: time.Now().AddDate(0, 0, -1).UTC()})
	w.ghe.AddToken(demoGHEToken, scmtest.GitHubToken{Login: "ghe-broker-bot", Scopes: []string{"admin:org", "admin:repo_hook", "repo"}})
	w.gitlab.AddToken(demoGitLabToken, scmtest.GitLabToken{Username: "gitlab-broker-bot", Scopes: []string{"api"}, ExpiresAt: time.Now().AddDate(0, 6, 0).UTC().Format("2006-01-02"), AccessLevel: scmtest.GitLabMaintainer})
	w.azure.AddToken(demoAzureToken, scmtest.AzureToken{DisplayName: "Snyk Broker", CodeRead: true})
	w.bitbucket.AddUser(scmtest.BitbucketUser{Username: demoBBUser, Password: demoBBPassword, Tokens: []string{demoBBToken}, RepoAdmin: true})

	serviceAccount := w.snyk.AddServiceAccount("org", demoPaymentsOrg, demoRotatableClientID)

	w.info = Info{
		APIToken: demoAPIToken, ClientID: demoClientID, ClientSecret: demoClientSecret, GroupID: demoGroupID,
		RotatableClientID: demoRotatableClientID, RotatableClientSecret: demoRotatableClientSecret,
		ServiceAccountID: serviceAccount, ServiceAccountOrgID: demoPaymentsOrg,
		Orgs:        map[string]string{"payments": demoPaymentsOrg, "platform": demoPlatformOrg},
		GitHubToken: demoGitHubToken, GHEToken: demoGHEToken, GitLabToken: demoGitLabToken,
		AzureToken: demoAzureToken, AzureOrg: demoAzureOrg,
		BitbucketUsername: demoBBUser, BitbucketPassword: demoBBPassword, BitbucketToken: demoBBToken,
		GitHubReadOnlyToken: demoReadOnlyPAT, GitHubFineGrained: demoFineGrained, GitHubExpiredToken: demoExpiredToken,
		Universal: w.seedUniversal(),
	}
	return w
}

func (w *world) addOrg(id, group, name string) {
	w.snyk.AddOrg(id, group, name)
	w.rememberOrg(id)
}

// rememberOrg lists an org the fake creates implicitly (an integration
// added to an unknown org) so that /state shows it.
func (w *world) rememberOrg(id string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, o := range w.orgIDs {
		if o == id {
			return
		}
	}
	w.orgIDs = append(w.orgIDs, id)
}

func (w *world) configure(latency time.Duration, rateLimit int, rateWindow time.Duration, retryAfter bool, profile snyktest.Profile) {
	for _, inj := range w.injectors() {
		inj.SetLatency(latency)
	}
	b := profile.Behaviour
	if rateLimit > 0 {
		b.RateLimitWindow, b.RateLimitPerWindow, b.RateLimitRetryAfter = rateWindow, rateLimit, retryAfter
	}
	w.setBehaviour(profile.Name, b)
}

// setBehaviour switches the fake Snyk's answers, keeping the rate limit.
func (w *world) setBehaviour(profile string, b snyktest.Behaviour) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.behaviourSet {
		b.RateLimitWindow, b.RateLimitPerWindow, b.RateLimitRetryAfter = w.behaviour.RateLimitWindow, w.behaviour.RateLimitPerWindow, w.behaviour.RateLimitRetryAfter
	}
	w.behaviour, w.behaviourSet = b, true
	w.info.Profile = profile
	w.snyk.SetBehaviour(b)
}

func (w *world) injectors() map[string]*fault.Injector {
	return map[string]*fault.Injector{
		"snyk": w.snyk.Faults(), "github": w.github.Faults(), "ghe": w.ghe.Faults(),
		"gitlab": w.gitlab.Faults(), "azure": w.azure.Faults(), "bitbucket": w.bitbucket.Faults(),
	}
}

func (w *world) seen() map[string]func() []string {
	return map[string]func() []string{
		"github": w.github.SeenTokens, "ghe": w.ghe.SeenTokens, "gitlab": w.gitlab.SeenTokens,
		"azure": w.azure.SeenTokens, "bitbucket": w.bitbucket.SeenTokens,
	}
}

// integrationState is one integration as Snyk sees it, for tests.
type integrationState struct {
	OrgID            string `json:"org_id"`
	Type             string `json:"type"`
	ID               string `json:"id"`
	Brokered         bool   `json:"brokered"`
	CurrentToken     string `json:"current_token"`
	ProvisionalToken string `json:"provisional_token"`
	// Successful provision-token and switch-token calls made for this
	// integration.
	Provisions int `json:"provisions"`
	Switches   int `json:"switches"`
}

func (w *world) state() []integrationState {
	w.mu.Lock()
	orgs := append([]string(nil), w.orgIDs...)
	w.mu.Unlock()
	var out []integrationState
	for _, org := range orgs {
		ids := w.snyk.IntegrationIDs(org)
		types := make([]string, 0, len(ids))
		for t := range ids {
			types = append(types, t)
		}
		sort.Strings(types)
		for _, t := range types {
			id := ids[t]
			provisions, switches := w.snyk.CallsBy(id)
			out = append(out, integrationState{
				Provisions: provisions, Switches: switches,
				OrgID: org, Type: t, ID: id, Brokered: w.snyk.Brokered(id),
				CurrentToken: w.snyk.CurrentToken(id), ProvisionalToken: w.snyk.ProvisionalToken(id),
			})
		}
	}
	return out
}

// secrets is every credential of the world: what the fakes issued or
// accepted, the demo credentials included, de-duplicated.
func (w *world) secrets() []string {
	all := w.snyk.Secrets()
	for _, more := range [][]string{w.github.Secrets(), w.ghe.Secrets(), w.gitlab.Secrets(), w.azure.Secrets(), w.bitbucket.Secrets()} {
		all = append(all, more...)
	}
	seen := map[string]bool{}
	out := []string{}
	for _, v := range all {
		if v != "" && !seen[v] {
			seen[v] = true
			out = append(out, v)
		}
	}
	return out
}

// adminHandler is the simulator's control surface (plain HTTP, loopback).
//
//	GET  /info                      sim.json
//	GET  /state                     integrations with current/provisional tokens
//	GET  /calls?target=snyk         per-route call counters
//	GET  /seen?target=github        credentials the fake SCM has seen
//	GET  /token-status?token=T      {"current":bool,"provisional":bool}: how Snyk routes T
//	GET  /secrets                   every credential the fakes issued or accepted, revoked ones included
//	POST /orgs                      {"org_id","group_id","name"}
//	POST /integrations              {"org_id","type","brokered"} -> {"id","broker_token"}
//	POST /faults                    {"target","route","status","retry_after","times","delay_ms","after_handler","body","content_type","reset"}
//	GET  /tls?target=snyk           {"mode","handshakes"}
//	POST /tls                       {"target","mode"}: present a valid, expired or wrong-host certificate
//	POST /faults/clear              {"target"} ("" = all)
//	POST /latency                   {"target","ms"}
//	POST /profile                   {"name"}: answer the undocumented refusals as that profile does
//	POST /scm-tokens                {"target":"github"|"gitlab","token","scopes","expires_at"}: a new SCM token
//	POST /scm-tokens/revoke         {"target","token"}: revoke it at the SCM
//	GET  /service-accounts?scope=org|group&owner=ID  the IDs of an owner's service accounts
//	     /universal/...             Universal Broker deployments and install secrets (universal.go)
func (w *world) adminHandler() http.Handler {
	mux := http.NewServeMux()
	w.mountUniversal(mux)
	mux.HandleFunc("GET /tls", func(rw http.ResponseWriter, r *http.Request) {
		cs, ok := w.certs[r.URL.Query().Get("target")]
		if !ok {
			http.Error(rw, "unknown target", http.StatusBadRequest)
			return
		}
		mode, handshakes := cs.state()
		writeJSON(rw, http.StatusOK, map[string]any{"mode": mode, "handshakes": handshakes})
	})
	mux.HandleFunc("POST /tls", func(rw http.ResponseWriter, r *http.Request) {
		var in struct{ Target, Mode string }
		if !decode(rw, r, &in) {
			return
		}
		cs, ok := w.certs[in.Target]
		if !ok {
			http.Error(rw, "unknown target", http.StatusBadRequest)
			return
		}
		if err := cs.set(in.Mode); err != nil {
			http.Error(rw, err.Error(), http.StatusBadRequest)
			return
		}
		rw.WriteHeader(http.StatusNoContent)
	})
	mux.HandleFunc("GET /secrets", func(rw http.ResponseWriter, _ *http.Request) {
		writeJSON(rw, http.StatusOK, w.secrets())
	})
	mux.HandleFunc("GET /info", func(rw http.ResponseWriter, _ *http.Request) {
		w.mu.Lock()
		info := w.info
		w.mu.Unlock()
		writeJSON(rw, http.StatusOK, info)
	})
	mux.HandleFunc("GET /state", func(rw http.ResponseWriter, _ *http.Request) {
		writeJSON(rw, http.StatusOK, w.state())
	})
	mux.HandleFunc("GET /calls", func(rw http.ResponseWriter, r *http.Request) {
		inj, ok := w.injectors()[r.URL.Query().Get("target")]
		if !ok {
			http.Error(rw, "unknown target", http.StatusBadRequest)
			return
		}
		writeJSON(rw, http.StatusOK, inj.CallCounts())
	})
	mux.HandleFunc("GET /seen", func(rw http.ResponseWriter, r *http.Request) {
		f, ok := w.seen()[r.URL.Query().Get("target")]
		if !ok {
			http.Error(rw, "unknown target", http.StatusBadRequest)
			return
		}
		writeJSON(rw, http.StatusOK, nonNil(f()))
	})
	mux.HandleFunc("GET /token-status", func(rw http.ResponseWriter, r *http.Request) {
		tok := r.URL.Query().Get("token")
		writeJSON(rw, http.StatusOK, map[string]bool{
			"current":     w.snyk.TokenIsCurrent(tok),
			"provisional": w.snyk.TokenIsProvisional(tok),
		})
	})
	mux.HandleFunc("POST /orgs", func(rw http.ResponseWriter, r *http.Request) {
		var in struct {
			OrgID   string `json:"org_id"`
			GroupID string `json:"group_id"`
			Name    string `json:"name"`
		}
		if !decode(rw, r, &in) {
			return
		}
		w.addOrg(in.OrgID, in.GroupID, in.Name)
		rw.WriteHeader(http.StatusNoContent)
	})
	mux.HandleFunc("POST /integrations", func(rw http.ResponseWriter, r *http.Request) {
		var in struct {
			OrgID    string `json:"org_id"`
			Type     string `json:"type"`
			Brokered bool   `json:"brokered"`
		}
		if !decode(rw, r, &in) {
			return
		}
		w.rememberOrg(in.OrgID)
		id, tok := w.snyk.AddIntegration(in.OrgID, in.Type, in.Brokered)
		writeJSON(rw, http.StatusOK, map[string]string{"id": id, "broker_token": tok})
	})
	mux.HandleFunc("POST /faults", func(rw http.ResponseWriter, r *http.Request) {
		var in struct {
			Target       string `json:"target"`
			Route        string `json:"route"`
			Status       int    `json:"status"`
			RetryAfter   string `json:"retry_after"`
			Times        int    `json:"times"`
			DelayMS      int    `json:"delay_ms"`
			Body         string `json:"body"`
			ContentType  string `json:"content_type"`
			Reset        bool   `json:"reset"`
			AfterHandler bool   `json:"after_handler"`
		}
		if !decode(rw, r, &in) {
			return
		}
		inj, ok := w.injectors()[in.Target]
		if !ok {
			http.Error(rw, "unknown target", http.StatusBadRequest)
			return
		}
		inj.Inject(in.Route, fault.Fault{Status: in.Status, RetryAfter: in.RetryAfter, Times: in.Times,
			Delay: time.Duration(in.DelayMS) * time.Millisecond, AfterHandler: in.AfterHandler,
			Body: in.Body, ContentType: in.ContentType, Reset: in.Reset})
		rw.WriteHeader(http.StatusNoContent)
	})
	mux.HandleFunc("POST /faults/clear", func(rw http.ResponseWriter, r *http.Request) {
		var in struct{ Target string }
		if !decode(rw, r, &in) {
			return
		}
		for name, inj := range w.injectors() {
			if in.Target == "" || in.Target == name {
				inj.Clear()
			}
		}
		rw.WriteHeader(http.StatusNoContent)
	})
	mux.HandleFunc("GET /service-accounts", func(rw http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		writeJSON(rw, http.StatusOK, nonNil(w.snyk.ServiceAccounts(q.Get("scope"), q.Get("owner"))))
	})
	mux.HandleFunc("POST /scm-tokens", func(rw http.ResponseWriter, r *http.Request) {
		var in struct {
			Target    string   `json:"target"`
			Token     string   `json:"token"`
			Scopes    []string `json:"scopes"`
			ExpiresAt string   `json:"expires_at"` // GitLab: YYYY-MM-DD
		}
		if !decode(rw, r, &in) {
			return
		}
		switch in.Target {
		case "github":
			w.github.AddToken(in.Token, scmtest.GitHubToken{Login: "sim-user", Scopes: in.Scopes})
		case "gitlab":
			w.gitlab.AddToken(in.Token, scmtest.GitLabToken{Username: "sim-user", Scopes: in.Scopes, ExpiresAt: in.ExpiresAt, AccessLevel: scmtest.GitLabMaintainer})
		default:
			http.Error(rw, "target must be github or gitlab", http.StatusBadRequest)
			return
		}
		rw.WriteHeader(http.StatusNoContent)
	})
	mux.HandleFunc("POST /scm-tokens/revoke", func(rw http.ResponseWriter, r *http.Request) {
		var in struct {
			Target string `json:"target"`
			Token  string `json:"token"`
		}
		if !decode(rw, r, &in) {
			return
		}
		switch in.Target {
		case "github":
			w.github.RevokeToken(in.Token)
		case "gitlab":
			w.gitlab.RevokeToken(in.Token)
		default:
			http.Error(rw, "target must be github or gitlab", http.StatusBadRequest)
			return
		}
		rw.WriteHeader(http.StatusNoContent)
	})
	mux.HandleFunc("POST /profile", func(rw http.ResponseWriter, r *http.Request) {
		var in struct{ Name string }
		if !decode(rw, r, &in) {
			return
		}
		p, ok := snyktest.ProfileNamed(in.Name)
		if !ok {
			http.Error(rw, "unknown profile (snyk-sim -list-profiles lists them)", http.StatusBadRequest)
			return
		}
		w.setBehaviour(p.Name, p.Behaviour)
		rw.WriteHeader(http.StatusNoContent)
	})
	mux.HandleFunc("POST /latency", func(rw http.ResponseWriter, r *http.Request) {
		var in struct {
			Target string
			MS     int
		}
		if !decode(rw, r, &in) {
			return
		}
		inj, ok := w.injectors()[in.Target]
		if !ok {
			http.Error(rw, "unknown target", http.StatusBadRequest)
			return
		}
		inj.SetLatency(time.Duration(in.MS) * time.Millisecond)
		rw.WriteHeader(http.StatusNoContent)
	})
	return mux
}

func decode(rw http.ResponseWriter, r *http.Request, v interface{}) bool {
	if r.ContentLength == 0 {
		return true
	}
	if err := json.NewDecoder(http.MaxBytesReader(rw, r.Body, 1<<20)).Decode(v); err != nil {
		http.Error(rw, "bad JSON: "+strconv.Quote(err.Error()), http.StatusBadRequest)
		return false
	}
	return true
}

func writeJSON(rw http.ResponseWriter, status int, v interface{}) {
	rw.Header().Set("Content-Type", "application/json")
	rw.WriteHeader(status)
	if err := json.NewEncoder(rw).Encode(v); err != nil {
		fmt.Println("admin: encode:", err)
	}
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}
