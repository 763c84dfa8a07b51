"""Serving files: whole bodies, HEAD, types, ranges, validators, keep-alive, real clients."""
import email.utils
import json
import os
import re
import shutil

from harness import (MIB, UNICODE_NAME, Conn, admin_of, check, curl, expect, fetch, get, metrics, request,
                     run, url_path, wait_until)

# ----- whole files ----------------------------------------------------------------------------

GET_FILES = ["/data.bin", "/empty.bin", "/" + UNICODE_NAME, "/sub/inner.txt", "/clip.mp4"]


def _curl_exact(ctx, path):
    out = ctx.tmp / "curl.out"
    r = curl(["-o", str(out), "-w", "%{http_code}", ctx.server.url(path)])
    expect(r.returncode == 0, f"curl {path}: exit {r.returncode}: {r.stderr.decode().strip()}")
    expect(r.stdout.decode() == "200", f"curl {path}: status {r.stdout.decode()}, want 200")
    got, want = out.read_bytes(), ctx.fx.data(path)
    expect(got == want, f"{path}: body differs from the file ({len(got)} bytes received, {len(want)} in the file"
                        f"{_first_diff(got, want)})")


def _first_diff(a, b):
    n = min(len(a), len(b))
    for i in range(0, n, 4096):
        if a[i:i + 4096] != b[i:i + 4096]:
            j = next(k for k in range(i, min(i + 4096, n)) if a[k] != b[k])
            return f"; first difference at byte {j}"
    return ""


for _p in GET_FILES:
    check(f"files/get{_p}")(lambda ctx, p=_p: _curl_exact(ctx, p))


@check("files/get/big-12MiB")
def _(ctx):
    _curl_exact(ctx, "/big.bin")


def _head(ctx, path):
    # Connection: close and read to EOF: whatever follows the head would be a leaked body.
    with Conn(ctx.server.port) as c:
        c.send(request("HEAD", url_path(path), {"Connection": "close"}))
        r = c.read_response(head_only=True)
        rest = c.read_to_eof()
    size = len(ctx.fx.data(path))
    expect(r.status == 200, f"HEAD {path}: {r.status} {r.reason}, want 200")
    expect(r.header("content-length") == str(size),
           f"HEAD {path}: Content-Length {r.header('content-length')}, want {size}")
    expect(rest == b"", f"HEAD {path}: {len(rest)} bytes after the head; a HEAD answer has no body")


for _p in ["/data.bin", "/empty.bin", "/clip.mp4"]:
    check(f"files/head{_p}")(lambda ctx, p=_p: _head(ctx, p))


@check("files/content-type")
def _(ctx):
    for path, want in [("/clip.mp4", "video/mp4"), ("/notes.txt", "text/plain"), ("/index.html", "text/html")]:
        r = fetch(ctx.server, "HEAD", url_path(path))
        ct = (r.header("content-type") or "").split(";")[0].strip().lower()
        expect(ct == want, f"HEAD {path}: Content-Type {r.header('content-type')!r}, want {want}")


