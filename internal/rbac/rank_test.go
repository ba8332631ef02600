package rbac

import (
	"testing"

	"github.com/google/go-cmp/cmp"
)

// TestPermissionRank: a permission needs the lowest built-in role holding
// it; a built-in role's grants need exactly its rank.
func TestPermissionRank(t *testing.T) {
	for _, c := range []struct {
		perm string
		want int
	}{
		{"self:read", 10},
		{"ai:invoke", 10},
		{"billing:manage", 20},
		{"role:read", 20},
		{"audit:read", 30},
		{"user:update", 30},
		{"sso:manage", 40},
		{"billing:*", 20},
		{"user:*", 30},
		{"sso:*", 40},
		{"made:up", 40},
		{"nothing:*", 40},
	} {
		if got := PermissionRank(c.perm); got != c.want {
			t.Errorf("PermissionRank(%s) = %d, want %d", c.perm, got, c.want)
		}
	}
	got := map[string]int{}
	want := map[string]int{}
	for _, name := range TenantRoles() {
		got[name] = grantsRank(builtinRecord(name).Grants)
		want[name] = RoleRank(name)
		held := map[string]bool{}
		for _, p := range builtins[name].Permissions {
			held[string(p)] = true
		}
		if c := coveredRank(func(p string) bool { return held[p] }); c != RoleRank(name) {
			t.Errorf("a holder of exactly %s acts with rank %d, want %d", name, c, RoleRank(name))
		}
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("built-in roles' grants rank (-want +got):\n%s", diff)
	}
}
