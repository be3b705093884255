package tracer

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/cilium/ebpf/ringbuf"

	"github.com/profilemate/profilemate-bpf/analysis"
)

// Record kinds (RECORD_* in bpf/records.h): the first 4 bytes of every
// ring-buffer record.
const (
	recordStep  = 1
	recordSched = 2
)

// Sizes of struct step_record and struct sched_record in bpf/records.h.
const (
	stepRecordSize  = 104
	schedRecordSize = 104
)

// The flags STEP_LAUNCHES_COUNTED and STEP_SYNCS_COUNTED in bpf/records.h.
const (
	stepLaunchesCounted = 2
	stepSyncsCounted    = 4
)

// maxKVPermille is full KV-cache usage, as sched_step reports it.
const maxKVPermille = 1000

// recordReader is the part of *ringbuf.Reader the tracer uses, so that tests
// can feed records without eBPF.
type recordReader interface {
	ReadInto(*ringbuf.Record) error
	SetDeadline(time.Time)
}

// pollEvery is how often the tracer looks for records: the programs submit
// them without waking it (wakeup_flags in bpf/profilemate.bpf.c), as a
// wakeup would cost the probed thread more than the record does. At most a
// few hundred records wait between two polls; the ring holds 9,000.
const pollEvery = 50 * time.Millisecond

// Sink receives the records Run reads, from one goroutine, in the order
// they arrive.
type Sink interface {
	Step(analysis.Step)
	Sched(analysis.Sched)
}

// recordKind is the kind a raw record starts with.
func recordKind(raw []byte) (uint32, error) {
	if len(raw) < 4 {
		return 0, fmt.Errorf("record of %d bytes: no kind", len(raw))
	}
	return binary.LittleEndian.Uint32(raw), nil
}

// DecodeStep decodes one ring-buffer step record. The record comes from the
// kernel, but a layout mismatch between the object and this binary must be
// an error, not garbage.
func DecodeStep(raw []byte) (analysis.Step, error) {
	if len(raw) < stepRecordSize {
		return analysis.Step{}, fmt.Errorf("step record of %d bytes, want %d", len(raw), stepRecordSize)
	}
	var r profilemateStepRecord
	if _, err := binary.Decode(raw[:stepRecordSize], binary.LittleEndian, &r); err != nil {
		return analysis.Step{}, fmt.Errorf("decode step record: %w", err)
	}
	if r.Kind != recordStep {
		return analysis.Step{}, fmt.Errorf("record of kind %d, not a step record", r.Kind)
	}
	if r.StepId == 0 || r.BeginNs == 0 || r.Pid == 0 {
		return analysis.Step{}, fmt.Errorf("step record without step id, begin time or pid")
	}
	return stepOf(r), nil
}

// DecodeSched decodes one ring-buffer sched record and checks its values
// against the marker's contract: they come from another process's Python,
// and a value out of range would skew every mean it enters.
func DecodeSched(raw []byte) (analysis.Sched, error) {
	if len(raw) < schedRecordSize {
		return analysis.Sched{}, fmt.Errorf("sched record of %d bytes, want %d", len(raw), schedRecordSize)
	}
	var r profilemateSchedRecord
	if _, err := binary.Decode(raw[:schedRecordSize], binary.LittleEndian, &r); err != nil {
		return analysis.Sched{}, fmt.Errorf("decode sched record: %w", err)
	}
	if r.Kind != recordSched {
		return analysis.Sched{}, fmt.Errorf("record of kind %d, not a sched record", r.Kind)
	}
	if r.SchedKey == 0 || r.TsNs == 0 || r.Pid == 0 {
		return analysis.Sched{}, errors.New("sched record without key, time or pid")
	}
	s := analysis.Sched{
		PID: r.Pid, TimeNs: r.TsNs, Key: r.SchedKey,
		KVUsagePermille: r.KvUsagePermille,
		RunningReqs:     r.RunningReqs, WaitingReqs: r.WaitingReqs, PreemptedReqs: r.PreemptedReqs,
		ScheduledTokens: r.ScheduledTokens, TokenBudget: r.TokenBudget,
		ScheduledReqs: r.ScheduledReqs, MaxNumSeqs: r.MaxNumSeqs,
		SpecProposed: r.SpecProposed, SpecAccepted: r.SpecAccepted,
	}
	if err := checkSched(s); err != nil {
		return analysis.Sched{}, fmt.Errorf("sched record %#x: %w", s.Key, err)
	}
	return s, nil
}

