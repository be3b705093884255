package analysis

import (
	"cmp"
	"slices"
)

// The join of scheduler steps to forward passes is by identity, not time:
// the scheduler stamps each schedule with a key (Sched.Key), the runner
// passes it to step_begin, and a forward pass belongs to the sched record
// with its key. Under async scheduling the sched record of step N comes
// after step N+1 began, and under tensor parallelism one record has a
// forward pass in every rank's process: time windows would pair the wrong
// ones, the key cannot.

// schedJoin is the trace's sched records by key, and how they joined.
type schedJoin struct {
	byKey map[uint64]*Sched // the first record of each key
	// joined counts the keys with a forward pass; duplicates the records
	// of a key seen before (keys are unique per trace, so one is wrong and
	// neither can be trusted more: the first is kept, as the contract says).
	joined, duplicates int
	all                []Sched // every record, duplicates included, by time
}

// joinScheds indexes scheds by key, the earliest first (ties: arrival
// order), and notes which keys the steps carry. Key 0 is no key.
func joinScheds(scheds []Sched, steps []Step) schedJoin {
	j := schedJoin{byKey: make(map[uint64]*Sched, len(scheds)), all: slices.Clone(scheds)}
	slices.SortStableFunc(j.all, func(a, b Sched) int { return cmp.Compare(a.TimeNs, b.TimeNs) })
	for i := range j.all {
		s := &j.all[i]
		if _, seen := j.byKey[s.Key]; seen {
			j.duplicates++
		} else if s.Key != 0 {
			j.byKey[s.Key] = s
		}
	}
	stepped := make(map[uint64]bool)
	for _, s := range steps {
		if _, ok := j.byKey[s.SchedKey]; ok && !stepped[s.SchedKey] {
			stepped[s.SchedKey] = true
			j.joined++
		}
	}
	return j
}

// of returns the sched record a step joins, or nil.
func (j schedJoin) of(s Step) *Sched {
	if s.SchedKey == 0 {
		return nil
	}
	return j.byKey[s.SchedKey]
}
