package snyktest

import (
	"fmt"
	"maps"
	"net/http"
	"regexp"
	"slices"
	"sort"
	"time"

	"github.com/google/uuid"
)

// Snyk's Universal Broker model (docs.snyk.io, "Universal Broker"): a tenant
// holds deployments, each under one install of the Snyk Broker App in an
// org; a deployment holds credential references (names of environment
// variables whose values never reach Snyk), connections that use them, and
// contexts that override a connection's parameters. The install's OAuth
// client (client_id plus one or two secrets) lives in s.clients like any
// other, so /oauth2/token serves it.

type ubTenant struct {
	id, name string
	admins   map[string]bool // principal IDs with the tenant admin role
}

type ubInstall struct {
	id, orgID, clientID string
	// tenantID is bound by the install's first deployment: Snyk's install
	// belongs to an org, and the fake knows an org's tenant only from the
	// deployments made under it.
	tenantID                   string
	installedAt                time.Time
	creates, deletes, replaces int // successful secrets calls
}

type ubDeployment struct {
	id, tenantID, installID string
	metadata                map[string]any
	connects                int // successful client config fetches
}

type ubCredential struct {
	id, deploymentID, env, typ, comment string
	// deleted references stay so that connections made with them still
	// render their "${ENV}"; Snyk's answer to deleting a reference in use is
	// not documented.
	deleted bool
}

type ubConnection struct {
	id, deploymentID, name, typ string
	identifier                  string // "" (null) until integrated
	plain                       map[string]string
	refs                        map[string]string // key -> credential reference ID
	integrations                []ubIntegration
}

type ubIntegration struct{ id, orgID string }

type ubContext struct {
	id, deploymentID, connectionID string
	plain, refs                    map[string]string
}

// universalState is the fake's Universal Broker data, guarded by s.mu.
type universalState struct {
	tenants     map[string]*ubTenant
	installs    map[string]*ubInstall
	deployments map[string]*ubDeployment
	credentials map[string]*ubCredential
	connections map[string]*ubConnection
	contexts    map[string]*ubContext
	// rank is every ID's creation rank, kept after deletion: lists come in
	// creation order and a cursor stays valid when its item goes away.
	rank map[string]int
}

// envNameRE is the environment-variable syntax Snyk's CLI enforces on
// credential references (snyk/snyk-broker-config, src/utils/validation.ts).
var envNameRE = regexp.MustCompile(`^[A-Z_][0-9A-Z_]*$`)

// fieldError is a refused write: the status and the JSON:API error source.
type fieldError struct {
	status  int
	pointer string
	detail  string
}

func (e *fieldError) Error() string { return e.detail }

func badField(pointer, format string, args ...any) *fieldError {
	return &fieldError{status: http.StatusBadRequest, pointer: pointer, detail: fmt.Sprintf(format, args...)}
}

// universal returns the state, creating it on first use. s.mu must be held.
func (s *Server) universal() *universalState {
	u := &s.ub
	if u.tenants == nil {
		u.tenants, u.installs, u.deployments = map[string]*ubTenant{}, map[string]*ubInstall{}, map[string]*ubDeployment{}
		u.credentials, u.connections, u.contexts = map[string]*ubCredential{}, map[string]*ubConnection{}, map[string]*ubContext{}
		u.rank = map[string]int{}
	}
	return u
}

func (u *universalState) newID() string {
	id := uuid.NewString()
	u.rank[id] = len(u.rank) + 1
	return id
}

// inOrder sorts IDs by creation.
func (u *universalState) inOrder(ids []string) []string {
	sort.Slice(ids, func(i, j int) bool { return u.rank[ids[i]] < u.rank[ids[j]] })
	return ids
}

// userPrincipalID is the principal ID of an API token, as authenticate
// derives it.
func userPrincipalID(token string) string {
	return uuid.NewSHA1(principalNS, []byte("user:"+token)).String()
}

