/* hostile_go: a process that plays a hostile Go program for leakscope, for real.
 *
 * Any local user can start a process like this one. It is a C program that looks like
 * a Go 1.26 binary to anything reading its file: a `.go.buildinfo` blob naming go1.26.6,
 * a small but valid `.gopclntab` (two functions over a range of its own code), and the
 * symbols `runtime.allgs` / `runtime.allglen`. In its own memory it builds a fake
 * goroutine table of fake `g` structs (the go1.26 layout of layouts.json) and fake
 * stacks, each an attack on the reader:
 *
 *   wrap     parked g with sched.sp / bp near 2^64 and an empty stack range
 *   cycle    frame-pointer chains that loop, point down, or run far up a real stack
 *   churn    goroutines whose gopc / startpc change every 20 ms to never-seen values
 *   garbage  g pointers into unmapped memory, near 2^64, misaligned; random fields
 *   sites    20,000 parked goroutines, each at a stack of its own
 *   deep     4,096 parked goroutines each claiming a 256 KiB used stack
 *   huge     allglen of 15 million over a table of 4096 pointers
 *   fuse     the table on a page of FILE (`hostile_go fuse FILE`) never touched: a file
 *            of a FUSE file system that does not answer makes a reader of it wait
 *   all      every attack above but `huge` and `fuse` (which make the whole table
 *            unreadable)
 *
 * Usage: hostile_go [MODE [FILE]]   (default: all). Runs until killed; touches nothing
 * else.
 * Built by the integration tests with -O0 -g -no-pie (absolute addresses, so the
 * pclntab can name its own code without relocations).
 */
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

/* The go1.26 `runtime.g` offsets (tracer-user/src/sources/go/layouts.json). */
#define G_SIZE 456
#define G_STACK_LO 0
#define G_STACK_HI 8
#define G_SCHED_SP 56
#define G_SCHED_PC 64
#define G_SCHED_BP 96
#define G_ATOMICSTATUS 144
#define G_GOID 152
#define G_WAITREASON 176
#define G_GOPC 288
#define G_STARTPC 304
#define G_WAITING 4
#define WAIT_CHAN_RECEIVE 14

/* ---- what the file shows: build info, pclntab, goroutine table symbols ---- */

__attribute__((section(".go.buildinfo"), aligned(16), used))
char go_buildinfo[64] = "\xff Go buildinf:\x08\x02"
                        "\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0"
                        "\x08go1.26.6\x00";

/* Code the fake pclntab describes: 0x80 bytes from here are "Go text". */
__attribute__((noinline, aligned(64))) void hostile_text(void) {
    __asm__ volatile(".fill 0x100, 1, 0x90");
}

/* A Go 1.20+ pclntab (runtime/symtab.go pcHeader), two functions, packed by hand. */
struct __attribute__((packed)) func_record {
    uint32_t entry_off;
    int32_t name_off;
    int32_t args;
    uint32_t deferreturn;
    uint32_t pcsp, pcfile, pcln, npcdata, cu_offset;
    int32_t start_line;
    uint8_t func_id, flag, pad, nfuncdata;
};

struct __attribute__((packed)) fake_pclntab {
    uint32_t magic;
    uint8_t pad1, pad2, min_lc, ptr_size;
    uint64_t nfunc, nfiles, text_start;
    uint64_t funcname_off, cu_off, filetab_off, pctab_off, pcln_off;
    char funcnametab[32];     /* at 72 */
    uint32_t cutab[1];        /* at 104 */
    char filetab[12];         /* at 108 */
    uint8_t pctab[8];         /* at 120 */
    uint32_t functab[5];      /* at 128: (entry, funcoff) x2, end */
    struct func_record funcs[2]; /* at 148 */
};

