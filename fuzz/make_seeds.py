#!/usr/bin/env python3
"""Regenerates the small seed inputs in fuzz/seeds/ from binaries the tests build.

Usage: fuzz/make_seeds.py HOSTILE_GO GO_BINARY [OLD_GO_BINARY...]
  HOSTILE_GO     tests/programs/hostile_go.c built as the tests build it (-O0 -g -no-pie)
  GO_BINARY      a real Go 1.26 binary (e.g. target/go-fixtures/1.26.6/normal)
  OLD_GO_BINARY  unstripped non-PIE binaries of older Go (1.17, 1.19, ...): their
                 runtime.allgadd code becomes allgadd/go1.NN

The Go 1.16-1.17 pclntab and the pre-1.18 pointer-format build info are made here
(pclntab/go1.17-synthetic, buildinfo/go1.17-pointers): small, and laid out as those
toolchains lay them out.

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


def go_version(path):
    """go1.NN of a Go binary, from `go version`'s answer-less way: its build info."""
    out = subprocess.run(["strings", "-n", "6", path], check=True, capture_output=True,
                         text=True).stdout
    for word in out.split():
        if word.startswith("go1.") and word[4:].split(".")[0].isdigit():
            return "go1." + word[4:].split(".")[0]
    raise SystemExit(f"no Go version in {path}")


def pclntab_go116():
    """A Go 1.16-1.17 pclntab (magic 0xfffffffa): two functions at 0x401000 and
    0x401010, pointer-sized functab pairs with absolute entries, `_func` records that
    start with `entry uintptr`, and main.b's inline tree as an absolute funcdata
    pointer (0x400008: the fuzz target hands the table itself over as go:func.* at
    0x400000, so the pointer lands inside the fuzzer's bytes)."""
    t = bytearray(64)
    struct.pack_into("<IBBBB", t, 0, 0xFFFFFFFA, 0, 0, 1, 8)
    struct.pack_into("<QQ", t, 8, 2, 1)  # nfunc, nfiles
    funcnametab = len(t)
    t += b"main.a\0main.b\0main.inl\0"
    cutab = len(t)
    t += struct.pack("<I", 0)
    filetab = len(t)
    t += b"/src/x.go\0"
    pctab = len(t)
    t += b"\0"
    file_tab = len(t) - pctab
    t += bytes([2, 0x20, 0])
    line_tab = len(t) - pctab
    t += bytes([22, 4, 20, 4, 17, 8, 0])
    inl_tab = len(t) - pctab
    t += bytes([0, 4, 2, 4, 1, 8, 0])
    t += bytes(-len(t) % 8)
    functab = len(t)
    a_off = 2 * 16 + 8
    b_off = a_off + 48
    t += struct.pack("<QQQQQ", 0x401000, a_off, 0x401010, b_off, 0x401020)
    for entry, name, inl in [(0x401000, 0, False), (0x401010, 7, True)]:
        f = bytearray(44)
        struct.pack_into("<Qi", f, 0, entry, name)
        struct.pack_into("<III", f, 24, file_tab, line_tab, 3 if inl else 0)
        f[43] = 4 if inl else 0
        t += f
        if inl:
            t += struct.pack("<III", 0, 0, inl_tab)
            t += struct.pack("<QQQQ", 0, 0, 0, 0x400000 + len(t) + 32)
        else:
            t += bytes(4)
    # main.b's inline tree right after: one 20-byte entry naming main.inl.
    t += struct.pack("<hBBiiii", -1, 0, 0, 0, 20, 14, 9)
    struct.pack_into("<QQQQQ", t, 24, funcnametab, cutab, filetab, pctab, functab)
    return bytes(t)


def buildinfo_pointers():
    """A pre-1.18 build-info blob (pointer format) at 0x1000 as the fuzz target maps
    it: its two pointers lead to Go string headers further on, which lead to the
    version and module strings."""
    version, modinfo = b"go1.17.13", b"0" * 16 + b"path\tx\nmod\tx\t(devel)\t\n" + b"1" * 16
    blob = bytearray(b"\xff Go buildinf:" + bytes([8, 0]))
    headers = 0x1000 + 32
    strings = headers + 32
    blob += struct.pack("<QQ", headers, headers + 16)
    blob += struct.pack("<QQQQ", strings, len(version), strings + len(version), len(modinfo))
    return bytes(blob) + version + modinfo


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


