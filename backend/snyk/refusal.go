package snyk

import (
	"errors"
	"fmt"
	"net/http"
	"regexp"
)

// Snyk documents only the 200 answers of the Broker-token calls. How it
// refuses them (a provision on a not-yet-brokered integration, a second
// provisional token in one group, a switch with nothing provisioned, enabling
// Broker twice) has no documented status or body, so 400, 404, 409 and 422
// are all plausible and so are many wordings. This file reads a refusal by
// its words; the status only breaks a tie between two readings. Anything it
// cannot read is Unknown, and callers must then stop without assuming
// success or "already done".

// Operation is the v1 call whose refusal is classified.
type Operation string

// The calls with undocumented refusals.
const (
	OpProvision Operation = "provision-token"
	OpSwitch    Operation = "switch-token"
	OpEnable    Operation = "enable-broker"
	// OpLookup: reads (the org's integrations, the org's group), whose only
	// refusals are the generic ones (not found, unauthorized, forbidden).
	OpLookup Operation = "lookup"
	// OpManageSecret: creating or deleting an install's or service
	// account's client secret, whose limit refusal Snyk words but does not
	// give a status ("cannot update secrets").
	OpManageSecret Operation = "manage-secret"
)

// Refusal is what a refusal means.
type Refusal string

const (
	// NotARefusal: success, a transport failure, a 5xx or a 429; the caller
	// handles those by their own rules.
	NotARefusal Refusal = ""
	// RefusalUnknown: a 4xx whose words say none of the meanings below (or
	// say two of them). Never success, never "already done".
	RefusalUnknown Refusal = "unknown"
	// RefusalNotBrokered: the integration has no Broker enabled.
	RefusalNotBrokered Refusal = "not-brokered"
	// RefusalAlreadyBrokered: enabling Broker was refused because it is on.
	RefusalAlreadyBrokered Refusal = "already-brokered"
	// RefusalProvisionalConflict: the Snyk group already holds its one
	// provisional token.
	RefusalProvisionalConflict Refusal = "provisional-conflict"
	// RefusalNothingToSwitch: the switch found no provisional token.
	RefusalNothingToSwitch Refusal = "nothing-to-switch"
	// RefusalNotFound: the org or integration is unknown, or the credential
	// cannot see it (Snyk's documented 404 wording).
	RefusalNotFound Refusal = "not-found"
	// RefusalUnauthorized: the credential itself was rejected.
	RefusalUnauthorized Refusal = "unauthorized"
	// RefusalForbidden: the credential lacks a permission.
	RefusalForbidden Refusal = "forbidden"
	// RefusalSecretLimit: a new client secret was refused because the
	// install or service account holds the most secrets Snyk allows (two).
	RefusalSecretLimit Refusal = "secret-limit"
)

// meaning is one reading of a refusal: the words that say it, words that
// veto it (the message is about something else too), the calls it can
// answer, and the status that favours it in a tie.
type meaning struct {
	refusal Refusal
	says    []*regexp.Regexp
	vetoes  []*regexp.Regexp
	ops     []Operation // nil: any call
	status  int
}

func re(pattern string) *regexp.Regexp { return regexp.MustCompile(`(?i)` + pattern) }

