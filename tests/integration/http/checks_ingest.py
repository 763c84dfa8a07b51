"""Uploads (PUT, DELETE, load-and-play): the ingest path end to end (docs/ingest.md).

Every check serves a fresh temp root of its own with its own datapumpd (--writable and what else
it needs), so that uploads never touch the shared fixture and every daemon starts clean (its
metrics count only this check's requests). Random bytes come from fixed seeds; waits are polls
with bounds; the slow uploads are raw sockets paced by this (single) thread, with curl followers
running beside them as child processes.

nginx has its own upload module (dav) with other answers (no 409 for a running upload, no
load-and-play, no --max-upload): these checks are datapumpd's contract and skipped against it.
"""
import os
import random
import select
import shutil
import signal
import socket
import struct
import subprocess
import time
from pathlib import Path

from harness import (MIB, CheckFailed, Conn, Server, check, curl, expect, fetch, free_port, kill,
                     metric_samples, request, run, spawn, wait_until)

KIB = 1024
NGINX = "skip: datapumpd's upload contract"
MARKER = ".dp-upload-"
FAILED = 'datapump_uploads_total{outcome="failed"}'
COMPLETED = 'datapump_uploads_total{outcome="completed"}'
LEFTOVERS = "datapump_upload_leftovers_removed_total"
BATCHES = "datapump_publish_batches_total"
SYNCS = "datapump_publish_syncs_total"
IN_PROGRESS = "datapump_uploads_in_progress"


# ---------------------------------------------------------------------------------------------
# Helpers

def _root(ctx, tag):
    """A fresh, empty served folder for this check and variant."""
    root = ctx.tmp / f"ingest-{ctx.factory.name.replace('/', '-')}-{tag}"
    if root.exists():
        shutil.rmtree(root)
    root.mkdir(parents=True)
    os.chmod(root, 0o755)
    return root


def _daemon(ctx, root, *flags, writable=True):
    return ctx.extra_server((["--writable"] if writable else []) + list(flags), root=root)


def _rand(seed, n):
    return random.Random(seed).randbytes(n)


def _temps(root):
    """Upload temp files anywhere under root."""
    return sorted(str(p.relative_to(root)) for p in Path(root).rglob("*") if MARKER in p.name)


def _expect_no_temps(root, when):
    left = _temps(root)
    expect(not left, f"{when}: upload temp files left behind: {left}")


def _on_disk(root, rel):
    p = Path(root) / rel.lstrip("/")
    return p.read_bytes() if p.is_file() else None


def _expect_file(root, rel, want, when):
    got = _on_disk(root, rel)
    expect(got is not None, f"{when}: {rel} does not exist on disk")
    expect(got == want, f"{when}: {rel} on disk differs: {_diff(got, want)}")


def _diff(got, want):
    if got is None:
        return "missing"
    if len(got) != len(want):
        return f"{len(got)} bytes, want {len(want)}"
    at = next((i for i in range(len(got)) if got[i] != want[i]), None)
    return "equal" if at is None else f"same length {len(got)}, first difference at byte {at}"


def _sample(server, name):
    return metric_samples(server).get(name, 0.0)


def _wait_metric(server, name, at_least, timeout=5):
    got = {}

    def reached():
        got["v"] = _sample(server, name)
        return got["v"] >= at_least
    ok = wait_until(reached, timeout, 0.1)
    expect(ok, f"{name} is {got.get('v')} after {timeout} s, want >= {at_least}")


def _curl_put(server, path, src, *args, timeout=20):
    """curl -T: (status, headers {lower name: value}, curl result)."""
    hdr = src.with_suffix(".puthead")
    hdr.unlink(missing_ok=True)
    r = curl(["-T", str(src), "-o", "/dev/null", "-D", str(hdr), "-w", "%{http_code}", *args, server.url(path)],
             timeout=timeout)
    return int(r.stdout.decode() or 0), _final_headers(hdr), r


def _final_headers(hdr_file):
    """The headers of the last (final) response in a curl -D file."""
    try:
        text = hdr_file.read_bytes().decode("latin-1")
    except OSError:
        return {}
    blocks = [b for b in text.split("\r\n\r\n") if b.strip()]
    if not blocks:
        return {}
    out = {}
    for line in blocks[-1].split("\r\n")[1:]:
        if ":" in line:
            k, v = line.split(":", 1)
            out[k.strip().lower()] = v.strip()
    return out


def _curl_get(ctx, server, path, *args, timeout=20):
    out = ctx.tmp / "ingest-get.out"
    out.unlink(missing_ok=True)
    r = curl(["-o", str(out), "-w", "%{http_code}", *args, server.url(path)], timeout=timeout)
    return int(r.stdout.decode() or 0), (out.read_bytes() if out.exists() else b""), r


def _expect_get(ctx, server, path, want, when):
    status, body, r = _curl_get(ctx, server, path)
    expect(r.returncode == 0 and status == 200,
           f"{when}: GET {path}: curl exit {r.returncode} status {status} ({r.stderr.decode().strip()})")
    expect(body == want, f"{when}: GET {path}: body differs: {_diff(body, want)}")


def _src(ctx, data, tag="src"):
    p = ctx.tmp / f"ingest-{tag}.bin"
    p.write_bytes(data)
    return p


def _chunked(data, sizes, extensions=True, trailer=True):
    """data in chunked coding: chunk sizes cycle through sizes; hex in both cases, some chunk
    extensions (token and quoted-string values), a trailer field."""
    out = bytearray()
    i = k = 0
    while i < len(data):
        n = min(sizes[k % len(sizes)], len(data) - i)
        line = f"{n:X}" if k % 2 else f"{n:x}"
        if extensions and k % 3 == 0:
            line += ';ext=1;q="a b"' if k % 2 == 0 else " ;flag"
        out += line.encode() + b"\r\n" + data[i:i + n] + b"\r\n"
        i += n
        k += 1
    out += b"0\r\n" + (b"X-Checksum: none\r\n" if trailer else b"") + b"\r\n"
    return bytes(out)


def _put_head(path, length=None, chunked=False, extra=(), close=False):
    h = [("Content-Length", str(length))] if length is not None else []
    if chunked:
        h.append(("Transfer-Encoding", "chunked"))
    h += list(extra)
    if close:
        h.append(("Connection", "close"))
    return request("PUT", path, h)


def _readable(sock):
    return bool(select.select([sock], [], [], 0)[0])


def _send_paced(conn, data, piece, pause, until=None):
    """Sends data in pieces with a pause after each. Stops early, returning the bytes sent, when
    the server answers (or resets) before the end, or when until() says so."""
    sent = 0
    while sent < len(data):
        if _readable(conn.sock) or (until is not None and until()):
            return sent
        try:
            conn.sock.sendall(data[sent:sent + piece])
        except (BrokenPipeError, ConnectionResetError, socket.timeout, TimeoutError):
            return sent  # the server stopped reading: its answer says why
        sent += min(piece, len(data) - sent)
        if pause:
            time.sleep(pause)
    return sent


def _answer(conn, when, timeout=20):
    """The next response on conn, a CheckFailed saying `when` if none comes."""
    conn.sock.settimeout(timeout)
    try:
        return conn.read_response()
    except (socket.timeout, TimeoutError):
        raise CheckFailed(f"{when}: no answer within {timeout} s") from None
    except (OSError, EOFError) as e:
        raise CheckFailed(f"{when}: no answer ({type(e).__name__}: {e})") from None


def _put_raw(server, path, body, length=None, chunked=False, piece=64 * KIB, pause=0.0, extra=(), timeout=30):
    """PUT over a raw socket; the body (already framed when chunked) in paced pieces. The answer
    is read even when it comes before the whole body was sent."""
    with Conn(server.port, timeout) as c:
        c.send(_put_head(path, None if chunked else (len(body) if length is None else length), chunked, extra))
        _send_paced(c, body, piece, pause)
        return _answer(c, f"PUT {path}", timeout)


def _wait_following(server, path, timeout=5):
    """Until a HEAD of path is answered as an upload in progress (X-Datapump-Upload)."""
    def following():
        r = fetch(server, "HEAD", path)
        return r if r.header("x-datapump-upload") == "in-progress" else None
    r = wait_until(following, timeout, 0.02)
    expect(r, f"HEAD {path} never said X-Datapump-Upload: in-progress within {timeout} s while it was uploaded")
    return r


class _Follower:
    """curl GET of a path in the background: body, headers, exit code."""

    def __init__(self, ctx, server, path, tag, args=(), query=""):
        self.out, self.hdr, self.err = (ctx.tmp / f"follow-{tag}.{s}" for s in ("body", "head", "err"))
        for f in (self.out, self.hdr, self.err):
            f.unlink(missing_ok=True)
        self.proc = ctx.start(["curl", "-sS", "--globoff", "--max-time", "40", "-o", str(self.out), "-D",
                               str(self.hdr), "--stderr", str(self.err), *args, server.url(path, query)])

    def running(self):
        return self.proc.poll() is None

    def wait(self, timeout=30):
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise CheckFailed(f"the GET (curl) did not end within {timeout} s") from None

    def body(self):
        return self.out.read_bytes() if self.out.exists() else b""

    def received(self):
        return self.out.stat().st_size if self.out.exists() else 0

    def headers(self):
        return _final_headers(self.hdr)

    def status(self):
        try:
            return int(self.hdr.read_bytes().decode("latin-1").split(" ", 2)[1])
        except (OSError, IndexError, ValueError):
            return None

    def error(self):
        return self.err.read_text(errors="replace").strip() if self.err.exists() else ""


