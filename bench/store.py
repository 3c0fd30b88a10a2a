"""What the shared store costs a session: smtpfront-server with the store off, and on over a Unix socket and TCP.

    python bench/store.py [--rounds N] [--sessions N] [--latency-runs N]

One redis-server (started here, private, saving nothing) and three smtpfront-server instances, measured in
turn (A B C A B C ...):

    off     no store: AUTH_THROTTLE_DIR for the throttle, no limits plugin
    unix    AUTH_THROTTLE_STORE and PLUGINS=+limits with every limit set (too high to be reached), the store
            on redis's Unix socket
    tcp     the same, the store on 127.0.0.1

and reports, as bench/server.py does:

  - the store's own part of a session, timed in this process (no session around it, so the machine's
    noise is small beside it): connect, the throttle's reservation and release, a place among the
    concurrent sessions taken and given back, a connection, a message and a recipient counted;
  - the latency of a full AUTH session, one client, each reply awaited (the throttle's reservation and
    release, the sessions and connections counts, a message and a recipient counted): p50 and p99, and
    what the store adds to each;
  - a process per connection (tcpserver's way): EHLO/QUIT through smtpfront-qmail with the limits plugin
    loaded and a place and a connection counted, beside without (the module imports and the connect);
  - sessions/s with 40 parallel clients, pipelined EHLO/MAIL/RCPT/DATA/QUIT (the sessions and connections
    counts, a place taken and given back), against `off` round by round.
"""

from __future__ import annotations

import argparse
import base64
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from run import PASSWORD, Setup, interleaved, timed  # bench/run.py's harness
from run import spread as spread_ms
from server import OPTIONS, Service, auth_session, sessions_per_second, spread, stand_in

BIN = Path(sys.executable).parent
LIMITS = {"PLUGINS": "+limits", "LIMIT_SESSIONS_PER_IP": "100000", "LIMIT_SESSIONS_PER_NET": "100000",
          "LIMIT_CONNECTIONS_PER_IP": "100000000/1h", "LIMIT_MESSAGES_PER_LOGIN": "100000000/1h",
          "LIMIT_RECIPIENTS_PER_LOGIN": "100000000/1h", "LIMIT_MESSAGES_PER_SENDER": "100000000/1h",
          "LIMIT_RECIPIENTS_PER_SENDER": "100000000/1h"}


def redis(tmp: Path) -> tuple[subprocess.Popen, str, int]:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    sock = str(tmp / "redis.sock")
    proc = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--unixsocket", sock,
                             "--save", "", "--appendonly", "no", "--dir", str(tmp)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    while not Path(sock).exists():
        time.sleep(0.01)
    return proc, sock, port


def store_calls(url: str) -> float:
    """What a session with every limit and the AUTH throttle asks of the store, on a new connection."""
    from smtpfront.store import ENTER, RELEASE, SharedThrottle, key, member

    start = time.perf_counter()
    throttle = SharedThrottle(url, None, None)
    throttle.release(throttle.reserve("127.0.0.1", "demo"))
    store = throttle.store
    slots, me = [key("sessions", "127.0.0.1"), key("sessions", "net:127.0.0.0/24")], member()
    store.run(ENTER, slots, [1260000, me, 100000, 100000])
    for kind in ("conn", "messages", "recipients"):
        store.hit(key("rate", f"{kind}:demo"), 100000000, 3600.0)
    store.run(RELEASE, slots, [me])
    elapsed = time.perf_counter() - start
    store.close()
    return elapsed


