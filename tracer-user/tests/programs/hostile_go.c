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
 *   sites    20,000 parked goroutines at some 8,000 distinct three-frame stacks
 *   deep     4,096 parked goroutines each claiming a 256 KiB used stack
 *   huge     allglen of 15 million over a table of 4096 pointers
 *   fuse     the table on a page of FILE (`hostile_go fuse FILE`) never touched: a file
 *            of a FUSE file system that does not answer makes a reader of it wait
 *   all      every attack above but `huge` and `fuse` (which make the whole table
 *            unreadable)
 *   flood    150,000 goroutines parked at one site that all re-park (new ids) every
 *            500 ms: the window's history grows by 150,000 waits per read
 *   maps     7,000 mappings of a file whose path is 4,000 bytes long (28 MB of
 *            /proc/PID/maps), and the main thread asleep
 *
 * Built with -DHOSTILE_NAMES (the memory tests build that variant themselves), its
 * pclntab names the parking function with a 64 KiB name in a 64 KiB file, and gives it
 * an inline tree that loops (an inlined call whose caller is itself).
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
#include <sys/stat.h>
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

#ifndef HOSTILE_NAMES

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

#else /* HOSTILE_NAMES: names as long as the reader reads, an inline tree that loops */

#define N16 "NNNNNNNNNNNNNNNN"
#define N256 N16 N16 N16 N16 N16 N16 N16 N16 N16 N16 N16 N16 N16 N16 N16 N16
#define N4K N256 N256 N256 N256 N256 N256 N256 N256 N256 N256 N256 N256 N256 N256 N256 N256
#define N64K N4K N4K N4K N4K N4K N4K N4K N4K N4K N4K N4K N4K N4K N4K N4K N4K
#define F16 "/fffffffffffffff"
#define F256 F16 F16 F16 F16 F16 F16 F16 F16 F16 F16 F16 F16 F16 F16 F16 F16
#define F4K F256 F256 F256 F256 F256 F256 F256 F256 F256 F256 F256 F256 F256 F256 F256 F256
#define F64K F4K F4K F4K F4K F4K F4K F4K F4K F4K F4K F4K F4K F4K F4K F4K F4K
/* The long names start one byte into the 64 KiB run, so that 65,535 bytes and their
 * NUL fit the longest name the reader reads. */
#define LONG_AT 29 /* after "main.hostile\0runtime.gopark\0" and one N */

/* The parking function: three pcdata tables (the inline index is the third) and four
 * funcdata (the inline tree is the fourth, at offset 0 of go:func.*). */
struct __attribute__((packed)) inlined_func_record {
    struct func_record base;
    uint32_t pcdata[3];
    uint32_t funcdata[4];
};

struct __attribute__((packed)) fake_pclntab {
    uint32_t magic;
    uint8_t pad1, pad2, min_lc, ptr_size;
    uint64_t nfunc, nfiles, text_start;
    uint64_t funcname_off, cu_off, filetab_off, pctab_off, pcln_off;
    char funcnametab[LONG_AT - 1 + 65536 + 1];
    uint32_t cutab[1];
    char filetab[65536 + 1];
    uint8_t pctab[9];
    uint32_t functab[5];
    struct func_record func0;
    struct inlined_func_record func1;
};

#define PCLN_AT(field) __builtin_offsetof(struct fake_pclntab, field)

__attribute__((section(".gopclntab"), used, aligned(8)))
const struct fake_pclntab go_pclntab = {
    .magic = 0xfffffff1,
    .min_lc = 1,
    .ptr_size = 8,
    .nfunc = 2,
    .nfiles = 1,
    .text_start = (uint64_t)(uintptr_t)&hostile_text,
    .funcname_off = PCLN_AT(funcnametab),
    .cu_off = PCLN_AT(cutab),
    .filetab_off = PCLN_AT(filetab),
    .pctab_off = PCLN_AT(pctab),
    .pcln_off = PCLN_AT(functab),
    .funcnametab = "main.hostile\0runtime.gopark\0" N64K,
    .cutab = {1},
    .filetab = F64K,
    /* 0: no table; 1: value 0 over 0x80 bytes (file 0, inline index 0); 5: line 10 */
    .pctab = {0, 0x02, 0x80, 0x01, 0, 0x16, 0x80, 0x01, 0},
    .functab = {0, 20, 0x40, 20 + sizeof(struct func_record), 0x80},
    .func0 = {.entry_off = 0, .name_off = 0, .pcfile = 1, .pcln = 5, .start_line = 10},
    .func1 = {
        .base = {.entry_off = 0x40, .name_off = LONG_AT, .pcfile = 1, .pcln = 5,
                 .npcdata = 3, .start_line = 20, .nfuncdata = 4},
        .pcdata = {0, 0, 1},
        .funcdata = {0xffffffff, 0xffffffff, 0xffffffff, 0},
    },
};

