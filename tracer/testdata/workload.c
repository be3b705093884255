/* workload: a scripted CUDA client for the tracer's root tests.
 *
 * It links the simulated server's fake libcudart, libcuda and libcublas like
 * a PyTorch process, loads the marker library (the real one, or
 * testdata/marker_fixture.c built as one), and after a "go" line on
 * stdin runs STEPS forward passes, each with a known number of launches
 * through every path (runtime, runtime ExC, driver straight, graph) and one
 * synchronization that waits for a known amount of queued GPU work. With
 * FORK=1 it forks after "go" (after the tracer attached) and prints
 * "forked child=PID"; the child stops itself (SIGSTOP), runs the same steps
 * once continued, stops again and then runs STEPS more (ids going on), so
 * that a test can run its steps while the tracer has attached some of its
 * probes and not others, and then once all are. It prints the largest
 * step_begin semaphore value it saw,
 * then answers each further line on stdin, until end of input:
 *   "steps N"  runs N more steps (step ids go on) and prints "done";
 *   "hold"     begins one more step, runs it up to forward_end, prints
 *              "holding" and finishes it (sample_end, the synchronization,
 *              output_ready) only at the next line, then prints "released";
 *   "sched N"  runs N more steps, each stamped with a sched_key and, where
 *              the marker has sched_step, followed by that probe with the
 *              values sched_values gives; prints "done";
 *   "longsync MS"  outside any step, queues a graph of MS ms of GPU work,
 *              prints "syncing", waits for it (cudaStreamSynchronize) and
 *              prints "synced": a synchronization long enough for a test
 *              to detach the probes while it blocks;
 *   "exec"     prints "execing tid=TID" and executes itself again from its
 *              main thread, with the same arguments but FORK 0: the new
 *              image maps the libraries and the marker again, prints
 *              "ready", and its steps' ids go on from where they were;
 *   "threadexec"  the same from a second thread, so that the thread that
 *              calls execve is not the process's leader (the kernel makes
 *              it the leader, with the process's PID, and the old leader
 *              task exits);
 *   any other  prints "semaphore=" and the semaphore's value.
 *
 *   workload MARKER_SO STEPS FORK
 *
 * WORKLOAD_FIRST_STEP, when set, is the id of its first step (1 else): an
 * image run by "exec" goes on from the steps of the one before.
 *
 * With WORKLOAD_LATE_MARKER set it loads the marker only after "go", as a
 * vLLM worker imports it after it starts, and runs its first step at once.
 *
 * A step ends as the marker ends it: forward_end, sample_end and
 * output_ready, and step_end with their times where the marker has it and
 * a tracer takes it (then the tracer probes none of the three).
 *
 * step_begin is called with a sixth argument, sched_key (0 but in "sched"
 * steps), whatever the marker: a 5-argument step_begin of an older marker
 * ignores it, and its note says the tracer must not read it.
 *
 * With STEPS=0 it measures instead: the "go" line gives N; N runtime launches
 * (cudaLaunchKernel) then N straight driver launches (cuLaunchKernelEx),
 * then N/10 marker steps without CUDA work (its four probes, or
 * step_begin and step_end where a tracer takes the end from step_end;
 * step_begin with a sched_key) and N/10 sched_step calls where the marker
 * has it,
 * printing the mean nanoseconds per call, step or sched_step.
 */
#include <dlfcn.h>
#include <pthread.h>
#include <stdint.h>
#include <time.h>
#include <stdio.h>
#include <stdlib.h>
#include <signal.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "simcuda.h"

cudaError_t cudaLaunchKernel(const void *, dim3, dim3, void **, size_t, cudaStream_t);
cudaError_t cudaLaunchKernelExC(const cudaLaunchConfig_t *, const void *, void **);
cudaError_t cudaGraphLaunch(cudaGraphExec_t, cudaStream_t);
cudaError_t cudaStreamSynchronize(cudaStream_t);
CUresult cuLaunchKernelEx(const CUlaunchConfig *, CUfunction, void **, void **);

/* Per step, as the test expects them. */
#define RT_LAUNCHES 3
#define EXC_LAUNCHES 2
#define DRIVER_LAUNCHES 4
#define GRAPH_NS 2000000ULL /* GPU time the step's synchronization waits for */

typedef void (*probe1)(long);
typedef void (*probe3)(long, long, long);
typedef void (*probe6)(long, long, long, long, long, long);
typedef void (*probe11)(long, long, long, long, long, long, long, long, long, long, long);

/* The nonce of "sched" keys: (SCHED_NONCE << 32) | step id. */
#define SCHED_NONCE 0x5eedL

static unsigned short *sem, *sched_sem, *step_end_sem;
static probe6 step_begin;
static probe1 forward_end, sample_end, output_ready;
static probe11 sched_step; /* NULL: a marker without it */
static probe3 step_end;    /* likewise */
/* WORKLOAD_BAD_TIMES: step_end gets times outside the step (odd steps: both;
 * even steps: sample_end before forward_end), which the tracer must drop. */
