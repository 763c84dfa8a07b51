"""The private control plane: the admin listener (/metrics, the status page, the control API), a
stream's own capability on the public listener, the admin token, cross-origin refusals, several
--listen addresses (docs/daemon.md, "Control plane"). Every check here is datapumpd's."""
import json
import os
import re
import secrets
import signal
import socket
import stat
import time

from harness import (MIB, Background, Conn, check, curl, expect, fetch, free_port, get, json_api, request,
                     stream_by_id, wait_until)

BIG = "/big.bin"
CAP = re.compile(r"/_datapump/streams/[0-9a-f]{32}")


def _head(conn, target):
    """Sends GET target on conn (keep-alive) and reads the response head."""
    conn.send(request("GET", target))
    r = conn.read_response(head_only=True)
    expect(r.status == 200, f"GET {target}: {r.brief()}")
    return r


def _post(endpoint, target, headers=(), host=None):
    """POST target (Host: 127.0.0.1, or `host`); (response, decoded JSON or None)."""
    hdrs = [("Content-Length", "0"), *headers]
    if host is None:
        r = fetch(endpoint, "POST", target, hdrs)
    else:
        with Conn(endpoint.port) as c:
            c.send(request("POST", target, hdrs + [("Connection", "close")], host=host))
            r = c.read_response()
    try:
        doc = json.loads(r.body.decode())
    except (ValueError, UnicodeDecodeError):
        doc = None
    return r, doc


def _state(ctx, sid):
    s = stream_by_id(ctx.server, sid)
    return s and s.get("state")


def _drain_until_quiet(conn, quiet=0.5, limit=10):
    """Reads what the server still sends until nothing comes for `quiet` s; returns the bytes."""
    got = bytearray(conn.buf)
    conn.buf.clear()
    conn.sock.settimeout(quiet)
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        try:
            chunk = conn.sock.recv(1 << 20)
        except (socket.timeout, TimeoutError):
            return bytes(got)
        expect(chunk, "the server closed a paused stream")
        got += chunk
    raise AssertionError(f"a paused stream still sent bytes after {limit} s")


def _read_exactly(conn, n, timeout=30):
    conn.sock.settimeout(timeout)
    got = bytearray(conn.buf)
    conn.buf.clear()
    while len(got) < n:
        chunk = conn.sock.recv(1 << 20)
        expect(chunk, f"the connection closed after {len(got)} of {n} bytes")
        got += chunk
    conn.buf += got[n:]
    return bytes(got[:n])


@check("control/public-listener-hides-the-control-plane", nginx="skip: the control plane is datapumpd's")
def _(ctx):
    # A victim's paced stream runs; an anonymous client on the public port can neither list it nor
    # act on it, by its sequential id or by a guessed capability.
    victim = Background(ctx, ctx.server, BIG, "rate=500k", "victim")
    status, sid = victim.status_and_id()
    expect(status == 200 and sid, f"victim's paced GET: {status}, X-Datapump-Stream {sid!r}")
    for path in ("/_datapump/api/streams", "/_datapump/api/status", "/metrics", "/_datapump/", "/_datapump",
                 f"/_datapump/api/streams/{sid}", f"/_datapump/streams/{sid}"):
        r = get(ctx.server, path)
        expect(r.status == 404, f"public GET {path}: {r.brief()}, want 404 (the admin listener only)")
        expect(b"127.0.0.1" not in r.body and b"big.bin" not in r.body, f"public GET {path} shows {r.body[:200]!r}")
    guesses = [f"/_datapump/api/streams/{sid}/pause", f"/_datapump/streams/{sid}/pause",
               f"/_datapump/streams/{int(sid):032x}/pause", f"/_datapump/streams/{secrets.token_hex(16)}/pause",
               "/_datapump/streams/00000000000000000000000000000000/pause", "/_datapump/streams//pause"]
    for target in guesses:
        r, _ = _post(ctx.server, target)
        expect(r.status == 404, f"public POST {target}: {r.brief()}, want 404")
    time.sleep(0.3)
    expect(_state(ctx, sid) != "paused", f"the victim's stream {sid} was paused by an anonymous client")


