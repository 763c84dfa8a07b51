#!/usr/bin/env python3
"""Soak under attack: legitimate paced viewers beside a mix of abusive clients (issue 14).

One datapumpd (started by run.sh) serves a title. Fifty viewers, each from its own loopback source
address, stream it at a fixed rate over keep-alive connections for the whole run. After a quiet
phase (the baseline), abusive clients run for the attack phase, from many other loopback source
addresses (so per-IP limits alone cannot hide them):

  non-readers   GET the title (paced and unpaced) with a tiny receive buffer and never read
  slowloris     send a request head one byte every few seconds, never finishing it
  trickle-put   PUT with the right token, one byte every 2 s (an insider's worst case)
  garbage       random bytes as a request, read whatever comes back, close
  flood         open idle connections until connect fails (the fd limit), hold them, let go

Then a settling phase with the viewers alone. Reported:
  - each viewer's on-time share: 1-second intervals in which its bytes so far are at least
    97 % of rate x elapsed (minus one burst); the run's on-time fraction is over all viewers
    and intervals of the attack phase;
  - the daemon's RSS and open descriptors at the end of the baseline and the end of settling;
  - the daemon's CPU (share of one core) in the baseline and in the attack: the difference is
    what the attack costs beyond the viewers.

Every loop is bounded in time; the script ends by itself. Only loopback addresses are used.
"""
import argparse
import asyncio
import json
import os
import random
import socket
import sys
import time

TCK = os.sysconf("SC_CLK_TCK")


def proc_sample(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    cpu = (int(fields[11]) + int(fields[12])) / TCK
    rss = 0
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1]) * 1024
    fds = len(os.listdir(f"/proc/{pid}/fd"))
    return {"cpu": cpu, "rss": rss, "fds": fds, "t": time.monotonic()}


async def connect(port, src, rcvbuf=None):
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setblocking(False)
    if rcvbuf:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.bind((src, 0))
    await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
    return sock


