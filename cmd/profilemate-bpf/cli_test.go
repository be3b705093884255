package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// exitCode runs the binary and returns its exit status and output.
func exitCode(t *testing.T, cmd *exec.Cmd) (int, string) {
	t.Helper()
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return ee.ExitCode(), string(out)
	}
	if err != nil {
		t.Fatal(err)
	}
	return 0, string(out)
}

func TestExitCodes(t *testing.T) {
	requireRoot(t)
	// A directory others can enter: one case runs the binary as nobody.
	dir, err := os.MkdirTemp("", "profilemate-exit-codes-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	os.Chmod(dir, 0o755)
	bin := buildBinary(t, dir)
	sleeper := exec.Command("sleep", "30")
	if err := sleeper.Start(); err != nil {
		t.Fatal(err)
	}
	defer sleeper.Process.Kill()
	pid := strconv.Itoa(sleeper.Process.Pid)
	nobody := exec.Command(bin, "--pid", pid, "--out", filepath.Join(dir, "out"))
	nobody.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	for _, c := range []struct {
		name string
		cmd  *exec.Cmd
		code int
		says string
	}{
		{"no such pid", exec.Command(bin, "--pid", "999999999", "--out", t.TempDir()), exitNoProcess, "no process with pid 999999999"},
		{"no CUDA in the tree", exec.Command(bin, "--pid", pid, "--duration", "1s", "--out", t.TempDir()), exitNoCUDA, "no CUDA library"},
		{"unwritable output", exec.Command(bin, "--pid", pid, "--out", "/proc/1/nope"), exitOutput, "output directory"},
		{"invalid duration", exec.Command(bin, "--pid", pid, "--duration", "soon"), exitUsage, "see --help"},
		{"invalid --launches", exec.Command(bin, "--pid", pid, "--launches=maybe"), exitUsage, "see --help"},
		{"invalid --syncs", exec.Command(bin, "--pid", pid, "--syncs=true"), exitUsage, `invalid value "true" for flag -syncs: want sample, all or off`},
		{"unknown --leave-out class", exec.Command(bin, "--pid", pid, "--leave-out", "sync,probes"), exitUsage, `unknown probe class "probes"`},
		{"bad --launch-sample", exec.Command(bin, "--pid", pid, "--launch-sample", "10s/1s"), exitUsage, "0 < ON < EVERY"},
		{"help", exec.Command(bin, "--help"), exitOK, "--launches=off"},
		{"not root", nobody, exitPrivilege, "sudo"},
	} {
		code, out := exitCode(t, c.cmd)
		if code != c.code || !strings.Contains(out, c.says) || strings.Contains(out, "panic") {
			t.Errorf("%s: exit %d, want %d with %q; output:\n%s", c.name, code, c.code, c.says, out)
		}
	}
}

// TestWithoutMarker: a server that did not load the marker is still traced
// for its per-process CUDA activity, and the user is told why there are no
// forward passes: the marker is installed in its environment but vLLM was
// told to load no plugin.
func TestWithoutMarker(t *testing.T) {
	requireRoot(t)
	bin := buildAll(t)
	t.Setenv("VLLM_PLUGINS", "none") // vLLM loads no plugin: no marker
	srv := startServer(t, "--workers", "2", "--duration", "30")
	srv.waitReady(t)
	out := t.TempDir()
	code, text := exitCode(t, exec.Command(bin, "--pid", strconv.Itoa(srv.cmd.Process.Pid), "--duration", "2s", "--out", out))
	if code != 0 || !strings.Contains(text, "marker installed, not loaded yet") || !strings.Contains(text, "VLLM_PLUGINS") {
		t.Fatalf("exit %d:\n%s", code, text)
	}
	var summary struct {
		Activity []struct {
			Title    string  `json:"title"`
			Launches float64 `json:"launches"`
		} `json:"_activity"`
	}
	b, _ := os.ReadFile(filepath.Join(out, "summary.json"))
	if err := json.Unmarshal(b, &summary); err != nil {
		t.Fatal(err)
	}
	workers := 0
	for _, a := range summary.Activity {
		if strings.HasPrefix(a.Title, "VLLM::Worker_TP") && a.Launches > 100 {
			workers++
		}
	}
	if workers != 2 {
		t.Errorf("activity of %d workers, want 2:\n%s", workers, b)
	}
	// No steps, nothing to plot; the page still shows the activity.
	if _, err := os.Stat(filepath.Join(out, "report.html")); err != nil {
		t.Errorf("no report.html without the marker: %v", err)
	}
	if plots, _ := filepath.Glob(filepath.Join(out, "plot_*")); len(plots) != 0 {
		t.Errorf("plots without steps: %v", plots)
	}
}

// TestInterruptWritesResults: SIGINT ends the trace early and everything is
// written, owned by the user who ran sudo.
func TestInterruptWritesResults(t *testing.T) {
	requireRoot(t)
	bin := buildAll(t)
	srv := startServer(t, "--workers", "1", "--duration", "30")
	srv.waitReady(t)
	out := filepath.Join(t.TempDir(), "run")
	cmd := exec.Command(bin, "--pid", strconv.Itoa(srv.cmd.Process.Pid), "--duration", "1h", "--out", out)
	cmd.Env = append(os.Environ(), "SUDO_UID=4242", "SUDO_GID=4343")
	var buf bytes.Buffer
	cmd.Stdout, cmd.Stderr = &buf, &buf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(2 * time.Second)
	start := time.Now()
	cmd.Process.Signal(os.Interrupt)
	if err := cmd.Wait(); err != nil {
		t.Fatalf("%v\n%s", err, buf.String())
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("took %v to stop after SIGINT", d)
	}
	for _, f := range []string{"forward_pass_timing.csv", "summary.json", "timeline.json", "report.html", "plot_step_duration.png"} {
		st, err := os.Stat(filepath.Join(out, f))
		if err != nil {
			t.Fatalf("%s not written after SIGINT:\n%s", f, buf.String())
		}
		if s := st.Sys().(*syscall.Stat_t); s.Uid != 4242 || s.Gid != 4343 {
			t.Errorf("%s owned by %d:%d, want the sudo user 4242:4343", f, s.Uid, s.Gid)
		}
	}
	if rows := readCSV(t, filepath.Join(out, "forward_pass_timing.csv")); len(rows) < 100 {
		t.Errorf("%d rows after 2 s of tracing", len(rows))
	}
}

// TestServerExitsMidTrace: the steps of processes that exit during the trace
// are kept, and the trace ends once nothing is left to trace.
func TestServerExitsMidTrace(t *testing.T) {
	requireRoot(t)
	bin := buildAll(t)
	srv := startServer(t, "--workers", "2", "--duration", "3")
	srv.waitReady(t)
	out := t.TempDir()
	start := time.Now()
	code, text := exitCode(t, exec.Command(bin, "--pid", strconv.Itoa(srv.cmd.Process.Pid), "--duration", "60s", "--out", out))
	if code != 0 || !strings.Contains(text, "every traced process has exited") {
		t.Fatalf("exit %d:\n%s", code, text)
	}
	if d := time.Since(start); d > 15*time.Second {
		t.Errorf("trace went on for %v after the server stopped", d)
	}
	pids := map[string]int{}
	for _, r := range readCSV(t, filepath.Join(out, "forward_pass_timing.csv")) {
		pids[r["pid"]]++
	}
	if len(pids) != 2 {
		t.Errorf("rows from %d workers, want both: %v", len(pids), pids)
	}
}

// TestMakeInstall: `make install` puts the binary and the marker where the
// README says, and the binary knows its version and commit.
func TestMakeInstall(t *testing.T) {
	dest := t.TempDir()
	repo := repoRoot(t)
	if out, err := exec.Command("make", "-s", "-C", repo, "install", "DESTDIR="+dest, "PREFIX=/usr/local").CombinedOutput(); err != nil {
		t.Fatalf("make install: %v\n%s", err, out)
	}
	out, err := exec.Command(filepath.Join(dest, "usr/local/bin/profilemate-bpf"), "--version").Output()
	commit, _ := exec.Command("git", "-C", repo, "rev-parse", "--short", "HEAD").Output()
	if err != nil || !strings.HasPrefix(string(out), "profilemate-bpf 0.") || !strings.Contains(string(out), strings.TrimSpace(string(commit))) {
		t.Errorf("--version: %q (%v), want the version and commit %s", out, err, commit)
	}
	for _, f := range []string{"pyproject.toml", "sitecustomize.py", "profilemate_marker/patch.py", "profilemate_marker/libprofilemate_marker.so"} {
		if _, err := os.Stat(filepath.Join(dest, "usr/local/share/profilemate-bpf/marker", f)); err != nil {
			t.Errorf("marker not installed: %v", err)
		}
	}
}
