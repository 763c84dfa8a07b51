"""logs: the access log and the daemon log as operators' tools read them, and /metrics as
Prometheus reads it (docs/daemon.md, "Logs" and "Metrics"). Every check here is datapumpd's.

    access log  --access-log FILE: one line per response, parsed field by field (combined and
                json), goaccess's COMBINED reads it, --log-level does not silence it, a cut
                stream says so with the bytes it sent
    reopening   SIGUSR1 after logrotate's rename: both files are made again, nothing lost
    daemon log  '<N>' priorities when JOURNAL_STREAM is stderr, ISO 8601 with offset otherwise
    /metrics    the histograms and process_*, and `promtool check metrics` finds nothing
"""
import datetime
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import time

from harness import MIB, _start, check, curl, expect, get, run, wait_until

SKIP = "skip: datapumpd's logs"
AGENT = 'datapump-check/1.0 (say "hi")'
AGENT_LOGGED = "datapump-check/1.0 (say \\x22hi\\x22)"  # log_escape()d, as nginx writes it
REFERER = "http://referer.example/page?a=1&b=2"
COMBINED = re.compile(r'^(?P<addr>\S+) (?P<ident>\S+) (?P<user>\S+) \[(?P<time>[^\]]+)\] "(?P<request>[^"]*)" '
                      r'(?P<status>\d{3}) (?P<bytes>\d+) "(?P<referer>[^"]*)" "(?P<agent>[^"]*)" '
                      r'"(?P<range>[^"]*)" (?P<duration>\d+\.\d{3})$')
ISO_LINE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}[+-]\d\d:\d\d (trace|debug|info|warning|error|critical) ")


PROBES = ('"HEAD / HTTP/1.1"', '"method":"HEAD","target":"/"')  # the harness's "is it up?" requests


def _lines(path, n, timeout=10):
    """The lines of path once it has at least n (the logger thread writes them soon after), less
    the harness's start-up probes."""
    def enough():
        try:
            lines = [l for l in path.read_text(errors="replace").splitlines() if not any(p in l for p in PROBES)]
        except FileNotFoundError:
            return None
        return lines if len(lines) >= n else None
    lines = wait_until(enough, timeout)
    expect(lines is not None, f"{path} does not have {n} lines after {timeout} s: "
                              f"{path.read_text(errors='replace')[-800:] if path.exists() else '(no file)'!r}")
    return lines


def _near_now(when, what):
    now = datetime.datetime.now(datetime.timezone.utc)
    expect(abs((now - when).total_seconds()) < 60, f"{what}: {when.isoformat()} is not now ({now.isoformat()})")


