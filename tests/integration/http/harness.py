"""The machinery under the HTTP integration checks: the served folder, the servers, the clients.

    fixture (a temp root)  <- make_fixture()  files with known bytes, a clip, a symlink out
    server                 <- Daemon / Nginx .spawn(root, extra)   one process, a free port
    clients                <- Conn (raw socket: exact bytes, pipelining), curl(), json_api()
    checks                 <- @check(name, nginx=...) registers; run_checks() runs, reports, counts

Every process a check starts goes through spawn(): it dies with this driver (PR_SET_PDEATHSIG,
even if the driver is SIGKILLed by ctest's timeout) and is killed when its check ends.
Single-threaded on purpose: PDEATHSIG is tied to the thread that forked the child.
"""
import ctypes
import fnmatch
import json
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import time
import traceback
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path

MIB = 1024 * 1024
PASSWD = Path("/etc/passwd").read_bytes()
UNICODE_NAME = "hello wörld ☃ ünï.txt"
BROWSER_DIR = Path(__file__).resolve().parents[2] / "browser"


class CheckFailed(Exception):
    pass


def expect(cond, msg):
    if not cond:
        raise CheckFailed(msg)


def wait_until(pred, timeout, step=0.05):
    """Polls pred() until it returns something truthy (returned) or timeout seconds pass (None)."""
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() >= deadline:
            return None
        time.sleep(step)


# ---------------------------------------------------------------------------------------------
# Processes

_libc = ctypes.CDLL(None, use_errno=True)
_PR_SET_PDEATHSIG = 1
_live = []


def _die_with_parent():
    _libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


def spawn(argv, stdout=None, stderr=None, **kw):
    """Starts argv as a child that is killed when this driver exits, however it exits."""
    p = subprocess.Popen(argv, stdout=stdout or subprocess.DEVNULL, stderr=stderr or subprocess.DEVNULL,
                         stdin=subprocess.DEVNULL, preexec_fn=_die_with_parent, **kw)
    _live.append(p)
    return p


def kill(p, sig=signal.SIGKILL, wait=5):
    if p.poll() is None:
        try:
            p.send_signal(sig)
            p.wait(wait)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
    if p in _live:
        _live.remove(p)


def kill_all():
    for p in list(_live):
        kill(p)


def _on_signal(signum, _frame):
    raise SystemExit(128 + signum)


for _s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
    signal.signal(_s, _on_signal)


def run(argv, timeout, **kw):
    """Runs a short command to completion (bounded); returns CompletedProcess with bytes."""
    return subprocess.run(argv, capture_output=True, timeout=timeout, stdin=subprocess.DEVNULL,
                          preexec_fn=_die_with_parent, **kw)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ---------------------------------------------------------------------------------------------
# The served folder

@dataclass
class Fixture:
    root: Path
    files: dict = field(default_factory=dict)  # url path (decoded, leading '/') -> bytes
    clip: str = "/clip.mp4"
    browser_clip: str = "/clip.mp4"
    video_codec: str = "h264"

    def data(self, path):
        return self.files[path]


def url_path(path):
    return urllib.parse.quote(path, safe="/")


def make_fixture(tmp):
    root = tmp / "root"
    (root / "sub").mkdir(parents=True)
    # Served folders must be readable by nginx's worker user when this runs as root.
    os.chmod(tmp, 0o755)
    rng = random.Random(20240521)
    fx = Fixture(root=root)

    def put(rel, data):
        (root / rel).write_bytes(data)
        fx.files["/" + rel] = data

    put("data.bin", rng.randbytes(3 * MIB))
    put("big.bin", rng.randbytes(12 * MIB))
    put("empty.bin", b"")
    put(UNICODE_NAME, "a name with spaces and unicode: ünïcødé ☃\n".encode())
    put("sub/inner.txt", b"inside a subdirectory\n")
    put("notes.txt", b"plain text\n")
    # The reserved prefix shadows a real folder of that name.
    (root / "_datapump").mkdir()
    (root / "_datapump" / "secret.txt").write_bytes(b"must not be reachable\n")
    os.symlink("/etc/passwd", root / "escape")
    make_clip(fx, tmp)
    page = (f'<!doctype html>\n<html><head><meta charset="utf-8"><title>datapump video</title></head>\n'
            f'<body><video id="v" src="{fx.browser_clip[1:]}" controls muted playsinline></video></body></html>\n')
    put("index.html", page.encode())
    return fx


