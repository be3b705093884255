package analysis

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
)

// Output file names, the same as the sitecustomize profiler's.
const (
	CSVName     = "forward_pass_timing.csv"
	SummaryName = "summary.json"
)

// Files are the paths Write created.
type Files struct {
	CSV     string
	Summary string
}

// Write stores res in dir as forward_pass_timing.csv and summary.json, with
// mode 0644 (less what the umask removes), creating dir if needed. Existing
// files of those names are replaced. The CSV has a header even without rows,
// so tools that read it need no special case for an empty trace.
func Write(dir string, res Result) (Files, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return Files{}, err
	}
	f := Files{CSV: filepath.Join(dir, CSVName), Summary: filepath.Join(dir, SummaryName)}
	if err := WriteFile(f.CSV, func(w io.Writer) error { return WriteCSV(w, res.Rows) }); err != nil {
		return Files{}, err
	}
	if err := WriteFile(f.Summary, func(w io.Writer) error { return WriteSummary(w, res.Summary) }); err != nil {
		return Files{}, err
	}
	return f, nil
}

// WriteFile creates or truncates path and fills it with write; the error
// names the file.
func WriteFile(path string, write func(io.Writer) error) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return err
	}
	// A failed Close can be the only sign that buffered data never reached
	// the disk, so it is an error like any other.
	if err := errors.Join(write(f), f.Close()); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}
