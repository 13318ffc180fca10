package backend

import (
	"context"
	"errors"
	"net/http"
	"sort"
	"strings"
	"time"

	"github.com/hashicorp/vault/sdk/framework"
	"github.com/hashicorp/vault/sdk/logical"
)

// On Vault Community Edition nobody can subscribe to the engine's events, so
// snyk/status and snyk/metrics are how an operator finds a blocked group, a
// failing switch or an expiring SCM token without reading every integration.

const (
	defaultStatusLimit = 100
	maxStatusLimit     = 1000
	// overdueAfter is how far past its next action an integration must be
	// before it is reported overdue (the loop works in ticks of a second).
	overdueAfter = 5 * time.Minute
)

func pathStatus(b *backend) []*framework.Path {
	return []*framework.Path{
		{
			Pattern: "status$",
			DisplayAttrs: &framework.DisplayAttributes{
				OperationPrefix: operationPrefix,
				OperationSuffix: "status",
			},
			Fields: map[string]*framework.FieldSchema{
				"after": {Type: framework.TypeString, Description: "List the integrations needing attention after this one (<name>/<scm>, the next_after of the previous page)."},
				"limit": {Type: framework.TypeInt, Default: defaultStatusLimit, Description: "At most this many integrations needing attention (1 to 1000)."},
			},
			Operations: map[logical.Operation]framework.OperationHandler{
				logical.ReadOperation: &framework.PathOperation{
					Callback: b.pathStatusRead,
					Summary:  "Counts per rotation_state and scm_status, and the integrations needing attention.",
					Responses: map[int][]framework.Response{http.StatusOK: {{
						Description: "OK",
						Fields: map[string]*framework.FieldSchema{
							"integrations":      {Type: framework.TypeInt},
							"rotation_state":    {Type: framework.TypeMap},
							"scm_status":        {Type: framework.TypeMap},
							"needing_attention": {Type: framework.TypeInt},
							"attention":         {Type: framework.TypeSlice},
							"next_after":        {Type: framework.TypeString},
						},
					}}},
				},
			},
			HelpSynopsis:    "What needs an operator's attention across the mount.",
			HelpDescription: pathStatusHelpDesc,
		},
		{
			Pattern: "metrics$",
			DisplayAttrs: &framework.DisplayAttributes{
				OperationPrefix: operationPrefix,
				OperationSuffix: "metrics",
			},
			Operations: map[logical.Operation]framework.OperationHandler{
				logical.ReadOperation: &framework.PathOperation{
					Callback: b.pathMetricsRead,
					Summary:  "The engine's metrics in Prometheus's text format (a raw HTTP body).",
				},
			},
			HelpSynopsis:    "Prometheus metrics of the engine.",
			HelpDescription: pathMetricsHelpDesc,
		},
	}
}

// attentionReasons says why an integration needs an operator, if it does.
func (e *integrationEntry) attentionReasons(cfg *snykConfig, now time.Time) []string {
	var reasons []string
	if strings.Contains(e.LastRotationError, "BLOCKED") {
		reasons = append(reasons, "blocked")
	}
	if e.RotationState == stateSwitchPending {
		reasons = append(reasons, "switch_pending")
	}
	if at, ok := e.nextAction(e.policy(cfg)); ok && now.Sub(at) > overdueAfter {
		reasons = append(reasons, "overdue")
	}
	if e.LastRotationError != "" && !strings.Contains(e.LastRotationError, ": waiting for ") && !strings.Contains(e.LastRotationError, "BLOCKED") {
		reasons = append(reasons, "rotation_error")
	}
	if e.SCMRotationError != "" {
		reasons = append(reasons, "scm_rotation_error")
	}
	switch e.SCMStatus {
	case scmStatusExpiring:
		reasons = append(reasons, "scm_expiring")
	case scmStatusInvalid:
		reasons = append(reasons, "scm_invalid")
	}
	return reasons
}

