package analysis

import (
	"encoding/csv"
	"io"
	"slices"
	"strconv"
)

// csvHeader is the column order of forward_pass_timing.csv. The first six
// are the sitecustomize profiler's columns and must stay first and unchanged:
// users' scripts read them by position as well as by name.
var csvHeader = slices.Concat([]string{
	"timestamp_sec", "phase", "batch_size", "num_tokens", "duration_ms", "throughput_tokens_per_sec",
	"pid", "step", "cpu_ms", "interval_ms", "launches", "graph_launches", "sync_wait_ms",
	"rank", "process", "num_prefill_reqs", "num_prefill_tokens", "forward_ms", "status",
}, schedHeader)

// schedHeader are the scheduler's columns: the step this forward pass ran
// (issue 14), after every column before it.
var schedHeader = []string{
	"kv_cache_usage", "running_reqs", "waiting_reqs", "preempted_reqs",
	"token_budget_use", "seq_budget_use", "spec_proposed", "spec_accepted",
}

// WriteCSV writes the header and one line per row, in the order given. Times
// in ms have 3 decimals (microseconds), timestamps 6; values that never came
// (cpu_ms without sample_end, a process's last interval_ms, rank of a process
// without one, launches and sync_wait_ms where they were not probed for the
// whole step) are empty cells, and so is the status of a finished step. The
// scheduler's columns are empty for a row without a joined sched record and
// where the marker passed -1.
func WriteCSV(w io.Writer, rows []Row) error {
	cw := csv.NewWriter(w)
	if err := cw.Write(csvHeader); err != nil {
		return err
	}
	for _, r := range rows {
		if err := cw.Write(csvRecord(r)); err != nil {
			return err
		}
	}
	cw.Flush()
	return cw.Error()
}

func csvRecord(r Row) []string {
	rank := ""
	if r.Rank >= 0 {
		rank = strconv.Itoa(r.Rank)
	}
	return append([]string{
		fmtFloat(r.TimestampSec, 6),
		string(r.Phase),
		fmtUint(uint64(r.BatchSize)),
		fmtUint(uint64(r.NumTokens)),
		fmtFloat(r.DurationMs, 3),
		fmtFloat(r.ThroughputTokensPerSec, 1),
		fmtUint(uint64(r.PID)),
		fmtUint(r.Step),
		fmtOpt(r.CPUMs),
		fmtOpt(r.IntervalMs),
		launchesCell(r),
		fmtUint(uint64(r.GraphLaunches)),
		syncWaitCell(r),
		rank,
		r.Process,
		fmtUint(uint64(r.NumPrefillReqs)),
		fmtUint(uint64(r.NumPrefillTokens)),
		fmtOpt(r.ForwardMs),
		string(r.Status),
	}, schedCells(r.Sched)...)
}

// schedCells are the scheduler's columns of a row joined to s (nil: none).
func schedCells(s *Sched) []string {
	if s == nil {
		return make([]string, len(schedHeader))
	}
	count := func(v int64) string {
		if v < 0 {
			return ""
		}
		return strconv.FormatInt(v, 10)
	}
	share := func(v float64, ok bool) string {
		if !ok {
			return ""
		}
		return fmtFloat(v, 3)
	}
	return []string{
		share(s.kvUsage()),
		count(s.RunningReqs), count(s.WaitingReqs), count(s.PreemptedReqs),
		share(s.tokenBudgetUse()), share(s.seqBudgetUse()),
		count(s.SpecProposed), count(s.SpecAccepted),
	}
}

func launchesCell(r Row) string {
	if r.LaunchesOff {
		return ""
	}
	return fmtUint(uint64(r.Launches))
}

func syncWaitCell(r Row) string {
	if r.SyncsOff {
		return ""
	}
	return fmtFloat(r.SyncWaitMs, 3)
}

func fmtFloat(x float64, decimals int) string { return strconv.FormatFloat(x, 'f', decimals, 64) }
func fmtUint(x uint64) string                 { return strconv.FormatUint(x, 10) }

func fmtOpt(o OptMs) string {
	if !o.Valid {
		return ""
	}
	return fmtFloat(o.Ms, 3)
}
