package tracer

import (
	"bytes"
	"encoding/binary"
	"errors"
	"os"
	"testing"
	"time"

	"github.com/cilium/ebpf/ringbuf"

	"github.com/profilemate/profilemate-bpf/analysis"
)

// fakeReader hands out prepared records, then reports the ring buffer
// closed. A nil record is a poll that found nothing: its deadline passed.
type fakeReader struct {
	records   [][]byte
	err       error // returned after the records; ErrClosed when nil
	deadlines int   // SetDeadline calls
}

func (f *fakeReader) ReadInto(r *ringbuf.Record) error {
	if len(f.records) == 0 {
		if f.err != nil {
			return f.err
		}
		return ringbuf.ErrClosed
	}
	rec := f.records[0]
	f.records = f.records[1:]
	if rec == nil {
		return os.ErrDeadlineExceeded
	}
	r.RawSample = rec
	return nil
}

func (f *fakeReader) SetDeadline(time.Time) { f.deadlines++ }

// encodeRecord lays r out as the eBPF programs write it.
func encodeRecord(t testing.TB, r any) []byte {
	var b bytes.Buffer
	if err := binary.Write(&b, binary.LittleEndian, r); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func TestRecordSizesMatchGeneratedTypes(t *testing.T) {
	if n := binary.Size(profilemateStepRecord{}); n != stepRecordSize {
		t.Errorf("generated step_record is %d bytes, decoder expects %d", n, stepRecordSize)
	}
	if n := binary.Size(profilemateSchedRecord{}); n != schedRecordSize {
		t.Errorf("generated sched_record is %d bytes, decoder expects %d", n, schedRecordSize)
	}
}

// goodSched is a sched record as the marker's contract allows it.
var goodSched = profilemateSchedRecord{
	Kind: recordSched, Pid: 50, TsNs: 5000, SchedKey: 0x1234_0000_0007,
	KvUsagePermille: 873, RunningReqs: 12, WaitingReqs: 3, PreemptedReqs: 1,
	ScheduledTokens: 1500, TokenBudget: 2048, ScheduledReqs: 12, MaxNumSeqs: 256,
	SpecProposed: 24, SpecAccepted: 17,
}

func TestReadRecords(t *testing.T) {
	good := profilemateStepRecord{
		Kind:   recordStep,
		StepId: 7, BeginNs: 1000, ForwardEndNs: 2000, SampleEndNs: 3000, OutputReadyNs: 4000,
		SyncWaitNs: 500, SchedKey: 0x1234_0000_0007, Pid: 42, Tid: 43, NumReqs: 3, NumTokens: 130, NumPrefillReqs: 1,
		NumPrefillTokens: 128, Launches: 528, GraphLaunches: 2, Flags: stepLaunchesCounted | stepSyncsCounted,
	}
	uncounted := good
	uncounted.Flags = 0
	syncsUncounted := good
	syncsUncounted.Flags = stepLaunchesCounted
	noBegin := good
	noBegin.BeginNs = 0
	wrongKind := good
	wrongKind.Kind = 9
	r := &fakeReader{records: [][]byte{
		encodeRecord(t, good),
		encodeRecord(t, good)[:40],                            // truncated
		encodeRecord(t, noBegin),                              // impossible: a step always has a begin
		append(encodeRecord(t, good), 0, 0, 0, 0, 0, 0, 0, 0), // ring buffer padding is fine
		encodeRecord(t, uncounted),                            // launch and sync probes not live for all of it
		encodeRecord(t, syncsUncounted),                       // sync probes not live for all of it
		encodeRecord(t, wrongKind),                            // a kind this binary does not know
		{1, 0},                                                // too short for a kind
		encodeRecord(t, goodSched),
		encodeRecord(t, goodSched)[:60], // truncated
	}}
	got := &collected{}
	invalid, err := readRecords(r, got)
	if err != nil {
		t.Fatal(err)
	}
	if invalid != 5 || len(got.steps) != 4 || len(got.scheds) != 1 {
		t.Fatalf("invalid %d, steps %d, scheds %d; want 5, 4 and 1", invalid, len(got.steps), len(got.scheds))
	}
	want := analysis.Step{PID: 42, StepID: 7, BeginNs: 1000, ForwardEndNs: 2000, SampleEndNs: 3000,
		OutputReadyNs: 4000, NumReqs: 3, NumTokens: 130, NumPrefillReqs: 1, NumPrefillTokens: 128,
		SchedKey: 0x1234_0000_0007, Launches: 528, GraphLaunches: 2, SyncWaitNs: 500}
	if got.steps[0] != want {
		t.Errorf("decoded %+v\nwant    %+v", got.steps[0], want)
	}
	want.SyncsUncounted = true
	if got.steps[3] != want {
		t.Errorf("decoded %+v\nwant    %+v", got.steps[3], want)
	}
	want.LaunchesUncounted = true
	if got.steps[2] != want {
		t.Errorf("decoded %+v\nwant    %+v", got.steps[2], want)
	}
	wantSched := analysis.Sched{PID: 50, TimeNs: 5000, Key: 0x1234_0000_0007,
		KVUsagePermille: 873, RunningReqs: 12, WaitingReqs: 3, PreemptedReqs: 1,
		ScheduledTokens: 1500, TokenBudget: 2048, ScheduledReqs: 12, MaxNumSeqs: 256,
		SpecProposed: 24, SpecAccepted: 17}
	if got.scheds[0] != wantSched {
		t.Errorf("decoded %+v\nwant    %+v", got.scheds[0], wantSched)
	}
}

// TestDecodeSchedChecksValues: each value the contract rules out makes the
// record invalid; -1 (unknown) is allowed everywhere.
func TestDecodeSchedChecksValues(t *testing.T) {
	unknown := goodSched
	unknown.KvUsagePermille, unknown.SpecProposed, unknown.SpecAccepted = -1, -1, -1
	for _, tt := range []struct {
		name  string
		edit  func(*profilemateSchedRecord)
		valid bool
	}{
		{"as the contract allows", func(*profilemateSchedRecord) {}, true},
		{"unknown values", func(r *profilemateSchedRecord) { *r = unknown }, true},
		{"full KV cache", func(r *profilemateSchedRecord) { r.KvUsagePermille = 1000 }, true},
		{"KV usage over full", func(r *profilemateSchedRecord) { r.KvUsagePermille = 1001 }, false},
		{"key 0", func(r *profilemateSchedRecord) { r.SchedKey = 0 }, false},
		{"no pid", func(r *profilemateSchedRecord) { r.Pid = 0 }, false},
		{"no time", func(r *profilemateSchedRecord) { r.TsNs = 0 }, false},
		{"waiting below unknown", func(r *profilemateSchedRecord) { r.WaitingReqs = -2 }, false},
		{"preempted negative", func(r *profilemateSchedRecord) { r.PreemptedReqs = -5 }, false},
		{"budget negative", func(r *profilemateSchedRecord) { r.TokenBudget = -3 }, false},
		{"more accepted than proposed", func(r *profilemateSchedRecord) { r.SpecAccepted = 25 }, false},
		{"accepted without proposed", func(r *profilemateSchedRecord) { r.SpecProposed = -1 }, true},
		{"a step record's kind", func(r *profilemateSchedRecord) { r.Kind = recordStep }, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			r := goodSched
			tt.edit(&r)
			s, err := DecodeSched(encodeRecord(t, r))
			if (err == nil) != tt.valid {
				t.Fatalf("decoded %+v, err %v; want valid %v", s, err, tt.valid)
			}
		})
	}
}

