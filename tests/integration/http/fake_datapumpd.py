#!/usr/bin/env python3
"""NOT the daemon: a slow, thread-per-connection stand-in for datapumpd's HTTP contract
(docs/daemon.md), written only to develop the checks of http_test.py that nginx cannot answer
(control API, pacing, admission, metrics, status page, shutdown) before datapumpd exists:

    tests/integration/http/http_test.py tests/integration/http/fake_datapumpd.py

It takes datapumpd's flags (unknown ones are ignored) and serves the folder with the same
answers. It copies file data through user space, has no cache (loans are always 0) and makes no
attempt at speed. Never registered with ctest.
"""
import argparse
import email.utils
import json
import os
import re
import signal
import socket
import threading
import time
import urllib.parse

MIME = {".mp4": "video/mp4", ".webm": "video/webm", ".txt": "text/plain; charset=utf-8",
        ".html": "text/html; charset=utf-8", ".json": "application/json"}


def rate_arg(text):
    m = re.fullmatch(r"(\d+(?:\.\d+)?)([kMG]?)", text or "")
    if not m:
        raise ValueError(f"bad rate {text!r}")
    return int(float(m.group(1)) * {"": 1, "k": 1e3, "M": 1e6, "G": 1e9}[m.group(2)])


ap = argparse.ArgumentParser()
ap.add_argument("--root", default=".")
ap.add_argument("--listen", default="127.0.0.1:8080")
ap.add_argument("--provider", default="posix")
ap.add_argument("--send-path", default="auto")
ap.add_argument("--capacity", default="0")
ap.add_argument("--default-rate", default="0")
ap.add_argument("--max-rate", default="0")
ap.add_argument("--default-burst", type=int, default=0)  # 0: auto, as datapumpd
ap.add_argument("--idle-timeout-ms", type=int, default=60000)
ap.add_argument("--header-timeout-ms", type=int, default=10000)
ap.add_argument("--max-header-bytes", type=int, default=16384)
ap.add_argument("--max-request-line", type=int, default=8192)
ap.add_argument("--grace-ms", type=int, default=5000)
opt, _unknown = ap.parse_known_args()
ROOT = os.path.realpath(opt.root)
CAPACITY, DEFAULT_RATE, MAX_RATE = rate_arg(opt.capacity), rate_arg(opt.default_rate), rate_arg(opt.max_rate)
SEND_PATH = opt.send_path if opt.send_path != "auto" else ("send-zc" if opt.provider == "direct" else "sendfile")

lock = threading.Lock()  # guards everything below
streams = {}
next_id = [1]
counters = {"refusals": 0, "connections": 0}
stopping = threading.Event()


class Stream:
    def __init__(self, client, file, start, end, rate, burst):
        with lock:
            self.id = next_id[0]
            next_id[0] += 1
            streams[self.id] = self
        self.client, self.file, self.start, self.end = client, file, start, end
        self.position, self.bytes_sent, self.rate, self.burst = start, 0, rate, burst
        self.state, self.speed = "running", 1
        self.resumed = threading.Event()
        self.resumed.set()

    def view(self):
        return {"id": self.id, "client": self.client, "file": self.file, "start": self.start, "end": self.end,
                "position": self.position, "bytes_sent": self.bytes_sent, "rate": self.rate, "burst": self.burst,
                "state": self.state, "speed": self.speed, "loop": 0, "send_path": SEND_PATH}


class Reject(Exception):
    def __init__(self, status, reason):
        super().__init__(reason)
        self.status, self.reason = status, reason


def http_date(t):
    return email.utils.formatdate(t, usegmt=True)


def respond(conn, status, reason, headers=(), body=b"", head_only=False, close=False):
    lines = [f"HTTP/1.1 {status} {reason}", "Server: fake-datapumpd", f"Date: {http_date(time.time())}"]
    lines += [f"{k}: {v}" for k, v in headers]
    if not any(k.lower() == "content-length" for k, _ in headers):
        lines.append(f"Content-Length: {len(body)}")
    if close:
        lines.append("Connection: close")
    conn.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + (b"" if head_only else body))


