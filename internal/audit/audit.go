// Package audit records seed 004's AuditEvent for every mutation, login and
// failed login, inside the same transaction as the change it describes, and
// lists them per tenant. Secrets never reach a stored event: before/after
// payloads pass through Redact.
package audit

import (
	"context"
	"encoding/json"
	"strings"
	"time"

	"github.com/google/uuid"
	"gorm.io/gorm"

	"github.com/tenantgate/tenantgate/internal/actor"
	"github.com/tenantgate/tenantgate/internal/errs"
	"github.com/tenantgate/tenantgate/internal/store"
)

// Outcomes.
const (
	Success = "success"
	Failure = "failure"
	Partial = "partial"
)

// ServiceID names this server in every event.
const ServiceID = "tenantgate"

// Event is one audit record (seed 004 AuditEvent).
type Event struct {
	TenantID   string     `gorm:"primaryKey" json:"tenantId"`
	ID         string     `gorm:"primaryKey" json:"id"`
	ActorType  string     `json:"actorType"`
	ActorID    *string    `json:"userId,omitempty"`
	ServiceID  string     `json:"serviceId"`
	EventType  string     `json:"eventType"`
	Resource   string     `json:"resource"`
	ResourceID *string    `json:"resourceId,omitempty"`
	Action     string     `json:"action"`
	Outcome    string     `json:"outcome"`
	OccurredAt time.Time  `json:"timestamp"`
	SourceIP   *string    `json:"sourceIp,omitempty"`
	UserAgent  *string    `json:"userAgent,omitempty"`
	RequestID  *string    `json:"requestId,omitempty"`
	Metadata   store.JSON `json:"metadata"`
	BeforeData store.JSON `json:"beforeData,omitempty"`
	AfterData  store.JSON `json:"afterData,omitempty"`
}

// TableName maps Event to audit_events.
func (Event) TableName() string { return "audit_events" }

// TenantOwned marks audit events as tenant data.
func (Event) TenantOwned() {}

// Entry is what a caller says about one event; Record fills in the rest.
type Entry struct {
	TenantID   string // empty: the scope's tenant, or the platform for operators
	EventType  string // e.g. "user.created"
	Resource   string // e.g. "user"
	ResourceID string
	Action     string // create, update, delete, login, ...
	Outcome    string // default success
	Metadata   map[string]any
	Before     any
	After      any
}

// Record writes one event in tx. The actor (who, from where, which request)
// comes from ctx.
func Record(ctx context.Context, tx *gorm.DB, e Entry) error {
	ev, err := build(ctx, e)
	if err != nil {
		return err
	}
	return tx.Create(ev).Error
}

func build(ctx context.Context, e Entry) (*Event, error) {
	a := actor.From(ctx)
	if a == nil {
		a = actor.System("anonymous")
	}
	tenantID := e.TenantID
	if tenantID == "" {
		tenantID = store.TenantFrom(ctx)
	}
	if tenantID == "" {
		tenantID = store.PlatformTenantID
	}
	outcome := e.Outcome
	if outcome == "" {
		outcome = Success
	}
	ev := &Event{
		TenantID:   tenantID,
		ID:         uuid.Must(uuid.NewV7()).String(),
		ActorType:  string(a.Type),
		ActorID:    nonEmpty(a.ID),
		ServiceID:  ServiceID,
		EventType:  e.EventType,
		Resource:   e.Resource,
		ResourceID: nonEmpty(e.ResourceID),
		Action:     e.Action,
		Outcome:    outcome,
		OccurredAt: time.Now().UTC(),
		SourceIP:   nonEmpty(a.SourceIP),
		UserAgent:  nonEmpty(truncate(a.UserAgent, 512)),
		RequestID:  nonEmpty(a.RequestID),
	}
	meta := map[string]any{}
	for k, v := range e.Metadata {
		meta[k] = v
	}
	if a.Type == actor.TypeOperator && a.TenantID == "" && tenantID != store.PlatformTenantID {
		meta["crossTenant"] = true
	}
	if a.SessionID != "" {
		meta["sessionId"] = a.SessionID
	}
	if a.ImpersonatedBy != "" {
		meta["impersonatedBy"] = a.ImpersonatedBy
	}
	var err error
	if ev.Metadata, err = marshalRedacted(meta); err != nil {
		return nil, err
	}
	if e.Before != nil {
		if ev.BeforeData, err = marshalRedacted(e.Before); err != nil {
			return nil, err
		}
	}
	if e.After != nil {
		if ev.AfterData, err = marshalRedacted(e.After); err != nil {
			return nil, err
		}
	}
	return ev, nil
}

// secretKeys are field names whose values never enter an audit payload.
var secretKeys = []string{"password", "secret", "token", "hash", "apikey", "privatekey", "credential", "otp", "recovery"}

// IsSecretKey reports whether a JSON field name names a secret.
func IsSecretKey(k string) bool {
	k = strings.ToLower(strings.NewReplacer("_", "", "-", "").Replace(k))
	for _, s := range secretKeys {
		if strings.Contains(k, s) {
			return true
		}
	}
	return false
}

// Redact returns v (as decoded JSON) with every secret field replaced.
func Redact(v any) any {
	switch x := v.(type) {
	case map[string]any:
		out := make(map[string]any, len(x))
		for k, val := range x {
			if IsSecretKey(k) {
				out[k] = "[REDACTED]"
				continue
			}
			out[k] = Redact(val)
		}
		return out
	case []any:
		out := make([]any, len(x))
		for i, val := range x {
			out[i] = Redact(val)
		}
		return out
	default:
		return v
	}
}

