#!/usr/bin/env python3
"""datapumpd as a systemd service runs it, without systemd (PID 1 need not be systemd):

  notify          a fake $NOTIFY_SOCKET (a datagram socket, what systemd listens on) receives
                  STATUS= and READY=1; once READY=1 came, a GET is answered (readiness is true);
                  SIGTERM stops the daemon with exit code 0. Prints the time from exec to the
                  first byte of a served file.
  activation      under `systemd-socket-activate -l 127.0.0.1:PORT` (socket activation, as the
                  .socket unit does) the daemon serves the inherited socket and says so.
  activation-miss an inherited socket bound elsewhere than --listen is not served, with a warning.
  restart-keeps-socket  the supervisor's socket (LISTEN_FDS) outlives a daemon: a connection made
                  while none runs is answered by the next one.

Usage: service_test.py DATAPUMPD [--config FILE] [--root DIR]
  --config: start with --config FILE (the installed package's /etc/datapump/datapumpd.toml);
  --root:   the served folder (default: a temporary one).
Exit code 0 when every check passed. Every wait has a deadline."""
import argparse
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

DEADLINE = 30.0


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def fetch(port, path, deadline=DEADLINE):
    """GETs http://127.0.0.1:port/path, retrying refused connections until the deadline."""
    until = time.monotonic() + deadline
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as r:
                return r.status, r.read()
        except (ConnectionError, urllib.error.URLError) as e:
            if time.monotonic() > until:
                raise AssertionError(f"GET {path} on port {port}: {e}")
            time.sleep(0.005)


def connect(port):
    """A connection to 127.0.0.1:port, retried until the deadline (the listener may not exist yet)."""
    until = time.monotonic() + DEADLINE
    while True:
        try:
            return socket.create_connection(("127.0.0.1", port), timeout=DEADLINE)
        except ConnectionError:
            if time.monotonic() > until:
                raise AssertionError(f"nothing listens on port {port} after 30 s")
            time.sleep(0.02)


def stop(proc, log):
    proc.send_signal(signal.SIGTERM)
    try:
        code = proc.wait(timeout=DEADLINE)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise AssertionError("the daemon did not stop within 30 s of SIGTERM")
    if code != 0:
        raise AssertionError(f"exit code {code} after SIGTERM; log:\n{read(log)}")


def read(path):
    with open(path, errors="replace") as f:
        return f.read()


def daemon_args(args, root, port):
    cmd = [args.datapumpd]
    if args.config:
        cmd += ["--config", args.config]
    return cmd + ["--root", root, "--listen", f"127.0.0.1:{port}", "--admin-listen", "off"]


