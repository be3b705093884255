package tracer

import (
	"os"
	"path/filepath"
	"reflect"
	"testing"
)

// TestPythonDirsAndMarkerInstalls: a worker in a container whose torch lives
// in a virtual environment, with the marker pip-installed there and an
// in-tree marker on its PYTHONPATH.
func TestPythonDirsAndMarkerInstalls(t *testing.T) {
	root := t.TempDir()
	file := func(path, content string) {
		t.Helper()
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	fs := filepath.Join(root, "7", "root") // the worker's mount namespace
	venv := "/opt/venv/lib/python3.12/site-packages"
	file(filepath.Join(fs, venv, "profilemate_marker", "libprofilemate_marker.abi3.so"), "elf")
	file(filepath.Join(fs, venv, "profilemate_marker", "__init__.py"), "")
	file(filepath.Join(fs, "/src/pm/marker/profilemate_marker/libprofilemate_marker.so"), "elf")
	if err := os.MkdirAll(filepath.Join(fs, "/usr/lib/python3/dist-packages"), 0o755); err != nil {
		t.Fatal(err)
	}
	file(filepath.Join(root, "7", "environ"), "HOME=/root\x00PYTHONPATH=/src/pm/marker:relative/dir:/nowhere\x00PYTHONPATHX=/bad\x00")
	file(filepath.Join(root, "7", "cmdline"), "/opt/venv/bin/python3\x00-m\x00vllm.entrypoints.openai.api_server\x00")

	maps := []Mapping{
		{Path: venv + "/torch/lib/libtorch_cuda.so"},
		{Path: venv + "/nvidia/cu13/lib/libcudart.so.13"},
		{Path: "/usr/lib/python3/dist-packages/_yaml.so"},
		{Path: "/usr/lib/x86_64-linux-gnu/libc.so.6"},
	}
	p := Proc{Root: root}
	dirs := p.PythonDirs(7, maps)
	want := []string{venv, "/usr/lib/python3/dist-packages", "/src/pm/marker", "/nowhere"}
	if !reflect.DeepEqual(dirs, want) {
		t.Fatalf("PythonDirs:\n got %q\nwant %q", dirs, want)
	}
	var found []string
	for _, d := range dirs {
		found = append(found, p.MarkerInstalls(7, d)...)
	}
	wantFound := []string{venv + "/profilemate_marker/libprofilemate_marker.abi3.so", "/src/pm/marker/profilemate_marker/libprofilemate_marker.so"}
	if !reflect.DeepEqual(found, wantFound) {
		t.Fatalf("MarkerInstalls:\n got %q\nwant %q", found, wantFound)
	}

	// A retitled vLLM process (no interpreter path in its command line)
	// and a process without environ still give their mapped dirs.
	file(filepath.Join(root, "8", "cmdline"), "VLLM::Worker_TP0\x00")
	if dirs := p.PythonDirs(8, maps[:1]); !reflect.DeepEqual(dirs, []string{venv}) {
		t.Errorf("PythonDirs of a retitled worker = %q", dirs)
	}
	if dirs := p.PythonDirs(9, nil); len(dirs) != 0 {
		t.Errorf("PythonDirs of a missing process = %q", dirs)
	}
}

func TestSitePackagesOf(t *testing.T) {
	for path, want := range map[string]string{
		"/opt/venv/lib/python3.12/site-packages/torch/lib/libc10.so": "/opt/venv/lib/python3.12/site-packages",
		"/usr/lib/python3/dist-packages/_yaml.so":                    "/usr/lib/python3/dist-packages",
		"/usr/lib/x86_64-linux-gnu/libc.so.6":                        "",
		"/site-packages-backup/libfoo.so":                            "",
	} {
		if got := sitePackagesOf(path); got != want {
			t.Errorf("sitePackagesOf(%q) = %q, want %q", path, got, want)
		}
	}
}
