package report

import (
	"bufio"
	"encoding/json"
	"io"
	"math"
	"slices"
	"strconv"

	"github.com/profilemate/profilemate-bpf/analysis"
)

// The timeline is a Chrome trace-event file (the JSON object form), which
// Perfetto and chrome://tracing open as they are:
//
//   - one process per traced process with steps, named by its vLLM title
//     and sorted as the summary sorts them (by tensor-parallel group, then
//     rank);
//   - in each, one thread ("row") per level of overlap: under async
//     scheduling a step begins before the previous one's output is ready,
//     and complete ("X") events on one thread must nest, so an overlapping
//     step goes to the next free row;
//   - per step an X slice named by its phase from step_begin to the end of
//     its duration, and inside it, one after the other, "forward" (to
//     forward_end), "sampling" (to sample_end) and "wait for output" (to
//     output_ready), each where its point came;
//   - counters "batch size" and "tokens per step", written where they change;
//   - where the marker has the scheduler's probe, counters "KV cache usage
//     %", "running requests" and "waiting requests" on the scheduler's
//     process (EngineCore: with tensor parallelism a process without steps,
//     then a track of its own), each scheduler step's values at the begin
//     of the first forward pass it ran. A scheduler step without one is not
//     drawn: the timeline has no time for it but its record's.
//
// Timestamps are microseconds since the trace start (the CSV's
// timestamp_sec times 10^6) on the one clock of all processes, so ranks line
// up. They are written from integer nanoseconds with three decimals, so a
// child never ends after its parent by a rounding.

// Slice names inside a step, in the order they follow each other.
const (
	SliceForward = "forward"
	SliceSample  = "sampling"
	SliceOutput  = "wait for output"
)

// Counter names as the two tracks are called. Perfetto names a counter
// track "<event name> <argument>", chrome://tracing shows the event name
// with the argument as its series.
const (
	counterBatch     = "batch"
	counterBatchArg  = "size"
	counterTokens    = "tokens"
	counterTokensArg = "per step"
	counterKV        = "KV cache"
	counterKVArg     = "usage %"
	counterRunning   = "running"
	counterWaiting   = "waiting"
	counterReqsArg   = "requests"
	stepCategory     = "step"
	stepPartCategory = "step part"
	maxPID           = 1 << 22 // the kernel's largest pid_max
)

// rowTID is the thread id of a process's row: the pid itself for the first
// row, as a process's main thread, then ids no pid can have, so that no two
// processes share a thread.
func rowTID(pid uint32, row int) int64 {
	return int64(pid) + int64(row)*maxPID
}

// nsOf turns a row's milliseconds back into the integer nanoseconds they
// were made from.
func nsOf(ms float64) int64 { return int64(math.Round(ms * 1e6)) }

// timelineStep is one row placed on its track.
type timelineStep struct {
	r     *analysis.Row
	begin int64 // ns since the trace start
	row   int
}

// WriteTimeline writes res as a Chrome trace-event JSON object.
func WriteTimeline(w io.Writer, res analysis.Result, f Facts) error {
	bw := bufio.NewWriterSize(w, 1<<16)
	e := &eventWriter{w: bw}

	procs := stepProcesses(res)
	bw.WriteString(`{"displayTimeUnit":"ms","otherData":`)
	other, err := json.Marshal(map[string]any{
		"tool":            "profilemate-bpf " + f.Version,
		"server":          f.Server,
		"trace_start":     f.Start.UTC().Format("2006-01-02T15:04:05.000Z"),
		"trace_start_ns":  res.StartNs,
		"clock":           "CLOCK_MONOTONIC; ts are microseconds since trace_start_ns",
		"launches_probed": res.Summary.Trace.LaunchesProbed,
		"syncs_probed":    res.Summary.Trace.SyncsProbed,
	})
	if err != nil {
		return err
	}
	bw.Write(other)
	bw.WriteString(`,"traceEvents":[`)

	byPID := make(map[uint32][]timelineStep)
	for i := range res.Rows {
		r := &res.Rows[i]
		byPID[r.PID] = append(byPID[r.PID], timelineStep{r: r, begin: int64(r.BeginNs - res.StartNs)})
	}
	for sort, p := range procs {
		steps := byPID[p.PID]
		rows := placeRows(steps)
		e.metadata(p.PID, int64(p.PID), "process_name", "name", p.Title)
		e.metadataInt(p.PID, int64(p.PID), "process_sort_index", sort)
		if p.Rank >= 0 {
			e.metadata(p.PID, int64(p.PID), "process_labels", "labels", "TP rank "+strconv.Itoa(p.Rank))
		}
		for row := range rows {
			name := "steps"
			if row > 0 {
				name = "steps overlapping the row above (async scheduling)"
			}
			e.metadata(p.PID, rowTID(p.PID, row), "thread_name", "name", name)
			e.metadataInt(p.PID, rowTID(p.PID, row), "thread_sort_index", row)
		}
		var lastBatch, lastTokens int64 = -1, -1
		for _, s := range steps {
			e.step(s)
			if b := int64(s.r.BatchSize); b != lastBatch {
				e.counter(p.PID, s.begin, counterBatch, counterBatchArg, b)
				lastBatch = b
			}
			if t := int64(s.r.NumTokens); t != lastTokens {
				e.counter(p.PID, s.begin, counterTokens, counterTokensArg, t)
				lastTokens = t
			}
		}
	}
	e.schedCounters(res, procs)
	bw.WriteString("\n]}\n")
	return bw.Flush()
}

