package rbac

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"
)

// Condition types and operators (seed 004 PermissionCondition).
const (
	CondTime     = "time_based"
	CondLocation = "location_based"
	CondResource = "resource_based"
	CondCustom   = "custom"

	OpEquals      = "equals"
	OpIn          = "in"
	OpNotIn       = "not_in"
	OpGreaterThan = "greater_than"
	OpLessThan    = "less_than"
)

// Condition limits when a grant applies.
//
//   - time_based: metadata.attribute is "time" (value an RFC 3339 instant),
//     "hour" (0-23) or "weekday" ("mon".."sun"), read in metadata.timezone
//     (default UTC).
//   - location_based: the caller's IP against a CIDR or a list of CIDRs
//     (equals / in: inside one; not_in: inside none).
//   - resource_based: the context attribute metadata.attribute (default
//     "ownerId") against value; the value "$user.id" means the caller.
//   - custom: the context attribute metadata.attribute against value.
type Condition struct {
	Type     string            `json:"type"`
	Operator string            `json:"operator"`
	Value    json.RawMessage   `json:"value"`
	Metadata map[string]string `json:"metadata,omitempty"`
}

// Validate reports what is wrong with a condition, or "".
func (c Condition) Validate() string {
	if !slices.Contains([]string{CondTime, CondLocation, CondResource, CondCustom}, c.Type) {
		return "type must be time_based, location_based, resource_based or custom"
	}
	if !slices.Contains([]string{OpEquals, OpIn, OpNotIn, OpGreaterThan, OpLessThan}, c.Operator) {
		return "operator must be equals, in, not_in, greater_than or less_than"
	}
	if len(c.Value) == 0 {
		return "value is required"
	}
	switch c.Type {
	case CondTime:
		attr := c.attr("time")
		if !slices.Contains([]string{"time", "hour", "weekday"}, attr) {
			return "metadata.attribute of a time_based condition must be time, hour or weekday"
		}
		if tz := c.Metadata["timezone"]; tz != "" {
			if _, err := time.LoadLocation(tz); err != nil {
				return "metadata.timezone must be an IANA time zone"
			}
		}
		if attr == "time" {
			var s string
			if json.Unmarshal(c.Value, &s) != nil {
				return "value of a time condition must be an RFC 3339 time"
			}
			if _, err := time.Parse(time.RFC3339, s); err != nil {
				return "value of a time condition must be an RFC 3339 time"
			}
		}
	case CondLocation:
		if _, err := c.prefixes(); err != nil {
			return err.Error()
		}
		if c.Operator == OpGreaterThan || c.Operator == OpLessThan {
			return "location_based conditions take equals, in or not_in"
		}
	case CondCustom:
		if c.Metadata["attribute"] == "" {
			return "metadata.attribute names the context attribute a custom condition reads"
		}
	}
	return ""
}

func (c Condition) attr(def string) string {
	if a := c.Metadata["attribute"]; a != "" {
		return a
	}
	return def
}

func (c Condition) values() []any {
	var v any
	if err := json.Unmarshal(c.Value, &v); err != nil {
		return nil
	}
	if l, ok := v.([]any); ok {
		return l
	}
	return []any{v}
}

func (c Condition) prefixes() ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, v := range c.values() {
		s, ok := v.(string)
		if !ok {
			return nil, fmt.Errorf("value must be a CIDR or a list of CIDRs")
		}
		if !strings.Contains(s, "/") {
			a, err := netip.ParseAddr(s)
			if err != nil {
				return nil, fmt.Errorf("%q is not an IP address or CIDR", s)
			}
			out = append(out, netip.PrefixFrom(a, a.BitLen()))
			continue
		}
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return nil, fmt.Errorf("%q is not a CIDR", s)
		}
		out = append(out, p.Masked())
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("value must be a CIDR or a list of CIDRs")
	}
	return out, nil
}

// EvalContext is what a condition is judged against.
type EvalContext struct {
	Now    time.Time
	UserID string
	IP     string
	Attrs  map[string]any // the check's context
}

// Eval reports whether the condition holds.
func (c Condition) Eval(e EvalContext) bool {
	switch c.Type {
	case CondTime:
		now := e.Now
		if tz := c.Metadata["timezone"]; tz != "" {
			if loc, err := time.LoadLocation(tz); err == nil {
				now = now.In(loc)
			}
		}
		switch c.attr("time") {
		case "time":
			var s string
			_ = json.Unmarshal(c.Value, &s)
			t, err := time.Parse(time.RFC3339, s)
			if err != nil {
				return false
			}
			return compare(c.Operator, float64(now.Unix()), []any{float64(t.Unix())})
		case "hour":
			return compare(c.Operator, float64(now.Hour()), c.values())
		case "weekday":
			return compare(c.Operator, strings.ToLower(now.Weekday().String()[:3]), c.values())
		}
		return false
	case CondLocation:
		ip, err := netip.ParseAddr(e.IP)
		if err != nil {
			return false
		}
		pfx, err := c.prefixes()
		if err != nil {
			return false
		}
		inside := slices.ContainsFunc(pfx, func(p netip.Prefix) bool { return p.Contains(ip.Unmap()) })
		if c.Operator == OpNotIn {
			return !inside
		}
		return inside
	case CondResource, CondCustom:
		v, ok := e.Attrs[c.attr("ownerId")]
		if !ok {
			return c.Operator == OpNotIn
		}
		want := c.values()
		for i, w := range want {
			if w == "$user.id" {
				want[i] = e.UserID
			}
		}
		return compare(c.Operator, v, want)
	}
	return false
}

// compare applies an operator between a value and the condition's values.
func compare(op string, got any, want []any) bool {
	eq := func(a, b any) bool { return fmt.Sprint(a) == fmt.Sprint(b) }
	switch op {
	case OpEquals:
		return len(want) == 1 && eq(got, want[0])
	case OpIn:
		return slices.ContainsFunc(want, func(w any) bool { return eq(got, w) })
	case OpNotIn:
		return !slices.ContainsFunc(want, func(w any) bool { return eq(got, w) })
	case OpGreaterThan, OpLessThan:
		if len(want) != 1 {
			return false
		}
		g, ok1 := number(got)
		w, ok2 := number(want[0])
		if !ok1 || !ok2 {
			gs, ws := fmt.Sprint(got), fmt.Sprint(want[0])
			if op == OpGreaterThan {
				return gs > ws
			}
			return gs < ws
		}
		if op == OpGreaterThan {
			return g > w
		}
		return g < w
	}
	return false
}

func number(v any) (float64, bool) {
	switch x := v.(type) {
	case float64:
		return x, true
	case int:
		return float64(x), true
	case int64:
		return float64(x), true
	case json.Number:
		f, err := x.Float64()
		return f, err == nil
	}
	return 0, false
}