@check("control/capability-pause-resume-byte-exact", nginx="skip: X-Datapump-Control is datapumpd's")
def _(ctx):
    # The client that got the response holds its stream's capability: it pauses (nothing more
    # comes), reads its state, resumes, and the whole body is still the file's bytes.
    data = ctx.fx.data("/data.bin")
    with Conn(ctx.server.port, timeout=30) as c, Conn(ctx.server.port, timeout=30) as other:
        r = _head(c, "/data.bin?rate=1M&burst=65536")
        cap = r.header("x-datapump-control") or ""
        expect(CAP.fullmatch(cap), f"X-Datapump-Control {cap!r}, want /_datapump/streams/ + 32 hex digits")
        cap2 = _head(other, "/notes.txt?rate=1M").header("x-datapump-control")
        expect(cap2 and cap2 != cap, f"two streams got the capabilities {cap!r} and {cap2!r}")
        body = bytearray(_read_exactly(c, 256 * 1024))

        pr, doc = _post(ctx.server, cap + "/pause")
        expect(pr.status == 200 and doc and doc.get("ok") is True, f"POST {cap}/pause: {pr.brief()} {doc!r:.200}")
        expect(wait_until(lambda: json.loads(get(ctx.server, cap).body.decode()).get("state") == "paused", 3),
               f"GET {cap}: not 'paused' 3 s after the pause")
        body += _drain_until_quiet(c)
        paused_at = len(body)
        expect(paused_at < len(data), f"the whole body ({paused_at} B) arrived before the pause took effect")
        c.sock.settimeout(1.0)
        try:
            extra = c.sock.recv(65536)
        except (socket.timeout, TimeoutError):
            extra = b""
        expect(not extra, f"paused: {len(extra)} more bytes arrived within 1 s")

        view = json.loads(get(ctx.server, cap).body.decode())
        expect(view.get("file", "").endswith("data.bin") and view.get("state") == "paused",
               f"GET {cap}: {view!r:.300}")
        pr, doc = _post(ctx.server, cap + "/resume")
        expect(pr.status == 200 and doc and doc.get("ok") is True, f"POST {cap}/resume: {pr.brief()} {doc!r:.200}")
        body += _read_exactly(c, len(data) - len(body))
        expect(bytes(body) == data, f"after pause at {paused_at} and resume the body is not the file's bytes")
    ctx.note(f"paused at byte {paused_at} of {len(data)}")
    expect(wait_until(lambda: get(ctx.server, cap).status == 404, 5), f"GET {cap} of an ended stream: want 404")
    r, _ = _post(ctx.server, cap + "/pause")
    expect(r.status == 404, f"POST {cap}/pause of an ended stream: {r.brief()}, want 404")


@check("control/capability-seek", nginx="skip: X-Datapump-Control is datapumpd's")
def _(ctx):
    data = ctx.fx.data(BIG)
    offset = 8 * MIB  # block-aligned on every send path
    with Conn(ctx.server.port, timeout=30) as c:
        cap = _head(c, BIG + "?rate=1M&burst=65536").header("x-datapump-control")
        expect(cap, "no X-Datapump-Control on a streamed file")
        head = _read_exactly(c, 128 * 1024)
        expect(head == data[:len(head)], "the body's first bytes are not the file's")
        expect(_post(ctx.server, cap + "/pause")[0].status == 200, f"POST {cap}/pause")
        expect(wait_until(lambda: json.loads(get(ctx.server, cap).body.decode()).get("state") == "paused", 3),
               "not paused within 3 s")
        _drain_until_quiet(c)
        r, doc = _post(ctx.server, f"{cap}/seek?offset={offset}")
        expect(r.status == 200 and doc and doc.get("ok") is True, f"POST {cap}/seek: {r.brief()} {doc!r:.200}")
        r, doc = _post(ctx.server, f"{cap}/seek?offset={len(data) + 1}")
        expect(r.status == 400, f"seek past the end: {r.brief()} {doc!r:.200}, want 400")
        expect(_post(ctx.server, cap + "/resume")[0].status == 200, f"POST {cap}/resume")
        after = _read_exactly(c, 256 * 1024)
        expect(after == data[offset:offset + len(after)],
               f"after pause, seek to {offset} and resume the body is not the file's bytes from {offset}")


