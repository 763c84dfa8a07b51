"""Hostile and careless clients: escapes from the root, oversized heads, garbage, slow and
vanishing clients. The server must refuse, stay up and keep serving others."""
import os
import re
import shutil
import signal
import socket

from harness import (PASSWD, Background, CheckFailed, Conn, check, curl, expect, fetch, metrics,
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


# ---------------------------------------------------------------------------------------------
# Strict framing, HEAD, one decoded path, long names, the log, dot-files (docs/daemon.md,
# "Hostile input")

def _heads_then(ctx, data, n_heads):
    """Splits the bytes a connection delivered into n_heads response heads (through their blank
    line) and what follows; a head that does not start with a status line fails the check."""
    heads = []
    rest = data
    for i in range(n_heads):
        expect(rest.startswith(b"HTTP/1.1 "), f"response {i + 1} does not start with a status line: {rest[:60]!r} "
                                              f"(a body byte of the answer before it?)")
        end = rest.find(b"\r\n\r\n")
        expect(end >= 0, f"response {i + 1}: no end of head in {rest[:200]!r}")
        heads.append(rest[:end + 4].decode("latin-1"))
        rest = rest[end + 4:]
    return heads, rest


def _header_of(head, name):
    m = re.search(rf"(?im)^{name}:\s*(.*?)\s*$", head)
    return m.group(1) if m else None


@check("hostile/head-never-has-a-body")
def _(ctx):
    # HEAD of a missing file (404), of a folder with listing off (403), of a symlink out of the
    # root (403; nginx follows it), of the control API (JSON, or 404/405 where it is not served),
    # then a GET, all on one keep-alive connection: the stream must hold exactly the heads, then
    # the GET's answer.
    heads = ["/no-such-file.bin", "/sub/", "/_datapump/api/status", "/sub/missing/"]
    if ctx.is_daemon:
        heads.append("/escape")
    data = b"".join(request("HEAD", t) for t in heads)
    data += request("GET", "/sub/inner.txt", {"Connection": "close"})
    with Conn(ctx.server.port) as c:
        c.send(data)
        stream = c.read_to_eof()
    got, rest = _heads_then(ctx, stream, len(heads) + 1)
    for target, head in zip(heads, got):
        status = int(head.split(" ", 2)[1])
        expect(status != 200 or target.startswith("/_datapump"), f"HEAD {target}: {head.splitlines()[0]}")
        length = _header_of(head, "content-length")
        expect(length is not None and int(length) > 0 or status in (204, 304),
               f"HEAD {target}: Content-Length {length!r}: want what a GET would get (a body's length)")
    want = ctx.fx.data("/sub/inner.txt")
    expect(got[-1].startswith("HTTP/1.1 200"), f"GET after the HEADs: {got[-1].splitlines()[0]}")
    expect(rest == want, f"after the GET's head: {rest[:120]!r} ({len(rest)} bytes), want exactly the file "
                         f"({len(want)} bytes): a HEAD answer carried a body")


# Each is refused with 400 (501: a coding before chunked, RFC 9112 §6.1) and the connection closed.
_BAD_FRAMING = [
    ("obs-fold", b"GET /sub/inner.txt HTTP/1.1\r\nHost: a\r\nX-A: 1\r\n folded\r\n\r\n", 400),
    ("obs-fold-content-length",
     b"POST /x HTTP/1.1\r\nHost: a\r\nContent-Length:\r\n 5\r\n\r\nhello", 400),
    ("obs-fold-transfer-encoding",
     b"POST /x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding:\r\n\tchunked\r\n\r\n0\r\n\r\n", 400),
    ("bare-lf", b"GET /sub/inner.txt HTTP/1.1\nHost: a\n\n", 400),
    ("bare-lf-one-line", b"GET /sub/inner.txt HTTP/1.1\r\nHost: a\nX-A: 1\r\n\r\n", 400),
    ("te-chunked-twice",
     b"POST /x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, chunked\r\n\r\n0\r\n\r\n", 400),
    ("te-chunked-two-fields",
     b"POST /x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400),
    ("te-chunked-not-last",
     b"POST /x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n", 400),
    ("te-gzip-then-chunked",
     b"POST /x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n", 501),
    ("te-in-http10", b"POST /x HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400),
    ("content-length-and-te",
     b"POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400),
    ("content-length-differs",
     b"POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!", 400),
    ("content-length-list", b"POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 5, 6\r\n\r\nhello!", 400),
    ("content-length-invalid", b"POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 5x\r\n\r\nhello", 400),
    ("content-length-negative", b"POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: -1\r\n\r\nhello", 400),
    ("no-host", b"GET /sub/inner.txt HTTP/1.1\r\nX-A: 1\r\n\r\n", 400),
    ("two-hosts", b"GET /sub/inner.txt HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400),
    ("space-before-colon", b"GET /sub/inner.txt HTTP/1.1\r\nHost : a\r\n\r\n", 400),
]


def _refused_and_closed(ctx, data, status):
    with Conn(ctx.server.port) as c:
        c.send(data)
        r = c.read_response()
        expect(r.status == status, f"{data[:70]!r}: {r.brief()}, want {status}")
        expect(c.closed_by_peer(5), f"{data[:70]!r}: the connection stays open after the {status}; it must close")


_NGINX_FRAMING = "skip: datapumpd's RFC 9112 strictness (nginx takes bare LF, skips folded lines, 501s unknown codings)"
for _name, _data, _status in _BAD_FRAMING:
    check(f"hostile/framing-{_name}", nginx=_NGINX_FRAMING)(
        lambda ctx, d=_data, s=_status: _refused_and_closed(ctx, d, s))


@check("hostile/reserved-names-through-encodings", nginx="skip: /metrics and /_datapump are datapumpd's")
def _(ctx):
    root = ctx.tmp / f"reserved-{ctx.factory.name.replace('/', '-')}"
    shutil.rmtree(root, ignore_errors=True)
    (root / "_datapump").mkdir(parents=True)
    os.chmod(root, 0o755)
    shadow = b"a file named like the endpoint\n"
    (root / "_datapump" / "secret.txt").write_bytes(shadow)
    server = ctx.extra_server(["--writable"], root=root)
    for target in ["/%6detrics", "/%6D%65trics", "//metrics", "/./metrics", "/%5Fdatapump/x", "/%5f%64atapump/x",
                   "/_datapump/x", "//_datapump/x"]:
        with Conn(server.port) as c:
            c.send(request("PUT", target, {"Content-Length": "5", "Connection": "close"}) + b"hello")
            r = c.read_response()
        expect(r.status not in (200, 201, 204), f"PUT {target}: {r.brief()}: a reserved name must not be creatable")
    expect(not (root / "metrics").exists(), "PUT /%6detrics created a file named 'metrics'")
    expect(not (root / "_datapump" / "x").exists(), "PUT /%5Fdatapump/x created _datapump/x")
    # Files of those names put there by hand are never what the reserved names answer.
    (root / "metrics").write_bytes(shadow)
    for target in ["/%6detrics", "/metrics", "/%5f%64atapump/secret.txt", "/%5Fdatapump/secret.txt",
                   "//_datapump//secret.txt"]:
        r = fetch(server, "GET", target)
        expect(shadow not in r.body, f"GET {target}: {r.brief()}: served the file, not the endpoint or a refusal")
    for target in ["/%6detrics", "/%5Fdatapump/secret.txt"]:
        r = fetch(server, "DELETE", target)
        expect(r.status not in (200, 204), f"DELETE {target}: {r.brief()}: a reserved name must not be deletable")
    expect((root / "metrics").exists() and (root / "_datapump" / "secret.txt").exists(),
           "DELETE through an encoding removed a file named like an endpoint")


@check("hostile/over-long-names-414-or-404")
def _(ctx):
    targets = ["/" + "n" * 256, "/sub/" + "n" * 300 + "/x", "/" + "%6E" * 256, "/" + "/".join(["d" * 200] * 25)]
    for target in targets:
        for method in ("GET", "HEAD", "DELETE"):
            r = fetch(ctx.server, method, target)
            expect(r.status in (414, 404, 405), f"{method} /{target[1:20]}... ({len(target)} bytes): {r.brief()}, "
                                                f"want 414 or 404 (405 for DELETE when not writable)")
    if not ctx.is_daemon:
        return
    root = ctx.tmp / f"long-{ctx.factory.name.replace('/', '-')}"
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    os.chmod(root, 0o755)
    server = ctx.extra_server(["--writable"], root=root)
    # 255 bytes is the longest legal name: stored (or 414 if its temp name could not be), never 500.
    for target, ok in [("/" + "n" * 256, (414,)), ("/" + "n" * 255, (201, 414)),
                       ("/" + "/".join(["d" * 200] * 25), (414,))]:
        with Conn(server.port) as c:
            c.send(request("PUT", target, {"Content-Length": "5", "Connection": "close"}) + b"hello")
            r = c.read_response()
        expect(r.status in ok, f"PUT /{target[1:20]}... ({len(target)} bytes): {r.brief()}, want {ok}")
        r = fetch(server, "DELETE", target)
        expect(r.status in (414, 404, 204), f"DELETE /{target[1:20]}... ({len(target)} bytes): {r.brief()}, want 414/404")


@check("hostile/log-escapes-request-bytes", nginx="skip: reads datapumpd's log")
def _(ctx):
    server = ctx.extra_server()
    # Raw form feed and high bytes (http-parser takes both in a target), escapes of ESC and a
    # quote, a lone continuation byte and valid UTF-8.
    target = b"/logmark\x0cff%0c%1b\xff\xfe\x80\"q\\b/w\xc3\xb6rld"
    with Conn(server.port) as c:
        c.send(b"GET " + target + b" HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
        r = c.read_response()
    expect(r.status in (400, 404), f"GET of an odd path: {r.brief()}")
    want = "/logmark\\x0Cff%0c%1b\\xFF\\xFE\\x80\\x22q\\x5Cb/w\u00f6rld"

    def logged():
        text = server.log.read_bytes().decode("utf-8", errors="replace")
        return want in text
    expect(wait_until(logged, 5), f"the access line of {target!r} does not hold {want!r}; log:\n{server.log_tail(600)}")
    raw = server.log.read_bytes()
    controls = sorted({b for b in raw if b < 0x20 and b != 0x0A} | ({0x7F} if 0x7F in raw else set()))
    expect(not controls, f"the daemon log holds raw control bytes {[hex(b) for b in controls]}")
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise CheckFailed(f"the daemon log is not valid UTF-8 (a raw request byte): {e}") from None


@check("hostile/dot-files-refused", nginx="skip: nginx serves dot-files unless told not to")
def _(ctx):
    root = ctx.tmp / f"dot-{ctx.factory.name.replace('/', '-')}"
    shutil.rmtree(root, ignore_errors=True)
    for d in [".git", "a", ".well-known/acme-challenge"]:
        (root / d).mkdir(parents=True)
    os.chmod(root, 0o755)
    files = {".git/config": b"[core]\n", "a/.env": b"SECRET=1\n", ".htpasswd": b"u:x\n", "a/visible.txt": b"v\n",
             ".well-known/acme-challenge/tok": b"challenge\n", ".well-known/security.txt": b"Contact: x\n"}
    for rel, data in files.items():
        (root / rel).write_bytes(data)
    server = ctx.extra_server(["--writable", "--directory-listing"], root=root)
    for target in ["/.git/config", "/a/.env", "/.htpasswd", "/%2egit/config", "/a/%2Eenv", "/a/./.env", "/.git/",
                   "/.well-known/../.git/config"]:
        for method in ("GET", "HEAD"):
            r = fetch(server, method, target)
            expect(r.status in (404, 403), f"{method} {target}: {r.brief()}, want 404 (dot-files are not served)")
            expect(b"SECRET" not in r.body and b"[core]" not in r.body, f"{method} {target}: the body is the file")
    for rel in ["a/visible.txt", ".well-known/acme-challenge/tok", ".well-known/security.txt"]:
        r = fetch(server, "GET", "/" + rel)
        expect(r.status == 200 and r.body == files[rel], f"GET /{rel}: {r.brief()}, want 200 and the file")
    for target in ["/", "/a/"]:
        r = fetch(server, "GET", target)
        expect(r.status == 200, f"GET {target} (--directory-listing): {r.brief()}")
        for name in [b".git", b".env", b".htpasswd", b".well-known"]:
            expect(name not in r.body, f"GET {target}: the listing shows {name.decode()}")
    expect(b"visible.txt" in fetch(server, "GET", "/a/").body, "GET /a/: the listing lacks visible.txt")
    for target in ["/.env", "/a/.env", "/.git/hooks-x", "/%2eenv"]:
        with Conn(server.port) as c:
            c.send(request("PUT", target, {"Content-Length": "5", "Connection": "close"}) + b"owned")
            r = c.read_response()
        expect(r.status == 403, f"PUT {target}: {r.brief()}, want 403")
    expect(files["a/.env"] == (root / "a/.env").read_bytes() and not (root / ".env").exists(),
           "a refused PUT of a dot-file changed the disk")
    for target in ["/.git/config", "/a/.env"]:
        r = fetch(server, "DELETE", target)
        expect(r.status == 404, f"DELETE {target}: {r.brief()}, want 404")
        expect((root / target[1:]).exists(), f"DELETE {target} removed the file")
    server.stop(signal.SIGKILL)

    served = ctx.extra_server(["--serve-dotfiles", "--directory-listing"], root=root)
    r = fetch(served, "GET", "/.git/config")
    expect(r.status == 200 and r.body == files[".git/config"], f"--serve-dotfiles: GET /.git/config: {r.brief()}")
    expect(b".env" in fetch(served, "GET", "/a/").body, "--serve-dotfiles: the listing of /a/ lacks .env")