# ---------------------------------------------------------------------------------------------
# 1. Round trips

ROUND_TRIP_SIZES = [0, 1, 4095, 4096, 4097, 262143, 262144, 262145, 5 * MIB + 123]


@check("ingest/round-trip-curl", nginx=NGINX)
def _(ctx):
    root = _root(ctx, "roundtrip")
    (root / "deep" / "er").mkdir(parents=True)
    server = _daemon(ctx, root)
    puts = 0
    for i, size in enumerate(ROUND_TRIP_SIZES):
        path = f"/deep/er/file-{size}.bin" if i % 3 == 2 else f"/file-{size}.bin"
        for round_, (seed, want_status) in enumerate([(1000 + i, 201), (2000 + i, 204)]):
            data = _rand(seed, size)
            src = _src(ctx, data)
            status, headers, r = _curl_put(server, path, src)
            puts += 1
            what = f"PUT {path} ({size} bytes, {'new' if round_ == 0 else 'replacing'})"
            expect(r.returncode == 0 and status == want_status,
                   f"{what}: curl exit {r.returncode}, status {status} ({r.stderr.decode().strip()}), "
                   f"want {want_status}")
            if want_status == 201:
                loc = headers.get("location", "")
                expect(loc == path or loc.endswith("127.0.0.1:%d%s" % (server.port, path)),
                       f"{what}: 201 with Location {loc!r}, want {path!r}")
            _expect_file(root, path, data, what)
            _expect_get(ctx, server, path, data, what)
    _expect_no_temps(root, "after the round trips")
    m = metric_samples(server)
    expect(m.get(COMPLETED) == puts and m.get(FAILED) == 0 and m.get(IN_PROGRESS) == 0,
           f"after {puts} uploads: completed {m.get(COMPLETED)}, failed {m.get(FAILED)}, in progress "
           f"{m.get(IN_PROGRESS)}")
    # --durability upload (the default): each upload is published on its own, with two syncs
    # (the file's, the folder's).
    expect(m.get(BATCHES) == puts and m.get(SYNCS) == 2 * puts,
           f"after {puts} uploads published one by one: {BATCHES} {m.get(BATCHES)}, {SYNCS} {m.get(SYNCS)}, "
           f"want {puts} and {2 * puts}")
    body_bytes = 2 * sum(ROUND_TRIP_SIZES)
    received, written = m.get("datapump_ingest_received_bytes_total"), m.get("datapump_ingest_written_bytes_total")
    expect(received == body_bytes and written is not None and written >= body_bytes,
           f"after uploads of {body_bytes} body bytes: datapump_ingest_received_bytes_total {received}, "
           f"datapump_ingest_written_bytes_total {written}")


@check("ingest/batched-durability", nginx=NGINX)
def _(ctx):
    # --durability batch: uploads finishing within the window are published together, with one
    # syncfs before and one after their renames. Six uploads are held one byte short of their
    # end, then all finished at once: one batch, two syncs, six exact files, 201s and 204s.
    root = _root(ctx, "batch")
    # Six uploads at once from one address: above the default --max-uploads-per-ip (4).
    server = _daemon(ctx, root, "--durability", "batch", "--durability-window-ms", "1000", "--max-uploads-per-ip", "8")
    sizes = [0, 1, 4097, 262144, 262145, 3 * MIB + 7]
    (root / "sub").mkdir()
    old = _rand(77, 5000)
    (root / "sub" / "f3.bin").write_bytes(old)  # replaced: 204
    bodies = [_rand(300 + i, n) for i, n in enumerate(sizes)]
    paths = [f"/sub/f{i}.bin" if i % 2 else f"/f{i}.bin" for i in range(len(sizes))]
    conns = [Conn(server.port, 30) for _ in sizes]
    try:
        held = 0
        for c, path, body in zip(conns, paths, bodies):
            if body:
                c.send(_put_head(path, len(body)) + body[:-1])
                held += len(body) - 1
        # Every body is in but its last byte; then they all end (the empty one starts and ends).
        _wait_metric(server, "datapump_ingest_received_bytes_total", held, timeout=20)
        for c, path, body in zip(conns, paths, bodies):
            c.send(body[-1:] if body else _put_head(path, 0))
        answers = [_answer(c, f"PUT {p}", 30) for c, p in zip(conns, paths)]
    finally:
        for c in conns:
            c.close()
    want = [204 if p == "/sub/f3.bin" else 201 for p in paths]
    got = [a.status for a in answers]
    expect(got == want, f"answers {got}, want {want}")
    for path, body in zip(paths, bodies):
        _expect_file(root, path, body, f"batched PUT {path}")
    _expect_no_temps(root, "after the batch")
    m = metric_samples(server)
    expect(m.get(COMPLETED) == len(sizes) and m.get(BATCHES) == 1 and m.get(SYNCS) == 2,
           f"{len(sizes)} uploads finishing together: completed {m.get(COMPLETED)}, {BATCHES} {m.get(BATCHES)} "
           f"(want 1), {SYNCS} {m.get(SYNCS)} (want 2)")


@check("ingest/reason-phrases", nginx=NGINX)
def _(ctx):
    # The status lines of the upload answers name their status (RFC 9110 reason phrases); a
    # client logs them, and 'Unknown' is wrong for every one of these.
    root = _root(ctx, "reasons")
    server = _daemon(ctx, root, "--upload-token", "t0k")
    auth = [("Authorization", "Bearer t0k")]
    got = {}
    with Conn(server.port) as c:
        c.send(_put_head("/a.txt", 3, extra=auth) + b"abc")
        got[201] = c.read_response()
    with Conn(server.port) as c:
        c.send(_put_head("/a.txt", 3) + b"abc")
        got[401] = c.read_response()
    with Conn(server.port) as c:
        c.send(_put_head("/no/a.txt", 3, extra=auth) + b"abc")
        got[409] = c.read_response()
    with Conn(server.port) as c:
        c.send(_put_head("/b.txt", 3, extra=auth + [("Expect", "x-magic")]))
        got[417] = c.read_response()
    want = {201: "Created", 401: "Unauthorized", 409: "Conflict", 417: "Expectation Failed"}
    bad = [f"{got[s].status} {got[s].reason!r} (want {s} {w!r})" for s, w in want.items()
           if got[s].status != s or got[s].reason != w]
    expect(not bad, "status lines: " + "; ".join(bad))


# ---------------------------------------------------------------------------------------------
# 2. Chunked uploads

ODD_SIZES = [1, 7, 4095, 4097, 65537, 3, 262147, 13, 100000, 2]


@check("ingest/chunked-curl", nginx=NGINX)
def _(ctx):
    root = _root(ctx, "chunked-curl")
    server = _daemon(ctx, root)
    # No 0-byte case here: curl 7.88 never sends the last chunk of an empty -T file (it hangs
    # the same against any server); chunked-raw-pipelined sends an empty chunked body itself.
    for size, seed in [(1, 8), (MIB + 7, 9), (3 * MIB + 4097, 10)]:
        data = _rand(seed, size)
        path = f"/c-{size}.bin"
        status, headers, r = _curl_put(server, path, _src(ctx, data), "-H", "Transfer-Encoding: chunked")
        expect(r.returncode == 0 and status == 201,
               f"chunked PUT {path} ({size} bytes): curl exit {r.returncode}, status {status} "
               f"({r.stderr.decode().strip()}), want 201")
        _expect_file(root, path, data, f"chunked PUT {path}")
        _expect_get(ctx, server, path, data, f"chunked PUT {path}")
    _expect_no_temps(root, "after chunked uploads")


@check("ingest/chunked-raw-pipelined", nginx=NGINX)
def _(ctx):
    # Odd chunk sizes, extensions, a trailer; a GET pipelined behind the body, which must be
    # answered after the 201 (with the new bytes). Bodies within the head's first receive (the
    # prefix) and larger ones, whose end (and the GET) the ingest receives; the head alone first
    # (the daemon's first receive holds only it), or head, body and GET in one write (the first
    # receive fills the connection's whole input buffer).
    root = _root(ctx, "chunked-raw")
    server = _daemon(ctx, root)
    for size, seed, one_write in [(0, 20, True), (5000, 21, True), (700 * KIB + 11, 22, False),
                                  (3 * MIB + 5, 23, False), (700 * KIB + 11, 24, True), (3 * MIB + 5, 25, True)]:
        data = _rand(seed, size)
        path = f"/r-{size}-{seed}.bin"
        body = _chunked(data, ODD_SIZES) + request("GET", path)
        with Conn(server.port, timeout=20) as c:
            if one_write:
                c.send(_put_head(path, chunked=True) + body)
            else:
                c.send(_put_head(path, chunked=True))
                _wait_following(server, path)
                c.send(body)
            r = _answer(c, f"chunked PUT {path} ({size} bytes, odd chunks, extensions, trailer)")
            expect(r.status == 201, f"chunked PUT {path} ({size} bytes): {r.brief()}, want 201")
            how = "in the same write as the head" if one_write else "after the head"
            r2 = _answer(c, f"the GET pipelined behind the chunked PUT {path} ({size} bytes, sent {how})")
            expect(r2.status == 200 and r2.body == data,
                   f"the GET pipelined behind the chunked PUT {path} ({size} bytes, sent {how}): {r2.brief()}, "
                   f"body {_diff(r2.body, data)}")
        _expect_file(root, path, data, f"chunked PUT {path}")
    _expect_no_temps(root, "after chunked uploads")


