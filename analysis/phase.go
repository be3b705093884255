package analysis

// Phase classifies a step by how many of its requests still had prompt tokens
// to compute.
type Phase string

// The three phases, in the order outputs list them.
const (
	PhasePrefill Phase = "prefill" // every request of the step is prefill
	PhaseDecode  Phase = "decode"  // no request of the step is prefill
	PhaseMixed   Phase = "mixed"   // both kinds in one step (chunked prefill)
)

// phases is the fixed output order; map iteration order must never leak into
// the CSV, summary.json or the table.
var phases = [...]Phase{PhasePrefill, PhaseDecode, PhaseMixed}

// PhaseOf returns the step's phase: prefill when NumPrefillReqs == NumReqs,
// decode when NumPrefillReqs == 0, mixed otherwise. The prefill test comes
// first, so a step without requests (which the marker never reports) counts
// as prefill.
func PhaseOf(s Step) Phase {
	switch {
	case s.NumPrefillReqs == s.NumReqs:
		return PhasePrefill
	case s.NumPrefillReqs == 0:
		return PhaseDecode
	default:
		return PhaseMixed
	}
}
