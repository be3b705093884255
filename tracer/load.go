package tracer

import (
	"errors"
	"fmt"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/rlimit"
)

// loadObjects loads the eBPF programs and maps into the kernel.
func loadObjects() (*profilemateObjects, error) {
	if err := rlimit.RemoveMemlock(); err != nil {
		return nil, fmt.Errorf("raise the memlock limit: %w", err)
	}
	var objs profilemateObjects
	if err := loadProfilemateObjects(&objs, nil); err != nil {
		var ve *ebpf.VerifierError
		if errors.As(err, &ve) {
			return nil, fmt.Errorf("the kernel's eBPF verifier rejected the programs: %+v", ve)
		}
		return nil, fmt.Errorf("load eBPF programs: %w", err)
	}
	return &objs, nil
}

// program returns a loaded program by its C name.
func (o *profilemateObjects) program(name string) *ebpf.Program {
	switch name {
	case "usdt_step_begin":
		return o.UsdtStepBegin
	case "usdt_forward_end":
		return o.UsdtForwardEnd
	case "usdt_sample_end":
		return o.UsdtSampleEnd
	case "usdt_output_ready":
		return o.UsdtOutputReady
	case "usdt_sched_step":
		return o.UsdtSchedStep
	case "usdt_step_end":
		return o.UsdtStepEnd
	case "rt_launch":
		return o.RtLaunch
	case "drv_launch":
		return o.DrvLaunch
	case "rt_graph_launch":
		return o.RtGraphLaunch
	case "drv_graph_launch":
		return o.DrvGraphLaunch
	case "sync_enter":
		return o.SyncEnter
	case "sync_exit":
		return o.SyncExit
	}
	return nil
}