__attribute__((section(".gopclntab"), used, aligned(8)))
const struct fake_pclntab go_pclntab = {
    .magic = 0xfffffff1,
    .min_lc = 1,
    .ptr_size = 8,
    .nfunc = 2,
    .nfiles = 1,
    .text_start = (uint64_t)(uintptr_t)&hostile_text,
    .funcname_off = 72,
    .cu_off = 104,
    .filetab_off = 108,
    .pctab_off = 120,
    .pcln_off = 128,
    .funcnametab = "main.hostile\0runtime.gopark",
    .cutab = {0},
    .filetab = "/hostile.go",
    /* 0: no table; 1: file 0 over 0x80 bytes; 4: line 11 over 0x80 bytes */
    .pctab = {0, 2, 0x80, 0, 22, 0x80, 0, 0},
    .functab = {0, 20, 0x40, 20 + sizeof(struct func_record), 0x80},
    .funcs = {
        {.entry_off = 0, .name_off = 0, .pcfile = 1, .pcln = 4, .start_line = 10},
        {.entry_off = 0x40, .name_off = 13, .pcfile = 1, .pcln = 4, .start_line = 20},
    },
};

/* The goroutine table: a []*g slice header and its published length. */
__attribute__((used)) volatile uint64_t fake_allgs[3] __asm__("runtime.allgs");
__attribute__((used)) volatile uint64_t fake_allglen __asm__("runtime.allglen");

/* ---- the fake goroutines ---- */

#define MAX_GS 32768
static uint64_t table[MAX_GS];
static size_t ngs;
static uint64_t goid = 1;

static uint64_t text(uint64_t off) { return go_pclntab.text_start + off; }

static void put64(uint8_t *g, int off, uint64_t v) { memcpy(g + off, &v, 8); }

/* A parked g at (pc, sp, bp) over the stack [lo, hi); returns it. */
static uint8_t *parked_g(uint64_t pc, uint64_t sp, uint64_t bp, uint64_t lo, uint64_t hi) {
    uint8_t *g = calloc(1, G_SIZE);
    put64(g, G_STACK_LO, lo);
    put64(g, G_STACK_HI, hi);
    put64(g, G_SCHED_SP, sp);
    put64(g, G_SCHED_PC, pc);
    put64(g, G_SCHED_BP, bp);
    uint32_t status = G_WAITING;
    memcpy(g + G_ATOMICSTATUS, &status, 4);
    put64(g, G_GOID, goid++);
    g[G_WAITREASON] = WAIT_CHAN_RECEIVE;
    put64(g, G_GOPC, text(0x45));
    put64(g, G_STARTPC, text(0x10));
    if (ngs < MAX_GS) table[ngs++] = (uint64_t)(uintptr_t)g;
    return g;
}

static void attack_wrap(void) {
    parked_g(text(0x41), UINT64_MAX - 7, UINT64_MAX, 0, UINT64_MAX - 7);
    parked_g(text(0x41), UINT64_MAX - 15, UINT64_MAX - 7, 0, 0);
    parked_g(text(0x41), UINT64_MAX - 0x1000, UINT64_MAX - 8, UINT64_MAX - 0x2000,
             UINT64_MAX);
    parked_g(text(0x41), 0, UINT64_MAX, 0, 0);
}

static void attack_cycle(void) {
    /* A stack whose saved frame pointers form a loop, one that points down, and a
     * chain running up the whole stack (longer than any frame limit). */
    size_t words = 64 * 1024;
    uint64_t *stack = calloc(words, 8);
    uint64_t base = (uint64_t)(uintptr_t)stack;
    uint64_t hi = base + words * 8;
    stack[0] = base + 16; /* parking frame: saved bp slot */
    stack[1] = text(0x42);
    stack[2] = base + 16; /* bp -> itself */
    stack[3] = text(0x43);
    parked_g(text(0x41), base, base + 16, base, hi);
    stack[16] = base + 8 * 16 - 64; /* points down */
    stack[17] = text(0x44);
    parked_g(text(0x41), base + 8 * 16, base + 8 * 16, base, hi);
    for (size_t i = 32; i + 2 < words; i += 2) {
        stack[i] = base + (i + 2) * 8;
        stack[i + 1] = text(0x46);
    }
    parked_g(text(0x41), base + 32 * 8, base + 32 * 8, base, hi);
}

static uint8_t *churners[64];

static void attack_churn_setup(void) {
    for (int i = 0; i < 64; i++) {
        uint64_t *stack = calloc(8, 8);
        uint64_t sp = (uint64_t)(uintptr_t)stack;
        churners[i] = parked_g(text(0x41), sp, sp + 64, sp, sp + 64);
    }
}

