/* cublas.c: the fake cuBLAS, libcublas.so.13.
 *
 * Like the real one it launches its GEMM kernels straight through the
 * driver's cuLaunchKernelEx, bypassing libcudart: a tracer that probes only
 * the runtime misses these launches (cuda-facts.md: 20-45% of them).
 * A GEMM's GPU time follows its shape: a fixed cost plus 2*m*n*k flops at
 * SIM_GEMM_FLOPS_PER_NS.
 */
#include <stdlib.h>

#include "simcuda.h"

#define SIM_GEMM_FIXED_NS 15000ULL
#define SIM_GEMM_FLOPS_PER_NS 52000ULL

typedef int cublasStatus_t;
typedef int cublasOperation_t;
typedef int cudaDataType_t;
typedef int cublasComputeType_t;
typedef int cublasGemmAlgo_t;

/* A handle remembers the stream its work goes to. */
typedef struct cublasContext {
	CUstream stream;
} *cublasHandle_t;

#define CUBLAS_STATUS_SUCCESS 0
#define CUBLAS_STATUS_NOT_INITIALIZED 1
#define CUBLAS_STATUS_INVALID_VALUE 7
#define CUBLAS_STATUS_EXECUTION_FAILED 13

/* Stands for the GEMM kernel the real library would pick. */
static char gemm_kernel;

SIM_EXPORT cublasStatus_t cublasCreate_v2(cublasHandle_t *handle)
{
	if (!handle)
		return CUBLAS_STATUS_INVALID_VALUE;
	*handle = calloc(1, sizeof(**handle));
	return *handle ? CUBLAS_STATUS_SUCCESS : CUBLAS_STATUS_NOT_INITIALIZED;
}

SIM_EXPORT cublasStatus_t cublasDestroy_v2(cublasHandle_t handle)
{
	free(handle);
	return CUBLAS_STATUS_SUCCESS;
}

SIM_EXPORT cublasStatus_t cublasSetStream_v2(cublasHandle_t handle, CUstream stream)
{
	if (!handle)
		return CUBLAS_STATUS_NOT_INITIALIZED;
	handle->stream = stream;
	return CUBLAS_STATUS_SUCCESS;
}

SIM_EXPORT cublasStatus_t cublasGemmEx(cublasHandle_t handle, cublasOperation_t transa,
	cublasOperation_t transb, int m, int n, int k, const void *alpha, const void *A,
	cudaDataType_t Atype, int lda, const void *B, cudaDataType_t Btype, int ldb,
	const void *beta, void *C, cudaDataType_t Ctype, int ldc,
	cublasComputeType_t computeType, cublasGemmAlgo_t algo)
{
	uint64_t ns;
	CUlaunchConfig config = {.gridDimY = 1, .gridDimZ = 1,
		.blockDimX = 256, .blockDimY = 1, .blockDimZ = 1};

	if (!handle)
		return CUBLAS_STATUS_NOT_INITIALIZED;
	if (m <= 0 || n <= 0 || k <= 0)
		return CUBLAS_STATUS_INVALID_VALUE;
	ns = SIM_GEMM_FIXED_NS + 2ULL * m * n * k / SIM_GEMM_FLOPS_PER_NS;
	config.gridDimX = (unsigned)((ns + SIM_NS_PER_BLOCK - 1) / SIM_NS_PER_BLOCK);
	config.hStream = handle->stream;
	if (cuLaunchKernelEx(&config, (CUfunction)&gemm_kernel, NULL, NULL) != CUDA_SUCCESS)
		return CUBLAS_STATUS_EXECUTION_FAILED;
	return CUBLAS_STATUS_SUCCESS;
}
