"""Nothing a client holds forever (docs/daemon.md, "Limits and timeouts"): a client that never
reads is cut after the send timeout, and a stalled paced stream gives its capacity to others.
Each non-reader is a raw socket with a tiny receive buffer that never reads."""
import mmap
import socket

from harness import CheckFailed, check, expect, get, metrics, request, wait_until

BIG = "/big.bin"


def _non_reader(port, target):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # before connect: fixes the window scale
    s.connect(("127.0.0.1", port))
    s.sendall(request("GET", target))
    return s


@check("limits/send-timeout-cuts-a-non-reader", nginx="skip: the counter is datapumpd's")
def _(ctx):
    server = ctx.extra_server(["--send-timeout-ms", "1000"])
    s = _non_reader(server.port, BIG)
    try:
        expect(wait_until(lambda: metrics(server).get("datapump_send_timeouts_total") == 1, 10, 0.1),
               f"10 s after a client that reads nothing: datapump_send_timeouts_total "
               f"{metrics(server).get('datapump_send_timeouts_total', 'missing')}, want 1 (--send-timeout-ms 1000)")
        expect(wait_until(lambda: metrics(server).get("datapump_active_streams") == 0, 5, 0.1),
               "the non-reader's stream is still active after its send timeout")
    finally:
        s.close()
    r = get(server, BIG)
    expect(r.status == 200 and r.body == ctx.fx.files[BIG], f"a normal GET after the cut: {r.brief()}")


@check("limits/stalled-paced-stream-lends-its-capacity", nginx="skip: --capacity is datapumpd's")
def _(ctx):
    server = ctx.extra_server(["--capacity", "10M"])
    s = _non_reader(server.port, BIG + "?rate=10M")
    try:
        expect(wait_until(lambda: metrics(server).get("datapump_active_streams") == 1, 5, 0.05),
               "the non-reader's paced stream never started")
        got = {}

        def second_admitted():
            got["r"] = get(server, "/data.bin", query="rate=10M")
            return got["r"].status == 200

        # The stall release comes after 2 s without progress; allow for a loaded machine.
        expect(wait_until(second_admitted, 10, 0.2),
               f"under --capacity 10M a non-reader with ?rate=10M still locks others out: {got['r'].brief()}")
        expect(got["r"].body == ctx.fx.files["/data.bin"], "the admitted second stream's body differs from the file")
        m = metrics(server)
        expect(m.get("datapump_stall_releases_total", 0) >= 1,
               f"datapump_stall_releases_total {m.get('datapump_stall_releases_total', 'missing')}, want >= 1")
    finally:
        s.close()


def _anonymous_kib(pid):
    with open(f"/proc/{pid}/smaps_rollup") as f:
        for line in f:
            if line.startswith("Anonymous:"):
                return int(line.split()[1])
    raise CheckFailed(f"/proc/{pid}/smaps_rollup has no Anonymous line")


def _sanitized(pid):
    # GCC loads the sanitizer runtime as a shared library; clang links it into the executable.
    with open(f"/proc/{pid}/maps") as f:
        if any("libasan" in line or "libtsan" in line for line in f):
            return True
    with open(f"/proc/{pid}/exe", "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as image:
        return image.find(b"__asan_init") >= 0 or image.find(b"__tsan_init") >= 0


@check("limits/heap-returns-after-a-connection-flood", nginx="skip: the daemon's own memory")
def _(ctx):
    # 400 connections each holding most of a request head (the head buffer grows to it), then
    # gone: the heap they used goes back to the system within the daemon's trim interval (10 s),
    # instead of staying in glibc's per-thread arenas (the soak's +47 MiB; docs/benchmarks.md).
    server = ctx.extra_server(["--max-connections-per-ip", "0"])
    pid = server.proc.pid
    if _sanitized(pid):
        # A sanitizer's allocator keeps its own heap and never gives it to glibc's malloc_trim:
        # the figure means nothing there (this check runs on the plain builds).
        ctx.note("sanitizer build: its allocator is not glibc's, nothing to measure")
        return
    expect(get(server, "/data.bin").status == 200, "the warm-up GET failed")
    base = _anonymous_kib(pid)
    socks = []
    try:
        for _ in range(400):
            s = socket.create_connection(("127.0.0.1", server.port))
            s.sendall(b"GET /data.bin HTTP/1.1\r\nHost: t\r\nX-Pad: " + b"a" * 15000)
            socks.append(s)
        expect(wait_until(lambda: metrics(server).get("datapump_connections", 0) >= 400, 20, 0.1),
               f"the server holds {metrics(server).get('datapump_connections')} of the 400 connections")
        peak = _anonymous_kib(pid)
    finally:
        for s in socks:
            s.close()
    grown = peak - base
    expect(grown >= 4096, f"400 connections with 15 KB heads grew the heap by {grown} KiB only: the check "
                          f"cannot tell whether it comes back")
    expect(wait_until(lambda: _anonymous_kib(pid) <= base + grown // 4, 30, 0.5),
           f"the heap did not come back within 30 s of the connections closing: {base} KiB before, "
           f"{peak} KiB with them, {_anonymous_kib(pid)} KiB now")
    ctx.note(f"heap {base} KiB -> {peak} KiB with 400 connections -> {_anonymous_kib(pid)} KiB after")