def read_head(conn, buf, first):
    """Reads one request head; returns (head text, rest of buffer) or None at a clean close."""
    deadline = None if first is None else time.monotonic() + first
    start = None
    while b"\r\n\r\n" not in buf:
        line_end = buf.find(b"\r\n")
        if (line_end < 0 and len(buf) > opt.max_request_line) or line_end > opt.max_request_line:
            raise Reject(414, "URI Too Long")
        if len(buf) > opt.max_header_bytes:
            raise Reject(431, "Request Header Fields Too Large")
        now = time.monotonic()
        if start is None and buf:
            start = now
        limit = (start + opt.header_timeout_ms / 1000) if start else (
            deadline if deadline else now + opt.idle_timeout_ms / 1000)
        if now >= limit:
            if start:
                raise Reject(408, "Request Timeout")
            return None
        conn.settimeout(max(0.01, min(limit - now, 0.2)))
        try:
            chunk = conn.recv(65536)
        except (socket.timeout, TimeoutError):
            continue
        if not chunk:
            return None
        buf += chunk
    end = buf.index(b"\r\n\r\n")
    if buf.find(b"\r\n") > opt.max_request_line:
        raise Reject(414, "URI Too Long")
    if end > opt.max_header_bytes:
        raise Reject(431, "Request Header Fields Too Large")
    return buf[:end].decode("latin-1"), buf[end + 4:]


def resolve(target):
    path = urllib.parse.unquote(target.split("?", 1)[0])
    if not path.startswith("/") or "\0" in path or ".." in path.split("/"):
        raise Reject(403, "Forbidden")
    full = os.path.realpath(os.path.join(ROOT, path.lstrip("/")))
    if full != ROOT and not full.startswith(ROOT + "/"):
        raise Reject(403, "Forbidden")
    if not os.path.exists(full):
        raise Reject(404, "Not Found")
    if not os.path.isfile(full):
        raise Reject(403, "Forbidden")
    return path, full


def parse_range(value, size):
    """(start, end) of a single satisfiable range; None for the whole file; 'unsat' for 416."""
    m = re.fullmatch(r"bytes=(\d*)-(\d*)", (value or "").strip())
    if not m or (m.group(1) == "" and m.group(2) == ""):
        return None
    a, b = m.group(1), m.group(2)
    if a == "":
        n = int(b)
        return "unsat" if n == 0 or size == 0 else (max(0, size - n), size - 1)
    a = int(a)
    if b != "" and int(b) < a:
        return None
    if a >= size:
        return "unsat"
    return a, min(size - 1, int(b)) if b != "" else size - 1


def api(conn, method, target, head_only):
    parsed = urllib.parse.urlsplit(target)
    q = urllib.parse.parse_qs(parsed.query)
    send = lambda status, reason, doc: respond(conn, status, reason, [("Content-Type", "application/json")],
                                               json.dumps(doc).encode(), head_only)
    if parsed.path == "/_datapump/api/streams" and method == "GET":
        with lock:
            return send(200, "OK", {"streams": [s.view() for s in streams.values()]})
    if parsed.path == "/_datapump/api/status" and method == "GET":
        with lock:
            return send(200, "OK", {"loops": 1, "connections": counters["connections"],
                                    "cache": {"buffers": 0, "buffer_size": 262144, "hits": 0, "misses": 0},
                                    "send_paths": [SEND_PATH]})
    m = re.fullmatch(r"/_datapump/api/streams/([^/]+)/(pause|resume|seek|speed)", parsed.path)
    if m and method == "POST":
        with lock:
            s = streams.get(int(m.group(1))) if m.group(1).isdigit() else None
        if s is None:
            return send(404, "Not Found", {"ok": False, "error": f"no stream {m.group(1)}"})
        try:
            if m.group(2) == "pause":
                s.state = "paused"
                s.resumed.clear()
            elif m.group(2) == "resume":
                s.state = "running"
                s.resumed.set()
            elif m.group(2) == "seek":
                s.position = int(q["offset"][0])
            else:
                s.speed = int(q["factor"][0])
        except (KeyError, ValueError):
            return send(400, "Bad Request", {"ok": False, "error": f"bad argument for {m.group(2)}"})
        with lock:
            return send(200, "OK", {"ok": True, "stream": s.view()})
    return send(404, "Not Found", {"ok": False, "error": f"no such API: {method} {parsed.path}"})


