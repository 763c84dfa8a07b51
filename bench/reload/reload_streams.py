#!/usr/bin/env python3
"""conf: reload time under live streams (issue 15's figure; docs/benchmarks.md, "Reload under
100 live streams").

Starts datapumpd with a --config file, opens STREAMS paced downloads of one file (all from one
reader process, a selector over the sockets), and once every response head has arrived sends
RELOADS SIGHUPs, each with a changed file (the admin token and max_rate alternate). A reload's
time is from kill(SIGHUP) until a new request sees the new token (GET /metrics on the admin
listener with it answers 200; polled back to back), and the daemon's own "reloaded ... in T ms"
line. At the end every stream's body is compared with the file: length and SHA-256.

usage: reload_streams.py DATAPUMPD [--streams 100] [--rate 1M] [--size-mib 4] [--reloads 5]
Prints one line per reload and a summary; exit 1 when a stream lost or changed a byte.
"""
import argparse
import hashlib
import multiprocessing
import os
import re
import selectors
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_status(port, path, token=None, timeout=2.0):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
            auth = f"Authorization: Bearer {token}\r\n" if token else ""
            s.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{auth}Connection: close\r\n\r\n".encode())
            head = s.recv(64)
            return int(head.split(b" ", 2)[1]) if head.startswith(b"HTTP/1.") else 0
    except OSError:
        return 0


def reader(port, path, n, heads_ready, results):
    """Opens n paced GETs; signals heads_ready once all heads are in; puts [(length, sha256)]."""
    sel = selectors.DefaultSelector()
    state = []
    for i in range(n):
        s = socket.create_connection(("127.0.0.1", port))
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".encode())
        s.setblocking(False)
        st = {"sock": s, "buf": bytearray(), "head": False, "hash": hashlib.sha256(), "len": 0, "status": 0,
              "done": False}
        state.append(st)
        sel.register(s, selectors.EVENT_READ, st)
    heads = 0
    open_count = n
    while open_count:
        for key, _ in sel.select(timeout=30):
            st = key.data
            try:
                chunk = st["sock"].recv(1 << 20)
            except BlockingIOError:
                continue
            except OSError:
                chunk = b""
            if not chunk:
                sel.unregister(st["sock"])
                st["sock"].close()
                st["done"] = True
                open_count -= 1
                if not st["head"]:
                    heads += 1
                continue
            if not st["head"]:
                st["buf"] += chunk
                end = st["buf"].find(b"\r\n\r\n")
                if end < 0:
                    continue
                st["status"] = int(st["buf"][9:12])
                body = bytes(st["buf"][end + 4:])
                st["head"] = True
                st["buf"] = None
                heads += 1
                if heads == n:
                    heads_ready.set()
                chunk = body
            st["hash"].update(chunk)
            st["len"] += len(chunk)
    heads_ready.set()
    results.put([(st["status"], st["len"], st["hash"].hexdigest()) for st in state])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("datapumpd")
    ap.add_argument("--streams", type=int, default=100)
    ap.add_argument("--rate", default="1M")
    ap.add_argument("--size-mib", type=int, default=4)
    ap.add_argument("--reloads", type=int, default=5)
    ap.add_argument("--flags", default="", help="more datapumpd flags, space-separated")
    a = ap.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="datapump-reload-"))
    root = tmp / "root"
    root.mkdir()
    data = os.urandom(a.size_mib << 20)
    (root / "title.bin").write_bytes(data)
    want = (len(data), hashlib.sha256(data).hexdigest())
    port, admin = free_port(), free_port()
    conf = tmp / "datapumpd.toml"
    conf.write_text('admin_token = "t0"\n')
    log = tmp / "datapumpd.log"
    argv = [a.datapumpd, "--config", str(conf), "--root", str(root), "--listen", f"127.0.0.1:{port}",
            "--admin-listen", f"127.0.0.1:{admin}", *a.flags.split()]
    with open(log, "wb") as out:
        daemon = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 10
        while http_status(admin, "/metrics", "t0") != 200:
            if daemon.poll() is not None or time.monotonic() > deadline:
                sys.exit(f"datapumpd did not start:\n{log.read_text()[-2000:]}")
            time.sleep(0.05)

        heads_ready = multiprocessing.Event()
        results = multiprocessing.Queue()
        rd = multiprocessing.Process(target=reader, args=(port, f"/title.bin?rate={a.rate}", a.streams, heads_ready,
                                                          results))
        rd.start()
        if not heads_ready.wait(30):
            sys.exit("the streams' heads did not all arrive within 30 s")
        live = a.streams
        times = []
        for i in range(1, a.reloads + 1):
            token = f"t{i}"
            conf.write_text(f'admin_token = "{token}"\nmax_rate = "{"50M" if i % 2 else "100M"}"\n')
            t0 = time.monotonic()
            os.kill(daemon.pid, signal.SIGHUP)
            while http_status(admin, "/metrics", token) != 200:
                if time.monotonic() - t0 > 10:
                    sys.exit(f"reload {i} not applied within 10 s:\n{log.read_text()[-2000:]}")
            took = (time.monotonic() - t0) * 1000
            times.append(took)
            print(f"reload {i}: new token in force after {took:.2f} ms", flush=True)
            time.sleep(0.2)
        got = results.get(timeout=a.size_mib * (1 << 20) * 4 // max(1, parse_rate(a.rate)) + 60)
        rd.join()
        text = log.read_text(errors="replace")
        found = re.findall(r"reloaded \S+ in ([0-9.]+) ms \(read and checked ([0-9.]+) ms, applied on every loop "
                           r"([0-9.]+) ms\)", text)
        inside = [float(f[0]) for f in found]
        checked = [float(f[1]) for f in found]
        applied = [float(f[2]) for f in found]
        bad = [g for g in got if g != (200, *want)]
        print(f"streams: {len(got)} paced at {a.rate}B/s, {a.size_mib} MiB each, live during {a.reloads} reloads "
              f"(all heads in before the first)")
        print(f"reload, kill -> new token in force (ms): median {statistics.median(times):.2f}, "
              f"max {max(times):.2f}")
        if inside:
            print(f"reload, daemon's own timing (ms): median {statistics.median(inside):.2f}, max {max(inside):.2f}; "
                  f"of which reading and checking the file median {statistics.median(checked):.2f}, "
                  f"applying on every loop median {statistics.median(applied):.2f} (max {max(applied):.2f})")
        print(f"streams intact (status 200, every byte, SHA-256 equal): {len(got) - len(bad)} of {len(got)}")
        for g in bad[:5]:
            print(f"  BAD: status {g[0]}, {g[1]} bytes of {want[0]}")
        return 1 if bad or len(got) != live else 0
    finally:
        daemon.send_signal(signal.SIGTERM)
        try:
            daemon.wait(15)
        except subprocess.TimeoutExpired:
            daemon.kill()
        shutil.rmtree(tmp, ignore_errors=True)


def parse_rate(text):
    m = re.fullmatch(r"([0-9.]+)([kKMG]?)", text)
    return int(float(m.group(1)) * {"": 1, "k": 1e3, "K": 1e3, "M": 1e6, "G": 1e9}[m.group(2)])


if __name__ == "__main__":
    sys.exit(main())