def make_clip(fx, tmp):
    """clip.mp4: 6 s of 320x240 test pattern and a sine. H.264 + AAC when ffmpeg has libx264
    (Debian's does, and Debian's Chromium plays it); otherwise MPEG-4 part 2 for ffprobe plus a
    VP9 + Opus WebM for the browser, which cannot play MPEG-4 part 2."""
    encoders = run(["ffmpeg", "-hide_banner", "-encoders"], 30).stdout.decode()
    src = ["-f", "lavfi", "-i", "testsrc=duration=6:size=320x240:rate=25", "-f", "lavfi", "-i", "sine=duration=6"]
    base = ["ffmpeg", "-hide_banner", "-loglevel", "error", "-y", "-threads", "2"]
    if re.search(r"\blibx264\b", encoders):
        venc = ["-c:v", "libx264", "-preset", "veryfast", "-pix_fmt", "yuv420p"]
    else:
        venc = ["-c:v", "mpeg4", "-q:v", "5"]
        fx.video_codec = "mpeg4"
    out = fx.root / "clip.mp4"
    r = run(base + src + venc + ["-c:a", "aac", "-movflags", "+faststart", str(out)], 120)
    if r.returncode != 0:
        raise RuntimeError(f"ffmpeg could not make the clip: {r.stderr.decode()[-500:]}")
    fx.files["/clip.mp4"] = out.read_bytes()
    if fx.video_codec != "h264":
        webm = fx.root / "clip.webm"
        r = run(base + src + ["-c:v", "libvpx-vp9", "-deadline", "realtime", "-b:v", "300k", "-c:a", "libopus",
                              str(webm)], 120)
        if r.returncode != 0:
            raise RuntimeError(f"ffmpeg could not make the WebM clip: {r.stderr.decode()[-500:]}")
        fx.files["/clip.webm"] = webm.read_bytes()
        fx.browser_clip = "/clip.webm"


def ensure_browser_deps():
    """npm ci of tests/browser's committed lockfile when node_modules is missing (playwright-core
    only: it downloads no browser; the tests drive Debian's /usr/bin/chromium). None or an error."""
    if (BROWSER_DIR / "node_modules" / "playwright-core").is_dir():
        return None
    try:
        r = run(["npm", "ci", "--no-audit", "--no-fund"], 300, cwd=BROWSER_DIR)
    except subprocess.TimeoutExpired:
        return f"npm ci in {BROWSER_DIR} did not finish within 300 s"
    if r.returncode != 0:
        return f"npm ci in {BROWSER_DIR}: exit {r.returncode}: {r.stderr.decode(errors='replace')[-500:]}"
    return None


# ---------------------------------------------------------------------------------------------
# Servers

class Endpoint:
    """Where a client connects: 127.0.0.1:port. A Server is one; so is its admin listener."""

    def __init__(self, port):
        self.port = port

    @property
    def base(self):
        return f"http://127.0.0.1:{self.port}"

    def url(self, path, query=""):
        return self.base + url_path(path) + (("?" + query) if query else "")


class Server:
    """One running server process on 127.0.0.1:port, its output in log. datapumpd's admin
    listener (/metrics, /_datapump/: the control plane) is on admin_port (None: nginx, or an
    admin listener the check set up itself)."""

    def __init__(self, proc, port, log, kind, admin_port=None):
        self.proc, self.port, self.log, self.kind = proc, port, log, kind
        self.admin_port = admin_port

    @property
    def admin(self):
        """The admin listener as an endpoint for fetch(), get(), json_api(), Conn(...port)."""
        expect(self.admin_port is not None, f"{self.kind} has no admin listener on a TCP port")
        return Endpoint(self.admin_port)

    def admin_url(self, path, query=""):
        return self.admin.url(path, query)

    @property
    def base(self):
        return f"http://127.0.0.1:{self.port}"

    def url(self, path, query=""):
        return self.base + url_path(path) + (("?" + query) if query else "")

    def alive(self):
        return self.proc.poll() is None

    def log_tail(self, n=2000):
        try:
            return self.log.read_text(errors="replace")[-n:]
        except OSError:
            return ""

    def stop(self, sig=signal.SIGTERM):
        kill(self.proc, sig)


