//go:build ignore

/* profilemate: per-forward-pass timing of a vLLM server.
 *
 * Programs on the marker's USDT probes (provider "profilemate") open and close
 * steps; uprobes on CUDA runtime and driver functions count kernel launches,
 * graph launches and time blocked in synchronization into the step that owns
 * them. One ring-buffer record leaves per finished step, never per CUDA call,
 * and one per scheduled step of an EngineCore's scheduler (sched_step).
 *
 * Attribution under async scheduling, where a process has two steps open:
 *  - launches belong to the newest step: the main thread launches the next
 *    step's kernels once it has begun;
 *  - a synchronization by the thread that began the newest step belongs to
 *    that step; one by any other thread (vLLM's output thread, waiting for an
 *    output) belongs to the oldest open step, whose output it is.
 *
 * Counting each launch once: the runtime (libcudart) calls the exported driver
 * function for every launch, so a runtime launch is counted at the runtime
 * and marks the thread; the next driver launch on that thread is the same
 * launch and is not counted again. Driver launches without that mark (cuBLAS,
 * Triton) are counted at the driver. A mark, not a time window: a thread can
 * be preempted for any time between the two calls.
 *
 * Complete steps only: a process's steps open once it is armed, that is once
 * every CUDA probe it can hit is live. Each link is one process's own (the
 * tracer creates it with the process's PID), so readiness is per process.
 * Two ways arm it: the tracer, after it attached every CUDA library the
 * process maps for it (armed_procs, for the exec generation it looked at),
 * and the process itself, on its first call into a CUDA library whose links
 * for that process are all attached (lib_ready, keyed by the process and
 * the link's cookie, the library's id): a worker started during the trace
 * gets the libraries already probed before it maps them, and is armed by
 * its warm-up, before its first step. Every launch, graph launch and
 * synchronization reaches the driver, so the driver being live is what
 * counts (the runtime, where launches are counted there). Neither forks nor
 * exec keep it: a child has none of its parent's links (the breakpoints it
 * inherits run no program for it) until the tracer attaches its own, and
 * exec maps new libraries.
 *
 * Needs: BPF cookies (5.15), ring buffers (5.8), tp_btf (5.5), uprobe
 * ref_ctr_offset (4.20), uprobe_multi links (6.6: one link per program
 * and library, detached with one RCU wait instead of one per probe) filtered
 * by process (6.10: 46ba0e49b642 made the filter the whole thread group, so
 * that a process's every thread runs the programs, and the breakpoints and
 * semaphores go into that process alone).
 * Built with bpf2go -target amd64.
 */
#include <stdbool.h>
#include <linux/bpf.h>
#include <linux/ptrace.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>

#include "records.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

/* Traced processes (tgid) and their state. Filled by the tracer for the
 * processes it found and by on_fork for children born during the trace. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, __u32);
	__type(value, struct proc_state);
} procs SEC(".maps");

struct thread_state {
	__u64 sync_start_ns;
	__u32 sync_depth;   /* nesting: a runtime sync calls a driver sync */
	__u32 sync_epoch;   /* sync_epoch at the entry that sync_depth counts from */
	__u8 rt_launch;     /* a runtime launch is on its way to the driver */
	__u8 rt_graph;      /* likewise a runtime graph launch */
	__u8 _pad[6];
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, __u32);
	__type(value, struct thread_state);
} threads SEC(".maps");

/* Step and sched records, 112 bytes each with the header: about 9,000. */
#define RING_BYTES (1 << 20)

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, RING_BYTES);
} events SEC(".maps");

/* Records the ring buffer could not take. Ring buffers carry no loss count,
 * so the tracer reads this and reports it. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} drops SEC(".maps");

/* USDT argument specs, indexed by the attach cookie. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 64);
	__type(key, __u32);
	__type(value, struct usdt_spec);
} usdt_specs SEC(".maps");

/* CUDA libraries whose probes are all attached for a process: LIB_READY_* by
 * tgid << 32 | library id, the id being the cookie of each of the library's
 * links. Set by the tracer once a process's links on the library are in. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, __u64);
	__type(value, __u32);
} lib_ready SEC(".maps");

/* Processes the tracer armed: tgid -> the exec generation it saw, plus one,
 * so that an exec after the tracer read the process's maps disarms it. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, __u32);
	__type(value, __u32);
} armed_procs SEC(".maps");

/* Set by the tracer once it probes runtime launch functions, which it does
 * only where a driver's cannot be probed. Until then no driver launch is the
 * second half of a runtime launch, and the launch path skips the thread
 * lookup. */
