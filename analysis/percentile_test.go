package analysis

import (
	"math"
	"sort"
	"testing"
)

// refPercentile is an independent, deliberately plain rendering of numpy's
// "linear" method to check Percentile against.
func refPercentile(values []float64, p float64) float64 {
	x := append([]float64(nil), values...)
	sort.Float64s(x)
	h := (float64(len(x)) - 1) * p / 100
	below := math.Floor(h)
	return x[int(below)] + (h-below)*(x[int(math.Ceil(h))]-x[int(below)])
}

func TestPercentile(t *testing.T) {
	tests := []struct {
		name   string
		values []float64
		p      float64
		want   float64 // computed by hand
	}{
		{"n=1 p50", []float64{7}, 50, 7},
		{"n=1 p0", []float64{7}, 0, 7},
		{"n=1 p100", []float64{7}, 100, 7},
		{"n=2 p50 is the mean", []float64{10, 20}, 50, 15},
		{"n=2 p95", []float64{10, 20}, 95, 19.5}, // rank 0.95
		{"n=2 p99", []float64{10, 20}, 99, 19.9}, // rank 0.99
		{"p0 is the minimum", []float64{3, 1, 2}, 0, 1},
		{"p100 is the maximum", []float64{3, 1, 2}, 100, 3},
		{"odd count median", []float64{5, 1, 3}, 50, 3},
		{"even count median", []float64{4, 1, 3, 2}, 50, 2.5},   // rank 1.5
		{"unsorted p25", []float64{40, 10, 30, 20, 50}, 25, 20}, // rank 1 exactly
		{"unsorted p90", []float64{40, 10, 30, 20, 50}, 90, 46}, // rank 3.6: 40 + 0.6*10
		{"duplicates", []float64{2, 2, 2, 5}, 50, 2},            // rank 1.5 between 2 and 2
		{"duplicates p95", []float64{2, 2, 2, 5}, 95, 4.55},     // rank 2.85: 2 + 0.85*3
		{"p99 of 1..100", seq(100), 99, 99.01},                  // rank 98.01: 99 + 0.01*1
		{"p95 of 1..10", seq(10), 95, 9.55},                     // rank 8.55
		{"p below 0 clamps", []float64{1, 2}, -5, 1},
		{"p above 100 clamps", []float64{1, 2}, 250, 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := Percentile(tt.values, tt.p)
			if math.Abs(got-tt.want) > 1e-9 {
				t.Errorf("Percentile(%v, %v) = %v, want %v", tt.values, tt.p, got, tt.want)
			}
			if p := min(max(tt.p, 0), 100); math.Abs(got-refPercentile(tt.values, p)) > 1e-9 {
				t.Errorf("Percentile(%v, %v) = %v, reference gives %v", tt.values, tt.p, got, refPercentile(tt.values, p))
			}
		})
	}
}

func TestPercentileEmptyIsNaN(t *testing.T) {
	if got := Percentile(nil, 50); !math.IsNaN(got) {
		t.Errorf("Percentile(nil, 50) = %v, want NaN", got)
	}
}

func TestPercentileLeavesInputAlone(t *testing.T) {
	v := []float64{3, 1, 2}
	Percentile(v, 50)
	if v[0] != 3 || v[1] != 1 || v[2] != 2 {
		t.Errorf("input reordered to %v", v)
	}
}

// FuzzPercentile checks Percentile against the reference and the properties
// every percentile must have, on arbitrary samples and ranks.
func FuzzPercentile(f *testing.F) {
	f.Add(1.0, 2.0, 3.0, 50.0)
	f.Add(-4.0, 0.0, 1e9, 99.0)
	f.Add(5.0, 5.0, 5.0, 0.0)
	f.Fuzz(func(t *testing.T, a, b, c, p float64) {
		values := []float64{a, b, c}
		for _, v := range append(values, p) {
			// Outside this range the interpolation itself overflows or
			// loses all precision, which no step duration comes near.
			if math.IsNaN(v) || math.Abs(v) > 1e12 {
				t.Skip()
			}
		}
		p = min(max(p, 0), 100)
		got := Percentile(values, p)
		lo, hi := min(a, b, c), max(a, b, c)
		if got < lo || got > hi {
			t.Fatalf("Percentile(%v, %v) = %v outside [%v, %v]", values, p, got, lo, hi)
		}
		if want := refPercentile(values, p); math.Abs(got-want) > 1e-9*max(1, math.Abs(want)) {
			t.Fatalf("Percentile(%v, %v) = %v, reference gives %v", values, p, got, want)
		}
		if p < 100 {
			if next := Percentile(values, min(p+1, 100)); next < got-1e-9*max(1, math.Abs(got)) {
				t.Fatalf("not monotonic in p: p=%v gives %v, p+1 gives %v", p, got, next)
			}
		}
	})
}

func seq(n int) []float64 {
	s := make([]float64, n)
	for i := range s {
		s[i] = float64(i + 1)
	}
	return s
}
