package tracer

import (
	"bytes"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// maxEnviron bounds how much of /proc/PID/environ is read: PYTHONPATH is all
// the tracer wants from it, and an environment is rarely beyond a few KiB.
const maxEnviron = 1 << 20

// markerPackage and markerGlob name the marker's native library inside the
// directories Python imports from (pip installs libprofilemate_marker.abi3.so,
// an in-tree build leaves libprofilemate_marker.so).
const (
	markerPackage = "profilemate_marker"
	markerGlob    = "libprofilemate_marker*.so*"
)

// PythonDirs returns the directories the Python of process pid imports from,
// as far as /proc shows them, as that process names them:
//   - the site-packages (or dist-packages) of every file it maps: torch and
//     the other extension modules it has loaded live there;
//   - the entries of its PYTHONPATH (the sitecustomize way to load the marker);
//   - the site-packages of the virtual environment its command runs from.
//
// A vLLM worker imports the marker only after it starts, then runs a short
// warm-up before its first step; probing the marker library where it is
// installed, before any process maps it, traces that worker from its first
// step instead of from the next rescan.
func (p Proc) PythonDirs(pid int, maps []Mapping) []string {
	var out []string
	seen := map[string]bool{}
	add := func(dir string) {
		if dir != "" && filepath.IsAbs(dir) && !seen[dir] {
			seen[dir] = true
			out = append(out, filepath.Clean(dir))
		}
	}
	for _, m := range maps {
		add(sitePackagesOf(m.Path))
	}
	for _, dir := range filepath.SplitList(p.environ(pid, "PYTHONPATH")) {
		add(dir)
	}
	if argv0 := p.argv0(pid); strings.HasPrefix(filepath.Base(argv0), "python") && filepath.Base(filepath.Dir(argv0)) == "bin" {
		prefix := filepath.Dir(filepath.Dir(argv0))
		libs, _ := filepath.Glob(filepath.Join(p.HostPath(pid, prefix), "lib", "python3*", "site-packages"))
		for _, l := range libs {
			add(filepath.Join(prefix, "lib", filepath.Base(filepath.Dir(l)), "site-packages"))
		}
	}
	return out
}

// sitePackagesOf returns the site-packages or dist-packages directory a file
// lies in, or "".
func sitePackagesOf(path string) string {
	for _, name := range []string{"/site-packages/", "/dist-packages/"} {
		if i := strings.Index(path, name); i >= 0 {
			return path[:i+len(name)-1]
		}
	}
	return ""
}

// MarkerInstalls returns the marker libraries in dir, a directory process pid
// imports from, as that process names them.
func (p Proc) MarkerInstalls(pid int, dir string) []string {
	host := p.HostPath(pid, filepath.Join(dir, markerPackage))
	found, _ := filepath.Glob(filepath.Join(host, markerGlob))
	var out []string
	for _, f := range found {
		if st, err := os.Stat(f); err == nil && st.Mode().IsRegular() {
			out = append(out, filepath.Join(dir, markerPackage, filepath.Base(f)))
		}
	}
	return out
}

// environ returns the value of one variable in the environment process pid
// started with, or "".
func (p Proc) environ(pid int, name string) string {
	f, err := os.Open(filepath.Join(p.Root, strconv.Itoa(pid), "environ"))
	if err != nil {
		return ""
	}
	defer f.Close()
	b, _ := io.ReadAll(io.LimitReader(f, maxEnviron))
	for _, kv := range bytes.Split(b, []byte{0}) {
		if v, ok := bytes.CutPrefix(kv, []byte(name+"=")); ok {
			return string(v)
		}
	}
	return ""
}

// argv0 returns the first word of process pid's command line. vLLM retitles
// its processes ("VLLM::Worker_TP0"), which leaves no path there; the others
// keep the interpreter they were started with.
func (p Proc) argv0(pid int) string {
	b, err := os.ReadFile(filepath.Join(p.Root, strconv.Itoa(pid), "cmdline"))
	if err != nil {
		return ""
	}
	first, _, _ := bytes.Cut(b, []byte{0})
	return string(first)
}
