package backend

import (
	"fmt"
	"strings"
	"sync"

	"github.com/hashicorp/vault/sdk/logical"
)

// createClaims makes the mount-wide check "no other entry manages this Snyk
// integration" hold for creates running at the same time under different
// names: the check reads storage, so two creates of one Snyk integration
// (an org has one integration per type) could both pass it before either
// stored its entry, and then both enable, provision or adopt. A create
// claims its org and type before anything else; a second create of the same
// pair waits for nothing and is refused.
type createClaims struct {
	mu     sync.Mutex
	holder map[string]string // "<org>/<type>" -> the entry being created
}

// claim reserves org+scm for entry; it returns a release func, or the entry
// already holding the claim.
func (c *createClaims) claim(org, scm, entry string) (release func(), holder string) {
	key := strings.ToLower(org) + "/" + scm
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.holder == nil {
		c.holder = map[string]string{}
	}
	if h, ok := c.holder[key]; ok && h != entry {
		return nil, h
	}
	c.holder[key] = entry
	return func() {
		c.mu.Lock()
		defer c.mu.Unlock()
		if c.holder[key] == entry {
			delete(c.holder, key)
		}
	}, ""
}

// claimCreate claims e's Snyk org and integration type for the create, or
// returns the refusal naming the create already under way.
func (b *backend) claimCreate(e *integrationEntry) (release func(), refusal *logical.Response) {
	release, holder := b.creates.claim(e.OrgID, e.SCM, queueKey(e.Name, e.SCM))
	if holder != "" {
		return nil, logical.ErrorResponse(fmt.Sprintf(
			"integrations/%s is being created for the same Snyk integration (org %s, %s) right now: one Snyk integration can be managed by one entry; "+
				"retry when that create has finished (read integrations/%s), or clone it with integrations/%s/clone", holder, e.OrgID, e.SCM, holder, holder))
	}
	return release, nil
}