def check_notify(args, root, tmp):
    sock_path = os.path.join(tmp, "notify.sock")
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(sock_path)
    notify.settimeout(DEADLINE)
    port = free_port()
    log = os.path.join(tmp, "notify.log")
    env = dict(os.environ, NOTIFY_SOCKET=sock_path)
    started = time.monotonic()
    with open(log, "w") as out:
        proc = subprocess.Popen(daemon_args(args, root, port), env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        first_byte = None
        # The figure: exec to the first byte of a file, polling as a client would.
        status, body = fetch(port, "/hello.txt")
        first_byte = time.monotonic() - started
        assert status == 200 and body == b"hello, service\n", (status, body)
        states = []
        while "READY=1" not in states:
            try:
                data = notify.recv(4096).decode()
            except socket.timeout:
                raise AssertionError(f"no READY=1 on NOTIFY_SOCKET within 30 s (got {states}); log:\n{read(log)}")
            states += data.split("\n")
        assert any(s.startswith("STATUS=serving ") for s in states), states
        status, _ = fetch(port, "/hello.txt", deadline=0)  # ready means serving: no retry needed
        assert status == 200
        stop(proc, log)
        print(f"start-up to first byte: {first_byte * 1000:.1f} ms (notify states: {', '.join(states)})", flush=True)
    finally:
        if proc.poll() is None:
            proc.kill()
        notify.close()


def check_activation(args, root, tmp, matching):
    activate = shutil.which("systemd-socket-activate")
    if not activate:
        raise AssertionError("systemd-socket-activate not found (Debian's systemd package; scripts/deps.sh test)")
    port = free_port()
    listen_port = port if matching else free_port()
    log = os.path.join(tmp, f"activation-{matching}.log")
    with open(log, "w") as out:
        proc = subprocess.Popen([activate, "-l", f"127.0.0.1:{port}", "--"] + daemon_args(args, root, listen_port),
                                stdout=out, stderr=subprocess.STDOUT)
    try:
        if matching:
            status, body = fetch(port, "/hello.txt")  # the first connection starts the daemon
            assert status == 200 and body == b"hello, service\n", (status, body)
            until = time.monotonic() + DEADLINE
            while "is an inherited socket (socket activation)" not in read(log):
                assert time.monotonic() < until, f"no socket-activation line in the log:\n{read(log)}"
                time.sleep(0.02)
        else:
            # The connection wakes the daemon, which serves --listen only: ours waits unanswered.
            with connect(port):
                until = time.monotonic() + DEADLINE
                while "is bound to no --listen address" not in read(log):
                    assert time.monotonic() < until, f"no warning about the unmatched socket:\n{read(log)}"
                    time.sleep(0.02)
            status, _ = fetch(listen_port, "/hello.txt")
            assert status == 200
        stop(proc, log)
    finally:
        if proc.poll() is None:
            proc.kill()


def check_restart(args, root, tmp):
    """What datapumpd.socket buys: the socket is the supervisor's (here this script's, there
    systemd's), so while the daemon restarts a client's connection waits in its queue and is
    answered by the next daemon, instead of being refused."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    port = listener.getsockname()[1]

    def start(n):
        log = os.path.join(tmp, f"restart-{n}.log")
        # LISTEN_PID must be the daemon's pid: the shell's $$, which exec keeps.
        cmd = ["/bin/sh", "-c", 'LISTEN_PID=$$ LISTEN_FDS=1 exec "$@"', "sh"] + daemon_args(args, root, port)
        with open(log, "w") as out:
            return subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, pass_fds=(3,),
                                    preexec_fn=lambda: os.dup2(listener.fileno(), 3)), log

    first, log1 = start(1)
    try:
        status, _ = fetch(port, "/hello.txt")
        assert status == 200
        stop(first, log1)
        # No daemon now: the connection is queued by the kernel, the request waits with it.
        waiting = socket.create_connection(("127.0.0.1", port), timeout=DEADLINE)
        waiting.sendall(b"GET /hello.txt HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        second, log2 = start(2)
        try:
            reply = b""
            while chunk := waiting.recv(65536):
                reply += chunk
            assert reply.startswith(b"HTTP/1.1 200") and reply.endswith(b"hello, service\n"), reply[:200]
            stop(second, log2)
        finally:
            if second.poll() is None:
                second.kill()
            waiting.close()
    finally:
        if first.poll() is None:
            first.kill()
        listener.close()


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("datapumpd")
    p.add_argument("--config")
    p.add_argument("--root")
    args = p.parse_args()
    tmp = tempfile.mkdtemp(prefix="datapump-service-")
    root = args.root or os.path.join(tmp, "root")
    os.makedirs(root, exist_ok=True)
    with open(os.path.join(root, "hello.txt"), "w") as f:
        f.write("hello, service\n")
    checks = [("notify", lambda: check_notify(args, root, tmp)),
              ("activation", lambda: check_activation(args, root, tmp, True)),
              ("activation-miss", lambda: check_activation(args, root, tmp, False)),
              ("restart-keeps-socket", lambda: check_restart(args, root, tmp))]
    passed = failed = 0
    try:
        for name, check in checks:
            try:
                check()
                print(f"ok   service/{name}", flush=True)
                passed += 1
            except AssertionError as e:
                print(f"FAIL service/{name}: {e}", flush=True)
                failed += 1
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"{passed} passed, {failed} failed")
    return 0 if failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