@check("files/changes-on-disk-seen-at-once")
def _(ctx):
    """A file changed on disk between two requests of one connection is served as it is now:
    rewritten in place, renamed over, its folder renamed, deleted. datapumpd keeps files open
    between requests (docs/daemon.md, "Open-file cache"); nginx opens each time."""
    top = ctx.fx.root / "changes"
    shutil.rmtree(top, ignore_errors=True)  # the fixture outlives one server: a variant before may have run this
    (top / "in").mkdir(parents=True)
    f = top / "in" / "f.txt"
    f.write_bytes(b"one")
    with Conn(ctx.server.port) as c:
        def fetch_now(path):
            c.send(request("GET", path))
            r = c.read_response()
            return r.status, r.body

        for _ in range(3):
            got = fetch_now("/changes/in/f.txt")
            expect(got == (200, b"one"), f"GET /changes/in/f.txt: {got}, want 200 b'one'")
        f.write_bytes(b"two-two")
        got = fetch_now("/changes/in/f.txt")
        expect(got == (200, b"two-two"), f"after a rewrite in place: {got}, want 200 b'two-two'")
        (top / "in" / "f.new").write_bytes(b"three")
        os.rename(top / "in" / "f.new", f)
        got = fetch_now("/changes/in/f.txt")
        expect(got == (200, b"three"), f"after a rename over it: {got}, want 200 b'three'")
        os.rename(top / "in", top / "out")
        got = fetch_now("/changes/in/f.txt")
        expect(got[0] == 404, f"after its folder was renamed away: {got}, want 404")
        got = fetch_now("/changes/out/f.txt")
        expect(got == (200, b"three"), f"by the folder's new name: {got}, want 200 b'three'")
        (top / "in").mkdir()
        (top / "in" / "f.txt").write_bytes(b"four")
        got = fetch_now("/changes/in/f.txt")
        expect(got == (200, b"four"), f"a new folder of the old name: {got}, want 200 b'four'")
        os.unlink(top / "in" / "f.txt")
        got = fetch_now("/changes/in/f.txt")
        expect(got[0] == 404, f"after a delete: {got}, want 404")
    # The open-file cache serves the page-cache send paths (docs/daemon.md, "Open-file cache").
    if getattr(ctx.factory, "send_path", None) in ("sendfile", "splice"):
        m = metrics(ctx.server)
        expect(m.get("datapump_open_cache_hits_total", 0) >= 2,
               f"datapump_open_cache_hits_total {m.get('datapump_open_cache_hits_total')}: the repeated GETs "
               "should have found the file open")
        expect(m.get("datapump_open_cache_forgotten_total", 0) >= 3,
               f"datapump_open_cache_forgotten_total {m.get('datapump_open_cache_forgotten_total')}, want >= 3")


@check("files/directory-403")
def _(ctx):
    r = get(ctx.server, "/sub/")
    expect(r.status == 403, f"GET /sub/: {r.brief()}, want 403 (no --directory-listing)")


@check("files/missing-404")
def _(ctx):
    r = get(ctx.server, "/no-such-file.bin")
    expect(r.status == 404, f"GET /no-such-file.bin: {r.brief()}, want 404")


@check("files/post-405")
def _(ctx):
    r = fetch(ctx.server, "POST", "/data.bin", {"Content-Length": "0"})
    expect(r.status == 405, f"POST /data.bin: {r.brief()}, want 405")


@check("files/post-405-allow", nginx="xfail: nginx sends no Allow header with its 405")
def _(ctx):
    r = fetch(ctx.server, "POST", "/data.bin", {"Content-Length": "0"})
    allow = {m.strip().upper() for m in (r.header("allow") or "").split(",") if m.strip()}
    expect(r.status == 405 and allow == {"GET", "HEAD"}, f"POST /data.bin: {r.brief()}, Allow {r.header('allow')!r}, "
                                                          "want 405 with Allow: GET, HEAD")


@check("files/stream-id-header", nginx="skip: X-Datapump-Stream is datapumpd's")
def _(ctx):
    r = get(ctx.server, "/sub/inner.txt")
    expect(r.status == 200 and re.fullmatch(r"\S+", r.header("x-datapump-stream") or ""),
           f"GET /sub/inner.txt: {r.brief()}, X-Datapump-Stream {r.header('x-datapump-stream')!r}: every "
           "response with a body carries its stream id")


@check("files/reserved-prefix", nginx="skip: /_datapump/ is reserved by datapumpd only")
def _(ctx):
    r = get(ctx.server, "/_datapump/secret.txt")
    expect(r.status != 200 or b"must not be reachable" not in r.body,
           f"GET /_datapump/secret.txt served the root's file of that name ({r.brief()}); the prefix is reserved")


