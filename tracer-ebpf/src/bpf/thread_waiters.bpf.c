// SPDX-License-Identifier: (MIT OR Apache-2.0)
/*
 * Thread waiters: a task iterator that reports every user thread blocked in a futex
 * wait, with its saved user registers.
 *
 * Why an iterator and not tracepoints on futex(2): an iterator costs the watched
 * programs nothing (it runs in leakscope's own read(2)), and it sees threads that
 * blocked long before leakscope started. PLATFORM.md measured futex tracepoints at
 * 8-12% on a ping-pong, above our 5% budget.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_tracing.h>
#include "leakscope.h"

char LICENSE[] SEC("license") = "Dual MIT/GPL";

#define SYS_FUTEX 202
#define SYS_FUTEX_WAITV 449
#define PF_KTHREAD 0x00200000

static __always_inline int is_user_thread(struct task_struct *task)
{
	return task->mm && !(task->flags & PF_KTHREAD);
}

static __always_inline int in_futex_syscall(__u64 nr)
{
	return nr == SYS_FUTEX || nr == SYS_FUTEX_WAITV;
}

static __always_inline void fill_identity(struct ls_thread_waiter *w, struct task_struct *task)
{
	w->tgid = task->tgid;
	w->tid = task->pid;
	w->thread_start_mono_ns = task->start_time;
	w->process_start_mono_ns = BPF_CORE_READ(task, group_leader, start_time);
	w->exec_id = task->self_exec_id;
	w->nvcsw = task->nvcsw;
	w->nivcsw = task->nivcsw;
	w->state = task->__state;
	bpf_probe_read_kernel_str(w->comm, sizeof(w->comm), task->comm);
}

static __always_inline void fill_times(struct ls_thread_waiter *w, struct task_struct *task)
{
	/*
	 * "Now" on the scheduler clock (the clock of last_arrival): the iterating task is
	 * leakscope itself, scheduled in moments ago to read this iterator, so its own
	 * last_arrival trails now by far less than the seconds-long waits we measure.
	 * (The runqueue clock would be exact, but aya 0.14 cannot load __ksym externs.)
	 */
	struct task_struct *self = bpf_get_current_task_btf();

	w->last_arrival_ns = task->sched_info.last_arrival;
	w->sched_now_ns = self->sched_info.last_arrival;
	w->mono_now_ns = bpf_ktime_get_ns();
}

static __always_inline void fill_regs(struct ls_thread_waiter *w, struct pt_regs *regs)
{
	w->ip = regs->ip;
	w->sp = regs->sp;
	w->bp = regs->bp;
	w->syscall_nr = regs->orig_ax;
	w->args[0] = regs->di;
	w->args[1] = regs->si;
	w->args[2] = regs->dx;
	w->args[3] = regs->r10;
	if (regs->orig_ax == SYS_FUTEX_WAITV)
		w->flags |= LS_WAITER_IN_FUTEX_WAITV;
}

static __always_inline void emit_process(struct seq_file *seq, struct task_struct *task)
{
	struct ls_process p = {};

	p.header.kind = LS_RECORD_PROCESS;
	p.header.size = sizeof(p);
	p.tgid = task->tgid;
	p.nr_threads = BPF_CORE_READ(task, signal, nr_threads);
	p.start_mono_ns = task->start_time;
	p.exec_id = task->self_exec_id;
	p.mono_now_ns = bpf_ktime_get_ns();
	bpf_probe_read_kernel_str(p.comm, sizeof(p.comm), task->comm);
	bpf_seq_write(seq, &p, sizeof(p));
}

SEC("iter/task")
int thread_waiters(struct bpf_iter__task *ctx)
{
	struct task_struct *task = ctx->task;
	struct ls_thread_waiter w = {};
	struct pt_regs *regs;

	if (!task || !is_user_thread(task))
		return 0;
	if (task->pid == task->tgid)
		emit_process(ctx->meta->seq, task);
	/* A running thread's saved registers are stale; only sleepers are waiters. */
	if (task->__state == 0)
		return 0;
	regs = (struct pt_regs *)bpf_task_pt_regs(task);
	if (!regs || !in_futex_syscall(regs->orig_ax))
		return 0;

	w.header.kind = LS_RECORD_THREAD_WAITER;
	w.header.size = sizeof(w);
	fill_identity(&w, task);
	fill_times(&w, task);
	fill_regs(&w, regs);
	bpf_seq_write(ctx->meta->seq, &w, sizeof(w));
	return 0;
}
