/* driver.c: the fake CUDA driver, libcuda.so.1 (-> libcuda.so.580.159.04).
 *
 * It owns the process's virtual GPU: one in-order queue, kept as the time at
 * which the last queued work finishes (tail_ns).  A launch appends its cost
 * behind earlier work; a synchronization sleeps until the queue, or an
 * event's point in it, is done.  Sleeps use clock_nanosleep, never a spin:
 * the machines that run the tests have two cores.
 *
 * Every exported function counts its calls (simcuCallCount), so tests can
 * check that a runtime call really reached the driver symbol.  Exported
 * functions never call each other (a call between them would fire a probe
 * twice); they share static helpers instead.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "simcuda.h"

/* Every counted driver entry point, in the order of the counters. */
#define DRIVER_CALLS(X)                                                     \
	X(cuLaunchKernel) X(cuLaunchKernel_ptsz)                            \
	X(cuLaunchKernelEx) X(cuLaunchKernelEx_ptsz)                        \
	X(cuLaunchCooperativeKernel) X(cuLaunchCooperativeKernel_ptsz)      \
	X(cuGraphLaunch) X(cuGraphLaunch_ptsz)                              \
	X(cuStreamSynchronize) X(cuStreamSynchronize_ptsz)                  \
	X(cuCtxSynchronize) X(cuEventSynchronize)                           \
	X(cuEventRecord) X(cuEventRecord_ptsz) X(cuEventCreate)             \
	X(cuMemcpyDtoH_v2) X(cuMemcpyDtoH_v2_ptds)                          \
	X(cuMemcpyDtoHAsync_v2) X(cuMemcpyDtoHAsync_v2_ptsz)

enum call_id {
#define AS_ENUM(name) CALL_##name,
	DRIVER_CALLS(AS_ENUM)
#undef AS_ENUM
	NUM_CALLS
};

static const char *const call_names[NUM_CALLS] = {
#define AS_NAME(name) #name,
	DRIVER_CALLS(AS_NAME)
#undef AS_NAME
};

static uint64_t calls[NUM_CALLS];
static uint64_t kernel_launches, graph_launches;

/* The virtual GPU queue; tail_ns is guarded by queue_lock. */
static pthread_mutex_t queue_lock = PTHREAD_MUTEX_INITIALIZER;
static uint64_t tail_ns;

/* Pinned (page-locked) host buffers, for which a D2H async copy does not
 * block.  Few exist (vLLM keeps a handful), so a small table will do. */
#define MAX_PINNED 64
static struct {
	char *start;
	size_t size;
} pinned[MAX_PINNED];

static void count(enum call_id id)
{
	__atomic_fetch_add(&calls[id], 1, __ATOMIC_RELAXED);
}

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

static void sleep_until(uint64_t t)
{
	struct timespec ts = {.tv_sec = t / 1000000000ULL, .tv_nsec = t % 1000000000ULL};

	while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR)
		;
}

/* Queue `cost` ns of GPU work behind everything queued before. */
static void enqueue(uint64_t cost)
{
	uint64_t now = now_ns();

	pthread_mutex_lock(&queue_lock);
	tail_ns = (tail_ns > now ? tail_ns : now) + cost;
	pthread_mutex_unlock(&queue_lock);
}

static uint64_t queue_tail(void)
{
	uint64_t t;

	pthread_mutex_lock(&queue_lock);
	t = tail_ns;
	pthread_mutex_unlock(&queue_lock);
	return t;
}

/* A CUDA context does not survive fork; give the child an idle GPU and a
 * lock that no thread of the parent can be holding. */
static void reset_in_child(void)
{
	pthread_mutex_init(&queue_lock, NULL);
	tail_ns = 0;
}

__attribute__((constructor)) static void init(void)
{
	pthread_atfork(NULL, NULL, reset_in_child);
}

static CUresult launch(unsigned gx, unsigned gy, unsigned gz)
{
	if (!gx || !gy || !gz)
		return CUDA_ERROR_INVALID_VALUE;
	__atomic_fetch_add(&kernel_launches, 1, __ATOMIC_RELAXED);
	enqueue((uint64_t)gx * gy * gz * SIM_NS_PER_BLOCK);
	return CUDA_SUCCESS;
}

static CUresult graph_launch(CUgraphExec exec)
{
	if (!exec)
		return CUDA_ERROR_INVALID_VALUE;
	__atomic_fetch_add(&graph_launches, 1, __ATOMIC_RELAXED);
	enqueue(exec->cost_ns);
	return CUDA_SUCCESS;
}