@check("logs/access-log-combined-fields", nginx=SKIP)
def _(ctx):
    log = ctx.tmp / f"access-combined-{time.monotonic_ns()}.log"
    # --log-level error: the access log is not the daemon log, and the level does not silence it.
    server = ctx.extra_server(["--access-log", str(log), "--log-level", "error"])
    r = curl(["-o", "/dev/null", "-w", "%{http_code} %{size_download}", "-H", "Range: bytes=100-1099",
              "-A", AGENT, "-e", REFERER, server.url("/data.bin")])
    expect(r.stdout == b"206 1000", f"curl with a Range: {r.stdout!r}, want '206 1000'")
    expect(get(server, "/no-such-file").status == 404, "GET /no-such-file is not 404")
    first, second = _lines(log, 2)[:2]
    m = COMBINED.match(first)
    expect(m is not None, f"not a combined line with Range and duration: {first!r}")
    f = m.groupdict()
    when = datetime.datetime.strptime(f["time"], "%d/%b/%Y:%H:%M:%S %z")
    _near_now(when, "$time_local")
    want = {"addr": "127.0.0.1", "ident": "-", "user": "-", "request": "GET /data.bin HTTP/1.1", "status": "206",
            "bytes": "1000", "referer": REFERER, "agent": AGENT_LOGGED, "range": "bytes=100-1099"}
    for key, value in want.items():
        expect(f[key] == value, f"field {key}: {f[key]!r}, want {value!r} in {first!r}")
    expect(float(f["duration"]) < 30, f"duration {f['duration']} s for 1000 bytes")
    m = COMBINED.match(second)
    expect(m is not None, f"not a combined line: {second!r}")
    expect(m["request"] == "GET /no-such-file HTTP/1.1" and m["status"] == "404" and m["referer"] == "-" and
           m["range"] == "-", f"the 404's line: {second!r}")
    daemon_log = server.log_tail(100000)
    expect("/data.bin" not in daemon_log, f"an access line in the daemon log (stderr): {daemon_log[-500:]!r}")
    expect(shutil.which("goaccess"), "goaccess not found: install it (scripts/deps.sh test)")
    report = ctx.tmp / f"goaccess-{time.monotonic_ns()}.json"
    g = run(["goaccess", str(log), "--log-format=COMBINED", "--no-global-config", "-o", str(report)], 30)
    expect(g.returncode == 0 and report.exists(), f"goaccess: exit {g.returncode}: {g.stderr[-500:]!r}")
    general = json.loads(report.read_text())["general"]
    total = len(log.read_text().splitlines())  # the probe's line too
    expect(general["valid_requests"] == total and general["failed_requests"] == 0,
           f"goaccess COMBINED read {general['valid_requests']} valid, {general['failed_requests']} failed; "
           f"want {total} and 0")
    ctx.note("goaccess COMBINED parses it")
    # fail2ban's stock nginx filters: a probe for a well-known admin page, a request that never parsed.
    expect(get(server, "/wp-login.php").status == 404, "GET /wp-login.php is not 404")
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as s:
        s.sendall(b"NOT A REQUEST\r\n\r\n")
        expect(s.recv(12).startswith(b"HTTP/1.1 400"), "a garbage request line is not answered 400")
    lines = _lines(log, 4)
    expect(shutil.which("fail2ban-regex"), "fail2ban-regex not found: install fail2ban (scripts/deps.sh test)")
    for filt, marker in (("nginx-botsearch", "/wp-login.php"), ("nginx-bad-request", '"-" 400')):
        one = ctx.tmp / f"f2b-{filt}-{time.monotonic_ns()}.log"
        one.write_text(next(l for l in lines if marker in l) + "\n")
        g = run(["fail2ban-regex", str(one), f"/etc/fail2ban/filter.d/{filt}.conf"], 60)
        out = g.stdout.decode(errors="replace")
        expect(g.returncode == 0 and re.search(r"Lines: 1 lines, 0 ignored, 1 matched", out),
               f"fail2ban's {filt} does not match {one.read_text()!r}: {out[-600:]}")
    ctx.note("fail2ban's nginx-botsearch and nginx-bad-request match")


def _json_lines(path, n):
    out = []
    for line in _lines(path, n):
        try:
            out.append(json.loads(line))
        except ValueError:
            raise AssertionError(f"not a JSON line: {line!r}") from None
    return out


@check("logs/access-log-json-fields-and-a-cut-stream", nginx=SKIP)
def _(ctx):
    log = ctx.tmp / f"access-json-{time.monotonic_ns()}.log"
    server = ctx.extra_server(["--access-log", str(log), "--access-log-format", "json"])
    r = curl(["-o", "/dev/null", "-w", "%{http_code} %{size_download}", "-H", "Range: bytes=-500",
              "-A", AGENT, "-e", REFERER, server.url("/notes.txt")])
    expect(r.stdout == b"206 11" or r.stdout == b"200 11", f"curl /notes.txt: {r.stdout!r}")
    status = int(r.stdout.split()[0])
    line = _json_lines(log, 1)[0]
    when = datetime.datetime.fromisoformat(line["time"])
    expect(when.utcoffset() is not None, f"time {line['time']!r} has no UTC offset")
    _near_now(when, "time")
    want = {"remote_addr": "127.0.0.1", "method": "GET", "target": "/notes.txt", "protocol": "HTTP/1.1",
            "status": status, "body_bytes_sent": 11, "referer": REFERER, "user_agent": AGENT_LOGGED,
            "range": "bytes=-500", "completed": True}
    for key, value in want.items():
        expect(line.get(key) == value, f"field {key}: {line.get(key)!r}, want {value!r} in {line}")
    expect(0 <= line["first_byte_s"] <= line["duration_s"] < 30, f"first_byte_s/duration_s: {line}")

    # A paced stream the client drops after 256 KiB: its line says cut, with what was sent.
    total = len(ctx.fx.data("/big.bin"))
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as s:
        s.sendall(b"GET /big.bin?rate=2M HTTP/1.1\r\nHost: a\r\nUser-Agent: cutter\r\n\r\n")
        got = 0
        while got < 256 * 1024:
            chunk = s.recv(65536)
            expect(chunk, "the paced stream ended before 256 KiB")
            got += len(chunk)
    lines = _json_lines(log, 2)
    cut = lines[1]
    expect(cut["target"] == "/big.bin?rate=2M" and cut["user_agent"] == "cutter", f"the cut stream's line: {cut}")
    expect(cut["completed"] is False and cut["status"] == 200, f"the cut stream's line: {cut}, want completed false")
    expect(0 < cut["body_bytes_sent"] < total, f"body_bytes_sent {cut['body_bytes_sent']} of a {total}-byte file "
                                              "cut after 256 KiB")
    ctx.note(f"cut after {cut['body_bytes_sent']} bytes sent, {cut['duration_s']:.2f} s")