def _bytes_by_path(server):
    """{send path: body bytes} from datapump_send_bytes_total{path=...}."""
    r = get(admin_of(server), "/metrics")
    expect(r.status == 200, f"GET /metrics: {r.brief()}")
    return {m.group(1): float(m.group(2)) for m in
            re.finditer(r'^datapump_send_bytes_total\{path="([a-z_]+)"\}\s+(\S+)$', r.body.decode(), re.M)}


@check("files/small-files-from-the-page-cache", nginx="skip: datapumpd's send paths")
def _(ctx):
    # --direct-min-size (docs/daemon.md, "Small files on the direct provider"): on the loan paths
    # a file smaller than it goes by sendfile, as nginx's directio draws the line, and a larger one
    # (a range of it too) from the arena; the page-cache paths send every file their own way.
    server = ctx.extra_server(["--direct-min-size", "100000"])
    small, large = "/notes.txt", DATA
    for path, headers in ((small, {}), (large, {}), (large, {"Range": "bytes=10-99"})):
        r = get(server, path, headers)
        want = ctx.fx.data(path) if not headers else ctx.fx.data(path)[10:100]
        expect(r.status in (200, 206) and r.body == want, f"GET {path} {headers}: {r.brief()}")
    n_small, n_large = len(ctx.fx.data(small)), len(ctx.fx.data(large)) + 90
    own = ctx.factory.send_path.replace("-", "_")
    if own in ("send_zc", "send"):
        want = {"sendfile": n_small, own: n_large}
    else:
        want = {own: n_small + n_large}
    paths = ("sendfile", "splice", "send_zc", "send")
    # A send is counted when it completes, which on send-zc is its notification: that may come
    # after the client has the bytes, so the counters are read until they settle.
    got = {}

    def settled():
        got.clear()
        got.update(_bytes_by_path(server))
        return all(got.get(p, 0) == want.get(p, 0) for p in paths)

    wait_until(settled, 5)
    for path in paths:
        expect(got.get(path, 0) == want.get(path, 0),
               f"datapump_send_bytes_total{{path=\"{path}\"}} {got.get(path)}: want {want.get(path, 0)} "
               f"({small}: {n_small} bytes below --direct-min-size 100000, {large}: {n_large} above; "
               f"--send-path {ctx.factory.send_path})")


@check("files/content-types-built-in-then-mime-types-file", nginx="skip: datapumpd's --mime-types-file")
def _(ctx):
    # The built-in table first (it wins: a system table's `ts` is Qt Linguist's), then the file.
    root = ctx.tmp / "types"
    root.mkdir(exist_ok=True)  # the same temp folder serves each variant of one run
    names = ("seg-1.ts", "font.woff2", "my file.mpg", "report.odt", "notes.MD", "blob.xyz")
    for name in names:
        (root / name).write_bytes(b"x" * 10)
    table = ctx.tmp / "mime.types"
    table.write_text("# a test table\ntext/vnd.trolltech.linguist ts\n"
                     "application/vnd.oasis.opendocument.text\todt\ntext/markdown md markdown\n")
    want = {"seg-1.ts": "video/mp2t", "font.woff2": "font/woff2", "my file.mpg": "video/mpeg",
            "report.odt": "application/vnd.oasis.opendocument.text", "notes.MD": "text/markdown",
            "blob.xyz": "application/octet-stream"}
    server = ctx.extra_server(["--mime-types-file", str(table)], root=root)
    for name in names:
        r = get(server, "/" + name)
        expect(r.status == 200 and r.header("content-type") == want[name],
               f"GET /{name} with --mime-types-file: {r.status} Content-Type {r.header('content-type')!r}, "
               f"want {want[name]!r}")
    # A file that cannot be read: the daemon serves with the built-in table and says why.
    missing = ctx.tmp / "no-such-mime.types"
    server = ctx.extra_server(["--mime-types-file", str(missing)], root=root)
    r = get(server, "/report.odt")
    expect(r.status == 200 and r.header("content-type") == "application/octet-stream",
           f"GET /report.odt without a readable table: {r.status} {r.header('content-type')!r}")
    r = get(server, "/font.woff2")
    expect(r.header("content-type") == "font/woff2", f"GET /font.woff2: {r.header('content-type')!r}")
    expect(f"cannot read {missing}" in server.log_tail(), f"no warning about {missing}:\n{server.log_tail()}")


