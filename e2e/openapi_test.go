package e2e

import (
	"encoding/json"
	"io"
	"net/http"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"
)

type openAPIDoc struct {
	Paths      map[string]map[string]json.RawMessage `json:"paths"`
	Components struct {
		Schemas map[string]struct {
			Properties map[string]json.RawMessage `json:"properties"`
		} `json:"schemas"`
	} `json:"components"`
}

type openAPIOperation struct {
	OperationID string `json:"operationId"`
	RequestBody *struct {
		Content map[string]struct {
			Schema struct {
				Ref string `json:"$ref"`
			} `json:"schema"`
		} `json:"content"`
	} `json:"requestBody"`
}

type openAPIParam struct {
	Name string `json:"name"`
	In   string `json:"in"`
}

// fetchOpenAPI GETs sys/internal/specs/openapi as root.
func fetchOpenAPI(t *testing.T, s *stack) openAPIDoc {
	t.Helper()
	req, err := http.NewRequest("GET", s.vault.addr+"/v1/sys/internal/specs/openapi", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("X-Vault-Token", s.vault.rootToken)
	resp, err := (&http.Client{Timeout: 30 * time.Second}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		t.Fatalf("GET sys/internal/specs/openapi: %d %s", resp.StatusCode, raw)
	}
	var doc openAPIDoc
	if err := json.Unmarshal(raw, &doc); err != nil {
		t.Fatalf("decoding the OpenAPI document: %v", err)
	}
	return doc
}

var httpMethods = map[string]bool{"get": true, "post": true, "put": true, "delete": true, "patch": true, "head": true, "options": true}

// TestOpenAPIAndPathHelp checks the engine's paths in Vault's OpenAPI
// document (operationIds prefixed snyk-) and that `vault path-help` prints,
// for each path, the same synopsis and every parameter the document lists.
func TestOpenAPIAndPathHelp(t *testing.T) {
	s := sharedStack(t)
	doc := fetchOpenAPI(t, s)

	want := map[string][]string{
		"/snyk/config":                     {"get", "post", "delete"},
		"/snyk/integrations/{name}/{scm}":  {"get", "post", "delete"},
		"/snyk/broker/{name}/{scm}":        {"get"},
		"/snyk/broker/{name}/{scm}/rotate": {"post"},
		"/snyk/scm/validate":               {"post"},
		"/snyk/status":                     {"get"},
		"/snyk/metrics":                    {"get"},
	}
	seenIDs := map[string]string{}
	var enginePaths []string
	for p, item := range doc.Paths {
		if !strings.HasPrefix(p, "/"+mountPath+"/") {
			continue
		}
		enginePaths = append(enginePaths, p)
		for method, raw := range item {
			if !httpMethods[method] {
				continue
			}
			var op openAPIOperation
			if err := json.Unmarshal(raw, &op); err != nil {
				t.Fatalf("%s %s: %v", method, p, err)
			}
			if !strings.HasPrefix(op.OperationID, "snyk-") {
				t.Errorf("%s %s: operationId %q does not start with snyk-", method, p, op.OperationID)
			}
			if other, dup := seenIDs[op.OperationID]; dup {
				t.Errorf("operationId %q is used by both %s and %s %s", op.OperationID, other, method, p)
			}
			seenIDs[op.OperationID] = method + " " + p
		}
	}
	sort.Strings(enginePaths)
	t.Logf("engine paths in the OpenAPI document: %v", enginePaths)
	for p, methods := range want {
		item, ok := doc.Paths[p]
		if !ok {
			t.Errorf("OpenAPI document lacks %s (has %v)", p, enginePaths)
			continue
		}
		for _, m := range methods {
			if _, ok := item[m]; !ok {
				t.Errorf("OpenAPI %s lacks the %s operation", p, m)
			}
		}
	}

	// path-help for a concrete path of each OpenAPI path.
	helps := []struct{ openAPIPath, vaultPath, route string }{
		{"/snyk/config", "config", `^config$`},
		{"/snyk/integrations/{name}/{scm}", "integrations/x/github", `^integrations/(?P<name>[^/]+)/(?P<scm>[^/]+)$`},
		{"/snyk/broker/{name}/{scm}", "broker/x/github", `^broker/(?P<name>[^/]+)/(?P<scm>[^/]+)$`},
		{"/snyk/broker/{name}/{scm}/rotate", "broker/x/github/rotate", `rotate$`},
		{"/snyk/scm/validate", "scm/validate", `^scm/validate$`},
	}
	for _, h := range helps {
		t.Run(h.vaultPath, func(t *testing.T) {
			item, ok := doc.Paths[h.openAPIPath]
			if !ok {
				t.Skipf("%s is not in the OpenAPI document (reported above)", h.openAPIPath)
			}
			var synopsis string
			_ = json.Unmarshal(item["description"], &synopsis)
			params := openAPIParams(t, doc, item)

			out, errOut, err := s.vault.cli(t, "path-help", mountPath+"/"+h.vaultPath)
			if err != nil {
				t.Fatalf("vault path-help %s/%s: %v\nstdout: %s\nstderr: %s", mountPath, h.vaultPath, err, out, errOut)
			}
			if !strings.Contains(out, "Request:        "+h.vaultPath+"\n") {
				t.Errorf("path-help does not name the request %q:\n%s", h.vaultPath, out)
			}
			route := regexp.MustCompile(`(?m)^Matching Route: (.*)$`).FindStringSubmatch(out)
			if route == nil || !strings.Contains(route[1], strings.TrimPrefix(h.route, "^")) {
				t.Errorf("path-help matched route %v, want one like %s", route, h.route)
			}
			if synopsis == "" || !strings.Contains(out, "\n"+synopsis+"\n") {
				t.Errorf("path-help does not print the path's synopsis %q:\n%s", synopsis, out)
			}
			desc := strings.SplitN(out, "## DESCRIPTION", 2)
			if len(desc) != 2 || len(strings.TrimSpace(desc[1])) < 40 {
				t.Errorf("path-help has no description section:\n%s", out)
			}
			if len(params) == 0 {
				t.Errorf("the OpenAPI document lists no parameters for %s", h.openAPIPath)
			}
			for _, p := range params {
				if !strings.Contains(out, "\n    "+p+" (") {
					t.Errorf("path-help does not document the parameter %s:\n%s", p, out)
				}
			}
		})
	}
}

// openAPIParams returns the path parameters and request-body properties of
// an OpenAPI path item.
func openAPIParams(t *testing.T, doc openAPIDoc, item map[string]json.RawMessage) []string {
	t.Helper()
	set := map[string]bool{}
	var params []openAPIParam
	if raw, ok := item["parameters"]; ok {
		if err := json.Unmarshal(raw, &params); err != nil {
			t.Fatal(err)
		}
	}
	for _, p := range params {
		set[p.Name] = true
	}
	for method, raw := range item {
		if !httpMethods[method] {
			continue
		}
		var op openAPIOperation
		if err := json.Unmarshal(raw, &op); err != nil {
			t.Fatal(err)
		}
		if op.RequestBody == nil {
			continue
		}
		for _, c := range op.RequestBody.Content {
			name := strings.TrimPrefix(c.Schema.Ref, "#/components/schemas/")
			if name == "" {
				// Vault 1.21 loses the $ref of an external plugin's request
				// body when it decodes the plugin's document (mapstructure
				// ignores the json:"$ref" tag); the schema itself is kept
				// under Vault's name for it: the camel-cased operationId
				// plus "Request".
				name = requestSchemaName(op.OperationID)
			}
			schema, ok := doc.Components.Schemas[name]
			if !ok {
				t.Errorf("%s %s: no request schema %q in components", method, op.OperationID, name)
			}
			for prop := range schema.Properties {
				set[prop] = true
			}
		}
	}
	return keysOf(set)
}

// requestSchemaName is Vault's component name of an operation's request
// body: snyk-configure-integration -> SnykConfigureIntegrationRequest.
func requestSchemaName(operationID string) string {
	var b strings.Builder
	for _, part := range strings.Split(operationID, "-") {
		if part != "" {
			b.WriteString(strings.ToUpper(part[:1]) + part[1:])
		}
	}
	return b.String() + "Request"
}
