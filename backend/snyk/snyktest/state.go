package snyktest

import (
	"regexp"
	"sort"
	"strings"

	"github.com/google/uuid"
)

// Broker tokens belong to a token group (shared by an integration and its
// clones, which Snyk documents as switched together) rather than to an
// integration, and provisional tokens are limited per "lane": the Snyk group
// (Snyk allows one provisional token per group), or the org itself for an
// org outside any group.

type org struct {
	id, groupID, name, slug string
}

type integration struct {
	id, orgID, typ string
	brokered       bool
	credentials    map[string]any
	settings       map[string]any
	tokenKey       string
}

type tokenGroup struct {
	lane          string
	current       string
	provisional   string
	provisionedBy string // integration whose provision-token call minted provisional
}

func (o *org) lane() string {
	if o.groupID != "" {
		return o.groupID
	}
	return "org:" + o.id
}

var nonSlug = regexp.MustCompile(`[^a-z0-9]+`)

func slugify(name string) string {
	return strings.Trim(nonSlug.ReplaceAllString(strings.ToLower(name), "-"), "-")
}

// AddOrg creates or replaces an org. groupID "" is an org outside any group:
// it cannot clone integrations and has its own provisional-token lane.
func (s *Server) AddOrg(orgID, groupID, name string) {
	if name == "" {
		name = orgID
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.orgs[orgID] = &org{id: orgID, groupID: groupID, name: name, slug: slugify(name)}
}

// AddIntegration creates an integration of type typ in orgID (creating the
// org, without a group, if it does not exist) and returns its ID and, when
// brokered, its Broker token. When the org already has an integration of
// that type, that one is returned (and brokered if asked).
func (s *Server) AddIntegration(orgID, typ string, brokered bool) (integrationID, brokerToken string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	o := s.orgs[orgID]
	if o == nil {
		o = &org{id: orgID, name: orgID, slug: slugify(orgID)}
		s.orgs[orgID] = o
	}
	in := s.integrationByType(orgID, typ)
	if in == nil {
		in = s.newIntegration(o, typ)
	}
	if brokered {
		return in.id, s.enableBroker(in)
	}
	return in.id, s.tokens[in.tokenKey].current
}

// CurrentToken returns the integration's current Broker token ("" when none).
func (s *Server) CurrentToken(integrationID string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if in := s.integrations[integrationID]; in != nil {
		return s.tokens[in.tokenKey].current
	}
	return ""
}

// ProvisionalToken returns the provisional token that would become the
// integration's current one on a switch, "" when none.
func (s *Server) ProvisionalToken(integrationID string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if in := s.integrations[integrationID]; in != nil {
		return s.tokens[in.tokenKey].provisional
	}
	return ""
}

// GroupProvisionalHolder returns the integration whose provision-token call
// created the group's provisional token, "" when the group has none. For an
// org outside any group, pass the org ID.
func (s *Server) GroupProvisionalHolder(groupID string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, lane := range []string{groupID, "org:" + groupID} {
		if key := s.groupProvisional[lane]; key != "" {
			return s.tokens[key].provisionedBy
		}
	}
	return ""
}

// Brokered reports whether the integration has Broker enabled.
func (s *Server) Brokered(integrationID string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	in := s.integrations[integrationID]
	return in != nil && in.brokered
}

// IntegrationIDs returns the org's integrations as type -> ID.
func (s *Server) IntegrationIDs(orgID string) map[string]string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.integrationMap(orgID)
}

// TokenIsCurrent reports whether some integration currently uses tok: what a
// fake Broker server would accept for Snyk-side traffic.
func (s *Server) TokenIsCurrent(tok string) bool {
	if tok == "" {
		return false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, tg := range s.tokens {
		if tg.current == tok {
			return true
		}
	}
	return false
}

// TokenIsProvisional reports whether tok is a provisional token not yet
// switched to. Snyk lets a Broker client connect with it before the switch.
func (s *Server) TokenIsProvisional(tok string) bool {
	if tok == "" {
		return false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, tg := range s.tokens {
		if tg.provisional == tok {
			return true
		}
	}
	return false
}

// Minted returns every Broker token the fake issued (enabled, provisioned or
// replaced), oldest first: a test can check that each one is held somewhere.
func (s *Server) Minted() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.minted...)
}

