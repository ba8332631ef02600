// Package money keeps amounts as exact integers of micro-units (1/1,000,000
// of the currency unit) and converts them to and from decimal strings; no
// floating point ever touches an amount.
package money

import (
	"errors"
	"math"
	"strconv"
	"strings"
)

// Micros is an amount in millionths of the currency unit.
type Micros int64

const scale = 1_000_000

// MaxBalance is the most a balance, or an API key's budget, may hold:
// 1,000,000,000.00 (10^15 micros). Keeping amounts this far below 2^63 keeps
// every sum of them exact.
const MaxBalance Micros = 1_000_000_000 * scale

// Parse reads a non-negative decimal string with at most six decimals
// ("10", "10.5", "0.000001") into micros.
func Parse(s string) (Micros, error) {
	s = strings.TrimSpace(s)
	whole, frac, hasDot := strings.Cut(s, ".")
	if whole == "" || (hasDot && frac == "") || len(frac) > 6 {
		return 0, errors.New(`must be a decimal amount such as "10.00", with at most 6 decimals`)
	}
	for _, part := range []string{whole, frac} {
		for _, r := range part {
			if r < '0' || r > '9' {
				return 0, errors.New(`must be a decimal amount such as "10.00", with at most 6 decimals`)
			}
		}
	}
	w, err := strconv.ParseInt(whole, 10, 64)
	if err != nil || w > math.MaxInt64/scale-1 {
		return 0, errors.New("is too large")
	}
	f := int64(0)
	if frac != "" {
		f, _ = strconv.ParseInt((frac + "000000")[:6], 10, 64)
	}
	return Micros(w*scale + f), nil
}

// String formats micros as a decimal with two to six decimals ("10.50", "0.000001").
func (m Micros) String() string {
	neg := m < 0
	u := uint64(m)
	if neg {
		u = uint64(-m)
	}
	s := strconv.FormatUint(u/scale, 10) + "." + strings.TrimRight(strconv.FormatUint(u%scale+scale, 10)[1:], "0")
	if i := strings.IndexByte(s, '.'); len(s)-i-1 < 2 {
		s += strings.Repeat("0", 2-(len(s)-i-1))
	}
	if neg {
		s = "-" + s
	}
	return s
}
