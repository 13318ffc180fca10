package scm

import (
	"slices"
	"testing"
	"time"
)

func TestGitHubScopeImplication(t *testing.T) {
	tests := []struct {
		have []string
		want string
		ok   bool
	}{
		{[]string{"repo"}, "repo", true},
		{[]string{"repo"}, "public_repo", true},
		{[]string{"repo"}, "repo:status", true},
		{[]string{"repo"}, "repo_deployment", true},
		{[]string{"repo"}, "repo:invite", true},
		{[]string{"repo"}, "security_events", true},
		{[]string{"public_repo"}, "repo", false},
		{[]string{"admin:org"}, "read:org", true},
		{[]string{"write:org"}, "read:org", true},
		{[]string{"read:org"}, "write:org", false},
		{[]string{"admin:repo_hook"}, "read:repo_hook", true},
		{[]string{"write:repo_hook"}, "admin:repo_hook", false},
		{[]string{"admin:org"}, "admin:repo_hook", false},
		{nil, "repo", false},
	}
	for _, tc := range tests {
		if got := githubSatisfied(tc.have, tc.want); got != tc.ok {
			t.Errorf("githubSatisfied(%q, %q) = %v, want %v", tc.have, tc.want, got, tc.ok)
		}
	}
	if got := githubAncestors("read:org"); !slices.Equal(got, []string{"admin:org", "write:org"}) {
		t.Errorf("githubAncestors(read:org) = %q", got)
	}
	if got := parseGitHubScopes(" repo,  read:org ,,admin:repo_hook "); !slices.Equal(got, []string{"repo", "read:org", "admin:repo_hook"}) {
		t.Errorf("parseGitHubScopes = %q", got)
	}
}

func TestParseGitHubExpiry(t *testing.T) {
	tests := []struct {
		in   string
		want time.Time
		ok   bool
	}{
		{"2022-08-14 08:15:54 UTC", time.Date(2022, 8, 14, 8, 15, 54, 0, time.UTC), true},
		{"2027-03-31 00:00:00 +0900", time.Date(2027, 3, 30, 15, 0, 0, 0, time.UTC), true},
		{"2027-03-31T00:00:00Z", time.Time{}, false},
		{"", time.Time{}, false},
	}
	for _, tc := range tests {
		got, ok := parseGitHubExpiry(tc.in)
		if ok != tc.ok || !got.Equal(tc.want) {
			t.Errorf("parseGitHubExpiry(%q) = %v, %v; want %v, %v", tc.in, got, ok, tc.want, tc.ok)
		}
	}
}