STATUS_PAGE = b"""<!doctype html><html><head><meta charset="utf-8"><title>datapumpd (fake)</title></head>
<body><h1>streams</h1><table><thead><tr><th>id</th><th>file</th><th>position</th><th>state</th><th></th></tr></thead>
<tbody id="rows"></tbody></table>
<script>
async function act(id, what) { await fetch(`/_datapump/api/streams/${id}/${what}`, {method: 'POST'}); refresh(); }
async function refresh() {
  const doc = await (await fetch('/_datapump/api/streams')).json();
  const rows = document.getElementById('rows');
  rows.replaceChildren(...doc.streams.map((s) => {
    const tr = document.createElement('tr');
    tr.dataset.streamId = s.id;
    for (const v of [s.id, s.file, s.position, s.state]) {
      const td = document.createElement('td'); td.textContent = v; tr.append(td);
    }
    for (const what of ['pause', 'resume']) {
      const b = document.createElement('button'); b.className = what; b.dataset.streamId = s.id; b.textContent = what;
      b.onclick = () => act(s.id, what); tr.append(b);
    }
    return tr;
  }));
}
refresh(); setInterval(refresh, 1000);
</script></body></html>
"""


def metrics_text():
    with lock:
        return (f"# TYPE datapump_active_streams gauge\ndatapump_active_streams {len(streams)}\n"
                f"# TYPE datapump_cache_loans_outstanding gauge\ndatapump_cache_loans_outstanding 0\n"
                f"# TYPE datapump_admission_refusals_total counter\n"
                f"datapump_admission_refusals_total {counters['refusals']}\n"
                f"# TYPE datapump_connections gauge\ndatapump_connections {counters['connections']}\n").encode()


