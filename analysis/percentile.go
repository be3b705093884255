package analysis

import (
	"math"
	"slices"
)

// Percentile returns the p-th percentile (0 <= p <= 100) of values by linear
// interpolation between closest ranks, the same as numpy.percentile's default
// "linear" method:
//
//	sort the n values ascending: x[0] <= ... <= x[n-1]
//	rank = p/100 * (n-1)
//	lo, hi = floor(rank), ceil(rank)
//	result = x[lo] + (rank-lo) * (x[hi]-x[lo])
//
// So p=0 is the minimum, p=100 the maximum, p=50 of an even count is the mean
// of the two middle values, and one value is every percentile of itself.
// p outside [0, 100] is clamped to it. values is not modified and need not be
// sorted. The result is NaN when values is empty.
func Percentile(values []float64, p float64) float64 {
	sorted := slices.Clone(values)
	slices.Sort(sorted)
	return percentileSorted(sorted, p)
}

// percentileSorted is Percentile for values already sorted ascending, so that
// several percentiles of one sample cost one sort.
func percentileSorted(sorted []float64, p float64) float64 {
	n := len(sorted)
	if n == 0 {
		return math.NaN()
	}
	p = min(max(p, 0), 100)
	rank := p / 100 * float64(n-1)
	lo := int(math.Floor(rank))
	hi := int(math.Ceil(rank))
	return sorted[lo] + (rank-float64(lo))*(sorted[hi]-sorted[lo])
}
