package money

import "math"

// Overflow-checked 64-bit arithmetic: the one place every money and quota
// sum (balances, holds, charges, prices, token counts, period counters,
// limits) is computed, so no sum anywhere can wrap. The functions are
// generic over ~int64, so Micros and plain counts share them.
//
// Add, Sub and Mul report whether the exact result fits; SatAdd and SatMul
// clamp to the int64 range instead (for counters, where "at least this much"
// is the right answer); Exceeds is the quota check used+amount > limit.

// Add returns a+b, and false when the exact sum does not fit in 64 bits.
func Add[T ~int64](a, b T) (T, bool) {
	s := a + b
	if (b > 0 && s < a) || (b < 0 && s > a) {
		return 0, false
	}
	return s, true
}

// Sub returns a-b, and false when the exact difference does not fit.
func Sub[T ~int64](a, b T) (T, bool) {
	d := a - b
	if (b > 0 && d > a) || (b < 0 && d < a) {
		return 0, false
	}
	return d, true
}

// Mul returns a*b, and false when the exact product does not fit.
func Mul[T ~int64](a, b T) (T, bool) {
	if a == 0 || b == 0 {
		return 0, true
	}
	p := a * b
	if (a == -1 && b == math.MinInt64) || (b == -1 && a == math.MinInt64) || p/b != a {
		return 0, false
	}
	return p, true
}

// Sum adds vs, and false when any partial sum does not fit.
func Sum[T ~int64](vs ...T) (T, bool) {
	var s T
	for _, v := range vs {
		var ok bool
		if s, ok = Add(s, v); !ok {
			return 0, false
		}
	}
	return s, true
}

// SatAdd returns a+b clamped to [math.MinInt64, math.MaxInt64].
func SatAdd[T ~int64](a, b T) T {
	if s, ok := Add(a, b); ok {
		return s
	}
	if b > 0 {
		return math.MaxInt64
	}
	return math.MinInt64
}

// SatMul returns a*b clamped to [math.MinInt64, math.MaxInt64].
func SatMul[T ~int64](a, b T) T {
	if p, ok := Mul(a, b); ok {
		return p
	}
	if (a < 0) != (b < 0) {
		return math.MinInt64
	}
	return math.MaxInt64
}

// Exceeds reports whether used+amount is more than limit. A sum too large
// for 64 bits exceeds every limit; one too small exceeds none.
func Exceeds[T ~int64](used, amount, limit T) bool {
	s, ok := Add(used, amount)
	if !ok {
		return amount > 0
	}
	return s > limit
}