// attentionReasons says why a Universal Broker deployment needs an
// operator, if it does.
func (e *universalEntry) attentionReasons(cfg *snykConfig, now time.Time) []string {
	var reasons []string
	blocked := strings.Contains(e.LastRotationError, "BLOCKED")
	if blocked {
		reasons = append(reasons, "blocked")
	}
	if at, ok := e.nextAction(e.policy(cfg)); ok && now.Sub(at) > overdueAfter {
		reasons = append(reasons, "overdue")
	}
	if e.LastRotationError != "" && !blocked {
		reasons = append(reasons, "rotation_error")
	}
	if len(e.MissingCredentials) > 0 {
		reasons = append(reasons, "missing_credentials")
	}
	// The last check records all missing references in one problem line.
	others := len(e.Problems)
	if len(e.MissingCredentials) > 0 {
		others--
	}
	if others > 0 {
		reasons = append(reasons, "check_problems")
	}
	return reasons
}

// universalStatus is the status of every Universal Broker deployment:
// how many there are, and a row for each needing attention.
func (b *backend) universalStatus(ctx context.Context, s logical.Storage, cfg *snykConfig, now time.Time) (total int, rows []map[string]interface{}, err error) {
	names, err := listUniversalNames(ctx, s)
	if err != nil {
		return 0, nil, err
	}
	rows = []map[string]interface{}{}
	for _, name := range names {
		e, err := b.currentUniversal(ctx, s, name)
		if err != nil || e == nil {
			if errors.Is(err, errCorruptEntry) {
				rows = append(rows, map[string]interface{}{"deployment": name, "reasons": []string{"unreadable"}, "problems": []string{err.Error()}})
				continue
			}
			if err != nil {
				return 0, nil, err
			}
			continue
		}
		total++
		reasons := e.attentionReasons(cfg, now)
		if len(reasons) == 0 {
			continue
		}
		row := map[string]interface{}{
			"deployment":          name,
			"reasons":             reasons,
			"rotation_state":      e.RotationState,
			"last_rotation_error": e.LastRotationError,
			"problems":            nonNil(e.Problems),
		}
		if at, ok := e.nextAction(e.policy(cfg)); ok {
			row["next_action_at"] = at.UTC().Format(time.RFC3339)
		}
		rows = append(rows, row)
	}
	return total, rows, nil
}

// statusEntries lists every integration as the engine knows it.
func (b *backend) statusEntries(ctx context.Context, s logical.Storage) ([]*integrationEntry, error) {
	entries, err := listIntegrations(ctx, s)
	if err != nil {
		return nil, err
	}
	for i, e := range entries {
		if kept := b.rotation.unsaved.get(queueKey(e.Name, e.SCM)); kept != nil {
			entries[i] = kept
		}
	}
	sort.Slice(entries, func(i, j int) bool {
		return queueKey(entries[i].Name, entries[i].SCM) < queueKey(entries[j].Name, entries[j].SCM)
	})
	return entries, nil
}

