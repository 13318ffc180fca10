package scmtest

import (
	"fmt"
	"net/http"
	"sync"

	"github.com/snyk-vault/vault-plugin-secrets-snyk/backend/fault"
)

// Route names of the Azure DevOps fake.
const (
	RouteAzureRepositories   = "azure.git_repositories" // GET /{org}/_apis/git/repositories
	RouteAzureConnectionData = "azure.connection_data"  // GET /{org}/_apis/connectionData
	RouteAzureOther          = "azure.other"            // anything else: 404
)

// Bodies Azure DevOps sends.
const (
	AzureUnauthorizedBody = `{"$id":"1","innerException":null,"message":"TF400813: The user '' is not authorized to access this resource.","typeName":"Microsoft.TeamFoundation.Framework.Server.UnauthorizedRequestException, Microsoft.TeamFoundation.Framework.Server","typeKey":"UnauthorizedRequestException","errorCode":0,"eventId":3000}`
	// AzureSignInPage is what Azure serves (with 203) for credentials it
	// cannot parse; arm it with ContentType "text/html; charset=utf-8".
	AzureSignInPage = `<!DOCTYPE html><html lang="en-US"><head><meta charset="utf-8"><title>Azure DevOps Services | Sign In</title></head><body><div id="signin">Sign in to your account to continue to Azure DevOps.</div><script>window.location.href="https://login.microsoftonline.com/common/oauth2/authorize";</script></body></html>`
	// AzureThrottledBody is the 429 body of a blocked request.
	AzureThrottledBody = `{"$id":"1","innerException":null,"message":"TF400733: The request has been canceled: Request was blocked due to exceeding usage of resource 'ATCPU' in namespace 'User'.","typeName":"Microsoft.TeamFoundation.Framework.Server.RequestBlockedException, Microsoft.TeamFoundation.Framework.Server","typeKey":"RequestBlockedException","errorCode":0,"eventId":3000}`
	// The unknown-organization body is not in the reference; the status is.
	azureNotFoundBody = `{"$id":"1","innerException":null,"message":"VS800075: The organization does not exist or you do not have permission to access it.","typeName":"Microsoft.TeamFoundation.Core.WebApi.ProjectDoesNotExistException, Microsoft.TeamFoundation.Core.WebApi","typeKey":"ProjectDoesNotExistException","errorCode":0,"eventId":3000}`
	azureAnonymousID  = "aa442b7f-da1c-4f76-b1c0-0d3b0a1e8ffa"
)

// AzureToken describes a PAT the fake accepts.
type AzureToken struct {
	DisplayName string
	// CodeRead: the PAT carries a Code scope. Without it the repositories
	// listing answers 401 (Azure's usual answer for a missing scope) while
	// connectionData still identifies the user.
	CodeRead bool
}

type azToken struct {
	AzureToken
	id string
}

// Azure fakes dev.azure.com for a fixed set of organizations.
type Azure struct {
	// AnonymousMode serves every request as the Anonymous user, whatever
	// the credential: repositories lists the organization's public
	// repositories and connectionData answers 200 with authenticatedUser
	// "Anonymous", as for a PAT that was silently not applied.
	AnonymousMode bool
	// Realm is sent in WWW-Authenticate: Basic realm=… on 401s.
	Realm string

	orgs map[string]bool
	inj  *fault.Injector
	seen seenSet
	ids  requestIDs
	mux  *http.ServeMux

	mu     sync.Mutex
	tokens map[string]*azToken
	// retired keeps revoked PATs for Secrets.
	retired []string
}

// NewAzure returns a fake serving the given organizations; any other
// organization answers 404.
func NewAzure(orgs ...string) *Azure {
	a := &Azure{
		Realm:  "https://tfsprodweu5.visualstudio.com/",
		orgs:   map[string]bool{},
		inj:    fault.NewInjector(),
		mux:    http.NewServeMux(),
		tokens: map[string]*azToken{},
	}
	for _, o := range orgs {
		a.orgs[o] = true
	}
	a.mux.HandleFunc("GET /{org}/_apis/git/repositories", a.inj.Wrap(RouteAzureRepositories, a.repositories))
	a.mux.HandleFunc("GET /{org}/_apis/connectionData", a.inj.Wrap(RouteAzureConnectionData, a.connectionData))
	a.mux.HandleFunc("/", a.inj.Wrap(RouteAzureOther, a.other))
	return a
}

// AddToken makes pat valid in every organization of the fake.
func (a *Azure) AddToken(pat string, t AzureToken) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.tokens[pat] = &azToken{AzureToken: t, id: fmt.Sprintf("6e2a8d5c-0000-4000-8000-%012d", len(a.tokens)+1)}
}

// RevokeToken makes pat answer 401 from now on.
func (a *Azure) RevokeToken(pat string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	delete(a.tokens, pat)
	a.retired = append(a.retired, pat)
}

// Faults is the fault injector and call counter of every route.
func (a *Azure) Faults() *fault.Injector { return a.inj }

// SeenTokens lists the distinct PATs presented (the Basic password; the raw
// credential when the header is not Basic), in first-seen order.
func (a *Azure) SeenTokens() []string { return a.seen.list() }

// ServeHTTP records the credential and routes the request.
func (a *Azure) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	a.seen.add(presentedSecret(r))
	id := a.ids.next("a1b2c3d4-0000-4000-8000-0000")
	w.Header().Set("ActivityId", id)
	w.Header().Set("X-VSS-E2EID", id)
	w.Header().Set("X-TFS-ProcessId", "0f7f6f48-3a51-4c9e-9d8c-1b2f2f6f9f00")
	a.mux.ServeHTTP(w, r)
}