def _check_config_refuses(ctx, flag, value, said):
    """`datapumpd --check-config FLAG VALUE` exits 2 and its stderr says `said`."""
    out = run([ctx.factory.binary, "--check-config", flag, value], 10)
    expect(out.returncode == 2 and said in out.stderr.decode(),
           f"--check-config {flag} {value!r}: exit {out.returncode}, {out.stderr[-300:]!r}, want 2 and {said!r}")


@check("files/cors-for-pages-on-other-origins", nginx="skip: datapumpd's --cors-origins")
def _(ctx):
    # Off by default: no CORS header, a preflight gets 405.
    page = "https://player.example.com"
    r = get(ctx.server, DATA, {"Origin": page, "Range": "bytes=0-9"})
    expect(r.status == 206 and r.header("access-control-allow-origin") is None,
           f"GET with Origin and no --cors-origins: {r.status} ACAO {r.header('access-control-allow-origin')!r}")
    pre = {"Origin": page, "Access-Control-Request-Method": "GET", "Access-Control-Request-Headers": "range"}
    r = fetch(ctx.server, "OPTIONS", DATA, pre)
    expect(r.status == 405, f"a preflight without --cors-origins: {r.status}, want 405")

    # A list: the matched origin (the configured spelling), Vary: Origin on every answer.
    server = ctx.extra_server(["--cors-origins", "https://Player.Example.com,http://localhost:3000"])
    r = get(server, DATA, {"Origin": page, "Range": "bytes=0-9"})
    expect(r.status == 206 and r.header("access-control-allow-origin") == page and
           "Content-Range" in (r.header("access-control-expose-headers") or "") and r.header("vary") == "Origin",
           f"GET from {page}: {r.status} ACAO {r.header('access-control-allow-origin')!r} expose "
           f"{r.header('access-control-expose-headers')!r} Vary {r.header('vary')!r}")
    expect(r.body == ctx.fx.data(DATA)[:10], "GET from an allowed origin: the range's bytes")
    r = get(server, "/no-such-file", {"Origin": page})
    expect(r.status == 404 and r.header("access-control-allow-origin") == page,
           f"404 to an allowed origin carries ACAO (a player must see the status): {r.status} "
           f"{r.header('access-control-allow-origin')!r}")
    r = get(server, DATA, {"Origin": "https://evil.example", "Range": "bytes=0-9"})
    expect(r.status == 206 and r.header("access-control-allow-origin") is None and r.header("vary") == "Origin",
           f"GET from another origin: ACAO {r.header('access-control-allow-origin')!r}, Vary {r.header('vary')!r}")
    r = fetch(server, "OPTIONS", DATA, pre)
    expect(r.status == 204 and r.header("access-control-allow-origin") == page and
           r.header("access-control-allow-methods") == "GET, HEAD" and
           "Range" in (r.header("access-control-allow-headers") or "") and
           r.header("access-control-max-age") == "86400",
           f"a preflight from {page}: {r.status} {r.headers}")
    r = fetch(server, "OPTIONS", DATA, {**pre, "Origin": "https://evil.example"})
    expect(r.status == 403 and r.header("access-control-allow-origin") is None,
           f"a preflight from another origin: {r.status} ACAO {r.header('access-control-allow-origin')!r}, want 403")
    r = fetch(server, "OPTIONS", DATA, {**pre, "Access-Control-Request-Method": "PUT"})
    expect(r.status == 403, f"a preflight asking for PUT: {r.status}, want 403")

    # "*": any page, no Vary.
    server = ctx.extra_server(["--cors-origins", "*"])
    r = fetch(server, "HEAD", DATA, {"Origin": "http://anything.example:8000"})
    expect(r.status == 200 and r.header("access-control-allow-origin") == "*" and r.header("vary") is None,
           f"HEAD with --cors-origins '*': {r.status} ACAO {r.header('access-control-allow-origin')!r} "
           f"Vary {r.header('vary')!r}")

    # A bad list is refused at start, naming the entry.
    _check_config_refuses(ctx, "--cors-origins", "https://a.example/path", "'https://a.example/path' is not an origin")


