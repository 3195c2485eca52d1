#!/usr/bin/env python3
"""Regenerates the seed inputs in fuzz/seeds/ (see README: the fuzz/ crate).

Usage: fuzz/make_seeds.py [HOSTILE_GO GO_BINARY [OLD_GO_BINARY...]]
  HOSTILE_GO     tests/programs/hostile_go.c built as the tests build it (-O0 -g -no-pie)
  GO_BINARY      a real Go 1.26 binary (e.g. target/go-fixtures/1.26.6/normal)
  OLD_GO_BINARY  unstripped non-PIE binaries of older Go (1.17, 1.19, ...): their
                 runtime.allgadd code becomes allgadd/go1.NN
Without binaries only the seeds that need none are written.

The Go 1.16-1.17 pclntab and the pre-1.18 pointer-format build info are made here
(pclntab/go1.17-synthetic, buildinfo/go1.17-pointers): small, and laid out as those
toolchains lay them out.

Seeds are small (KBs). Those named `grow-*` are growth programs (fuzz/src/lib.rs,
`grow`): a few bytes that the target expands to the sizes leakscope's bounds allow
(32 MiB of maps, 64 KiB names, 4M goroutines, ...), so the fuzzer starts at the limits
without a large file in the repository. Every input that once found a bug is added by
hand beside them (named for the bug) and never regenerated.
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


HEAP = 0x7F00_0000_0000
G_SIZE = 456


def g_structs(n, gs_off):
    """n parked `g`s (hostile_go's go1.26 layout) at HEAP + gs_off, then their stacks."""
    text = 0x4011C0  # hostile_text in hostile_go (its pclntab's text start)
    stacks_off = gs_off + n * G_SIZE
    heap = bytearray(n * G_SIZE + n * 64)
    for i in range(n):
        g = i * G_SIZE
        sp = HEAP + stacks_off + i * 64
        struct.pack_into("<QQ", heap, g, sp, sp + 64)  # stack lo, hi
        struct.pack_into("<QQ", heap, g + 56, sp, text + 0x41)  # sched sp, pc
        struct.pack_into("<Q", heap, g + 96, sp + 16)  # sched bp
        struct.pack_into("<I", heap, g + 144, 4)  # _Gwaiting
        struct.pack_into("<Q", heap, g + 152, i + 1)  # goid
        heap[g + 176] = 14  # chan receive
        struct.pack_into("<Q", heap, g + 288, text + 0x45)  # gopc
        struct.pack_into("<Q", heap, g + 304, text + 0x10)  # startpc
        st = n * G_SIZE + i * 64
        struct.pack_into("<QQQQ", heap, st, sp + 16, text + 0x42, sp + 32, text + 0x43)
    return bytes(heap)


def goroutine_images():
    """Fake memories for the goroutines target: 32 header bytes (allgs ptr, len, cap,
    allglen), then a heap at HEAP holding the g pointer table, g structs and stacks."""
    images = {}
    for name, n in [("one", 1), ("eight", 8)]:
        gs_off = 64
        table = b"".join(struct.pack("<Q", HEAP + gs_off + i * G_SIZE) for i in range(n))
        header = struct.pack("<QQQQ", HEAP, n, n, n)
        images[name] = header + table.ljust(gs_off, b"\0") + g_structs(n, gs_off)
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


def program(*ops):
    """A growth program (fuzz/src/lib.rs `grow`): (count, bytes) operations."""
    out = bytearray(b"GROW")
    for count, unit in ops:
        for at in range(0, max(len(unit), 1), 0xFFFF):
            chunk = unit[at:at + 0xFFFF]
            if count == 1:
                out += b"L"
            else:
                out += b"R" + struct.pack("<I", count)
            out += struct.pack("<H", len(chunk)) + chunk
    return bytes(out)


def one(data):
    return (1, data)


# The stat fields after "(comm) " of a thread asleep in a syscall (stat(5) fields 3-52).
STAT_REST = (b"S 1 4242 4242 0 -1 4194560 100 0 0 0 5 3 0 0 20 0 7 0 123456 1000 50 "
             b"18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0 0 0 0 0 0 0 0 0")
STATUS = (b"Name:\tworker\nState:\tS (sleeping)\nTgid:\t4242\nPid:\t4243\n"
          b"voluntary_ctxt_switches:\t17\nnonvoluntary_ctxt_switches:\t3\n")
SCHED = b"se.exec_start                                :       1917123.218812\nse.vruntime : 5.0\n"


def proc_threads_seeds():
    sep = b"\n##\n"
    futex = b"202 0x55d0c0de 0x80 0x2 0x0 0x0 0x0 0x7ffd1000 0x7f00beef\n"
    read = b"0 0x3 0x7ffd2000 0x1000 0x0 0x0 0x0 0x7ffd1000 0x7f00beef\n"
    write("proc_threads", "futex", sep.join([b"worker", STAT_REST, STATUS, futex, SCHED, b""]))
    write("proc_threads", "read-pipe",
          sep.join([b"we (ird) name", STAT_REST, STATUS, read, SCHED, b"pipe:[123]"]))
    write("proc_threads", "epoll-anon",
          sep.join([b"x", STAT_REST.replace(b"S ", b"D ", 1), STATUS,
                    b"232 0x5 0x7ffd2000 0x80 0xffffffff 0x0 0x0 0x7ffd1000 0x7f00beef\n",
                    b"", b"anon_inode:[eventpoll]"]))
    # Every file at the 64 KiB the source reads: status padded before its switch counts
    # (a process with thousands of supplementary groups), sched padded before its field.
    write("proc_threads", "grow-64k-files", program(
        one(b"worker" + sep + STAT_REST + b" 0" * 10 + sep + b"Name:\tworker\nGroups:\t"),
        (12000, b"65534 "),
        one(b"\nvoluntary_ctxt_switches:\t17\nnonvoluntary_ctxt_switches:\t3\n" + sep + futex + sep),
        (4000, b"se.sum_exec_runtime : 1.0\n"),
        one(SCHED + sep),
        (8000, b"/deep/path"),
    ))


def process_record(tgid=4242, threads=3, comm=b"worker"):
    """A ProcessRecord (tracer-common, 72 bytes) as the task iterator writes it."""
    return struct.pack("<IIIIQQQ16sIIQ", 2, 72, tgid, threads, 10**9, 7, 5 * 10**9,
                       comm, 64, 1000, 512)


def waiter_record(tid, nr, args=(0,) * 6, fd=-1, fd_kind=0, fd_detail=0, comm=b"worker"):
    """A ThreadWaiterRecord (tracer-common, 200 bytes): thread `tid` of 4242 asleep in
    syscall `nr`."""
    return struct.pack("<IIII12Q6QIIiIII16s", 1, 200, 4242, tid, 10**9, 2 * 10**9, 7, 17, 3,
                       3 * 10**9, 4 * 10**9, 5 * 10**9, 0x7F00BEEF, 0x7FFD1000, 0, nr, *args,
                       1, 0, fd, fd_kind, fd_detail, 0, comm)


# The kernel BTF's names the iterator looks for (bpf.rs KernelFeatures::from_btf).
BTF_NAMES = b"\0bpf_iter__task\0BPF_FUNC_get_current_task_btf\0BPF_FUNC_task_pt_regs\0"


def kernel_records_seeds():
    futex = waiter_record(4243, 202, (0x55D0C0DE, 0x80, 2, 0, 0, 0))
    pipe = waiter_record(4244, 0, (3, 0x7FFD2000, 4096, 0, 0, 0), fd=3, fd_kind=3)
    epoll = waiter_record(4245, 232, (5, 0x7FFD2000, 128, 2**32 - 1, 0, 0), fd=5, fd_kind=10)
    socket = waiter_record(4246, 45, (7, 0, 0, 0, 0, 0), fd=7, fd_kind=2, fd_detail=2 | 1 << 16)
    unknown = struct.pack("<II", 9, 12) + b"\xaa\xbb\xcc\xdd"
    write("kernel_records", "stream", process_record() + futex + pipe + epoll + socket +
          unknown + futex[:100] + BTF_NAMES)
    # A scan's worth at the 8 MiB bound: 40,000 blocked threads, then the BTF names.
    write("kernel_records", "grow-8mib-waiters", program(
        one(process_record(threads=40001)), (40000, futex), one(BTF_NAMES)))


def cgroupfs_seeds():
    """cgroup seeds with a 4th part, a hybrid host's mountinfo, and cgroup paths that
    try to climb out of their mount."""
    sep = b"\n##\n"
    mountinfo = (b"27 1 254:0 / / rw,relatime - ext4 /dev/vda rw\n"
                 b"31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755\n"
                 b"35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory\n"
                 b"39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids\n"
                 b"40 31 0:37 / /sys/fs/cgroup/systemd rw - cgroup cgroup rw,name=systemd\n"
                 b"41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw\n"
                 b"50 23 0:40 /kubepods /host\\040cgroup rw shared:9 - cgroup2 cgroup2 rw\n"
                 b"51 27 0:41 / /mnt/a\\134b\\012c rw - fuse.x x rw,user_id=1000\n")
    climbing = (b"9:name=systemd:/\n8:pids:/a/../../etc\n4:memory:/..\n"
                b"1:cpu:/x\n0::/user.slice/..\\x2e/.. /\n")
    write("cgroup", "climbing-with-mountinfo", sep.join([climbing, b"", b"", mountinfo]))


def go_frames_shape(nfunc=3, name_len=24, file_len=24, name_byte=ord("x"), steps=8, depth=3,
                    looping=False, distinct=False, picks=bytes(range(8))):
    """go_frames mode 0: a table shape (fuzz/src/gopclntab.rs Shape::from_bytes)."""
    b = struct.pack("<H", nfunc - 1)
    b += struct.pack("<I", name_len)[:3] + struct.pack("<I", file_len)[:3]
    b += bytes([name_byte]) + struct.pack("<I", steps)[:3] + bytes([depth])
    b += bytes([(1 if looping else 0) | (2 if distinct else 0), 0, 0])
    assert len(b) == 16
    return b"\x00" + b + picks


def go_frames_seeds(hostile=None):
    write("go_frames", "small", go_frames_shape())
    # At each bound: names of 64 KiB (and just under, and not UTF-8), line tables of
    # 65,536 steps, inline trees 64 deep and looping, 64-frame stacks.
    stack = bytes(range(64))
    write("go_frames", "names-at-64k", go_frames_shape(name_len=65535, file_len=65535,
                                                         name_byte=0xFF, picks=stack))
    write("go_frames", "names-past-64k", go_frames_shape(name_len=65537, file_len=65536,
                                                           picks=stack))
    write("go_frames", "deep-inlining", go_frames_shape(depth=70, picks=stack))
    write("go_frames", "looping-inlining", go_frames_shape(depth=64, looping=True, picks=stack))
    write("go_frames", "long-line-table", go_frames_shape(steps=65536, picks=stack))
    write("go_frames", "everything-at-once",
          go_frames_shape(nfunc=64, name_len=65535, file_len=65535, name_byte=0xFF, steps=65536,
                          depth=64, looping=True, distinct=True, picks=stack))
    if hostile:
        write("go_frames", "hostile_go", b"\x01" + struct.pack("<H", 64) +
              section(hostile, ".gopclntab"))


def render_seeds():
    pod = b"shop_checkout-7d9f8b6c4-x2x9z_6f1c1f3e-2a4b-4c5d-9e8f-0a1b2c3d4e5f"
    def parts(host=b"node-1", comm=b"worker", exe=b"/usr/bin/worker", cgroup=b"worker.service",
              fa=b"main.leak", la=b"/src/leak.go", ma=b"/usr/bin/worker", fb=b"pthread_mutex_lock",
              lb=b"./nptl/lock.c", mb=b"/lib/libc.so.6", wait=b"chan receive", poddir=pod,
              shape=bytes([3, 20, 0, 1])):
        return b"\0".join([host, comm, exe, cgroup, fa, la, ma, fb, lb, mb, wait, poddir, shape])
    write("render", "plain", parts())
    write("render", "escapes", parts(
        host=b"h\x1b[2J", comm=b"\x1b[31mx\nLEAK", exe=b"/tmp/evil\xe2\x80\xaegpj.exe",
        cgroup=b"a\tb;c", fa=b"</text><script>alert(1)</script>", la=b"a;b;c.go",
        ma=b"/x\x85y", fb=b"# comment", lb=b"\xff\xfe", mb=b" lead", wait=b"chan\x08receive",
        shape=bytes([1, 7, 1, 0])))
    # Names as long as leakscope reads them (64 KiB Go names and files, a 4 KiB path),
    # stacks of 128 frames.
    big = lambda unit, n: (n // len(unit), unit)
    write("render", "grow-long-names", program(
        one(b"node\0worker\0"), big(b"/dir", 4096), one(b"\0"), big(b"unit-", 65535),
        one(b"\0"), big(b"main.(*T).f", 65535), one(b"\0"), big(b"\xff", 65535), one(b"\0"),
        big(b"/lib", 4096), one(b"\0"), big(b"f\xe2\x80\xae", 65535), one(b"\0"),
        big(b"x.c/", 65535), one(b"\0/lib/libc.so.6\0"), big(b"w", 128),
        one(b"\0" + pod + b"\0" + bytes([0, 128, 0, 1])),
    ))


def pem(args, path):
    subprocess.run(args + ["-out", path], check=True, capture_output=True)
    return open(path, "rb").read()


def web_config_seeds(tmp):
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import crypt
    sep = b"\n#####\n"
    key = pem(["openssl", "ecparam", "-name", "prime256v1", "-genkey", "-noout"],
              os.path.join(tmp, "key.pem"))
    cert = pem(["openssl", "req", "-x509", "-key", os.path.join(tmp, "key.pem"), "-subj",
                "/CN=leakscope-fuzz", "-days", "36500"], os.path.join(tmp, "cert.pem"))
    # bcrypt at cost 4 (the cheapest: the target skips costs 7-12, which take long).
    hash4 = crypt.crypt("pw", crypt.mksalt(crypt.METHOD_BLOWFISH, rounds=16)).encode()
    tls = b"tls_server_config:\n  cert_file: cert.pem\n  key_file: key.pem\n"
    users = b"basic_auth_users:\n  prometheus: '" + hash4 + b"'\n"
    client = (b"  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: ca.pem\n"
              b"  min_version: TLS12\n  max_version: TLS13\n")
    write("web_config", "empty", b"{}\n")
    write("web_config", "users", users)
    write("web_config", "tls", sep.join([tls, cert, key, b""]))
    write("web_config", "tls-client-ca-users", sep.join([tls + client + users, cert, key, cert]))
    # Files at the 1 MiB the reader takes: a configuration of 20,000 users, a chain of
    # hundreds of certificates.
    write("web_config", "grow-1mib-files", program(
        one(b"basic_auth_users:\n"), (20000, b"  u" + b"x" * 10 + b": '" + hash4 + b"'\n"),
        one(sep), (1 << 20 // len(cert) + 1, cert), one(sep + key + sep), (2, cert)))


def grown_seeds(hostile=None):
    """Seeds of the existing targets that grow to their bounds."""
    # /proc/PID/maps: 32 MiB, as 65,530 mappings with long names, and as the most
    # mappings of the shortest lines that fit.
    line = b"7f0000001000-7f0000002000 r-xp 00001000 08:01 1234                       /"
    write("proc_maps", "grow-32mib-long-names", program((65530, line + b"d/" * 250 + b"x\n")))
    write("proc_maps", "grow-32mib-short-lines", program((2_000_000, b"0-1 r-xp 0 0:0 0\n")))
    # /proc/PID/cgroup at 64 KiB (a path of 255-byte components), beside listings of
    # 20,000 kubelet log entries of up to 255 bytes.
    uid = b"6f1c1f3e-2a4b-4c5d-9e8f-0a1b2c3d4e5f"
    cid = b"0123456789abcdef" * 4
    write("cgroup", "grow-limits", program(
        one(b"0::"), (256, b"/" + b"c" * 255),
        one(b"/kubepods/besteffort/pod" + uid + b"/" + cid + b"\n##\n"),
        (20000, b"ns_" + b"p" * 200 + b"_" + uid + b"\n"),
        one(b"##\n"), (20000, b"p" * 180 + b"_ns_c-" + cid + b".log\n")))
    # A request head of 8 KiB and past it, an Authorization header taking most of it.
    write("http_head", "grow-8k-head", program(
        one(b"\x07GET /metrics HTTP/1.1\r\n"), (400, b"X-Pad: " + b"p" * 13 + b"\r\n"),
        one(b"\r\n")))
    write("http_head", "grow-long-authorization", program(
        one(b"\x20GET / HTTP/1.1\r\nAuthorization: Basic "), (2000, b"QUJD"), one(b"\r\n\r\n")))
    # Build info of the pointer format whose strings are 1 MiB (the reader's limit) long.
    blob = bytearray(b"\xff Go buildinf:" + bytes([8, 0]))
    headers, strings = 0x1000 + 32, 0x1000 + 64
    blob += struct.pack("<QQ", headers, headers + 16)
    blob += struct.pack("<QQQQ", strings, 1 << 20, strings, (1 << 20) + 1)
    write("buildinfo", "grow-1mib-strings", program(one(bytes(blob)), ((1 << 20) // 4 + 1, b"go1.")))
    # The goroutine table at its 4M bound: allglen 4,000,000 pointers cycling over 64 gs
    # (32 MiB of pointers, then the gs and their stacks).
    n, distinct = 4_000_000, 64
    table = b"".join(struct.pack("<Q", HEAP + 8 * n + i * G_SIZE) for i in range(distinct))
    # 4M distinct gs a g apart, none of them mapped: every read fails, g by g.
    sequence = struct.pack("<QQI", HEAP + 8 * n, G_SIZE, n)
    write("goroutines", "grow-4m-unmapped", b"GROW" + b"L" + struct.pack("<H", 32) +
          struct.pack("<QQQQ", HEAP, n, n, n) + b"Q" + sequence + b"L" + struct.pack("<H", 8) +
          bytes(8))
    write("goroutines", "grow-4m-goroutines", program(
        one(struct.pack("<QQQQ", HEAP, n, n, n)), (n // distinct, table),
        one(g_structs(distinct, 8 * n))))
    if hostile:
        data = open(hostile, "rb").read()
        # An executable past the first MiB searched for build info, and a large file.
        write("elf_file", "grow-16mib", program(one(data), ((15 << 20) // 4096, bytes(4096))))


def main():
    import tempfile
    proc_threads_seeds()
    kernel_records_seeds()
    cgroupfs_seeds()
    render_seeds()
    for name, image in label_images():
        write("labels", name, image)
    with tempfile.TemporaryDirectory() as tmp:
        web_config_seeds(tmp)
    if len(sys.argv) < 3:
        go_frames_seeds()
        grown_seeds()
        return
    hostile, go, old_gos = sys.argv[1], sys.argv[2], sys.argv[3:]
    go_frames_seeds(hostile)
    grown_seeds(hostile)
    binary_seeds(hostile, go, old_gos)


def binary_seeds(hostile, go, old_gos):
    hostile_bytes = open(hostile, "rb").read()
    write("go_binary", "hostile_go", hostile_bytes)
    write("elf_file", "hostile_go", hostile_bytes)
    write("layout_dwarf", "hostile_go", hostile_bytes)
    write("pclntab", "hostile_go", section(hostile, ".gopclntab"))
    write("buildinfo", "hostile_go", section(hostile, ".go.buildinfo"))
    write("buildinfo", "go1.26", section(go, ".go.buildinfo")[:4096])
    addr, size, off = symbol(go, "runtime.allgadd")
    write("allgadd", "go1.26", open(go, "rb").read()[off:off + size])
    # The function at the decoder's 64 KiB limit: its code, then padding.
    write("allgadd", "grow-64k-function",
          program(one(open(go, "rb").read()[off:off + size]), ((64 << 10) - size + 1, b"\xcc")))
    for old in old_gos:
        addr, size, off = symbol(old, "runtime.allgadd")
        write("allgadd", go_version(old), open(old, "rb").read()[off:off + size])
    write("pclntab", "go1.17-synthetic", pclntab_go116())
    write("buildinfo", "go1.17-pointers", buildinfo_pointers())
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
    pod = "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod6f1c1f3e_2a4b_4c5d_9e8f_0a1b2c3d4e5f.slice"
    cid = "0123456789abcdef" * 4
    write("cgroup", "v2_systemd_containerd", f"0::{pod}/cri-containerd-{cid}.scope\n".encode())
    write("cgroup", "hybrid_v1_cgroupfs",
          (f"9:name=systemd:/\n8:pids:/kubepods/besteffort/pod6f1c1f3e-2a4b-4c5d-9e8f-0a1b2c3d4e5f/{cid}\n"
           f"4:memory:/system.slice/x.service\n1:cpu,cpuacct:/kubepods/besteffort/pod6f1c1f3e-2a4b-4c5d-9e8f-0a1b2c3d4e5f/crio-{cid}\n0::/\n").encode())
    write("cgroup", "kubelet_log_names",
          (f"shop_checkout-7d9f8b6c4-x2x9z_6f1c1f3e-2a4b-4c5d-9e8f-0a1b2c3d4e5f\n"
           f"checkout-7d9f8b6c4-x2x9z_shop_api-{cid}.log\n").encode())
    # The first byte is the size of the chunks the head is pushed in, less one.
    write("http_head", "metrics", b"\x07GET /metrics HTTP/1.1\r\nHost: localhost\r\n\r\n")
    write("http_head", "healthz", b"\x07GET /healthz HTTP/1.0\n\n")
    write(
        "http_head",
        "authorization",
        b"GET /metrics HTTP/1.1\r\nHost: x\r\nAuthorization: Basic cHJvbWV0aGV1czpwdw==\r\n\r\n",
    )


if __name__ == "__main__":
    main()
