package analysis

import (
	"cmp"
	"fmt"
	"slices"
)

// processes looks up how to label a pid. Steps may come from pids the caller
// did not describe (a worker that exited before discovery finished); those
// get an empty title and no rank rather than being dropped.
type processes map[uint32]Process

func newProcesses(procs []Process, activity []ProcessActivity) processes {
	m := make(processes, len(procs)+len(activity))
	for _, a := range activity {
		m[a.PID] = a.Process
	}
	// Processes win over Activity: it is the caller's explicit description.
	for _, p := range procs {
		m[p.PID] = p
	}
	return m
}

func (m processes) get(pid uint32) Process {
	if p, ok := m[pid]; ok {
		return p
	}
	return Process{PID: pid, Rank: -1}
}

// label is how the table names a process: its title and pid, so that two
// processes with the same title stay apart.
func label(p Process) string {
	if p.Title == "" {
		return fmt.Sprintf("pid %d", p.PID)
	}
	return fmt.Sprintf("%s (%d)", p.Title, p.PID)
}

// compareProcesses orders ranked processes first, by tensor-parallel group
// and then rank (DP0_TP0, DP0_TP1, DP1_TP0, ...), then unranked ones by pid,
// which is how users scan a tensor-parallel group.
func compareProcesses(a, b Process) int {
	if ar, br := a.Rank >= 0, b.Rank >= 0; ar != br {
		if ar {
			return -1
		}
		return 1
	}
	if a.Rank >= 0 {
		if c := cmp.Compare(rankGroup(a.Title), rankGroup(b.Title)); c != 0 {
			return c
		}
		if c := cmp.Compare(a.Rank, b.Rank); c != 0 {
			return c
		}
	}
	return cmp.Compare(a.PID, b.PID)
}

func sortProcesses(ps []Process) {
	slices.SortFunc(ps, compareProcesses)
}