def server(name: str, env: dict[str, str]) -> Service:
    return Service(name, [str(BIN / "smtpfront-server"), "-1", *OPTIONS, "127.0.0.1", "0",
                          str(BIN / "smtpfront-qmail")], env)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rounds", type=int, default=10)
    p.add_argument("--sessions", type=int, default=300, help="sessions a round in the throughput test")
    p.add_argument("--latency-runs", type=int, default=300)
    a = p.parse_args()
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        setup = Setup(tmp)
        (tmp / "plain" / "control" / "rcpthosts").write_text("example.org\n")
        (tmp / "throttle").mkdir()
        env = {name: setup.env[name] for name in ("PATH", "QMAILHOME", "CVM_SASL_PLAIN")}
        env.update(QMAILQUEUE=stand_in(tmp), AUTH_THROTTLE_DIR=str(tmp / "throttle"))
        proc, sock, port = redis(tmp)
        stores = {"unix": f"unix:{sock}", "tcp": f"redis://127.0.0.1:{port}/0"}
        servers = [server("off", env)] + [server(name, {**env, **LIMITS, "AUTH_THROTTLE_STORE": url,
                                                        "LIMITS_STORE": url}) for name, url in stores.items()]
        try:
            calls: dict[str, list[float]] = {name: [] for name in stores}
            for _ in range(a.latency_runs):
                for name, url in stores.items():
                    calls[name].append(store_calls(url))
            print(f"the store's part of a session (7 calls and a connect), {a.latency_runs} runs interleaved (ms):")
            for name, values in calls.items():
                print(f"  {name:5} p50 {statistics.median(values) * 1000:6.3f}  "
                      f"p99 {statistics.quantiles(values, n=100)[98] * 1000:6.3f}  "
                      f"({min(values) * 1000:.3f}..{max(values) * 1000:.3f})")
            program = [str(BIN / "smtpfront-qmail")]
            ehlo = b"EHLO bench\r\nQUIT\r\n"
            on = {**env, "TCPREMOTEIP": "127.0.0.1", "PLUGINS": "+limits", "LIMITS_STORE": stores["unix"],
                  "LIMIT_SESSIONS_PER_IP": "100000", "LIMIT_CONNECTIONS_PER_IP": "100000000/1h"}
            per_connection = interleaved({"without": lambda: timed(program, ehlo, {**env, "TCPREMOTEIP": "127.0.0.1"}),
                                          "limits": lambda: timed(program, ehlo, on)}, a.latency_runs // 4)
            medians = {name: statistics.median(values) for name, values in per_connection.items()}
            print(f"a process per connection, EHLO/QUIT, {a.latency_runs // 4} runs interleaved: without "
                  f"{spread_ms(per_connection['without'])}, with limits (Unix socket) "
                  f"{spread_ms(per_connection['limits'])}; adds "
                  f"{(medians['limits'] - medians['without']) * 1000:+.2f} ms")
            plain = base64.b64encode(f"\0demo\0{PASSWORD}".encode())
            times: dict[str, list[float]] = {s.name: [] for s in servers}
            for s in servers:
                auth_session(s.port, plain)
            for _ in range(a.latency_runs):
                for s in servers:
                    times[s.name].append(auth_session(s.port, plain))
            print(f"full AUTH session, one client, {a.latency_runs} sessions each, interleaved (ms): "
                  "p50, p99, min..max; the store's increment at p50 and p99")
            base = times["off"]
            for name, values in times.items():
                p50, p99 = statistics.median(values), statistics.quantiles(values, n=100)[98]
                added = "" if name == "off" else (
                    f"   adds {(p50 - statistics.median(base)) * 1000:+.2f} at p50, "
                    f"{(p99 - statistics.quantiles(base, n=100)[98]) * 1000:+.2f} at p99")
                print(f"  {name:5} p50 {p50 * 1000:6.2f}  p99 {p99 * 1000:6.2f}  "
                      f"({min(values) * 1000:.2f}..{max(values) * 1000:.2f}){added}")
            rates: dict[str, list[float]] = {s.name: [] for s in servers}
            for s in servers:
                sessions_per_second(s.port, 40)
            for _ in range(a.rounds):
                for s in servers:
                    rates[s.name].append(sessions_per_second(s.port, a.sessions)[0])
            print(f"sessions/s, 40 clients, {a.sessions} pipelined sessions a round, {a.rounds} rounds: "
                  "median (min..max); against off, round by round")
            for name, values in rates.items():
                ratio = "" if name == "off" else "   x off " + spread(
                    [mine / theirs for mine, theirs in zip(values, rates["off"], strict=True)], 1, 2)
                print(f"  {name:5} {spread(values):>18}{ratio}")
        finally:
            for s in servers:
                s.stop()
            proc.terminate()
            proc.wait()
            setup.close()


if __name__ == "__main__":
    main()
