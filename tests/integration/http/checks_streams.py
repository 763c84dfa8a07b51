"""Streams: pacing, admission, the control API, metrics, shutdown, and a real browser."""
import json
import signal
import subprocess
import time

from harness import (BROWSER_DIR, MIB, Background, CheckFailed, Conn, check, curl, expect, fetch, get,
                     json_api, metrics, request, run, stream_by_id, streams, wait_until)

BIG = "/big.bin"


@check("pacing/rate-2M")
def _(ctx):
    # 12 MiB at 2 MB/s: about 6.3 s. The rate is measured after the first 2 MiB, so that the
    # loopback socket buffers (and nginx's one-second first burst) filling at once do not count;
    # the bounds are wide (+-30 %) for a loaded 2-core machine.
    size = len(ctx.fx.data(BIG))
    mark = 2 * MIB
    with Conn(ctx.server.port, timeout=10) as c:
        c.send(request("GET", BIG + "?rate=2M", {"Connection": "close"}))
        t0 = time.monotonic()
        r = c.read_response(head_only=True)
        expect(r.status == 200 and r.header("content-length") == str(size), f"paced GET: {r.brief()}")
        got, t_mark = len(c.buf), None
        c.buf.clear()
        while got < size:
            chunk = c.sock.recv(1 << 20)
            expect(chunk, f"paced GET: the connection closed after {got} of {size} bytes")
            got += len(chunk)
            if t_mark is None and got >= mark:
                t_mark, at_mark = time.monotonic(), got
        t_end = time.monotonic()
    rate = (size - at_mark) / (t_end - t_mark)
    ctx.note(f"{rate / 1e6:.2f} MB/s after the first 2 MiB, {size / (t_end - t0) / 1e6:.2f} MB/s overall")
    expect(1.4e6 <= rate <= 2.6e6, f"?rate=2M: {rate / 1e6:.2f} MB/s after the first 2 MiB (whole body "
                                   f"{size / (t_end - t0) / 1e6:.2f} MB/s over {t_end - t0:.1f} s), want 2 MB/s +-30%")


@check("pacing/header-rate", nginx="skip: X-Datapump-Rate is datapumpd's")
def _(ctx):
    # 3 MiB at X-Datapump-Rate 1M: about 3.1 s; unpaced it takes milliseconds.
    r = curl(["-o", "/dev/null", "-H", "X-Datapump-Rate: 1M", "-w", "%{time_total}", ctx.server.url("/data.bin")],
             timeout=20)
    seconds = float(r.stdout.decode() or 0)
    expect(r.returncode == 0 and seconds >= 2.0,
           f"X-Datapump-Rate: 1M on 3 MiB took {seconds:.2f} s (curl exit {r.returncode}), want >= 2 s")


@check("pacing/admission-503", nginx="skip: --capacity is datapumpd's")
def _(ctx):
    server = ctx.extra_server(["--capacity", "3M"])
    first = Background(ctx, server, BIG, "rate=2M", "admitted")
    status, _ = first.status_and_id()
    expect(status == 200, f"first 2M stream under --capacity 3M: {status}, want 200")
    r = get(server, BIG, query="rate=2M")
    expect(r.status == 503, f"second 2M stream under --capacity 3M: {r.brief()}, want 503")
    expect(r.header("retry-after") == "1", f"503: Retry-After {r.header('retry-after')!r}, want 1")
    expect(b"capacity" in r.body, f"503 body {r.body[:200]!r} does not say 'capacity'")
    m = metrics(server)
    expect(m.get("datapump_admission_refusals_total") == 1,
           f"datapump_admission_refusals_total {m.get('datapump_admission_refusals_total', 'missing')}, want 1")
    r = get(server, "/sub/inner.txt")
    expect(r.status == 200, f"an unpaced request at full capacity: {r.brief()}, want 200 (best effort)")
    first.proc.kill()
    first.proc.wait(5)
    expect(wait_until(lambda: get(server, "/sub/inner.txt", query="rate=2M").status == 200, 5, 0.2),
           "5 s after the admitted client left, a 2M stream is still refused: its reservation was not released")


def _rt_connections(server):
    return metrics(server).get("datapump_rt_connections")