def label_images():
    """Fake memories for the labels target (mapped at HEAP): a Go 1.24+ label slice of
    two labels and a Go 1.17-1.23 label map of the same two; the first byte picks the
    representation (0: slice, 1: map)."""
    heap = 0x7f00_0000_0000
    labels = [(b"route", b"/checkout"), (b"tenant", b"acme")]

    def strings(at):
        blob, headers = b"", []
        for k, v in labels:
            headers.append(((at + len(blob), len(k)), (at + len(blob) + len(k), len(v))))
            blob += k + v
        return blob, headers

    blob, headers = strings(heap + 96)
    words = [heap + 32, 2, 2, 0]
    for (kp, kl), (vp, vl) in headers:
        words += [kp, kl, vp, vl]
    slice_image = bytes([0]) + struct.pack("<12Q", *words) + blob
    # The map variable at HEAP points to its hmap at HEAP+8, whose one bucket is at
    # HEAP+64 (8 top hashes, 8 keys, 8 values, overflow), strings after it.
    blob, headers = strings(heap + 64 + 272)
    hmap = struct.pack("<QBBHIQQQQ", 2, 0, 0, 0, 7, heap + 64, 0, 0, 0)
    tophash = bytes([9, 9, 0, 0, 0, 0, 0, 0])
    keys = b"".join(struct.pack("<QQ", *k) for k, _ in headers).ljust(128, b"\0")
    values = b"".join(struct.pack("<QQ", *v) for _, v in headers).ljust(128, b"\0")
    bucket = tophash + keys + values + struct.pack("<Q", 0)
    map_image = bytes([1]) + struct.pack("<Q", heap + 8) + hmap + b"\0" * 8 + bucket + blob
    return [("slice", slice_image), ("map", map_image)]


def main():
    hostile, go, old_gos = sys.argv[1], sys.argv[2], sys.argv[3:]
    hostile_bytes = open(hostile, "rb").read()
    write("go_binary", "hostile_go", hostile_bytes)
    write("layout_dwarf", "hostile_go", hostile_bytes)
    write("pclntab", "hostile_go", section(hostile, ".gopclntab"))
    write("buildinfo", "hostile_go", section(hostile, ".go.buildinfo"))
    write("buildinfo", "go1.26", section(go, ".go.buildinfo")[:4096])
    addr, size, off = symbol(go, "runtime.allgadd")
    write("allgadd", "go1.26", open(go, "rb").read()[off:off + size])
    for old in old_gos:
        addr, size, off = symbol(old, "runtime.allgadd")
        write("allgadd", go_version(old), open(old, "rb").read()[off:off + size])
    write("pclntab", "go1.17-synthetic", pclntab_go116())
    write("buildinfo", "go1.17-pointers", buildinfo_pointers())
    for name, image in goroutine_images().items():
        write("goroutines", name, image)
    for name, image in label_images():
        write("labels", name, image)
    # [elf len][ip, sp offset, bp][elf][stack]: a frame-pointer chain in hostile_go.
    ip = 0x4011C0 + 4
    stack = struct.pack("<QQQQ", 0x7FFD_0000_0000 + 16, 0x4011C0 + 0x20, 0, 0)
    regs = struct.pack("<QQQ", ip, 0, 0x7FFD_0000_0000)
    write("eh_frame_unwind", "hostile_go",
          struct.pack("<I", len(hostile_bytes)) + regs + hostile_bytes + stack)
    write("proc_maps", "maps", open("/proc/self/maps", "rb").read()[:4096] +
          b"7f00000000-7f00001000 r-xp 00000000 08:01 12 /tmp/a b (deleted)\n"
          b"7f00001000-7f00002000 r-xp 00001000 08:01 13 /tmp/\xff\n")
    pod = "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod6f1c1f3e_2a4b_4c5d_9e8f_0a1b2c3d4e5f.slice"
    cid = "0123456789abcdef" * 4
    write("cgroup", "v2_systemd_containerd", f"0::{pod}/cri-containerd-{cid}.scope\n".encode())
    write("cgroup", "hybrid_v1_cgroupfs",
          (f"9:name=systemd:/\n8:pids:/kubepods/besteffort/pod6f1c1f3e-2a4b-4c5d-9e8f-0a1b2c3d4e5f/{cid}\n"
           f"4:memory:/system.slice/x.service\n1:cpu,cpuacct:/kubepods/besteffort/pod6f1c1f3e-2a4b-4c5d-9e8f-0a1b2c3d4e5f/crio-{cid}\n0::/\n").encode())
    write("cgroup", "kubelet_log_names",
          (f"shop_checkout-7d9f8b6c4-x2x9z_6f1c1f3e-2a4b-4c5d-9e8f-0a1b2c3d4e5f\n"
           f"checkout-7d9f8b6c4-x2x9z_shop_api-{cid}.log\n").encode())
    write("http_head", "metrics", b"GET /metrics HTTP/1.1\r\nHost: localhost\r\n\r\n")
    write("http_head", "healthz", b"GET /healthz HTTP/1.0\n\n")
    write(
        "http_head",
        "authorization",
        b"GET /metrics HTTP/1.1\r\nHost: x\r\nAuthorization: Basic cHJvbWV0aGV1czpwdw==\r\n\r\n",
    )


if __name__ == "__main__":
    main()