volatile __u32 runtime_launch_probes;

/* Odd while the launch probes are live, bumped by the tracer after it has
 * attached them and before it detaches them: a step counted its launches
 * whole when it began and ended in the same odd epoch. The tracer samples
 * launches (live for a second now and then) because each probed launch
 * costs the launching thread about a microsecond. */
volatile __u32 launch_epoch;
/* The same for the synchronization probes (entry and return), which are
 * sampled in the same windows: a graph-mode step makes about six of their
 * hits, each several microseconds of the calling thread. A synchronization
 * is timed only when its entry and return both come in one odd epoch: its
 * return probe may be detached while it blocks, and the entry of a later
 * window must not count from that call's depth or start. Odd from the end of
 * the attach on when they are probed all the time. */
volatile __u32 sync_epoch;
/* Set by the tracer when the trace ends, before it detaches the probes (which
 * go one link at a time): from then on no step opens, finishes or counts, so
 * the steps still open are read as they stood at the end, and no step takes
 * the launches of a newer one whose step_begin probe went first. */
volatile __u32 frozen;

static const struct proc_state zero_proc;
static const struct thread_state zero_thread;

static __always_inline struct proc_state *current_proc(void)
{
	__u32 tgid = bpf_get_current_pid_tgid() >> 32;
	return bpf_map_lookup_elem(&procs, &tgid);
}

static __always_inline struct thread_state *current_thread(void)
{
	__u32 tid = (__u32)bpf_get_current_pid_tgid();
	struct thread_state *t = bpf_map_lookup_elem(&threads, &tid);
	if (t)
		return t;
	bpf_map_update_elem(&threads, &tid, &zero_thread, BPF_NOEXIST);
	return bpf_map_lookup_elem(&threads, &tid);
}

/* Whether the process's steps may open: armed by itself or by the tracer. */
static __always_inline bool is_armed(struct proc_state *p, __u32 tgid)
{
	__u32 *gen;

	if (p->armed)
		return true;
	gen = bpf_map_lookup_elem(&armed_procs, &tgid);
	if (gen && *gen == p->exec_gen + 1) {
		p->armed = 1;
		return true;
	}
	return false;
}

/* A CUDA probe fired in process p: if every probe of its library is attached
 * for p and that library is where the process's CUDA calls are counted, p is
 * armed. */
static __always_inline void arm_from(struct pt_regs *ctx, struct proc_state *p)
{
	__u32 want = runtime_launch_probes ? LIB_READY_RUNTIME : LIB_READY_DRIVER;
	__u64 key;
	__u32 *ready;

	if (p->armed)
		return;
	key = (bpf_get_current_pid_tgid() & ~0xffffffffULL) | (__u32)bpf_get_attach_cookie(ctx);
	ready = bpf_map_lookup_elem(&lib_ready, &key);
	if (ready && *ready == want)
		p->armed = 1;
}

static __always_inline struct step_record *slot_of(struct proc_state *p, __u64 step_id)
{
	return &p->open[step_id & (MAX_OPEN_STEPS - 1)];
}

/* The step with this id if it is open, else NULL. */
static __always_inline struct step_record *open_step(struct proc_state *p, __u64 step_id)
{
	struct step_record *s;

	if (!step_id)
		return NULL;
	s = slot_of(p, step_id);
	if (s->step_id != step_id || !s->begin_ns)
		return NULL;
	return s;
}

static __always_inline struct step_record *oldest_open_step(struct proc_state *p)
{
	struct step_record *best = NULL;

	for (int i = 0; i < MAX_OPEN_STEPS; i++) {
		struct step_record *s = &p->open[i];
		if (s->begin_ns && (!best || s->step_id < best->step_id))
			best = s;
	}
	return best;
}

/* A record the ring buffer could not take. */
static __always_inline void count_drop(void)
{
	__u32 zero = 0;
	__u64 *n = bpf_map_lookup_elem(&drops, &zero);

	if (n)
		(*n)++;
}

/* Records leave without waking the tracer, which polls the ring buffer
 * (pollEvery in tracer/records.go). A wakeup would be paid by the probed
 * thread: an interrupt the kernel sends to its own CPU (irq_work) and a
 * reschedule of the reader on another, which in a VM are exits to the
 * hypervisor. Only a ring more than a quarter full (a tracer that fell far
 * behind its polls) is woken, long before a record could be dropped. */
