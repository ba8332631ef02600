package tenant

import "slices"

// Tenant statuses (seed 002 lifecycle).
const (
	StatusProvisioning = "provisioning"
	StatusTrial        = "trial"
	StatusActive       = "active"
	StatusSuspended    = "suspended"
	StatusDeleted      = "deleted"
	StatusPurged       = "purged"
)

// Statuses lists every status in lifecycle order.
func Statuses() []string {
	return []string{StatusProvisioning, StatusTrial, StatusActive, StatusSuspended, StatusDeleted, StatusPurged}
}

// transitions is the lifecycle: provisioning → trial → active ⇄ suspended →
// deleted → purged. A trial may also be suspended (trial expiry) or activated
// (paid); any live tenant may be deleted; a deleted tenant is restored to the
// status it had (see restore) or purged by the purge job.
var transitions = map[string][]string{
	StatusProvisioning: {StatusTrial, StatusDeleted},
	StatusTrial:        {StatusActive, StatusSuspended, StatusDeleted},
	StatusActive:       {StatusSuspended, StatusDeleted},
	StatusSuspended:    {StatusActive, StatusDeleted},
	StatusDeleted:      {StatusTrial, StatusActive, StatusSuspended, StatusPurged}, // restore or purge
	StatusPurged:       {},
}

// CanTransition reports whether from → to is allowed.
func CanTransition(from, to string) bool { return slices.Contains(transitions[from], to) }

// Serving reports whether a tenant in this status answers its users' requests.
func Serving(status string) bool { return status == StatusTrial || status == StatusActive }