@check("control/cross-origin-refused", nginx="skip: datapumpd's control plane")
def _(ctx):
    bg = Background(ctx, ctx.server, BIG, "rate=500k", "origin")
    cap = bg.control_path()
    _, sid = bg.status_and_id()
    expect(cap, "no X-Datapump-Control on a streamed file")
    host = f"127.0.0.1:{ctx.server.port}"
    same = f"http://{host}"
    for headers in ([("Origin", "http://evil.example")], [("Origin", "null")],
                    [("Origin", f"http://127.0.0.1:{ctx.server.port + 1}")],
                    [("Origin", same), ("Sec-Fetch-Site", "cross-site")]):
        r, _ = _post(ctx.server, cap + "/pause", headers, host=host)
        expect(r.status == 403 and b"cross-origin" in r.body,
               f"POST {cap}/pause with {headers}: {r.brief()} {r.body[:100]!r}, want 403")
    time.sleep(0.3)
    expect(_state(ctx, sid) != "paused", "a cross-origin POST paused the stream")
    # The admin API refuses it too, and a DELETE is refused before it is routed.
    admin = ctx.server.admin
    r, _ = _post(admin, f"/_datapump/api/streams/{sid}/pause", [("Origin", "http://evil.example")])
    expect(r.status == 403, f"admin POST pause with a foreign Origin: {r.brief()}, want 403")
    r = fetch(ctx.server, "DELETE", "/notes.txt", {"Origin": "http://evil.example"})
    expect(r.status == 403, f"DELETE with a foreign Origin: {r.brief()}, want 403")
    # Same origin (the status page's own fetch) and no Origin (curl) are allowed.
    r, doc = _post(ctx.server, cap + "/pause", [("Origin", same)], host=host)
    expect(r.status == 200 and doc and doc.get("ok") is True, f"same-origin POST pause: {r.brief()} {doc!r:.200}")
    r, _ = _post(ctx.server, cap + "/resume", [("Origin", same)], host="127.0.0.1")
    expect(r.status == 403, f"POST with Origin {same} and Host 127.0.0.1 (port 80): {r.brief()}, want 403")
    r, doc = _post(admin, f"/_datapump/api/streams/{sid}/resume",
                   [("Origin", f"http://127.0.0.1:{admin.port}"), ("Sec-Fetch-Site", "same-origin")],
                   host=f"127.0.0.1:{admin.port}")
    expect(r.status == 200 and doc and doc.get("ok") is True, f"same-origin admin POST resume: {r.brief()}")
    r, doc = _post(ctx.server, cap + "/pause")
    expect(r.status == 200, f"POST pause without Origin: {r.brief()}")


@check("control/admin-token", nginx="skip: --admin-token is datapumpd's")
def _(ctx):
    token = secrets.token_hex(12)
    server = ctx.extra_server(["--admin-token", token])
    admin = server.admin
    for path in ("/metrics", "/_datapump/api/streams", "/_datapump/api/status", "/_datapump/"):
        r = get(admin, path)
        expect(r.status == 401 and (r.header("www-authenticate") or "").startswith("Bearer"),
               f"GET {path} without the token: {r.brief()}, WWW-Authenticate {r.header('www-authenticate')!r}; "
               "want 401 Bearer")
        r = get(admin, path, {"Authorization": "Bearer wrong-" + token})
        expect(r.status == 401, f"GET {path} with a wrong token: {r.brief()}, want 401")
        r = get(admin, path, {"Authorization": f"Bearer {token}"})
        expect(r.status == 200, f"GET {path} with the token: {r.brief()}, want 200")
    # The page alone takes ?token= (its script sends the header); the API does not.
    r = get(admin, "/_datapump/", query=f"token={token}")
    expect(r.status == 200 and b"Authorization" in r.body, f"GET /_datapump/?token=: {r.brief()}")
    r = get(admin, "/_datapump/api/streams", query=f"token={token}")
    expect(r.status == 401, f"GET /_datapump/api/streams?token=: {r.brief()}, want 401 (header only)")
    r, _ = _post(admin, "/_datapump/api/streams/1/pause")
    expect(r.status == 401, f"POST pause without the token: {r.brief()}, want 401")
    # What a Prometheus scrape with bearer_token does.
    r = curl(["-o", "/dev/null", "-w", "%{http_code}", "-H", f"Authorization: Bearer {token}",
              admin.url("/metrics")], timeout=10)
    expect(r.stdout == b"200", f"curl /metrics with the bearer token: {r.stdout!r}")