// AddTenant creates a tenant and returns its ID. adminCredentials are API
// tokens or OAuth client IDs whose principal gets the tenant admin role.
func (s *Server) AddTenant(name string, adminCredentials ...string) (tenantID string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	u := s.universal()
	t := &ubTenant{id: u.newID(), name: name, admins: map[string]bool{}}
	u.tenants[t.id] = t
	for _, c := range adminCredentials {
		t.addAdmin(c)
	}
	return t.id
}

// AddTenantAdmin gives the principal of an API token or OAuth client ID the
// tenant admin role.
func (s *Server) AddTenantAdmin(tenantID, credential string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if t := s.universal().tenants[tenantID]; t != nil {
		t.addAdmin(credential)
	}
}

// addAdmin admits the credential whichever kind it is: the two derivations
// cannot collide, so a token never passes for a client or the reverse.
func (t *ubTenant) addAdmin(credential string) {
	t.admins[userPrincipalID(credential)] = true
	t.admins[botID(credential)] = true
}

// AddDeployment creates a deployment of the install under the tenant and
// returns its ID; "" when either is unknown or the install already has
// deployments under another tenant.
func (s *Server) AddDeployment(tenantID, installID string, metadata map[string]string) (deploymentID string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	u := s.universal()
	t, in := u.tenants[tenantID], u.installs[installID]
	if t == nil || in == nil || (in.tenantID != "" && in.tenantID != t.id) {
		return ""
	}
	md := map[string]any{}
	for k, v := range metadata {
		md[k] = v
	}
	return u.addDeployment(t, in, md).id
}

func (u *universalState) addDeployment(t *ubTenant, in *ubInstall, metadata map[string]any) *ubDeployment {
	in.tenantID = t.id
	d := &ubDeployment{id: u.newID(), tenantID: t.id, installID: in.id, metadata: metadata}
	u.deployments[d.id] = d
	return d
}

// AddCredentialReference creates a credential reference in the deployment
// and returns its ID; "" when the deployment is unknown or already has one
// of that name. The name is not checked, so tests can seed what the API
// would refuse.
func (s *Server) AddCredentialReference(deploymentID, envName, typ, comment string) (credentialID string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	u := s.universal()
	if u.deployments[deploymentID] == nil || u.refByName(deploymentID, envName) != nil {
		return ""
	}
	return u.addCredential(deploymentID, envName, typ, comment).id
}

func (u *universalState) addCredential(deploymentID, env, typ, comment string) *ubCredential {
	c := &ubCredential{id: u.newID(), deploymentID: deploymentID, env: env, typ: typ, comment: comment}
	u.credentials[c.id] = c
	return c
}

func (u *universalState) refByName(deploymentID, env string) *ubCredential {
	for _, c := range u.credentials {
		if c.deploymentID == deploymentID && c.env == env && !c.deleted {
			return c
		}
	}
	return nil
}

func (u *universalState) refByID(deploymentID, id string) *ubCredential {
	if c := u.credentials[id]; c != nil && c.deploymentID == deploymentID && !c.deleted {
		return c
	}
	return nil
}

// AddConnection creates a connection in the deployment. A credential field
// takes "${ENV}" naming a credential reference of the same deployment (or
// that reference's ID); it is stored as the reference and read back as
// "${ENV}". The type's required keys are checked.
func (s *Server) AddConnection(deploymentID, name, typ string, required map[string]string) (connectionID string, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	u := s.universal()
	if u.deployments[deploymentID] == nil {
		return "", fmt.Errorf("deployment %s not found", deploymentID)
	}
	c, ferr := u.addConnection(deploymentID, name, typ, required, true)
	if ferr != nil {
		return "", ferr
	}
	return c.id, nil
}