static int is_pinned(const void *p, size_t n)
{
	const char *c = p;
	int found = 0;

	pthread_mutex_lock(&queue_lock);
	for (int i = 0; i < MAX_PINNED && !found; i++)
		found = pinned[i].start && c >= pinned[i].start &&
			c + n <= pinned[i].start + pinned[i].size;
	pthread_mutex_unlock(&queue_lock);
	return found;
}

/* Device memory is host memory in the sim.  A copy to pageable memory
 * waits for the queue, as the real driver stages it after earlier work; a
 * copy to pinned memory is queued work and returns at once. */
static CUresult copy_dtoh(void *dst, CUdeviceptr src, size_t n, int async)
{
	if (async && is_pinned(dst, n))
		enqueue(SIM_NS_PER_BLOCK);
	else
		sleep_until(queue_tail());
	memcpy(dst, (const void *)src, n);
	return CUDA_SUCCESS;
}

/* ---- exported driver API ---- */

#define LAUNCH_ARGS CUfunction f, unsigned gx, unsigned gy, unsigned gz,   \
	unsigned bx, unsigned by, unsigned bz, unsigned shmem, CUstream s,   \
	void **params, void **extra

SIM_EXPORT CUresult cuLaunchKernel(LAUNCH_ARGS)
{
	count(CALL_cuLaunchKernel);
	return launch(gx, gy, gz);
}

SIM_EXPORT CUresult cuLaunchKernel_ptsz(LAUNCH_ARGS)
{
	count(CALL_cuLaunchKernel_ptsz);
	return launch(gx, gy, gz);
}

SIM_EXPORT CUresult cuLaunchCooperativeKernel(CUfunction f, unsigned gx, unsigned gy,
	unsigned gz, unsigned bx, unsigned by, unsigned bz, unsigned shmem, CUstream s,
	void **params)
{
	count(CALL_cuLaunchCooperativeKernel);
	return launch(gx, gy, gz);
}

SIM_EXPORT CUresult cuLaunchCooperativeKernel_ptsz(CUfunction f, unsigned gx,
	unsigned gy, unsigned gz, unsigned bx, unsigned by, unsigned bz, unsigned shmem,
	CUstream s, void **params)
{
	count(CALL_cuLaunchCooperativeKernel_ptsz);
	return launch(gx, gy, gz);
}

SIM_EXPORT CUresult cuLaunchKernelEx(const CUlaunchConfig *config, CUfunction f,
	void **params, void **extra)
{
	count(CALL_cuLaunchKernelEx);
	if (!config)
		return CUDA_ERROR_INVALID_VALUE;
	return launch(config->gridDimX, config->gridDimY, config->gridDimZ);
}

SIM_EXPORT CUresult cuLaunchKernelEx_ptsz(const CUlaunchConfig *config, CUfunction f,
	void **params, void **extra)
{
	count(CALL_cuLaunchKernelEx_ptsz);
	if (!config)
		return CUDA_ERROR_INVALID_VALUE;
	return launch(config->gridDimX, config->gridDimY, config->gridDimZ);
}

SIM_EXPORT CUresult cuGraphLaunch(CUgraphExec exec, CUstream s)
{
	count(CALL_cuGraphLaunch);
	return graph_launch(exec);
}

SIM_EXPORT CUresult cuGraphLaunch_ptsz(CUgraphExec exec, CUstream s)
{
	count(CALL_cuGraphLaunch_ptsz);
	return graph_launch(exec);
}

/* The sim has one queue per process, so a stream, the context and the
 * device all wait for the same work. */
SIM_EXPORT CUresult cuStreamSynchronize(CUstream s)
{
	count(CALL_cuStreamSynchronize);
	sleep_until(queue_tail());
	return CUDA_SUCCESS;
}

SIM_EXPORT CUresult cuStreamSynchronize_ptsz(CUstream s)
{
	count(CALL_cuStreamSynchronize_ptsz);
	sleep_until(queue_tail());
	return CUDA_SUCCESS;
}

SIM_EXPORT CUresult cuCtxSynchronize(void)
{
	count(CALL_cuCtxSynchronize);
	sleep_until(queue_tail());
	return CUDA_SUCCESS;
}