@check("pacing/rt-driven", nginx="skip: rt pacing and its metrics are datapumpd's")
def _(ctx):
    # A paced stream is an rt timer connection for exactly its life, and the bytes come at its rate:
    # 3 MiB at 2 MB/s in 64 KiB pieces (30.5 rt ticks a second), measured after the first 512 KiB
    # (the socket buffers), +-30 % like pacing/rate-2M.
    expect(wait_until(lambda: _rt_connections(ctx.server) == 0, 5),
           f"before the stream: datapump_rt_connections {_rt_connections(ctx.server)}, want 0")
    data = ctx.fx.data("/data.bin")
    size, mark = len(data), 512 * 1024
    body = bytearray()
    with Conn(ctx.server.port, timeout=10) as c:
        c.send(request("GET", "/data.bin?rate=2M&burst=65536", {"Connection": "close"}))
        r = c.read_response(head_only=True)
        expect(r.status == 200 and r.header("content-length") == str(size), f"paced GET: {r.brief()}")
        m = metrics(ctx.server)
        expect(m.get("datapump_rt_connections") == 1,
               f"while the paced stream runs: datapump_rt_connections {m.get('datapump_rt_connections')}, want 1")
        expect(m.get("datapump_rt_vp_density", 0) > 0,
               f"while the paced stream runs: datapump_rt_vp_density {m.get('datapump_rt_vp_density')}, want > 0")
        body += c.buf
        c.buf.clear()
        t_mark = None
        while len(body) < size:
            chunk = c.sock.recv(1 << 20)
            expect(chunk, f"paced GET: the connection closed after {len(body)} of {size} bytes")
            body += chunk
            if t_mark is None and len(body) >= mark:
                t_mark, at_mark = time.monotonic(), len(body)
        t_end = time.monotonic()
    expect(bytes(body) == data, "paced GET: the body is not the file's bytes")
    rate = (size - at_mark) / (t_end - t_mark)
    expect(wait_until(lambda: _rt_connections(ctx.server) == 0, 5),
           f"5 s after the stream ended: datapump_rt_connections {_rt_connections(ctx.server)}, want 0")
    m = metrics(ctx.server)
    expect("datapump_rt_deadline_misses_total" in m and "datapump_rt_refusals_total" in m,
           "/metrics lacks datapump_rt_deadline_misses_total or datapump_rt_refusals_total")
    ctx.note(f"{rate / 1e6:.2f} MB/s after the first 512 KiB; rt deadline misses so far "
             f"{m['datapump_rt_deadline_misses_total']:.0f}")
    expect(1.4e6 <= rate <= 2.6e6, f"?rate=2M on rt: {rate / 1e6:.2f} MB/s after the first 512 KiB, want 2 MB/s +-30%")


@check("pacing/rt-refusal-503", nginx="skip: rt admission is datapumpd's")
def _(ctx):
    # Each 2 MB/s stream in 64 KiB pieces costs rt density 0.00061 (a 20 us tick every 32.8 ms): a
    # limit of 0.001 takes one, and refuses the second with rt's reason.
    server = ctx.extra_server(["--rt-max-density", "0.001"])
    first = Background(ctx, server, BIG, "rate=2M&burst=65536", "rt-admitted")
    status, _ = first.status_and_id()
    expect(status == 200, f"first 2M stream under --rt-max-density 0.001: {status}, want 200")
    r = get(server, BIG, query="rate=2M&burst=65536")
    expect(r.status == 503, f"second 2M stream under --rt-max-density 0.001: {r.brief()}, want 503")
    expect(r.header("retry-after") == "1", f"503: Retry-After {r.header('retry-after')!r}, want 1")
    expect(b"(rt) refused" in r.body and b"density" in r.body,
           f"503 body {r.body[:300]!r} does not give rt's reason (density)")
    m = metrics(server)
    expect(m.get("datapump_rt_refusals_total") == 1,
           f"datapump_rt_refusals_total {m.get('datapump_rt_refusals_total', 'missing')}, want 1")
    expect(m.get("datapump_admission_refusals_total") == 0,
           f"datapump_admission_refusals_total {m.get('datapump_admission_refusals_total')}, want 0 (no --capacity)")
    expect(m.get("datapump_rt_connections") == 1,
           f"datapump_rt_connections {m.get('datapump_rt_connections')}, want 1 (the admitted stream)")
    status_code, doc = json_api(server.admin, "GET", "/_datapump/api/status")
    rt = doc.get("rt") if isinstance(doc, dict) else None
    expect(status_code == 200 and isinstance(rt, dict) and rt.get("refusals") == 1 and rt.get("connections") == 1,
           f"/_datapump/api/status rt: {rt!r:.300}, want refusals 1 and connections 1")
    first.proc.kill()
    first.proc.wait(5)
    expect(wait_until(lambda: get(server, "/sub/inner.txt", query="rate=2M&burst=65536").status == 200, 5, 0.2),
           "5 s after the admitted client left, a 2M stream is still refused: its rt connection was not ended")


# ----- control API ----------------------------------------------------------------------------

def _post(ctx, sid, action):
    status, doc = json_api(ctx.server.admin, "POST", f"/_datapump/api/streams/{sid}/{action}")
    expect(status == 200 and isinstance(doc, dict) and doc.get("ok") is True and isinstance(doc.get("stream"), dict),
           f"POST .../{sid}/{action}: {status} {doc!r:.200}, want 200 {{\"ok\":true,\"stream\":{{...}}}}")
    return doc["stream"]