// schedCounters writes the scheduler's counters: per scheduler step joined
// to a row, at the begin of its first row (rows are in begin order), on the
// process that fired it, named where it has no steps of its own.
func (e *eventWriter) schedCounters(res analysis.Result, procs []analysis.Process) {
	named := make(map[uint32]bool, len(procs))
	for _, p := range procs {
		named[p.PID] = true
	}
	seen := make(map[*analysis.Sched]bool)
	type last struct{ kv, running, waiting int64 }
	lasts := make(map[uint32]*last)
	for i := range res.Rows {
		r := &res.Rows[i]
		s := r.Sched
		if s == nil || seen[s] {
			continue
		}
		seen[s] = true
		if !named[s.PID] {
			named[s.PID] = true
			e.metadata(s.PID, int64(s.PID), "process_name", "name", "scheduler (pid "+strconv.FormatUint(uint64(s.PID), 10)+")")
			e.metadataInt(s.PID, int64(s.PID), "process_sort_index", len(procs))
		}
		l := lasts[s.PID]
		if l == nil {
			l = &last{-1, -1, -1}
			lasts[s.PID] = l
		}
		at := int64(r.BeginNs - res.StartNs)
		if v := s.KVUsagePermille; v >= 0 && v != l.kv {
			e.counterFloat(s.PID, at, counterKV, counterKVArg, float64(v)/10)
			l.kv = v
		}
		if v := s.RunningReqs; v >= 0 && v != l.running {
			e.counter(s.PID, at, counterRunning, counterReqsArg, v)
			l.running = v
		}
		if v := s.WaitingReqs; v >= 0 && v != l.waiting {
			e.counter(s.PID, at, counterWaiting, counterReqsArg, v)
			l.waiting = v
		}
	}
}

// stepProcesses are the processes that have rows, in the summary's order.
func stepProcesses(res analysis.Result) []analysis.Process {
	ps := make([]analysis.Process, len(res.Summary.Processes))
	for i, p := range res.Summary.Processes {
		title := p.Title
		if title == "" {
			title = "pid " + strconv.FormatUint(uint64(p.PID), 10)
		}
		ps[i] = analysis.Process{PID: p.PID, Title: title, Rank: p.Rank}
	}
	return ps
}

// placeRows puts each step, in begin order, on the lowest row that is free
// at its begin, and returns the number of rows used. Steps of one row then
// never overlap, which the X events of one thread require.
func placeRows(steps []timelineStep) int {
	var ends []int64 // per row: where its last step ends
	for i := range steps {
		s := &steps[i]
		end := s.begin + nsOf(s.r.DurationMs)
		row := slices.IndexFunc(ends, func(e int64) bool { return e <= s.begin })
		if row < 0 {
			row = len(ends)
			ends = append(ends, 0)
		}
		ends[row] = end
		s.row = row
	}
	return len(ends)
}

// eventWriter appends events to the traceEvents array by hand: a 60-second
// trace of two workers has some 60,000 steps, and encoding/json's
// reflection would make writing them the slow part of the trace's end.
type eventWriter struct {
	w   *bufio.Writer
	n   int
	buf []byte
}

func (e *eventWriter) begin() []byte {
	b := e.buf[:0]
	if e.n > 0 {
		b = append(b, ',')
	}
	e.n++
	return append(b, '\n', '{')
}

func (e *eventWriter) end(b []byte) {
	b = append(b, '}')
	e.w.Write(b)
	e.buf = b
}

func appendString(b []byte, s string) []byte {
	q, _ := json.Marshal(s) // a string always marshals
	return append(b, q...)
}

// appendUs writes ns as microseconds with three decimals, exactly.
func appendUs(b []byte, ns int64) []byte {
	if ns < 0 {
		b = append(b, '-')
		ns = -ns
	}
	b = strconv.AppendInt(b, ns/1000, 10)
	frac := ns % 1000
	b = append(b, '.', byte('0'+frac/100), byte('0'+frac/10%10), byte('0'+frac%10))
	return b
}

func (e *eventWriter) head(b []byte, ph string, pid uint32, tid int64) []byte {
	b = append(b, `"ph":"`...)
	b = append(b, ph...)
	b = append(b, `","pid":`...)
	b = strconv.AppendUint(b, uint64(pid), 10)
	b = append(b, `,"tid":`...)
	return strconv.AppendInt(b, tid, 10)
}

func (e *eventWriter) metadata(pid uint32, tid int64, name, key, value string) {
	b := e.begin()
	b = append(b, `"name":"`...)
	b = append(b, name...)
	b = append(b, `",`...)
	b = e.head(b, "M", pid, tid)
	b = append(b, `,"args":{`...)
	b = appendString(b, key)
	b = append(b, ':')
	b = appendString(b, value)
	e.end(append(b, '}'))
}

