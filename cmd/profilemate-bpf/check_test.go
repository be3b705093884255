package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/profilemate/profilemate-bpf/report"
	"github.com/profilemate/profilemate-bpf/tracer"
)

func TestCheckLines(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "missing")
	for _, c := range []struct {
		name string
		line checkLine
		ok   bool
	}{
		{"old kernel", checkKernelRelease("5.15.0-91-generic"), false},
		{"odd release", checkKernelRelease("banana"), false},
		{"new kernel", checkKernelRelease("6.18.44-fc"), true},
		{"kernel 6.6", checkKernelRelease("6.6.0"), true},
		{"kernel 6.5", checkKernelRelease("6.5.13"), false},
		{"no BTF", checkBTF(missing), false},
		{"BTF", checkBTF(os.Args[0]), true},
		{"no caps", checkCaps(0), false},
		{"only CAP_BPF", checkCaps(1 << capBPF), false},
		{"CAP_BPF+CAP_PERFMON", checkCaps(1<<capBPF | 1<<capPerfmon), true},
		{"CAP_SYS_ADMIN", checkCaps(1 << capSysAdmin), true},
		{"no uprobe PMU", checkUprobePMU(missing), false},
	} {
		if c.line.ok != c.ok {
			t.Errorf("%s: ok=%v, want %v (%s)", c.name, c.line.ok, c.ok, c.line)
		}
		s := c.line.String()
		if !c.ok && (!strings.HasPrefix(s, "✗ ") || !strings.Contains(s, "-> ")) {
			t.Errorf("%s: a ✗ line must say what to do: %q", c.name, s)
		}
		if c.ok && !strings.HasPrefix(s, "✓ ") {
			t.Errorf("%s: %q", c.name, s)
		}
	}
}

