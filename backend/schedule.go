package backend

import (
	"fmt"
	"time"

	"github.com/hashicorp/vault/sdk/rotation"
)

// policy is an integration's effective rotation settings: its overrides on
// top of the mount's defaults.
type policy struct {
	TTL                      time.Duration
	RotationPeriod           time.Duration
	RotationSchedule         string
	RotationWindow           time.Duration
	ProvisionAhead           time.Duration
	DisableAutomatedRotation bool
}

// rotationOverrides are the rotation settings an integration or a
// Universal Broker deployment may set for itself; zero values inherit the
// config's defaults. Embedded, so their JSON keys sit at the entry's top
// level.
type rotationOverrides struct {
	TTL                      time.Duration `json:"ttl,omitempty"`
	RotationPeriod           time.Duration `json:"rotation_period,omitempty"`
	RotationSchedule         string        `json:"rotation_schedule,omitempty"`
	RotationWindow           time.Duration `json:"rotation_window,omitempty"`
	ProvisionAhead           time.Duration `json:"provision_ahead,omitempty"`
	DisableAutomatedRotation bool          `json:"disable_automated_rotation"`
}

// policy is the effective policy: the overrides on top of cfg's defaults.
func (o rotationOverrides) policy(cfg *snykConfig) policy {
	p := policy{
		TTL:                      cfg.TTL,
		RotationPeriod:           cfg.RotationPeriod,
		ProvisionAhead:           cfg.ProvisionAhead,
		DisableAutomatedRotation: o.DisableAutomatedRotation,
	}
	if o.TTL > 0 {
		p.TTL = o.TTL
	}
	if o.ProvisionAhead > 0 {
		p.ProvisionAhead = o.ProvisionAhead
	}
	switch {
	case o.RotationSchedule != "":
		p.RotationSchedule = o.RotationSchedule
		p.RotationWindow = o.RotationWindow
		p.RotationPeriod = 0
	case o.RotationPeriod > 0:
		p.RotationPeriod = o.RotationPeriod
	}
	return p
}

func (p policy) schedule() (*rotation.RotationSchedule, error) {
	rs := &rotation.RotationSchedule{
		RotationPeriod:   p.RotationPeriod,
		RotationSchedule: p.RotationSchedule,
		RotationWindow:   p.RotationWindow,
	}
	if p.RotationSchedule != "" {
		sched, err := rotation.DefaultScheduler.Parse(p.RotationSchedule)
		if err != nil {
			return nil, err
		}
		rs.Schedule = sched
	}
	return rs, nil
}

// nextRotation is the first scheduled switch after from.
func (p policy) nextRotation(from time.Time) (time.Time, error) {
	rs, err := p.schedule()
	if err != nil {
		return time.Time{}, err
	}
	return rotation.DefaultScheduler.NextRotationTimeFromInput(rs, from).UTC(), nil
}

// problems returns what is wrong with the effective policy, each naming the
// field and the fix.
func (p policy) problems(now time.Time) []string {
	var out []string
	if p.TTL <= 0 {
		out = append(out, "ttl must be a positive duration such as 1h")
	}
	if p.RotationSchedule != "" {
		if _, err := rotation.DefaultScheduler.Parse(p.RotationSchedule); err != nil {
			out = append(out, fmt.Sprintf("rotation_schedule %q is not a 5-field cron expression (minute hour day-of-month month day-of-week, UTC), e.g. \"0 3 1 */3 *\": %v", p.RotationSchedule, err))
			return out
		}
		if p.RotationWindow != 0 {
			if err := rotation.DefaultScheduler.ValidateRotationWindow(int(p.RotationWindow.Seconds())); err != nil {
				out = append(out, fmt.Sprintf("rotation_window must be at least 1h (3600 seconds), got %s", p.RotationWindow))
			}
		}
		// Provisioning must happen after the previous switch, so provision
		// ahead has to fit between two consecutive cron times.
		first, _ := p.nextRotation(now)
		second, _ := p.nextRotation(first)
		if gap := second.Sub(first); p.ProvisionAhead >= gap {
			out = append(out, fmt.Sprintf("provision_ahead (%s) must be shorter than the interval between scheduled rotations (%s): lower provision_ahead or space out rotation_schedule", p.ProvisionAhead, gap))
		}
		return out
	}
	if p.RotationPeriod <= 0 {
		out = append(out, "rotation_period must be a positive duration such as 2160h")
	} else if p.ProvisionAhead >= p.RotationPeriod {
		out = append(out, fmt.Sprintf("provision_ahead (%s) must be shorter than rotation_period (%s): the provisional token is obtained that long before each switch", p.ProvisionAhead, p.RotationPeriod))
	}
	return out
}

// nextAction is when the integration next needs the engine, if ever.
//
// A provisional token Vault holds is always switched at next_vault_rotation,
// even with disable_automated_rotation: left alone it would block every
// rotation in its Snyk group, and there is no API to cancel it.
func (e *integrationEntry) nextAction(p policy) (time.Time, bool) {
	if e.TokenOwner != "" {
		return time.Time{}, false // a sharer: its owner rotates the token
	}
	if e.NextVaultRotation.IsZero() || (p.DisableAutomatedRotation && e.ProvisionalToken == "") {
		return time.Time{}, false
	}
	if !e.RetryAt.IsZero() {
		return e.RetryAt, true
	}
	if e.ProvisionalToken != "" {
		return e.NextVaultRotation, true
	}
	return e.NextVaultRotation.Add(-p.ProvisionAhead), true
}

// backOff schedules the next attempt of a failed step: 10 s, doubling, at
// most 30 minutes.
func (e *integrationEntry) backOff(now time.Time) {
	e.RetryAt = backOff(&e.Failures, now)
}

// backOff counts one more failure and returns when to try again.
func backOff(failures *int, now time.Time) time.Time {
	*failures++
	backoff := firstFailureBackoff << (*failures - 1)
	if backoff > maxFailureBackoff || backoff <= 0 {
		backoff = maxFailureBackoff
	}
	return now.Add(backoff)
}

// switchNotBefore is the earliest instant the served token can change by a
// scheduled switch. A switch needs a held provisional token and is retried at
// RetryAt after a failure; without a provisional token, provisioning comes
// first and the switch follows it by provision_ahead at the earliest.
func (e *integrationEntry) switchNotBefore(p policy, now time.Time) time.Time {
	at := e.NextVaultRotation
	if e.ProvisionalToken != "" {
		if e.RetryAt.After(at) {
			at = e.RetryAt
		}
		return at
	}
	if earliest := now.Add(p.ProvisionAhead); earliest.After(at) {
		at = earliest
	}
	return at
}