func (b *backend) pathStatusRead(ctx context.Context, req *logical.Request, d *framework.FieldData) (*logical.Response, error) {
	limit := d.Get("limit").(int)
	if limit < 1 || limit > maxStatusLimit {
		return logical.ErrorResponse("limit must be between 1 and 1000"), nil
	}
	after := strings.TrimSpace(d.Get("after").(string))
	cfg, err := b.configOrDefaults(ctx, req.Storage)
	if err != nil {
		return nil, err
	}
	entries, err := b.statusEntries(ctx, req.Storage)
	if err != nil {
		return nil, err
	}
	now := b.now().UTC()
	states := map[string]int{stateActive: 0, stateProvisioned: 0, stateSwitchPending: 0}
	statuses := map[string]int{scmStatusOK: 0, scmStatusExpiring: 0, scmStatusInvalid: 0, scmStatusUnknown: 0}
	rows := []map[string]interface{}{}
	needing := 0
	nextAfter := ""
	for _, e := range entries {
		states[e.RotationState]++
		status := e.SCMStatus
		if status == "" {
			status = scmStatusUnknown
		}
		statuses[status]++
		reasons := e.attentionReasons(cfg, now)
		if len(reasons) == 0 {
			continue
		}
		needing++
		key := queueKey(e.Name, e.SCM)
		if key <= after {
			continue
		}
		if len(rows) == limit {
			if nextAfter == "" {
				nextAfter = rows[len(rows)-1]["integration"].(string)
			}
			continue
		}
		row := map[string]interface{}{
			"integration":         key,
			"reasons":             reasons,
			"rotation_state":      e.RotationState,
			"scm_status":          status,
			"last_rotation_error": e.LastRotationError,
			"scm_problems":        nonNil(e.SCMProblems),
		}
		if at, ok := e.nextAction(e.policy(cfg)); ok {
			row["next_action_at"] = at.UTC().Format(time.RFC3339)
		}
		rows = append(rows, row)
	}
	data := map[string]interface{}{
		"integrations":      len(entries),
		"rotation_state":    states,
		"scm_status":        statuses,
		"needing_attention": needing,
		"attention":         rows,
	}
	if nextAfter != "" {
		data["next_after"] = nextAfter
	}
	deployments, universalRows, err := b.universalStatus(ctx, req.Storage, cfg, now)
	if err != nil {
		return nil, err
	}
	data["universal_deployments"] = deployments
	data["universal_attention"] = universalRows
	return &logical.Response{Data: data}, nil
}

func (b *backend) pathMetricsRead(ctx context.Context, req *logical.Request, _ *framework.FieldData) (*logical.Response, error) {
	cfg, err := b.configOrDefaults(ctx, req.Storage)
	if err != nil {
		return nil, err
	}
	entries, err := b.statusEntries(ctx, req.Storage)
	if err != nil {
		return nil, err
	}
	now := b.now().UTC()
	_, universalRows, err := b.universalStatus(ctx, req.Storage, cfg, now)
	if err != nil {
		return nil, err
	}
	body, err := b.metrics.exposition(entries, len(universalRows), cfg, now)
	if err != nil {
		return nil, err
	}
	// A raw body, as the PKI engine serves its CRL: Prometheus scrapes it
	// as is, with a Vault token allowed to read this one path.
	return &logical.Response{Data: map[string]interface{}{
		logical.HTTPContentType: "text/plain; version=0.0.4; charset=utf-8",
		logical.HTTPRawBody:     body,
		logical.HTTPStatusCode:  http.StatusOK,
	}}, nil
}

const pathStatusHelpDesc = `
Reading snyk/status returns, across the mount:

  integrations        how many there are
  rotation_state      counts of active, provisioned, switch_pending
  scm_status          counts of ok, expiring, invalid, unknown
  needing_attention   how many need an operator
  attention           one row per such integration, sorted by <name>/<scm>:
                      integration, reasons (blocked, switch_pending, overdue,
                      rotation_error, scm_expiring, scm_invalid,
                      scm_rotation_error),
                      rotation_state, scm_status, last_rotation_error,
                      scm_problems, next_action_at
  next_after          present when more rows follow: pass it as after=
  universal_deployments  how many Universal Broker deployments there are
  universal_attention    one row per deployment needing an operator:
                      deployment, reasons (blocked, overdue, rotation_error,
                      missing_credentials, check_problems), rotation_state,
                      last_rotation_error, problems, next_action_at

  vault read snyk/status limit=50
`

const pathMetricsHelpDesc = `
Reading snyk/metrics returns the engine's metrics in Prometheus's text
exposition format as a raw HTTP body: integrations per rotation_state and
scm_status, seconds until each integration's next switch, how late a held
provisional token is, SCM token expiry times, and counters of provisions,
switches, failed steps and upstream answers by status since the plugin
started. Scrape it with a Vault token whose policy reads only this path:

  curl -H "X-Vault-Token: $TOKEN" $VAULT_ADDR/v1/snyk/metrics
`