// fakeProc lays out a /proc with an API server (no CUDA), a worker with the
// CUDA libraries and, optionally, the marker.
func fakeProc(t *testing.T, marker bool) tracer.Proc {
	t.Helper()
	root := t.TempDir()
	write := func(pid, file, content string) {
		full := filepath.Join(root, pid, file)
		os.MkdirAll(filepath.Dir(full), 0o755)
		if err := os.WriteFile(full, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("10", "stat", "10 (python3) S 1 1 1")
	write("10", "cmdline", "python3\x00-m\x00vllm.entrypoints.openai.api_server\x00")
	write("10", "maps", "")
	write("11", "stat", "11 (VLLM::Worker) S 10 1 1")
	write("11", "cmdline", "VLLM::Worker_TP0\x00")
	maps := "7f0000000000-7f0000001000 r-xp 00000000 fd:01 5 /sp/nvidia/cu13/lib/libcudart.so.13\n" +
		"7f0000002000-7f0000003000 r-xp 00000000 fd:01 6 /usr/lib/libcuda.so.580.159.04\n"
	if marker {
		maps += "7f0000004000-7f0000005000 r-xp 00000000 fd:01 7 /sp/profilemate_marker/libprofilemate_marker.abi3.so\n"
	}
	write("11", "maps", maps)
	// The files themselves, where the tracer opens them: /proc/PID/root/...
	for _, line := range strings.Split(strings.TrimSpace(maps), "\n") {
		path := strings.Fields(line)[5]
		write("11", filepath.Join("root", path), "")
	}
	return tracer.Proc{Root: root}
}

func TestCheckServer(t *testing.T) {
	verdict := func(lines []checkLine) (ok bool, text string) {
		ok = true
		var b strings.Builder
		for _, l := range lines {
			ok = ok && (l.ok || l.soft)
			b.WriteString(l.String() + "\n")
		}
		return ok, b.String()
	}
	ok, text := verdict(checkServer(fakeProc(t, true), 10))
	if !ok || !strings.Contains(text, "VLLM::Worker_TP0: CUDA runtime") || !strings.Contains(text, "✓ profilemate marker") {
		t.Errorf("server with marker:\n%s", text)
	}
	ok, text = verdict(checkServer(fakeProc(t, false), 10))
	if !ok || !strings.Contains(text, "✗ profilemate marker") || !strings.Contains(text, "pip install") {
		t.Errorf("server without marker (still traceable, with advice):\n%s", text)
	}
	// Installed where the worker imports from (its PYTHONPATH) but not
	// loaded: only a restart is missing.
	p := fakeProc(t, false)
	for file, content := range map[string]string{
		"environ": "PYTHONPATH=/sp\x00",
		"root/sp/profilemate_marker/libprofilemate_marker.abi3.so": "",
	} {
		os.MkdirAll(filepath.Dir(filepath.Join(p.Root, "11", file)), 0o755)
		if err := os.WriteFile(filepath.Join(p.Root, "11", file), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	ok, text = verdict(checkServer(p, 10))
	if !ok || !strings.Contains(text, "✗ profilemate marker") ||
		!strings.Contains(text, "installed (/sp/profilemate_marker/libprofilemate_marker.abi3.so) but not loaded: restart") {
		t.Errorf("server with the marker installed, not loaded:\n%s", text)
	}
	ok, text = verdict(checkServer(fakeProc(t, true), 11+100))
	if ok || !strings.Contains(text, "no such process") {
		t.Errorf("missing pid:\n%s", text)
	}
	// Libraries that cannot be opened through /proc/PID/root (the fixture
	// has no root/ directories, as a container without CAP_SYS_PTRACE
	// cannot open them) are ✗ with the capability to add.
	noRoot := fakeProc(t, true)
	os.RemoveAll(filepath.Join(noRoot.Root, "11", "root"))
	if ok, text = verdict(checkServer(noRoot, 10)); ok || !strings.Contains(text, "SYS_PTRACE") {
		t.Errorf("unopenable libraries:\n%s", text)
	}
	// The API server alone maps no CUDA library: nothing to trace.
	p = fakeProc(t, true)
	os.RemoveAll(filepath.Join(p.Root, "11"))
	ok, text = verdict(checkServer(p, 10))
	if ok || !strings.Contains(text, "✗ CUDA libraries") {
		t.Errorf("no CUDA:\n%s", text)
	}
}

func TestCheckCommandExitStatus(t *testing.T) {
	var out, errb bytes.Buffer
	err := runCheck([]string{"--pid", "999999999"}, &out, &errb)
	if codeOf(err) != exitNotPossible || !strings.Contains(out.String(), "✗ process 999999999") {
		t.Errorf("check of a missing pid: exit %d, output:\n%s", codeOf(err), out.String())
	}
	if err := runCheck([]string{"--bogus"}, &out, &errb); codeOf(err) != exitUsage {
		t.Errorf("bad flag: exit %d", codeOf(err))
	}
}

func TestParseFlags(t *testing.T) {
	for _, c := range []struct {
		args []string
		code int
	}{
		{[]string{}, exitUsage},
		{[]string{"--pid", "0"}, exitUsage},
		{[]string{"--pid", "-3"}, exitUsage},
		{[]string{"--pid", "x"}, exitUsage},
		{[]string{"--pid", "5", "--duration", "abc"}, exitUsage},
		{[]string{"--pid", "5", "--duration", "-1s"}, exitUsage},
		{[]string{"--pid", "5", "extra"}, exitUsage},
		{[]string{"--pid", "5", "--format", "pdf"}, exitUsage},
		{[]string{"--pid", "5", "--format", "csv"}, exitOK},
		{[]string{"--pid", "5", "--format", "timeline,report"}, exitOK},
		{[]string{"--pid", "5", "--duration", "2m", "-v", "--out", "/tmp/x"}, exitOK},
		{[]string{"--version"}, exitOK},
	} {
		_, err := parseFlags(c.args, &bytes.Buffer{})
		if codeOf(err) != c.code {
			t.Errorf("%q: exit %d (%v), want %d", c.args, codeOf(err), err, c.code)
		}
	}
	c, err := parseFlags([]string{"--pid", "5", "--verbose"}, &bytes.Buffer{})
	if err != nil || c.pid != 5 || !c.verbose || c.duration.String() != "10s" || c.outputs != report.All {
		t.Errorf("defaults: %+v %v", c, err)
	}
	var help bytes.Buffer
	if _, err := parseFlags([]string{"--help"}, &help); err != errHelp || !strings.Contains(help.String(), "Examples:") {
		t.Errorf("--help: %v\n%s", err, help.String())
	}
}

func TestDefaultOutDir(t *testing.T) {
	t.Setenv("VLLM_PROFILING_DIR", "")
	if d := defaultOutDir(mustTime(t, "2024-01-01T12:00:00Z")); d != "/tmp/vllm_profiling/session_20240101_120000" {
		t.Errorf("default dir %q", d)
	}
	t.Setenv("VLLM_PROFILING_DIR", "/data/prof")
	if d := defaultOutDir(mustTime(t, "2024-01-01T12:00:00Z")); d != "/data/prof/session_20240101_120000" {
		t.Errorf("with VLLM_PROFILING_DIR: %q", d)
	}
	if err := prepareOutDir("/proc/no/such/dir"); codeOf(err) != exitOutput {
		t.Errorf("unwritable dir: exit %d", codeOf(err))
	}
}

func mustTime(t *testing.T, s string) time.Time {
	t.Helper()
	v, err := time.Parse(time.RFC3339, s)
	if err != nil {
		t.Fatal(err)
	}
	return v
}
