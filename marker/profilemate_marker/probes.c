/*
 * USDT probe sites for the profilemate marker (provider "profilemate").
 *
 * Written without systemtap's <sys/sdt.h> so that only a C compiler is
 * needed.  Each exported function holds exactly one probe site: a 5-byte
 * NOP (0f 1f 44 00 00, "nopl 0x0(%rax,%rax,1)") that the kernel's uprobe
 * fast path can replace with a call, plus one SystemTap v3 note in
 * .note.stapsdt that describes it:
 *
 *   namesz=8 descsz=N type=3 "stapsdt\0"
 *   desc: u64 pc, u64 address of _.stapsdt.base, u64 semaphore address,
 *         "profilemate\0" "<probe name>\0" "<arguments>\0"
 *
 * The semaphores live in ".probes", an initialised writable section (not
 * .bss), so they have file contents and the kernel's ref_ctr_offset can
 * raise them in every process that maps this library.  Python reads them
 * through ctypes and computes the probe arguments only while they are set.
 *
 * Plain shared library, no Python C API: loaded with ctypes by every
 * CPython version.
 */
#include <stdint.h>

#define PM_EXPORT __attribute__((visibility("default")))
#define PM_SEMAPHORE __attribute__((section(".probes"), used)) PM_EXPORT

PM_SEMAPHORE volatile unsigned short profilemate_step_begin_semaphore = 0;
PM_SEMAPHORE volatile unsigned short profilemate_forward_end_semaphore = 0;
PM_SEMAPHORE volatile unsigned short profilemate_sample_end_semaphore = 0;
PM_SEMAPHORE volatile unsigned short profilemate_output_ready_semaphore = 0;
PM_SEMAPHORE volatile unsigned short profilemate_sched_step_semaphore = 0;
PM_SEMAPHORE volatile unsigned short profilemate_step_end_semaphore = 0;

/*
 * _.stapsdt.base: a one-byte anchor whose link-time address is recorded in
 * every note; consumers compare it with the section's real address to undo
 * prelink-style address shifts.  Same name and comdat group as sys/sdt.h so
 * that several objects in one link share a single anchor.
 */
__asm__(".pushsection .stapsdt.base,\"aG\",\"progbits\",.stapsdt.base,comdat\n"
        ".weak _.stapsdt.base\n"
        ".hidden _.stapsdt.base\n"
        "_.stapsdt.base: .space 1\n"
        ".size _.stapsdt.base, 1\n"
        ".popsection\n");

/* The NOP at the probe address, then the note that points back at it. */
#define PM_SITE_HEAD                                                       \
    "990: .byte 0x0f, 0x1f, 0x44, 0x00, 0x00\n"                            \
    ".pushsection .note.stapsdt,\"\",\"note\"\n"                           \
    ".balign 4\n"                                                          \
    ".4byte 992f-991f, 994f-993f, 3\n"                                     \
    "991: .asciz \"stapsdt\"\n"                                            \
    "992: .balign 4\n"                                                     \
    "993: .8byte 990b\n"                                                   \
    ".8byte _.stapsdt.base\n"

#define PM_SITE_TAIL                                                       \
    "994: .balign 4\n"                                                     \
    ".popsection\n"

/*
 * One argument: signed 8 bytes ("-8@" in the spec).  "r" rather than "nor":
 * with "nor" clang spills the arguments to the red zone and emits
 * "-8@-8(%rsp)"; "r" keeps every compiler on the argument registers.
 */
#define PM_ARG(x) "r"((int64_t)(x))

/*
 * noinline + used: the site must exist exactly once, at a fixed address,
 * even though the function body does nothing else.
 */
#define PM_PROBE_FN __attribute__((noinline, used)) PM_EXPORT void

PM_PROBE_FN profilemate_step_begin(int64_t step_id, int64_t num_reqs,
                                   int64_t num_tokens,
                                   int64_t num_prefill_reqs,
                                   int64_t num_prefill_tokens,
                                   int64_t sched_key)
{
    __asm__ __volatile__(PM_SITE_HEAD
                         ".8byte profilemate_step_begin_semaphore\n"
                         ".asciz \"profilemate\"\n"
                         ".asciz \"step_begin\"\n"
                         ".asciz \"-8@%0 -8@%1 -8@%2 -8@%3 -8@%4 -8@%5\"\n"
                         PM_SITE_TAIL
                         :
                         : PM_ARG(step_id), PM_ARG(num_reqs),
                           PM_ARG(num_tokens), PM_ARG(num_prefill_reqs),
                           PM_ARG(num_prefill_tokens), PM_ARG(sched_key));
}

