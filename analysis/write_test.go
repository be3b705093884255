package analysis

import (
	"encoding/csv"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
)

func TestWrite(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "session_20240101_120000") // Write creates it
	files, err := Write(dir, Analyze(tpReport()))
	if err != nil {
		t.Fatal(err)
	}
	if files.CSV != filepath.Join(dir, "forward_pass_timing.csv") || files.Summary != filepath.Join(dir, "summary.json") {
		t.Errorf("files = %+v", files)
	}
	for _, path := range []string{files.CSV, files.Summary} {
		fi, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		// The umask may only take permissions away from 0644.
		if perm := fi.Mode().Perm(); perm&^0o644 != 0 {
			t.Errorf("%s has mode %v, want at most 0644", path, perm)
		}
	}

	f, err := os.Open(files.CSV)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	records, err := csv.NewReader(f).ReadAll()
	if err != nil || len(records) != 10 {
		t.Errorf("CSV: %d records, %v; want header + 9 rows", len(records), err)
	}

	data, err := os.ReadFile(files.Summary)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(data, &m); err != nil {
		t.Fatalf("summary.json: %v", err)
	}
	if _, ok := m["prefill"]; !ok {
		t.Errorf("summary.json lacks prefill: %s", data)
	}
}

func TestWriteReportsErrors(t *testing.T) {
	// A file where the directory should be.
	blocker := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(blocker, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Write(blocker, Analyze(Report{})); err == nil {
		t.Error("Write into a regular file: no error")
	}
}
