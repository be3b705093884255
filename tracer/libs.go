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

// driverProbes list the functions probed in the driver, and runtimeProbes
// those probed in a runtime for a class the driver cannot count.
//
// Every kernel launch, graph launch and synchronization of the runtime
// reaches one of the driver's exported functions (cuda-facts.md: a launch,
// a graph replay and a .tolist() are seen at both), so the driver alone
// counts them all, those of libraries that bypass the runtime (cuBLAS,
// Triton) included. A probe hit costs the calling thread several
// microseconds inside a running server in a VM (issue 11), so probing the
// runtime as well would nearly double the cost of every call. The runtime's
// probes of a class go on only where none of the driver's functions of that
// class can be probed (or the driver at all); should both be probed, the
// eBPF side still counts each call once.
//
// Launch functions get entry probes only: they are the hot path (hundreds
// per step in eager mode) and need no duration.
var runtimeProbes = []probeSet{
	{prog: "rt_launch", symbols: []string{
		"cudaLaunchKernel", "cudaLaunchKernel_ptsz",
		"cudaLaunchKernelExC", "cudaLaunchKernelExC_ptsz",
		"cudaLaunchCooperativeKernel", "cudaLaunchCooperativeKernel_ptsz"}},
	{prog: "rt_graph_launch", symbols: []string{"cudaGraphLaunch", "cudaGraphLaunch_ptsz"}},
	{prog: "sync_enter", ret: "sync_exit", symbols: []string{
		"cudaStreamSynchronize", "cudaStreamSynchronize_ptsz",
		"cudaDeviceSynchronize", "cudaEventSynchronize"}},
}

// cudaClasses are the classes of probes on CUDA libraries.
const cudaClasses = ClassLaunch | ClassGraph | ClassSync

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
// arguments its site may have, whether the steps can be timed without it
// (optional: then a failure to probe it is reported, not fatal), and the
// probe that stands for it where the marker has that one (replacedBy: then
// it is not probed).
type markerProbe struct {
	prog             string
	minArgs, maxArgs int
	optional         bool
	replacedBy       string
}

// markerProbes are the marker's USDT probes by name. step_begin's sixth
// argument (sched_key) is newer than the rest: an older marker's site has
// five, and the program reads the missing one as 0.
//
// step_end stands for forward_end, sample_end and output_ready: a marker
// that has it takes their times itself and passes them to step_end, one
// probe hit a step instead of three (each costs the thread microseconds in
// a VM). They are probed only where step_end is not: an older marker's, or
// one whose step_end the kernel refused.
var markerProbes = map[string]markerProbe{
	"step_begin":   {prog: "usdt_step_begin", minArgs: 5, maxArgs: 6},
	"forward_end":  {prog: "usdt_forward_end", minArgs: 1, maxArgs: 1, replacedBy: "step_end"},
	"sample_end":   {prog: "usdt_sample_end", minArgs: 1, maxArgs: 1, replacedBy: "step_end"},
	"output_ready": {prog: "usdt_output_ready", minArgs: 1, maxArgs: 1, replacedBy: "step_end"},
	"sched_step":   {prog: "usdt_sched_step", minArgs: schedStepArgs, maxArgs: schedStepArgs, optional: true},
	"step_end":     {prog: "usdt_step_end", minArgs: 3, maxArgs: 3, optional: true},
}

// schedStepArgs is SCHED_STEP_ARGS in bpf/records.h.
const schedStepArgs = 11

// ProbeSchedStep names the scheduler's probe as Library.Missing lists it: a
// marker without it (older than the scheduler patch) still times forward
// passes, without the scheduler's columns.
const ProbeSchedStep = MarkerProvider + ":sched_step"

// MarkerProvider is the USDT provider of the marker's probes.
const MarkerProvider = "profilemate"