@check("files/cache-control-by-path", nginx="skip: datapumpd's --cache-control")
def _(ctx):
    r = get(ctx.server, DATA)
    expect(r.status == 200 and r.header("cache-control") is None and r.header("expires") is None,
           f"GET without --cache-control: Cache-Control {r.header('cache-control')!r} Expires {r.header('expires')!r}")
    rules = "/sub/* max-age=60, public; *.txt no-cache; * max-age=3600"
    server = ctx.extra_server(["--cache-control", rules])
    r = get(server, "/notes.txt")
    expect(r.status == 200 and r.header("cache-control") == "no-cache" and r.header("expires") is None,
           f"GET /notes.txt under {rules!r}: {r.status} {r.header('cache-control')!r} {r.header('expires')!r}")
    r = fetch(server, "HEAD", "/notes.txt")
    expect(r.status == 200 and r.header("cache-control") == "no-cache",
           f"HEAD /notes.txt: {r.status} {r.header('cache-control')!r}")
    r = get(server, "/sub/inner.txt")  # the first matching rule wins; globs see the path from '/'
    expect(r.header("cache-control") == "max-age=60, public", f"GET /sub/inner.txt: {r.header('cache-control')!r}")
    r = get(server, DATA, {"Range": "bytes=0-9"})
    expires = r.header("expires")
    expect(r.status == 206 and r.header("cache-control") == "max-age=3600" and expires is not None,
           f"GET {DATA} (206): {r.status} {r.header('cache-control')!r} Expires {expires!r}")
    if expires:
        ahead = (email.utils.parsedate_to_datetime(expires).timestamp() -
                 email.utils.parsedate_to_datetime(r.header("date")).timestamp())
        expect(3590 <= ahead <= 3610, f"Expires is {ahead:.0f} s after Date, want 3600")
    r = get(server, DATA, {"If-None-Match": r.header("etag")})
    expect(r.status == 304 and r.header("cache-control") == "max-age=3600",
           f"a 304 carries the 200's Cache-Control: {r.status} {r.header('cache-control')!r}")
    r = get(server, "/no-such-file")
    expect(r.status == 404 and r.header("cache-control") == "no-store",
           f"an error page keeps no-store: {r.status} {r.header('cache-control')!r}")
    _check_config_refuses(ctx, "--cache-control", "*.ts max-age=1d",
                          "'*.ts max-age=1d' has a max-age that is not a number")


