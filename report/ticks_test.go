package report

import (
	"strings"
	"testing"
)

func TestNiceTicks(t *testing.T) {
	for _, c := range []struct {
		lo, hi float64
		n      int
		want   string
	}{
		{0, 60.2, 10, "0 10 20 30 40 50 60"},
		{0, 29.9, 6, "0 5 10 15 20 25"},
		{5.2, 5.6, 6, "5.2 5.3 5.4 5.5 5.6"},
		{0, 1.02, 6, "0.0 0.2 0.4 0.6 0.8 1.0"},
		{0, 0.004, 6, "0.000 0.001 0.002 0.003 0.004"},
	} {
		var labels []string
		for _, tk := range (niceTicks{c.n}).Ticks(c.lo, c.hi) {
			if tk.Label != "" {
				labels = append(labels, tk.Label)
			}
		}
		if got := strings.Join(labels, " "); got != c.want {
			t.Errorf("ticks(%v, %v) = %s, want %s", c.lo, c.hi, got, c.want)
		}
	}
	if ticks := (niceTicks{6}).Ticks(1, 1); ticks != nil {
		t.Errorf("empty range: %v", ticks)
	}
}
