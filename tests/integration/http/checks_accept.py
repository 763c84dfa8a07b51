"""Accept back-off and per-address limits (docs/daemon.md, "Limits"): descriptor exhaustion
degrades instead of spinning, and one client address cannot take every connection, stream or rt tick."""
import os
import socket
import time

from harness import _start, check, expect, free_port, get, metric_samples, request, wait_until

PAGE = os.sysconf("SC_PAGE_SIZE")
TICKS = os.sysconf("SC_CLK_TCK")


def _cpu_seconds(pid):
    """utime + stime of the process, from /proc/PID/stat (fields 14 and 15)."""
    with open(f"/proc/{pid}/stat") as f:
        rest = f.read().rsplit(")", 1)[1].split()
    return (int(rest[11]) + int(rest[12])) / TICKS


def _limited_server(ctx, nofile, extra=()):
    """datapumpd under `prlimit --nofile=N:N` (soft and hard: it cannot raise it), killed with the check."""
    f = ctx.factory
    f.count += 1
    log = ctx.tmp / f"datapumpd-nofile{nofile}-{f.count}.log"
    def argv(port):
        admin_port = free_port()
        while admin_port == port:
            admin_port = free_port()
        return ["prlimit", f"--nofile={nofile}:{nofile}", "--", f.binary, "--root", str(ctx.fx.root),
                "--listen", f"127.0.0.1:{port}", "--admin-listen", f"127.0.0.1:{admin_port}",
                "--provider", f.provider, "--send-path", f.send_path, "--loops", "1", *extra], admin_port
    server = _start(argv, log, "datapumpd")
    ctx._servers.append(server)
    return server


