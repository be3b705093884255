/* Record layouts shared by the eBPF programs and the Go tracer.
 *
 * bpf2go generates the Go types from these structs (-type), so any change
 * here is a change of the contract with tracer/: keep explicit padding and
 * the size assertions, which catch a layout that differs between clang's BPF
 * target and Go.
 */
#ifndef PROFILEMATE_RECORDS_H
#define PROFILEMATE_RECORDS_H

#include <linux/types.h>


/* Steps of one process that may be open at once. Under async scheduling two
 * overlap (the next begins before the previous one's output is ready); four
 * leaves room for a slow output thread. */
#define MAX_OPEN_STEPS 4

/* step_record.flags */
#define STEP_EVICTED 1 /* flushed unfinished: a newer step needed its slot */
#define STEP_LAUNCHES_COUNTED 2 /* launch probes were live from begin to end */
#define STEP_SYNCS_COUNTED 4 /* synchronization probes were live from begin to end */

/* Kinds of the records sent through the ring buffer: every record starts
 * with its kind, so the tracer can tell them apart before it decodes one. */
#define RECORD_STEP 1  /* struct step_record */
#define RECORD_SCHED 2 /* struct sched_record */

/* One finished forward pass. */
struct step_record {
	__u32 kind;            /* RECORD_STEP */
	__u32 flags;           /* STEP_* */
	__u64 step_id;
	__u64 begin_ns;        /* step_begin (CLOCK_MONOTONIC) */
	__u64 forward_end_ns;  /* 0 until forward_end */
	__u64 sample_end_ns;   /* 0 until sample_end */
	__u64 output_ready_ns; /* 0 until output_ready */
	__u64 sync_wait_ns;    /* blocked in CUDA synchronization while open */
	__u64 sched_key;       /* step_begin's 6th argument; 0: none (older marker, unstamped schedule) */
	__u32 pid;             /* tgid */
	__u32 tid;             /* thread that fired step_begin */
	__u32 num_reqs;
	__u32 num_tokens;
	__u32 num_prefill_reqs;
	__u32 num_prefill_tokens;
	__u32 launches;        /* kernel launches, each counted once */
	__u32 graph_launches;
	__u32 launch_epoch;    /* launch_epoch at step_begin */
	__u32 sync_epoch;      /* sync_epoch at step_begin */
};
_Static_assert(sizeof(struct step_record) == 104, "step_record layout");

/* Arguments of profilemate:sched_step, in the note's order. */
#define SCHED_STEP_ARGS 11

/* One scheduled step of an EngineCore's scheduler (profilemate:sched_step),
 * sent when the probe fires. The values are the marker's arguments as they
 * came, -1 where the marker does not know one; the tracer checks them. */
struct sched_record {
	__u32 kind;              /* RECORD_SCHED */
	__u32 pid;               /* tgid of the process that fired it */
	__u64 ts_ns;             /* when it fired (CLOCK_MONOTONIC) */
	__u64 sched_key;         /* (nonce << 32) | counter: what step_begin carries */
	__s64 kv_usage_permille; /* 0..1000 */
	__s64 running_reqs;
	__s64 waiting_reqs;
	__s64 preempted_reqs;
	__s64 scheduled_tokens;
	__s64 token_budget;
	__s64 scheduled_reqs;
	__s64 max_num_seqs;
	__s64 spec_proposed;
	__s64 spec_accepted;
};
_Static_assert(sizeof(struct sched_record) == 24 + (SCHED_STEP_ARGS - 1) * 8, "sched_record layout");

/* Per traced process: its open steps and its CUDA activity over the trace.
 * An entry exists exactly for the processes being traced, so the programs'
 * process filter and their state are one map lookup.
 *
 * A process is armed once every CUDA probe it can hit is live; only then do
 * its steps open, so that no step is written with counts that started late.
 * Steps that begin before are counted in steps_unarmed and left out. */
struct proc_state {
	__u64 newest_step;   /* step_id of the latest step_begin, 0 before any */
	__u32 step_tid;      /* thread that fired that step_begin */
	__u32 exec_gen;      /* execs since it was traced: the tracer arms a generation */
	__u64 launches;      /* whole trace, inside steps or not */
	__u64 graph_launches;
	__u64 sync_wait_ns;
	__u64 syncs;
	__u64 steps_unarmed; /* step_begins before the process was armed */
	__u8 armed;          /* reset by exec, which maps new libraries */
	__u8 _pad[7];
	struct step_record open[MAX_OPEN_STEPS]; /* slot = step_id % MAX_OPEN_STEPS */
};
_Static_assert(sizeof(struct proc_state) == 64 + MAX_OPEN_STEPS * 104, "proc_state layout");

/* lib_ready values: every probe of the CUDA library is attached for the process. */
#define LIB_READY_DRIVER 1
#define LIB_READY_RUNTIME 2

/* How to read one USDT argument, parsed by the tracer from the probe's note
 * (".note.stapsdt" argument string such as "-8@%rdi" or "-8@-16(%rbp)"). */
#define USDT_ARG_CONST 0     /* "$N": the value is val */
#define USDT_ARG_REG 1       /* "%reg": the register's value */
#define USDT_ARG_REG_DEREF 2 /* "OFF(%reg)": memory at register + val */

/* The most arguments a probe may have: sched_step has SCHED_STEP_ARGS. */
#define USDT_MAX_ARGS SCHED_STEP_ARGS

struct usdt_arg {
	__s64 val;      /* constant, or offset for REG_DEREF */
	__u16 reg_off;  /* offset of the register in struct pt_regs */
	__u8 kind;      /* USDT_ARG_* */
	__u8 size;      /* 1, 2, 4 or 8 bytes */
	__u8 is_signed;
	__u8 _pad[3];
};
_Static_assert(sizeof(struct usdt_arg) == 16, "usdt_arg layout");

/* The argument specs of one probe site, indexed by the attach cookie. */
struct usdt_spec {
	struct usdt_arg args[USDT_MAX_ARGS];
	__u32 arg_cnt;
	__u32 _pad;
};
_Static_assert(sizeof(struct usdt_spec) == USDT_MAX_ARGS * 16 + 8, "usdt_spec layout");

#endif
