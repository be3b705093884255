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
		})
	}
	return steps
}

// FuzzAnalyze checks invariants of Analyze on arbitrary step records: rows
// in time order with non-negative times, every step either a row or counted
// as without duration, and outputs that always encode (no NaN or Inf).
func FuzzAnalyze(f *testing.F) {
	f.Add([]byte{1, 1, 10, 0, 12, 0, 14, 0, 20, 0, 2, 0, 1, 2, 30, 0, 0, 0, 0, 0, 0, 0, 2, 2})
	f.Add(bytes.Repeat([]byte{3, 5, 1, 1, 0, 0, 9, 0, 8, 0, 3, 1}, 4))
	f.Fuzz(func(t *testing.T, data []byte) {
		steps := stepsFromBytes(data)
		r := Report{StartNs: 0, EndNs: 70_000_000, Steps: steps, Processes: []Process{
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