# ---------------------------------------------------------------------------------------------
# 3. Expect

@check("ingest/expect-100-continue", nginx=NGINX)
def _(ctx):
    root = _root(ctx, "expect")
    server = _daemon(ctx, root)
    data = _rand(31, 300 * KIB + 1)
    with Conn(server.port, timeout=10) as c:
        c.send(_put_head("/e.bin", len(data), extra=[("Expect", "100-continue")]))
        # Not one body byte sent: the interim answer must come on its own.
        r = _answer(c, "PUT with Expect: 100-continue, before any body byte", timeout=5)
        expect(r.status == 100, f"PUT with Expect: 100-continue: first answer {r.brief()}, want 100 Continue")
        c.send(data)
        r = _answer(c, "PUT with Expect: 100-continue, after the body")
        expect(r.status == 201, f"PUT with Expect: 100-continue, after the body: {r.brief()}, want 201")
    _expect_file(root, "/e.bin", data, "PUT with Expect: 100-continue")
    # The same on a chunked upload.
    with Conn(server.port, timeout=10) as c:
        c.send(_put_head("/e2.bin", chunked=True, extra=[("Expect", "100-Continue")]))
        r = _answer(c, "chunked PUT with Expect: 100-Continue, before any body byte", timeout=5)
        expect(r.status == 100, f"chunked PUT with Expect: 100-Continue: first answer {r.brief()}, want 100")
        c.send(_chunked(data, ODD_SIZES))
        r = _answer(c, "chunked PUT with Expect: 100-Continue, after the body")
        expect(r.status == 201, f"chunked PUT with Expect: 100-Continue: {r.brief()}, want 201")
    _expect_file(root, "/e2.bin", data, "chunked PUT with Expect: 100-Continue")
    for value in ["something-else", "100-continue-please"]:
        with Conn(server.port, timeout=10) as c:
            c.send(_put_head("/x.bin", 10, extra=[("Expect", value)]))
            r = _answer(c, f"PUT with Expect: {value}", timeout=5)
            expect(r.status == 417, f"PUT with Expect: {value}: {r.brief()}, want 417")
            expect(c.closed_by_peer(5), f"after the 417 (Expect: {value}) the connection stays open; the unread "
                                        f"body would be taken for the next request")
    expect(_on_disk(root, "/x.bin") is None, "a PUT answered 417 created its file")
    _expect_no_temps(root, "after the Expect checks")


# ---------------------------------------------------------------------------------------------
# 4. Refusals

def _status_of(server, method, target, data=b"", extra=(), chunked=False):
    with Conn(server.port, timeout=10) as c:
        if chunked:
            c.send(_put_head(target, chunked=True, extra=extra) if method == "PUT" else b"")
        else:
            hdrs = [("Content-Length", str(len(data)))] + list(extra)
            c.send(request(method, target, hdrs))
        _send_paced(c, data, 64 * KIB, 0)
        return _answer(c, f"{method} {target}")


@check("ingest/refusals", nginx=NGINX)
def _(ctx):
    root = _root(ctx, "refusals")
    (root / "old.txt").write_bytes(b"old\n")
    (root / "dir").mkdir()
    bad = []

    def want(what, r, statuses, header=None):
        if r.status not in statuses or (header and not r.header(header[0], "").startswith(header[1])):
            bad.append(f"{what}: {r.status} {r.header(header[0]) if header else ''} "
                       f"(want {'/'.join(map(str, statuses))}{' with ' + header[0] if header else ''})")

    # Not writable: 405 with Allow: GET, HEAD; the file untouched.
    ro = _daemon(ctx, root, writable=False)
    want("PUT without --writable", _status_of(ro, "PUT", "/new.txt", b"hello"), [405], ("Allow", "GET, HEAD"))
    want("PUT over a file without --writable", _status_of(ro, "PUT", "/old.txt", b"hello"), [405],
         ("Allow", "GET, HEAD"))
    want("DELETE without --writable", _status_of(ro, "DELETE", "/old.txt"), [405], ("Allow", "GET, HEAD"))
    ro.stop(signal.SIGKILL)

    # A token.
    tok = _daemon(ctx, root, "--upload-token", "s3cret")
    want("PUT with no Authorization", _status_of(tok, "PUT", "/t.txt", b"hello"), [401],
         ("WWW-Authenticate", "Bearer"))
    want("PUT with a wrong token", _status_of(tok, "PUT", "/t.txt", b"hello", [("Authorization", "Bearer s3cre")]),
         [401], ("WWW-Authenticate", "Bearer"))
    want("PUT with Basic credentials", _status_of(tok, "PUT", "/t.txt", b"hello",
                                                   [("Authorization", "Basic czNjcmV0Og==")]), [401])
    want("DELETE with no Authorization", _status_of(tok, "DELETE", "/old.txt"), [401])
    expect(_on_disk(root, "/t.txt") is None and _on_disk(root, "/old.txt") == b"old\n",
           "refused PUT/DELETE (401) changed the folder")
    want("PUT with the right token", _status_of(tok, "PUT", "/t.txt", b"hello", [("Authorization", "Bearer s3cret")]),
         [201])
    expect(_on_disk(root, "/t.txt") == b"hello", "PUT with the right token: the file is not there")
    tok.stop(signal.SIGKILL)

    # --max-upload 1000.
    lim = _daemon(ctx, root, "--max-upload", "1000")
    want("PUT of 2000 bytes over --max-upload 1000", _status_of(lim, "PUT", "/big.bin", _rand(41, 2000)), [413])
    # curl asks with Expect: 100-continue and must get the 413 instead of the 100.
    status, _, r = _curl_put(lim, "/big2.bin", _src(ctx, _rand(42, 2000)), "-H", "Expect: 100-continue")
    if status != 413:
        bad.append(f"curl PUT of 2000 bytes (Expect: 100-continue) over --max-upload 1000: {status}, "
                   f"exit {r.returncode} (want 413)")
    want("chunked PUT of 2000 bytes over --max-upload 1000",
         _status_of(lim, "PUT", "/big3.bin", _chunked(_rand(43, 2000), [300]), chunked=True), [413])
    want("PUT of exactly 1000 bytes under --max-upload 1000", _status_of(lim, "PUT", "/ok.bin", _rand(44, 1000)),
         [201])
    for name in ["/big.bin", "/big2.bin", "/big3.bin"]:
        if _on_disk(root, name) is not None:
            bad.append(f"{name}: refused with 413 but exists on disk")
    lim.stop(signal.SIGKILL)

    server = _daemon(ctx, root)
    want("PUT into a missing folder", _status_of(server, "PUT", "/nope/x.txt", b"x"), [409])
    want("PUT into a missing folder (deeper)", _status_of(server, "PUT", "/dir/nope/x.txt", b"x"), [409])
    want("PUT to a folder path /dir/", _status_of(server, "PUT", "/dir/", b"x"), [405])
    want("PUT to the root /", _status_of(server, "PUT", "/", b"x"), [405])
    want("PUT over a folder /dir", _status_of(server, "PUT", "/dir", b"x"), [409, 405])
    want("PUT /../x", _status_of(server, "PUT", "/../x", b"x"), [403, 400])
    want("PUT /%2e%2e/x", _status_of(server, "PUT", "/%2e%2e/x", b"x"), [403, 400])
    want("PUT /dir/../../x", _status_of(server, "PUT", "/dir/../../x", b"x"), [403, 400])
    want("PUT to a temp-file name", _status_of(server, "PUT", "/.x.dp-upload-1-2", b"x"), [403])
    want("PUT to a temp-file name in a folder", _status_of(server, "PUT", "/dir/.old.txt.dp-upload-77-0", b"x"), [403])
    want("PUT /metrics", _status_of(server, "PUT", "/metrics", b"x"), [405])
    want("PUT /_datapump/x", _status_of(server, "PUT", "/_datapump/x", b"x"), [405])
    # Symlinks out of the root: a folder link must not carry an upload outside; a file link may
    # be replaced by the upload (rename does not follow it) or refused, never written through.
    outside = ctx.tmp / f"ingest-outside-{ctx.factory.name.replace('/', '-')}"
    shutil.rmtree(outside, ignore_errors=True)
    outside.mkdir()
    (outside / "victim.txt").write_bytes(b"outside\n")
    os.symlink(outside, root / "outdir")
    os.symlink(outside / "victim.txt", root / "outfile")
    want("PUT through a folder symlink out of the root", _status_of(server, "PUT", "/outdir/evil.txt", b"x"),
         [403, 400])
    want("PUT through a folder symlink out of the root (replacing)",
         _status_of(server, "PUT", "/outdir/victim.txt", b"x"), [403, 400])
    _status_of(server, "PUT", "/outfile", b"x")
    names = sorted(p.name for p in outside.iterdir())
    if names != ["victim.txt"] or (outside / "victim.txt").read_bytes() != b"outside\n":
        bad.append(f"PUTs through symlinks out of the root changed the folder outside: {names}")
    (root / "outdir").unlink()
    (root / "outfile").unlink(missing_ok=True)
    for framing in [b"zz\r\nhello\r\n0\r\n\r\n", b"5\r\nhelloXX0\r\n\r\n", b"-5\r\nhello\r\n0\r\n\r\n",
                    b"fffffffffffffffffffff\r\nhello\r\n0\r\n\r\n", b"5\nhello\n0\n\n"]:
        with Conn(server.port, timeout=10) as c:
            c.send(_put_head("/framing.bin", chunked=True) + framing)
            try:
                r = _answer(c, f"malformed chunked body {framing[:24]!r}", timeout=5)
            except CheckFailed as e:
                bad.append(str(e))
                continue
            if r.status != 400:
                bad.append(f"malformed chunked body {framing[:24]!r}: {r.status} (want 400)")
    # Framing out of proportion to the data: 4 KiB extensions on 1-byte chunks, 160 KiB of them.
    flood = (b"1;" + b"x" * 4000 + b"\r\nA\r\n") * 40 + b"0\r\n\r\n"
    with Conn(server.port, timeout=10) as c:
        c.send(_put_head("/framing.bin", chunked=True))
        sent = _send_paced(c, flood, 8 * KIB, 0.002)
        try:
            r = _answer(c, "a chunk-extension flood", timeout=5)
            if r.status != 400 or sent >= len(flood):
                bad.append(f"a chunk-extension flood: {r.status} after {sent} of {len(flood)} bytes (want 400 early)")
        except CheckFailed as e:
            bad.append(str(e))
    if _on_disk(root, "/framing.bin") is not None:
        bad.append("a malformed chunked body left /framing.bin")
    # The folder: nothing but what was meant.
    files = sorted(str(p.relative_to(root)) for p in root.rglob("*"))
    if files != ["dir", "ok.bin", "old.txt", "t.txt"]:
        bad.append(f"the folder after the refusals holds {files}, want ['dir', 'ok.bin', 'old.txt', 't.txt']")
    expect(not bad, "; ".join(bad))