// checkSched rejects values no scheduler can report: below -1 (unknown),
// KV usage above full, more drafts accepted than proposed.
func checkSched(s analysis.Sched) error {
	for _, v := range []struct {
		name string
		v    int64
	}{
		{"kv_usage_permille", s.KVUsagePermille}, {"running_reqs", s.RunningReqs}, {"waiting_reqs", s.WaitingReqs},
		{"preempted_reqs", s.PreemptedReqs}, {"scheduled_tokens", s.ScheduledTokens}, {"token_budget", s.TokenBudget},
		{"scheduled_reqs", s.ScheduledReqs}, {"max_num_seqs", s.MaxNumSeqs},
		{"spec_proposed", s.SpecProposed}, {"spec_accepted", s.SpecAccepted},
	} {
		if v.v < analysis.Unknown {
			return fmt.Errorf("%s = %d", v.name, v.v)
		}
	}
	if s.KVUsagePermille > maxKVPermille {
		return fmt.Errorf("kv_usage_permille = %d, more than %d", s.KVUsagePermille, maxKVPermille)
	}
	if s.SpecProposed >= 0 && s.SpecAccepted > s.SpecProposed {
		return fmt.Errorf("%d draft tokens accepted of %d proposed", s.SpecAccepted, s.SpecProposed)
	}
	return nil
}

// stepEvicted is STEP_EVICTED of bpf/records.h: the step was flushed
// unfinished because a newer one needed its slot.
const stepEvicted = 1

// stepOf is the step a record describes.
func stepOf(r profilemateStepRecord) analysis.Step {
	return analysis.Step{
		PID: r.Pid, StepID: r.StepId,
		BeginNs: r.BeginNs, ForwardEndNs: r.ForwardEndNs, SampleEndNs: r.SampleEndNs, OutputReadyNs: r.OutputReadyNs,
		NumReqs: r.NumReqs, NumTokens: r.NumTokens, NumPrefillReqs: r.NumPrefillReqs, NumPrefillTokens: r.NumPrefillTokens,
		SchedKey: r.SchedKey,
		Launches: r.Launches, GraphLaunches: r.GraphLaunches, SyncWaitNs: r.SyncWaitNs,
		LaunchesUncounted: r.Flags&stepLaunchesCounted == 0,
		SyncsUncounted:    r.Flags&stepSyncsCounted == 0,
		Evicted:           r.Flags&stepEvicted != 0,
	}
}

// readRecords reads records until the reader is flushed or closed, handing
// each decoded one to sink, and looks for new ones every pollEvery. It
// returns the number of records that could not be decoded (unknown kind,
// short, out of range).
func readRecords(r recordReader, sink Sink) (invalid uint64, err error) {
	var rec ringbuf.Record
	r.SetDeadline(time.Now().Add(pollEvery))
	for {
		err := r.ReadInto(&rec)
		switch {
		case errors.Is(err, os.ErrDeadlineExceeded):
			// Every record submitted so far has been read.
			r.SetDeadline(time.Now().Add(pollEvery))
			continue
		case errors.Is(err, ringbuf.ErrClosed), errors.Is(err, ringbuf.ErrFlushed):
			return invalid, nil
		case err != nil:
			return invalid, err
		}
		if decodeInto(rec.RawSample, sink) != nil {
			invalid++
		}
	}
}

// decodeInto decodes one record by its kind and hands it to sink.
func decodeInto(raw []byte, sink Sink) error {
	kind, err := recordKind(raw)
	if err != nil {
		return err
	}
	switch kind {
	case recordStep:
		s, err := DecodeStep(raw)
		if err != nil {
			return err
		}
		sink.Step(s)
	case recordSched:
		s, err := DecodeSched(raw)
		if err != nil {
			return err
		}
		sink.Sched(s)
	default:
		return fmt.Errorf("record of unknown kind %d", kind)
	}
	return nil
}