def _client(port, source, timeout=5):
    """A TCP connection to 127.0.0.1:port from `source` (any 127.0.0.0/8 address is local on Linux)."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(timeout)
    s.bind((source, 0))
    s.connect(("127.0.0.1", port))
    return s


def _status_from(port, source, target, timeout=5):
    """The status of GET target from `source` (Connection: close), or None when closed unanswered."""
    with _client(port, source, timeout) as s:
        s.sendall(request("GET", target, {"Connection": "close"}))
        head = b""
        try:
            while b"\r\n\r\n" not in head:
                chunk = s.recv(65536)
                if not chunk:
                    break
                head += chunk
        except ConnectionResetError:
            pass
    if not head.startswith(b"HTTP/1."):
        return None, head
    return int(head.split(b" ", 2)[1]), head




@check("limits/fd-exhaustion-no-spin", nginx="skip: datapumpd's accept back-off and spare descriptor")
def _(ctx):
    # nofile=64 and 80 idle connections: accept() fails with EMFILE. Before the back-off the loop
    # re-armed at once: 100 % of a core and 490 MB of log in 12 s, and the waiting clients hung.
    server = _limited_server(ctx, 64)
    idle = []
    try:
        for _ in range(80):
            idle.append(_client(server.port, "127.0.0.1"))
        time.sleep(0.5)  # let the loop reach the limit
        cpu0, size0, t0 = _cpu_seconds(server.proc.pid), server.log.stat().st_size, time.monotonic()
        time.sleep(5)
        cpu1, size1, t1 = _cpu_seconds(server.proc.pid), server.log.stat().st_size, time.monotonic()
        per_second = (cpu1 - cpu0) / (t1 - t0)
        grown = size1 - size0
        ctx.note(f"{per_second:.3f} CPU-s/s and {grown} log bytes over {t1 - t0:.1f} s at the limit")
        expect(server.alive(), "datapumpd died at descriptor exhaustion")
        expect(per_second < 0.2, f"at descriptor exhaustion datapumpd used {per_second:.2f} CPU-s per second "
                                 f"(want < 0.2): the accept loop spins")
        expect(grown < 100_000, f"at descriptor exhaustion the log grew {grown} bytes in {t1 - t0:.1f} s "
                                f"(want < 100 KB): accept failures are logged one by one")
        # Connections past the limit were shed through the spare descriptor: some got a 503.
        answered = 0
        for s in idle:
            s.setblocking(False)
            try:
                if s.recv(64).startswith(b"HTTP/1.1 503"):
                    answered += 1
            except (BlockingIOError, ConnectionResetError):
                pass
        ctx.note(f"{answered} waiting clients answered 503 through the spare descriptor")
        expect(answered > 0, "no waiting client got a 503 through the spare descriptor; they hang")
    finally:
        for s in idle:
            s.close()
    expect(wait_until(lambda: get(server, "/sub/inner.txt").status == 200, 10, 0.2),
           "10 s after the idle connections closed, a GET still gets no 200")
    log_text = server.log.read_text(errors="replace")
    expect("RLIMIT_NOFILE" in log_text and "LimitNOFILE=" in log_text,
           "no start-up warning that the descriptor limit (64) is below what --max-connections needs")
    m = metric_samples(server)
    expect(m.get("datapump_accept_errors_total", 0) > 0 and m.get("datapump_accept_shed_total", 0) > 0,
           f"datapump_accept_errors_total {m.get('datapump_accept_errors_total')}, datapump_accept_shed_total "
           f"{m.get('datapump_accept_shed_total')}: want both > 0")


@check("limits/per-ip-connections", nginx="skip: --max-connections-per-ip is datapumpd's (nginx: limit_conn)")
def _(ctx):
    server = ctx.extra_server(["--max-connections-per-ip", "4"])
    held = [_client(server.port, "127.0.0.2") for _ in range(4)]
    try:
        # Each is accepted (the loop counts it) before the next test: a request answered proves it.
        for s in held:
            s.sendall(request("HEAD", "/sub/inner.txt"))
            expect(s.recv(65536).startswith(b"HTTP/1.1 200"), "a connection within the per-IP cap got no 200")
        status, head = _status_from(server.port, "127.0.0.2", "/sub/inner.txt")
        expect(status == 503, f"a 5th connection from 127.0.0.2 under --max-connections-per-ip 4: {status} "
                              f"{head[:120]!r}, want 503")
        status, head = _status_from(server.port, "127.0.0.3", "/sub/inner.txt")
        expect(status == 200, f"a connection from 127.0.0.3 while 127.0.0.2 is at its cap: {status}, want 200")
    finally:
        for s in held:
            s.close()
    expect(wait_until(lambda: _status_from(server.port, "127.0.0.2", "/sub/inner.txt")[0] == 200, 5, 0.1),
           "5 s after 127.0.0.2 closed its connections it is still refused: its count was not given back")
    refused = metric_samples(server).get('datapump_per_ip_refusals_total{limit="connections"}')
    expect(refused == 1, f"datapump_per_ip_refusals_total by connections: {refused}, want 1")


def _start_stream(port, source, query):
    """A GET of /big.bin?query from source that reads only the head (the body waits): (socket, status)."""
    s = _client(port, source)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.sendall(request("GET", "/big.bin?" + query))
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = s.recv(4096)
        expect(chunk, f"GET /big.bin?{query} from {source}: closed before the head")
        head += chunk
    return s, int(head.split(b" ", 2)[1]), head


@check("limits/per-ip-streams-and-rate", nginx="skip: --max-streams-per-ip and --max-rate-per-ip are datapumpd's")
def _(ctx):
    server = ctx.extra_server(["--max-streams-per-ip", "2", "--max-rate-per-ip", "3M"])
    held = []
    try:
        for _ in range(2):
            s, status, head = _start_stream(server.port, "127.0.0.2", "rate=500k")
            held.append(s)
            expect(status == 200, f"a stream within the per-IP cap: {head[:120]!r}, want 200")
        s, status, head = _start_stream(server.port, "127.0.0.2", "rate=500k")
        held.append(s)
        expect(status == 503 and b"Retry-After: 1" in head and b"too many streams" in head,
               f"a 3rd stream from 127.0.0.2 under --max-streams-per-ip 2: {head[:300]!r}, want 503 with "
               f"Retry-After and the reason")
        s, status, head = _start_stream(server.port, "127.0.0.3", "rate=2M")
        held.append(s)
        expect(status == 200, f"a stream from 127.0.0.3: {head[:120]!r}, want 200")
        s, status, head = _start_stream(server.port, "127.0.0.3", "rate=2M")
        held.append(s)
        expect(status == 503 and b"per address" in head,
               f"2M more from 127.0.0.3 (2M held, --max-rate-per-ip 3M): {head[:300]!r}, want 503")
        status, _ = _status_from(server.port, "127.0.0.4", "/sub/inner.txt")
        expect(status == 200, f"a GET from 127.0.0.4: {status}, want 200")
    finally:
        for s in held:
            s.close()
    m = metric_samples(server)
    expect(m.get('datapump_per_ip_refusals_total{limit="streams"}') == 1 and
           m.get('datapump_per_ip_refusals_total{limit="rate"}') == 1,
           "datapump_per_ip_refusals_total: want 1 refusal by streams and 1 by rate")


@check("limits/burst-1-cannot-lock-out", nginx="skip: rt pacing is datapumpd's")
def _(ctx):
    # 45 non-readers asking burst=1 ticked 1000 times a second each and filled the rt VP: every
    # later paced request got 503. With the minimum piece they tick at most 50 times a second.
    server = ctx.extra_server(["--default-rate", "1M", "--max-rate", "5M"])
    held = []
    try:
        for i in range(45):
            s, status, head = _start_stream(server.port, "127.0.0.2", "rate=5M&burst=1" if i % 2 else "burst=1")
            held.append(s)
            expect(status == 200, f"stream {i + 1} of 45 asking burst=1: {head[:200]!r}")
        status, head = _status_from(server.port, "127.0.0.3", "/sub/inner.txt")
        expect(status == 200, f"a paced GET from 127.0.0.3 beside 45 burst=1 streams: {status} {head[:300]!r}, "
                              f"want 200")
        status, head = _status_from(server.port, "127.0.0.3", "/big.bin?rate=5M&burst=1")
        expect(status == 200, f"a 5M burst=1 GET from 127.0.0.3 beside them: {status} {head[:300]!r}, want 200")
    finally:
        for s in held:
            s.close()
