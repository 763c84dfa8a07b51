"""conf: reload (SIGHUP) and config checking (docs/daemon.md, "Reload"): a paced download
survives two reloads byte for byte on its old settings, new settings reach new requests, a bad
new file is refused (FILE:LINE:COLUMN in the log) and the old configuration keeps serving;
--check-config's exit codes. Every check here is datapumpd's."""
import os
import random
import signal
import subprocess

import harness
from harness import Background, MIB, check, expect, fetch, get, streams, wait_until

BIG = "/big.bin"
DATA = "/data.bin"


def _reload(server, conf, text):
    conf.write_text(text)
    os.kill(server.proc.pid, signal.SIGHUP)


def _listing(server):
    return get(server, "/sub/").status  # 200 with directory_listing, else 403


def _stream_rate(all_streams, sid):
    for s in all_streams:
        if str(s.get("id")) == str(sid):
            return s.get("rate")
    return None


def _finished_exact(ctx, bg, data, what):
    bg.proc.wait(timeout=60)
    got = bg.out.read_bytes()
    expect(bg.proc.returncode == 0, f"{what}: curl exit {bg.proc.returncode}")
    expect(got == data, f"{what}: {len(got)} bytes, want the file's {len(data)} byte for byte")


@check("reload/paced-download-survives-two-reloads", nginx="skip: SIGHUP reload is datapumpd's")
def _(ctx):
    conf = ctx.tmp / "reload.toml"
    conf.write_text('loops = 1\nmax_rate = "8M"\n')
    server = ctx.extra_server(["--config", str(conf)])
    data = ctx.fx.data(BIG)
    # 12 MiB at 2 MB/s: about 6 s, long enough to live through both reloads on a loaded machine.
    # In 64 KiB pieces, so that no start-up burst (a second of the rate up to 1 MiB by default)
    # shortens it.
    bg = Background(ctx, server, BIG, "rate=2M&burst=65536", "reload-live")
    status, sid = bg.status_and_id()
    expect(status == 200 and sid, f"the paced download: status {status}, stream {sid}")
    expect(_listing(server) == 403, "directory listing is off before the reload")

    # Reload 1: a lower cap and listings for new requests; loops cannot change live.
    _reload(server, conf, 'loops = 2\nmax_rate = "1M"\ndirectory_listing = true\n')
    expect(wait_until(lambda: _listing(server) == 200, 10), "the reload did not turn directory listing on")
    second = Background(ctx, server, DATA, "rate=2M", "reload-new")
    _, sid2 = second.status_and_id()
    now = streams(server)
    expect(_stream_rate(now, sid2) == 1000000, f"a new stream asking 2M: rate {_stream_rate(now, sid2)}, "
                                               "want the new max_rate 1000000")
    expect(_stream_rate(now, sid) == 2000000, f"the live stream: rate {_stream_rate(now, sid)}, want its 2000000")
    expect(wait_until(lambda: "needs a restart" in server.log_tail(20000), 10)
           and "loops: 2 (running: 1)" in server.log_tail(20000),
           f"no 'needs a restart' for loops in the log:\n{server.log_tail()}")

    # Reload 2: an admin token, listings off again.
    _reload(server, conf, 'max_rate = "1M"\nadmin_token = "t2"\n')
    expect(wait_until(lambda: get(server.admin, "/metrics").status == 401, 10),
           "the reload did not put the new admin token in force")
    token = {"Authorization": "Bearer t2"}
    expect(get(server.admin, "/metrics", token).status == 200, "GET /metrics with the new token")
    expect(_listing(server) == 403, "directory listing is off again after the second reload")
    expect(bg.proc.poll() is None, "the paced download ended before the second reload: the check proved nothing "
                                   "(the machine is too slow for its timing)")
    r = fetch(server.admin, "GET", "/_datapump/api/streams", token)
    expect(r.status == 200 and b'"rate":2000000' in r.body.replace(b" ", b""),
           f"the live stream after two reloads: {r.brief()} {r.body[:300]!r}")
    _finished_exact(ctx, bg, data, "the paced download through two reloads")
    ctx.note(f"{len(data) // MIB} MiB byte-exact through 2 reloads")


@check("reload/bad-config-refused-old-kept", nginx="skip: SIGHUP reload is datapumpd's")
def _(ctx):
    conf = ctx.tmp / "reload-bad.toml"
    conf.write_text("directory_listing = true\n")
    server = ctx.extra_server(["--config", str(conf)])
    data = ctx.fx.data(DATA)
    bg = Background(ctx, server, DATA, "rate=1M", "reload-bad")  # about 3 s
    status, _ = bg.status_and_id()
    expect(status == 200, f"the paced download: status {status}")

    _reload(server, conf, 'directory_listing = false\nmax_rate = "fast"\n')
    where = f"{conf}:2:12: key 'max_rate'"
    expect(wait_until(lambda: "reload refused" in server.log_tail(20000) and where in server.log_tail(20000), 10),
           f"no 'reload refused' naming {where} in the log:\n{server.log_tail()}")
    expect(server.alive(), "the daemon died on a bad configuration")
    expect(_listing(server) == 200, "the refused file changed the configuration (listing went off)")
    expect(get(server, DATA).body == data, "GET after the refused reload")

    # Fixed, the file is taken: the daemon still reloads.
    _reload(server, conf, "directory_listing = false\n")
    expect(wait_until(lambda: _listing(server) == 403, 10), "the corrected file was not applied")
    _finished_exact(ctx, bg, data, "the paced download through a refused reload")