PM_PROBE_FN profilemate_forward_end(int64_t step_id)
{
    __asm__ __volatile__(PM_SITE_HEAD
                         ".8byte profilemate_forward_end_semaphore\n"
                         ".asciz \"profilemate\"\n"
                         ".asciz \"forward_end\"\n"
                         ".asciz \"-8@%0\"\n"
                         PM_SITE_TAIL
                         :
                         : PM_ARG(step_id));
}

PM_PROBE_FN profilemate_sample_end(int64_t step_id)
{
    __asm__ __volatile__(PM_SITE_HEAD
                         ".8byte profilemate_sample_end_semaphore\n"
                         ".asciz \"profilemate\"\n"
                         ".asciz \"sample_end\"\n"
                         ".asciz \"-8@%0\"\n"
                         PM_SITE_TAIL
                         :
                         : PM_ARG(step_id));
}

PM_PROBE_FN profilemate_output_ready(int64_t step_id)
{
    __asm__ __volatile__(PM_SITE_HEAD
                         ".8byte profilemate_output_ready_semaphore\n"
                         ".asciz \"profilemate\"\n"
                         ".asciz \"output_ready\"\n"
                         ".asciz \"-8@%0\"\n"
                         PM_SITE_TAIL
                         :
                         : PM_ARG(step_id));
}

/*
 * The step is finished, with the CLOCK_MONOTONIC times (ns) its forward pass
 * and its sampling ended, 0 where not taken: one probe hit where
 * forward_end, sample_end and output_ready are three.  A tracer that knows
 * it attaches it instead of those (marker/README.md).
 */
PM_PROBE_FN profilemate_step_end(int64_t step_id, int64_t forward_end_ns,
                                 int64_t sample_end_ns)
{
    __asm__ __volatile__(PM_SITE_HEAD
                         ".8byte profilemate_step_end_semaphore\n"
                         ".asciz \"profilemate\"\n"
                         ".asciz \"step_end\"\n"
                         ".asciz \"-8@%0 -8@%1 -8@%2\"\n"
                         PM_SITE_TAIL
                         :
                         : PM_ARG(step_id), PM_ARG(forward_end_ns),
                           PM_ARG(sample_end_ns));
}

/*
 * Fired in EngineCore once per scheduled step (protocol: docs/design.md and
 * marker/README.md).  Eleven arguments: the first six arrive in the System V
 * argument registers, the other five on the stack; "r" makes the compiler
 * load those into registers as well (any general register; the spec names
 * which), so that every argument is a plain register read for a consumer.
 */
PM_PROBE_FN profilemate_sched_step(int64_t sched_key, int64_t kv_usage_permille,
                                   int64_t running_reqs, int64_t waiting_reqs,
                                   int64_t preempted_reqs, int64_t scheduled_tokens,
                                   int64_t token_budget, int64_t scheduled_reqs,
                                   int64_t max_num_seqs, int64_t spec_proposed,
                                   int64_t spec_accepted)
{
    __asm__ __volatile__(PM_SITE_HEAD
                         ".8byte profilemate_sched_step_semaphore\n"
                         ".asciz \"profilemate\"\n"
                         ".asciz \"sched_step\"\n"
                         ".asciz \"-8@%0 -8@%1 -8@%2 -8@%3 -8@%4 -8@%5 -8@%6 -8@%7"
                         " -8@%8 -8@%9 -8@%10\"\n"
                         PM_SITE_TAIL
                         :
                         : PM_ARG(sched_key), PM_ARG(kv_usage_permille),
                           PM_ARG(running_reqs), PM_ARG(waiting_reqs),
                           PM_ARG(preempted_reqs), PM_ARG(scheduled_tokens),
                           PM_ARG(token_budget), PM_ARG(scheduled_reqs),
                           PM_ARG(max_num_seqs), PM_ARG(spec_proposed),
                           PM_ARG(spec_accepted));
}
