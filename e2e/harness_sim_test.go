package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// simInfo is the part of the simulator's sim.json the tests use.
type simInfo struct {
	PID               int               `json:"pid"`
	CACertFile        string            `json:"ca_cert_file"`
	SnykURL           string            `json:"snyk_url"`
	GitHubURL         string            `json:"github_url"`
	GHEURL            string            `json:"ghe_url"`
	GitLabURL         string            `json:"gitlab_url"`
	AzureURL          string            `json:"azure_url"`
	BitbucketURL      string            `json:"bitbucket_url"`
	AdminURL          string            `json:"admin_url"`
	APIToken          string            `json:"api_token"`
	GroupID           string            `json:"group_id"`
	Orgs              map[string]string `json:"orgs"`
	GitHubToken       string            `json:"github_token"`
	GHEToken          string            `json:"ghe_token"`
	GitLabToken       string            `json:"gitlab_token"`
	AzureToken        string            `json:"azure_token"`
	AzureOrg          string            `json:"azure_org"`
	BitbucketUsername string            `json:"bitbucket_username"`
	BitbucketPassword string            `json:"bitbucket_password"`
	BitbucketToken    string            `json:"bitbucket_token"`

	RotatableClientID     string `json:"rotatable_client_id"`
	RotatableClientSecret string `json:"rotatable_client_secret"`
	ServiceAccountID      string `json:"service_account_id"`
	ServiceAccountOrgID   string `json:"service_account_org_id"`

	// Universal is the demo Universal Broker deployment.
	Universal simUniversal `json:"universal"`
}

type simUniversal struct {
	TenantID     string                   `json:"tenant_id"`
	InstallID    string                   `json:"install_id"`
	InstallOrgID string                   `json:"install_org_id"`
	DeploymentID string                   `json:"deployment_id"`
	ClientID     string                   `json:"client_id"`
	ClientSecret string                   `json:"client_secret"`
	Connections  map[string]string        `json:"connections"`
	Credentials  map[string]simCredential `json:"credentials"`
}

type simCredential struct {
	Type  string `json:"type"`
	Value string `json:"value"`
}

type simIntegration struct {
	OrgID            string `json:"org_id"`
	Type             string `json:"type"`
	ID               string `json:"id"`
	Brokered         bool   `json:"brokered"`
	CurrentToken     string `json:"current_token"`
	ProvisionalToken string `json:"provisional_token"`
	Provisions       int    `json:"provisions"`
	Switches         int    `json:"switches"`
}

type simulator struct {
	dir  string
	proc *proc
	info simInfo
	http *http.Client
}

func startSim(dir string) (*simulator, error) {
	simDir := filepath.Join(dir, "sim")
	if err := os.MkdirAll(simDir, 0o755); err != nil {
		return nil, err
	}
	p, err := startProc("snyk-sim", filepath.Join(dir, "sim.log"), baseEnv(dir), dir, syscall.SIGKILL, env.simBin, "-dir", simDir)
	if err != nil {
		return nil, err
	}
	s := &simulator{dir: dir, proc: p, http: &http.Client{Timeout: 10 * time.Second}}
	jsonPath := filepath.Join(simDir, "sim.json")
	err = waitFor(30*time.Second, 50*time.Millisecond, func() (bool, error) {
		if p.exited() {
			return false, fmt.Errorf("snyk-sim exited: %w", p.waitErr)
		}
		raw, err := os.ReadFile(jsonPath)
		if err != nil {
			return false, err
		}
		return true, json.Unmarshal(raw, &s.info)
	})
	if err == nil && (s.info.AdminURL == "" || s.info.SnykURL == "" || s.info.CACertFile == "") {
		err = fmt.Errorf("incomplete sim.json: %+v", s.info)
	}
	if err != nil {
		p.stop(5 * time.Second)
		return nil, fmt.Errorf("simulator did not come up: %w\n%s", err, tailFile(p.logPath, 40))
	}
	return s, nil
}

