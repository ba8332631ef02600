package money

import (
	"math"
	"math/big"
	"math/rand/v2"
	"testing"
)

// The checked helpers agree with exact (big) arithmetic on the edges of
// the int64 range and on random values across it.
func TestCheckedArithmeticIsExact(t *testing.T) {
	edges := []int64{0, 1, -1, 2, -2, 3, 1 << 31, -1 << 31, 1 << 32, 1<<62 - 1, 1 << 62, -1 << 62, 3037000499, 3037000500, -3037000500,
		math.MaxInt64, math.MaxInt64 - 1, math.MinInt64, math.MinInt64 + 1, 4611686018427387904}
	r := rand.New(rand.NewPCG(1, 2))
	vals := append([]int64{}, edges...)
	for range 200 {
		vals = append(vals, int64(r.Uint64()), r.Int64N(1<<32)-1<<31, r.Int64N(1<<20))
	}
	minB, maxB := big.NewInt(math.MinInt64), big.NewInt(math.MaxInt64)
	fits := func(x *big.Int) bool { return x.Cmp(minB) >= 0 && x.Cmp(maxB) <= 0 }
	clamp := func(x *big.Int) int64 {
		switch {
		case x.Cmp(maxB) > 0:
			return math.MaxInt64
		case x.Cmp(minB) < 0:
			return math.MinInt64
		}
		return x.Int64()
	}
	for _, a := range vals {
		for _, b := range vals {
			A, B := big.NewInt(a), big.NewInt(b)
			for _, op := range []struct {
				name  string
				exact *big.Int
				f     func(int64, int64) (int64, bool)
			}{
				{"Add", new(big.Int).Add(A, B), Add[int64]},
				{"Sub", new(big.Int).Sub(A, B), Sub[int64]},
				{"Mul", new(big.Int).Mul(A, B), Mul[int64]},
			} {
				got, ok := op.f(a, b)
				if ok != fits(op.exact) || (ok && got != op.exact.Int64()) {
					t.Fatalf("%s(%d, %d) = %d, %v; want %s (fits %v)", op.name, a, b, got, ok, op.exact, fits(op.exact))
				}
			}
			sum := new(big.Int).Add(A, B)
			if got, want := SatAdd(a, b), clamp(sum); got != want {
				t.Fatalf("SatAdd(%d, %d) = %d, want %d", a, b, got, want)
			}
			if got, want := SatMul(a, b), clamp(new(big.Int).Mul(A, B)); got != want {
				t.Fatalf("SatMul(%d, %d) = %d, want %d", a, b, got, want)
			}
			for _, limit := range []int64{0, 1000, math.MaxInt64, -1} {
				if got, want := Exceeds(a, b, limit), sum.Cmp(big.NewInt(limit)) > 0; got != want {
					t.Fatalf("Exceeds(%d, %d, %d) = %v, want %v", a, b, limit, got, want)
				}
			}
		}
	}
}

func TestSum(t *testing.T) {
	for _, tc := range []struct {
		in     []Micros
		want   Micros
		wantOK bool
	}{
		{nil, 0, true},
		{[]Micros{1, 2, 3}, 6, true},
		{[]Micros{1 << 62, 1 << 62}, 0, false},
		{[]Micros{math.MaxInt64, 1, -1}, 0, false}, // a partial sum overflows
		{[]Micros{math.MaxInt64, -1, 1}, math.MaxInt64, true},
	} {
		got, ok := Sum(tc.in...)
		if got != tc.want || ok != tc.wantOK {
			t.Errorf("Sum(%v) = %d, %v; want %d, %v", tc.in, got, ok, tc.want, tc.wantOK)
		}
	}
}
