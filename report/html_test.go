package report_test

import (
	"bytes"
	"strings"
	"testing"

	"github.com/profilemate/profilemate-bpf/analysis"
	"github.com/profilemate/profilemate-bpf/report"
)

func page(t *testing.T, r analysis.Report) string {
	t.Helper()
	var buf bytes.Buffer
	if err := report.WriteHTML(&buf, analysis.Analyze(r), facts, nil); err != nil {
		t.Fatal(err)
	}
	return buf.String()
}

// TestReportSaysWhenSyncsWereSampled: report.html names the launch and
// sync facts of _trace, says under the summary which means are of the
// sampled seconds, and under the processes table that their launches,
// syncs and waits are of those seconds alone; with synchronizations off
// the processes show "off".
func TestReportSaysWhenSyncsWereSampled(t *testing.T) {
	r := asyncTrace(20)
	r.LaunchesSampled, r.SyncsSampled, r.SyncLiveNs, r.LaunchLiveNs = true, true, 25*msNs, 24*msNs
	for i := range r.Steps {
		r.Steps[i].SyncsUncounted = r.Steps[i].StepID > 10
	}
	html := page(t, r)
	for _, want := range []string{
		"<dt>syncs_probed</dt><dd>true</dd>", "<dt>syncs_sampled</dt><dd>true</dd>", "<dt>sync_live_sec</dt><dd>0.025</dd>",
		"<dt>launches_sampled</dt><dd>true</dd>", "<dt>launch_live_sec</dt><dd>0.024</dd>",
		"Launches/step and Sync ms/step: means over the steps of the sampled seconds only",
		`<p class="meta" id="activity-note">Launches, syncs and sync wait: in the sampled seconds only, `,
	} {
		if !strings.Contains(html, want) {
			t.Errorf("report.html lacks %q", want)
		}
	}

	r = asyncTrace(20)
	html = page(t, r)
	if strings.Contains(html, "sampled seconds") || !strings.Contains(html, "<dt>syncs_sampled</dt><dd>false</dd>") {
		t.Errorf("nothing sampled, yet the page says so, or lacks syncs_sampled false")
	}

	r.NoSyncProbes = true
	html = page(t, r)
	const tp0Row = `<td class="text">VLLM::Worker_TP0</td><td class="num">4101</td><td class="num">0</td><td class="num">20</td><td class="num">120</td><td class="num">20</td><td class="num">off</td><td class="num">off</td>`
	if !strings.Contains(html, tp0Row) || !strings.Contains(html, "<dt>syncs_probed</dt><dd>false</dd>") {
		t.Errorf("syncs off: want TP0's syncs and sync wait shown as off and syncs_probed false")
	}
}