// addConnection validates and stores a connection. byEnv lets credential
// fields name references as "${ENV}"; the API takes only their UUIDs.
func (u *universalState) addConnection(deploymentID, name, typ string, required map[string]string, byEnv bool) (*ubConnection, *fieldError) {
	spec, ok := connTypes[typ]
	switch {
	case name == "":
		return nil, badField("/data/attributes/name", "name is required")
	case !ok:
		return nil, badField("/data/attributes/configuration/type", "unknown connection type %q", typ)
	}
	if m := spec.missing(required); m != "" {
		return nil, badField("/data/attributes/configuration/required", "a %s connection needs %s", typ, m)
	}
	c := &ubConnection{deploymentID: deploymentID, name: name, typ: typ, plain: map[string]string{}, refs: map[string]string{}}
	// Sorted, so that of several bad fields the same one is reported.
	for _, k := range slices.Sorted(maps.Keys(required)) {
		v := required[k]
		kind := spec.kind(k)
		if kind == plainField {
			c.plain[k] = v
			continue
		}
		env, isEnv := envPlaceholder(v)
		ref := u.refByID(deploymentID, v)
		if isEnv && byEnv {
			ref = u.refByName(deploymentID, env)
		}
		switch {
		case ref != nil:
			c.refs[k] = ref.id
		case kind == eitherField && (!isEnv || !byEnv):
			c.plain[k] = v
		default:
			// The value is not echoed: it may be a secret pasted by mistake.
			return nil, badField("/data/attributes/configuration/required/"+k,
				"%s must name a credential reference of this deployment", k)
		}
	}
	c.id = u.newID()
	u.connections[c.id] = c
	return c, nil
}

// AddContext creates a context for a connection of the deployment. Values
// written "${ENV}" must name a credential reference of the same deployment;
// they are read back the same way.
func (s *Server) AddContext(deploymentID, connectionID string, context map[string]string) (contextID string, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	u := s.universal()
	if c := u.connections[connectionID]; c == nil || c.deploymentID != deploymentID {
		return "", fmt.Errorf("connection %s not found in deployment %s", connectionID, deploymentID)
	}
	x := &ubContext{deploymentID: deploymentID, connectionID: connectionID, plain: map[string]string{}, refs: map[string]string{}}
	for k, v := range context {
		env, isEnv := envPlaceholder(v)
		if !isEnv {
			x.plain[k] = v
			continue
		}
		ref := u.refByName(deploymentID, env)
		if ref == nil {
			return "", fmt.Errorf("context key %s names no credential reference of deployment %s", k, deploymentID)
		}
		x.refs[k] = ref.id
	}
	x.id = u.newID()
	u.contexts[x.id] = x
	return x.id, nil
}

// IntegrateConnection lets an org use the connection and returns the
// integration ID ("" for an unknown connection). The connection gets its
// identifier (a UUID) on its first integration: Snyk's client opens no
// tunnel for a connection without one.
func (s *Server) IntegrateConnection(connectionID, orgID string) (integrationID string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.universal().connections[connectionID]
	if c == nil {
		return ""
	}
	if c.identifier == "" {
		c.identifier = uuid.NewString()
	}
	in := ubIntegration{id: uuid.NewString(), orgID: orgID}
	c.integrations = append(c.integrations, in)
	return in.id
}

// DeleteConnection deletes a connection and its contexts, as someone using
// Snyk's CLI might.
func (s *Server) DeleteConnection(connectionID string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	u := s.universal()
	delete(u.connections, connectionID)
	for id, x := range u.contexts {
		if x.connectionID == connectionID {
			delete(u.contexts, id)
		}
	}
}

// DeleteCredentialReference deletes a credential reference. Connections
// that use it keep reading "${ENV}", so an engine sees a used name with no
// reference behind it.
func (s *Server) DeleteCredentialReference(credentialID string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if c := s.universal().credentials[credentialID]; c != nil {
		c.deleted = true
	}
}

// UniversalClientConnects returns how many times a Broker client fetched
// the deployment's connections successfully.
func (s *Server) UniversalClientConnects(deploymentID string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if d := s.universal().deployments[deploymentID]; d != nil {
		return d.connects
	}
	return 0
}