// TestReadRecordsPollsPastDeadlines: the programs submit without waking the
// reader, so a poll that finds nothing is no end: the records after it are
// read too, up to the flush at the end of the trace.
func TestReadRecordsPollsPastDeadlines(t *testing.T) {
	rec := encodeRecord(t, profilemateStepRecord{Kind: recordStep, StepId: 1, BeginNs: 1, Pid: 1})
	r := &fakeReader{records: [][]byte{nil, rec, nil, nil, rec, rec}, err: ringbuf.ErrFlushed}
	got := &collected{}
	if _, err := readRecords(r, got); err != nil {
		t.Fatal(err)
	}
	if len(got.steps) != 3 {
		t.Errorf("%d steps read, want 3", len(got.steps))
	}
	if r.deadlines != 4 {
		t.Errorf("%d deadlines set, want 4: one to start and one after each empty poll", r.deadlines)
	}
}

func TestReadRecordsReportsReaderFailure(t *testing.T) {
	boom := errors.New("boom")
	if _, err := readRecords(&fakeReader{err: boom}, &collected{}); !errors.Is(err, boom) {
		t.Fatalf("err %v, want boom", err)
	}
}

func FuzzDecodeStep(f *testing.F) {
	f.Add(encodeRecord(f, profilemateStepRecord{Kind: recordStep, StepId: 1, BeginNs: 1, Pid: 1}))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		s, err := DecodeStep(b)
		if err == nil && (s.StepID == 0 || s.BeginNs == 0 || s.PID == 0) {
			t.Fatalf("accepted %+v", s)
		}
	})
}

func FuzzDecodeSched(f *testing.F) {
	f.Add(encodeRecord(f, goodSched))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		s, err := DecodeSched(b)
		if err == nil && (s.Key == 0 || s.KVUsagePermille > maxKVPermille || s.WaitingReqs < -1 || s.SpecProposed >= 0 && s.SpecAccepted > s.SpecProposed) {
			t.Fatalf("accepted %+v", s)
		}
	})
}
