/* simcuda.h: the types of the fake CUDA libraries and their sim-only API.
 *
 * The fake libcuda (driver.c), libcudart (runtime.c) and libcublas (cublas.c)
 * export CUDA's real function names with the real C signatures, so a probe
 * placed on them sees what it would see on a real server.  Handle types are
 * pointers to the small structs below; only the sim's own code looks inside.
 *
 * Kernel cost: a launch's GPU time is its grid size (number of thread blocks)
 * times SIM_NS_PER_BLOCK.  Passing the cost through gridDim keeps every launch
 * signature real: a bigger grid takes longer, as on a GPU.
 */
#ifndef SIMCUDA_H
#define SIMCUDA_H

#include <stddef.h>
#include <stdint.h>

#define SIM_EXPORT __attribute__((visibility("default")))

/* GPU time of one thread block of any kernel. */
#define SIM_NS_PER_BLOCK 100ULL

/* ---- driver API types (cuda.h) ---- */
typedef int CUresult;
typedef uintptr_t CUdeviceptr;
typedef struct CUstream_st *CUstream;
typedef struct CUfunc_st *CUfunction;

/* An event holds the time at which the work queued before its record is done. */
typedef struct CUevent_st {
	uint64_t done_ns;
} *CUevent;

/* An executable graph is, for the sim, the GPU time of its kernels. */
typedef struct CUgraphExec_st {
	uint64_t cost_ns;
} *CUgraphExec;

typedef struct CUlaunchAttribute_st CUlaunchAttribute;

typedef struct CUlaunchConfig_st {
	unsigned int gridDimX, gridDimY, gridDimZ;
	unsigned int blockDimX, blockDimY, blockDimZ;
	unsigned int sharedMemBytes;
	CUstream hStream;
	CUlaunchAttribute *attrs;
	unsigned int numAttrs;
} CUlaunchConfig;

#define CUDA_SUCCESS 0
#define CUDA_ERROR_INVALID_VALUE 1
#define CUDA_ERROR_OUT_OF_MEMORY 2

/* ---- runtime API types (cuda_runtime_api.h) ---- */
typedef int cudaError_t;
typedef CUstream cudaStream_t;
typedef CUevent cudaEvent_t;
typedef CUgraphExec cudaGraphExec_t;

typedef struct dim3 {
	unsigned int x, y, z;
} dim3;

typedef struct cudaLaunchAttribute_st cudaLaunchAttribute;

typedef struct cudaLaunchConfig_st {
	dim3 gridDim;
	dim3 blockDim;
	size_t dynamicSmemBytes;
	cudaStream_t stream;
	cudaLaunchAttribute *attrs;
	unsigned int numAttrs;
} cudaLaunchConfig_t;

enum cudaMemcpyKind {
	cudaMemcpyHostToHost = 0,
	cudaMemcpyHostToDevice = 1,
	cudaMemcpyDeviceToHost = 2,
	cudaMemcpyDeviceToDevice = 3,
	cudaMemcpyDefault = 4,
};

#define cudaSuccess 0
#define cudaErrorInvalidValue 1
#define cudaErrorMemoryAllocation 2

/* ---- the driver API the fake libcuda exports (driver.c) ----
 * Declared once here, so driver.c's definitions are checked against what
 * the runtime, cuBLAS and simtorch call. */
CUresult cuLaunchKernel(CUfunction, unsigned, unsigned, unsigned, unsigned, unsigned,
	unsigned, unsigned, CUstream, void **, void **);
CUresult cuLaunchKernel_ptsz(CUfunction, unsigned, unsigned, unsigned, unsigned,
	unsigned, unsigned, unsigned, CUstream, void **, void **);
CUresult cuLaunchKernelEx(const CUlaunchConfig *, CUfunction, void **, void **);
CUresult cuLaunchKernelEx_ptsz(const CUlaunchConfig *, CUfunction, void **, void **);
CUresult cuLaunchCooperativeKernel(CUfunction, unsigned, unsigned, unsigned, unsigned,
	unsigned, unsigned, unsigned, CUstream, void **);
CUresult cuLaunchCooperativeKernel_ptsz(CUfunction, unsigned, unsigned, unsigned,
	unsigned, unsigned, unsigned, unsigned, CUstream, void **);
CUresult cuGraphLaunch(CUgraphExec, CUstream);
CUresult cuGraphLaunch_ptsz(CUgraphExec, CUstream);
CUresult cuStreamSynchronize(CUstream);
CUresult cuStreamSynchronize_ptsz(CUstream);
CUresult cuCtxSynchronize(void);
CUresult cuEventCreate(CUevent *, unsigned int);
CUresult cuEventDestroy_v2(CUevent);
CUresult cuEventRecord(CUevent, CUstream);
CUresult cuEventRecord_ptsz(CUevent, CUstream);
CUresult cuEventSynchronize(CUevent);
CUresult cuMemcpyDtoH_v2(void *, CUdeviceptr, size_t);
CUresult cuMemcpyDtoH_v2_ptds(void *, CUdeviceptr, size_t);
CUresult cuMemcpyDtoHAsync_v2(void *, CUdeviceptr, size_t, CUstream);
CUresult cuMemcpyDtoHAsync_v2_ptsz(void *, CUdeviceptr, size_t, CUstream);
CUresult cuMemAllocHost_v2(void **, size_t);
CUresult cuMemFreeHost(void *);

/* ---- sim-only API of the fake libcuda (names start with "sim") ---- */

/* Calls of the exported driver function `name` in this process so far
 * (0 for names the driver does not count). */
uint64_t simcuCallCount(const char *name);
/* Kernel launches (cuLaunchKernel*, cuLaunchKernelEx*,
 * cuLaunchCooperativeKernel*) and graph launches (cuGraphLaunch*) so far. */
uint64_t simcuKernelLaunches(void);
uint64_t simcuGraphLaunches(void);
/* CLOCK_MONOTONIC time at which all work queued so far is done. */
uint64_t simcuQueueTailNs(void);

#endif
