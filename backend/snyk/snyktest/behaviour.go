package snyktest

import (
	"fmt"
	"math"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Behaviour selects the fake's answer where Snyk's behaviour is not
// documented (the [unverified] points of the reference), so that tests can
// cover every plausible variant. The zero value means the defaults.
type Behaviour struct {
	// ProvisionConflictStatus answers provision-token while the group
	// already holds a provisional token; 409 by default.
	ProvisionConflictStatus int
	// SwitchWithoutProvisionalStatus answers switch-token when the
	// integration's token has no provisional successor; 400 by default.
	SwitchWithoutProvisionalStatus int
	// NotBrokeredStatus answers provision-token and switch-token on an
	// integration without Broker; 400 by default.
	NotBrokeredStatus int
	// EnableOnBrokered is what PUT {"broker":{"enabled":true}} does on an
	// integration that is already brokered: EnableSameToken (default)
	// returns the current token, EnableNewToken replaces it (breaking running
	// clients), EnableError refuses with EnableOnBrokeredStatus (409 by
	// default).
	EnableOnBrokered       string
	EnableOnBrokeredStatus int

	// The words of those refusals (v1 error bodies carry them in "message"
	// and "error"). A %s in a message is replaced by the integration ID.
	// Empty means the fake's default wording.
	NotBrokeredMessage              string
	ProvisionConflictMessage        string
	SwitchWithoutProvisionalMessage string
	EnableOnBrokeredMessage         string

	// RateLimitWindow and RateLimitPerWindow, when both > 0, make the fake
	// answer 429 once more than RateLimitPerWindow requests arrive within a
	// window, and keep answering 429 until requests stop for a whole window
	// (so continued requests extend it), as Snyk documents.
	RateLimitWindow    time.Duration
	RateLimitPerWindow int
	// RateLimitRetryAfter sends Retry-After (whole seconds) on those 429s;
	// Snyk does not document it, so test both ways.
	RateLimitRetryAfter bool

	// InstallSecretCapStatus answers a create of a third app-install
	// secret, with InstallSecretCapMessage; Snyk documents the words
	// ("cannot update secrets") but not the status. 409 by default.
	InstallSecretCapStatus  int
	InstallSecretCapMessage string
	// RevokeAccessTokensWithSecret makes deleting or replacing an
	// app-install secret also kill the access tokens minted with it; Snyk
	// does not say whether it does. Off by default: tokens live out their
	// expiry.
	RevokeAccessTokensWithSecret bool
	// TenantNonAdminStatus answers a /rest/tenants/... request by a
	// principal without the tenant admin role; 403 by default, 404 being the
	// plausible alternative (the specification lists no 403 there).
	TenantNonAdminStatus int
}

// EnableOnBrokered values.
const (
	EnableSameToken = "same-token"
	EnableNewToken  = "new-token"
	EnableError     = "error"
)

func (b Behaviour) withDefaults() Behaviour {
	if b.ProvisionConflictStatus == 0 {
		b.ProvisionConflictStatus = http.StatusConflict
	}
	if b.SwitchWithoutProvisionalStatus == 0 {
		b.SwitchWithoutProvisionalStatus = http.StatusBadRequest
	}
	if b.NotBrokeredStatus == 0 {
		b.NotBrokeredStatus = http.StatusBadRequest
	}
	if b.EnableOnBrokered == "" {
		b.EnableOnBrokered = EnableSameToken
	}
	if b.EnableOnBrokeredStatus == 0 {
		b.EnableOnBrokeredStatus = http.StatusConflict
	}
	if b.NotBrokeredMessage == "" {
		b.NotBrokeredMessage = NotBrokeredWordings[0].Message
	}
	if b.ProvisionConflictMessage == "" {
		b.ProvisionConflictMessage = ProvisionConflictWordings[0].Message
	}
	if b.SwitchWithoutProvisionalMessage == "" {
		b.SwitchWithoutProvisionalMessage = SwitchWithoutProvisionalWordings[0].Message
	}
	if b.EnableOnBrokeredMessage == "" {
		b.EnableOnBrokeredMessage = EnableOnBrokeredWordings[0].Message
	}
	if b.InstallSecretCapStatus == 0 {
		b.InstallSecretCapStatus = http.StatusConflict
	}
	if b.InstallSecretCapMessage == "" {
		b.InstallSecretCapMessage = "cannot update secrets"
	}
	if b.TenantNonAdminStatus == 0 {
		b.TenantNonAdminStatus = http.StatusForbidden
	}
	return b
}

// refusalMessage fills an integration ID into a configured wording.
func refusalMessage(format, integrationID string) string {
	if strings.Contains(format, "%s") {
		return fmt.Sprintf(format, integrationID)
	}
	return format
}

// Wording is one plausible text of an undocumented refusal. Meaningful is
// false for a text that names no reason ("Bad Request"): what a client sees
// when an API answers with its generic error.
type Wording struct {
	Message    string
	Meaningful bool
}

// Plausible wordings of each undocumented refusal: the first is the fake's
// default; the others are how a real Snyk might put it.
var (
	NotBrokeredWordings = []Wording{
		{"Integration %s is not brokered.", true},
		{"Broker is not enabled for integration %s", true},
		{"Invalid request", false},
	}
	ProvisionConflictWordings = []Wording{
		{"A provisional token has already been provisioned for this integration or another integration in the same group.", true},
		{"Only one provisional broker token is allowed per group; one already exists", true},
		{"Conflict", false},
	}
	// Worded without "broker" or "already" so that clients can tell them from
	// the not-brokered and provisional-conflict refusals.
	SwitchWithoutProvisionalWordings = []Wording{
		{"No provisional token exists for integration %s or any integration sharing its token.", true},
		{"There is no token provisioned for this integration or any integration in the same group", true},
		{"Bad Request", false},
	}
	EnableOnBrokeredWordings = []Wording{
		{"Integration %s is already brokered.", true},
		{"Broker is already enabled for this integration", true},
		{"Request could not be processed", false},
	}
	// RefusalStatuses are the statuses a real Snyk might use for them.
	RefusalStatuses = []int{http.StatusBadRequest, http.StatusNotFound, http.StatusConflict, http.StatusUnprocessableEntity}
)

// Profile is a named Behaviour: one plausible set of answers to the calls
// whose failures Snyk does not document.
type Profile struct {
	Name string
	// Wording is the index into each *Wordings list used by every refusal of
	// the profile, so a test knows whether the words carry their meaning.
	Wording int
	Behaviour
}

// Meaningful reports whether the profile's refusals name their reason.
func (p Profile) Meaningful() bool { return NotBrokeredWordings[p.Wording].Meaningful }

// Profiles is the behaviour matrix: every refusal status × every wording,
// with enabling Broker on a brokered integration refused the same way, plus
// the two profiles where that enable succeeds (same token, new token).
func Profiles() []Profile {
	var out []Profile
	for _, status := range RefusalStatuses {
		for i := range NotBrokeredWordings {
			out = append(out, Profile{
				Name:    fmt.Sprintf("status-%d-wording-%d", status, i+1),
				Wording: i,
				Behaviour: Behaviour{
					ProvisionConflictStatus:         status,
					SwitchWithoutProvisionalStatus:  status,
					NotBrokeredStatus:               status,
					EnableOnBrokered:                EnableError,
					EnableOnBrokeredStatus:          status,
					NotBrokeredMessage:              NotBrokeredWordings[i].Message,
					ProvisionConflictMessage:        ProvisionConflictWordings[i].Message,
					SwitchWithoutProvisionalMessage: SwitchWithoutProvisionalWordings[i].Message,
					EnableOnBrokeredMessage:         EnableOnBrokeredWordings[i].Message,
				},
			})
		}
	}
	out = append(out,
		Profile{Name: "enable-same-token", Behaviour: Behaviour{EnableOnBrokered: EnableSameToken}},
		Profile{Name: "enable-new-token", Behaviour: Behaviour{EnableOnBrokered: EnableNewToken}},
	)
	return out
}

// ProfileNamed returns the profile called name ("default" is the fake's
// defaults).
func ProfileNamed(name string) (Profile, bool) {
	if name == "" || name == "default" {
		return Profile{Name: "default"}, true
	}
	for _, p := range Profiles() {
		if p.Name == name {
			return p, true
		}
	}
	return Profile{}, false
}

// SetBehaviour replaces the behaviour switches; it also resets the rate
// limiter so a new window starts clean.
func (s *Server) SetBehaviour(b Behaviour) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.behaviour = b.withDefaults()
	s.limiter = rateLimiter{}
}