static void attack_churn_step(uint64_t round) {
    for (int i = 0; i < 64; i++) {
        put64(churners[i], G_GOPC, 0x100000000ull + round * 64 + i);
        put64(churners[i], G_STARTPC, 0x200000000ull + round * 64 + i);
        put64(churners[i], G_GOID, goid++);
    }
}

static void attack_garbage(void) {
    uint64_t bogus[] = {8, 0x1000, 0xdead0000, UINT64_MAX - 7, UINT64_MAX, 0x7ffffffff001,
                        (uint64_t)(uintptr_t)&fake_allglen + 3};
    for (size_t i = 0; i < sizeof bogus / sizeof bogus[0] && ngs < MAX_GS; i++)
        table[ngs++] = bogus[i];
    srand(7);
    for (int i = 0; i < 256; i++) {
        uint8_t *g = malloc(G_SIZE);
        for (int j = 0; j < G_SIZE; j++) g[j] = (uint8_t)rand();
        if (ngs < MAX_GS) table[ngs++] = (uint64_t)(uintptr_t)g;
    }
}

static void attack_sites(void) {
    for (int i = 0; i < 20000 && ngs < MAX_GS; i++) {
        uint64_t *stack = calloc(4, 8);
        uint64_t sp = (uint64_t)(uintptr_t)stack;
        stack[0] = sp + 16;
        stack[1] = text(0x40 + (i % 0x40));
        stack[2] = 0;
        stack[3] = 0;
        /* Distinct parking pcs and stack values: one site each. */
        uint8_t *g = parked_g(text(i % 0x80), sp, sp + 16, sp, sp + 32);
        put64(g, G_GOPC, text(0x40 + (i % 0x40)));
    }
}

static void attack_deep(void) {
    size_t bytes = 512 * 1024;
    uint64_t *stack = calloc(bytes / 8, 8);
    uint64_t sp = (uint64_t)(uintptr_t)stack;
    for (int i = 0; i < 4096 && ngs < MAX_GS; i++)
        parked_g(text(0x41), sp, sp + 8 * (i % 64), sp, sp + bytes / 2);
}

static void publish(uint64_t len) {
    fake_allgs[0] = (uint64_t)(uintptr_t)table;
    fake_allgs[1] = len;
    fake_allgs[2] = MAX_GS;
    fake_allglen = len;
}

int main(int argc, char **argv) {
    const char *mode = argc > 1 ? argv[1] : "all";
    int all = strcmp(mode, "all") == 0;
    int churn = all || strcmp(mode, "churn") == 0;
    if (all || strcmp(mode, "wrap") == 0) attack_wrap();
    if (all || strcmp(mode, "cycle") == 0) attack_cycle();
    if (churn) attack_churn_setup();
    if (all || strcmp(mode, "garbage") == 0) attack_garbage();
    if (all || strcmp(mode, "sites") == 0) attack_sites();
    if (all || strcmp(mode, "deep") == 0) attack_deep();
    if (strcmp(mode, "huge") == 0) {
        for (int i = 0; i < 4096; i++) parked_g(text(0x41), 0, 0, 0, 0);
        publish(15u * 1000 * 1000);
    } else if (strcmp(mode, "fuse") == 0) {
        int fd = argc > 2 ? open(argv[2], O_RDONLY) : -1;
        uint8_t *map = fd < 0 ? MAP_FAILED : mmap(NULL, 64 * 1024, PROT_READ, MAP_PRIVATE, fd, 0);
        if (map == MAP_FAILED) {
            perror("hostile_go fuse FILE");
            return 1;
        }
        madvise(map, 64 * 1024, MADV_RANDOM); /* only the page read is asked for */
        publish(16);
        fake_allgs[0] = (uint64_t)(uintptr_t)(map + 8192);
    } else {
        publish(ngs);
    }
    const struct timespec tick = {0, 20 * 1000 * 1000};
    for (uint64_t round = 0;; round++) {
        if (churn) attack_churn_step(round);
        nanosleep(&tick, NULL);
    }
}
