"""Nothing a client holds forever (docs/daemon.md, "Limits and timeouts"): a client that never
reads is cut after the send timeout, and a stalled paced stream gives its capacity to others.
Each non-reader is a raw socket with a tiny receive buffer that never reads."""
import socket

from harness import check, expect, get, metrics, request, wait_until

BIG = "/big.bin"


def _non_reader(port, target):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # before connect: fixes the window scale
    s.connect(("127.0.0.1", port))
    s.sendall(request("GET", target))
    return s


@check("limits/send-timeout-cuts-a-non-reader", nginx="skip: the counter is datapumpd's")
def _(ctx):
    server = ctx.extra_server(["--send-timeout-ms", "1000"])
    s = _non_reader(server.port, BIG)
    try:
        expect(wait_until(lambda: metrics(server).get("datapump_send_timeouts_total") == 1, 10, 0.1),
               f"10 s after a client that reads nothing: datapump_send_timeouts_total "
               f"{metrics(server).get('datapump_send_timeouts_total', 'missing')}, want 1 (--send-timeout-ms 1000)")
        expect(wait_until(lambda: metrics(server).get("datapump_active_streams") == 0, 5, 0.1),
               "the non-reader's stream is still active after its send timeout")
    finally:
        s.close()
    r = get(server, BIG)
    expect(r.status == 200 and r.body == ctx.fx.files[BIG], f"a normal GET after the cut: {r.brief()}")


@check("limits/stalled-paced-stream-lends-its-capacity", nginx="skip: --capacity is datapumpd's")
def _(ctx):
    server = ctx.extra_server(["--capacity", "10M"])
    s = _non_reader(server.port, BIG + "?rate=10M")
    try:
        expect(wait_until(lambda: metrics(server).get("datapump_active_streams") == 1, 5, 0.05),
               "the non-reader's paced stream never started")
        got = {}

        def second_admitted():
            got["r"] = get(server, "/data.bin", query="rate=10M")
            return got["r"].status == 200

        # The stall release comes after 2 s without progress; allow for a loaded machine.
        expect(wait_until(second_admitted, 10, 0.2),
               f"under --capacity 10M a non-reader with ?rate=10M still locks others out: {got['r'].brief()}")
        expect(got["r"].body == ctx.fx.files["/data.bin"], "the admitted second stream's body differs from the file")
        m = metrics(server)
        expect(m.get("datapump_stall_releases_total", 0) >= 1,
               f"datapump_stall_releases_total {m.get('datapump_stall_releases_total', 'missing')}, want >= 1")
    finally:
        s.close()
