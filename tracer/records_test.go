package tracer

import (
	"bytes"
	"encoding/binary"
	"errors"
	"testing"

	"github.com/cilium/ebpf/ringbuf"

	"github.com/profilemate/profilemate-bpf/analysis"
)

// fakeReader hands out prepared records, then reports the ring buffer closed.
type fakeReader struct {
	records [][]byte
	err     error // returned after the records; ErrClosed when nil
}

func (f *fakeReader) ReadInto(r *ringbuf.Record) error {
	if len(f.records) == 0 {
		if f.err != nil {
			return f.err
		}
		return ringbuf.ErrClosed
	}
	r.RawSample = f.records[0]
	f.records = f.records[1:]
	return nil
}

func encodeRecord(t testing.TB, r profilemateStepRecord) []byte {
	var b bytes.Buffer
	if err := binary.Write(&b, binary.LittleEndian, r); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func TestRecordSizeMatchesGeneratedType(t *testing.T) {
	if n := binary.Size(profilemateStepRecord{}); n != stepRecordSize {
		t.Fatalf("generated step_record is %d bytes, decoder expects %d", n, stepRecordSize)
	}
}

func TestReadSteps(t *testing.T) {
	good := profilemateStepRecord{
		StepId: 7, BeginNs: 1000, ForwardEndNs: 2000, SampleEndNs: 3000, OutputReadyNs: 4000,
		SyncWaitNs: 500, Pid: 42, Tid: 43, NumReqs: 3, NumTokens: 130, NumPrefillReqs: 1,
		NumPrefillTokens: 128, Launches: 528, GraphLaunches: 2, Flags: stepLaunchesCounted,
	}
	uncounted := good
	uncounted.Flags = 0
	noBegin := good
	noBegin.BeginNs = 0
	r := &fakeReader{records: [][]byte{
		encodeRecord(t, good),
		encodeRecord(t, good)[:40],                            // truncated
		encodeRecord(t, noBegin),                              // impossible: a step always has a begin
		append(encodeRecord(t, good), 0, 0, 0, 0, 0, 0, 0, 0), // ring buffer padding is fine
		encodeRecord(t, uncounted),                            // launch probes not live for all of it
	}}
	var got []analysis.Step
	invalid, err := readSteps(r, func(s analysis.Step) { got = append(got, s) })
	if err != nil {
		t.Fatal(err)
	}
	if invalid != 2 || len(got) != 3 {
		t.Fatalf("invalid %d, steps %d; want 2 and 3", invalid, len(got))
	}
	want := analysis.Step{PID: 42, StepID: 7, BeginNs: 1000, ForwardEndNs: 2000, SampleEndNs: 3000,
		OutputReadyNs: 4000, NumReqs: 3, NumTokens: 130, NumPrefillReqs: 1, NumPrefillTokens: 128,
		Launches: 528, GraphLaunches: 2, SyncWaitNs: 500}
	if got[0] != want {
		t.Errorf("decoded %+v\nwant    %+v", got[0], want)
	}
	want.LaunchesUncounted = true
	if got[2] != want {
		t.Errorf("decoded %+v\nwant    %+v", got[2], want)
	}
}

func TestReadStepsReportsReaderFailure(t *testing.T) {
	boom := errors.New("boom")
	if _, err := readSteps(&fakeReader{err: boom}, func(analysis.Step) {}); !errors.Is(err, boom) {
		t.Fatalf("err %v, want boom", err)
	}
}

func FuzzDecodeStep(f *testing.F) {
	f.Add(encodeRecord(f, profilemateStepRecord{StepId: 1, BeginNs: 1, Pid: 1}))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		s, err := DecodeStep(b)
		if err == nil && (s.StepID == 0 || s.BeginNs == 0 || s.PID == 0) {
			t.Fatalf("accepted %+v", s)
		}
	})
}
