package analysis

import (
	"bytes"
	"encoding/binary"
	"encoding/csv"
	"testing"
)

// stepsFromBytes turns fuzz input into steps, 12 bytes each, with few pids,
// ranks and step ids so that collisions, overlaps, missing points and points
// before step_begin all occur.
func stepsFromBytes(b []byte) []Step {
	var steps []Step
	for ; len(b) >= 12; b = b[12:] {
		// Microseconds, 0 included: a point that never came.
		us := func(off int) uint64 { return uint64(binary.LittleEndian.Uint16(b[off:])) * 1000 }
		steps = append(steps, Step{
			PID: uint32(b[0] % 4), StepID: uint64(b[1] % 8), BeginNs: us(2),
			ForwardEndNs: us(4), SampleEndNs: us(6), OutputReadyNs: us(8),
			NumReqs: uint32(b[10] % 4), NumPrefillReqs: uint32(b[11] % 4), NumTokens: uint32(b[10]),
			SchedKey: uint64(b[11] / 64), // 0 (none) to 3
		})
	}
	return steps
}

// schedsFromBytes turns the same input into sched records, one per 12
// bytes, with the keys 0 to 3 of stepsFromBytes (so that joins, keys
// without records, records without steps and duplicates all occur) and
// values from -1 (unknown) up, zero budgets included.
func schedsFromBytes(b []byte) []Sched {
	var scheds []Sched
	for ; len(b) >= 12; b = b[12:] {
		v := func(off int) int64 { return int64(b[off]%8) - 1 }
		scheds = append(scheds, Sched{
			PID: 9, TimeNs: uint64(binary.LittleEndian.Uint16(b[8:])) * 1000, Key: uint64(b[1] % 4),
			KVUsagePermille: v(2) * 140, RunningReqs: v(3), WaitingReqs: v(4), PreemptedReqs: v(5),
			ScheduledTokens: v(6), TokenBudget: v(7), ScheduledReqs: v(8), MaxNumSeqs: v(9),
			SpecProposed: v(10) + 2, SpecAccepted: min(v(11), v(10)+2),
		})
	}
	return scheds
}

// FuzzAnalyze checks invariants of Analyze on arbitrary step and sched
// records: rows in time order with non-negative times, every step either a
// row or counted as without duration, every sched record joined, without a
// forward pass or a duplicate, and outputs that always encode (no NaN or
// Inf).
func FuzzAnalyze(f *testing.F) {
	f.Add([]byte{1, 1, 10, 0, 12, 0, 14, 0, 20, 0, 2, 0, 1, 2, 30, 0, 0, 0, 0, 0, 0, 0, 2, 2})
	f.Add(bytes.Repeat([]byte{3, 5, 1, 1, 0, 0, 9, 0, 8, 0, 3, 1}, 4))
	f.Fuzz(func(t *testing.T, data []byte) {
		steps := stepsFromBytes(data)
		r := Report{StartNs: 0, EndNs: 70_000_000, Steps: steps, Scheds: schedsFromBytes(data), Processes: []Process{
			{PID: 0, Title: "VLLM::Worker_TP0", Rank: 0}, {PID: 1, Title: "VLLM::Worker_TP1", Rank: 1},
			{PID: 2, Title: "VLLM::Worker_TP1", Rank: 1}, // a duplicate rank
		}}
		res := Analyze(r)
		if got := len(res.Rows) + res.Summary.Trace.StepsWithoutDuration; got != len(steps) {
			t.Fatalf("%d rows + %d without duration != %d steps", len(res.Rows), res.Summary.Trace.StepsWithoutDuration, len(steps))
		}
		for i, row := range res.Rows {
			if row.DurationMs < 0 || row.CPUMs.Ms < 0 || row.IntervalMs.Ms < 0 || row.ForwardMs.Ms < 0 {
				t.Fatalf("row %d has a negative time: %+v", i, row)
			}
			if i > 0 && row.TimestampSec < res.Rows[i-1].TimestampSec {
				t.Fatalf("row %d out of time order", i)
			}
		}
		if sc := res.Summary.Scheduler; sc != nil && (sc.SchedSteps != len(r.Scheds) || sc.Joined+sc.WithoutForwardPass+sc.Duplicates != sc.SchedSteps) {
			t.Fatalf("_scheduler %+v does not add up to %d records", *sc, len(r.Scheds))
		}
		for _, p := range res.Summary.Phases {
			if p.SchedJoinedSteps > p.Count {
				t.Fatalf("%s: %d scheduler steps joined to %d rows", p.Phase, p.SchedJoinedSteps, p.Count)
			}
		}
		if err := WriteSummary(new(bytes.Buffer), res.Summary); err != nil {
			t.Fatalf("summary does not encode: %v", err)
		}
		var buf bytes.Buffer
		if err := WriteCSV(&buf, res.Rows); err != nil {
			t.Fatal(err)
		}
		if recs, err := csv.NewReader(&buf).ReadAll(); err != nil || len(recs) != len(res.Rows)+1 {
			t.Fatalf("CSV reads back as %d records, %v", len(recs), err)
		}
		if err := RenderTable(new(bytes.Buffer), res.Summary); err != nil {
			t.Fatal(err)
		}
	})
}