class Viewer:
    def __init__(self, idx, args):
        self.idx = idx
        self.args = args
        self.src = f"127.0.3.{idx + 1}"
        self.bytes = 0
        self.samples = []  # (t, bytes)
        self.errors = 0
        self.started = None

    async def run(self, deadline):
        a = self.args
        target = f"/{a.title}?rate={a.rate}"
        while time.monotonic() < deadline:
            try:
                reader, writer = await asyncio.open_connection(
                    "127.0.0.1", a.port, local_addr=(self.src, 0))
            except OSError:
                self.errors += 1
                await asyncio.sleep(0.5)
                continue
            try:
                while time.monotonic() < deadline:
                    writer.write(f"GET {target} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
                    await writer.drain()
                    head = await reader.readuntil(b"\r\n\r\n")
                    status = int(head.split(b" ", 2)[1])
                    length = 0
                    for line in head.split(b"\r\n"):
                        if line.lower().startswith(b"content-length:"):
                            length = int(line.split(b":", 1)[1])
                    if status != 200:
                        self.errors += 1
                        body_left = length
                        while body_left > 0:
                            chunk = await reader.read(min(body_left, 65536))
                            if not chunk:
                                break
                            body_left -= len(chunk)
                        await asyncio.sleep(0.5)
                        continue
                    if self.started is None:
                        self.started = time.monotonic()
                    left = length
                    while left > 0 and time.monotonic() < deadline:
                        chunk = await reader.read(min(left, 262144))
                        if not chunk:
                            raise ConnectionError("closed mid-body")
                        left -= len(chunk)
                        self.bytes += len(chunk)
                    if left > 0:
                        return
            except (OSError, asyncio.IncompleteReadError, ConnectionError, ValueError):
                self.errors += 1
            finally:
                writer.close()

    def sample(self, now):
        self.samples.append((now, self.bytes))


async def non_reader(port, src, target, hold):
    try:
        sock = await connect(port, src, rcvbuf=4096)
    except OSError:
        return
    try:
        await asyncio.get_running_loop().sock_sendall(
            sock, f"GET {target} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        await asyncio.sleep(hold)
    except OSError:
        pass
    finally:
        sock.close()


async def slowloris(port, src, hold):
    try:
        sock = await connect(port, src)
    except OSError:
        return
    loop = asyncio.get_running_loop()
    head = b"GET / HTTP/1.1\r\nHost: x\r\nX-a: " + b"b" * 4096
    end = time.monotonic() + hold
    try:
        for byte in head:
            if time.monotonic() > end:
                break
            await loop.sock_sendall(sock, bytes([byte]))
            await asyncio.sleep(3)
    except OSError:
        pass
    finally:
        sock.close()


async def trickle_put(port, src, token, hold, n):
    try:
        sock = await connect(port, src)
    except OSError:
        return
    loop = asyncio.get_running_loop()
    end = time.monotonic() + hold
    try:
        await loop.sock_sendall(sock, (f"PUT /soak/trickle{n}.bin HTTP/1.1\r\nHost: x\r\n"
                                       f"Authorization: Bearer {token}\r\nContent-Length: 100000000\r\n\r\n").encode())
        while time.monotonic() < end:
            await loop.sock_sendall(sock, b"x")
            await asyncio.sleep(2)
    except OSError:
        pass
    finally:
        sock.close()


async def garbage(port, src, rnd):
    try:
        sock = await connect(port, src)
    except OSError:
        return
    loop = asyncio.get_running_loop()
    try:
        await loop.sock_sendall(sock, rnd.randbytes(rnd.randint(1, 4096)))
        await asyncio.wait_for(loop.sock_recv(sock, 65536), 2)
    except (OSError, asyncio.TimeoutError):
        pass
    finally:
        sock.close()


async def flood(port, srcs, hold, limit):
    socks = []
    try:
        for i in range(limit):
            try:
                socks.append(await asyncio.wait_for(connect(port, srcs[i % len(srcs)]), 1))
            except (OSError, asyncio.TimeoutError):
                break
        await asyncio.sleep(hold)
    finally:
        for s in socks:
            s.close()
    return len(socks)


async def attack(args, end, stats):
    rnd = random.Random(14)
    srcs = [f"127.0.2.{i}" for i in range(1, 41)]
    tasks = set()

    def spawn(coro, kind):
        t = asyncio.ensure_future(coro)
        tasks.add(t)
        stats[kind] = stats.get(kind, 0) + 1
        t.add_done_callback(tasks.discard)

    n = 0
    next_flood = time.monotonic()
    while time.monotonic() < end:
        hold = min(90.0, max(1.0, end - time.monotonic()))
        if len(tasks) < args.abusers:
            kind = rnd.choice(["nonreader", "nonreader-paced", "slowloris", "trickle", "garbage", "garbage"])
            src = rnd.choice(srcs)
            if kind == "nonreader":
                spawn(non_reader(args.port, src, f"/{args.title}", hold), kind)
            elif kind == "nonreader-paced":
                spawn(non_reader(args.port, src, f"/{args.title}?rate=10M&burst=1", hold), kind)
            elif kind == "slowloris":
                spawn(slowloris(args.port, src, hold), kind)
            elif kind == "trickle":
                n += 1
                spawn(trickle_put(args.port, src, args.token, hold, n), kind)
            else:
                spawn(garbage(args.port, src, rnd), kind)
        if time.monotonic() >= next_flood:
            next_flood = time.monotonic() + 60
            spawn(flood(args.port, srcs, min(20.0, hold), args.flood), "flood")
        await asyncio.sleep(0.02)
    for t in list(tasks):
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


def on_time_share(viewer, t0, t1, rate, burst):
    """1-second intervals of [t0, t1] in which the viewer was on schedule."""
    if viewer.started is None:
        return 0, 0
    on = total = 0
    for t, b in viewer.samples:
        if t < t0 or t > t1:
            continue
        total += 1
        want = rate * (t - viewer.started) - burst
        if b >= 0.97 * want:
            on += 1
    return on, total


async def main():
    p = argparse.ArgumentParser()
    p.add_argument("--pid", type=int, required=True)
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--title", required=True)
    p.add_argument("--token", required=True)
    p.add_argument("--rate", type=int, default=1_000_000)
    p.add_argument("--viewers", type=int, default=50)
    p.add_argument("--abusers", type=int, default=200)
    p.add_argument("--flood", type=int, default=3000)
    p.add_argument("--baseline", type=float, default=30)
    p.add_argument("--attack", type=float, default=600)
    p.add_argument("--settle", type=float, default=90)
    args = p.parse_args()

    burst = max(args.rate // 4, 262144)
    t_start = time.monotonic()
    t_attack = t_start + args.baseline
    t_settle = t_attack + args.attack
    t_end = t_settle + args.settle
    viewers = [Viewer(i, args) for i in range(args.viewers)]
    vt = [asyncio.ensure_future(v.run(t_end)) for v in viewers]

    async def sampler():
        while time.monotonic() < t_end:
            await asyncio.sleep(1)
            now = time.monotonic()
            for v in viewers:
                v.sample(now)

    st = asyncio.ensure_future(sampler())
    await asyncio.sleep(max(0, t_attack - time.monotonic()))
    base = proc_sample(args.pid)
    stats = {}
    print(f"baseline: rss {base['rss']/2**20:.1f} MiB, fds {base['fds']}", file=sys.stderr)
    attack_cpu0 = proc_sample(args.pid)
    await attack(args, t_settle, stats)
    attack_cpu1 = proc_sample(args.pid)
    print(f"attack over: {stats}", file=sys.stderr)
    await asyncio.sleep(max(0, t_end - 10 - time.monotonic()))
    idle0 = proc_sample(args.pid)
    await asyncio.sleep(max(0, t_end - time.monotonic()))
    end = proc_sample(args.pid)
    await asyncio.gather(*vt, return_exceptions=True)
    st.cancel()

    on = total = 0
    per_viewer = []
    for v in viewers:
        o, t = on_time_share(v, t_attack, t_settle, args.rate, burst)
        on += o
        total += t
        per_viewer.append(o / t if t else 0.0)
    viewers_cpu = (end["cpu"] - idle0["cpu"]) / (end["t"] - idle0["t"])
    attack_cpu = (attack_cpu1["cpu"] - attack_cpu0["cpu"]) / (attack_cpu1["t"] - attack_cpu0["t"])
    result = {
        "viewers": args.viewers, "rate": args.rate, "attack_s": args.attack,
        "on_time": round(on / total, 4) if total else 0.0,
        "worst_viewer_on_time": round(min(per_viewer), 4) if per_viewer else 0.0,
        "viewer_errors": sum(v.errors for v in viewers),
        "rss_start_mib": round(base["rss"] / 2**20, 1), "rss_end_mib": round(end["rss"] / 2**20, 1),
        "fds_start": base["fds"], "fds_end": end["fds"],
        "cpu_viewers_only": round(viewers_cpu, 3), "cpu_under_attack": round(attack_cpu, 3),
        "cpu_attack_cost": round(attack_cpu - viewers_cpu, 3),
        "abusive_clients": stats,
    }
    print(json.dumps(result))


if __name__ == "__main__":
    asyncio.run(main())
