/* fuse_victim: a process that maps a file of a FUSE file system that does not answer
 * (hangfs) the way any local user's process can, for leakscope's hang tests.
 *
 *   stack FILE   a thread blocks in pause(2) with its stack and frame pointers on a page
 *                of FILE nobody touched: the thread itself never reads the page, so it
 *                runs on; whoever reads that thread's stack (an unwinder, with
 *                process_vm_readv) makes the kernel fault the page in from the file
 *                system, and waits as long as it does not answer.
 *   exec FILE    FILE is mapped executable (never touched), as a library would be: an
 *                unwinder or symbolizer opens and reads the file behind each executable
 *                mapping, and waits as long as the file system does not answer.
 *
 * In both the main thread sleeps like any blocked thread. FILE: at least 64 KiB.
 * Prints "ready" once set; runs until killed.
 */
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define MAPPED (64 * 1024)

/* Blocks in pause(2) with the stack and frame pointers at `sp`, pushing nothing there:
 * an unwinder reads its first frame there, whether it follows CFI or frame pointers. */
static void *block_on_stack(void *sp) {
    sigset_t all;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, NULL);
    __asm__ volatile(
        "mov %0, %%rsp\n\t"
        "mov %0, %%rbp\n\t"
        "1: mov $34, %%eax\n\t" /* SYS_pause */
        "syscall\n\t"
        "jmp 1b\n\t"
        :
        : "r"(sp)
        : "rax", "rcx", "r11", "memory");
    return NULL;
}

int main(int argc, char **argv) {
    int stack = argc == 3 && strcmp(argv[1], "stack") == 0;
    int exec = argc == 3 && strcmp(argv[1], "exec") == 0;
    if (!stack && !exec) {
        fprintf(stderr, "usage: fuse_victim stack|exec FILE\n");
        return 2;
    }
    int fd = open(argv[2], O_RDONLY);
    if (fd < 0) {
        perror("open");
        return 1;
    }
    /* Never touched: no page of it is read in. */
    int prot = stack ? PROT_READ | PROT_WRITE : PROT_READ | PROT_EXEC;
    uint8_t *map = mmap(NULL, MAPPED, prot, MAP_PRIVATE, fd, 0);
    if (map == MAP_FAILED) {
        perror("mmap");
        return 1;
    }
    /* No readahead around a fault: only the page read is asked for. */
    madvise(map, MAPPED, MADV_RANDOM);
    pthread_t thread;
    if (stack && pthread_create(&thread, NULL, block_on_stack, map + MAPPED / 2) != 0) return 1;
    printf("ready\n");
    fflush(stdout);
    for (;;) pause();
}