@check("control/admin-on-unix-socket", nginx="skip: --admin-listen is datapumpd's")
def _(ctx):
    path = ctx.tmp / f"admin-{os.getpid()}-{time.monotonic_ns()}.sock"
    # A socket file that nobody listens on (a crashed instance's) is replaced.
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(str(path))
    stale.close()
    server = ctx.extra_server(["--admin-listen", f"unix:{path}"])
    mode = os.lstat(path).st_mode
    expect(stat.S_ISSOCK(mode) and stat.S_IMODE(mode) == 0o660,
           f"{path}: mode {oct(stat.S_IMODE(mode))}, socket {stat.S_ISSOCK(mode)}; want a socket with 0660")
    r = curl(["--unix-socket", str(path), "-w", "\n%{http_code}", "http://localhost/_datapump/api/status"], timeout=10)
    body, _, code = r.stdout.decode().rpartition("\n")
    expect(r.returncode == 0 and code == "200" and "loops" in json.loads(body),
           f"curl --unix-socket {path} /_datapump/api/status: exit {r.returncode}, {code}, {body[:200]!r}")
    r = curl(["--unix-socket", str(path), "-o", "/dev/null", "-w", "%{http_code}", "http://localhost/metrics"],
             timeout=10)
    expect(r.stdout == b"200", f"curl --unix-socket /metrics: {r.stdout!r}")
    r = curl(["--unix-socket", str(path), "-o", "/dev/null", "-w", "%{http_code}", "http://localhost/notes.txt"],
             timeout=10)
    expect(r.stdout == b"404", f"curl --unix-socket /notes.txt: {r.stdout!r}, want 404 (no files on the admin listener)")
    expect(get(server, "/metrics").status == 404, "the public listener serves /metrics")
    expect(get(server, "/notes.txt").status == 200, "the public listener does not serve files")
    server.proc.send_signal(signal.SIGTERM)
    server.proc.wait(10)
    expect(not path.exists(), f"{path} is still there after the daemon stopped")


@check("control/several-listen-addresses", nginx="skip: datapumpd's --listen")
def _(ctx):
    second = free_port()
    server = ctx.extra_server(["--listen", f"127.0.0.1:{second}"])
    expect(second != server.port, "the harness and the check picked one port")
    want = ctx.fx.data("/notes.txt")
    for port in (server.port, second):
        with Conn(port) as c:
            c.send(request("GET", "/notes.txt", {"Connection": "close"}))
            r = c.read_response()
        expect(r.status == 200 and r.body == want, f"GET /notes.txt on port {port}: {r.brief()}")
    # The admin listener sees the connections of both.
    status, doc = json_api(server.admin, "GET", "/_datapump/api/status")
    expect(status == 200, f"admin status: {status}")


@check("control/admin-listener-serves-only-the-control-plane", nginx="skip: datapumpd's admin listener")
def _(ctx):
    admin = ctx.server.admin
    for path in ("/notes.txt", "/", "/index.html", "/_datapump/secret.txt"):
        r = get(admin, path)
        expect(r.status == 404, f"admin GET {path}: {r.brief()}, want 404 (files only on the public listener)")
    bg = Background(ctx, ctx.server, BIG, "rate=500k", "admin-view")
    cap = bg.control_path()
    _, sid = bg.status_and_id()
    listed = json.dumps(json_api(admin, "GET", "/_datapump/api/streams")[1])
    expect(cap and cap.rsplit("/", 1)[1] not in listed, "the admin listing shows a stream's capability")
    expect(str(sid) in listed, f"stream {sid} is not in the admin listing")


@check("control/admin-refuses-foreign-host-names", nginx="skip: datapumpd's admin listener")
def _(ctx):
    # DNS rebinding: a page of evil.example resolved to 127.0.0.1 reaches the admin port as its own
    # origin, with its name in Host. Without a token only localhost and IP addresses are answered.
    admin = ctx.server.admin
    for host in ("evil.example", f"evil.example:{admin.port}", "127.0.0.1.evil.example"):
        with Conn(admin.port) as c:
            c.send(request("GET", "/_datapump/api/streams", {"Connection": "close"}, host=host))
            r = c.read_response()
        expect(r.status == 403 and b"streams" not in r.body, f"admin GET with Host {host}: {r.brief()}, want 403")
    for host in ("localhost", f"localhost:{admin.port}", f"127.0.0.1:{admin.port}", "[::1]:1"):
        with Conn(admin.port) as c:
            c.send(request("GET", "/_datapump/api/streams", {"Connection": "close"}, host=host))
            r = c.read_response()
        expect(r.status == 200, f"admin GET with Host {host}: {r.brief()}, want 200")
    # With a token any name may be used (the page cannot know the token).
    token = secrets.token_hex(8)
    server = ctx.extra_server(["--admin-token", token])
    with Conn(server.admin.port) as c:
        c.send(request("GET", "/metrics", {"Connection": "close", "Authorization": f"Bearer {token}"},
                       host="admin.example"))
        r = c.read_response()
    expect(r.status == 200, f"admin GET /metrics with the token and Host admin.example: {r.brief()}, want 200")