def _answers(port):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
            s.sendall(b"HEAD / HTTP/1.1\r\nHost: probe\r\nConnection: close\r\n\r\n")
            return s.recv(16).startswith(b"HTTP/1.")
    except OSError:
        return False


def _start(make_argv, log, kind, tries=3):
    """Starts a server on a free port and waits (10 s at most) until it answers HTTP. A port
    taken between free_port() and the server's bind is retried with another."""
    for attempt in range(tries):
        port = free_port()
        argv, admin_port = make_argv(port), None
        if isinstance(argv, tuple):  # (argv, the admin listener's port)
            argv, admin_port = argv
        with open(log, "ab") as out:
            proc = spawn(argv, stdout=out, stderr=subprocess.STDOUT)
        server = Server(proc, port, log, kind, admin_port)
        if wait_until(lambda: not server.alive() or _answers(port), 10, 0.05) and server.alive():
            return server
        server.stop(signal.SIGKILL)
        if attempt + 1 == tries or "in use" not in server.log_tail():
            raise RuntimeError(f"{kind} did not come up on 127.0.0.1:{port} (exit {proc.returncode}); log:\n"
                               f"{server.log_tail()}")
    raise AssertionError("unreachable")


class Daemon:
    """datapumpd with one provider and send path, and the variant's own flags (pairs: FLAG VALUE);
    extra flags per spawn, which replace a variant flag of the same name."""
    is_daemon = True

    def __init__(self, binary, provider, send_path, tmp, flags=()):
        self.binary, self.provider, self.send_path, self.tmp = binary, provider, send_path, tmp
        self.flags = list(flags)
        self.name = f"{provider}/{send_path}" + "".join(f" {f}" for f in self.flags)
        self.count = 0

    def spawn(self, root, extra=()):
        self.count += 1
        log = self.tmp / f"datapumpd-{self.provider}-{self.send_path}-{self.count}.log"
        given = {str(a) for a in extra if str(a).startswith("--")}
        own = [a for k in range(0, len(self.flags), 2) if self.flags[k] not in given
               for a in self.flags[k:k + 2]]
        argv = lambda port: [self.binary, "--root", str(root), "--listen", f"127.0.0.1:{port}",
                             "--provider", self.provider, "--send-path", self.send_path, *own, *extra]

        def with_admin(port):
            # Every daemon gets its admin listener on another free port, unless the check set one.
            if any(str(a).startswith("--admin-listen") for a in extra):
                return argv(port)
            admin_port = free_port()
            while admin_port == port:
                admin_port = free_port()
            return argv(port) + ["--admin-listen", f"127.0.0.1:{admin_port}"], admin_port
        return _start(with_admin, log, "datapumpd")


class Nginx:
    """The peer the harness is validated against. master_process off: one process, so
    PDEATHSIG reaches everything it runs. limit_rate $arg_rate stands in for ?rate= (nginx reads
    '2M' as 2 MiB/s, within the pacing check's bounds)."""
    is_daemon = False
    name = "nginx"
    binary = shutil.which("nginx") or "/usr/sbin/nginx"

    def __init__(self, tmp):
        self.tmp, self.count = tmp, 0

    def spawn(self, root, extra=()):
        self.count += 1
        d = self.tmp / f"nginx-{self.count}"
        d.mkdir()

        def argv(port):
            conf = d / "nginx.conf"
            conf.write_text(f"""daemon off; master_process off; worker_processes 1; error_log stderr; pid {d}/nginx.pid;
events {{ worker_connections 1024; }}
http {{
  include /etc/nginx/mime.types; sendfile on; access_log off;
  client_body_temp_path {d}/body; proxy_temp_path {d}/proxy; fastcgi_temp_path {d}/fastcgi;
  uwsgi_temp_path {d}/uwsgi; scgi_temp_path {d}/scgi;
  map $arg_rate $rate {{ "" 0; default $arg_rate; }}
  server {{ listen 127.0.0.1:{port}; root {root}; limit_rate $rate; }}
}}
""")
            return [self.binary, "-p", str(d), "-c", str(conf), "-e", "stderr"]
        return _start(argv, d / "nginx.log", "nginx")