# ---------------------------------------------------------------------------------------------
# 5. Bodies shorter and longer than declared

@check("ingest/short-body", nginx=NGINX)
def _(ctx):
    root = _root(ctx, "short")
    old = _rand(51, 300 * KIB)
    (root / "old.bin").write_bytes(old)
    server = _daemon(ctx, root)
    failed = 0
    for path, size, half in [("/old.bin", 2 * MIB, MIB), ("/new.bin", 2 * MIB, MIB), ("/old.bin", 4000, 2000),
                             ("/new.bin", 4000, 1)]:
        data = _rand(52, size)
        with Conn(server.port, timeout=10) as c:
            c.send(_put_head(path, size))
            _send_paced(c, data[:half], 64 * KIB, 0.005)
            time.sleep(0.1)  # the daemon has the half before it sees the close
        failed += 1
        _wait_metric(server, FAILED, failed)
        what = f"PUT {path} declaring {size} bytes, {half} sent, then closed"
        expect(_on_disk(root, "/old.bin") == old, f"{what}: the old /old.bin changed: "
                                                 f"{_diff(_on_disk(root, '/old.bin'), old)}")
        expect(_on_disk(root, "/new.bin") is None, f"{what}: /new.bin exists")
        expect(wait_until(lambda: not _temps(root), 2), f"{what}: temp files left: {_temps(root)}")
        expect(wait_until(lambda: _sample(server, IN_PROGRESS) == 0, 2),
               f"{what}: {IN_PROGRESS} {_sample(server, IN_PROGRESS)}, want 0")
        r = fetch(server, "GET", path)
        want = 200 if path == "/old.bin" else 404
        expect(r.status == want and (path != "/old.bin" or r.body == old), f"{what}: then GET {path}: {r.brief()}")


@check("ingest/long-body-pipelined", nginx=NGINX)
def _(ctx):
    # Bytes past the declared length are the next request on a keep-alive connection: a valid
    # one is answered, garbage gets 400. Small bodies (in the head's receive) and large ones
    # (received by the ingest).
    root = _root(ctx, "long")
    (root / "other.txt").write_bytes(b"another file\n")
    server = _daemon(ctx, root)
    for size in [100, 3 * MIB + 1]:
        data = _rand(61 + size, size)
        path = f"/long-{size}.bin"
        with Conn(server.port, timeout=20) as c:
            c.send(_put_head(path, size) + data + request("GET", "/other.txt"))
            r = _answer(c, f"PUT {path} ({size} bytes) + a pipelined GET")
            expect(r.status == 201, f"PUT {path} ({size} bytes) + a pipelined GET: {r.brief()}, want 201")
            r = _answer(c, f"the GET pipelined behind PUT {path} ({size} bytes)")
            expect(r.status == 200 and r.body == b"another file\n",
                   f"the GET pipelined behind PUT {path} ({size} bytes): {r.brief()}, want 200 'another file'")
        _expect_file(root, path, data, f"PUT {path} with a pipelined GET")
        with Conn(server.port, timeout=20) as c:
            c.send(_put_head(path, size) + data + b"\x16\x03\x01garbage that is no request\r\n\r\n")
            r = _answer(c, f"PUT {path} ({size} bytes) + garbage")
            expect(r.status == 204, f"PUT {path} ({size} bytes) replacing + garbage: {r.brief()}, want 204")
            r = _answer(c, f"the garbage behind PUT {path} ({size} bytes)")
            expect(r.status == 400, f"the garbage behind PUT {path} ({size} bytes): {r.brief()}, want 400")
        _expect_file(root, path, data, f"PUT {path} with garbage behind it")
    _expect_no_temps(root, "after the long bodies")


@check("ingest/stalled-upload-408", nginx=NGINX)
def _(ctx):
    # A client that stops sending mid-body: 408 after --idle-timeout-ms, and nothing left.
    root = _root(ctx, "stalled")
    old = _rand(55, 50 * KIB)
    (root / "old.bin").write_bytes(old)
    server = _daemon(ctx, root, "--idle-timeout-ms", "500")
    for path in ["/old.bin", "/new.bin"]:
        with Conn(server.port, timeout=10) as c:
            c.send(_put_head(path, MIB))
            _send_paced(c, _rand(56, 100 * KIB), 64 * KIB, 0)
            t0 = time.monotonic()
            r = _answer(c, f"PUT {path} stalled after 100 KiB of 1 MiB", timeout=5)
            took = time.monotonic() - t0
            expect(r.status == 408, f"PUT {path} stalled after 100 KiB (--idle-timeout-ms 500): {r.brief()}, want 408")
            expect(c.closed_by_peer(5), f"after the 408 for the stalled PUT {path} the connection stays open")
        expect(took < 3, f"the 408 for a stalled PUT came after {took:.1f} s (--idle-timeout-ms 500)")
        expect(wait_until(lambda: not _temps(root), 2), f"stalled PUT {path}: temp files left: {_temps(root)}")
    expect(_on_disk(root, "/old.bin") == old and _on_disk(root, "/new.bin") is None,
           "stalled PUTs changed the folder")
    _wait_metric(server, FAILED, 2)


# ---------------------------------------------------------------------------------------------
# 6. Load-and-play

def _follow(ctx, tag, chunked, cut):
    """A slow raw upload of 4 MiB with a curl GET following it."""
    root = _root(ctx, f"follow-{tag}")
    server = _daemon(ctx, root)
    size = 4 * MIB
    data = _rand(71 + len(tag), size)
    path = f"/live-{tag}.bin"
    wire = _chunked(data, [96 * KIB + 3, 5, 64 * KIB], extensions=False, trailer=False) if chunked else data
    stop_at = len(wire) // 2 if cut else len(wire)
    piece = 96 * KIB
    with Conn(server.port, timeout=20) as c:
        c.send(_put_head(path, None if chunked else size, chunked))
        sent = _send_paced(c, wire[:piece], piece, 0)
        _wait_following(server, path)
        f = _Follower(ctx, server, path, tag)
        expect(wait_until(lambda: f.status() is not None or not f.running(), 5),
               f"the GET of {path} got no head within 5 s while it was uploaded")
        while sent < stop_at:
            n = min(piece, stop_at - sent)
            if sent + n == len(wire):
                expect(f.running(), f"the GET of {path} ended (curl exit {f.proc.poll()}: {f.error()}) before the "
                                    f"upload's last bytes were sent")
            try:
                c.sock.sendall(wire[sent:sent + n])
            except OSError as e:
                raise CheckFailed(f"upload of {path}: sending failed after {sent} bytes: {e}") from None
            sent += n
            time.sleep(0.015)
        if cut:
            # An abortive close (RST) for the identity upload, an orderly one (FIN) for the chunked.
            if not chunked:
                c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        else:
            r = _answer(c, f"the slow upload of {path}")
            expect(r.status == 201, f"the slow upload of {path}: {r.brief()}, want 201")
    code = f.wait(30)
    h, body = f.headers(), f.body()
    what = f"GET {path} following its {'chunked ' if chunked else ''}upload{' (cut)' if cut else ''}"
    expect(f.status() == 200 and h.get("x-datapump-upload") == "in-progress",
           f"{what}: status {f.status()}, X-Datapump-Upload {h.get('x-datapump-upload')!r}")
    if chunked:
        expect(h.get("transfer-encoding", "").lower() == "chunked" and "content-length" not in h,
               f"{what}: headers {h}: want Transfer-Encoding: chunked and no Content-Length")
    else:
        expect(h.get("content-length") == str(size), f"{what}: Content-Length {h.get('content-length')!r}, "
                                                     f"want {size}")
    if cut:
        expect(code != 0, f"{what}: curl exit 0 with {len(body)} bytes: the cut must show as a truncated transfer")
        expect(len(body) < size and body == data[:len(body)],
               f"{what}: {len(body)} bytes, {'not ' if body != data[:len(body)] else ''}a prefix of the upload")
        _wait_metric(server, FAILED, 1)
        expect(_on_disk(root, path) is None, f"{what}: the file exists after the cut upload")
        _expect_no_temps(root, what)
        ctx.note(f"{tag}: curl exit {code} after {len(body)} bytes ({f.error()[:60]})")
    else:
        expect(code == 0, f"{what}: curl exit {code} ({f.error()})")
        expect(body == data, f"{what}: body {_diff(body, data)}")
        _expect_file(root, path, data, what)