func marshalRedacted(v any) (store.JSON, error) {
	raw, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	var generic any
	if err := json.Unmarshal(raw, &generic); err != nil {
		return nil, err
	}
	out, err := json.Marshal(Redact(generic))
	return store.JSON(out), err
}

// Filter narrows a listing.
type Filter struct {
	From, To   *time.Time
	ActorID    string
	Resource   string
	ResourceID string
	Action     string
	EventType  string
	Outcome    string
	TenantID   string // operators only: one tenant; empty: all
}

// List returns events newest first. A tenant scope sees only its tenant; a
// platform scope sees all (or Filter.TenantID).
func List(ctx context.Context, s *store.Store, f Filter, p store.Page) ([]Event, *string, error) {
	var out []Event
	err := s.Tx(ctx, func(tx *gorm.DB) error {
		q := tx.Model(&Event{})
		if f.TenantID != "" {
			q = q.Where("tenant_id = ?", f.TenantID)
		}
		if f.From != nil {
			q = q.Where("occurred_at >= ?", f.From.UTC())
		}
		if f.To != nil {
			q = q.Where("occurred_at < ?", f.To.UTC())
		}
		for col, v := range map[string]string{"actor_id": f.ActorID, "resource": f.Resource, "resource_id": f.ResourceID,
			"action": f.Action, "event_type": f.EventType, "outcome": f.Outcome} {
			if v != "" {
				q = q.Where(col+" = ?", v)
			}
		}
		return p.Apply(q, "id").Find(&out).Error
	})
	if err != nil {
		return nil, nil, errs.Internal(err, "read the audit log")
	}
	items, next := store.Trim(out, p, func(e Event) string { return e.ID })
	return items, next, nil
}

func nonEmpty(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

// truncate keeps at most n bytes of s, never cutting a character in half
// (PostgreSQL refuses invalid UTF-8).
func truncate(s string, n int) string {
	if len(s) > n {
		return strings.ToValidUTF8(s[:n], "")
	}
	return s
}

// Incoming is an audit event sent by another service (seed 004 AuditEvent).
type Incoming struct {
	TenantID   string         `json:"tenantId"`
	UserID     string         `json:"userId"`
	ServiceID  string         `json:"serviceId"`
	EventType  string         `json:"eventType"`
	Resource   string         `json:"resource"`
	ResourceID string         `json:"resourceId"`
	Action     string         `json:"action"`
	Outcome    string         `json:"outcome"`
	Timestamp  *time.Time     `json:"timestamp"`
	SourceIP   string         `json:"sourceIp"`
	UserAgent  string         `json:"userAgent"`
	RequestID  string         `json:"requestId"`
	Metadata   map[string]any `json:"metadata"`
	BeforeData any            `json:"beforeData"`
	AfterData  any            `json:"afterData"`
}

// Validate reports the problems of an incoming event.
func (in Incoming) Validate(f errs.Fields, prefix string) {
	if !store.ValidID(in.TenantID) {
		f.Add(prefix+"tenantId", "must be a tenant id")
	}
	for name, v := range map[string]string{"eventType": in.EventType, "resource": in.Resource, "action": in.Action} {
		if v == "" || len(v) > 100 {
			f.Add(prefix+name, "is required (at most 100 characters)")
		}
	}
	if in.Outcome != "" && in.Outcome != Success && in.Outcome != Failure && in.Outcome != Partial {
		f.Add(prefix+"outcome", "must be success, failure or partial")
	}
	for name, v := range map[string]string{"userId": in.UserID, "resourceId": in.ResourceID, "sourceIp": in.SourceIP, "userAgent": in.UserAgent, "requestId": in.RequestID} {
		if len(v) > 512 {
			f.Add(prefix+name, "must be at most 512 characters")
		}
	}
}

// Ingest stores an event another service sent. The service that sent it
// (authenticated, not the body's claim) is its serviceId; secrets in the
// payloads are redacted as for our own events.
func Ingest(tx *gorm.DB, service string, in Incoming) (*Event, error) {
	ev := &Event{TenantID: in.TenantID, ID: uuid.Must(uuid.NewV7()).String(), ActorType: string(actor.TypeService),
		ActorID: nonEmpty(in.UserID), ServiceID: service, EventType: in.EventType, Resource: in.Resource,
		ResourceID: nonEmpty(in.ResourceID), Action: in.Action, Outcome: in.Outcome, OccurredAt: time.Now().UTC(),
		SourceIP: nonEmpty(in.SourceIP), UserAgent: nonEmpty(in.UserAgent), RequestID: nonEmpty(in.RequestID)}
	if ev.Outcome == "" {
		ev.Outcome = Success
	}
	if in.UserID != "" {
		ev.ActorType = string(actor.TypeUser)
	}
	if in.Timestamp != nil && !in.Timestamp.IsZero() {
		ev.OccurredAt = in.Timestamp.UTC()
	}
	meta := map[string]any{}
	for k, v := range in.Metadata {
		meta[k] = v
	}
	if in.ServiceID != "" && in.ServiceID != service {
		meta["claimedServiceId"] = in.ServiceID
	}
	var err error
	if ev.Metadata, err = marshalRedacted(meta); err != nil {
		return nil, err
	}
	if in.BeforeData != nil {
		if ev.BeforeData, err = marshalRedacted(in.BeforeData); err != nil {
			return nil, err
		}
	}
	if in.AfterData != nil {
		if ev.AfterData, err = marshalRedacted(in.AfterData); err != nil {
			return nil, err
		}
	}
	return ev, tx.Create(ev).Error
}
