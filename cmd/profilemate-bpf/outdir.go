package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"time"
)

// defaultOutDir is the sitecustomize profiler's layout, which users' scripts
// already read: $VLLM_PROFILING_DIR/session_<YYYYmmdd_HHMMSS>.
func defaultOutDir(now time.Time) string {
	base := os.Getenv("VLLM_PROFILING_DIR")
	if base == "" {
		base = "/tmp/vllm_profiling"
	}
	return filepath.Join(base, "session_"+now.Format("20060102_150405"))
}

// prepareOutDir creates dir and proves it writable before the trace starts,
// so that a long trace is never lost to a directory it cannot write.
func prepareOutDir(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fail(exitOutput, fmt.Errorf("cannot create output directory: %w", err))
	}
	f, err := os.CreateTemp(dir, ".profilemate-write-test-*")
	if err != nil {
		return fail(exitOutput, fmt.Errorf("cannot write to output directory %s: %w", dir, err))
	}
	f.Close()
	os.Remove(f.Name())
	chownToInvoker(dir)
	return nil
}

// chownToInvoker gives a file to the user who ran sudo, so the results of
// `sudo profilemate-bpf` are the user's own. Without sudo it does nothing.
func chownToInvoker(path string) {
	uid, err1 := strconv.Atoi(os.Getenv("SUDO_UID"))
	gid, err2 := strconv.Atoi(os.Getenv("SUDO_GID"))
	if err1 != nil || err2 != nil || os.Geteuid() != 0 {
		return
	}
	// Best effort: a file system without ownership (vfat) is not an error.
	_ = os.Lchown(path, uid, gid)
}
