package tracer

import (
	"path/filepath"
	"strings"
)

// LibKind is what a mapped library is to the tracer.
type LibKind int

// The libraries the tracer probes.
const (
	LibNone    LibKind = iota
	LibRuntime         // libcudart, including vendored copies with hashed names
	LibDriver          // libcuda
	LibMarker          // the marker's native USDT library
)

func (k LibKind) String() string {
	switch k {
	case LibRuntime:
		return "CUDA runtime"
	case LibDriver:
		return "CUDA driver"
	case LibMarker:
		return "marker"
	}
	return "none"
}

// Classify names the kind of a mapped file from its path. Names, not fixed
// paths or sonames: PyTorch maps site-packages/nvidia/cu13/lib/libcudart.so.13
// and torchvision a hashed copy (libcudart.faf08d9a.so.13); the driver is
// libcuda.so.1 -> libcuda.so.<version>, mounted from the host in containers.
func Classify(path string) LibKind {
	base := filepath.Base(path)
	if !strings.Contains(base, ".so") {
		return LibNone
	}
	switch {
	case strings.HasPrefix(base, "libcudart"):
		return LibRuntime
	case strings.HasPrefix(base, "libcuda.so"):
		return LibDriver
	case strings.HasPrefix(base, "libprofilemate_marker"):
		return LibMarker
	}
	return LibNone
}

// probeSet says which program goes on which exported function.
type probeSet struct {
	prog    string // eBPF program name
	ret     string // return program name, where a duration is needed
	symbols []string
}

// runtimeProbes and driverProbes list the functions probed in each library.
// Launch functions get entry probes only: they are the hot path (hundreds per
// step in eager mode) and need no duration.
//
// Kernel launches are counted at the driver: every launch reaches one of its
// launch functions, runtime launches included (cuda-facts.md), and a probe
// costs microseconds in a VM, so probing the runtime launch as well would
// double the cost of most launches. runtimeLaunchProbes go on the runtime
// only where a driver's launch functions cannot be probed; should both be
// probed, the eBPF side still counts each launch once.
var runtimeLaunchProbes = probeSet{prog: "rt_launch", symbols: []string{
	"cudaLaunchKernel", "cudaLaunchKernel_ptsz",
	"cudaLaunchKernelExC", "cudaLaunchKernelExC_ptsz",
	"cudaLaunchCooperativeKernel", "cudaLaunchCooperativeKernel_ptsz"}}

var runtimeProbes = []probeSet{
	{prog: "rt_graph_launch", symbols: []string{"cudaGraphLaunch", "cudaGraphLaunch_ptsz"}},
	{prog: "sync_enter", ret: "sync_exit", symbols: []string{
		"cudaStreamSynchronize", "cudaStreamSynchronize_ptsz",
		"cudaDeviceSynchronize", "cudaEventSynchronize"}},
}

var driverProbes = []probeSet{
	{prog: "drv_launch", symbols: []string{
		"cuLaunchKernel", "cuLaunchKernel_ptsz",
		"cuLaunchKernelEx", "cuLaunchKernelEx_ptsz",
		"cuLaunchCooperativeKernel", "cuLaunchCooperativeKernel_ptsz"}},
	{prog: "drv_graph_launch", symbols: []string{"cuGraphLaunch", "cuGraphLaunch_ptsz"}},
	{prog: "sync_enter", ret: "sync_exit", symbols: []string{
		"cuStreamSynchronize", "cuStreamSynchronize_ptsz",
		"cuCtxSynchronize", "cuEventSynchronize",
		"cuMemcpyDtoH_v2", "cuMemcpyDtoH_v2_ptds",
		"cuMemcpyDtoHAsync_v2", "cuMemcpyDtoHAsync_v2_ptsz"}},
}

// markerProbe is one of the marker's USDT probes: its program, how many
// arguments its site may have, and whether the steps can be timed without
// it (optional: then a failure to probe it is reported, not fatal).
type markerProbe struct {
	prog             string
	minArgs, maxArgs int
	optional         bool
}

// markerProbes are the marker's USDT probes by name. step_begin's sixth
// argument (sched_key) is newer than the rest: an older marker's site has
// five, and the program reads the missing one as 0.
var markerProbes = map[string]markerProbe{
	"step_begin":   {prog: "usdt_step_begin", minArgs: 5, maxArgs: 6},
	"forward_end":  {prog: "usdt_forward_end", minArgs: 1, maxArgs: 1},
	"sample_end":   {prog: "usdt_sample_end", minArgs: 1, maxArgs: 1},
	"output_ready": {prog: "usdt_output_ready", minArgs: 1, maxArgs: 1},
	"sched_step":   {prog: "usdt_sched_step", minArgs: schedStepArgs, maxArgs: schedStepArgs, optional: true},
}

// schedStepArgs is SCHED_STEP_ARGS in bpf/records.h.
const schedStepArgs = 11

// ProbeSchedStep names the scheduler's probe as Library.Missing lists it: a
// marker without it (older than the scheduler patch) still times forward
// passes, without the scheduler's columns.
const ProbeSchedStep = MarkerProvider + ":sched_step"

// MarkerProvider is the USDT provider of the marker's probes.
const MarkerProvider = "profilemate"