@check("ingest/follow-content-length", nginx=NGINX)
def _(ctx):
    _follow(ctx, "identity", chunked=False, cut=False)


@check("ingest/follow-chunked", nginx=NGINX)
def _(ctx):
    _follow(ctx, "chunked", chunked=True, cut=False)


@check("ingest/follow-cut", nginx=NGINX)
def _(ctx):
    _follow(ctx, "cut-identity", chunked=False, cut=True)


@check("ingest/follow-cut-chunked", nginx=NGINX)
def _(ctx):
    _follow(ctx, "cut-chunked", chunked=True, cut=True)


# ---------------------------------------------------------------------------------------------
# 7. Readers of the previous version

@check("ingest/replace-under-slow-reader", nginx=NGINX)
def _(ctx):
    root = _root(ctx, "replace")
    size = 16 * MIB
    old, new = _rand(81, size), _rand(82, size)
    (root / "movie.bin").write_bytes(old)
    server = _daemon(ctx, root)
    # Paced by the server (?rate) and by curl: the daemon still reads the old file when the new
    # one takes its name (16 MiB at 4 MB/s: about 4 s).
    slow = _Follower(ctx, server, "/movie.bin", "slow", ["--limit-rate", "4M"], query="rate=4M")
    expect(wait_until(lambda: slow.received() >= MIB or not slow.running(), 10),
           f"the slow GET got {slow.received()} bytes in 10 s (curl exit {slow.proc.poll()}: {slow.error()})")
    status, _, r = _curl_put(server, "/movie.bin", _src(ctx, new, "new"))
    expect(r.returncode == 0 and status == 204, f"PUT over /movie.bin during a slow GET: curl exit {r.returncode}, "
                                                f"status {status}, want 204")
    at_publish = slow.received()
    expect(slow.running() and at_publish < size - 4 * MIB,
           f"the slow GET had {at_publish} of {size} bytes when the PUT was answered: it must still be reading")
    _expect_get(ctx, server, "/movie.bin", new, "GET after the PUT")
    r2 = fetch(server, "GET", "/movie.bin", {"Range": f"bytes={size - 1000}-"})
    expect(r2.status == 206 and r2.body == new[-1000:], f"Range GET after the PUT: {r2.brief()}, body "
                                                       f"{'old' if r2.body == old[-1000:] else 'wrong'}")
    code = slow.wait(30)
    body = slow.body()
    expect(code == 0 and body == old,
           f"the slow reader of the previous version: curl exit {code} ({slow.error()}), body "
           f"{'= the NEW version' if body == new else _diff(body, old)}")
    ctx.note(f"the new version was published at {at_publish / MIB:.1f} MiB of the old one's 16 MiB")
    _expect_no_temps(root, "after the replacement")


# ---------------------------------------------------------------------------------------------
# 8. Crash mid-upload

@check("ingest/crash-leftovers", nginx=NGINX)
def _(ctx):
    root = _root(ctx, "crash")
    old = _rand(91, 2 * MIB + 17)
    (root / "victim.bin").write_bytes(old)
    rng = random.Random(92)
    body = _rand(93, 20 * MIB)
    piece = 256 * KIB
    removed_total, left_before = 0, 0
    delays = []
    for i in range(8):
        server = _daemon(ctx, root)
        removed = _sample(server, LEFTOVERS)
        expect(removed == left_before,
               f"restart {i}: {LEFTOVERS} {removed}, but {left_before} temp files were there before it")
        removed_total += removed
        expect(not _temps(root), f"restart {i}: temp files survived the restart: {_temps(root)}")
        _expect_file(root, "/victim.bin", old, f"restart {i} after kill -9 mid-upload")
        delay = rng.uniform(0, 0.3)
        delays.append(delay)
        with Conn(server.port, timeout=10) as c:
            c.send(_put_head("/victim.bin", len(body)))
            # Throttled (about 6 MB/s: 20 MiB take >3 s): the kill comes long before the end.
            appeared = {}

            def due():
                if "t" not in appeared and _temps(root):
                    appeared["t"] = time.monotonic()
                return "t" in appeared and time.monotonic() - appeared["t"] >= delay
            sent = _send_paced(c, body, piece, 0.04, until=due)
            expect(due(), f"iteration {i}: no temp file appeared while {sent} bytes were sent")
            expect(sent < len(body), f"iteration {i}: the whole body was sent before the kill")
            server.stop(signal.SIGKILL)
        left_before = len(_temps(root))
        expect(left_before == 1, f"iteration {i}: after kill -9, temp files {_temps(root)}: want the one of "
                                 f"the interrupted upload")
    server = _daemon(ctx, root)
    removed = _sample(server, LEFTOVERS)
    removed_total += removed
    expect(removed == left_before, f"the last restart: {LEFTOVERS} {removed}, want {left_before}")
    expect(not _temps(root), f"after the last restart: temp files {_temps(root)}")
    _expect_file(root, "/victim.bin", old, "after 8 kills mid-upload")
    _expect_get(ctx, server, "/victim.bin", old, "after 8 kills mid-upload")
    expect(removed_total == 8, f"{LEFTOVERS} summed over the restarts: {removed_total}, want 8")
    ctx.note(f"kills {', '.join(f'{d * 1000:.0f}' for d in delays)} ms after the temp file appeared")


# ---------------------------------------------------------------------------------------------
# 9. Full disk

def _umount(path):
    for _ in range(50):
        if subprocess.run(["umount", str(path)], capture_output=True).returncode == 0:
            return None
        if not os.path.ismount(path):
            return None
        time.sleep(0.1)
    r = subprocess.run(["umount", "-l", str(path)], capture_output=True)
    return None if r.returncode == 0 else f"umount {path}: {r.stderr.decode().strip()}"


@check("ingest/disk-full-507", nginx=NGINX)
def _(ctx):
    mnt = ctx.tmp / f"tmpfs-{ctx.factory.name.replace('/', '-')}"
    mnt.mkdir(exist_ok=True)
    r = run(["mount", "-t", "tmpfs", "-o", "size=4m,mode=0755", "tmpfs", str(mnt)], 10)
    expect(r.returncode == 0, f"mount -t tmpfs -o size=4m (needed for this check): exit {r.returncode}: "
                              f"{r.stderr.decode().strip()}")
    servers = []
    try:
        old = _rand(101, MIB)
        (mnt / "old.bin").write_bytes(old)
        server = _daemon(ctx, mnt)
        servers.append(server)
        big = _rand(102, 8 * MIB)
        cases = [("/new.bin", False), ("/old.bin", False), ("/new-chunked.bin", True), ("/old.bin", True)]
        for n, (path, chunked) in enumerate(cases):
            what = f"{'chunked ' if chunked else ''}PUT of 8 MiB to {path} on a 4 MiB tmpfs holding 1 MiB"
            wire = _chunked(big, [128 * KIB], extensions=False, trailer=False) if chunked else big
            resp = _put_raw(server, path, wire, chunked=chunked, piece=64 * KIB)
            expect(resp.status == 507, f"{what}: {resp.brief()}, want 507")
            _expect_file(mnt, "/old.bin", old, what)
            expect(wait_until(lambda: not _temps(mnt), 2), f"{what}: temp files left: {_temps(mnt)}")
            expect(_on_disk(mnt, path) is None or path == "/old.bin", f"{what}: {path} exists")
            _wait_metric(server, FAILED, n + 1)
            # The space came back: 2 MiB fits only if the failed upload's ~3 MiB were freed.
            fits = _rand(103 + n, 2 * MIB)
            status, _, r = _curl_put(server, "/fits.bin", _src(ctx, fits, "fits"))
            expect(status in (201, 204), f"after the 507 ({what}), a 2 MiB PUT: {status} (curl exit "
                                         f"{r.returncode}), want 201/204: the failed upload's space was not given back")
            _expect_file(mnt, "/fits.bin", fits, f"2 MiB PUT after {what}")
            d = fetch(server, "DELETE", "/fits.bin")
            expect(d.status == 204, f"DELETE /fits.bin: {d.brief()}")
        _expect_get(ctx, server, "/old.bin", old, "after the 507s")
    finally:
        for s in servers:
            s.stop(signal.SIGKILL)
        err = _umount(mnt)
    expect(err is None, err or "")


# ---------------------------------------------------------------------------------------------
# 10. DELETE, and a second writer

