package analysis

import "fmt"

// LiveLine formats a step the moment it arrives, in the sitecustomize
// profiler's verbose style followed by the pid and step id:
//
//	[Forward Pass] prefill: 45.23ms (batch=1, tokens=128) pid=4242 step=17
//
// ok is false for a step without any end point, which has no duration to show.
func LiveLine(s Step) (line string, ok bool) {
	d := duration(s)
	if !d.Valid {
		return "", false
	}
	return fmt.Sprintf("[Forward Pass] %s: %.2fms (batch=%d, tokens=%d) pid=%d step=%d",
		PhaseOf(s), d.Ms, s.NumReqs, s.NumTokens, s.PID, s.StepID), true
}