SIM_EXPORT CUresult cuEventCreate(CUevent *event, unsigned int flags)
{
	count(CALL_cuEventCreate);
	if (!event)
		return CUDA_ERROR_INVALID_VALUE;
	*event = calloc(1, sizeof(**event));
	return *event ? CUDA_SUCCESS : CUDA_ERROR_INVALID_VALUE;
}

SIM_EXPORT CUresult cuEventDestroy_v2(CUevent event)
{
	free(event);
	return CUDA_SUCCESS;
}

SIM_EXPORT CUresult cuEventRecord(CUevent event, CUstream s)
{
	count(CALL_cuEventRecord);
	if (!event)
		return CUDA_ERROR_INVALID_VALUE;
	event->done_ns = queue_tail();
	return CUDA_SUCCESS;
}

SIM_EXPORT CUresult cuEventRecord_ptsz(CUevent event, CUstream s)
{
	count(CALL_cuEventRecord_ptsz);
	if (!event)
		return CUDA_ERROR_INVALID_VALUE;
	event->done_ns = queue_tail();
	return CUDA_SUCCESS;
}

/* Waits only for the work queued before the event was recorded. */
SIM_EXPORT CUresult cuEventSynchronize(CUevent event)
{
	count(CALL_cuEventSynchronize);
	if (!event)
		return CUDA_ERROR_INVALID_VALUE;
	sleep_until(event->done_ns);
	return CUDA_SUCCESS;
}

SIM_EXPORT CUresult cuMemcpyDtoH_v2(void *dst, CUdeviceptr src, size_t n)
{
	count(CALL_cuMemcpyDtoH_v2);
	return copy_dtoh(dst, src, n, 0);
}

SIM_EXPORT CUresult cuMemcpyDtoH_v2_ptds(void *dst, CUdeviceptr src, size_t n)
{
	count(CALL_cuMemcpyDtoH_v2_ptds);
	return copy_dtoh(dst, src, n, 0);
}

SIM_EXPORT CUresult cuMemcpyDtoHAsync_v2(void *dst, CUdeviceptr src, size_t n, CUstream s)
{
	count(CALL_cuMemcpyDtoHAsync_v2);
	return copy_dtoh(dst, src, n, 1);
}

SIM_EXPORT CUresult cuMemcpyDtoHAsync_v2_ptsz(void *dst, CUdeviceptr src, size_t n,
	CUstream s)
{
	count(CALL_cuMemcpyDtoHAsync_v2_ptsz);
	return copy_dtoh(dst, src, n, 1);
}

SIM_EXPORT CUresult cuMemAllocHost_v2(void **p, size_t size)
{
	int i;

	if (!p || !size)
		return CUDA_ERROR_INVALID_VALUE;
	*p = malloc(size);
	if (!*p)
		return CUDA_ERROR_INVALID_VALUE;
	pthread_mutex_lock(&queue_lock);
	for (i = 0; i < MAX_PINNED && pinned[i].start; i++)
		;
	if (i < MAX_PINNED) {
		pinned[i].start = *p;
		pinned[i].size = size;
	}
	pthread_mutex_unlock(&queue_lock);
	if (i == MAX_PINNED) {
		free(*p);
		return CUDA_ERROR_OUT_OF_MEMORY;
	}
	return CUDA_SUCCESS;
}

SIM_EXPORT CUresult cuMemFreeHost(void *p)
{
	pthread_mutex_lock(&queue_lock);
	for (int i = 0; i < MAX_PINNED; i++)
		if (pinned[i].start == p)
			pinned[i].start = NULL;
	pthread_mutex_unlock(&queue_lock);
	free(p);
	return CUDA_SUCCESS;
}

/* ---- sim-only API ---- */

SIM_EXPORT uint64_t simcuCallCount(const char *name)
{
	for (int i = 0; name && i < NUM_CALLS; i++)
		if (!strcmp(name, call_names[i]))
			return __atomic_load_n(&calls[i], __ATOMIC_RELAXED);
	return 0;
}

SIM_EXPORT uint64_t simcuKernelLaunches(void)
{
	return __atomic_load_n(&kernel_launches, __ATOMIC_RELAXED);
}

SIM_EXPORT uint64_t simcuGraphLaunches(void)
{
	return __atomic_load_n(&graph_launches, __ATOMIC_RELAXED);
}

SIM_EXPORT uint64_t simcuQueueTailNs(void)
{
	return queue_tail();
}
