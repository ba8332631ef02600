package tenant

import (
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestStatuses(t *testing.T) {
	got := Statuses()
	want := []string{"provisioning", "trial", "active", "suspended", "deleted", "purged"}
	if diff := cmp.Diff(got, want); diff != "" {
		t.Errorf("Statuses() mismatch (-got +want):\n%s", diff)
	}
}

func TestCanTransition(t *testing.T) {
	// allowed is the whole lifecycle; every pair not listed must be refused.
	allowed := map[[2]string]bool{
		{"provisioning", "trial"}:   true,
		{"provisioning", "deleted"}: true,
		{"trial", "active"}:         true,
		{"trial", "suspended"}:      true,
		{"trial", "deleted"}:        true,
		{"active", "suspended"}:     true,
		{"active", "deleted"}:       true,
		{"suspended", "active"}:     true,
		{"suspended", "deleted"}:    true,
		{"deleted", "trial"}:        true,
		{"deleted", "active"}:       true,
		{"deleted", "suspended"}:    true,
		{"deleted", "purged"}:       true,
	}
	statuses := Statuses()
	unknown := []string{"", "unknown", "ACTIVE", "Trial", " active", "active ", "purge"}
	all := append(append([]string{}, statuses...), unknown...)

	var got, want []string // the allowed pairs, for a readable diff
	seen := 0
	for _, from := range all {
		for _, to := range all {
			if CanTransition(from, to) {
				got = append(got, from+"→"+to)
			}
			if allowed[[2]string{from, to}] {
				want = append(want, from+"→"+to)
				seen++
			}
			if g, w := CanTransition(from, to), allowed[[2]string{from, to}]; g != w {
				t.Errorf("CanTransition(%q, %q) = %v, want %v", from, to, g, w)
			}
		}
	}
	if seen != len(allowed) {
		t.Errorf("only %d of the %d allowed transitions are between Statuses()", seen, len(allowed))
	}
	if diff := cmp.Diff(got, want); diff != "" {
		t.Errorf("allowed transitions mismatch (-got +want):\n%s", diff)
	}
}

func TestServing(t *testing.T) {
	tests := []struct {
		status string
		want   bool
	}{
		{StatusProvisioning, false},
		{StatusTrial, true},
		{StatusActive, true},
		{StatusSuspended, false},
		{StatusDeleted, false},
		{StatusPurged, false},
		{"", false},
		{"ACTIVE", false},
		{"Trial", false},
		{"unknown", false},
	}
	for _, tt := range tests {
		if got := Serving(tt.status); got != tt.want {
			t.Errorf("Serving(%q) = %v, want %v", tt.status, got, tt.want)
		}
	}
}
