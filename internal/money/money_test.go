package money

import "testing"

func TestParseAndString(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want Micros
		out  string
	}{
		{"10", 10_000_000, "10.00"}, {"10.5", 10_500_000, "10.50"}, {"0.000001", 1, "0.000001"},
		{"0", 0, "0.00"}, {"123.456789", 123_456_789, "123.456789"}, {" 7.25 ", 7_250_000, "7.25"},
	} {
		got, err := Parse(tc.in)
		if err != nil || got != tc.want {
			t.Errorf("Parse(%q) = %d, %v; want %d", tc.in, got, err, tc.want)
		}
		if s := got.String(); s != tc.out {
			t.Errorf("%d.String() = %q, want %q", got, s, tc.out)
		}
	}
	for _, bad := range []string{"", ".5", "5.", "-1", "1.1234567", "1e3", "abc", "1,5", "99999999999999999999"} {
		if _, err := Parse(bad); err == nil {
			t.Errorf("Parse(%q) succeeded", bad)
		}
	}
	if s := Micros(-1_500_000).String(); s != "-1.50" {
		t.Errorf("negative: %q", s)
	}
}