static int bad_times;

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

/* Whether a tracer takes the step's end from step_end: then the times of
 * forward_end and sample_end are taken here and passed to it, as the
 * marker does. */
static int ends(void)
{
	return step_end && *step_end_sem;
}

static void *must(void *lib, const char *name)
{
	void *p = dlsym(lib, name);
	if (!p) {
		fprintf(stderr, "workload: %s: %s\n", name, dlerror());
		exit(2);
	}
	return p;
}

/* Step i: its launches, then with hold set it prints "holding" after
 * forward_end and waits for a line on stdin before it finishes. It returns
 * the step_begin semaphore's value at its start. */
static unsigned run_step(long i, int hold, long sched_key)
{
	dim3 grid = {10, 1, 1}, block = {128, 1, 1};
	cudaLaunchConfig_t rcfg = {.gridDim = grid, .blockDim = block};
	CUlaunchConfig dcfg = {.gridDimX = 10, .gridDimY = 1, .gridDimZ = 1, .blockDimX = 128, .blockDimY = 1, .blockDimZ = 1};
	struct CUgraphExec_st graph = {.cost_ns = GRAPH_NS};
	unsigned on = *sem;
	char line[64];

	if (on)
		step_begin(i, 4, 130, 1, 128, sched_key);
	for (int k = 0; k < RT_LAUNCHES; k++)
		cudaLaunchKernel((void *)1, grid, block, NULL, 0, NULL);
	for (int k = 0; k < EXC_LAUNCHES; k++)
		cudaLaunchKernelExC(&rcfg, (void *)1, NULL);
	for (int k = 0; k < DRIVER_LAUNCHES; k++)
		cuLaunchKernelEx(&dcfg, NULL, NULL, NULL);
	cudaGraphLaunch(&graph, NULL);
	uint64_t forward_ns = on && ends() ? now_ns() : 0, sample_ns = 0;
	if (on)
		forward_end(i);
	if (hold) {
		printf("holding\n");
		if (!fgets(line, sizeof(line), stdin))
			exit(1);
	}
	if (on && ends())
		sample_ns = now_ns();
	if (on)
		sample_end(i);
	cudaStreamSynchronize(NULL);
	if (on && ends() && bad_times) {
		if (i % 2) { /* before the step began; in an hour */
			forward_ns = 1;
			sample_ns = now_ns() + 3600000000000ULL;
		} else { /* before the forward pass ended */
			sample_ns = forward_ns - 1000;
		}
	}
	if (on && ends())
		step_end(i, (long)forward_ns, (long)sample_ns);
	if (on)
		output_ready(i);
	return on;
}

/* Steps first .. first+n-1; the largest semaphore value seen. */
static unsigned run_steps(long first, long n)
{
	unsigned max_sem = 0;

	for (long i = first; i < first + n; i++) {
		unsigned on = run_step(i, 0, 0);
		if (on > max_sem)
			max_sem = on;
	}
	return max_sem;
}

/* Zero-cost grids, so only the call (and any probe on it) is timed. */
static void measure(long n)
{
	dim3 grid = {0, 1, 1}, block = {1, 1, 1};
	CUlaunchConfig dcfg = {.gridDimX = 0, .gridDimY = 1, .gridDimZ = 1, .blockDimX = 1, .blockDimY = 1, .blockDimZ = 1};
	uint64_t t0 = now_ns();
	for (long i = 0; i < n; i++)
		cudaLaunchKernel((void *)1, grid, block, NULL, 0, NULL);
	uint64_t t1 = now_ns();
	for (long i = 0; i < n; i++)
		cuLaunchKernelEx(&dcfg, NULL, NULL, NULL);
	uint64_t t2 = now_ns();
	long m = n / 10;
	for (long i = 1; i <= m; i++) {
		step_begin(i, 4, 130, 1, 128, (SCHED_NONCE << 32) | i);
		if (ends()) {
			uint64_t t = now_ns();
			step_end(i, (long)t, (long)t);
			continue;
		}
		forward_end(i);
		sample_end(i);
		output_ready(i);
	}
	uint64_t t3 = now_ns();
	for (long i = 1; sched_step && i <= m; i++)
		sched_step((SCHED_NONCE << 32) | i, 500, 16, 2, 0, 130, 2048, 4, 256, -1, -1);
	uint64_t t4 = now_ns();
	printf("done runtime_ns=%.1f driver_ns=%.1f step_ns=%.1f sched_ns=%.1f\n", (double)(t1 - t0) / n,
	       (double)(t2 - t1) / n, (double)(t3 - t2) / m, sched_step ? (double)(t4 - t3) / m : 0.0);
}