# ---------------------------------------------------------------------------------------------
# Clients

@dataclass
class Response:
    status: int
    reason: str
    headers: list
    body: bytes
    version: str = "HTTP/1.1"

    def header(self, name, default=None):
        name = name.lower()
        for k, v in self.headers:
            if k.lower() == name:
                return v
        return default

    def brief(self):
        return f"{self.status} {self.reason} ({len(self.body)} body bytes)"


def request(method, target, headers=(), version="HTTP/1.1", host="127.0.0.1"):
    """The bytes of one request; target is sent as is (no normalisation, no encoding)."""
    lines = [f"{method} {target} {version}"]
    if host is not None:
        lines.append(f"Host: {host}")
    lines += [f"{k}: {v}" for k, v in (headers.items() if isinstance(headers, dict) else headers)]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


class Conn:
    """A raw TCP connection: sends exactly the given bytes, parses responses in order."""

    def __init__(self, port, timeout=10):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.buf = bytearray()

    def __enter__(self):
        return self

    def __exit__(self, *_):
        self.close()

    def close(self):
        self.sock.close()

    def send(self, data):
        self.sock.sendall(data)

    def _fill(self):
        chunk = self.sock.recv(1 << 20)
        if not chunk:
            raise EOFError("connection closed by the server")
        self.buf += chunk

    def _take(self, n):
        while len(self.buf) < n:
            self._fill()
        out = bytes(self.buf[:n])
        del self.buf[:n]
        return out

    def read_response(self, head_only=False):
        while True:
            end = self.buf.find(b"\r\n\r\n")
            if end >= 0:
                break
            self._fill()
        head = bytes(self.buf[:end]).decode("latin-1")
        del self.buf[:end + 4]
        status_line, *lines = head.split("\r\n")
        parts = status_line.split(" ", 2)
        if len(parts) < 2 or not parts[0].startswith("HTTP/"):
            raise CheckFailed(f"not an HTTP status line: {status_line!r}")
        headers = [tuple(s.strip() for s in line.split(":", 1)) for line in lines if ":" in line]
        r = Response(int(parts[1]), parts[2] if len(parts) > 2 else "", headers, b"", parts[0])
        if head_only or r.status in (204, 304) or r.status < 200:
            return r
        if r.header("transfer-encoding", "").lower() == "chunked":
            body = bytearray()
            while True:
                while b"\r\n" not in self.buf:
                    self._fill()
                i = self.buf.find(b"\r\n")
                n = int(bytes(self.buf[:i]).split(b";")[0], 16)
                del self.buf[:i + 2]
                body += self._take(n + 2)[:n]
                if n == 0:
                    break
            r.body = bytes(body)
        elif r.header("content-length") is not None:
            r.body = self._take(int(r.header("content-length")))
        else:
            r.body = self.read_to_eof()
        return r

    def read_to_eof(self):
        try:
            while True:
                self._fill()
        except EOFError:
            pass
        out = bytes(self.buf)
        self.buf.clear()
        return out

    def closed_by_peer(self, timeout):
        """True when the server closes the connection within timeout seconds (bytes it still
        sends are dropped), False if it stays open."""
        self.sock.settimeout(timeout)
        deadline = time.monotonic() + timeout
        try:
            while time.monotonic() < deadline:
                if not self.sock.recv(65536):
                    return True
        except (socket.timeout, TimeoutError):
            return False
        except ConnectionResetError:
            return True
        return False


