package rbac

import (
	"encoding/json"
	"testing"
	"time"
)

func cond(typ, op string, value any, meta map[string]string) Condition {
	raw, _ := json.Marshal(value)
	return Condition{Type: typ, Operator: op, Value: raw, Metadata: meta}
}

func TestConditionValidate(t *testing.T) {
	for _, tc := range []struct {
		c  Condition
		ok bool
	}{
		{cond(CondLocation, OpIn, "10.0.0.0/8", nil), true},
		{cond(CondLocation, OpIn, []string{"10.0.0.0/8", "::1"}, nil), true},
		{cond(CondLocation, OpIn, "nope", nil), false},
		{cond(CondLocation, OpGreaterThan, "10.0.0.0/8", nil), false},
		{cond(CondTime, OpLessThan, "2030-01-01T00:00:00Z", nil), true},
		{cond(CondTime, OpLessThan, "tomorrow", nil), false},
		{cond(CondTime, OpIn, []string{"mon"}, map[string]string{"attribute": "weekday", "timezone": "Europe/Berlin"}), true},
		{cond(CondTime, OpIn, []string{"mon"}, map[string]string{"attribute": "weekday", "timezone": "Mars/Base"}), false},
		{cond(CondTime, OpIn, []string{"mon"}, map[string]string{"attribute": "season"}), false},
		{cond(CondCustom, OpEquals, "gold", nil), false}, // no attribute
		{cond(CondCustom, OpEquals, "gold", map[string]string{"attribute": "tier"}), true},
		{cond("magic", OpEquals, 1, nil), false},
		{cond(CondResource, "like", 1, nil), false},
		{Condition{Type: CondResource, Operator: OpEquals}, false},
	} {
		if got := tc.c.Validate() == ""; got != tc.ok {
			t.Errorf("Validate(%+v) ok = %v, want %v (%q)", tc.c, got, tc.ok, tc.c.Validate())
		}
	}
}

func TestConditionEval(t *testing.T) {
	// Monday 2026-11-23 10:30 UTC.
	now := time.Date(2026, 11, 23, 10, 30, 0, 0, time.UTC)
	e := EvalContext{Now: now, UserID: "u1", IP: "10.1.2.3", Attrs: map[string]any{"ownerId": "u1", "tier": "gold", "level": float64(5)}}
	for _, tc := range []struct {
		name string
		c    Condition
		want bool
	}{
		{"ip in", cond(CondLocation, OpIn, "10.0.0.0/8", nil), true},
		{"ip not in", cond(CondLocation, OpNotIn, "10.0.0.0/8", nil), false},
		{"ip list", cond(CondLocation, OpIn, []string{"192.168.0.0/16", "10.1.2.3"}, nil), true},
		{"hour in", cond(CondTime, OpIn, []int{9, 10, 11}, map[string]string{"attribute": "hour"}), true},
		{"hour before", cond(CondTime, OpLessThan, 9, map[string]string{"attribute": "hour"}), false},
		{"hour in Tokyo", cond(CondTime, OpEquals, 19, map[string]string{"attribute": "hour", "timezone": "Asia/Tokyo"}), true},
		{"weekday", cond(CondTime, OpIn, []string{"mon", "tue"}, map[string]string{"attribute": "weekday"}), true},
		{"weekend", cond(CondTime, OpIn, []string{"sat", "sun"}, map[string]string{"attribute": "weekday"}), false},
		{"before deadline", cond(CondTime, OpLessThan, "2026-12-01T00:00:00Z", nil), true},
		{"after start", cond(CondTime, OpGreaterThan, "2026-12-01T00:00:00Z", nil), false},
		{"owner is me", cond(CondResource, OpEquals, "$user.id", nil), true},
		{"owner in list", cond(CondResource, OpIn, []string{"x", "$user.id"}, nil), true},
		{"custom equals", cond(CondCustom, OpEquals, "gold", map[string]string{"attribute": "tier"}), true},
		{"custom not_in", cond(CondCustom, OpNotIn, []string{"gold"}, map[string]string{"attribute": "tier"}), false},
		{"custom greater", cond(CondCustom, OpGreaterThan, 3, map[string]string{"attribute": "level"}), true},
		{"custom less", cond(CondCustom, OpLessThan, 3, map[string]string{"attribute": "level"}), false},
		{"missing attribute", cond(CondCustom, OpEquals, "x", map[string]string{"attribute": "absent"}), false},
		{"missing attribute not_in", cond(CondCustom, OpNotIn, []string{"x"}, map[string]string{"attribute": "absent"}), true},
	} {
		if got := tc.c.Eval(e); got != tc.want {
			t.Errorf("%s: Eval = %v, want %v", tc.name, got, tc.want)
		}
	}
	if cond(CondLocation, OpIn, "10.0.0.0/8", nil).Eval(EvalContext{Now: now, IP: "not-an-ip"}) {
		t.Error("an unparseable caller address satisfied a location condition")
	}
}

func TestMatches(t *testing.T) {
	for _, tc := range []struct {
		granted, want string
		ok            bool
	}{
		{"user:read", "user:read", true}, {"user:*", "user:delete", true}, {"user:*", "users:read", false},
		{"user:read", "user:delete", false}, {"*", "user:read", false},
	} {
		if got := matches(tc.granted, tc.want); got != tc.ok {
			t.Errorf("matches(%q, %q) = %v, want %v", tc.granted, tc.want, got, tc.ok)
		}
	}
}