def _sent(ctx, sid):
    s = stream_by_id(ctx.server, sid)
    expect(s is not None, f"stream {sid} vanished from /_datapump/api/streams")
    return int(s["bytes_sent"])


@check("control/pause-resume-seek", nginx="skip: the control API is datapumpd's")
def _(ctx):
    burst = 65536
    bg = Background(ctx, ctx.server, BIG, f"rate=500k&burst={burst}", "control")
    status, sid = bg.status_and_id()
    expect(status == 200 and sid, f"paced GET: {status}, X-Datapump-Stream {sid!r}")
    s = stream_by_id(ctx.server, sid)
    expect(s is not None, f"stream {sid} (from X-Datapump-Stream) is not in /_datapump/api/streams: "
                          f"{[x.get('id') for x in streams(ctx.server)]}")
    missing = {"id", "client", "file", "start", "end", "position", "bytes_sent", "rate", "burst", "state", "speed",
               "loop", "send_path"} - set(s)
    expect(not missing, f"stream {sid} lacks fields {sorted(missing)}")
    expect(str(s["file"]).endswith("big.bin"), f"stream {sid}: file {s['file']!r}, want big.bin")
    expect(int(s["rate"]) == 500000 and int(s["burst"]) == burst,
           f"stream {sid}: rate {s['rate']}, burst {s['burst']}; want 500000 and {burst} (?rate=500k&burst={burst})")
    expect(wait_until(lambda: _sent(ctx, sid) > 200000, 5), "the paced stream did not reach 200 kB in 5 s")

    _post(ctx, sid, "pause")
    # The answer may show the state of the moment; the listing must say "paused" soon after.
    seen = []
    expect(wait_until(lambda: seen.append(stream_by_id(ctx.server, sid)["state"]) or seen[-1] == "paused", 1),
           f"1 s after POST pause: state {seen[-1]!r}, want 'paused'")
    time.sleep(0.3)  # one send may still be in flight
    b0 = _sent(ctx, sid)
    time.sleep(1.0)
    b1 = _sent(ctx, sid)
    # Unpaused, 1 s is 500 kB; paused, at most what was in flight (<= two bursts).
    expect(b1 - b0 <= 2 * burst, f"paused: bytes_sent grew {b1 - b0} in 1 s, want <= {2 * burst}")

    _post(ctx, sid, "resume")
    expect(wait_until(lambda: _sent(ctx, sid) > b1 + 200000, 3),
           "resumed: bytes_sent did not grow by 200 kB within 3 s")

    offset = 9_000_000
    before = _sent(ctx, sid)
    _post(ctx, sid, f"seek?offset={offset}")
    time.sleep(0.5)
    pos = int(stream_by_id(ctx.server, sid)["position"])
    expect(offset <= pos < offset + 1_500_000, f"after seek to {offset}: position {pos}")
    # The body continues from the new position: the file's bytes just after the offset arrive
    # (64 KiB after it, so that a block-aligned restart either way still matches).
    expect(wait_until(lambda: bg.received() > before + 300000, 5), "after seek: the body stopped growing")
    at = offset + 65536
    expect(ctx.fx.data(BIG)[at:at + 4096] in bg.out.read_bytes(),
           f"after seek to {offset}: the file's bytes at {at} never arrived in the body")

    status, doc = json_api(ctx.server.admin, "POST", f"/_datapump/api/streams/{sid}/seek?offset=abc")
    expect(status == 400, f"seek?offset=abc: {status} {doc!r:.200}, want 400")


@check("control/unknown-stream-404", nginx="skip: the control API is datapumpd's")
def _(ctx):
    status, doc = json_api(ctx.server.admin, "POST", "/_datapump/api/streams/987654321/pause")
    expect(status == 404 and isinstance(doc, dict) and doc.get("ok") is False and "987654321" in str(doc.get("error")),
           f"pause of an unknown stream: {status} {doc!r:.200}, "
           "want 404 {\"ok\":false,\"error\":\"no stream 987654321\"}")


@check("control/status-and-metrics", nginx="skip: the status API and /metrics are datapumpd's")
def _(ctx):
    admin = ctx.server.admin  # the control plane is served on the admin listener only
    status, doc = json_api(admin, "GET", "/_datapump/api/status")
    expect(status == 200 and isinstance(doc, dict), f"GET /_datapump/api/status: {status} {doc!r:.200}")
    missing = {"loops", "connections", "cache", "rt"} - set(doc)
    expect(not missing, f"/_datapump/api/status lacks {sorted(missing)}: {sorted(doc)}")
    r = get(admin, "/metrics")
    expect(r.status == 200 and "text/plain" in (r.header("content-type") or ""),
           f"GET /metrics: {r.brief()}, Content-Type {r.header('content-type')!r}")
    m = metrics(ctx.server)
    for name in ("datapump_active_streams", "datapump_cache_loans_outstanding", "datapump_admission_refusals_total",
                 "datapump_rt_connections", "datapump_rt_refusals_total", "datapump_rt_deadline_misses_total"):
        expect(name in m, f"/metrics lacks {name}")
    r = get(admin, "/_datapump/")
    expect(r.status == 200 and "text/html" in (r.header("content-type") or ""), f"GET /_datapump/: {r.brief()}")


