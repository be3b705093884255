/* coldhit: the time of single driver calls, each made after the caches were
 * overwritten, for BenchmarkColdHitCost. Inside a running server a probed
 * call finds the trap path, the eBPF programs and their maps cold: the
 * server ran its own code since the last hit. Here a write to every cache
 * line of EVICT_KIB KiB before every call does the same to the caches and
 * TLBs: in an order that jumps between pages (a memset would stream past
 * the caches with non-temporal stores and touch pages in order).
 *
 *   coldhit EVICT_KIB N    after a line on stdin, makes N calls of each
 *                          class and prints "CLASS NS": the mean ns of one
 *                          call, timed around the call alone.
 *
 * Classes, as a vLLM step makes them: launch (cuLaunchKernelEx with an empty
 * grid: one entry probe), graph (cuGraphLaunch with a null graph, rejected
 * at once: one entry probe), sync (cuEventSynchronize with a null event,
 * rejected at once: an entry and a return probe), and two functions of
 * this program that begin with the marker's kind of probe site, a 5-byte
 * NOP (nop5, which Linux 6.18 optimizes into a call and a syscall once
 * probed), and a 1-byte NOP (nop1, always a trap) for comparison.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "asmfn.h"
#include "simcuda.h"

CUresult cuLaunchKernelEx(const CUlaunchConfig *, CUfunction, void **, void **);
CUresult cuGraphLaunch(CUgraphExec, CUstream);
CUresult cuEventSynchronize(CUevent);

static const CUlaunchConfig empty_grid = {.gridDimX = 0, .gridDimY = 1, .gridDimZ = 1,
					  .blockDimX = 1, .blockDimY = 1, .blockDimZ = 1};

ASM_FN(ch_nop5, ".byte 0x0f, 0x1f, 0x44, 0x00, 0x00\nret\n")
ASM_FN(ch_nop1, "nop\nret\n")

static void call_launch(void) { cuLaunchKernelEx(&empty_grid, NULL, NULL, NULL); }
static void call_graph(void) { cuGraphLaunch(NULL, NULL); }
static void call_sync(void) { cuEventSynchronize(NULL); }

static const struct {
	const char *name;
	void (*call)(void);
} classes[] = {{"launch", call_launch}, {"graph", call_graph}, {"sync", call_sync},
	       {"nop5", ch_nop5}, {"nop1", ch_nop1}};

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

int main(int argc, char **argv)
{
	char go[16];
	long kib = argc == 3 ? atol(argv[1]) : -1, n = argc == 3 ? atol(argv[2]) : 0;

	if (kib < 0 || (kib & (kib - 1)) || n <= 0) {
		fprintf(stderr, "usage: coldhit EVICT_KIB N (EVICT_KIB 0 or a power of two)\n");
		return 2;
	}
	size_t bytes = (size_t)kib * 1024;
	volatile unsigned char *buf = malloc(bytes + 64);
	if (!buf)
		return 1;
	setvbuf(stdout, NULL, _IOLBF, 0);
	printf("ready\n");
	if (!fgets(go, sizeof(go), stdin))
		return 1;
	memset((void *)buf, 0, bytes + 64);
	size_t lines = bytes / 64, line = 0;
	for (size_t c = 0; c < sizeof(classes) / sizeof(classes[0]); c++) {
		uint64_t spent = 0;

		for (long i = 0; i < n; i++) {
			/* 4099 is odd and lines a power of two: every line once. */
			for (size_t k = 0; k < lines; k++) {
				line = (line + 4099) & (lines - 1);
				buf[line * 64]++;
			}
			uint64_t t = now_ns();
			classes[c].call();
			spent += now_ns() - t;
		}
		printf("%s %.1f\n", classes[c].name, (double)spent / n);
	}
	return 0;
}
