// SPDX-License-Identifier: (MIT OR Apache-2.0)
/*
 * Thread waiters: a task iterator that reports every user thread asleep inside a
 * system call (futex, read, accept, epoll_wait, wait4, nanosleep...), with its saved
 * user registers, its syscall arguments and, for syscalls on one file descriptor, what
 * kind of file that descriptor is.
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

#define SYS_FUTEX_WAITV 449
#define PF_KTHREAD 0x00200000

/* task->__state bits: asleep, and not stopped (SIGSTOP) or traced (a debugger). */
#define TASK_INTERRUPTIBLE 0x1
#define TASK_UNINTERRUPTIBLE 0x2
#define TASK_STOPPED_OR_TRACED 0xc

/* Inode modes and filesystem magics (uapi, stable across kernels). */
#define S_IFMT 00170000
#define S_IFSOCK 0140000
#define S_IFLNK 0120000
#define S_IFREG 0100000
#define S_IFBLK 0060000
#define S_IFDIR 0040000
#define S_IFCHR 0020000
#define S_IFIFO 0010000
#define ANON_INODE_FS_MAGIC 0x09041934
#define PID_FS_MAGIC 0x50494446

static __always_inline int is_user_thread(struct task_struct *task)
{
	return task->mm && !(task->flags & PF_KTHREAD);
}

/*
 * Asleep inside a syscall: orig_ax is the syscall number on syscall entry and -1 on
 * other kernel entries (page faults, interrupts), whose registers say nothing about a
 * wait.
 */
static __always_inline int asleep_in_syscall(struct task_struct *task, struct pt_regs *regs)
{
	__u32 state = task->__state;

	if (!(state & (TASK_INTERRUPTIBLE | TASK_UNINTERRUPTIBLE)))
		return 0;
	if (state & TASK_STOPPED_OR_TRACED)
		return 0;
	return (long)regs->orig_ax >= 0;
}

/* The file descriptor argument of the x86-64 syscalls that wait on one fd, or -1. */
static __always_inline int fd_argument(__u64 nr, struct pt_regs *regs)
{
	switch (nr) {
	case 0:   /* read */
	case 1:   /* write */
	case 16:  /* ioctl */
	case 17:  /* pread64 */
	case 18:  /* pwrite64 */
	case 19:  /* readv */
	case 20:  /* writev */
	case 40:  /* sendfile (out_fd) */
	case 42:  /* connect */
	case 43:  /* accept */
	case 44:  /* sendto */
	case 45:  /* recvfrom */
	case 46:  /* sendmsg */
	case 47:  /* recvmsg */
	case 72:  /* fcntl (F_SETLKW) */
	case 73:  /* flock */
	case 74:  /* fsync */
	case 75:  /* fdatasync */
	case 77:  /* ftruncate */
	case 232: /* epoll_wait */
	case 275: /* splice (fd_in) */
	case 276: /* tee (fd_in) */
	case 281: /* epoll_pwait */
	case 285: /* fallocate */
	case 288: /* accept4 */
	case 295: /* preadv */
	case 296: /* pwritev */
	case 299: /* recvmmsg */
	case 307: /* sendmmsg */
	case 326: /* copy_file_range (fd_in) */
	case 327: /* preadv2 */
	case 328: /* pwritev2 */
	case 426: /* io_uring_enter */
	case 441: /* epoll_pwait2 */
		return (int)regs->di;
	default:
		return -1;
	}
}

/* The open file behind `fd` in `task`'s table, or NULL; every read is bounds-checked. */
static __always_inline struct file *file_of(struct task_struct *task, int fd)
{
	struct fdtable *fdt = BPF_CORE_READ(task, files, fdt);
	struct file **table;
	struct file *file = NULL;

	if (!fdt || fd < 0 || (unsigned int)fd >= BPF_CORE_READ(fdt, max_fds))
		return NULL;
	table = BPF_CORE_READ(fdt, fd);
	if (!table || bpf_probe_read_kernel(&file, sizeof(file), &table[fd]))
		return NULL;
	return file;
}

/* Anonymous inodes share one inode; the name they were created with says what they are. */
static __always_inline __u32 anon_kind(struct file *file)
{
	const unsigned char *name = BPF_CORE_READ(file, f_path.dentry, d_name.name);
	char prefix[8] = {};

	if (!name || bpf_probe_read_kernel_str(prefix, sizeof(prefix), name) < 0)
		return LS_FD_ANON;
	if (!__builtin_memcmp(prefix, "[eventf", 7))
		return LS_FD_EVENTFD;
	if (!__builtin_memcmp(prefix, "[eventp", 7))
		return LS_FD_EPOLL;
	if (!__builtin_memcmp(prefix, "[signal", 7))
		return LS_FD_SIGNALFD;
	if (!__builtin_memcmp(prefix, "[timerf", 7))
		return LS_FD_TIMERFD;
	if (!__builtin_memcmp(prefix, "inotify", 7))
		return LS_FD_INOTIFY;
	if (!__builtin_memcmp(prefix, "[pidfd]", 7))
		return LS_FD_PIDFD;
	if (!__builtin_memcmp(prefix, "[io_uri", 7))
		return LS_FD_IO_URING;
	return LS_FD_ANON;
}

