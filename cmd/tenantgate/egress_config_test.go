package main

import (
	"testing"

	"github.com/google/go-cmp/cmp"
)

// TestPrivateEgressSwitch: the switch's new name and its former one both
// turn it on; it is off by default.
func TestPrivateEgressSwitch(t *testing.T) {
	got, want := map[string]bool{}, map[string]bool{"none": false, "new name": true, "former name": true, "new name off": false}
	for name, env := range map[string]map[string]string{
		"none":         {},
		"new name":     {"TENANTGATE_ALLOW_PRIVATE_EGRESS": "true"},
		"former name":  {"TENANTGATE_GATEWAY_ALLOW_PRIVATE_UPSTREAMS": "true"},
		"new name off": {"TENANTGATE_ALLOW_PRIVATE_EGRESS": "false"},
	} {
		c := loadConfig(func(k string) string { return env[k] })
		if err := c.validate(); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		got[name] = c.AllowPrivateEgress
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("AllowPrivateEgress (-want +got):\n%s", diff)
	}
}
