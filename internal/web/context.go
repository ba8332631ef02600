package web

import (
	"context"

	"github.com/tenantgate/tenantgate/internal/tenant"
)

type ctxKey int

const (
	keyRequestID ctxKey = iota
	keyTraceID
	keyTenant
	keyResolveErr
)

func requestID(ctx context.Context) string { s, _ := ctx.Value(keyRequestID).(string); return s }

func traceID(ctx context.Context) string { s, _ := ctx.Value(keyTraceID).(string); return s }

// currentTenant is the tenant the request acts in, after resolution and the gate.
func currentTenant(ctx context.Context) *tenant.Tenant {
	t, _ := ctx.Value(keyTenant).(*tenant.Tenant)
	return t
}
