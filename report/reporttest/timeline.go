// Package reporttest checks what package report writes as a reader would:
// timeline.json against the trace-event format, report.html in a real
// browser. The tests of report and the end-to-end tests of the CLI share it.
package reporttest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// Timeline is a checked timeline.json.
type Timeline struct {
	DisplayTimeUnit string
	Processes       map[int64]*TimelineProcess // by pid
	Counters        map[string]int             // counter events by name
	CounterEvents   []TimelineCounter          // every counter event, in file order
}

// TimelineCounter is one C event.
type TimelineCounter struct {
	Name string
	PID  int64
	TsNs int64
	Args map[string]float64
}

// TimelineProcess is one process track.
type TimelineProcess struct {
	PID       int64
	Name      string           // process_name
	Rows      map[int64]string // thread_name by tid
	Steps     []TimelineSlice  // cat "step", in ts order
	SortIndex int
}

// TimelineSlice is one X event; times are integer nanoseconds, parsed from
// the microseconds written with three decimals.
type TimelineSlice struct {
	Name     string
	Cat      string
	TID      int64
	TsNs     int64
	DurNs    int64
	Args     map[string]any
	Children []TimelineSlice // the slices directly inside it
}

// EndNs is where the slice ends.
func (s TimelineSlice) EndNs() int64 { return s.TsNs + s.DurNs }

type event struct {
	Name string          `json:"name"`
	Cat  string          `json:"cat"`
	Ph   string          `json:"ph"`
	PID  *int64          `json:"pid"`
	TID  *int64          `json:"tid"`
	Ts   *json.Number    `json:"ts"`
	Dur  *json.Number    `json:"dur"`
	ID   json.RawMessage `json:"id"`
	Args map[string]any  `json:"args"`
}

// stepArgs are the arguments every step slice must carry, with what kind of
// JSON value: all numbers but the phase; launches and sync_wait_ms may be
// null (not probed for the whole step).
var stepArgs = map[string]string{
	"step": "number", "phase": "string", "batch_size": "number", "tokens": "number",
	"prefill_reqs": "number", "prefill_tokens": "number", "launches": "number|null",
	"graph_launches": "number", "sync_wait_ms": "number|null", "duration_ms": "number",
}

// partOrder is the order of the parts of a step.
var partOrder = []string{"forward", "sampling", "wait for output"}