// authenticate answers the request itself unless it carries a known PAT in
// Basic authentication with any (or an empty) user name. In AnonymousMode it
// returns (nil, true): the caller serves the anonymous view.
func (a *Azure) authenticate(w http.ResponseWriter, r *http.Request) (*azToken, bool) {
	if !a.orgs[r.PathValue("org")] {
		// The organization is resolved before the credential is looked at.
		writeJSON(w, http.StatusNotFound, azureNotFoundBody)
		return nil, false
	}
	if a.AnonymousMode {
		return nil, true
	}
	_, pat, ok := basicCredentials(r)
	if !ok {
		// Missing, non-Basic or undecodable credentials: Azure falls back to
		// the interactive sign-in flow.
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.WriteHeader(http.StatusNonAuthoritativeInfo)
		_, _ = w.Write([]byte(AzureSignInPage))
		return nil, false
	}
	a.mu.Lock()
	t := a.tokens[pat]
	a.mu.Unlock()
	if t == nil {
		a.unauthorized(w)
		return nil, false
	}
	return t, true
}

func (a *Azure) unauthorized(w http.ResponseWriter) {
	h := w.Header()
	h.Add("WWW-Authenticate", "Bearer authorization_uri=https://login.microsoftonline.com/00000000-0000-0000-0000-000000000000")
	h.Add("WWW-Authenticate", fmt.Sprintf("Basic realm=%q", a.Realm))
	h.Add("WWW-Authenticate", "TFS-Federated")
	writeJSON(w, http.StatusUnauthorized, AzureUnauthorizedBody)
}

func (a *Azure) repositories(w http.ResponseWriter, r *http.Request) {
	if r.URL.Query().Get("api-version") == "" {
		// Azure DevOps's documented REST resources require a version.
		writeJSON(w, http.StatusBadRequest, map[string]any{
			"$id": "1", "innerException": nil,
			"message":  `No api-version was supplied for the "GET" request. A version must be specified for REST API requests.`,
			"typeName": "Microsoft.VisualStudio.Services.WebApi.VssVersionNotSpecifiedException, Microsoft.VisualStudio.Services.WebApi",
			"typeKey":  "VssVersionNotSpecifiedException", "errorCode": 0, "eventId": 3000,
		})
		return
	}
	t, ok := a.authenticate(w, r)
	if !ok {
		return
	}
	if t != nil && !t.CodeRead {
		a.unauthorized(w)
		return
	}
	org := r.PathValue("org")
	repo := func(id, name, project string) map[string]any {
		return map[string]any{
			"id": id, "name": name,
			"url": fmt.Sprintf("https://dev.azure.com/%s/_apis/git/repositories/%s", org, id),
			"project": map[string]any{
				"id": "6ce954b1-ce1f-45d1-b94d-e6bf2464ba2c", "name": project,
				"url": "https://dev.azure.com/" + org + "/_apis/projects/6ce954b1-ce1f-45d1-b94d-e6bf2464ba2c", "state": "wellFormed",
			},
			"defaultBranch": "refs/heads/main",
			"remoteUrl":     fmt.Sprintf("https://dev.azure.com/%s/%s/_git/%s", org, project, name),
		}
	}
	repos := []any{repo("5febef5a-833d-4e14-b9c0-14cb638f91e6", "PublicRepository", "Public-Project")}
	if t != nil {
		repos = append(repos,
			repo("2f3d611a-f012-4b39-b157-8db63f380226", "Fabrikam-Fiber-Git", "Fabrikam-Fiber-Git"),
			repo("4e3f1a8b-7c2d-4b5e-9f0a-1b2c3d4e5f60", "AnotherRepository", "Fabrikam-Fiber-Git"))
	}
	writeJSON(w, http.StatusOK, map[string]any{"count": len(repos), "value": repos})
}

func (a *Azure) connectionData(w http.ResponseWriter, r *http.Request) {
	t, ok := a.authenticate(w, r)
	if !ok {
		return
	}
	user := map[string]any{
		"id": azureAnonymousID, "descriptor": "System:PublicAccess;" + azureAnonymousID,
		"subjectDescriptor": "s2s.anonymous", "providerDisplayName": "Anonymous", "isActive": true,
		"properties": map[string]any{}, "resourceVersion": 2, "metaTypeId": 255,
	}
	if t != nil {
		user = map[string]any{
			"id": t.id, "descriptor": "Microsoft.IdentityModel.Claims.ClaimsIdentity;72f988bf-86f1-41af-91ab-2d7cd011db47\\" + t.DisplayName,
			"subjectDescriptor": "aad.NzJmOTg4YmYtODZmMS00MWFmLTkxYWItMmQ3Y2QwMTFkYjQ3", "providerDisplayName": t.DisplayName,
			"isActive": true, "properties": map[string]any{"Account": map[string]any{"$type": "System.String", "$value": t.DisplayName}},
			"resourceVersion": 2, "metaTypeId": 0,
		}
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"authenticatedUser": user, "authorizedUser": user,
		"instanceId": "9a1d3e1f-0000-4000-8000-000000000001", "deploymentId": "9a1d3e1f-0000-4000-8000-000000000002",
		"deploymentType": "hosted",
		"locationServiceData": map[string]any{
			"serviceOwner": "00025394-6065-48ca-87d9-7f5672854ef7", "defaultAccessMappingMoniker": "PublicAccessMapping",
			"lastChangeId": 1, "lastChangeId64": 1,
		},
	})
}

func (a *Azure) other(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusNotFound, `{"count":1,"value":{"Message":"The requested resource does not exist."}}`)
}