static __always_inline __u64 wakeup_flags(void)
{
	if (bpf_ringbuf_query(&events, BPF_RB_AVAIL_DATA) > RING_BYTES / 4)
		return BPF_RB_FORCE_WAKEUP;
	return BPF_RB_NO_WAKEUP;
}

static __always_inline void submit(struct step_record *s)
{
	if ((s->launch_epoch & 1) && s->launch_epoch == launch_epoch)
		s->flags |= STEP_LAUNCHES_COUNTED;
	if ((s->sync_epoch & 1) && s->sync_epoch == sync_epoch)
		s->flags |= STEP_SYNCS_COUNTED;
	if (bpf_ringbuf_output(&events, s, sizeof(*s), wakeup_flags()))
		count_drop();
	s->begin_ns = 0; /* the slot is free */
}

/* The argument specs of the probe site that fired. */
static __always_inline struct usdt_spec *usdt_spec_of(struct pt_regs *ctx)
{
	__u32 id = bpf_get_attach_cookie(ctx);

	return bpf_map_lookup_elem(&usdt_specs, &id);
}

static __always_inline __s64 usdt_arg(struct pt_regs *ctx, struct usdt_spec *spec, __u32 n)
{
	struct usdt_arg *a;
	__u64 v = 0, base = 0;
	int shift;

	if (!spec || n >= USDT_MAX_ARGS || n >= spec->arg_cnt)
		return 0;
	a = &spec->args[n];
	switch (a->kind) {
	case USDT_ARG_CONST:
		v = a->val;
		break;
	case USDT_ARG_REG:
		bpf_probe_read_kernel(&v, sizeof(v), (void *)ctx + a->reg_off);
		break;
	case USDT_ARG_REG_DEREF:
		bpf_probe_read_kernel(&base, sizeof(base), (void *)ctx + a->reg_off);
		bpf_probe_read_user(&v, sizeof(v), (void *)(base + a->val));
		break;
	default:
		return 0;
	}
	/* Keep the low a->size bytes, sign- or zero-extended. */
	shift = 64 - 8 * (a->size & 0xf);
	if (shift <= 0 || shift >= 64)
		return v;
	if (a->is_signed)
		return ((__s64)(v << shift)) >> shift;
	return (v << shift) >> shift;
}

static __always_inline __u32 arg_u32(struct pt_regs *ctx, struct usdt_spec *spec, __u32 n)
{
	__s64 v = usdt_arg(ctx, spec, n);
	return v < 0 ? 0 : (__u32)v;
}

/* USDT profilemate:step_begin(step_id, num_reqs, num_tokens,
 *                             num_prefill_reqs, num_prefill_tokens[, sched_key])
 * sched_key names the scheduled step this forward pass runs; an older
 * marker's site has no 6th argument, and usdt_arg reads it as 0. */
SEC("uprobe.multi")
int usdt_step_begin(struct pt_regs *ctx)
{
	struct proc_state *p = current_proc();
	struct usdt_spec *spec;
	struct step_record *s;
	__u64 id;

	if (!p || frozen)
		return 0;
	spec = usdt_spec_of(ctx);
	id = usdt_arg(ctx, spec, 0);
	if (!id)
		return 0;
	if (!is_armed(p, bpf_get_current_pid_tgid() >> 32)) {
		/* Some of its CUDA calls would go uncounted: left out. */
		__sync_fetch_and_add(&p->steps_unarmed, 1);
		return 0;
	}
	s = slot_of(p, id);
	if (s->begin_ns && s->step_id != id) {
		s->flags |= STEP_EVICTED;
		submit(s);
	}
	__builtin_memset(s, 0, sizeof(*s));
	s->kind = RECORD_STEP;
	s->step_id = id;
	s->sched_key = usdt_arg(ctx, spec, 5);
	s->pid = bpf_get_current_pid_tgid() >> 32;
	s->tid = (__u32)bpf_get_current_pid_tgid();
	s->num_reqs = arg_u32(ctx, spec, 1);
	s->num_tokens = arg_u32(ctx, spec, 2);
	s->num_prefill_reqs = arg_u32(ctx, spec, 3);
	s->num_prefill_tokens = arg_u32(ctx, spec, 4);
	s->launch_epoch = launch_epoch;
	s->sync_epoch = sync_epoch;
	s->begin_ns = bpf_ktime_get_ns();
	p->newest_step = id;
	p->step_tid = s->tid;
	return 0;
}

/* The open step a marker probe (its argument specs: spec) names in its
 * first argument, if the process is traced and the step was seen to begin. */