@check("ingest/delete", nginx=NGINX)
def _(ctx):
    root = _root(ctx, "delete")
    (root / "dir").mkdir()
    server = _daemon(ctx, root)
    data = _rand(111, 10 * KIB)
    r = _put_raw(server, "/gone.bin", data)
    expect(r.status == 201, f"PUT /gone.bin: {r.brief()}")
    r = fetch(server, "DELETE", "/gone.bin")
    expect(r.status == 204, f"DELETE /gone.bin: {r.brief()}, want 204")
    expect(_on_disk(root, "/gone.bin") is None, "DELETE /gone.bin: 204, but the file is still there")
    r = fetch(server, "DELETE", "/gone.bin")
    expect(r.status == 404, f"DELETE /gone.bin again: {r.brief()}, want 404")
    r = fetch(server, "GET", "/gone.bin")
    expect(r.status == 404, f"GET after DELETE: {r.brief()}, want 404")
    for target, want in [("/../etc/passwd", (403, 400)), ("/.gone.bin.dp-upload-1-1", (404, 403)), ("/dir", (409,)),
                         ("/", (405,))]:
        r = fetch(server, "DELETE", target)
        expect(r.status in want, f"DELETE {target}: {r.brief()}, want {'/'.join(map(str, want))}")
    expect((root / "dir").is_dir(), "DELETE /dir removed the folder")
    outside = ctx.tmp / f"ingest-outside-del-{ctx.factory.name.replace('/', '-')}"
    shutil.rmtree(outside, ignore_errors=True)
    outside.mkdir()
    (outside / "victim.txt").write_bytes(b"outside\n")
    os.symlink(outside, root / "outdir")
    r = fetch(server, "DELETE", "/outdir/victim.txt")
    expect(r.status in (403, 404) and (outside / "victim.txt").exists(),
           f"DELETE through a folder symlink out of the root: {r.brief()}, the file outside "
           f"{'survived' if (outside / 'victim.txt').exists() else 'was DELETED'}; want 403")

    # During an upload of the name: 409, and the upload completes untouched.
    body = _rand(112, 2 * MIB)
    with Conn(server.port, timeout=20) as c:
        c.send(_put_head("/busy.bin", len(body)))
        sent = _send_paced(c, body[:256 * KIB], 64 * KIB, 0)
        _wait_following(server, "/busy.bin")
        r = fetch(server, "DELETE", "/busy.bin")
        expect(r.status == 409, f"DELETE /busy.bin during its upload: {r.brief()}, want 409")
        _send_paced(c, body[sent:], 256 * KIB, 0)
        r = _answer(c, "the upload of /busy.bin after a DELETE of it was refused")
        expect(r.status == 201, f"the upload of /busy.bin after a refused DELETE: {r.brief()}, want 201")
    _expect_file(root, "/busy.bin", body, "upload during a refused DELETE")
    r = fetch(server, "DELETE", "/busy.bin")
    expect(r.status == 204 and _on_disk(root, "/busy.bin") is None, f"DELETE /busy.bin after its upload: {r.brief()}")


@check("ingest/long-name", nginx=NGINX)
def _(ctx):
    # A file name of 255 bytes (NAME_MAX) is a name like any other: served by GET, so it can be
    # uploaded, replaced and deleted. (The temp file beside it cannot be '.NAME.dp-upload-...'.)
    root = _root(ctx, "longname")
    server = _daemon(ctx, root)
    for n in [200, 240, 255]:
        path = "/" + ("L" * (n - 4)) + ".bin"
        data = _rand(130 + n, 5000)
        r = _put_raw(server, path, data)
        expect(r.status == 201, f"PUT of a {n}-byte file name: {r.brief()} {r.body[:100]!r}, want 201")
        _expect_file(root, path, data, f"PUT of a {n}-byte file name")
        r = _put_raw(server, path, data[::-1])
        expect(r.status == 204, f"PUT replacing a {n}-byte file name: {r.brief()}, want 204")
        _expect_file(root, path, data[::-1], f"PUT replacing a {n}-byte file name")
    _expect_no_temps(root, "after the long names")


@check("ingest/leftovers-at-start-up", nginx=NGINX)
def _(ctx):
    # Temp files of uploads a crash interrupted, planted before start-up: a writable daemon
    # removes every one under the root (nested too) and nothing else; a read-only one removes
    # none, and neither serves nor lists them.
    root = _root(ctx, "leftovers")
    (root / "a" / "b").mkdir(parents=True)
    outside = ctx.tmp / f"ingest-outside-left-{ctx.factory.name.replace('/', '-')}"
    shutil.rmtree(outside, ignore_errors=True)
    outside.mkdir()
    (outside / ".o.dp-upload-5-5").write_bytes(b"outside")
    os.symlink(outside, root / "outdir")
    leftovers = [".top.bin.dp-upload-123-0", "a/.mid.bin.dp-upload-9-77", "a/b/.deep.dp-upload-1-2"]
    keep = ["top.bin", "a/.hidden", "a/b/deep.dp-upload-1-2", "a/.x.dp-upload-1-", "a/.y.dp-upload-z-1",
            ".dp-upload-1-2", "a/b/.z.dp-upload-1-2.txt"]
    for rel in leftovers + keep:
        (root / rel).write_bytes(b"bytes of " + rel.encode())
    # --serve-dotfiles: temp files must stay hidden even where other dot-files are served.
    ro = _daemon(ctx, root, "--directory-listing", "--serve-dotfiles", writable=False)
    expect(_sample(ro, LEFTOVERS) == 0, f"a read-only daemon: {LEFTOVERS} {_sample(ro, LEFTOVERS)}")
    expect(all((root / rel).exists() for rel in leftovers), "a daemon without --writable removed temp files")
    for rel in leftovers:
        r = fetch(ro, "GET", "/" + rel)
        expect(r.status == 404, f"GET /{rel} (an upload temp file): {r.brief()}, want 404")
    r = fetch(ro, "GET", "/a/")
    expect(r.status == 200 and b".mid.bin" not in r.body and b".hidden" in r.body,
           f"the listing of /a/: {r.brief()}: want it without the temp file, with .hidden")
    ro.stop(signal.SIGKILL)
    server = _daemon(ctx, root)
    removed = _sample(server, LEFTOVERS)
    gone = [rel for rel in leftovers if not (root / rel).exists()]
    kept = [rel for rel in keep if (root / rel).exists()]
    expect(removed == len(leftovers) and gone == leftovers,
           f"start-up with --writable: {LEFTOVERS} {removed}, removed {gone}: want all of {leftovers}")
    expect(kept == keep, f"start-up with --writable removed files that are no temp files: "
                         f"{sorted(set(keep) - set(kept))}")
    expect((outside / ".o.dp-upload-5-5").exists(), "start-up removed a temp-like file outside the root "
                                                    "(through a folder symlink)")


@check("ingest/failed-start-leaves-leftovers", nginx=NGINX)
def _(ctx):
    # A start-up that fails (its port is taken by another program) changes nothing under the
    # root: the temp file of an interrupted upload stays until a start-up that serves removes it.
    root = _root(ctx, "failed-start")
    left = root / ".victim.bin.dp-upload-4242-1"
    left.write_bytes(b"an interrupted upload")
    with socket.socket() as taken:  # no SO_REUSEPORT: datapumpd cannot share the port
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        try:
            r = subprocess.run([ctx.factory.binary, "--root", str(root), "--writable", "--listen", f"127.0.0.1:{port}",
                                "--provider", ctx.factory.provider, "--send-path", ctx.factory.send_path,
                                "--admin-listen", "off"], capture_output=True, timeout=30)
        except subprocess.TimeoutExpired:
            expect(False, f"datapumpd on a taken port 127.0.0.1:{port} did not stop within 30 s")
    expect(r.returncode != 0, f"datapumpd on a taken port: exit {r.returncode}, want a failure")
    expect(b"in use" in r.stdout + r.stderr, f"datapumpd on a taken port says why: {(r.stdout + r.stderr)[-300:]!r}")
    expect(left.exists(), "a start-up that failed removed a temp file under the root")
    server = _daemon(ctx, root)
    expect(_sample(server, LEFTOVERS) == 1 and not left.exists(),
           f"the next start-up: {LEFTOVERS} {_sample(server, LEFTOVERS)}, the temp file still there: {left.exists()}")


@check("ingest/second-writer-409", nginx=NGINX)
def _(ctx):
    root = _root(ctx, "second")
    old = b"old version\n"
    (root / "same.bin").write_bytes(old)
    server = _daemon(ctx, root)
    first = _rand(121, 2 * MIB)
    with Conn(server.port, timeout=20) as c:
        c.send(_put_head("/same.bin", len(first)))
        sent = _send_paced(c, first[:128 * KIB], 64 * KIB, 0)
        _wait_following(server, "/same.bin")
        r = _put_raw(server, "/same.bin", b"second writer")
        expect(r.status == 409, f"a second PUT to /same.bin while one runs: {r.brief()}, want 409")
        status, _, cr = _curl_put(server, "/same.bin", _src(ctx, _rand(122, 100 * KIB), "second"))
        expect(status == 409, f"a second PUT (curl, Expect: 100-continue) to /same.bin while one runs: {status}, "
                              f"exit {cr.returncode}, want 409")
        _send_paced(c, first[sent:], 256 * KIB, 0)
        r = _answer(c, "the first upload of /same.bin")
        expect(r.status == 204, f"the first upload of /same.bin: {r.brief()}, want 204")
    _expect_file(root, "/same.bin", first, "after a second writer was refused")
    _expect_no_temps(root, "after a second writer was refused")