def serve_file(conn, addr, method, target, headers):
    path, full = resolve(target)
    st = os.stat(full)
    size = st.st_size
    etag = f'"{st.st_ino:x}-{size:x}-{st.st_mtime_ns:x}"'
    last_mod = http_date(st.st_mtime)
    common = [("ETag", etag), ("Last-Modified", last_mod), ("Accept-Ranges", "bytes"),
              ("Content-Type", MIME.get(os.path.splitext(full)[1], "application/octet-stream"))]
    inm, ims = headers.get("if-none-match"), headers.get("if-modified-since")
    if (inm and etag in [t.strip() for t in inm.split(",")]) or (
            not inm and ims and email.utils.parsedate_to_datetime(ims).timestamp() >= int(st.st_mtime)):
        return respond(conn, 304, "Not Modified", common[:2], head_only=True)
    rng = parse_range(headers.get("range"), size) if "range" in headers else None
    if_range = headers.get("if-range")
    if rng is not None and if_range and if_range != etag and if_range != last_mod:
        rng = None
    if rng == "unsat":
        return respond(conn, 416, "Range Not Satisfiable", [("Content-Range", f"bytes */{size}")])
    start, end = rng if rng else (0, size - 1)
    query = urllib.parse.parse_qs(urllib.parse.urlsplit(target).query)
    rate = rate_arg(query.get("rate", [headers.get("x-datapump-rate", "")])[0] or str(DEFAULT_RATE))
    burst = int(query.get("burst", [headers.get("x-datapump-burst", opt.default_burst)])[0])
    if MAX_RATE and rate > MAX_RATE:
        rate = MAX_RATE
    if burst == 0:
        burst = max(262144, min(rate, 1 << 20), rate // 4)
    status = (206, "Partial Content") if rng else (200, "OK")
    extra = [("Content-Range", f"bytes {start}-{end}/{size}")] if rng else []
    if method == "HEAD" or size == 0:
        return respond(conn, *status, common + extra + [("Content-Length", str(end - start + 1))], head_only=True)
    with lock:
        reserved = sum(s.rate for s in streams.values())
        if CAPACITY and rate and reserved + rate > CAPACITY:
            counters["refusals"] += 1
            body = f"capacity {CAPACITY} B/s, reserved {reserved} B/s, asked {rate} B/s\n".encode()
            return respond(conn, 503, "Service Unavailable", [("Retry-After", "1"), ("Content-Type", "text/plain")],
                           body, close=True) or False
    s = Stream(f"{addr[0]}:{addr[1]}", path.lstrip("/"), start, end, rate, burst)
    try:
        respond(conn, *status, common + extra + [("Content-Length", str(end - start + 1)),
                                                ("X-Datapump-Stream", str(s.id))], head_only=True)
        left = end - start + 1
        tokens, t_last = burst, time.monotonic()
        conn.settimeout(30)
        with open(full, "rb") as f:
            while left > 0:
                s.resumed.wait()
                if stopping.is_set() and not s.resumed.is_set():
                    return False
                n = min(left, 65536, burst if rate else 65536, end + 1 - s.position)
                if n <= 0:
                    return False  # the source ended before the body: close
                if rate:
                    now = time.monotonic()
                    tokens = min(burst, tokens + (now - t_last) * rate)
                    t_last = now
                    if tokens < n:
                        time.sleep((n - tokens) / rate)
                        continue
                    tokens -= n
                if s.state == "paused":
                    continue
                f.seek(s.position)
                data = f.read(n)
                conn.sendall(data)
                s.position += len(data)
                s.bytes_sent += len(data)
                left -= len(data)
        return True
    finally:
        with lock:
            streams.pop(s.id, None)


def handle(conn, addr):
    with lock:
        counters["connections"] += 1
    buf = b""
    first = True
    try:
        while not stopping.is_set():
            try:
                got = read_head(conn, buf, None if first else opt.idle_timeout_ms / 1000)
                if got is None:
                    return
                head, buf = got
                first = False
                request_line, *lines = head.split("\r\n")
                parts = request_line.split(" ")
                if len(parts) != 3 or not parts[2].startswith("HTTP/1.") or not parts[1].startswith("/"):
                    raise Reject(400, "Bad Request")
                method, target, version = parts
                headers = {}
                for line in lines:
                    if ":" not in line:
                        raise Reject(400, "Bad Request")
                    k, v = line.split(":", 1)
                    headers[k.strip().lower()] = v.strip()
                keep = headers.get("connection", "").lower() != "close" if version == "HTTP/1.1" else \
                    headers.get("connection", "").lower() == "keep-alive"
                path = urllib.parse.urlsplit(target).path
                if path.startswith("/_datapump/api/"):
                    api(conn, method, target, method == "HEAD")
                elif path == "/_datapump/" and method in ("GET", "HEAD"):
                    respond(conn, 200, "OK", [("Content-Type", "text/html; charset=utf-8")], STATUS_PAGE,
                            method == "HEAD")
                elif path == "/metrics" and method in ("GET", "HEAD"):
                    respond(conn, 200, "OK", [("Content-Type", "text/plain; version=0.0.4")], metrics_text(),
                            method == "HEAD")
                elif path.startswith("/_datapump"):
                    raise Reject(404, "Not Found")
                elif method not in ("GET", "HEAD"):
                    respond(conn, 405, "Method Not Allowed", [("Allow", "GET, HEAD")], close=True)
                    return
                elif serve_file(conn, addr, method, target, headers) is False:
                    return
                if not keep:
                    return
            except Reject as e:
                respond(conn, e.status, e.reason, [("Content-Type", "text/plain")], f"{e.reason}\n".encode(),
                        close=True)
                return
    except OSError:
        pass
    finally:
        with lock:
            counters["connections"] -= 1
        conn.close()


def main():
    host, port = opt.listen.rsplit(":", 1)
    lsock = socket.create_server((host.strip("[]"), int(port)), reuse_port=True, backlog=256)
    lsock.settimeout(0.2)

    def on_term(_s, _f):
        stopping.set()
    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)
    print(f"fake-datapumpd: serving {ROOT} on {opt.listen} (provider {opt.provider}, send path {SEND_PATH})",
          flush=True)
    while not stopping.is_set():
        try:
            conn, addr = lsock.accept()
        except (socket.timeout, TimeoutError):
            continue
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        threading.Thread(target=handle, args=(conn, addr), daemon=True).start()
    lsock.close()
    deadline = time.monotonic() + opt.grace_ms / 1000
    while time.monotonic() < deadline:
        with lock:
            if not streams:
                break
        time.sleep(0.05)
    print("fake-datapumpd: stopped", flush=True)
    os._exit(0)  # cuts the streams still running


if __name__ == "__main__":
    main()