@check("files/precompressed-siblings", nginx="skip: datapumpd's --precompressed")
def _(ctx):
    root = ctx.tmp / "precompressed"
    root.mkdir(exist_ok=True)
    plain, gz, br = b"console.log('plain');\n" * 40, b"GZ-BYTES" * 30, b"BR-BYTES" * 20
    (root / "app.js").write_bytes(plain)
    (root / "app.js.gz").write_bytes(gz)
    (root / "app.js.br").write_bytes(br)
    (root / "only.css.gz").write_bytes(gz)
    server = ctx.extra_server([], root=root)  # off by default: the file as it is
    r = get(server, "/app.js", {"Accept-Encoding": "gzip, br"})
    expect(r.status == 200 and r.body == plain and r.header("content-encoding") is None and r.header("vary") is None,
           f"GET /app.js without --precompressed: {r.status} {r.header('content-encoding')!r} {r.header('vary')!r}")

    server = ctx.extra_server(["--precompressed"], root=root)
    cases = [({}, plain, None), ({"Accept-Encoding": "gzip, deflate, br"}, br, "br"),
             ({"Accept-Encoding": "gzip"}, gz, "gzip"), ({"Accept-Encoding": "br;q=0, gzip"}, gz, "gzip"),
             ({"Accept-Encoding": "identity;q=1, *;q=0"}, plain, None)]
    for headers, body, coding in cases:
        r = get(server, "/app.js", headers)
        expect(r.status == 200 and r.body == body and r.header("content-encoding") == coding and
               r.header("content-type") == "text/javascript" and r.header("vary") == "Accept-Encoding" and
               r.header("content-length") == str(len(body)),
               f"GET /app.js {headers}: {r.status} Content-Encoding {r.header('content-encoding')!r} type "
               f"{r.header('content-type')!r} Vary {r.header('vary')!r} length {r.header('content-length')}, "
               f"want {coding!r} and {len(body)} bytes")
    r = get(server, "/app.js", {"Accept-Encoding": "br", "Range": "bytes=2-9"})
    expect(r.status == 206 and r.body == br[2:10] and r.header("content-encoding") == "br" and
           r.header("content-range") == f"bytes 2-9/{len(br)}",
           f"a range of the br sibling: {r.status} {r.header('content-range')!r} {r.body[:20]!r}")
    r = get(server, "/only.css", {"Accept-Encoding": "gzip"})
    expect(r.status == 200 and r.body == gz and r.header("content-type") == "text/css",
           f"GET /only.css (only its .gz exists) accepting gzip: {r.status} {r.header('content-type')!r}")
    r = get(server, "/only.css")
    expect(r.status == 404, f"GET /only.css without gzip: {r.status}, want 404")


# ----- ranges ---------------------------------------------------------------------------------

DATA = "/data.bin"


def _range(ctx, spec, first, last):
    data = ctx.fx.data(DATA)
    size = len(data)
    r = get(ctx.server, DATA, {"Range": spec})
    expect(r.status == 206, f"Range {spec}: {r.brief()}, want 206")
    want_cr = f"bytes {first}-{last}/{size}"
    expect(r.header("content-range") == want_cr, f"Range {spec}: Content-Range {r.header('content-range')!r}, "
                                                 f"want {want_cr!r}")
    expect(r.header("content-length") == str(last - first + 1),
           f"Range {spec}: Content-Length {r.header('content-length')}, want {last - first + 1}")
    expect(r.body == data[first:last + 1], f"Range {spec}: the body is not bytes {first}-{last} of the file")


_SIZE = 3 * MIB
for _spec, _a, _b in [("bytes=0-499", 0, 499), ("bytes=500-999", 500, 999), ("bytes=-500", _SIZE - 500, _SIZE - 1),
                      ("bytes=9500-", 9500, _SIZE - 1), ("bytes=3145000-9999999", 3145000, _SIZE - 1)]:
    check(f"ranges/{_spec}")(lambda ctx, s=_spec, a=_a, b=_b: _range(ctx, s, a, b))


def _whole(ctx, spec, why):
    r = get(ctx.server, DATA, {"Range": spec})
    expect(r.status == 200 and r.body == ctx.fx.data(DATA),
           f"Range {spec}: {r.brief()} (Content-Type {r.header('content-type')}), want 200 and the whole file ({why})")


@check("ranges/past-end-416")
def _(ctx):
    size = len(ctx.fx.data(DATA))
    r = get(ctx.server, DATA, {"Range": f"bytes={size + 10}-"})
    expect(r.status == 416, f"Range bytes={size + 10}-: {r.brief()}, want 416")
    expect(r.header("content-range") == f"bytes */{size}",
           f"416: Content-Range {r.header('content-range')!r}, want 'bytes */{size}'")


@check("ranges/multi-gives-200", nginx="xfail: nginx answers several ranges with 206 multipart/byteranges")
def _(ctx):
    _whole(ctx, "bytes=0-1,5-6", "several ranges")