@check("logs/sigusr1-reopens-both-log-files", nginx=SKIP)
def _(ctx):
    tag = time.monotonic_ns()
    access, daemon = ctx.tmp / f"reopen-access-{tag}.log", ctx.tmp / f"reopen-daemon-{tag}.log"
    server = ctx.extra_server(["--access-log", str(access), "--log-file", str(daemon)])
    expect(get(server, "/notes.txt", query="before").status == 200, "GET /notes.txt?before")
    _lines(access, 1)
    _lines(daemon, 1)  # the start-up lines
    # What logrotate does: rename, then `postrotate kill -USR1`.
    access.rename(access.with_suffix(".log.1"))
    daemon.rename(daemon.with_suffix(".log.1"))
    server.proc.send_signal(signal.SIGUSR1)
    lines = _lines(daemon, 1)
    expect(any("log files reopened" in l for l in lines), f"the new daemon log: {lines}")
    expect(get(server, "/notes.txt", query="after").status == 200, "GET /notes.txt?after")
    new = _lines(access, 1)
    old = [l for l in access.with_suffix(".log.1").read_text().splitlines() if PROBES[0] not in l]
    expect(len(new) == 1 and "/notes.txt?after" in new[0], f"the new access log: {new}")
    expect(len(old) == 1 and "/notes.txt?before" in old[0], f"the rotated access log: {old}")
    expect(server.alive(), "the daemon died of SIGUSR1")
    expect("log files reopened" not in daemon.with_suffix(".log.1").read_text(),
           "the reopen was logged to the rotated file")


@check("logs/logrotate-rotates-with-usr1", nginx=SKIP)
def _(ctx):
    """Debian's logrotate itself, with docs/daemon.md's rules (postrotate: USR1 to the daemon)."""
    logrotate = shutil.which("logrotate") or ("/usr/sbin/logrotate" if os.path.exists("/usr/sbin/logrotate") else None)
    expect(logrotate, "logrotate not found: install it (scripts/deps.sh test)")
    d = ctx.tmp / f"logrotate-{time.monotonic_ns()}"
    d.mkdir()
    access, daemon = d / "access.log", d / "daemon.log"
    server = ctx.extra_server(["--access-log", str(access), "--log-file", str(daemon)])
    expect(get(server, "/notes.txt", query="one").status == 200, "GET /notes.txt?one")
    _lines(access, 1)
    conf = d / "datapumpd.logrotate"
    conf.write_text(f"""{d}/*.log {{
    rotate 2
    missingok
    notifempty
    sharedscripts
    postrotate
        kill -USR1 {server.proc.pid}
    endscript
}}
""")
    r = run([logrotate, "--force", "--state", str(d / "state"), str(conf)], 30)
    expect(r.returncode == 0, f"logrotate: exit {r.returncode}: {r.stderr.decode(errors='replace')[-500:]}")
    expect((d / "access.log.1").exists(), f"logrotate made no access.log.1: {sorted(p.name for p in d.iterdir())}")
    expect(wait_until(lambda: daemon.exists() and "log files reopened" in daemon.read_text(), 10),
           f"no new daemon log after logrotate: {sorted(p.name for p in d.iterdir())}")
    expect(get(server, "/notes.txt", query="two").status == 200, "GET /notes.txt?two")
    new = _lines(access, 1)
    old = [l for l in (d / "access.log.1").read_text().splitlines() if PROBES[0] not in l]
    expect(len(new) == 1 and "?two" in new[0] and len(old) == 1 and "?one" in old[0],
           f"after logrotate: new {new}, rotated {old}")


def _spawn_with_env(ctx, env, log, extra=()):
    """datapumpd with `env` set (through env(1): the same process), its stderr in `log`."""
    f = ctx.factory
    argv = lambda port: ["env", *[f"{k}={v}" for k, v in env.items()], f.binary, "--root", str(ctx.fx.root),
                         "--listen", f"127.0.0.1:{port}", "--provider", f.provider, "--send-path", f.send_path,
                         "--admin-listen", "off", *extra]
    server = _start(argv, log, "datapumpd")
    ctx._servers.append(server)
    return server