def fetch(server, method, target, headers=(), head_only=None, timeout=10):
    """One request on a fresh connection, Connection: close."""
    hdrs = list(headers.items() if isinstance(headers, dict) else headers) + [("Connection", "close")]
    try:
        with Conn(server.port, timeout) as c:
            c.send(request(method, target, hdrs))
            return c.read_response(head_only=(method == "HEAD") if head_only is None else head_only)
    except (socket.timeout, TimeoutError):
        raise CheckFailed(f"{method} {target[:80]}: no complete answer within {timeout} s") from None
    except (OSError, EOFError) as e:
        raise CheckFailed(f"{method} {target[:80]}: {type(e).__name__}: {e}") from None


def get(server, path, headers=(), query=""):
    return fetch(server, "GET", url_path(path) + (("?" + query) if query else ""), headers)


def curl(args, timeout=30):
    return run(["curl", "-sS", "--globoff", "--max-time", str(timeout - 2), *args], timeout)


def json_api(server, method, target, timeout=5):
    """(status, decoded JSON or None) of a control/API request."""
    r = fetch(server, method, target, {"Content-Length": "0"} if method == "POST" else {}, timeout=timeout)
    try:
        return r.status, json.loads(r.body.decode())
    except (ValueError, UnicodeDecodeError):
        return r.status, None


def admin_of(server):
    """datapumpd's admin listener (the control plane lives there only); nginx has none: itself."""
    return server.admin if getattr(server, "admin_port", None) is not None else server


def streams(server):
    status, doc = json_api(admin_of(server), "GET", "/_datapump/api/streams")
    expect(status == 200 and isinstance(doc, dict) and isinstance(doc.get("streams"), list),
           f"GET /_datapump/api/streams: {status}, {doc!r:.200}: want 200 and {{\"streams\":[...]}}")
    return doc["streams"]


def stream_by_id(server, sid):
    for s in streams(server):
        if str(s.get("id")) == str(sid):
            return s
    return None


def metrics(server):
    """{name: summed value} of the Prometheus text at /metrics (on the admin listener)."""
    r = get(admin_of(server), "/metrics")
    expect(r.status == 200, f"GET /metrics: {r.brief()}")
    out = {}
    for line in r.body.decode(errors="replace").splitlines():
        if not line or line.startswith("#"):
            continue
        m = re.match(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)", line)
        if m:
            out[m.group(1)] = out.get(m.group(1), 0.0) + float(m.group(3))
    return out


def metric_samples(server):
    """{'name' or 'name{labels}': value} of the Prometheus text at /metrics (admin), one per sample."""
    r = get(admin_of(server), "/metrics")
    expect(r.status == 200, f"GET /metrics: {r.brief()}")
    out = {}
    for line in r.body.decode(errors="replace").splitlines():
        m = re.match(r"^([a-zA-Z_:][a-zA-Z0-9_:]*(?:\{[^}]*\})?)\s+(\S+)", line)
        if m and not line.startswith("#"):
            out[m.group(1)] = float(m.group(2))
    return out


class Background:
    """A paced curl download in the background: its output file, header file, process."""

    def __init__(self, ctx, server, path, query, tag):
        self.out = ctx.tmp / f"bg-{tag}.body"
        self.hdr = ctx.tmp / f"bg-{tag}.head"
        for f in (self.out, self.hdr):
            f.unlink(missing_ok=True)
        self.proc = ctx.start(["curl", "-sS", "--globoff", "--max-time", "120", "-o", str(self.out),
                               "-D", str(self.hdr), server.url(path, query)])

    def control_path(self, timeout=5):
        """The X-Datapump-Control path of the response (the stream's capability), or None."""
        self.status_and_id(timeout)
        m = re.search(r"(?im)^x-datapump-control:\s*(\S+)", self.hdr.read_bytes().decode("latin-1"))
        return m.group(1) if m else None

    def status_and_id(self, timeout=5):
        """(status, X-Datapump-Stream) once the response head has arrived."""
        def head():
            try:
                text = self.hdr.read_bytes().decode("latin-1")
            except OSError:
                return None
            if "\r\n\r\n" not in text:
                return None
            status = int(text.split(" ", 2)[1])
            m = re.search(r"(?im)^x-datapump-stream:\s*(\S+)", text)
            return status, (m.group(1) if m else None)
        got = wait_until(head, timeout)
        expect(got, f"no response head within {timeout} s (curl exit {self.proc.poll()})")
        return got

    def received(self):
        try:
            return self.out.stat().st_size
        except OSError:
            return 0


