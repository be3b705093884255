package tracer

import (
	"os"
	"testing"
)

// requireRoot skips where eBPF cannot load; CI runs as root, where this never skips.
func requireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("loading eBPF programs needs root (CI runs these as root)")
	}
}

func TestLoadObjects(t *testing.T) {
	requireRoot(t)
	objs, err := loadObjects()
	if err != nil {
		t.Fatal(err)
	}
	defer objs.Close()
	for name := range map[string]bool{"usdt_step_begin": true, "usdt_sched_step": true, "rt_launch": true, "drv_launch": true, "sync_exit": true} {
		if objs.program(name) == nil {
			t.Errorf("program %s not loaded", name)
		}
	}
}