@check("ranges/malformed-gives-200", nginx="xfail: nginx answers 'bytes=abc' with 416")
def _(ctx):
    _whole(ctx, "bytes=abc", "a malformed Range is ignored")


@check("ranges/unknown-unit-gives-200")
def _(ctx):
    _whole(ctx, "items=0-5", "an unknown range unit is ignored")


@check("ranges/empty-file-range-416", nginx="xfail: nginx ignores Range on a 0-byte file (200)")
def _(ctx):
    r = get(ctx.server, "/empty.bin", {"Range": "bytes=0-10"})
    expect(r.status == 416 and r.header("content-range") == "bytes */0",
           f"Range bytes=0-10 of a 0-byte file: {r.brief()}, Content-Range {r.header('content-range')!r}; "
           "want 416, bytes */0")


# ----- validators -----------------------------------------------------------------------------

def _validators(ctx):
    r = fetch(ctx.server, "HEAD", DATA)
    etag, lm = r.header("etag"), r.header("last-modified")
    expect(etag and re.fullmatch(r'"[^"]*"', etag), f"ETag {etag!r}: want a strong ETag (\"...\")")
    expect(lm and email.utils.parsedate_to_datetime(lm), f"Last-Modified {lm!r}: want an HTTP date")
    return etag, lm


@check("conditional/etag-and-last-modified")
def _(ctx):
    _validators(ctx)


@check("conditional/if-none-match-304")
def _(ctx):
    etag, _ = _validators(ctx)
    r = get(ctx.server, DATA, {"If-None-Match": etag})
    expect(r.status == 304 and r.body == b"", f"If-None-Match {etag}: {r.brief()}, want 304 without body")
    r = get(ctx.server, DATA, {"If-None-Match": '"not-the-etag"'})
    expect(r.status == 200, f"If-None-Match with another ETag: {r.brief()}, want 200")


@check("conditional/if-modified-since-304")
def _(ctx):
    _, lm = _validators(ctx)
    r = get(ctx.server, DATA, {"If-Modified-Since": lm})
    expect(r.status == 304 and r.body == b"", f"If-Modified-Since {lm}: {r.brief()}, want 304 without body")
    r = get(ctx.server, DATA, {"If-Modified-Since": "Thu, 01 Jan 1998 00:00:00 GMT"})
    expect(r.status == 200, f"If-Modified-Since 1998: {r.brief()}, want 200")


@check("conditional/if-range")
def _(ctx):
    etag, lm = _validators(ctx)
    data = ctx.fx.data(DATA)
    for validator in (etag, lm):
        r = get(ctx.server, DATA, {"Range": "bytes=0-99", "If-Range": validator})
        expect(r.status == 206 and r.body == data[:100], f"If-Range {validator} (matching): {r.brief()}, want 206")
    for validator in ('"stale-etag"', "Thu, 01 Jan 1998 00:00:00 GMT"):
        r = get(ctx.server, DATA, {"Range": "bytes=0-99", "If-Range": validator})
        expect(r.status == 200 and r.body == data,
               f"If-Range {validator} (not matching): {r.brief()}, want 200 and the whole file")


# ----- connections ----------------------------------------------------------------------------