# ---------------------------------------------------------------------------------------------
# 11. Bounded uploads (issue 14, "datapumpd faces a hostile network")

class _ConnFrom(Conn):
    """A raw connection from another loopback source address (127.0.0.N): another client IP as
    far as the daemon's per-address caps are concerned."""

    def __init__(self, port, source, timeout=10):  # noqa: super().__init__ would bind 127.0.0.1
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout, source_address=(source, 0))
        self.buf = bytearray()


def _spawn_logged(ctx, argv, tag):
    """datapumpd with argv, its output in a log of its own; (process, log path)."""
    log = ctx.tmp / f"ingest-{tag}-{ctx.factory.name.replace('/', '-')}.log"
    log.unlink(missing_ok=True)
    with open(log, "wb") as out:
        p = spawn(argv, stdout=out, stderr=subprocess.STDOUT)
    return p, log


@check("ingest/writable-public-needs-token", nginx=NGINX)
def _(ctx):
    # --writable on an address others reach, without a token, does not start (exit 2, naming the
    # address and both ways out); --insecure-writable starts it, with a warning; loopback is fine.
    root = _root(ctx, "public")
    f = ctx.factory
    base = [f.binary, "--root", str(root), "--provider", f.provider, "--send-path", f.send_path, "--writable"]
    for host in ["0.0.0.0", "[::]"]:
        port = free_port()
        r = run(base + ["--listen", f"{host}:{port}"], 10)
        err = r.stderr.decode(errors="replace")
        expect(r.returncode == 2, f"--writable --listen {host}:{port} without a token: exit {r.returncode}, want 2 "
                                  f"({err.strip()[:300]})")
        for part in [f"{host}:{port}", "--upload-token", "--insecure-writable"]:
            expect(part in err, f"--writable --listen {host}:{port} without a token: the message does not name "
                                f"{part!r}: {err.strip()[:400]}")
    port = free_port()
    p, log = _spawn_logged(ctx, base + ["--listen", f"0.0.0.0:{port}", "--insecure-writable"], "insecure")
    try:
        server = Server(p, port, log, "datapumpd")

        def up():
            if not server.alive():
                return "dead"
            try:
                return fetch(server, "HEAD", "/", timeout=1) and "up"
            except CheckFailed:
                return None
        expect(wait_until(up, 10) == "up", f"--insecure-writable on 0.0.0.0:{port} did not start: "
                                           f"{server.log_tail()}")
        expect(wait_until(lambda: "INSECURE" in server.log_tail(), 5),
               f"--insecure-writable started without a warning in its log: {server.log_tail()}")
        r = _put_raw(server, "/anon.txt", b"anonymous")
        expect(r.status == 201, f"a PUT without a token under --insecure-writable: {r.brief()}, want 201")
    finally:
        kill(p)


@check("ingest/default-max-upload", nginx=NGINX)
def _(ctx):
    # Without --max-upload a body over 4 GiB is refused (413) before a byte of it is read;
    # --max-upload 0 lifts the limit (the interim 100 Continue comes).
    root = _root(ctx, "default-max")
    server = _daemon(ctx, root)
    for size, want in [(4 * 1024 ** 3 + 1, 413), (5 * 1024 ** 4, 413), (4 * 1024 ** 3, 100)]:
        with Conn(server.port, timeout=10) as c:
            c.send(_put_head("/huge.bin", size, extra=[("Expect", "100-continue")]))
            r = _answer(c, f"PUT of {size} bytes with the default --max-upload", timeout=5)
            expect(r.status == want, f"PUT of {size} bytes with the default --max-upload: {r.brief()}, want {want}")
            if want == 413:
                expect(c.closed_by_peer(5), f"after the 413 for {size} bytes the connection stays open")
    unlimited = _daemon(ctx, root, "--max-upload", "0")
    with Conn(unlimited.port, timeout=10) as c:
        c.send(_put_head("/huge.bin", 5 * 1024 ** 4, extra=[("Expect", "100-continue")]))
        r = _answer(c, "PUT of 5 TiB with --max-upload 0", timeout=5)
        expect(r.status == 100, f"PUT of 5 TiB with --max-upload 0 (no limit): {r.brief()}, want 100 Continue")
    expect(wait_until(lambda: not _temps(root), 5), f"temp files left: {_temps(root)}")
    expect(_on_disk(root, "/huge.bin") is None, "a refused or abandoned upload left /huge.bin")


@check("ingest/upload-caps-503", nginx=NGINX)
def _(ctx):
    # --max-uploads 2 --max-uploads-per-ip 1: a second upload from one address, and a third from
    # anywhere, get 503 with Retry-After before their body is read (instead of 100 Continue);
    # a slot comes back when an upload ends.
    root = _root(ctx, "caps")
    server = _daemon(ctx, root, "--max-uploads", "2", "--max-uploads-per-ip", "1")
    bodies = {n: _rand(140 + i, 300 * KIB) for i, n in enumerate(["a", "b", "c", "d"])}
    held = []
    try:
        for name, source, refused, why in [("a", "127.0.0.1", "x", "--max-uploads-per-ip"),
                                           ("b", "127.0.0.2", "y", "--max-uploads")]:
            c = _ConnFrom(server.port, source, 20)
            held.append(c)
            c.send(_put_head(f"/{name}.bin", len(bodies[name])) + bodies[name][:100 * KIB])
            _wait_following(server, f"/{name}.bin")
            # a from .1 holds .1's only slot; with b from .2 both global slots are taken.
            source = "127.0.0.1" if refused == "x" else "127.0.0.3"
            with _ConnFrom(server.port, source) as c:
                name = refused
                c.send(_put_head(f"/{name}.bin", 1000, extra=[("Expect", "100-continue")]))
                r = _answer(c, f"a PUT from {source} over {why}", timeout=5)
                expect(r.status == 503 and r.header("retry-after") is not None,
                       f"a PUT from {source} over {why}: {r.brief()}, Retry-After {r.header('retry-after')!r}; "
                       f"want 503 with Retry-After")
                expect(f"({why})".encode() in r.body, f"the 503 over {why} does not say which cap: {r.body!r}")
                expect(c.closed_by_peer(5), f"after the 503 over {why} the connection stays open")
        # The first upload ends: its address and a global slot are free again.
        held[0].send(bodies["a"][100 * KIB:])
        r = _answer(held[0], "the first upload")
        expect(r.status == 201, f"the first upload: {r.brief()}, want 201")
        for name, source in [("c", "127.0.0.1"), ("d", "127.0.0.3")]:
            if name == "d":
                held[1].send(bodies["b"][100 * KIB:])
                r = _answer(held[1], "the second upload")
                expect(r.status == 201, f"the second upload: {r.brief()}, want 201")
            with _ConnFrom(server.port, source, 20) as c:
                c.send(_put_head(f"/{name}.bin", len(bodies[name])) + bodies[name])
                r = _answer(c, f"a PUT from {source} once a slot was free")
                expect(r.status == 201, f"a PUT from {source} once a slot was free: {r.brief()}, want 201")
    finally:
        for c in held:
            c.close()
    for name in "abcd":
        _expect_file(root, f"/{name}.bin", bodies[name], f"PUT /{name}.bin under the caps")
    expect(_on_disk(root, "/x.bin") is None and _on_disk(root, "/y.bin") is None, "a refused upload left its file")
    _expect_no_temps(root, "after the caps")


@check("ingest/upload-min-rate-408", nginx=NGINX)
def _(ctx):
    # An upload that averages less than --upload-min-rate over a window is cut with 408 and its
    # temp file removed, though bytes keep coming (each would have restarted an idle timer); one
    # that keeps the rate is not cut, however long it takes.
    root = _root(ctx, "min-rate")
    old = _rand(150, 40 * KIB)
    (root / "old.bin").write_bytes(old)
    server = _daemon(ctx, root, "--upload-min-rate", "4k", "--upload-rate-window-ms", "500")
    with Conn(server.port, timeout=10) as c:
        c.send(_put_head("/old.bin", MIB))
        t0 = time.monotonic()
        _send_paced(c, _rand(151, MIB), 1, 0.1, until=lambda: time.monotonic() - t0 > 8)
        r = _answer(c, "an upload trickling a byte every 100 ms", timeout=5)
        took = time.monotonic() - t0
        expect(r.status == 408, f"an upload trickling a byte every 100 ms (--upload-min-rate 4k, window 500 ms): "
                                f"{r.brief()}, want 408")
        expect(took < 4, f"the trickling upload was cut after {took:.1f} s; want about one 500 ms window")
        expect(c.closed_by_peer(5), "after the 408 the connection stays open")
    expect(wait_until(lambda: not _temps(root), 2), f"temp files left after the 408: {_temps(root)}")
    expect(_on_disk(root, "/old.bin") == old, "the cut upload changed /old.bin")
    # 2 MiB at about 1 MB/s: four windows, each well above 4 kB/s.
    data = _rand(152, 2 * MIB)
    r = _put_raw(server, "/steady.bin", data, piece=32 * KIB, pause=0.03)
    expect(r.status == 201, f"a steady upload at about 1 MB/s over 2 s: {r.brief()}, want 201")
    _expect_file(root, "/steady.bin", data, "a steady upload")
    ctx.note(f"the trickle was cut after {took:.2f} s")


