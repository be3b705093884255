/* simtorch.c: libsimtorch.so, the stand-in for libtorch_cuda.
 *
 * The simulated model runner calls it once per layer (or graph replay) with
 * the shape of the work; the launch loops run here, in C, as PyTorch's do,
 * because a ctypes call per kernel would make the host side far slower and
 * unlike a real server.  Elementwise and attention kernels go through
 * libcudart (cudaLaunchKernel, some cudaLaunchKernelExC), GEMMs through
 * libcublas, which launches them straight at the driver.
 *
 * Every function returns the number of launches it made (kernel launches, or
 * graph launches for simtorch_graph), or -1 when one of them failed.
 */
#include "simcuda.h"

/* Model width used for GEMM shapes: a Llama-shaped 2048-wide model. */
#define HIDDEN 2048
/* GPU time of an elementwise kernel: a fixed cost plus a cost per token. */
#define ELEMENTWISE_FIXED_NS 3000ULL
#define ELEMENTWISE_NS_PER_TOKEN 8ULL
/* Same constants as cublas.c, for the GPU time of a graph's GEMMs. */
#define GEMM_FIXED_NS 15000ULL
#define GEMM_FLOPS_PER_NS 52000ULL

typedef struct cublasContext *cublasHandle_t;

cudaError_t cudaLaunchKernel(const void *, dim3, dim3, void **, size_t, cudaStream_t);
cudaError_t cudaLaunchKernelExC(const cudaLaunchConfig_t *, const void *, void **);
cudaError_t cudaGraphLaunch(cudaGraphExec_t, cudaStream_t);
cudaError_t cudaMemcpyAsync(void *, const void *, size_t, enum cudaMemcpyKind,
	cudaStream_t);
cudaError_t cudaStreamSynchronize(cudaStream_t);
cudaError_t cudaEventRecord(cudaEvent_t, cudaStream_t);
int cublasCreate_v2(cublasHandle_t *);
int cublasGemmEx(cublasHandle_t, int, int, int, int, int, const void *, const void *,
	int, int, const void *, int, int, const void *, void *, int, int, int, int);

/* Host stubs that stand for kernels; only their addresses matter. */
static char elementwise_kernel, fused_kernel;
/* The sampled token ids "on the device" (host memory in the sim). */
static char device_tokens[1 << 16];

static uint64_t elementwise_ns(int tokens)
{
	return ELEMENTWISE_FIXED_NS + ELEMENTWISE_NS_PER_TOKEN * (uint64_t)tokens;
}

static uint64_t gemm_ns(int tokens)
{
	return GEMM_FIXED_NS + 2ULL * tokens * HIDDEN * HIDDEN / GEMM_FLOPS_PER_NS;
}

static dim3 grid_for(uint64_t ns)
{
	dim3 g = {(unsigned)((ns + SIM_NS_PER_BLOCK - 1) / SIM_NS_PER_BLOCK), 1, 1};
	return g;
}

static int gemm(int tokens)
{
	static cublasHandle_t handle;
	static const float one = 1.0f, zero = 0.0f;

	/* Created on first use by the one thread that launches, as torch does. */
	if (!handle && cublasCreate_v2(&handle) != 0)
		return -1;
	return cublasGemmEx(handle, 0, 0, tokens, HIDDEN, HIDDEN, &one, NULL, 0, tokens,
		NULL, 0, HIDDEN, &zero, NULL, 0, tokens, 0, -1) ? -1 : 1;
}

/* One eager layer for `tokens` tokens: n_rt cudaLaunchKernel, n_exc
 * cudaLaunchKernelExC and n_gemm GEMMs, interleaved the way a transformer
 * layer mixes norms and activations with its projections. */
__attribute__((visibility("default")))
int simtorch_layer(int tokens, int n_rt, int n_exc, int n_gemm)
{
	dim3 block = {256, 1, 1};
	cudaLaunchConfig_t config = {.gridDim = grid_for(elementwise_ns(tokens)),
		.blockDim = block};
	int total = n_rt + n_exc + n_gemm;

	if (tokens <= 0 || n_rt < 0 || n_exc < 0 || n_gemm < 0)
		return -1;
	while (n_rt + n_exc + n_gemm > 0) {
		if (n_rt > 0) {
			if (cudaLaunchKernel(&elementwise_kernel, grid_for(elementwise_ns(tokens)),
					block, NULL, 0, NULL))
				return -1;
			n_rt--;
		}
		if (n_gemm > 0) {
			if (gemm(tokens) < 0)
				return -1;
			n_gemm--;
		}
		if (n_exc > 0 && n_rt <= n_gemm) {
			if (cudaLaunchKernelExC(&config, &fused_kernel, NULL))
				return -1;
			n_exc--;
		}
	}
	return total;
}

/* One graph replay holding `repeat` copies of the kernels of
 * simtorch_layer(tokens, n_rt, n_exc, n_gemm). */
__attribute__((visibility("default")))
int simtorch_graph(int tokens, int n_rt, int n_exc, int n_gemm, int repeat)
{
	struct CUgraphExec_st exec;

	if (tokens <= 0 || n_rt < 0 || n_exc < 0 || n_gemm < 0 || repeat <= 0)
		return -1;
	exec.cost_ns = (uint64_t)repeat * ((uint64_t)(n_rt + n_exc) * elementwise_ns(tokens) +
		(uint64_t)n_gemm * gemm_ns(tokens));
	return cudaGraphLaunch(&exec, NULL) ? -1 : 1;
}

/* Copy `n` bytes of sampled token ids to the host.  With an event (async
 * scheduling): a non-blocking copy into pinned `dst`, then the event records
 * its completion.  Without (the synchronous path, torch's .tolist()): a copy
 * into pageable memory, which blocks, then a stream synchronization. */
__attribute__((visibility("default")))
int simtorch_copy_tokens(void *dst, size_t n, cudaEvent_t event)
{
	if (n > sizeof(device_tokens))
		return -1;
	if (cudaMemcpyAsync(dst, device_tokens, n, cudaMemcpyDeviceToHost, NULL))
		return -1;
	if (event)
		return cudaEventRecord(event, NULL) ? -1 : 0;
	return cudaStreamSynchronize(NULL) ? -1 : 0;
}