static void load_marker(const char *path)
{
	void *lib = dlopen(path, RTLD_NOW);
	if (!lib) {
		fprintf(stderr, "workload: %s\n", dlerror());
		exit(2);
	}
	sem = must(lib, "profilemate_step_begin_semaphore");
	step_begin = (probe6)must(lib, "profilemate_step_begin");
	forward_end = (probe1)must(lib, "profilemate_forward_end");
	sample_end = (probe1)must(lib, "profilemate_sample_end");
	output_ready = (probe1)must(lib, "profilemate_output_ready");
	sched_step = (probe11)dlsym(lib, "profilemate_sched_step");
	sched_sem = dlsym(lib, "profilemate_sched_step_semaphore");
	step_end = (probe3)dlsym(lib, "profilemate_step_end");
	step_end_sem = dlsym(lib, "profilemate_step_end_semaphore");
	if (!sched_step != !sched_sem || !step_end != !step_end_sem) {
		fprintf(stderr, "workload: a probe without its semaphore, or the reverse\n");
		exit(2);
	}
}

/* Step i stamped with its sched_key, then its scheduler step, as EngineCore
 * fires it once the step's output is back. The values follow from i, and
 * the test computes the same (schedValues in sched_test.go). */
static void run_sched_step(long i)
{
	long key = (SCHED_NONCE << 32) | i;
	long spec = i % 2 ? -1 : 5; /* odd steps: no speculative decoding */

	run_step(i, 0, key);
	if (sched_step && *sched_sem)
		sched_step(key, (i * 37) % 1001, i, i + 100, i % 3, 130, 2048, 4, 256,
			   spec, spec < 0 ? -1 : 3);
}

static char **args;

/* Executes the workload again, its steps going on from next; from a thread
 * other than the main one with thread set. */
static void *reexec(void *next)
{
	char first[32];

	snprintf(first, sizeof(first), "%ld", (long)next);
	setenv("WORKLOAD_FIRST_STEP", first, 1);
	printf("execing tid=%ld\n", (long)syscall(SYS_gettid));
	execv(args[0], (char *[]){args[0], args[1], args[2], "0", NULL});
	fprintf(stderr, "workload: exec %s: %m\n", args[0]);
	exit(2);
}

static void reexec_from(long next, int thread)
{
	pthread_t th;

	if (!thread)
		reexec((void *)next);
	if (pthread_create(&th, NULL, reexec, (void *)next)) {
		fprintf(stderr, "workload: pthread_create failed\n");
		exit(2);
	}
	pthread_join(th, NULL); /* the exec ends this thread first */
	exit(2);
}

int main(int argc, char **argv)
{
	char line[64];

	if (argc != 4) {
		fprintf(stderr, "usage: workload MARKER_SO STEPS FORK\n");
		return 2;
	}
	args = argv;
	int late = getenv("WORKLOAD_LATE_MARKER") != NULL;
	long first = getenv("WORKLOAD_FIRST_STEP") ? atol(getenv("WORKLOAD_FIRST_STEP")) : 1;
	bad_times = getenv("WORKLOAD_BAD_TIMES") != NULL;
	if (!late)
		load_marker(argv[1]);
	setvbuf(stdout, NULL, _IOLBF, 0);
	printf("ready\n");

	if (!fgets(line, sizeof(line), stdin))
		return 1;
	if (late)
		load_marker(argv[1]);
	if (atoi(argv[2]) == 0) {
		measure(atol(line));
		return 0;
	}
	long steps = atol(argv[2]);
	pid_t child = atoi(argv[3]) ? fork() : -1;
	if (child == 0) {
		raise(SIGSTOP);
		run_steps(first, steps);
		raise(SIGSTOP);
		run_steps(first + steps, steps);
		_exit(0);
	}
	if (child > 0)
		printf("forked child=%d\n", child);
	unsigned max_sem = run_steps(first, steps);
	if (child > 0)
		waitpid(child, NULL, 0);
	printf("done child=%d max_semaphore=%u\n", child > 0 ? child : 0, max_sem);

	long next = first + steps;
	while (fgets(line, sizeof(line), stdin)) {
		if (!strncmp(line, "steps ", 6)) {
			long n = atol(line + 6);
			run_steps(next, n);
			next += n;
			printf("done\n");
		} else if (!strncmp(line, "sched ", 6)) {
			long n = atol(line + 6);
			for (long i = next; i < next + n; i++)
				run_sched_step(i);
			next += n;
			printf("done\n");
		} else if (!strncmp(line, "longsync ", 9)) {
			struct CUgraphExec_st graph = {.cost_ns = atol(line + 9) * 1000000ULL};

			cudaGraphLaunch(&graph, NULL);
			printf("syncing\n");
			cudaStreamSynchronize(NULL);
			printf("synced\n");
		} else if (!strncmp(line, "exec", 4) || !strncmp(line, "threadexec", 10)) {
			reexec_from(next, line[0] == 't');
		} else if (!strncmp(line, "hold", 4)) {
			run_step(next++, 1, 0);
			printf("released\n");
		} else {
			printf("semaphore=%u\n", *sem);
		}
	}
	return 0;
}