@check("ingest/trickle-cannot-starve", nginx=NGINX)
def _(ctx):
    # A small arena (16 buffers of 256 KiB). 16 uploads from 16 addresses trickle one byte every
    # 2 s (before: each held an arena buffer for ever and the others got 408/500); a normal upload
    # that retries on 503 as Retry-After says must still complete, byte-exact, within 20 s.
    root = _root(ctx, "trickle")
    server = _daemon(ctx, root, "--cache-mib", "4", "--buffer-kib", "256", "--upload-min-rate", "4k",
                     "--upload-rate-window-ms", "1000")
    trickles = []
    answers = {}
    try:
        for i in range(16):
            c = _ConnFrom(server.port, f"127.0.0.{i + 2}", 30)
            c.send(_put_head(f"/trickle-{i}.bin", 100 * KIB) + b"x")
            trickles.append([c, time.monotonic()])

        def feed():
            now = time.monotonic()
            for i, t in enumerate(trickles):
                if i in answers:
                    continue
                if _readable(t[0].sock):
                    try:
                        answers[i] = _answer(t[0], f"trickle {i}", timeout=2).status
                    except CheckFailed:
                        answers[i] = "closed"
                elif now - t[1] >= 2:
                    try:
                        t[0].sock.sendall(b"x")
                    except OSError:
                        pass
                    t[1] = now
        data = _rand(160, 3 * MIB + 5)
        t0 = time.monotonic()
        tries, statuses, done = 0, [], None
        while time.monotonic() - t0 < 20:
            feed()
            tries += 1
            r = _put_raw(server, "/normal.bin", data, piece=256 * KIB, timeout=10)
            statuses.append(r.status)
            if r.status in (201, 204):
                done = time.monotonic() - t0
                break
            expect(r.status == 503 and r.header("retry-after") is not None,
                   f"the normal upload, try {tries}: {r.brief()} {r.body[:120]!r}; want 201, or 503 with "
                   f"Retry-After while the trickles hold the slots")
            wait = min(float(r.header("retry-after")), 0.5)  # bounded: the check has a budget
            end = time.monotonic() + wait
            while time.monotonic() < end:
                feed()
                time.sleep(0.05)
        expect(done is not None, f"the normal upload did not complete within 20 s beside 16 trickling uploads "
                                 f"(answers {statuses[-5:]} of {tries} tries)")
        _expect_file(root, "/normal.bin", data, "the normal upload beside 16 trickles")
        # Every trickle was refused (503) or cut (408), none holds anything any more.
        expect(wait_until(lambda: feed() or len(answers) == 16, 10, 0.1),
               f"trickles still running after 10 s: {sorted(set(range(16)) - set(answers))}")
        bad = {i: s for i, s in answers.items() if s not in (503, 408)}
        expect(not bad, f"trickles answered other than 503/408: {bad}")
    finally:
        for t in trickles:
            t[0].close()
    expect(wait_until(lambda: not _temps(root), 5), f"temp files left: {_temps(root)}")
    got = sorted(answers.values(), key=str)
    ctx.note(f"normal upload done after {done:.1f} s, {tries} tries; trickles: "
             f"{got.count(503)}x503 {got.count(408)}x408")


@check("ingest/replace-keeps-mode-and-owner", nginx=NGINX)
def _(ctx):
    # A PUT over an existing file keeps its permissions (0600 stays 0600) and, as root, its
    # owner; a new file is 0644 less the umask.
    root = _root(ctx, "mode")
    cases = [("private.bin", 0o600), ("group.bin", 0o640), ("exec.sh", 0o755)]
    as_root = os.geteuid() == 0
    for name, mode in cases:
        (root / name).write_bytes(b"old " + name.encode())
        os.chmod(root / name, mode)
        if as_root:
            os.chown(root / name, 65534, 65534)
    server = _daemon(ctx, root)
    bad = []
    for name, mode in cases:
        data = _rand(170 + mode, 5000)
        r = _put_raw(server, "/" + name, data)
        expect(r.status == 204, f"PUT over /{name}: {r.brief()}, want 204")
        _expect_file(root, "/" + name, data, f"PUT over /{name}")
        st = os.stat(root / name)
        if st.st_mode & 0o7777 != mode:
            bad.append(f"/{name}: mode {oct(st.st_mode & 0o7777)} after the PUT, was {oct(mode)}")
        if as_root and (st.st_uid, st.st_gid) != (65534, 65534):
            bad.append(f"/{name}: owner {st.st_uid}:{st.st_gid} after the PUT, was 65534:65534")
    umask = os.umask(0)
    os.umask(umask)
    r = _put_raw(server, "/fresh.bin", b"new")
    expect(r.status == 201, f"PUT /fresh.bin: {r.brief()}")
    got = os.stat(root / "fresh.bin").st_mode & 0o7777
    if got != 0o644 & ~umask:
        bad.append(f"a new file: mode {oct(got)}, want {oct(0o644 & ~umask)} (0644 less the umask)")
    expect(not bad, "; ".join(bad))


@check("ingest/follow-needs-token", nginx=NGINX)
def _(ctx):
    # With an upload token (--follow-uploads auto -> token), a GET of a file being uploaded
    # follows the upload only with the token; without it the upload is invisible: the previous
    # version, or 404 for a new name. --follow-uploads off hides it from everyone.
    root = _root(ctx, "follow-token")
    old = _rand(180, 20 * KIB)
    (root / "movie.bin").write_bytes(old)
    auth = [("Authorization", "Bearer t0k")]
    for flags, token_follows in [((), True), (("--follow-uploads", "off"), False)]:
        server = _daemon(ctx, root, "--upload-token", "t0k", *flags)
        bodies = {p: _rand(181 + len(p), 2 * MIB) for p in ["/movie.bin", "/new.bin"]}
        held = []
        try:
            for path, body in bodies.items():
                c = Conn(server.port, 20)
                held.append(c)
                c.send(_put_head(path, len(body), extra=auth) + body[:256 * KIB])
            expect(wait_until(lambda: _sample(server, IN_PROGRESS) == 2, 5),
                   f"{flags}: the two uploads are not in progress: {IN_PROGRESS} {_sample(server, IN_PROGRESS)}")
            r = fetch(server, "GET", "/movie.bin")
            expect(r.status == 200 and r.body == old and r.header("x-datapump-upload") is None,
                   f"{flags}: GET /movie.bin without the token during its upload: {r.brief()}, "
                   f"X-Datapump-Upload {r.header('x-datapump-upload')!r}; want the previous version")
            r = fetch(server, "GET", "/new.bin")
            expect(r.status == 404, f"{flags}: GET /new.bin without the token during its upload: {r.brief()}, want 404")
            r = fetch(server, "HEAD", "/new.bin", auth)
            followed = r.status == 200 and r.header("x-datapump-upload") == "in-progress"
            expect(followed == token_follows,
                   f"{flags}: HEAD /new.bin with the token during its upload: {r.brief()}, X-Datapump-Upload "
                   f"{r.header('x-datapump-upload')!r}; want {'in-progress' if token_follows else 'a 404'}")
            for c, (path, body) in zip(held, bodies.items()):
                c.send(body[256 * KIB:])
                r = _answer(c, f"{flags}: the upload of {path}")
                expect(r.status in (201, 204), f"{flags}: the upload of {path}: {r.brief()}")
        finally:
            for c in held:
                c.close()
        old = bodies["/movie.bin"]
        (root / "new.bin").unlink()
        server.stop(signal.SIGKILL)


@check("ingest/second-instance-keeps-live-temps", nginx=NGINX)
def _(ctx):
    # Two daemons on one root: the second one's start-up leaves the temp file of the first one's
    # upload in progress (it is locked), and that upload completes. A temp file of a killed
    # daemon (unlocked) is removed at the next start.
    root = _root(ctx, "two")
    first = _daemon(ctx, root)
    body = _rand(190, 3 * MIB)
    with Conn(first.port, timeout=20) as c:
        c.send(_put_head("/shared.bin", len(body)) + body[:256 * KIB])
        expect(wait_until(lambda: _temps(root), 5), "no temp file appeared for the upload in progress")
        live = _temps(root)
        second = _daemon(ctx, root)
        expect(_sample(second, LEFTOVERS) == 0, f"the second daemon's start-up: {LEFTOVERS} "
                                                f"{_sample(second, LEFTOVERS)}, want 0")
        expect(_temps(root) == live, f"the second daemon's start-up removed the live upload's temp file: "
                                     f"{live} -> {_temps(root)}")
        c.send(body[256 * KIB:])
        r = _answer(c, "the first daemon's upload after the second one started")
        expect(r.status == 201, f"the first daemon's upload after the second one started: {r.brief()}, want 201")
    _expect_file(root, "/shared.bin", body, "the upload across the second daemon's start-up")
    with Conn(second.port, timeout=20) as c:
        c.send(_put_head("/killed.bin", len(body)) + body[:256 * KIB])
        expect(wait_until(lambda: _temps(root), 5), "no temp file appeared for the upload to be killed")
        second.stop(signal.SIGKILL)
    expect(len(_temps(root)) == 1, f"after kill -9 mid-upload: temp files {_temps(root)}, want one")
    third = _daemon(ctx, root)
    expect(_sample(third, LEFTOVERS) == 1 and not _temps(root),
           f"start-up after a kill: {LEFTOVERS} {_sample(third, LEFTOVERS)}, temp files {_temps(root)}")
    _expect_get(ctx, third, "/shared.bin", body, "after the restarts")