// CheckTimeline parses a timeline and checks it against the Chrome
// trace-event format as Perfetto and chrome://tracing read it, and against
// what profilemate-bpf promises of it:
//
//   - a JSON object with displayTimeUnit and a traceEvents array; every event
//     has a name, a known phase (M, X, C), an integer pid and tid;
//   - metadata names every process and every thread (row) that has slices;
//   - X events have ts and dur in microseconds with at most three decimals
//     (nanoseconds) and dur >= 0;
//   - on every thread, X events nest: each lies wholly inside the one it
//     starts in, or after it ends;
//   - slices of category "step" are top-level and named by their phase, with
//     all step arguments; their step ids are unique per process; the
//     category "step part" slices lie directly inside a step, in the order
//     forward, sampling, wait for output, each beginning where the previous
//     ended (the first at the step's begin);
//   - counter events have numeric arguments.
func CheckTimeline(data []byte) (*Timeline, error) {
	var doc struct {
		DisplayTimeUnit string           `json:"displayTimeUnit"`
		TraceEvents     *json.RawMessage `json:"traceEvents"`
		OtherData       map[string]any   `json:"otherData"`
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	if err := dec.Decode(&doc); err != nil {
		return nil, fmt.Errorf("not a JSON object: %w", err)
	}
	if doc.TraceEvents == nil {
		return nil, fmt.Errorf("no traceEvents array")
	}
	if doc.DisplayTimeUnit != "ms" && doc.DisplayTimeUnit != "ns" {
		return nil, fmt.Errorf("displayTimeUnit %q, want ms or ns", doc.DisplayTimeUnit)
	}
	var events []event
	dec = json.NewDecoder(bytes.NewReader(*doc.TraceEvents))
	dec.UseNumber()
	if err := dec.Decode(&events); err != nil {
		return nil, fmt.Errorf("traceEvents: %w", err)
	}

	tl := &Timeline{DisplayTimeUnit: doc.DisplayTimeUnit, Processes: map[int64]*TimelineProcess{}, Counters: map[string]int{}}
	proc := func(pid int64) *TimelineProcess {
		p := tl.Processes[pid]
		if p == nil {
			p = &TimelineProcess{PID: pid, Rows: map[int64]string{}}
			tl.Processes[pid] = p
		}
		return p
	}
	type thread struct{ pid, tid int64 }
	slices_ := map[thread][]TimelineSlice{}
	for i, e := range events {
		where := fmt.Sprintf("event %d (%s %q)", i, e.Ph, e.Name)
		if e.Name == "" || e.PID == nil || e.TID == nil {
			return nil, fmt.Errorf("%s: needs name, pid and tid", where)
		}
		switch e.Ph {
		case "M":
			p := proc(*e.PID)
			switch e.Name {
			case "process_name":
				name, _ := e.Args["name"].(string)
				if name == "" {
					return nil, fmt.Errorf("%s: no args.name", where)
				}
				p.Name = name
			case "thread_name":
				name, _ := e.Args["name"].(string)
				if name == "" {
					return nil, fmt.Errorf("%s: no args.name", where)
				}
				p.Rows[*e.TID] = name
			case "process_sort_index", "thread_sort_index":
				n, ok := e.Args["sort_index"].(json.Number)
				if _, err := n.Int64(); !ok || err != nil {
					return nil, fmt.Errorf("%s: sort_index %v is not an integer", where, e.Args["sort_index"])
				}
				if e.Name == "process_sort_index" {
					v, _ := n.Int64()
					p.SortIndex = int(v)
				}
			case "process_labels":
				if _, ok := e.Args["labels"].(string); !ok {
					return nil, fmt.Errorf("%s: no args.labels", where)
				}
			default:
				return nil, fmt.Errorf("%s: unknown metadata", where)
			}
		case "X":
			if e.Ts == nil || e.Dur == nil {
				return nil, fmt.Errorf("%s: X needs ts and dur", where)
			}
			ts, err := usToNs(*e.Ts)
			if err != nil {
				return nil, fmt.Errorf("%s: ts: %w", where, err)
			}
			dur, err := usToNs(*e.Dur)
			if err != nil || dur < 0 {
				return nil, fmt.Errorf("%s: dur %v: %v", where, *e.Dur, err)
			}
			if e.Cat != "step" && e.Cat != "step part" {
				return nil, fmt.Errorf("%s: category %q", where, e.Cat)
			}
			if e.ID != nil {
				return nil, fmt.Errorf("%s: an X event has no id", where)
			}
			t := thread{*e.PID, *e.TID}
			slices_[t] = append(slices_[t], TimelineSlice{Name: e.Name, Cat: e.Cat, TID: *e.TID, TsNs: ts, DurNs: dur, Args: e.Args})
		case "C":
			if e.Ts == nil {
				return nil, fmt.Errorf("%s: C needs ts", where)
			}
			ts, err := usToNs(*e.Ts)
			if err != nil {
				return nil, fmt.Errorf("%s: ts: %w", where, err)
			}
			if len(e.Args) == 0 {
				return nil, fmt.Errorf("%s: a counter needs a value", where)
			}
			c := TimelineCounter{Name: e.Name, PID: *e.PID, TsNs: ts, Args: map[string]float64{}}
			for k, v := range e.Args {
				n, ok := v.(json.Number)
				f, err := n.Float64()
				if !ok || err != nil {
					return nil, fmt.Errorf("%s: counter value %s=%v is not a number", where, k, v)
				}
				c.Args[k] = f
			}
			tl.Counters[e.Name]++
			tl.CounterEvents = append(tl.CounterEvents, c)
		default:
			return nil, fmt.Errorf("%s: unexpected phase", where)
		}
	}

	for t, ss := range slices_ {
		p := tl.Processes[t.pid]
		if p == nil || p.Name == "" {
			return nil, fmt.Errorf("pid %d has slices but no process_name", t.pid)
		}
		if p.Rows[t.tid] == "" {
			return nil, fmt.Errorf("pid %d tid %d has slices but no thread_name", t.pid, t.tid)
		}
		tops, err := nest(ss)
		if err != nil {
			return nil, fmt.Errorf("pid %d tid %d: %w", t.pid, t.tid, err)
		}
		for _, s := range tops {
			if err := checkStep(s); err != nil {
				return nil, fmt.Errorf("pid %d tid %d: %w", t.pid, t.tid, err)
			}
		}
		p.Steps = append(p.Steps, tops...)
	}
	for _, p := range tl.Processes {
		slices.SortFunc(p.Steps, func(a, b TimelineSlice) int { return int(a.TsNs - b.TsNs) })
		seen := map[string]bool{}
		for _, s := range p.Steps {
			id := fmt.Sprint(s.Args["step"])
			if seen[id] {
				return nil, fmt.Errorf("pid %d: step %s twice", p.PID, id)
			}
			seen[id] = true
		}
	}
	return tl, nil
}

// nest builds the slice tree of one thread, failing on a slice that
// straddles the end of the one it begins in. Slices that begin together
// nest longest first, as the viewers sort them.
func nest(ss []TimelineSlice) ([]TimelineSlice, error) {
	slices.SortStableFunc(ss, func(a, b TimelineSlice) int {
		if a.TsNs != b.TsNs {
			return int(a.TsNs - b.TsNs)
		}
		return int(b.DurNs - a.DurNs)
	})
	parent := make([]int, len(ss))
	var stack []int // open slices, outermost first
	for i, s := range ss {
		for len(stack) > 0 && ss[stack[len(stack)-1]].EndNs() <= s.TsNs {
			stack = stack[:len(stack)-1]
		}
		parent[i] = -1
		if len(stack) > 0 {
			p := ss[stack[len(stack)-1]]
			if s.EndNs() > p.EndNs() {
				return nil, fmt.Errorf("%s [%d, %d] ns begins inside %s [%d, %d] ns and ends after it",
					s.Name, s.TsNs, s.EndNs(), p.Name, p.TsNs, p.EndNs())
			}
			parent[i] = stack[len(stack)-1]
		}
		stack = append(stack, i)
	}
	children := make(map[int][]int)
	for i, p := range parent {
		children[p] = append(children[p], i)
	}
	var build func(p int) []TimelineSlice
	build = func(p int) []TimelineSlice {
		var out []TimelineSlice
		for _, i := range children[p] {
			s := ss[i]
			s.Children = build(i)
			out = append(out, s)
		}
		return out
	}
	return build(-1), nil
}

func checkStep(s TimelineSlice) error {
	if s.Cat != "step" {
		return fmt.Errorf("%s at %d ns: a %q slice outside any step", s.Name, s.TsNs, s.Cat)
	}
	for k, kind := range stepArgs {
		v, ok := s.Args[k]
		if !ok {
			return fmt.Errorf("step at %d ns: no argument %s", s.TsNs, k)
		}
		var got string
		switch v.(type) {
		case json.Number:
			got = "number"
		case string:
			got = "string"
		case nil:
			got = "null"
		}
		if !slices.Contains(strings.Split(kind, "|"), got) {
			return fmt.Errorf("step at %d ns: argument %s=%v, want %s", s.TsNs, k, v, kind)
		}
	}
	if s.Args["phase"] != s.Name {
		return fmt.Errorf("step at %d ns named %q, phase %v", s.TsNs, s.Name, s.Args["phase"])
	}
	cursor, last := s.TsNs, -1
	for _, c := range s.Children {
		i := slices.Index(partOrder, c.Name)
		if c.Cat != "step part" || i < 0 {
			return fmt.Errorf("step at %d ns: unexpected %q slice %q inside", s.TsNs, c.Cat, c.Name)
		}
		if i <= last {
			return fmt.Errorf("step at %d ns: %q out of order", s.TsNs, c.Name)
		}
		if c.TsNs != cursor {
			return fmt.Errorf("step at %d ns: %q begins at %d ns, not where the previous part ended (%d)", s.TsNs, c.Name, c.TsNs, cursor)
		}
		if len(c.Children) > 0 {
			return fmt.Errorf("step at %d ns: slices inside %q", s.TsNs, c.Name)
		}
		cursor, last = c.EndNs(), i
	}
	return nil
}

// usToNs parses microseconds written with at most three decimals into
// nanoseconds, exactly.
func usToNs(n json.Number) (int64, error) {
	s := string(n)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	whole, frac, _ := strings.Cut(s, ".")
	if len(frac) > 3 || strings.ContainsAny(s, "eE") {
		return 0, fmt.Errorf("%s: more precise than nanoseconds", n)
	}
	w, err := strconv.ParseInt(whole, 10, 64)
	if err != nil {
		return 0, err
	}
	f := int64(0)
	if frac != "" {
		f, err = strconv.ParseInt(frac+strings.Repeat("0", 3-len(frac)), 10, 64)
		if err != nil {
			return 0, err
		}
	}
	ns := w*1000 + f
	if neg {
		ns = -ns
	}
	return ns, nil
}