func (e *eventWriter) metadataInt(pid uint32, tid int64, name string, value int) {
	b := e.begin()
	b = append(b, `"name":"`...)
	b = append(b, name...)
	b = append(b, `",`...)
	b = e.head(b, "M", pid, tid)
	b = append(b, `,"args":{"sort_index":`...)
	b = strconv.AppendInt(b, int64(value), 10)
	e.end(append(b, '}'))
}

func (e *eventWriter) counter(pid uint32, ts int64, name, arg string, value int64) {
	e.counterOf(pid, ts, name, arg, func(b []byte) []byte { return strconv.AppendInt(b, value, 10) })
}

// counterFloat is counter with a value that has one decimal.
func (e *eventWriter) counterFloat(pid uint32, ts int64, name, arg string, value float64) {
	e.counterOf(pid, ts, name, arg, func(b []byte) []byte { return strconv.AppendFloat(b, value, 'f', 1, 64) })
}

// counterOf writes a C event whose one argument value appends.
func (e *eventWriter) counterOf(pid uint32, ts int64, name, arg string, value func([]byte) []byte) {
	b := e.begin()
	b = append(b, `"name":"`...)
	b = append(b, name...)
	b = append(b, `",`...)
	b = e.head(b, "C", pid, int64(pid))
	b = append(b, `,"ts":`...)
	b = appendUs(b, ts)
	b = append(b, `,"args":{"`...)
	b = append(b, arg...)
	b = append(b, `":`...)
	b = value(b)
	e.end(append(b, '}'))
}

// slice writes an X event; args, when not nil, appends the args object's
// members.
func (e *eventWriter) slice(pid uint32, tid int64, cat, name string, ts, dur int64, args func([]byte) []byte) {
	b := e.begin()
	b = append(b, `"name":"`...)
	b = append(b, name...)
	b = append(b, `","cat":"`...)
	b = append(b, cat...)
	b = append(b, `",`...)
	b = e.head(b, "X", pid, tid)
	b = append(b, `,"ts":`...)
	b = appendUs(b, ts)
	b = append(b, `,"dur":`...)
	b = appendUs(b, dur)
	if args != nil {
		b = append(b, `,"args":{`...)
		b = args(b)
		b = append(b, '}')
	}
	e.end(b)
}

// step writes a step's slice and the parts of it whose points came, each
// from the previous point to its own. A point out of order (which the
// marker never produces) is left out rather than break the nesting.
func (e *eventWriter) step(s timelineStep) {
	r := s.r
	tid := rowTID(r.PID, s.row)
	dur := nsOf(r.DurationMs)
	e.slice(r.PID, tid, stepCategory, string(r.Phase), s.begin, dur, func(b []byte) []byte {
		b = append(b, `"step":`...)
		b = strconv.AppendUint(b, r.Step, 10)
		b = append(b, `,"phase":"`...)
		b = append(b, r.Phase...)
		b = append(b, `","batch_size":`...)
		b = strconv.AppendUint(b, uint64(r.BatchSize), 10)
		b = append(b, `,"tokens":`...)
		b = strconv.AppendUint(b, uint64(r.NumTokens), 10)
		b = append(b, `,"prefill_reqs":`...)
		b = strconv.AppendUint(b, uint64(r.NumPrefillReqs), 10)
		b = append(b, `,"prefill_tokens":`...)
		b = strconv.AppendUint(b, uint64(r.NumPrefillTokens), 10)
		// null where nobody counted: --launches=off, or a step outside
		// the launch sample (the CSV's empty cell).
		b = append(b, `,"launches":`...)
		if !r.LaunchesOff {
			b = strconv.AppendUint(b, uint64(r.Launches), 10)
		} else {
			b = append(b, "null"...)
		}
		b = append(b, `,"graph_launches":`...)
		b = strconv.AppendUint(b, uint64(r.GraphLaunches), 10)
		// Likewise null where no one timed the step's synchronizations.
		b = append(b, `,"sync_wait_ms":`...)
		if !r.SyncsOff {
			b = strconv.AppendFloat(b, r.SyncWaitMs, 'f', 3, 64)
		} else {
			b = append(b, "null"...)
		}
		b = append(b, `,"duration_ms":`...)
		b = strconv.AppendFloat(b, r.DurationMs, 'f', 3, 64)
		return b
	})
	cursor := int64(0) // ns since the step's begin
	for _, part := range [...]struct {
		name  string
		point analysis.OptMs
	}{{SliceForward, r.ForwardMs}, {SliceSample, r.CPUMs}, {SliceOutput, r.OutputReadyMs}} {
		if !part.point.Valid {
			continue
		}
		at := nsOf(part.point.Ms)
		if at < cursor || at > dur {
			continue
		}
		e.slice(r.PID, tid, stepPartCategory, part.name, s.begin+cursor, at-cursor, nil)
		cursor = at
	}
}