@check("control/send-path-in-use", nginx="skip: datapumpd's stream listing")
def _(ctx):
    bg = Background(ctx, ctx.server, BIG, "rate=1M", "sendpath")
    _, sid = bg.status_and_id()
    s = stream_by_id(ctx.server, sid)
    expect(s is not None, f"stream {sid} is not listed")
    # The contract names the flag values, not the JSON spelling: send_zc and send-zc are one path.
    want, got = ctx.factory.send_path, str(s["send_path"]).replace("_", "-")
    ok = got == want or (want == "send-zc" and got == "send")
    expect(ok, f"stream {sid}: send_path {s['send_path']!r}, want {want!r} (--send-path {want})")


# ----- shutdown -------------------------------------------------------------------------------

@check("lifecycle/sigterm-grace")
def _(ctx):
    server = ctx.extra_server(["--grace-ms", "500"] if ctx.is_daemon else [])
    bg = Background(ctx, server, BIG, "rate=100k", "sigterm")
    status, _ = bg.status_and_id()
    expect(status == 200, f"slow stream: {status}")
    server.proc.send_signal(signal.SIGTERM)
    try:
        code = server.proc.wait(5)
    except subprocess.TimeoutExpired:
        raise CheckFailed("SIGTERM with --grace-ms 500 and a slow stream: still running after 5 s")
    expect(code == 0, f"SIGTERM: exit status {code}, want 0; log:\n{server.log_tail()}")
    try:
        bg.proc.wait(5)
    except subprocess.TimeoutExpired:
        raise CheckFailed("the slow stream's connection was not cut after the grace period")
    expect(bg.received() < len(ctx.fx.data(BIG)), "the slow stream completed; it should have been cut")


# ----- browser --------------------------------------------------------------------------------

def _browser(ctx, part, extra=()):
    expect((BROWSER_DIR / "node_modules" / "playwright-core").is_dir(),
           f"{BROWSER_DIR}/node_modules lacks playwright-core (the setup's npm ci failed)")
    script = BROWSER_DIR / "daemon_browser_test.mjs"
    admin = ["--admin-base", ctx.server.admin.base] if ctx.is_daemon else []
    r = run(["node", str(script), "--base", ctx.server.base, *admin, "--part", part, *extra], 58)
    out = (r.stdout + r.stderr).decode(errors="replace")
    expect(r.returncode == 0, f"browser {part}: exit {r.returncode}:\n{out[-3000:]}")


@check("browser/video-play-and-seek")
def _(ctx):
    _browser(ctx, "video")


@check("browser/status-page-pause", nginx="skip: the status page is datapumpd's")
def _(ctx):
    bg = Background(ctx, ctx.server, BIG, "rate=300k", "browser")
    status, sid = bg.status_and_id()
    expect(status == 200 and sid, f"paced GET: {status}, stream {sid!r}")
    _browser(ctx, "status", ["--file", "big.bin"])
    s = stream_by_id(ctx.server, sid)
    expect(s is not None and s.get("state") == "paused",
           f"after the status page's pause button: stream {sid} state {s and s.get('state')!r}, want 'paused'")


@check("browser/status-page-admin-token", nginx="skip: the status page and --admin-token are datapumpd's")
def _(ctx):
    # With --admin-token the page is opened as /_datapump/?token=T and its script sends the token
    # on its API calls: the listing still fills and the pause button still pauses.
    token = "browser-test-token"
    server = ctx.extra_server(["--admin-token", token])
    bg = Background(ctx, server, BIG, "rate=300k", "browser-token")
    status, sid = bg.status_and_id()
    expect(status == 200 and sid, f"paced GET: {status}, stream {sid!r}")
    saved, ctx.server = ctx.server, server
    try:
        _browser(ctx, "status", ["--file", "big.bin", "--token", token])
    finally:
        ctx.server = saved
    r = fetch(server.admin, "GET", "/_datapump/api/streams", {"Authorization": f"Bearer {token}"})
    s = next((x for x in json.loads(r.body.decode()).get("streams", []) if str(x.get("id")) == str(sid)), None)
    expect(s is not None and s.get("state") == "paused",
           f"after the status page's pause button (with a token): stream {sid} {s!r:.200}, want state 'paused'")