// rateLimiter is one global window: the fake has a handful of users, and a
// per-credential split would only make tests harder to reason about.
type rateLimiter struct {
	windowStart time.Time
	count       int
	limited     bool
	last        time.Time
}

// allow records a request at now and reports whether it may proceed.
func (l *rateLimiter) allow(now time.Time, window time.Duration, perWindow int) bool {
	defer func() { l.last = now }()
	if l.limited {
		if now.Sub(l.last) < window {
			return false
		}
		l.limited = false
		l.windowStart, l.count = now, 0
	}
	if l.windowStart.IsZero() || now.Sub(l.windowStart) >= window {
		l.windowStart, l.count = now, 0
	}
	l.count++
	if l.count > perWindow {
		l.limited = true
		return false
	}
	return true
}

func (s *Server) rateLimited(next http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		b := s.behaviour
		ok := true
		if b.RateLimitWindow > 0 && b.RateLimitPerWindow > 0 {
			ok = s.limiter.allow(s.now(), b.RateLimitWindow, b.RateLimitPerWindow)
		}
		s.mu.Unlock()
		if ok {
			next(w, r)
			return
		}
		if b.RateLimitRetryAfter {
			// Any request before then extends the window, so the honest
			// answer is always one full window.
			secs := int64(math.Ceil(b.RateLimitWindow.Seconds()))
			w.Header().Set("Retry-After", strconv.FormatInt(secs, 10))
		}
		writeJSONBytes(w, http.StatusTooManyRequests, "application/json; charset=utf-8",
			[]byte(`{"code":429,"message":"Too many requests","error":"Too many requests"}`))
	}
}