static __always_inline int is_tty_major(__u32 major)
{
	/* 4: tty, 5: /dev/tty, console, ptmx; 136-143: pseudo-terminal slaves. */
	return major == 4 || major == 5 || (major >= 136 && major <= 143);
}

/* Sets fd, fd_kind and fd_detail for a syscall waiting on one file descriptor. */
static __always_inline void fill_fd(struct ls_thread_waiter *w, struct task_struct *task,
				    struct pt_regs *regs)
{
	struct file *file;
	struct inode *inode;
	struct socket *sock;
	__u32 mode, rdev;

	w->fd = fd_argument(regs->orig_ax, regs);
	if (w->fd < 0)
		return;
	w->fd_kind = LS_FD_UNKNOWN;
	file = file_of(task, w->fd);
	inode = file ? BPF_CORE_READ(file, f_inode) : NULL;
	if (!inode)
		return;
	switch (BPF_CORE_READ(inode, i_sb, s_magic)) {
	case ANON_INODE_FS_MAGIC:
		w->fd_kind = anon_kind(file);
		return;
	case PID_FS_MAGIC:
		w->fd_kind = LS_FD_PIDFD;
		return;
	}
	mode = BPF_CORE_READ(inode, i_mode) & S_IFMT;
	rdev = BPF_CORE_READ(inode, i_rdev);
	switch (mode) {
	case S_IFSOCK:
		w->fd_kind = LS_FD_SOCKET;
		sock = BPF_CORE_READ(file, private_data);
		if (sock)
			w->fd_detail = BPF_CORE_READ(sock, sk, __sk_common.skc_family) |
				       ((__u32)(__u16)BPF_CORE_READ(sock, type) << 16);
		return;
	case S_IFIFO:
		w->fd_kind = LS_FD_PIPE;
		return;
	case S_IFREG:
		w->fd_kind = LS_FD_FILE;
		return;
	case S_IFDIR:
		w->fd_kind = LS_FD_DIR;
		return;
	case S_IFCHR:
		w->fd_kind = is_tty_major(rdev >> 20) ? LS_FD_TTY : LS_FD_CHARDEV;
		w->fd_detail = rdev;
		return;
	case S_IFBLK:
		w->fd_kind = LS_FD_BLOCKDEV;
		w->fd_detail = rdev;
		return;
	default:
		w->fd_kind = LS_FD_OTHER;
	}
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
	w->args[4] = regs->r8;
	w->args[5] = regs->r9;
	if (regs->orig_ax == SYS_FUTEX_WAITV)
		w->flags |= LS_WAITER_IN_FUTEX_WAITV;
}

/*
 * mm->rss_stat before Linux 6.2: one struct of atomic counters (6.2 made it an array of
 * per-CPU counters, whose global count is what get_mm_counter reads too).
 */
struct mm_rss_stat___pre62 {
	atomic_long_t count[4];
} __attribute__((preserve_access_index));

struct mm_struct___pre62 {
	struct mm_rss_stat___pre62 rss_stat;
} __attribute__((preserve_access_index));

/* mm counters (include/linux/mm_types_task.h): resident pages are these three. */
#define MM_FILEPAGES 0
#define MM_ANONPAGES 1
#define MM_SHMEMPAGES 3

/* One mm counter, on either layout (member: a constant, for the CO-RE relocation). */
#define RSS_COUNTER(mm, member)                                                           \
	(bpf_core_type_exists(struct mm_rss_stat___pre62)                                 \
		 ? BPF_CORE_READ((struct mm_struct___pre62 *)(mm), rss_stat.count[member].counter) \
		 : BPF_CORE_READ((mm), rss_stat[member].count))

/* Resident pages of an address space, as /proc/PID/statm counts them. */
static __always_inline __u64 rss_pages(struct mm_struct *mm)
{
	__s64 pages = RSS_COUNTER(mm, MM_FILEPAGES) + RSS_COUNTER(mm, MM_ANONPAGES) +
		      RSS_COUNTER(mm, MM_SHMEMPAGES);

	return pages > 0 ? pages : 0;
}

static __always_inline void emit_process(struct seq_file *seq, struct task_struct *task)
{
	struct ls_process p = {};
	struct mm_struct *mm = task->mm;

	p.header.kind = LS_RECORD_PROCESS;
	p.header.size = sizeof(p);
	p.tgid = task->tgid;
	p.nr_threads = BPF_CORE_READ(task, signal, nr_threads);
	p.start_mono_ns = task->start_time;
	p.exec_id = task->self_exec_id;
	p.mono_now_ns = bpf_ktime_get_ns();
	bpf_probe_read_kernel_str(p.comm, sizeof(p.comm), task->comm);
	p.map_count = mm ? BPF_CORE_READ(mm, map_count) : LS_UNKNOWN_U32;
	p.uid = BPF_CORE_READ(task, real_cred, uid.val);
	p.rss_pages = mm ? rss_pages(mm) : 0;
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
	if (!regs || !asleep_in_syscall(task, regs))
		return 0;

	w.header.kind = LS_RECORD_THREAD_WAITER;
	w.header.size = sizeof(w);
	fill_identity(&w, task);
	fill_times(&w, task);
	fill_regs(&w, regs);
	fill_fd(&w, task, regs);
	bpf_seq_write(ctx->meta->seq, &w, sizeof(w));
	return 0;
}
