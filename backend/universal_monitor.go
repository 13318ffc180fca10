package backend

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strings"
	"time"

	"github.com/hashicorp/vault/sdk/logical"

	"github.com/snyk-vault/vault-plugin-secrets-snyk/backend/snyk"
)

// The scheduled check of a Universal Broker deployment: the same look at
// Snyk as a write (references, connections, contexts), every credential's
// SCM check and the client secret at /oauth2/token, every check_period.
// It calls Snyk and the SCMs without the deployment's lock, so that a slow
// upstream never delays a switch or a write, and records its findings only
// if nothing it checked was written meanwhile.

const universalCheckRetry = time.Minute

// checkedState fingerprints what a check looks at: the IDs, the client
// secret and every credential with what its SCM check needs.
func (e *universalEntry) checkedState() string {
	h := sha256.New()
	// A hash's Write never fails.
	_, _ = fmt.Fprintf(h, "%s|%s|%s|%s|%s|%s\n", e.TenantID, e.InstallID, e.DeploymentID, e.ClientID, e.ClientSecret, e.APIURL)
	for _, n := range e.credentialNames() {
		c := e.Credentials[n]
		_, _ = fmt.Fprintf(h, "%s|%s|%s|%s|%s|%s|%t\n", n, c.Type, c.Value, c.SCMAPIURL, c.AzureOrg, c.BitbucketUsername, c.SkipSCMValidation)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// processUniversalCheck runs a due check.
func (m *rotationManager) processUniversalCheck(ctx context.Context, s logical.Storage, name string) {
	b := m.b
	key := universalCheckPrefix + name
	now := b.now().UTC()
	e, err := getUniversal(ctx, s, name)
	if err != nil || e == nil {
		if err != nil {
			m.pushAt(key, now.Add(universalCheckRetry))
		}
		return
	}
	cfg, client, ok := m.configAndClient(ctx, s, key, now)
	if !ok {
		return
	}
	if now.Before(e.nextCheck(cfg, now)) {
		m.pushAt(key, e.nextCheck(cfg, now))
		return
	}
	// Snyk's budget for the lists and the token, the SCM checks' own for
	// the credentials (which never slows a rotation).
	if !m.takeTokens(cfg, now, universalCheckCalls) {
		m.pushAt(key, now.Add(m.tokenWait(cfg)*universalCheckCalls))
		return
	}
	if n := len(e.Credentials); n > 0 && !m.takeSCMTokens(cfg, now, n) {
		m.pushAt(key, now.Add(m.tokenWait(cfg)*time.Duration(n)))
		return
	}
	checked := e.checkedState()
	result, failed := b.checkDeployment(ctx, cfg, client, e, now)

	unlock := b.lockUniversal(name)
	defer unlock()
	fresh, err := b.universalForWrite(ctx, s, name)
	if err != nil || fresh == nil {
		if err != nil {
			m.pushAt(key, now.Add(universalCheckRetry))
		}
		return
	}
	if fresh.checkedState() != checked || fresh.CheckedAt.After(now) {
		// A write changed what was checked (and checked it itself), or
		// recorded a newer check: this result is stale.
		m.scheduleUniversal(fresh, cfg)
		return
	}
	result(fresh)
	if err := putUniversal(ctx, s, fresh); err != nil {
		b.log().Error("could not record a Universal Broker deployment's check", "deployment", name, "error", err)
		m.pushAt(key, now.Add(universalCheckRetry))
		return
	}
	if len(fresh.Problems) > 0 {
		b.log().Warn("Universal Broker deployment check found problems", "deployment", name, "problems", len(fresh.Problems))
	}
	m.scheduleUniversal(fresh, cfg)
	if failed {
		// Snyk did not answer: soon again, not a whole period later.
		m.pushAt(key, now.Add(universalCheckRetry))
	}
}

// checkDeployment runs the checks on a copy of e and returns what applies
// their result to an entry; failed: Snyk could not be asked.
func (b *backend) checkDeployment(ctx context.Context, cfg *snykConfig, client *snyk.Client, e *universalEntry, now time.Time) (apply func(*universalEntry), failed bool) {
	work := e.clone()
	f, err := b.inspectDeployment(ctx, client, work)
	if err != nil {
		failure := fmt.Sprintf("the check at %s could not list the deployment at Snyk: %v", now.Format(time.RFC3339), err)
		return func(target *universalEntry) {
			// Keep what the last check found; say this one failed.
			target.Problems = append(withoutCheckFailures(target.Problems), failure)
		}, true
	}
	for _, n := range work.credentialNames() {
		c := work.Credentials[n]
		res, checked, err := b.checkCredentialSCM(ctx, cfg, work, f, n)
		switch {
		case err != nil:
			c.SCMStatus, c.SCMCheckedAt = scmStatusUnknown, now
			c.SCMProblems = []string{fmt.Sprintf("could not check it at %s: %v", now.Format(time.RFC3339), err)}
		case checked:
			c.recordSCMResult(res, now, cfg.scmExpiryWarning())
		}
	}
	secretErr := b.checkClientSecret(ctx, cfg, work, work.ClientSecret)
	return func(target *universalEntry) {
		for n, c := range work.Credentials {
			if t := target.Credentials[n]; t != nil {
				t.scmHealth = c.scmHealth
			}
		}
		f.record(target, now)
		switch {
		case secretErr == nil:
			target.SecretVerifiedAt = now
		case snyk.Classify(snyk.OpLookup, secretErr) != snyk.NotARefusal:
			target.Problems = append(target.Problems, fmt.Sprintf("Snyk's /oauth2/token refuses CLIENT_SECRET (%s): clients cannot start; "+
				"if the install's secret was replaced outside Vault, write the new one as client_secret", snyk.Answer(secretErr)))
		default:
			target.Problems = append(target.Problems, fmt.Sprintf("could not verify CLIENT_SECRET at /oauth2/token: %v", secretErr))
		}
	}, false
}

// withoutCheckFailures drops the note of an earlier failed check.
func withoutCheckFailures(problems []string) []string {
	out := problems[:0:0]
	for _, p := range problems {
		if !isCheckFailure(p) {
			out = append(out, p)
		}
	}
	return out
}

func isCheckFailure(p string) bool { return strings.HasPrefix(p, "the check at ") }
