// Package actor says who is calling: an operator, a tenant user, a service,
// or the system itself, and which tenant the request acts in.
package actor

import "context"

// Type is the kind of principal.
type Type string

// Principal types.
const (
	TypeUser     Type = "user"
	TypeOperator Type = "operator"
	TypeService  Type = "service"
	TypeSystem   Type = "system"
)

// Actor is the authenticated caller of a request.
type Actor struct {
	Type           Type
	ID             string // user or operator id; service name; "system"
	TenantID       string // tenant the credential belongs to; empty for operators
	Email          string
	Username       string
	Roles          []string
	Permissions    []string
	SessionID      string
	TokenID        string   // jti
	KeyID          string   // set when the caller used an API key: Permissions are then its scopes
	KeyRate        int      // the key's own requests per minute (0: none)
	KeyTokenRate   int      // the key's own AI-gateway tokens per minute (0: none)
	KeyModels      []string // the key's AI model allowlist (empty: any)
	KeyBudget      *int64   // the key's AI spending budget in micro-units (nil: none)
	MFA            bool     // the session was started with a second factor
	ImpersonatedBy string   // the operator acting as this user, if any
	ReadOnly       bool     // an impersonation that may only read
	SourceIP       string
	UserAgent      string
	RequestID      string
}

// IsOperator reports whether the actor is a platform operator.
func (a *Actor) IsOperator() bool { return a != nil && a.Type == TypeOperator }

// HasRole reports whether the actor holds the role.
func (a *Actor) HasRole(role string) bool {
	if a == nil {
		return false
	}
	for _, r := range a.Roles {
		if r == role {
			return true
		}
	}
	return false
}

type ctxKey struct{}

// With returns a context carrying the actor.
func With(ctx context.Context, a *Actor) context.Context {
	return context.WithValue(ctx, ctxKey{}, a)
}

// From returns the actor in ctx, or nil for an anonymous request.
func From(ctx context.Context) *Actor {
	a, _ := ctx.Value(ctxKey{}).(*Actor)
	return a
}

// System is the actor for background jobs and CLI commands.
func System(what string) *Actor {
	return &Actor{Type: TypeSystem, ID: what}
}
