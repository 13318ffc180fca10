package snyk_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/snyk-vault/vault-plugin-secrets-snyk/backend/fault"
	"github.com/snyk-vault/vault-plugin-secrets-snyk/backend/snyk/snyktest"
)

// TestNoSecretInErrorsOrLogs drives every call through success and failure
// with both credential kinds, and checks that no API token, client secret,
// access token or Broker token reaches an error string or the Trace log.
func TestNoSecretInErrorsOrLogs(t *testing.T) {
	for _, oauth := range []bool{false, true} {
		name := "api token"
		if oauth {
			name = "oauth"
		}
		t.Run(name, func(t *testing.T) {
			e := newEnv(t, envOpts{oauth: oauth, timeout: 2 * time.Second})
			ctx := context.Background()
			inj := e.fake.Faults()
			var errs []error
			note := func(err error) { errs = append(errs, err) }

			_, err := e.client.Verify(ctx)
			note(err)
			gl, err := e.client.AddIntegration(ctx, orgA1, "gitlab", true, nil)
			note(err)
			e.secret(gl.BrokerToken)
			gh, err := e.client.AddIntegration(ctx, orgA1, "github", false, map[string]string{"token": "ghp_leakcheck"})
			note(err)
			e.secret("ghp_leakcheck")
			p, err := e.client.ProvisionToken(ctx, orgA1, gl.ID)
			note(err)
			e.secret(p)

			_, err = e.client.ProvisionToken(ctx, orgA1, gl.ID) // conflict
			note(err)
			_, err = e.client.ProvisionToken(ctx, orgA1, gh.ID) // not brokered
			note(err)
			_, err = e.client.IntegrationByType(ctx, orgB1, "bitbucket-server") // 404
			note(err)
			inj.Inject(snyktest.RouteSwitchToken, fault.Fault{Status: 503})
			note(e.client.SwitchToken(ctx, orgA1, gl.ID)) // retries exhausted
			inj.Clear()
			inj.Inject(snyktest.RouteClone, fault.Fault{Delay: 6 * time.Second, Times: 1})
			_, err = e.client.CloneIntegration(ctx, orgA1, gl.ID, orgA2) // timeout
			note(err)
			// An upstream that echoes the credential it was sent.
			own := testAPIToken
			if oauth {
				own = testClientSecret
			}
			inj.Inject(snyktest.RouteUpdateIntegration, fault.Fault{Status: 400, Times: 1,
				Body: `{"message":"bad credential ` + own + `"}`})
			_, err = e.client.EnableBroker(ctx, orgA1, gh.ID, "github")
			note(err)
			if err := e.client.SwitchToken(ctx, orgA1, gl.ID); err != nil {
				t.Fatal(err)
			}
			e.secret(e.fake.CurrentToken(gl.ID))

			failures := 0
			for _, err := range errs {
				if err != nil {
					failures++
					e.noLeak(err)
				}
			}
			if failures != 6 {
				t.Fatalf("expected 6 failures, got %d: %v", failures, errs)
			}
			logs := e.logs.String()
			for _, want := range []string{"method=POST", "path=/v1/org/" + orgA1 + "/integrations", "status=409"} {
				if !strings.Contains(logs, want) {
					t.Errorf("log lacks %q:\n%s", want, logs)
				}
			}
			for _, s := range e.secretList() {
				if strings.Contains(logs, s) {
					t.Errorf("log contains secret %q", s)
				}
			}
			if strings.Contains(strings.ToLower(logs), "authorization") {
				t.Error("log mentions a header")
			}
		})
	}
}
