/* hangfs: a FUSE file system that stops answering, for leakscope's hang tests.
 *
 * Any local user can mount one (fusermount3 is setuid root): a file system whose reads
 * never come back makes whoever touches its pages wait inside the kernel, root's
 * process_vm_readv included. This one serves a single file, `data` (1 MiB), answers
 * lookups, attributes, opens and directory listings at once, and never answers a read
 * of `data` until it receives SIGUSR1; then it answers every read held so far, and
 * every later one, with zero bytes (a second SIGUSR1 stops answering again).
 *
 * Usage: hangfs MOUNTPOINT FUSE_FD: serves the connection FUSE_FD (an open /dev/fuse)
 * that root mounted on MOUNTPOINT for this user, with `user_id=` and `group_id=` this
 * user's and without `allow_other`: what the setuid fusermount3 does for any user on
 * a host whose /dev/fuse is 0666 (udev's rule on Debian; the tests stand in for it
 * where /dev/fuse is root's). Runs in the foreground, single-threaded, until SIGTERM
 * or SIGINT, or until the connection is aborted; root unmounts. Built by the tests
 * against libfuse3 (Debian's libfuse3-dev), run as an unprivileged user.
 */
#define FUSE_USE_VERSION 34
#include <errno.h>
#include <fuse_lowlevel.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define DATA_INO 2
#define DATA_SIZE (1 << 20)
#define MAX_HELD 4096

static const char *data_name = "data";

/* Reads held unanswered, answered by the signal thread when told to. */
static pthread_mutex_t held_lock = PTHREAD_MUTEX_INITIALIZER;
static fuse_req_t held[MAX_HELD];
static size_t held_size[MAX_HELD];
static int nheld;
static int answering;
static char zeros[128 * 1024];

static void fill_attr(fuse_ino_t ino, struct stat *st) {
    memset(st, 0, sizeof *st);
    st->st_ino = ino;
    st->st_uid = getuid();
    st->st_gid = getgid();
    if (ino == FUSE_ROOT_ID) {
        st->st_mode = S_IFDIR | 0755;
        st->st_nlink = 2;
    } else {
        st->st_mode = S_IFREG | 0644;
        st->st_nlink = 1;
        st->st_size = DATA_SIZE;
    }
}

static void hang_lookup(fuse_req_t req, fuse_ino_t parent, const char *name) {
    if (parent != FUSE_ROOT_ID || strcmp(name, data_name) != 0) {
        fuse_reply_err(req, ENOENT);
        return;
    }
    struct fuse_entry_param e;
    memset(&e, 0, sizeof e);
    e.ino = DATA_INO;
    e.attr_timeout = 3600;
    e.entry_timeout = 3600;
    fill_attr(DATA_INO, &e.attr);
    fuse_reply_entry(req, &e);
}

static void hang_getattr(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi) {
    (void)fi;
    if (ino != FUSE_ROOT_ID && ino != DATA_INO) {
        fuse_reply_err(req, ENOENT);
        return;
    }
    struct stat st;
    fill_attr(ino, &st);
    fuse_reply_attr(req, &st, 3600);
}

static void hang_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi) {
    if (ino != DATA_INO) {
        fuse_reply_err(req, EISDIR);
        return;
    }
    /* No page cache kept across opens: every open starts uncached. */
    fi->keep_cache = 0;
    fuse_reply_open(req, fi);
}

static void answer(fuse_req_t req, size_t size) {
    if (size > sizeof zeros) size = sizeof zeros;
    fuse_reply_buf(req, zeros, size);
}

static void hang_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
                      struct fuse_file_info *fi) {
    (void)ino;
    (void)fi;
    if (off >= DATA_SIZE) {
        fuse_reply_buf(req, NULL, 0);
        return;
    }
    if ((off_t)size > DATA_SIZE - off) size = DATA_SIZE - off;
    pthread_mutex_lock(&held_lock);
    if (!answering && nheld < MAX_HELD) {
        held[nheld] = req;
        held_size[nheld] = size;
        nheld++;
        pthread_mutex_unlock(&held_lock);
        fprintf(stderr, "hangfs: holding a read of %zu bytes at %lld\n", size, (long long)off);
        return;
    }
    pthread_mutex_unlock(&held_lock);
    answer(req, size);
}

static void hang_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
                         struct fuse_file_info *fi) {
    (void)fi;
    if (ino != FUSE_ROOT_ID) {
        fuse_reply_err(req, ENOTDIR);
        return;
    }
    char buf[256];
    size_t used = 0;
    struct stat st;
    fill_attr(DATA_INO, &st);
    if (off == 0 && size >= sizeof buf)
        used = fuse_add_direntry(req, buf, sizeof buf, data_name, &st, 1);
    fuse_reply_buf(req, buf, used);
}

static const struct fuse_lowlevel_ops ops = {
    .lookup = hang_lookup,
    .getattr = hang_getattr,
    .open = hang_open,
    .read = hang_read,
    .readdir = hang_readdir,
};

/* SIGUSR1: toggles answering; when it starts, every read held is answered. */
static void *signal_thread(void *arg) {
    sigset_t *set = arg;
    for (;;) {
        int sig;
        if (sigwait(set, &sig) != 0) continue;
        pthread_mutex_lock(&held_lock);
        answering = !answering;
        fprintf(stderr, "hangfs: %s (%d reads held)\n",
                answering ? "answering" : "holding reads", nheld);
        if (answering) {
            for (int i = 0; i < nheld; i++) answer(held[i], held_size[i]);
            nheld = 0;
        }
        pthread_mutex_unlock(&held_lock);
    }
    return NULL;
}

int main(int argc, char **argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: hangfs MOUNTPOINT FUSE_FD\n");
        return 2;
    }
    static sigset_t usr1;
    sigemptyset(&usr1);
    sigaddset(&usr1, SIGUSR1);
    pthread_sigmask(SIG_BLOCK, &usr1, NULL);
    pthread_t signals;
    if (pthread_create(&signals, NULL, signal_thread, &usr1) != 0) return 1;

    char *fuse_argv[] = {argv[0], NULL};
    struct fuse_args args = FUSE_ARGS_INIT(1, fuse_argv);
    struct fuse_session *se = fuse_session_new(&args, &ops, sizeof ops, NULL);
    if (!se) return 1;
    if (fuse_set_signal_handlers(se) != 0) return 1;
    /* The connection root mounted for this user: libfuse serves a "/dev/fd/N". */
    char dev_fd[32];
    snprintf(dev_fd, sizeof dev_fd, "/dev/fd/%d", atoi(argv[2]));
    if (fuse_session_mount(se, dev_fd) != 0) return 1;
    fprintf(stderr, "hangfs: serving %s\n", argv[1]);
    int ret = fuse_session_loop(se);
    fuse_remove_signal_handlers(se);
    fuse_session_destroy(se);
    return ret ? 1 : 0;
}