@check("keepalive/pipelined-in-one-write")
def _(ctx):
    data, inner = ctx.fx.data(DATA), ctx.fx.data("/sub/inner.txt")
    with Conn(ctx.server.port) as c:
        c.send(request("GET", "/sub/inner.txt") + request("HEAD", DATA) +
               request("GET", DATA, {"Range": "bytes=100-199"}) + request("GET", "/empty.bin"))
        r1 = c.read_response()
        r2 = c.read_response(head_only=True)
        r3 = c.read_response()
        r4 = c.read_response()
        expect(r1.status == 200 and r1.body == inner, f"1st pipelined answer: {r1.brief()}, want sub/inner.txt")
        expect(r2.status == 200 and r2.header("content-length") == str(len(data)),
               f"2nd pipelined answer (HEAD): {r2.brief()}, Content-Length {r2.header('content-length')}")
        expect(r3.status == 206 and r3.body == data[100:200],
               f"3rd pipelined answer: {r3.brief()}, want 206 bytes 100-199 (a HEAD body leaking would land here)")
        expect(r4.status == 200 and r4.body == b"", f"4th pipelined answer: {r4.brief()}, want 200, empty")
        # Still open: a fifth request on the same connection is answered.
        c.send(request("GET", "/sub/inner.txt", {"Connection": "close"}))
        r5 = c.read_response()
        expect(r5.status == 200 and r5.body == inner, f"request after the pipelined batch: {r5.brief()}")


@check("keepalive/http10-keep-alive")
def _(ctx):
    inner = ctx.fx.data("/sub/inner.txt")
    with Conn(ctx.server.port) as c:
        c.send(request("GET", "/sub/inner.txt", {"Connection": "keep-alive"}, version="HTTP/1.0"))
        r1 = c.read_response()
        expect(r1.status == 200 and r1.body == inner, f"HTTP/1.0 keep-alive request: {r1.brief()}")
        c.send(request("GET", "/sub/inner.txt", version="HTTP/1.0"))
        r2 = c.read_response()
        expect(r2.status == 200 and r2.body == inner, f"2nd HTTP/1.0 request on the kept connection: {r2.brief()}")
        expect(c.closed_by_peer(5), "HTTP/1.0 without keep-alive: the server should close after the answer")


@check("keepalive/curl-reuses-connection")
def _(ctx):
    a, b = ctx.tmp / "ka1", ctx.tmp / "ka2"
    r = curl(["-v", "-o", str(a), ctx.server.url("/data.bin"), "-o", str(b), ctx.server.url("/sub/inner.txt")])
    err = r.stderr.decode(errors="replace")
    expect(r.returncode == 0, f"curl two URLs: exit {r.returncode}")
    expect(re.search(r"Re-using existing connection", err), "curl did not reuse the connection for the 2nd URL")
    expect(a.read_bytes() == ctx.fx.data("/data.bin") and b.read_bytes() == ctx.fx.data("/sub/inner.txt"),
           "curl over one connection: bodies differ from the files")


@check("media/ffprobe-over-http")
def _(ctx):
    r = run(["ffprobe", "-v", "error", "-show_entries", "format=duration:stream=codec_type,codec_name",
             "-of", "json", ctx.server.url(ctx.fx.clip)], 30)
    expect(r.returncode == 0, f"ffprobe {ctx.fx.clip}: exit {r.returncode}: {r.stderr.decode()[-300:]}")
    doc = json.loads(r.stdout)
    duration = float(doc["format"]["duration"])
    expect(5.8 <= duration <= 6.2, f"ffprobe over HTTP: duration {duration} s, want about 6")
    kinds = sorted((s["codec_type"], s["codec_name"]) for s in doc["streams"])
    expect(kinds == [("audio", "aac"), ("video", ctx.fx.video_codec)], f"ffprobe over HTTP: streams {kinds}")


@check("load/wrk-8-connections")
def _(ctx):
    r = run(["wrk", "-t2", "-c8", "-d3s", "--timeout", "5s", ctx.server.url("/data.bin")], 30)
    out = r.stdout.decode(errors="replace")
    expect(r.returncode == 0, f"wrk: exit {r.returncode}: {r.stderr.decode()[-300:]}")
    m = re.search(r"(\d+) requests in", out)
    expect(m and int(m.group(1)) > 0, f"wrk made no request:\n{out}")
    expect("Socket errors" not in out and "Non-2xx" not in out, f"wrk reports errors:\n{out}")
    transfer = re.search(r"Transfer/sec:\s*(\S+)", out)
    ctx.note(f"{m.group(1)} requests, {transfer.group(1) if transfer else '?'}/s")