static __always_inline struct step_record *probed_step(struct pt_regs *ctx, struct usdt_spec *spec)
{
	struct proc_state *p;

	if (frozen)
		return NULL;
	p = current_proc();

	return p ? open_step(p, usdt_arg(ctx, spec, 0)) : NULL;
}

/* USDT profilemate:forward_end(step_id) */
SEC("uprobe.multi")
int usdt_forward_end(struct pt_regs *ctx)
{
	struct step_record *s = probed_step(ctx, usdt_spec_of(ctx));

	if (s)
		s->forward_end_ns = bpf_ktime_get_ns();
	return 0;
}

/* USDT profilemate:sample_end(step_id) */
SEC("uprobe.multi")
int usdt_sample_end(struct pt_regs *ctx)
{
	struct step_record *s = probed_step(ctx, usdt_spec_of(ctx));

	if (s)
		s->sample_end_ns = bpf_ktime_get_ns();
	return 0;
}

/* USDT profilemate:output_ready(step_id): the step is finished. */
SEC("uprobe.multi")
int usdt_output_ready(struct pt_regs *ctx)
{
	struct step_record *s = probed_step(ctx, usdt_spec_of(ctx));

	if (!s)
		return 0;
	s->output_ready_ns = bpf_ktime_get_ns();
	submit(s);
	return 0;
}

/* A time the marker took for a point of a step (CLOCK_MONOTONIC ns, the
 * clock of bpf_ktime_get_ns), kept if it lies after the point before it and
 * not past now; else 0, not known. */
static __always_inline __u64 point_at(__s64 t, __u64 after, __u64 now)
{
	if (t <= 0 || (__u64)t < after || (__u64)t > now)
		return 0;
	return t;
}

/* USDT profilemate:step_end(step_id, forward_end_ns, sample_end_ns): the
 * step is finished, with the times of the two points in between, which the
 * marker took itself: one probe hit where forward_end, sample_end and
 * output_ready are three. Attached in their place where the marker has it. */
SEC("uprobe.multi")
int usdt_step_end(struct pt_regs *ctx)
{
	struct usdt_spec *spec = usdt_spec_of(ctx);
	struct step_record *s = probed_step(ctx, spec);
	__u64 now;

	if (!s)
		return 0;
	now = bpf_ktime_get_ns();
	s->forward_end_ns = point_at(usdt_arg(ctx, spec, 1), s->begin_ns, now);
	s->sample_end_ns = point_at(usdt_arg(ctx, spec, 2),
				    s->forward_end_ns ? s->forward_end_ns : s->begin_ns, now);
	s->output_ready_ns = now;
	submit(s);
	return 0;
}

/* Only reached through a ring-buffer reservation, so no map names the type:
 * this keeps it in the BTF that bpf2go generates the Go type from. */
const struct sched_record *unused_sched_record __attribute__((unused));

/* USDT profilemate:sched_step(sched_key, kv_usage_permille, running_reqs,
 *     waiting_reqs, preempted_reqs, scheduled_tokens, token_budget,
 *     scheduled_reqs, max_num_seqs, spec_proposed, spec_accepted)
 * Fired by EngineCore's scheduler once per scheduled step, after the step's
 * output came back: one record per call, which the tracer joins to the
 * forward passes whose step_begin carried the same sched_key. Not gated on
 * arming: nothing in it is counted by the CUDA probes. */
SEC("uprobe.multi")
int usdt_sched_step(struct pt_regs *ctx)
{
	struct sched_record *r;
	struct usdt_spec *spec;

	if (frozen || !current_proc())
		return 0;
	spec = usdt_spec_of(ctx);
	/* The tracer attaches only a site with all the arguments; a shorter
	 * spec would read the missing ones as 0, not as unknown. */
	if (!spec || spec->arg_cnt != SCHED_STEP_ARGS)
		return 0;
	r = bpf_ringbuf_reserve(&events, sizeof(*r), 0);
	if (!r) {
		count_drop();
		return 0;
	}
	r->kind = RECORD_SCHED;
	r->pid = bpf_get_current_pid_tgid() >> 32;
	r->ts_ns = bpf_ktime_get_ns();
	/* Checked by the tracer (a key of 0, values out of range), which
	 * counts a bad record rather than dropping it unseen here. */
	r->sched_key = usdt_arg(ctx, spec, 0);
	r->kv_usage_permille = usdt_arg(ctx, spec, 1);
	r->running_reqs = usdt_arg(ctx, spec, 2);
	r->waiting_reqs = usdt_arg(ctx, spec, 3);
	r->preempted_reqs = usdt_arg(ctx, spec, 4);
	r->scheduled_tokens = usdt_arg(ctx, spec, 5);
	r->token_budget = usdt_arg(ctx, spec, 6);
	r->scheduled_reqs = usdt_arg(ctx, spec, 7);
	r->max_num_seqs = usdt_arg(ctx, spec, 8);
	r->spec_proposed = usdt_arg(ctx, spec, 9);
	r->spec_accepted = usdt_arg(ctx, spec, 10);
	bpf_ringbuf_submit(r, wakeup_flags());
	return 0;
}

