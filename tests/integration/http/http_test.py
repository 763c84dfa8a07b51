#!/usr/bin/env python3
"""datapumpd end to end with real clients (curl, raw sockets, ffprobe, wrk, Chromium).

Usage:
  http_test.py DATAPUMPD [--variant posix|direct|posix-splice|direct-send]... [--only GLOB]... [--skip GLOB]...
  http_test.py --against-nginx [--only GLOB]...   # the same checks against nginx, to test the harness
  http_test.py --list

Makes a temp root (random files, a 0-byte file, a unicode name, a subdir, a symlink out of the
root, a 6 s clip, index.html), starts one server per variant on a free port and runs every check
against it; the upload checks (ingest/*) start their own --writable servers on roots of their own.
Checks that only datapumpd can pass are skipped against nginx; checks where nginx answers
differently by design must fail there (XFAIL). Ends with 'http_test: N passed, N failed'.
"""
import argparse
import shutil
import sys
import tempfile
from pathlib import Path

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, str(Path(__file__).resolve().parent))

import harness  # noqa: E402
import checks_files  # noqa: E402,F401  (registers checks)
import checks_hostile  # noqa: E402,F401
import checks_ingest  # noqa: E402,F401
import checks_streams  # noqa: E402,F401
import checks_control  # noqa: E402,F401  (private control plane)
import checks_limits  # noqa: E402,F401  (hostile network: nothing held forever)
import checks_accept  # noqa: E402,F401  (hostile network: accept back-off, per-IP limits)
import checks_logs  # noqa: E402,F401  (logs: access log, daemon log, /metrics)
import checks_reload  # noqa: E402,F401  (conf: reload and --check-config)

VARIANTS = {  # name -> (provider, send path, flags)
    "posix": ("posix", "sendfile", ()),
    "direct": ("direct", "send-zc", ()),
    "posix-splice": ("posix", "splice", ()),
    # Every file from the arena, the small fixtures too (the default sends files under 1 MiB by
    # sendfile: docs/daemon.md, "Small files on the direct provider").
    "direct-send": ("direct", "send", ("--direct-min-size", "0")),
}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("daemon", nargs="?", help="path to the datapumpd binary")
    ap.add_argument("--against-nginx", action="store_true", help="run the checks against nginx instead")
    ap.add_argument("--variant", action="append", choices=sorted(VARIANTS),
                    help="provider/send path to test (repeatable; default: posix and direct)")
    ap.add_argument("--only", action="append", default=[], help="run only checks matching this glob (repeatable)")
    ap.add_argument("--skip", action="append", default=[], help="skip checks matching this glob (repeatable)")
    ap.add_argument("--list", action="store_true", help="list the checks and exit")
    ap.add_argument("--keep", action="store_true", help="keep the temp folder (logs) for inspection")
    args = ap.parse_args()

    if args.list:
        for name, _, nginx in harness.CHECKS:
            print(f"{name:45} {'' if nginx == 'run' else 'nginx ' + nginx}")
        return 0
    if not args.against_nginx and not args.daemon:
        ap.error("give the datapumpd binary, or --against-nginx")
    for tool in ["curl", "ffmpeg", "ffprobe", "wrk", "node"] + (["nginx"] if args.against_nginx else []):
        if not shutil.which(tool) and not (tool == "nginx" and Path(harness.Nginx.binary).exists()):
            print(f"http_test: '{tool}' is missing: run scripts/deps.sh test", file=sys.stderr)
            return 2

    tmp = Path(tempfile.mkdtemp(prefix="datapump-http-"))
    counts = {"passed": 0, "failed": 0, "skipped": 0, "xfailed": 0}
    try:
        fx = harness.make_fixture(tmp)
        if any(name.startswith("browser/") and harness.selected(name, args.only, args.skip)
               for name, _, _ in harness.CHECKS):
            err = harness.ensure_browser_deps()
            if err:
                print(f"FAIL  setup: {err}", flush=True)
                counts["failed"] += 1
        if args.against_nginx:
            factories = [harness.Nginx(tmp)]
        else:
            daemon = str(Path(args.daemon).resolve())
            factories = [harness.Daemon(daemon, VARIANTS[v][0], VARIANTS[v][1], tmp, VARIANTS[v][2])
                         for v in (args.variant or ["posix", "direct"])]
        for factory in factories:
            ctx = harness.Ctx(fx, factory, tmp)
            try:
                harness.run_checks(ctx, args.only, args.skip, counts)
            except (RuntimeError, OSError) as e:  # the server did not start: the variant fails
                print(f"FAIL  [{factory.name}] server start: {e}", flush=True)
                counts["failed"] += 1
    finally:
        harness.kill_all()
        if args.keep or counts["failed"]:
            print(f"http_test: logs kept in {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    if counts["xfailed"]:
        print(f"http_test: {counts['xfailed']} checks failed against nginx as expected (nginx differs by design)")
    ran = counts["passed"] + counts["failed"]
    print(f"http_test: {counts['passed'] + counts['xfailed']} passed, {counts['failed']} failed, "
          f"{counts['skipped']} skipped")
    return 1 if counts["failed"] or ran + counts["xfailed"] == 0 else 0


if __name__ == "__main__":
    sys.exit(main())
