package tracer

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"

	"github.com/cilium/ebpf/ringbuf"

	"github.com/profilemate/profilemate-bpf/analysis"
)

// stepRecordSize is sizeof(struct step_record) in bpf/records.h.
const stepRecordSize = 88

// stepLaunchesCounted is STEP_LAUNCHES_COUNTED in bpf/records.h.
const stepLaunchesCounted = 2

// recordReader is the part of *ringbuf.Reader the tracer uses, so that tests
// can feed records without eBPF.
type recordReader interface {
	ReadInto(*ringbuf.Record) error
}

// DecodeStep decodes one ring-buffer record. The record comes from the
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
	if r.StepId == 0 || r.BeginNs == 0 || r.Pid == 0 {
		return analysis.Step{}, fmt.Errorf("step record without step id, begin time or pid")
	}
	return stepOf(r), nil
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
		Launches: r.Launches, GraphLaunches: r.GraphLaunches, SyncWaitNs: r.SyncWaitNs,
		LaunchesUncounted: r.Flags&stepLaunchesCounted == 0,
		Evicted:           r.Flags&stepEvicted != 0,
	}
}

// readSteps reads records until the reader is closed or its deadline passes,
// handing each decoded step to emit. It returns the number of records that
// could not be decoded.
func readSteps(r recordReader, emit func(analysis.Step)) (invalid uint64, err error) {
	var rec ringbuf.Record
	for {
		err := r.ReadInto(&rec)
		switch {
		case errors.Is(err, ringbuf.ErrClosed), errors.Is(err, os.ErrDeadlineExceeded), errors.Is(err, ringbuf.ErrFlushed):
			return invalid, nil
		case err != nil:
			return invalid, err
		}
		s, err := DecodeStep(rec.RawSample)
		if err != nil {
			invalid++
			continue
		}
		emit(s)
	}
}
