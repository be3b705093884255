package tracer

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

const sampleMaps = `55d1c0a00000-55d1c0a01000 r--p 00000000 fd:01 1234 /usr/bin/python3.12
7f00aa000000-7f00aa100000 r-xp 00010000 fd:01 5678 /opt/venv/lib/python3.12/site-packages/nvidia/cu13/lib/libcudart.so.13
7f00ab000000-7f00ab001000 rw-p 00000000 00:00 0 
7f00ac000000-7f00ac010000 r-xp 00000000 00:2a 91 /site-packages/torchvision.libs/libcudart.faf08d9a.so.13
7f00ad000000-7f00ad010000 r-xp 00000000 fd:01 92 /usr/lib/x86_64-linux-gnu/libcuda.so.580.159.04
7f00ae000000-7f00ae010000 r-xp 00000000 fd:01 93 /tmp/old lib/libcuda.so.1 (deleted)
7f00af000000-7f00af010000 r-xp 00000000 fd:01 94 /opt/my libs/libprofilemate_marker.abi3.so
7ffd00000000-7ffd00021000 rw-p 00000000 00:00 0                          [stack]
garbage line
zz-yy r-xp 0 fd:01 95 /x
`

func TestParseMaps(t *testing.T) {
	got, err := ParseMaps(strings.NewReader(sampleMaps))
	if err != nil {
		t.Fatal(err)
	}
	var paths []string
	for _, m := range got {
		paths = append(paths, m.Path)
	}
	want := []string{
		"/usr/bin/python3.12",
		"/opt/venv/lib/python3.12/site-packages/nvidia/cu13/lib/libcudart.so.13",
		"/site-packages/torchvision.libs/libcudart.faf08d9a.so.13",
		"/usr/lib/x86_64-linux-gnu/libcuda.so.580.159.04",
		"/opt/my libs/libprofilemate_marker.abi3.so",
	}
	if !reflect.DeepEqual(paths, want) {
		t.Fatalf("paths:\n got %q\nwant %q", paths, want)
	}
	if m := got[1]; m.Inode != 5678 || m.Dev != "fd:01" || m.Offset != 0x10000 || m.Start != 0x7f00aa000000 || m.Perms != "r-xp" {
		t.Errorf("fields of the runtime mapping: %+v", m)
	}
}

func TestClassify(t *testing.T) {
	for path, want := range map[string]LibKind{
		"/x/nvidia/cu13/lib/libcudart.so.13":             LibRuntime,
		"/x/torchvision.libs/libcudart.faf08d9a.so.13":   LibRuntime,
		"/x/nvidia/cuda_runtime/lib/libcudart.so.12":     LibRuntime,
		"/usr/lib64/libcuda.so.1":                        LibDriver,
		"/usr/local/nvidia/lib64/libcuda.so.580.159.04":  LibDriver,
		"/x/profilemate_marker/libprofilemate_marker.so": LibMarker,
		"/x/libcudnn.so.9":                               LibNone,
		"/x/libcublas.so.13":                             LibNone,
		"/x/libcudart_static.a":                          LibNone,
		"/usr/bin/python3":                               LibNone,
	} {
		if got := Classify(path); got != want {
			t.Errorf("Classify(%q) = %v, want %v", path, got, want)
		}
	}
}

func TestParseStatPPid(t *testing.T) {
	for in, want := range map[string]int{
		"42 (python3) S 7 42 42 0 -1":        7,
		"42 (VLLM::Worker) TP0) S 9 42 42 0": 9,
		"42 (a b c) R 1 2 3":                 1,
	} {
		got, err := parseStatPPid([]byte(in))
		if err != nil || got != want {
			t.Errorf("parseStatPPid(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "42 python3 S 7", "42 (x)", "42 (x) S -3", "42 (x) S z"} {
		if _, err := parseStatPPid([]byte(bad)); err == nil {
			t.Errorf("parseStatPPid(%q): no error", bad)
		}
	}
}

// The start time is the 22nd field, counted from the PID, whatever the
// command name holds (a real line of this machine's, then names with
// spaces and parentheses).
func TestParseStatStart(t *testing.T) {
	for in, want := range map[string]uint64{
		"1234 (python3) S 1 1234 1234 0 -1 4194560 1597 0 0 0 3 1 0 0 20 0 1 0 98765 10960896 2219 18446744073709551615": 98765,
		"42 (VLLM::Worker) TP0) S 9 42 42 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 777 0 0":                                       777,
		"42 (a b c) R 1 2 3 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 5":                                                           5,
	} {
		got, err := parseStatStart([]byte(in))
		if err != nil || got != want {
			t.Errorf("parseStatStart(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "42 (x) S 1 1", "42 (x) S 1 2 3 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 -5", "42 (x) S 1 2 3 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 z"} {
		if _, err := parseStatStart([]byte(bad)); err == nil {
			t.Errorf("parseStatStart(%q): no error", bad)
		}
	}
	// This process's own start time reads, and stays put.
	a, errA := Proc{Root: "/proc"}.StartTime(os.Getpid())
	b, errB := Proc{Root: "/proc"}.StartTime(os.Getpid())
	if errA != nil || errB != nil || a == 0 || a != b {
		t.Errorf("StartTime(self) = %d, %v then %d, %v; want one non-zero value", a, errA, b, errB)
	}
}

// A fixture /proc: 10 -> 11 -> 13, 10 -> 12, and 20 unrelated.
func TestDescendantsAndTitle(t *testing.T) {
	root := t.TempDir()
	write := func(pid, file, content string) {
		dir := filepath.Join(root, pid)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, file), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for pid, ppid := range map[string]string{"10": "1", "11": "10", "12": "10", "13": "11", "20": "1"} {
		write(pid, "stat", pid+" (python3) S "+ppid+" 1 1 0")
	}
	write("11", "cmdline", "VLLM::EngineCore\x00\x00\x00")
	write("13", "cmdline", "")
	write("13", "comm", "pt_main_thread\n")
	p := Proc{Root: root}
	got, err := p.Descendants(10)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 4 || got[0] != 10 {
		t.Fatalf("Descendants(10) = %v", got)
	}
	seen := map[int]bool{}
	for _, pid := range got {
		seen[pid] = true
	}
	if !seen[11] || !seen[12] || !seen[13] || seen[20] {
		t.Errorf("Descendants(10) = %v", got)
	}
	if title := p.Title(11); title != "VLLM::EngineCore" {
		t.Errorf("Title(11) = %q", title)
	}
	if title := p.Title(13); title != "pt_main_thread" {
		t.Errorf("Title(13) = %q", title)
	}
	if p.Exists(99) || !p.Exists(12) {
		t.Error("Exists")
	}
	write("20", "stat", "20 (python3) Z 1 1 1 0")
	if p.Alive(20) || !p.Alive(12) || p.Alive(99) {
		t.Error("Alive: a zombie or a missing process is not alive")
	}
	if h := p.HostPath(12, "/usr/lib/libcuda.so.1"); h != filepath.Join(root, "12/root/usr/lib/libcuda.so.1") {
		t.Errorf("HostPath = %q", h)
	}
}

func FuzzParseMaps(f *testing.F) {
	f.Add(sampleMaps)
	f.Add("0-1 r-xp 0 0:0 1 /a\n")
	f.Fuzz(func(t *testing.T, s string) {
		ms, err := ParseMaps(strings.NewReader(s))
		if err != nil {
			return
		}
		for _, m := range ms {
			if m.End < m.Start || m.Inode == 0 || !strings.HasPrefix(m.Path, "/") {
				t.Fatalf("accepted a bad mapping %+v", m)
			}
		}
	})
}