var meanings = []meaning{
	{
		refusal: RefusalNotBrokered,
		says: []*regexp.Regexp{
			re(`\bnot\s+(a\s+|an\s+)?broker(ed)?\b`),               // "is not brokered", "not a brokered integration"
			re(`\bbroker(ing)?\b(\s+\w+){0,3}?\s+not\s+enabled\b`), // "Broker is not enabled", "broker not enabled for …"
			re(`\bbroker(ing)?\s+(is\s+|has\s+been\s+|was\s+)?disabled\b`),
			re(`\b(non|un)-?brokered\b`),
			re(`\brequires?\s+(a\s+|an\s+)?brokered\b`),
			re(`\bbroker(ed)?\s+integration\s+(is\s+)?required\b`),
		},
		ops: []Operation{OpProvision, OpSwitch},
	},
	{
		refusal: RefusalAlreadyBrokered,
		says: []*regexp.Regexp{
			re(`\balready\s+(been\s+)?(brokered|broker[- ]enabled)\b`),
			re(`\bis\s+already\s+(a\s+)?broker(ed)?\b`),
			re(`\bbroker(ing)?\b(\s+\w+){0,3}?\s+(is\s+|has\s+)?already\s+(been\s+)?(enabled|on|active|configured)\b`),
			re(`\balready\s+has\s+(a\s+)?broker\b`),
		},
		ops: []Operation{OpEnable},
	},
	{
		refusal: RefusalProvisionalConflict,
		says: []*regexp.Regexp{
			re(`\balready\b.*\bprovision`),
			re(`\bprovision.*\balready\b`),
			re(`\b(another|existing|pending|outstanding)\s+provision(al|ed)\s+(broker\s+)?token`),
			re(`\bonly\s+one\s+provision(al|ed)?\s+(broker\s+)?token`),
		},
		vetoes: []*regexp.Regexp{re(`\bno\s+(other\s+)?provision`), re(`\bnot\s+(been\s+)?provisioned\b`)},
		ops:    []Operation{OpProvision},
		status: http.StatusConflict,
	},
	{
		refusal: RefusalNothingToSwitch,
		says: []*regexp.Regexp{
			re(`\bno\s+(such\s+|pending\s+)?provision(al|ed)?\s+(broker\s+)?tokens?\b`),
			re(`\bno\s+(broker\s+)?tokens?\s+(has\s+been\s+|have\s+been\s+|is\s+|was\s+|are\s+)?provisioned\b`),
			re(`\b(has|have|was|were|is)\s+not\s+(yet\s+)?(been\s+)?provisioned\b`),
			re(`\bnothing\s+to\s+switch\b`),
			re(`\bprovision(al|ed)\s+(broker\s+)?token\s+(does\s+not|doesn't|did\s+not)\s+exist\b`),
			re(`\bwithout\s+(a\s+)?provision(al|ed)\s+(broker\s+)?token\b`),
			re(`\bmissing\s+(a\s+)?provision(al|ed)?\s+(broker\s+)?token\b`),
		},
		// A refusal that also talks about a client or a connection is about
		// something else (e.g. "the provisioned token has no connected
		// Broker client"): concluding "nothing to switch" from it could
		// serve a token Snyk does not route by.
		vetoes: []*regexp.Regexp{re(`\bclients?\b`), re(`\bconnect`), re(`\balready\b`)},
		ops:    []Operation{OpSwitch},
	},
	{
		refusal: RefusalSecretLimit,
		says: []*regexp.Regexp{
			re(`\bcannot\s+update\s+secrets\b`),
			re(`\b(maximum|max|limit)\b.*\bsecrets?\b`),
			re(`\bsecrets?\b.*\b(maximum|limit)\b`),
			re(`\b(at\s+most|no\s+more\s+than|only)\s+(two|2)\s+(active\s+)?secrets\b`),
			re(`\btoo\s+many\s+secrets\b`),
		},
		ops:    []Operation{OpManageSecret},
		status: http.StatusConflict,
	},
	{
		refusal: RefusalNotFound,
		says: []*regexp.Regexp{
			re(`\bnot\s+found\b`),
			re(`\bno\s+such\s+(org|organi[sz]ation|integration)\b`),
			re(`\bunknown\s+(org|organi[sz]ation|integration)\b`),
		},
		status: http.StatusNotFound,
	},
	{
		refusal: RefusalUnauthorized,
		says: []*regexp.Regexp{
			re(`\bnot\s+authori[sz]ed\b`),
			re(`\bunauthori[sz]ed\b`),
			re(`\binvalid\s+(api\s+)?(token|key|credentials?)\b`),
			re(`\bauthentication\s+(failed|required)\b`),
		},
		status: http.StatusUnauthorized,
	},
	{
		refusal: RefusalForbidden,
		says: []*regexp.Regexp{
			re(`\bforbidden\b`),
			re(`\bpermissions?\b`),
			re(`\baccess\s+denied\b`),
			re(`\binsufficient\b`),
		},
		status: http.StatusForbidden,
	},
}

// Classify reads what Snyk meant by refusing op. It returns NotARefusal for
// anything that is not a 4xx answer from Snyk, and for 429 (rate limiting is
// documented and handled by the retry loop and the rotation engine).
func Classify(op Operation, err error) Refusal {
	var ae *APIError
	if !errors.As(err, &ae) || ae.Status < 400 || ae.Status > 499 || ae.Status == http.StatusTooManyRequests {
		return NotARefusal
	}
	msg := ae.Message
	var found []meaning
	for _, m := range meanings {
		if m.applies(op) && m.matches(msg) {
			found = append(found, m)
		}
	}
	switch len(found) {
	case 0:
		return RefusalUnknown
	case 1:
		return found[0].refusal
	}
	// Two readings of one message: the status may favour exactly one.
	var favoured []Refusal
	for _, m := range found {
		if m.status != 0 && m.status == ae.Status {
			favoured = append(favoured, m.refusal)
		}
	}
	if len(favoured) == 1 {
		return favoured[0]
	}
	return RefusalUnknown
}

func (m meaning) applies(op Operation) bool {
	if m.ops == nil {
		return true
	}
	for _, o := range m.ops {
		if o == op {
			return true
		}
	}
	return false
}

func (m meaning) matches(msg string) bool {
	for _, v := range m.vetoes {
		if v.MatchString(msg) {
			return false
		}
	}
	for _, s := range m.says {
		if s.MatchString(msg) {
			return true
		}
	}
	return false
}

// Answer is Snyk's status and message of a refusal, for error messages that
// show the operator exactly what Snyk said ("" when err is not an answer).
func Answer(err error) string {
	var ae *APIError
	if !errors.As(err, &ae) {
		return ""
	}
	return fmt.Sprintf("HTTP %d %q", ae.Status, ae.Message)
}
