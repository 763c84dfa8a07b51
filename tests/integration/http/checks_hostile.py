"""Hostile and careless clients: escapes from the root, oversized heads, garbage, slow and
vanishing clients. The server must refuse, stay up and keep serving others."""
import signal
import socket

from harness import (PASSWD, Background, CheckFailed, Conn, check, curl, expect, metrics,
                     request, wait_until)


def _refused(ctx, target):
    out = ctx.tmp / "hostile.out"
    out.unlink(missing_ok=True)
    r = curl(["--path-as-is", "-o", str(out), "-w", "%{http_code}", ctx.server.base + target])
    code = r.stdout.decode()
    body = out.read_bytes() if out.exists() else b""
    expect(code != "200", f"GET {target}: 200; it must be refused (403/404/400)")
    expect(PASSWD not in body and b"root:x:0:0" not in body, f"GET {target}: the body holds /etc/passwd")


for _name, _target in [("dotdot", "/../etc/passwd"), ("dotdot-deep", "/sub/../../../../etc/passwd"),
                       ("encoded-dotdot", "/%2e%2e/etc/passwd"), ("encoded-dotdot-upper", "/%2E%2E/%2E%2E/etc/passwd"),
                       ("encoded-slash", "/sub/..%2f..%2fetc/passwd"), ("nul-byte", "/data.bin%00.txt")]:
    check(f"hostile/path-{_name}")(lambda ctx, t=_target: _refused(ctx, t))


@check("hostile/symlink-out-of-root", nginx="xfail: nginx follows symlinks unless disable_symlinks is set")
def _(ctx):
    _refused(ctx, "/escape")


def _raw_status(ctx, data):
    with Conn(ctx.server.port) as c:
        c.send(data)
        return c.read_response()


@check("hostile/header-20KiB-431", nginx="xfail: nginx answers 400 (its internal 494) to a too-large header")
def _(ctx):
    r = _raw_status(ctx, request("GET", "/sub/inner.txt", {"X-Filler": "a" * 20480}))
    expect(r.status == 431, f"a 20 KiB header: {r.brief()}, want 431")


@check("hostile/request-line-10KiB-414")
def _(ctx):
    r = _raw_status(ctx, request("GET", "/" + "a" * 10240))
    expect(r.status == 414, f"a 10 KiB request line: {r.brief()}, want 414")


# Fixed bytes: a TLS ClientHello prefix, then binary noise and a line end.
GARBAGE = bytes.fromhex("160301020001000001fc0303") + bytes(range(256)) + b"\r\n\r\n"


@check("hostile/garbage-400-and-close")
def _(ctx):
    with Conn(ctx.server.port) as c:
        c.send(GARBAGE)
        r = c.read_response()
        expect(r.status == 400, f"garbage bytes: {r.brief()}, want 400")
        expect(c.closed_by_peer(5), "garbage bytes: the connection stays open after the 400; it must be closed")


@check("hostile/slow-header-does-not-block")
def _(ctx):
    # More silent clients than loops, so every loop holds some: none of them may stall a loop.
    slow = [socket.create_connection(("127.0.0.1", ctx.server.port), timeout=5) for _ in range(8)]
    try:
        for s in slow:
            s.sendall(b"GET / HTTP/1.1\r\n")
        out = ctx.tmp / "slow.out"
        for _ in range(4):
            r = curl(["--max-time", "5", "-o", str(out), ctx.server.url("/data.bin")], timeout=10)
            expect(r.returncode == 0 and out.read_bytes() == ctx.fx.data("/data.bin"),
                   f"a normal GET while 8 clients hold half a head: curl exit {r.returncode} "
                   f"({r.stderr.decode().strip()}) within 5 s")
    finally:
        for s in slow:
            s.close()


@check("hostile/vanishing-clients")
def _(ctx):
    downloads = [Background(ctx, ctx.server, "/big.bin", "rate=1M", f"vanish{i}") for i in range(20)]
    for d in downloads:
        status, _ = d.status_and_id()
        expect(status == 200, f"paced GET /big.bin?rate=1M: {status}")
    if not wait_until(lambda: all(d.received() > 0 for d in downloads), 5):
        stalled = sum(d.received() == 0 for d in downloads)
        raise CheckFailed(f"{stalled} of 20 paced streams (?rate=1M) got their 200 head but no body byte in 5 s")
    for d in downloads:
        d.proc.send_signal(signal.SIGKILL)
    for d in downloads:
        d.proc.wait(5)
    out = ctx.tmp / "after.out"
    r = curl(["-o", str(out), ctx.server.url("/data.bin")])
    expect(r.returncode == 0 and out.read_bytes() == ctx.fx.data("/data.bin"),
           f"after 20 clients vanished mid-stream the server no longer serves: curl exit {r.returncode}")
    if not ctx.is_daemon:
        return
    want = {"datapump_cache_loans_outstanding": 0, "datapump_active_streams": 0}
    last = {}

    def settled():
        last.update(metrics(ctx.server))
        return all(last.get(k) == v for k, v in want.items())
    expect(wait_until(settled, 5, 0.2),
           "5 s after 20 clients vanished: " + ", ".join(f"{k} {last.get(k, 'missing')}" for k in want) +
           " (want 0: their streams and cache loans must be released)")


@check("hostile/header-timeout-408", nginx="skip: nginx closes silently on client_header_timeout")
def _(ctx):
    server = ctx.extra_server(["--header-timeout-ms", "500"])
    with Conn(server.port) as c:
        c.send(b"GET /sub/inner.txt HTTP/1.1\r\n")
        c.sock.settimeout(5)
        r = c.read_response()
        expect(r.status == 408, f"half a head and silence (--header-timeout-ms 500): {r.brief()}, want 408")
        expect(c.closed_by_peer(5), "after the 408 the connection stays open")


@check("hostile/idle-keepalive-closed", nginx="skip: --idle-timeout-ms is datapumpd's flag")
def _(ctx):
    server = ctx.extra_server(["--idle-timeout-ms", "500"])
    with Conn(server.port) as c:
        c.send(request("GET", "/sub/inner.txt"))
        r = c.read_response()
        expect(r.status == 200, f"GET /sub/inner.txt: {r.brief()}")
        expect(c.closed_by_peer(5), "an idle keep-alive connection is still open 5 s after --idle-timeout-ms 500")
