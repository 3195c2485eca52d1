/* fuse_stack: a process one of whose threads blocks with its stack on a page that no
 * one can read, for leakscope's hang tests.
 *
 * Any local user can do this: map a file of a FUSE file system they serve (hangfs), and
 * point a thread's stack pointer into a page of it nobody touched before blocking in a
 * system call. The thread itself never reads the page, so it runs on; whoever reads that
 * thread's stack (leakscope unwinding a blocked thread, with process_vm_readv) makes the
 * kernel fault the page in from the file system, and waits as long as it does not
 * answer. The main thread sleeps like any ordinary blocked thread.
 *
 * Usage: fuse_stack FILE   (FILE: at least 64 KiB, on the FUSE mount). Prints "ready"
 * once the thread blocks; runs until killed.
 */
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/mman.h>
#include <unistd.h>

#define MAPPED (64 * 1024)

/* Blocks in pause(2) with the stack pointer at `sp`, pushing nothing there. */
static void *block_on_stack(void *sp) {
    sigset_t all;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, NULL);
    __asm__ volatile(
        "mov %0, %%rsp\n\t"
        "1: mov $34, %%eax\n\t" /* SYS_pause */
        "syscall\n\t"
        "jmp 1b\n\t"
        :
        : "r"(sp)
        : "rax", "rcx", "r11", "memory");
    return NULL;
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: fuse_stack FILE\n");
        return 2;
    }
    int fd = open(argv[1], O_RDONLY);
    if (fd < 0) {
        perror("open");
        return 1;
    }
    /* Private and writable like a stack, never touched: no page of it is read in. */
    uint8_t *map = mmap(NULL, MAPPED, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
    if (map == MAP_FAILED) {
        perror("mmap");
        return 1;
    }
    /* No readahead around a fault: only the page read is asked for. */
    madvise(map, MAPPED, MADV_RANDOM);
    pthread_t thread;
    if (pthread_create(&thread, NULL, block_on_stack, map + MAPPED / 2) != 0) return 1;
    printf("ready\n");
    fflush(stdout);
    for (;;) pause();
}
