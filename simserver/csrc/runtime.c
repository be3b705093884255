/* runtime.c: the fake CUDA runtime, libcudart.so.13.
 *
 * As the real runtime does, every call here is carried out by the exported
 * driver function (linked against libcuda.so.1, called through the PLT), so a
 * probe on the driver symbol fires for runtime calls too.  The _ptsz/_ptds
 * (per-thread default stream) forms call the driver's matching forms; they
 * exist for the same functions as in the real libcudart.
 */
#include <string.h>

#include "simcuda.h"

/* Driver and runtime error codes agree for everything the sim returns. */
static cudaError_t rt_error(CUresult r)
{
	return (cudaError_t)r;
}

static CUlaunchConfig driver_config(const cudaLaunchConfig_t *c)
{
	CUlaunchConfig d = {
		.gridDimX = c->gridDim.x, .gridDimY = c->gridDim.y, .gridDimZ = c->gridDim.z,
		.blockDimX = c->blockDim.x, .blockDimY = c->blockDim.y,
		.blockDimZ = c->blockDim.z, .sharedMemBytes = (unsigned)c->dynamicSmemBytes,
		.hStream = c->stream,
	};
	return d;
}

/* Host-to-host and host-to-device copies complete at once in the sim (the
 * device is host memory); only device-to-host copies wait for the GPU. */
static int is_dtoh(enum cudaMemcpyKind kind)
{
	return kind == cudaMemcpyDeviceToHost;
}

SIM_EXPORT cudaError_t cudaLaunchKernel(const void *func, dim3 g, dim3 b, void **args,
	size_t shmem, cudaStream_t s)
{
	return rt_error(cuLaunchKernel((CUfunction)func, g.x, g.y, g.z, b.x, b.y, b.z,
		(unsigned)shmem, s, args, NULL));
}

SIM_EXPORT cudaError_t cudaLaunchKernel_ptsz(const void *func, dim3 g, dim3 b,
	void **args, size_t shmem, cudaStream_t s)
{
	return rt_error(cuLaunchKernel_ptsz((CUfunction)func, g.x, g.y, g.z, b.x, b.y,
		b.z, (unsigned)shmem, s, args, NULL));
}

SIM_EXPORT cudaError_t cudaLaunchKernelExC(const cudaLaunchConfig_t *config,
	const void *func, void **args)
{
	CUlaunchConfig d;

	if (!config)
		return cudaErrorInvalidValue;
	d = driver_config(config);
	return rt_error(cuLaunchKernelEx(&d, (CUfunction)func, args, NULL));
}

SIM_EXPORT cudaError_t cudaLaunchKernelExC_ptsz(const cudaLaunchConfig_t *config,
	const void *func, void **args)
{
	CUlaunchConfig d;

	if (!config)
		return cudaErrorInvalidValue;
	d = driver_config(config);
	return rt_error(cuLaunchKernelEx_ptsz(&d, (CUfunction)func, args, NULL));
}

SIM_EXPORT cudaError_t cudaLaunchCooperativeKernel(const void *func, dim3 g, dim3 b,
	void **args, size_t shmem, cudaStream_t s)
{
	return rt_error(cuLaunchCooperativeKernel((CUfunction)func, g.x, g.y, g.z, b.x,
		b.y, b.z, (unsigned)shmem, s, args));
}

SIM_EXPORT cudaError_t cudaLaunchCooperativeKernel_ptsz(const void *func, dim3 g,
	dim3 b, void **args, size_t shmem, cudaStream_t s)
{
	return rt_error(cuLaunchCooperativeKernel_ptsz((CUfunction)func, g.x, g.y, g.z,
		b.x, b.y, b.z, (unsigned)shmem, s, args));
}

SIM_EXPORT cudaError_t cudaGraphLaunch(cudaGraphExec_t exec, cudaStream_t s)
{
	return rt_error(cuGraphLaunch(exec, s));
}

SIM_EXPORT cudaError_t cudaGraphLaunch_ptsz(cudaGraphExec_t exec, cudaStream_t s)
{
	return rt_error(cuGraphLaunch_ptsz(exec, s));
}

SIM_EXPORT cudaError_t cudaStreamSynchronize(cudaStream_t s)
{
	return rt_error(cuStreamSynchronize(s));
}

SIM_EXPORT cudaError_t cudaStreamSynchronize_ptsz(cudaStream_t s)
{
	return rt_error(cuStreamSynchronize_ptsz(s));
}

SIM_EXPORT cudaError_t cudaDeviceSynchronize(void)
{
	return rt_error(cuCtxSynchronize());
}

SIM_EXPORT cudaError_t cudaEventCreate(cudaEvent_t *event)
{
	return rt_error(cuEventCreate(event, 0));
}

SIM_EXPORT cudaError_t cudaEventDestroy(cudaEvent_t event)
{
	return rt_error(cuEventDestroy_v2(event));
}

SIM_EXPORT cudaError_t cudaEventRecord(cudaEvent_t event, cudaStream_t s)
{
	return rt_error(cuEventRecord(event, s));
}

SIM_EXPORT cudaError_t cudaEventRecord_ptsz(cudaEvent_t event, cudaStream_t s)
{
	return rt_error(cuEventRecord_ptsz(event, s));
}

SIM_EXPORT cudaError_t cudaEventSynchronize(cudaEvent_t event)
{
	return rt_error(cuEventSynchronize(event));
}

SIM_EXPORT cudaError_t cudaMemcpy(void *dst, const void *src, size_t n,
	enum cudaMemcpyKind kind)
{
	if (is_dtoh(kind))
		return rt_error(cuMemcpyDtoH_v2(dst, (CUdeviceptr)src, n));
	memmove(dst, src, n);
	return cudaSuccess;
}

SIM_EXPORT cudaError_t cudaMemcpy_ptds(void *dst, const void *src, size_t n,
	enum cudaMemcpyKind kind)
{
	if (is_dtoh(kind))
		return rt_error(cuMemcpyDtoH_v2_ptds(dst, (CUdeviceptr)src, n));
	memmove(dst, src, n);
	return cudaSuccess;
}

SIM_EXPORT cudaError_t cudaMemcpyAsync(void *dst, const void *src, size_t n,
	enum cudaMemcpyKind kind, cudaStream_t s)
{
	if (is_dtoh(kind))
		return rt_error(cuMemcpyDtoHAsync_v2(dst, (CUdeviceptr)src, n, s));
	memmove(dst, src, n);
	return cudaSuccess;
}

SIM_EXPORT cudaError_t cudaMemcpyAsync_ptsz(void *dst, const void *src, size_t n,
	enum cudaMemcpyKind kind, cudaStream_t s)
{
	if (is_dtoh(kind))
		return rt_error(cuMemcpyDtoHAsync_v2_ptsz(dst, (CUdeviceptr)src, n, s));
	memmove(dst, src, n);
	return cudaSuccess;
}

SIM_EXPORT cudaError_t cudaMallocHost(void **p, size_t size)
{
	return rt_error(cuMemAllocHost_v2(p, size));
}

SIM_EXPORT cudaError_t cudaFreeHost(void *p)
{
	return rt_error(cuMemFreeHost(p));
}
