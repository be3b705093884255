package tracer

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// Mapping is one file-backed line of /proc/PID/maps.
type Mapping struct {
	Start, End uint64
	Perms      string
	Offset     uint64
	Dev        string // "major:minor" as printed, e.g. "fd:01"
	Inode      uint64
	Path       string
}

// ParseMaps reads /proc/PID/maps text and returns its file-backed mappings.
// Lines that are anonymous, pseudo ("[heap]"), of deleted files or
// malformed are skipped: a library replaced on disk cannot be probed by path.
func ParseMaps(r io.Reader) ([]Mapping, error) {
	var out []Mapping
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64*1024), 1024*1024)
	for sc.Scan() {
		m, ok := parseMapsLine(sc.Text())
		if ok {
			out = append(out, m)
		}
	}
	return out, sc.Err()
}

func parseMapsLine(line string) (Mapping, bool) {
	// address perms offset dev inode path; the path may hold spaces.
	f := strings.Fields(line)
	if len(f) < 6 {
		return Mapping{}, false
	}
	lo, hi, ok := strings.Cut(f[0], "-")
	if !ok {
		return Mapping{}, false
	}
	start, err1 := strconv.ParseUint(lo, 16, 64)
	end, err2 := strconv.ParseUint(hi, 16, 64)
	off, err3 := strconv.ParseUint(f[2], 16, 64)
	inode, err4 := strconv.ParseUint(f[4], 10, 64)
	if err1 != nil || err2 != nil || err3 != nil || err4 != nil || end < start || inode == 0 {
		return Mapping{}, false
	}
	if !strings.Contains(f[3], ":") || len(f[1]) != 4 {
		return Mapping{}, false
	}
	// The path is everything after the inode field.
	idx := strings.Index(line, f[4]+" ")
	if idx < 0 {
		return Mapping{}, false
	}
	path := strings.TrimSpace(line[idx+len(f[4]):])
	if !strings.HasPrefix(path, "/") || strings.HasSuffix(path, " (deleted)") {
		return Mapping{}, false
	}
	return Mapping{Start: start, End: end, Perms: f[1], Offset: off, Dev: f[3], Inode: inode, Path: path}, true
}

// Proc reads the /proc file system rooted at Root ("/proc" in production, a
// fixture directory in tests).
type Proc struct{ Root string }

// file is the path of process pid's /proc file name.
func (p Proc) file(pid int, name string) string {
	return filepath.Join(p.Root, strconv.Itoa(pid), name)
}

// readStat reads /proc/PID/stat (see statFields for its fields).
func (p Proc) readStat(pid int) ([]byte, error) { return os.ReadFile(p.file(pid, "stat")) }

// Exists reports whether a process with this PID exists.
func (p Proc) Exists(pid int) bool {
	_, err := os.Stat(p.file(pid, "stat"))
	return err == nil
}

// Alive reports whether the process exists and is not a zombie: a process
// that exited but was not yet reaped by its parent has no more steps to give.
func (p Proc) Alive(pid int) bool {
	b, err := p.readStat(pid)
	if err != nil {
		return false
	}
	f, err := statFields(b)
	return err == nil && f[0] != "Z" && f[0] != "X"
}

// PPid returns the parent PID from /proc/PID/stat.
func (p Proc) PPid(pid int) (int, error) {
	b, err := p.readStat(pid)
	if err != nil {
		return 0, err
	}
	return parseStatPPid(b)
}

// StartTime returns when the process started, in clock ticks after boot
// (the 22nd field of /proc/PID/stat). With the PID it names one process,
// as the PID alone does not once PIDs wrap; an exec keeps it, even one from
// a thread other than the leader (the kernel hands the leader's start time
// on).
func (p Proc) StartTime(pid int) (uint64, error) {
	b, err := p.readStat(pid)
	if err != nil {
		return 0, err
	}
	return parseStatStart(b)
}

// parseStatStart takes the start time from a stat line (see statFields).
func parseStatStart(b []byte) (uint64, error) {
	f, err := statFields(b)
	if err != nil {
		return 0, err
	}
	const startField = 22 - 3 // statFields begins at the 3rd field, state
	if len(f) <= startField {
		return 0, fmt.Errorf("malformed stat: %d fields after comm, no start time", len(f))
	}
	start, err := strconv.ParseUint(f[startField], 10, 64)
	if err != nil {
		return 0, fmt.Errorf("malformed stat start time %q", f[startField])
	}
	return start, nil
}

// parseStatPPid takes the ppid from a stat line; comm, in parentheses, may
// itself hold spaces and parentheses, so the fields start after the last ')'.
func parseStatPPid(b []byte) (int, error) {
	f, err := statFields(b)
	if err != nil {
		return 0, err
	}
	ppid, err := strconv.Atoi(f[1])
	if err != nil || ppid < 0 {
		return 0, fmt.Errorf("malformed stat ppid %q", f[1])
	}
	return ppid, nil
}

// statFields returns the fields of a /proc/PID/stat after the command name,
// state first, ppid second. The name is skipped up to its last ')': it may
// hold spaces and parentheses of its own.
func statFields(b []byte) ([]string, error) {
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return nil, fmt.Errorf("malformed stat: no ')'")
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 2 {
		return nil, fmt.Errorf("malformed stat: %d fields after comm", len(f))
	}
	return f, nil
}

// Descendants returns root and every process below it, parents first.
func (p Proc) Descendants(root int) ([]int, error) {
	ents, err := os.ReadDir(p.Root)
	if err != nil {
		return nil, err
	}
	children := map[int][]int{}
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid <= 0 {
			continue
		}
		ppid, err := p.PPid(pid)
		if err != nil {
			continue // exited while we looked
		}
		children[ppid] = append(children[ppid], pid)
	}
	out := []int{root}
	for i := 0; i < len(out); i++ {
		out = append(out, children[out[i]]...)
	}
	return out, nil
}

// Title returns the process title as vLLM's setproctitle leaves it: the whole
// of /proc/PID/cmdline (comm is cut at 15 bytes), or comm when cmdline is
// empty (kernel threads, zombies).
func (p Proc) Title(pid int) string {
	if b, err := os.ReadFile(p.file(pid, "cmdline")); err == nil {
		s := strings.TrimRight(strings.ReplaceAll(string(b), "\x00", " "), " ")
		if s != "" {
			return s
		}
	}
	b, _ := os.ReadFile(p.file(pid, "comm"))
	return strings.TrimSpace(string(b))
}

// Maps returns the file-backed mappings of a process.
func (p Proc) Maps(pid int) ([]Mapping, error) {
	f, err := os.Open(p.file(pid, "maps"))
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return ParseMaps(f)
}

// HostPath is the path under which the tracer opens a file that process pid
// has mapped: through /proc/PID/root, so a server in a container (another
// mount namespace) is traced from the host.
func (p Proc) HostPath(pid int, path string) string {
	return filepath.Join(p.file(pid, "root"), path)
}