/* go:func.*: the inline tree, one call {funcID, pad[3], nameOff, parentPc, startLine}
 * whose caller (parentPc 1, still inline index 0) is itself. */
__attribute__((used, aligned(8)))
const int32_t go_func_base[4] __asm__("\"go:func.*\"") = {0, LONG_AT, 1, 0};

#endif
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
        uint64_t *stack = calloc(6, 8);
        uint64_t sp = (uint64_t)(uintptr_t)stack;
        /* Two frames above the parking one: (i % 0x80, i % 0x40, (i / 0x40) % 0x40)
         * gives some 8,000 distinct stacks. */
        stack[0] = sp + 16;
        stack[1] = text(0x40 + (i % 0x40));
        stack[2] = sp + 32;
        stack[3] = text(0x40 + ((i / 0x40) % 0x40));
        stack[4] = 0;
        stack[5] = 0;
        uint8_t *g = parked_g(text(i % 0x80), sp, sp + 16, sp, sp + 48);
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

/* flood: many goroutines parked at one site, all re-parked with new ids each step. */
#define FLOOD_GS 150000
static uint8_t **flooders;
static uint64_t *flood_table;

static void attack_flood_setup(void) {
    flooders = calloc(FLOOD_GS, sizeof *flooders);
    flood_table = calloc(FLOOD_GS, 8);
    uint64_t *stack = calloc(6, 8);
    uint64_t sp = (uint64_t)(uintptr_t)stack;
    stack[0] = sp + 16;
    stack[1] = text(0x45);
    for (int i = 0; i < FLOOD_GS; i++) {
        uint8_t *g = calloc(1, G_SIZE);
        put64(g, G_STACK_LO, sp);
        put64(g, G_STACK_HI, sp + 48);
        put64(g, G_SCHED_SP, sp);
        put64(g, G_SCHED_PC, text(0x41));
        put64(g, G_SCHED_BP, sp + 16);
        uint32_t status = G_WAITING;
        memcpy(g + G_ATOMICSTATUS, &status, 4);
        put64(g, G_GOID, goid++);
        g[G_WAITREASON] = WAIT_CHAN_RECEIVE;
        put64(g, G_GOPC, text(0x45));
        put64(g, G_STARTPC, text(0x10));
        flooders[i] = g;
        flood_table[i] = (uint64_t)(uintptr_t)g;
    }
}

static void attack_flood_step(void) {
    for (int i = 0; i < FLOOD_GS; i++) put64(flooders[i], G_GOID, goid++);
}

/* maps: a 4,000-byte path, mapped thousands of times (then unlinked: the mappings
 * stay, their names gain " (deleted)"). */
static void attack_maps(void) {
    char path[4096];
    int n = snprintf(path, sizeof path, "/tmp/leakscope-maps-%d", getpid());
    mkdir(path, 0700);
    int depth = 0;
    while (n + 250 < 4000) {
        path[n++] = '/';
        memset(path + n, 'd', 240);
        n += 240;
        path[n] = 0;
        mkdir(path, 0700);
        depth++;
    }
    n += snprintf(path + n, sizeof path - n, "/m");
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
    if (fd < 0 || ftruncate(fd, 4096) != 0) return;
    /* Every other page of a reserved range: neighbours cannot merge. */
    size_t count = 7000;
    uint8_t *base = mmap(NULL, count * 2 * 4096, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (base == MAP_FAILED) return;
    for (size_t i = 0; i < count; i++)
        mmap(base + i * 2 * 4096, 4096, PROT_READ, MAP_SHARED | MAP_FIXED, fd, 0);
    close(fd);
    unlink(path);
    for (; depth >= 0; depth--) {
        char *slash = strrchr(path, '/');
        if (!slash) break;
        *slash = 0;
        rmdir(path);
    }
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
    int flood = strcmp(mode, "flood") == 0;
    if (strcmp(mode, "maps") == 0) attack_maps();
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
    } else if (flood) {
        attack_flood_setup();
        fake_allgs[0] = (uint64_t)(uintptr_t)flood_table;
        fake_allgs[1] = FLOOD_GS;
        fake_allgs[2] = FLOOD_GS;
        fake_allglen = FLOOD_GS;
    } else {
        publish(ngs);
    }
    /* Only churn and flood change anything over time. Every other mode sleeps in one
     * long wait: a thread woken every 20 ms is, on a loaded machine, often found awake
     * (runnable, not a waiter) by a scan, and a scan that finds no waiter leaves the
     * process out of the report. */
    const struct timespec tick = {0, 20 * 1000 * 1000}, rest = {3600, 0};
    for (uint64_t round = 0;; round++) {
        if (churn) attack_churn_step(round);
        if (flood && round % 25 == 0) attack_flood_step();
        nanosleep(churn || flood ? &tick : &rest, NULL);
    }
}
