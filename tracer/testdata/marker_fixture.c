/* marker_fixture: a stand-in for the marker's native library
 * (marker/profilemate_marker/probes.c) in the tracer's root tests, with the
 * same probe functions, semaphores and note layout, built in two versions:
 *
 *   default      step_begin with 6 arguments (sched_key last) and
 *                sched_step with 11, as the marker of issue 14 has them;
 *   -DOLD_MARKER step_begin with 5 and no sched_step: a marker from before.
 *
 * sched_step pins its 11 arguments to registers the usual argument
 * registers leave out (rbx, rbp, r10-r15, rax, rcx, rdx), so the test proves
 * that the tracer reads every general register from the uprobe context: a
 * compiler may put any of them in the note. Build with
 * -fomit-frame-pointer, which frees rbp.
 */
#include <stdint.h>

#define PM_EXPORT __attribute__((visibility("default")))
#define PM_SEMAPHORE __attribute__((section(".probes"), used)) PM_EXPORT

PM_SEMAPHORE volatile unsigned short profilemate_step_begin_semaphore = 0;
PM_SEMAPHORE volatile unsigned short profilemate_forward_end_semaphore = 0;
PM_SEMAPHORE volatile unsigned short profilemate_sample_end_semaphore = 0;
PM_SEMAPHORE volatile unsigned short profilemate_output_ready_semaphore = 0;
#ifndef OLD_MARKER
PM_SEMAPHORE volatile unsigned short profilemate_sched_step_semaphore = 0;
#endif

__asm__(".pushsection .stapsdt.base,\"aG\",\"progbits\",.stapsdt.base,comdat\n"
        ".weak _.stapsdt.base\n"
        ".hidden _.stapsdt.base\n"
        "_.stapsdt.base: .space 1\n"
        ".size _.stapsdt.base, 1\n"
        ".popsection\n");

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

#define PM_ARG(x) "r"((int64_t)(x))
#define PM_PROBE_FN __attribute__((noinline, used)) PM_EXPORT void

#ifdef OLD_MARKER
PM_PROBE_FN profilemate_step_begin(int64_t step_id, int64_t num_reqs,
                                   int64_t num_tokens,
                                   int64_t num_prefill_reqs,
                                   int64_t num_prefill_tokens)
{
    __asm__ __volatile__(PM_SITE_HEAD
                         ".8byte profilemate_step_begin_semaphore\n"
                         ".asciz \"profilemate\"\n"
                         ".asciz \"step_begin\"\n"
                         ".asciz \"-8@%0 -8@%1 -8@%2 -8@%3 -8@%4\"\n"
                         PM_SITE_TAIL
                         :
                         : PM_ARG(step_id), PM_ARG(num_reqs),
                           PM_ARG(num_tokens), PM_ARG(num_prefill_reqs),
                           PM_ARG(num_prefill_tokens));
}
#else
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

PM_PROBE_FN profilemate_sched_step(int64_t sched_key, int64_t kv_usage_permille,
                                   int64_t running_reqs, int64_t waiting_reqs,
                                   int64_t preempted_reqs,
                                   int64_t scheduled_tokens,
                                   int64_t token_budget, int64_t scheduled_reqs,
                                   int64_t max_num_seqs, int64_t spec_proposed,
                                   int64_t spec_accepted)
{
    register int64_t a0 __asm__("rbx") = sched_key;
    register int64_t a1 __asm__("rbp") = kv_usage_permille;
    register int64_t a2 __asm__("r10") = running_reqs;
    register int64_t a3 __asm__("r11") = waiting_reqs;
    register int64_t a4 __asm__("r12") = preempted_reqs;
    register int64_t a5 __asm__("r13") = scheduled_tokens;
    register int64_t a6 __asm__("r14") = token_budget;
    register int64_t a7 __asm__("r15") = scheduled_reqs;
    register int64_t a8 __asm__("rax") = max_num_seqs;
    register int64_t a9 __asm__("rcx") = spec_proposed;
    register int64_t a10 __asm__("rdx") = spec_accepted;

    __asm__ __volatile__(PM_SITE_HEAD
                         ".8byte profilemate_sched_step_semaphore\n"
                         ".asciz \"profilemate\"\n"
                         ".asciz \"sched_step\"\n"
                         ".asciz \"-8@%0 -8@%1 -8@%2 -8@%3 -8@%4 -8@%5 -8@%6 -8@%7 -8@%8 -8@%9 -8@%10\"\n"
                         PM_SITE_TAIL
                         :
                         : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(a4), "r"(a5),
                           "r"(a6), "r"(a7), "r"(a8), "r"(a9), "r"(a10));
}
#endif

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
