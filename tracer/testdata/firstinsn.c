/* firstinsn: functions that differ only in their first instruction, for
 * BenchmarkProbeCostByFirstInstruction. The kernel runs the instruction a
 * uprobe replaces either by emulating it (push, jmp) or by copying it out
 * and single-stepping it (most others, endbr64 among them): a second trap.
 *
 *   firstinsn N    after a line on stdin, calls each function N times and
 *                  prints "NAME NS" per function: the mean ns per call.
 */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "asmfn.h"

ASM_FN(fi_push, "push %rbp\npop %rbp\nret\n")
ASM_FN(fi_jmp, "jmp 1f\n1: ret\n")
ASM_FN(fi_endbr64, "endbr64\npush %rbp\npop %rbp\nret\n")
ASM_FN(fi_mov, "mov %rdi, %rax\nret\n")
ASM_FN(fi_sub, "sub $0x28, %rsp\nadd $0x28, %rsp\nret\n")

static const struct {
	const char *name;
	void (*fn)(void);
} fns[] = {{"fi_push", fi_push}, {"fi_jmp", fi_jmp}, {"fi_endbr64", fi_endbr64},
	   {"fi_mov", fi_mov}, {"fi_sub", fi_sub}};

static double now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e9 + ts.tv_nsec;
}

int main(int argc, char **argv)
{
	char line[16];
	long n = argc == 2 ? atol(argv[1]) : 0;

	if (n <= 0) {
		fprintf(stderr, "usage: firstinsn N\n");
		return 2;
	}
	setvbuf(stdout, NULL, _IOLBF, 0);
	printf("ready\n");
	if (!fgets(line, sizeof(line), stdin))
		return 1;
	for (size_t i = 0; i < sizeof(fns) / sizeof(fns[0]); i++) {
		double t = now_ns();
		for (long k = 0; k < n; k++)
			fns[i].fn();
		printf("%s %.1f\n", fns[i].name, (now_ns() - t) / n);
	}
	return 0;
}
