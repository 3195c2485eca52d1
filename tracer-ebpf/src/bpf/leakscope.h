/* SPDX-License-Identifier: (MIT OR Apache-2.0) */
/*
 * Records the kernel programs hand to userspace. This header is the C half of the
 * layout; tracer-common mirrors it in Rust with size/offset assertions, and the test
 * `record_layout_matches_c_header` compiles this header with the host C compiler to
 * check the two halves agree. Change both together.
 *
 * The header includes nothing: BPF programs get __u32/__u64 from vmlinux.h, the layout
 * test from <linux/types.h>.
 */
#ifndef LEAKSCOPE_H
#define LEAKSCOPE_H

/* Every record starts with this header so a reader can skip kinds it does not know. */
struct ls_record_header {
	__u32 kind;
	__u32 size; /* whole record, header included */
};

enum ls_record_kind {
	LS_RECORD_THREAD_WAITER = 1,
	LS_RECORD_PROCESS = 2,
};

/* ls_thread_waiter.flags */
#define LS_WAITER_IN_FUTEX_WAITV (1u << 0)

#define LS_COMM_LEN 16

/*
 * ls_thread_waiter.fd_kind: what the file descriptor a syscall waits on is. The kernel
 * side tells it from the file's inode mode and filesystem (and, for anonymous inodes,
 * the name they were created with); a /proc reader tells it from the
 * /proc/PID/fd/N link ("socket:[..]", "pipe:[..]", "anon_inode:[eventfd]", a path).
 */
enum ls_fd_kind {
	LS_FD_NONE = 0,     /* the syscall waits on no single fd (poll, nanosleep, wait4...) */
	LS_FD_UNKNOWN = 1,  /* an fd syscall, but the fd could not be looked up (closed?) */
	LS_FD_SOCKET = 2,   /* fd_detail: address family | socket type << 16 */
	LS_FD_PIPE = 3,     /* pipe or FIFO */
	LS_FD_FILE = 4,     /* regular file */
	LS_FD_DIR = 5,
	LS_FD_CHARDEV = 6,  /* fd_detail: the device number (major << 20 | minor) */
	LS_FD_TTY = 7,      /* terminal or pseudo-terminal; fd_detail: the device number */
	LS_FD_BLOCKDEV = 8,
	LS_FD_EVENTFD = 9,
	LS_FD_EPOLL = 10,
	LS_FD_SIGNALFD = 11,
	LS_FD_TIMERFD = 12,
	LS_FD_INOTIFY = 13,
	LS_FD_PIDFD = 14,
	LS_FD_IO_URING = 15,
	LS_FD_ANON = 16,    /* another anonymous inode (userfaultfd, bpf objects...) */
	LS_FD_OTHER = 17,   /* anything else (e.g. a symlink opened with O_PATH) */
};

/*
 * One user thread asleep inside a system call (TASK_INTERRUPTIBLE or
 * TASK_UNINTERRUPTIBLE, not stopped or traced) at the moment the task iterator visits
 * it. Times in *_mono_ns are CLOCK_MONOTONIC (the clock of task->start_time);
 * last_arrival_ns and sched_now_ns are the scheduler clock.
 */
struct ls_thread_waiter {
	struct ls_record_header header;
	__u32 tgid;
	__u32 tid;
	__u64 process_start_mono_ns; /* group leader start: with tgid, names a process instance */
	__u64 thread_start_mono_ns;  /* with tid, names a thread instance across tid reuse */
	__u64 exec_id;               /* bumps on execve: same pid, new program */
	__u64 nvcsw;                 /* voluntary switches: unchanged means it never woke */
	__u64 nivcsw;
	__u64 last_arrival_ns;       /* when the thread last got a CPU (scheduler clock) */
	__u64 sched_now_ns;          /* scheduler clock near the record (leakscope last got a CPU) */
	__u64 mono_now_ns;           /* CLOCK_MONOTONIC when the record was taken */
	__u64 ip;                    /* saved user registers at syscall entry */
	__u64 sp;
	__u64 bp;
	__u64 syscall_nr;            /* orig_ax: x86-64 syscall number (202 futex, 0 read...) */
	__u64 args[6];               /* di, si, dx, r10, r8, r9: the syscall's arguments */
	__u32 state;                 /* task->__state */
	__u32 flags;                 /* LS_WAITER_* */
	__s32 fd;                    /* the fd the syscall waits on, -1 when none */
	__u32 fd_kind;               /* enum ls_fd_kind */
	__u32 fd_detail;             /* see enum ls_fd_kind; 0 when unknown */
	__u32 reserved;              /* zero */
	char comm[LS_COMM_LEN];
};

/*
 * One user process (its group leader), reported on every scan whether or not it has
 * waiters: the list the goroutine reader walks, with the same identity as the waiters,
 * and what it holds of what the kernel limits (threads, mappings, memory), which the
 * exhaustion forecast follows scan by scan.
 */
struct ls_process {
	struct ls_record_header header;
	__u32 tgid;
	__u32 nr_threads;            /* threads of the process: each one a pid, a task */
	__u64 start_mono_ns;
	__u64 exec_id;
	__u64 mono_now_ns;
	char comm[LS_COMM_LEN];
	__u32 map_count;             /* mm->map_count (vm.max_map_count counts it); ~0 unknown */
	__u32 uid;                   /* real uid (RLIMIT_NPROC counts its tasks); ~0 unknown */
	__u64 rss_pages;             /* resident pages: file + anon + shmem */
};

/* ls_process.map_count and .uid when not known. */
#define LS_UNKNOWN_U32 0xffffffffu

#endif /* LEAKSCOPE_H */