@check("reload/check-config-exit-codes", nginx="skip: --check-config is datapumpd's")
def _(ctx):
    binary = ctx.factory.binary
    good = ctx.tmp / "check-good.toml"
    good.write_text(f'root = "{ctx.fx.root}"\ndefault_rate = "5M"\n')
    r = subprocess.run([binary, "--config", str(good), "--check-config"], capture_output=True, timeout=30)
    expect(r.returncode == 0 and b"configuration ok" in r.stdout,
           f"--check-config on a good file: exit {r.returncode}, {r.stdout!r} {r.stderr!r}")
    bad = ctx.tmp / "check-bad.toml"
    bad.write_text(f'root = "{ctx.fx.root}"\n\nloops = "four"\n')
    r = subprocess.run([binary, "--config", str(bad), "--check-config"], capture_output=True, timeout=30)
    want = f"{bad}:3:9: key 'loops': expected an integer".encode()
    expect(r.returncode == 2 and want in r.stderr,
           f"--check-config on a bad file: exit {r.returncode}, {r.stderr!r}; want 2 and {want!r}")
    # Nothing was started: no port was bound, the command returned at once.
    r = subprocess.run([binary, "--print-config-template"], capture_output=True, timeout=30)
    expect(r.returncode == 0 and b"\n#max_rate = 0\n" in r.stdout, f"--print-config-template: {r.stdout[:200]!r}")


@check("reload/root-changes-for-new-requests", nginx="skip: SIGHUP reload is datapumpd's")
def _(ctx):
    # The harness gives --root as a flag, which a file cannot override: this daemon takes its
    # root from the file alone.
    a, b = ctx.tmp / "reload-root-a", ctx.tmp / "reload-root-b"
    for d in (a, b):
        d.mkdir(exist_ok=True)
    data = random.Random(15).randbytes(3 * MIB)
    (a / "only-a.bin").write_bytes(data)
    (b / "only-b.txt").write_bytes(b"served from b\n")
    conf = ctx.tmp / "reload-root.toml"
    conf.write_text(f'root = "{a}"\n')
    factory = ctx.factory
    argv = lambda port: [factory.binary, "--config", str(conf), "--listen", f"127.0.0.1:{port}", "--provider",
                         factory.provider, "--send-path", factory.send_path, "--admin-listen", "off"]
    server = harness._start(argv, ctx.tmp / "datapumpd-reload-root.log", "datapumpd")
    ctx._servers.append(server)  # stopped with the check
    bg = Background(ctx, server, "/only-a.bin", "rate=1M", "reload-root")  # about 3 s
    status, _ = bg.status_and_id()
    expect(status == 200, f"the paced download from the first root: status {status}")
    expect(get(server, "/only-b.txt").status == 404, "the second root's file before the reload")

    _reload(server, conf, f'root = "{b}"\n')
    expect(wait_until(lambda: get(server, "/only-b.txt").status == 200, 10),
           f"the new root was not served after the reload:\n{server.log_tail()}")
    expect(get(server, "/only-b.txt").body == b"served from b\n", "the new root's file")
    expect(get(server, "/only-a.bin").status == 404, "the old root's file is still served to new requests")
    _finished_exact(ctx, bg, data, "the paced download from the old root")

    # A root that cannot be served is refused; the one in force stays.
    _reload(server, conf, f'root = "{ctx.tmp / "no-such-folder"}"\n')
    expect(wait_until(lambda: "reload refused" in server.log_tail(20000), 10),
           f"no 'reload refused' for a missing root:\n{server.log_tail()}")
    expect(get(server, "/only-b.txt").status == 200, "the root in force after a refused reload")

    # And back: the first root again, a root made by a reload given up.
    _reload(server, conf, f'root = "{a}"\n')
    expect(wait_until(lambda: get(server, "/only-a.bin").status == 200, 10),
           f"the first root was not served again:\n{server.log_tail()}")
    expect(get(server, "/only-b.txt").status == 404, "the second root's file after going back")


def _put(server, path, body, token):
    with harness.Conn(server.port) as c:
        c.send(harness.request("PUT", path, [("Content-Length", str(len(body))), ("Authorization", f"Bearer {token}"),
                                              ("Connection", "close")]) + body)
        return c.read_response().status


@check("reload/upload-token-changes-for-new-requests", nginx="skip: SIGHUP reload is datapumpd's")
def _(ctx):
    root = ctx.tmp / "reload-upload-root"
    root.mkdir(exist_ok=True)
    conf = ctx.tmp / "reload-upload.toml"
    conf.write_text('writable = true\nupload_token = "u1"\n')
    server = ctx.extra_server(["--config", str(conf)], root=root)
    expect(_put(server, "/a.txt", b"one", "u1") == 201, "PUT with the first token")
    _reload(server, conf, 'writable = true\nupload_token = "u2"\n')
    # Polled with the new token (refused, and nothing written, until the reload is in force).
    expect(wait_until(lambda: _put(server, "/probe.txt", b"p", "u2") == 201, 10),
           f"the new upload token was not taken after the reload:\n{server.log_tail()}")
    expect(_put(server, "/b.txt", b"two", "u1") == 401, "PUT with the old token after the reload")
    expect(_put(server, "/c.txt", b"three", "u2") in (200, 201, 204), "PUT with the new token")
    expect((root / "c.txt").read_bytes() == b"three" and not (root / "b.txt").exists(), "what the PUTs left")