static __always_inline void count_launch(struct proc_state *p, bool graph)
{
	struct step_record *s = open_step(p, p->newest_step);

	if (graph) {
		__sync_fetch_and_add(&p->graph_launches, 1);
		if (s)
			__sync_fetch_and_add(&s->graph_launches, 1);
	} else {
		__sync_fetch_and_add(&p->launches, 1);
		if (s)
			__sync_fetch_and_add(&s->launches, 1);
	}
}

/* A launch through the runtime: count it and mark the thread, so that the
 * driver launch it makes next is not counted again. */
static __always_inline int runtime_launch(struct pt_regs *ctx, bool graph)
{
	struct proc_state *p = current_proc();
	struct thread_state *t;

	if (!p || frozen)
		return 0;
	arm_from(ctx, p);
	count_launch(p, graph);
	t = current_thread();
	if (t) {
		if (graph)
			t->rt_graph = 1;
		else
			t->rt_launch = 1;
	}
	return 0;
}

/* A launch at the driver: the same launch as the runtime's that marked this
 * thread, or one straight from a library such as cuBLAS. */
static __always_inline int driver_launch(struct pt_regs *ctx, bool graph)
{
	struct proc_state *p = current_proc();
	struct thread_state *t = NULL;

	if (!p || frozen)
		return 0;
	arm_from(ctx, p);
	/* Kernel launches are marked only while runtime launch probes exist;
	 * graph launches always are. A lookup, not current_thread(): a thread
	 * that never launched through the runtime needs no entry. */
	if (graph || runtime_launch_probes) {
		__u32 tid = (__u32)bpf_get_current_pid_tgid();

		t = bpf_map_lookup_elem(&threads, &tid);
	}
	if (t) {
		__u8 *mark = graph ? &t->rt_graph : &t->rt_launch;
		if (*mark) {
			*mark = 0; /* counted at the runtime */
			return 0;
		}
	}
	count_launch(p, graph);
	return 0;
}

/* Runtime kernel launches (probed only where the driver's cannot be):
 * cudaError_t cudaLaunchKernel(const void *func, dim3 grid, dim3 block,
 *                              void **args, size_t shmem, cudaStream_t stream);
 * cudaError_t cudaLaunchKernelExC(const cudaLaunchConfig_t *config,
 *                                 const void *func, void **args);
 * cudaError_t cudaLaunchCooperativeKernel(const void *func, dim3 grid, dim3 block,
 *                                         void **args, size_t shmem, cudaStream_t stream);
 * and their _ptsz forms. */
SEC("uprobe.multi")
int rt_launch(struct pt_regs *ctx)
{
	return runtime_launch(ctx, false);
}

/* Driver kernel launches:
 * CUresult cuLaunchKernel(CUfunction f, unsigned gx, unsigned gy, unsigned gz,
 *                         unsigned bx, unsigned by, unsigned bz, unsigned shmem,
 *                         CUstream stream, void **params, void **extra);
 * CUresult cuLaunchKernelEx(const CUlaunchConfig *config, CUfunction f,
 *                           void **params, void **extra);
 * CUresult cuLaunchCooperativeKernel(...); and their _ptsz forms. */
SEC("uprobe.multi")
int drv_launch(struct pt_regs *ctx)
{
	return driver_launch(ctx, false);
}

/* cudaError_t cudaGraphLaunch(cudaGraphExec_t exec, cudaStream_t stream); */
SEC("uprobe.multi")
int rt_graph_launch(struct pt_regs *ctx)
{
	return runtime_launch(ctx, true);
}

/* CUresult cuGraphLaunch(CUgraphExec exec, CUstream stream); */
SEC("uprobe.multi")
int drv_graph_launch(struct pt_regs *ctx)
{
	return driver_launch(ctx, true);
}