@check("logs/journal-priorities-or-iso-timestamps", nginx=SKIP)
def _(ctx):
    tag = time.monotonic_ns()
    # A warning at start-up: --max-connections beyond the descriptor limit.
    noisy = ["--max-connections", "4000000000", "--access-log", "off"]
    journal_log = ctx.tmp / f"journal-{tag}.log"
    journal_log.touch()
    st = os.stat(journal_log)
    server = _spawn_with_env(ctx, {"JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino}"}, journal_log, noisy)
    lines = wait_until(lambda: [l for l in journal_log.read_text(errors="replace").splitlines() if l.startswith("<4>")],
                       10)
    expect(lines, f"no '<4>' (warning) line under JOURNAL_STREAM: {journal_log.read_text()[-800:]!r}")
    expect("RLIMIT_NOFILE" in lines[0], f"the warning: {lines[0]!r}")
    server.stop()
    text = journal_log.read_text(errors="replace").splitlines()
    bad = [l for l in text if not re.match(r"^<[0-7]>", l)]
    expect(not bad, f"lines without a priority under JOURNAL_STREAM: {bad[:3]}")
    expect(any(l.startswith("<6>") for l in text), f"no '<6>' (info) line: {text[:5]}")

    # JOURNAL_STREAM naming another file (a child of a service whose stderr was redirected): no prefixes.
    plain_log = ctx.tmp / f"plain-{tag}.log"
    server = _spawn_with_env(ctx, {"JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino}"}, plain_log, noisy)
    expect(wait_until(lambda: "RLIMIT_NOFILE" in plain_log.read_text(errors="replace"), 10),
           f"no descriptor warning: {plain_log.read_text()[-800:]!r}")
    server.stop()
    text = plain_log.read_text(errors="replace").splitlines()
    bad = [l for l in text if not ISO_LINE.match(l)]
    expect(text and not bad, f"lines without an ISO 8601 timestamp with offset: {bad[:3] or text[:3]}")


@check("logs/metrics-histograms-process-and-promtool", nginx=SKIP)
def _(ctx):
    server = ctx.extra_server()
    for q in range(3):
        expect(get(server, "/notes.txt", query=f"n={q}").status == 200, "GET /notes.txt")
    r = get(server.admin, "/metrics")
    expect(r.status == 200, f"GET /metrics: {r.brief()}")
    text = r.body.decode()
    samples = {}
    for line in text.splitlines():
        m = re.match(r"^([a-zA-Z_:][a-zA-Z0-9_:]*(?:\{[^}]*\})?) (\S+)$", line)
        if m:
            samples[m.group(1)] = float(m.group(2))
    for family in ("datapump_request_duration_seconds", "datapump_time_to_first_byte_seconds"):
        expect(f"# TYPE {family} histogram" in text, f"no histogram {family}")
        count = samples.get(f"{family}_count", 0)
        inf = samples.get(f'{family}_bucket{{le="+Inf"}}')
        expect(count >= 3 and inf == count, f"{family}: count {count}, +Inf bucket {inf}; want >= 3 and equal")
        buckets = [(float(m.group(1)), v) for k, v in samples.items()
                   if (m := re.match(rf'^{family}_bucket\{{le="([0-9.]+)"\}}$', k))]
        expect(len(buckets) > 5 and all(a[1] <= b[1] for a, b in zip(sorted(buckets), sorted(buckets)[1:])),
               f"{family}: buckets not cumulative: {sorted(buckets)}")
    now = time.time()
    expect(now - 3600 < samples.get("process_start_time_seconds", 0) <= now + 1,
           f"process_start_time_seconds {samples.get('process_start_time_seconds')}, now {now}")
    expect(0 < samples.get("process_cpu_seconds_total", 0) < 3600, "process_cpu_seconds_total")
    expect(samples.get("process_resident_memory_bytes", 0) > MIB, "process_resident_memory_bytes")
    fds = len(os.listdir(f"/proc/{server.proc.pid}/fd"))
    expect(abs(samples.get("process_open_fds", 0) - fds) <= 8, f"process_open_fds {samples.get('process_open_fds')}, "
                                                               f"/proc says {fds}")
    expect(samples.get("process_max_fds", 0) >= samples.get("process_open_fds", 0) > 0, "process_max_fds")
    promtool = shutil.which("promtool")
    expect(promtool is not None, "promtool not found: install Debian's prometheus (scripts/deps.sh test)")
    p = subprocess.run([promtool, "check", "metrics"], input=r.body, stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, timeout=30)
    expect(p.returncode == 0 and not p.stdout.strip(),
           f"promtool check metrics: exit {p.returncode}: {p.stdout.decode(errors='replace')[:1500]}")
    ctx.note("promtool check metrics: clean")