func (s *simulator) adminDo(method, path string, in, out interface{}) error {
	var body io.Reader
	if in != nil {
		raw, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(raw)
	}
	req, err := http.NewRequest(method, s.info.AdminURL+path, body)
	if err != nil {
		return err
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := s.http.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("simulator %s %s: %d %s", method, path, resp.StatusCode, raw)
	}
	if out != nil {
		return json.Unmarshal(raw, out)
	}
	return nil
}

func (s *simulator) state(t *testing.T) []simIntegration {
	t.Helper()
	var out []simIntegration
	if err := s.adminDo("GET", "/state", nil, &out); err != nil {
		t.Fatalf("simulator state: %v", err)
	}
	return out
}

// integration returns the simulator's view of an org's integration of a type.
func (s *simulator) integration(t *testing.T, orgID, typ string) simIntegration {
	t.Helper()
	for _, in := range s.state(t) {
		if in.OrgID == orgID && in.Type == typ {
			return in
		}
	}
	t.Fatalf("the simulator has no %s integration in org %s", typ, orgID)
	return simIntegration{}
}

func (s *simulator) calls(t *testing.T, target string) map[string]int {
	t.Helper()
	out := map[string]int{}
	if err := s.adminDo("GET", "/calls?target="+url.QueryEscape(target), nil, &out); err != nil {
		t.Fatalf("simulator calls: %v", err)
	}
	return out
}

// seen returns the credentials an SCM fake has been presented.
func (s *simulator) seen(t *testing.T, target string) []string {
	t.Helper()
	var out []string
	if err := s.adminDo("GET", "/seen?target="+url.QueryEscape(target), nil, &out); err != nil {
		t.Fatalf("simulator seen: %v", err)
	}
	return out
}

func (s *simulator) tokenStatus(t *testing.T, token string) (current, provisional bool) {
	t.Helper()
	var out map[string]bool
	if err := s.adminDo("GET", "/token-status?token="+url.QueryEscape(token), nil, &out); err != nil {
		t.Fatalf("simulator token-status: %v", err)
	}
	return out["current"], out["provisional"]
}

// addOrg creates an org outside any Snyk group (so it has a provisional-
// token lane of its own) and makes it visible in GET /state.
func (s *simulator) addOrg(t *testing.T, orgID, name string) {
	t.Helper()
	// The admin API decodes this body into an untagged struct, so the Go
	// field names are what it matches; the documented snake_case keys are
	// sent too in case it gains tags.
	err := s.adminDo("POST", "/orgs", map[string]string{
		"OrgID": orgID, "GroupID": "", "Name": name,
		"org_id": orgID, "group_id": "", "name": name,
	}, nil)
	if err != nil {
		t.Fatalf("simulator add org: %v", err)
	}
}

// addIntegration creates (or returns) an integration at the fake Snyk; an
// org that does not exist yet is created outside any group.
func (s *simulator) addIntegration(t *testing.T, orgID, typ string, brokered bool) (id, token string) {
	t.Helper()
	var out struct {
		ID          string `json:"id"`
		BrokerToken string `json:"broker_token"`
	}
	err := s.adminDo("POST", "/integrations", map[string]interface{}{"org_id": orgID, "type": typ, "brokered": brokered}, &out)
	if err != nil {
		t.Fatalf("simulator add integration: %v", err)
	}
	return out.ID, out.BrokerToken
}

// ---------------------------------------------------------------------------
// Vault server

// setProfile makes the simulator answer Snyk's undocumented refusals as the
// named profile does (snyk-sim -list-profiles), and restores the default
// when the test ends.
func (s *simulator) setProfile(t *testing.T, name string) {
	t.Helper()
	if err := s.adminDo("POST", "/profile", map[string]string{"Name": name}, nil); err != nil {
		t.Fatalf("simulator profile %s: %v", name, err)
	}
	t.Cleanup(func() { _ = s.adminDo("POST", "/profile", map[string]string{"Name": "default"}, nil) })
}