/* Entry of a blocking call: cudaStreamSynchronize, cudaDeviceSynchronize,
 * cudaEventSynchronize, cuStreamSynchronize, cuCtxSynchronize,
 * cuEventSynchronize, cuMemcpyDtoH_v2, cuMemcpyDtoHAsync_v2 (and _ptsz/_ptds).
 * Nested calls (runtime -> driver) are timed once, from the outermost. */
SEC("uprobe.multi")
int sync_enter(struct pt_regs *ctx)
{
	struct proc_state *p = current_proc();
	struct thread_state *t;
	__u32 epoch = sync_epoch;

	if (!p || frozen)
		return 0;
	arm_from(ctx, p);
	/* Even: the probes are on their way in or out, and this call's
	 * return may come after its probe is gone. Nothing is timed then, so
	 * the process's totals cover the odd epochs, which the tracer adds
	 * up as the time the probes were live. */
	if (!(epoch & 1))
		return 0;
	t = current_thread();
	if (!t)
		return 0;
	/* The thread's last entry was in another epoch: a call whose return
	 * probe went before it returned may have left the depth up, which
	 * would keep every later call of the thread from being timed. */
	if (t->sync_epoch != epoch) {
		t->sync_epoch = epoch;
		t->sync_depth = 0;
	}
	if (t->sync_depth++ == 0)
		t->sync_start_ns = bpf_ktime_get_ns();
	return 0;
}

SEC("uretprobe.multi")
int sync_exit(struct pt_regs *ctx)
{
	struct proc_state *p = current_proc();
	struct step_record *s;
	struct thread_state *t;
	__u32 tid;
	__u64 waited;

	if (!p || frozen)
		return 0;
	tid = (__u32)bpf_get_current_pid_tgid();
	t = bpf_map_lookup_elem(&threads, &tid);
	/* A return without its entry (attached mid-call) has nothing to time,
	 * nor one whose entry came in another epoch: the window it began in
	 * has closed, and the kernel hands a return to the return probes
	 * live when it comes, a later window's among them. */
	if (!t || t->sync_epoch != sync_epoch || !t->sync_depth || --t->sync_depth)
		return 0;
	waited = bpf_ktime_get_ns() - t->sync_start_ns;
	__sync_fetch_and_add(&p->sync_wait_ns, waited);
	__sync_fetch_and_add(&p->syncs, 1);

	if (tid == p->step_tid)
		s = open_step(p, p->newest_step);
	else
		s = oldest_open_step(p);
	if (s)
		__sync_fetch_and_add(&s->sync_wait_ns, waited);
	return 0;
}

/* Hits of the tracer's start-up check (tracer/pidfilter.go): a link filtered
 * to the tracer's own process, on a function of its own that another of its
 * threads calls. Before Linux 6.10 (46ba0e49b642, backported to some stable
 * kernels) the filter matched the thread, not the process: the programs
 * would then miss every thread of a server but its main one. */
volatile __u64 pid_filter_hits;

SEC("uprobe.multi")
int pid_filter_probe(struct pt_regs *ctx)
{
	__sync_fetch_and_add(&pid_filter_hits, 1);
	return 0;
}

/* Only the fields read here; CO-RE relocates them against the running
 * kernel's BTF, so no vmlinux.h is needed. */
struct task_struct {
	int pid;
	int tgid;
} __attribute__((preserve_access_index));

/* Children of traced processes are traced from their first instruction:
 * vLLM forks and spawns its engine and workers, and restarts workers. A
 * child is not armed with its parent: the probes it inherits by fork are
 * its parent's links, which run no program for it, until the tracer
 * attaches its own. */
SEC("tp_btf/sched_process_fork")
int BPF_PROG(on_fork, struct task_struct *parent, struct task_struct *child)
{
	__u32 ptgid = BPF_CORE_READ(parent, tgid);
	__u32 pid = BPF_CORE_READ(child, pid);
	__u32 tgid = BPF_CORE_READ(child, tgid);

	if (pid != tgid) /* a new thread, not a new process */
		return 0;
	if (bpf_map_lookup_elem(&procs, &ptgid))
		bpf_map_update_elem(&procs, &tgid, &zero_proc, BPF_NOEXIST);
	return 0;
}

struct linux_binprm;

/* An exec replaces the process's mappings: it is armed again once the
 * libraries it maps now are seen to be probed. */
SEC("tp_btf/sched_process_exec")
int BPF_PROG(on_exec, struct task_struct *task, int old_pid, struct linux_binprm *bprm)
{
	struct proc_state *p = current_proc();

	if (p) {
		p->armed = 0;
		__sync_fetch_and_add(&p->exec_gen, 1);
	}
	return 0;
}
