#!/usr/bin/env python3
"""Regenerates the small seed inputs in fuzz/seeds/ from binaries the tests build.

Usage: fuzz/make_seeds.py HOSTILE_GO GO_BINARY
  HOSTILE_GO  tests/programs/hostile_go.c built as the tests build it (-O0 -g -no-pie)
  GO_BINARY   a real Go 1.26 binary (e.g. target/go-fixtures/1.26.6/normal)

Seeds are kept small (KBs): libFuzzer mutates them; every input that once found a bug
is added by hand beside them and never regenerated.
"""
import os
import struct
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))


def write(target, name, data):
    d = os.path.join(HERE, "seeds", target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def section(path, name):
    out = subprocess.run(
        ["objcopy", "-O", "binary", "--only-section=" + name, path, "/dev/stdout"],
        check=True, capture_output=True)
    return out.stdout


def symbol(path, name):
    """(address, size, file offset) of a function symbol of a non-PIE ELF."""
    out = subprocess.run(["nm", "-S", path], check=True, capture_output=True, text=True)
    for line in out.stdout.splitlines():
        parts = line.split()
        if len(parts) == 4 and parts[3] == name:
            addr, size = int(parts[0], 16), int(parts[1], 16)
            break
    else:
        raise SystemExit(f"{name} not in {path}")
    hdr = subprocess.run(["readelf", "-lW", path], check=True, capture_output=True, text=True)
    for line in hdr.stdout.splitlines():
        f = line.split()
        if f and f[0] == "LOAD":
            off, vaddr, filesz = int(f[1], 16), int(f[2], 16), int(f[4], 16)
            if vaddr <= addr < vaddr + filesz:
                return addr, size, off + addr - vaddr
    raise SystemExit(f"{name} not in a segment")


def goroutine_images():
    """Fake memories for the goroutines target: 32 header bytes (allgs ptr, len, cap,
    allglen), then a heap at HEAP holding the g pointer table, g structs and stacks."""
    HEAP = 0x7F00_0000_0000
    G_SIZE = 456
    text = 0x4011C0  # hostile_text in hostile_go (its pclntab's text start)
    images = {}
    for name, n in [("one", 1), ("eight", 8)]:
        table_off, gs_off = 0, 64
        stacks_off = gs_off + n * G_SIZE
        heap = bytearray(stacks_off + n * 64)
        for i in range(n):
            g = gs_off + i * G_SIZE
            sp = HEAP + stacks_off + i * 64
            struct.pack_into("<Q", heap, table_off + 8 * i, HEAP + g)
            struct.pack_into("<QQ", heap, g, sp, sp + 64)  # stack lo, hi
            struct.pack_into("<QQ", heap, g + 56, sp, text + 0x41)  # sched sp, pc
            struct.pack_into("<Q", heap, g + 96, sp + 16)  # sched bp
            struct.pack_into("<I", heap, g + 144, 4)  # _Gwaiting
            struct.pack_into("<Q", heap, g + 152, i + 1)  # goid
            heap[g + 176] = 14  # chan receive
            struct.pack_into("<Q", heap, g + 288, text + 0x45)  # gopc
            struct.pack_into("<Q", heap, g + 304, text + 0x10)  # startpc
            st = stacks_off + i * 64
            struct.pack_into("<QQQQ", heap, st, sp + 16, text + 0x42, sp + 32, text + 0x43)
        header = struct.pack("<QQQQ", HEAP + table_off, n, n, n)
        images[name] = header + bytes(heap)
    return images


def main():
    hostile, go = sys.argv[1], sys.argv[2]
    hostile_bytes = open(hostile, "rb").read()
    write("go_binary", "hostile_go", hostile_bytes)
    write("layout_dwarf", "hostile_go", hostile_bytes)
    write("pclntab", "hostile_go", section(hostile, ".gopclntab"))
    write("buildinfo", "hostile_go", section(hostile, ".go.buildinfo"))
    write("buildinfo", "go1.26", section(go, ".go.buildinfo")[:4096])
    addr, size, off = symbol(go, "runtime.allgadd")
    write("allgadd", "go1.26", open(go, "rb").read()[off:off + size])
    for name, image in goroutine_images().items():
        write("goroutines", name, image)
    # [elf len][ip, sp offset, bp][elf][stack]: a frame-pointer chain in hostile_go.
    ip = 0x4011C0 + 4
    stack = struct.pack("<QQQQ", 0x7FFD_0000_0000 + 16, 0x4011C0 + 0x20, 0, 0)
    regs = struct.pack("<QQQ", ip, 0, 0x7FFD_0000_0000)
    write("eh_frame_unwind", "hostile_go",
          struct.pack("<I", len(hostile_bytes)) + regs + hostile_bytes + stack)
    write("proc_maps", "maps", open("/proc/self/maps", "rb").read()[:4096] +
          b"7f00000000-7f00001000 r-xp 00000000 08:01 12 /tmp/a b (deleted)\n"
          b"7f00001000-7f00002000 r-xp 00001000 08:01 13 /tmp/\xff\n")
    write("http_head", "metrics", b"GET /metrics HTTP/1.1\r\nHost: localhost\r\n\r\n")
    write("http_head", "healthz", b"GET /healthz HTTP/1.0\n\n")


if __name__ == "__main__":
    main()