// Secrets returns every secret the fake issued or accepted: Broker tokens,
// API tokens and keys, OAuth client secrets and access tokens, revoked ones
// included. No log line, error or non-secret read may contain any of them.
func (s *Server) Secrets() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := append([]string(nil), s.minted...)
	out = append(out, s.known...)
	for _, secrets := range s.clients {
		out = append(out, secrets...)
	}
	return out
}

// Switches returns how many switch-token calls succeeded.
func (s *Server) Switches() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.switches
}

// CallsBy returns how many provision-token and switch-token calls made for
// the integration succeeded: a token family's sharers should show none.
func (s *Server) CallsBy(integrationID string) (provisions, switches int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.provisionsBy[integrationID], s.switchesBy[integrationID]
}

// SwitchOutsideVault makes the provisional token of the integration's token
// group current, as the Snyk UI's switch would. It reports whether there was
// one.
func (s *Server) SwitchOutsideVault(integrationID string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	in := s.integrations[integrationID]
	if in == nil {
		return false
	}
	tg := s.tokens[in.tokenKey]
	if tg.provisional == "" {
		return false
	}
	tg.current, tg.provisional, tg.provisionedBy = tg.provisional, "", ""
	delete(s.groupProvisional, tg.lane)
	s.switches++
	return true
}

// ProvisionOutsideVault issues a provisional token for the integration, as
// someone using Snyk's UI or API directly would, and returns it ("" when the
// integration is not brokered or its group already holds one).
func (s *Server) ProvisionOutsideVault(integrationID string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	in := s.integrations[integrationID]
	if in == nil || !in.brokered {
		return ""
	}
	tg := s.tokens[in.tokenKey]
	if s.groupProvisional[tg.lane] != "" {
		return ""
	}
	tg.provisional, tg.provisionedBy = s.mint(), in.id
	s.groupProvisional[tg.lane] = in.tokenKey
	return tg.provisional
}

// DisableBrokerOutsideVault turns Broker off on the integration, as an admin
// in Snyk's UI might.
func (s *Server) DisableBrokerOutsideVault(integrationID string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if in := s.integrations[integrationID]; in != nil && in.brokered {
		s.disableBroker(in)
	}
}

// The helpers below expect s.mu to be held.

// mint issues a new Broker token and remembers it.
func (s *Server) mint() string {
	t := newToken()
	s.minted = append(s.minted, t)
	return t
}

func (s *Server) newIntegration(o *org, typ string) *integration {
	in := &integration{
		id:       uuid.NewString(),
		orgID:    o.id,
		typ:      typ,
		settings: map[string]any{},
		tokenKey: uuid.NewString(),
	}
	s.integrations[in.id] = in
	s.tokens[in.tokenKey] = &tokenGroup{lane: o.lane()}
	return in
}

func (s *Server) integrationByType(orgID, typ string) *integration {
	for _, in := range s.integrations {
		if in.orgID == orgID && in.typ == typ {
			return in
		}
	}
	return nil
}

func (s *Server) integrationMap(orgID string) map[string]string {
	out := map[string]string{}
	for _, in := range s.integrations {
		if in.orgID == orgID {
			out[in.typ] = in.id
		}
	}
	return out
}

// enableBroker marks in brokered and returns its token, minting the first one.
func (s *Server) enableBroker(in *integration) string {
	in.brokered = true
	tg := s.tokens[in.tokenKey]
	if tg.current == "" {
		tg.current = s.mint()
	}
	return tg.current
}

// disableBroker detaches in from its token group: its token stops working for
// it, while clones that share the group keep theirs.
func (s *Server) disableBroker(in *integration) {
	old := in.tokenKey
	tg := s.tokens[old]
	in.brokered = false
	in.tokenKey = uuid.NewString()
	s.tokens[in.tokenKey] = &tokenGroup{lane: tg.lane}
	rest := s.members(old)
	switch {
	case len(rest) == 0:
		if s.groupProvisional[tg.lane] == old {
			delete(s.groupProvisional, tg.lane)
		}
		delete(s.tokens, old)
	case tg.provisionedBy == in.id:
		// Keep GroupProvisionalHolder pointing at an integration that can
		// still switch the token.
		tg.provisionedBy = rest[0].id
	}
}

func (s *Server) members(key string) []*integration {
	var out []*integration
	for _, in := range s.integrations {
		if in.tokenKey == key {
			out = append(out, in)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].id < out[j].id })
	return out
}

func cloneMap(m map[string]any) map[string]any {
	if m == nil {
		return nil
	}
	out := make(map[string]any, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}