# ---------------------------------------------------------------------------------------------
# Checks: registry and runner

CHECKS = []


def check(name, nginx="run"):
    """Registers a check. nginx: 'run', 'skip: why' (daemon-only) or 'xfail: why' (nginx answers
    differently by design; the check must fail there, which also shows it can fail)."""
    def deco(fn):
        CHECKS.append((name, fn, nginx))
        return fn
    return deco


class Ctx:
    def __init__(self, fx, factory, tmp):
        self.fx, self.factory, self.tmp = fx, factory, tmp
        self.server = None
        self._procs = []
        self._servers = []
        self.notes = []

    def note(self, text):
        """A figure worth seeing on the PASS line (measured rates and such)."""
        self.notes.append(text)

    @property
    def is_daemon(self):
        return self.factory.is_daemon

    def start(self, argv):
        p = spawn(argv)
        self._procs.append(p)
        return p

    def extra_server(self, extra=(), root=None):
        """A second server (own flags; the fixture's root unless another is given) that lives
        until the end of the current check."""
        s = self.factory.spawn(root or self.fx.root, extra)
        self._servers.append(s)
        return s

    def cleanup(self):
        for p in self._procs:
            kill(p)
        for s in self._servers:
            s.stop(signal.SIGKILL)
        self._procs, self._servers = [], []


class _CheckTimeout(Exception):
    pass


def _alarm(_s, _f):
    raise _CheckTimeout()


def selected(name, only, skip):
    if only and not any(fnmatch.fnmatch(name, p) for p in only):
        return False
    return not any(fnmatch.fnmatch(name, p) for p in skip)


def run_checks(ctx, only, skip, counts, per_check_timeout=60):
    signal.signal(signal.SIGALRM, _alarm)
    label = ctx.factory.name
    for name, fn, nginx in CHECKS:
        if not selected(name, only, skip):
            continue
        if not ctx.is_daemon and nginx.startswith("skip"):
            print(f"SKIP  [{label}] {name}: daemon-only ({nginx[5:].strip()})", flush=True)
            counts["skipped"] += 1
            continue
        if ctx.server is None or not ctx.server.alive():
            ctx.server = ctx.factory.spawn(ctx.fx.root)
        t0 = time.monotonic()
        err = None
        ctx.notes = []
        signal.alarm(per_check_timeout)
        try:
            fn(ctx)
        except CheckFailed as e:
            err = str(e)
        except _CheckTimeout:
            err = f"did not finish within {per_check_timeout} s"
        except Exception as e:  # a check that crashes has failed; say where
            err = f"{type(e).__name__}: {e}\n{traceback.format_exc(limit=4)}"
        finally:
            signal.alarm(0)
            ctx.cleanup()
        if err is None and not ctx.server.alive():
            err = (f"the server died during this check (exit {ctx.server.proc.returncode}); log:\n"
                   f"{ctx.server.log_tail()}")
        dt = time.monotonic() - t0
        xfail = not ctx.is_daemon and nginx.startswith("xfail")
        if xfail and err is not None:
            print(f"XFAIL [{label}] {name} ({dt:.1f}s): expected on nginx ({nginx[6:].strip()}): {err.splitlines()[0]}",
                  flush=True)
            counts["xfailed"] += 1
        elif xfail:
            print(f"FAIL  [{label}] {name} ({dt:.1f}s): passed against nginx, which was expected to differ "
                  f"({nginx[6:].strip()}): the check may be unable to fail", flush=True)
            counts["failed"] += 1
        elif err is None:
            notes = f": {'; '.join(ctx.notes)}" if ctx.notes else ""
            print(f"PASS  [{label}] {name} ({dt:.1f}s){notes}", flush=True)
            counts["passed"] += 1
        else:
            print(f"FAIL  [{label}] {name} ({dt:.1f}s): {err}", flush=True)
            counts["failed"] += 1
    if ctx.server is not None:
        ctx.server.stop()
        ctx.server = None
