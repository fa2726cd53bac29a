#!/usr/bin/env python3
"""End-to-end benchmark: typed-sessions vs tower-sessions 0.14 vs bare axum, over real TCP.

Each measurement starts the server binary (`bench/src/bin/e2e.rs`, `axum::serve` on a loopback
port) for one variant, store and workload, lets it create its sessions, and drives it with
`wrk` (Debian package `wrk`) sending those sessions' cookies round-robin (`bench/e2e.lua`).
Redis and PostgreSQL are started by this script on loopback ports, in a temporary directory,
and stopped at the end; SQLite gets a fresh file per measurement. Rounds alternate the order
of the variants; ratios are the median of per-round ratios, so a drifting machine moves both
sides of each ratio alike.

    bench/e2e.py                                 # 3 rounds of 5 s, every store, both workloads
    bench/e2e.py --rounds 5 --duration 10 --stores postgres,redis --workloads read-write

Workloads: `read-write` reads one key (a counter) and writes it back plus one; `read-only`
reads it; `locked-read-write` is read-write with typed-sessions' handler taking a `LockedSession`
(bare axum and tower-sessions, which has no lock, serve read-write). Output: requests/s and
p50/p99 latency per variant (medians over rounds), and typed-sessions' requests/s over
tower-sessions'. With `--floor`, Redis rows are followed by the floor: bare axum plus one
redis-rs `GET` per request (and a `SET` for read-write) on the connection `RedisStore::connect`
makes, no session code at all; its requests/s over tower-sessions' are about the most a session layer
on redis-rs could reach on the machine. With `--baseline BINARY` (an `e2e` binary built from
another commit), that binary's typed-sessions runs beside this one's in every round: an A/B of
two versions in one sitting.

    git worktree add /tmp/before <commit> && cargo build --release -j2 -p typed-sessions-bench \
        --features e2e --bin e2e --manifest-path /tmp/before/Cargo.toml
    bench/e2e.py --keep-servers --rounds 20 --duration 1 --stores redis --baseline /tmp/before/target/release/e2e

(Give the baseline a target directory of its own, as above: built into this checkout's `target`
with `CARGO_TARGET_DIR`, it takes the place of this checkout's own build of the workspace's crates,
whose files cargo names alike in both, and the next build here may link the baseline's library
into this binary.) Two runs of one binary against itself have differed by up to 5% in this mode:
a difference smaller than that needs repeated runs, or `bench/e2e_instructions.sh`.
"""

import argparse
import glob
import os
import pwd
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SERVER = os.path.join(ROOT, "target", "release", "e2e")


def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_for_port(port, process, limit=60.0):
    started = time.time()
    while time.time() - started < limit:
        if process.poll() is not None:
            raise SystemExit(f"the process for port {port} exited with {process.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"nothing listened on port {port} within {limit} s")


class Servers:
    """Redis and PostgreSQL of their own, on loopback ports, in one temporary directory."""

    def __init__(self, stores):
        self.dir = tempfile.mkdtemp(prefix="typed-sessions-e2e-")
        self.processes = []
        self.urls = {}
        # The database server's process, for its CPU time per request.
        self.pids = {}
        try:
            self.start(stores)
        except BaseException:
            self.stop()
            raise

    def start(self, stores):
        if "redis" in stores:
            port = free_port()
            self.processes.append(subprocess.Popen(
                ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                 "--appendonly", "no", "--dir", self.dir],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
            wait_for_port(port, self.processes[-1])
            self.urls["redis"] = f"redis://127.0.0.1:{port}"
            self.pids["redis"] = self.processes[-1].pid
        if "postgres" in stores:
            self.urls["postgres"] = self.start_postgres()

    def start_postgres(self):
        bins = sorted(glob.glob("/usr/lib/postgresql/*/bin"))
        bin_dir = os.environ.get("PG_BIN_DIR") or (bins[-1] if bins else None)
        if not bin_dir:
            raise SystemExit("PostgreSQL is not installed (initdb, postgres)")
        data = os.path.join(self.dir, "pg")
        demote = None
        if os.getuid() == 0:
            # PostgreSQL refuses to run as root: run it as the `postgres` user.
            user = pwd.getpwnam("postgres")
            os.chown(self.dir, user.pw_uid, user.pw_gid)

            def demote():
                os.setgid(user.pw_gid)
                os.setuid(user.pw_uid)
        subprocess.run([os.path.join(bin_dir, "initdb"), "-D", data, "--username=postgres",
                        "--auth=trust", "--no-sync"], check=True, stdout=subprocess.DEVNULL,
                       preexec_fn=demote)
        port = free_port()
        # fsync off, as in the tests: what is measured is the CPU each request costs the app and
        # the database, not this machine's disk.
        self.processes.append(subprocess.Popen(
            [os.path.join(bin_dir, "postgres"), "-D", data, "-p", str(port), "-k", self.dir,
             "-c", "listen_addresses=127.0.0.1", "-c", "fsync=off", "-c", "max_connections=200"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, preexec_fn=demote))
        wait_for_port(port, self.processes[-1])
        self.pids["postgres"] = self.processes[-1].pid
        time.sleep(0.5)  # listening comes just before accepting logins
        return f"postgres://postgres@127.0.0.1:{port}/postgres"

    def stop(self):
        for process in self.processes:
            process.terminate()
            process.wait()
        shutil.rmtree(self.dir, ignore_errors=True)


TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid, with_children=False):
    """CPU time (user + system) used so far by `pid`, and if asked by its children (a
    PostgreSQL server's backends): the live ones, and those that have ended (which the server
    has waited for), so that a backend ending during a measurement does not take its time out."""
    pids = [pid]
    if with_children:
        pids += [int(p) for p in subprocess.run(["pgrep", "-P", str(pid)], capture_output=True,
                                                 text=True).stdout.split()]
    total = 0
    for one in pids:
        try:
            with open(f"/proc/{one}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
            # utime, stime; for the server itself also cutime, cstime (its ended children).
            total += int(fields[11]) + int(fields[12])
            if with_children and one == pid:
                total += int(fields[13]) + int(fields[14])
        except (FileNotFoundError, ProcessLookupError):
            pass
    return total / TICKS


def machine_ticks():
    """(idle, total) clock ticks of every CPU so far, from `/proc/stat`: the whole machine's,
    so anything else running (a build) lowers the idle share too."""
    with open("/proc/stat") as stat:
        fields = [int(n) for n in stat.readline().split()[1:]]
    # user nice system idle iowait irq softirq steal; guest time is already counted in user.
    return fields[3] + fields[4], sum(fields[:8])


def parse_duration(text):
    number, unit = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text).groups()
    return float(number) * {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 6e4}[unit]


class Server:
    """One variant's server on a store, started and listening, with its sessions created."""

    def __init__(self, args, servers, variant, store, workload):
        self.variant, self.store, self.workload = variant, store, workload
        self.port = free_port()
        self.work = tempfile.mkdtemp(prefix="typed-sessions-e2e-run-")
        self.cookies = os.path.join(self.work, "cookies.txt")
        url = servers.urls.get(store, os.path.join(self.work, "sessions.db"))
        # The baseline is typed-sessions, served by another build.
        binary, served = (args.baseline, "typed") if variant == "baseline" else (SERVER, variant)
        self.process = subprocess.Popen(
            [binary, "--variant", served, "--store", store, "--url", url, "--workload", workload,
             "--port", str(self.port), "--sessions", str(args.sessions), "--cookies", self.cookies]
            + (["--keys", str(args.keys)] if args.keys else []),
            stdout=subprocess.DEVNULL)
        try:
            wait_for_port(self.port, self.process)
        except BaseException:
            self.stop()
            raise

    def stop(self):
        self.process.terminate()
        self.process.wait()
        shutil.rmtree(self.work, ignore_errors=True)


def measure(args, servers, variant, store, workload):
    """One server, started for one wrk run (see `drive`)."""
    server = Server(args, servers, variant, store, workload)
    try:
        return drive(args, servers, server)
    finally:
        server.stop()


def drive(args, servers, server):
    """One wrk run against `server`: (requests/s, p50 ms, p99 ms, app CPU µs per request,
    database CPU µs per request, share of the machine idle during the run). An idle share well
    above another variant's means that variant's requests wait (on round trips, on wake-ups)
    rather than compute: its requests/s then do not follow its CPU per request."""
    variant, store, workload = server.variant, server.store, server.workload
    database = servers.pids.get(store)
    app_cpu = cpu_seconds(server.process.pid)
    database_cpu = cpu_seconds(database, with_children=True) if database else 0.0
    idle_before, total_before = machine_ticks()
    out = subprocess.run(
        ["wrk", "-t", str(args.threads), "-c", str(args.connections), "-d", f"{args.duration}s",
         "--timeout", "10s", "--latency", "-s", os.path.join(ROOT, "bench", "e2e.lua"),
         f"http://127.0.0.1:{server.port}/"],
        check=True, capture_output=True, text=True, env={**os.environ, "COOKIES": server.cookies},
    ).stdout
    idle_after, total_after = machine_ticks()
    app_cpu = cpu_seconds(server.process.pid) - app_cpu
    database_cpu = (cpu_seconds(database, with_children=True) - database_cpu) if database else 0.0
    socket_errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+)", out)
    if "Non-2xx or 3xx responses" in out or (socket_errors and any(int(n) for n in socket_errors.groups())):
        raise SystemExit(f"{variant} on {store} ({workload}) answered errors:\n{out}")
    # A request slower than wrk's timeout is not an error of the server: it shows in p99.
    timeouts = re.search(r"timeout (\d+)", out)
    if timeouts:
        print(f"{variant} on {store} ({workload}): {timeouts.group(1)} requests took over 10 s",
              file=sys.stderr)
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    latency = dict(re.findall(r"^\s*(50|99)%\s+(\S+)\s*$", out, re.M))
    if len(latency) != 2:
        raise SystemExit(f"no latency percentiles in wrk's output for {variant} on {store}:\n{out}")
    requests = int(re.search(r"(\d+) requests in", out).group(1))
    return (rps, parse_duration(latency["50"]), parse_duration(latency["99"]),
            1e6 * app_cpu / requests, 1e6 * database_cpu / requests,
            (idle_after - idle_before) / max(1, total_after - total_before))


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=int, default=5, help="seconds of load per measurement")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--threads", type=int, default=1, help="wrk threads")
    parser.add_argument("--sessions", type=int, default=1000)
    parser.add_argument("--stores", default="memory,sqlite,redis,postgres")
    parser.add_argument("--workloads", default=None,
                        help="read-write, read-only, locked-read-write (default: the first two; "
                             "with --keys, read-only)")
    parser.add_argument("--keys", type=int, default=0,
                        help="sessions of N 100-byte keys, of which each request reads one "
                             "(and read-write writes it back changed; read-only by default)")
    parser.add_argument("--floor", action="store_true",
                        help="on Redis, also the least a session library on redis-rs could do: bare "
                             "axum plus one GET (read-write: and one SET) per request")
    parser.add_argument("--keep-servers", action="store_true",
                        help="start each variant's server once per store and workload and alternate "
                             "them in every round, instead of starting one per measurement: no "
                             "start-up between runs, so rounds can be short and many "
                             "(`--rounds 20 --duration 1`), which follows a drifting machine closer")
    parser.add_argument("--baseline", metavar="BINARY",
                        help="an e2e binary built from another commit: its typed-sessions runs beside "
                             "this one's in every round, and the table gives this one over it")
    parser.add_argument("--no-build", action="store_true")
    args = parser.parse_args()
    stores = args.stores.split(",")
    workloads = (args.workloads or ("read-only" if args.keys else "read-write,read-only")).split(",")
    if args.keys:
        if not set(workloads) <= {"read-only", "read-write"}:
            raise SystemExit("--keys runs the read-only and read-write workloads only")
        if args.floor:
            raise SystemExit("--floor reads one small record; it does not combine with --keys")
    if args.baseline and not os.access(args.baseline, os.X_OK):
        raise SystemExit(f"--baseline {args.baseline} is not an executable e2e binary")
    for tool in ("wrk",) + (("redis-server",) if "redis" in stores else ()):
        if not shutil.which(tool):
            raise SystemExit(f"{tool} is not installed (Debian: apt-get install {tool.split('-')[0]})")
    if not args.no_build:
        subprocess.run(["cargo", "build", "--release", "-j2", "-p", "typed-sessions-bench",
                        "--features", "e2e", "--bin", "e2e"], check=True, cwd=ROOT)

    servers = Servers(stores)
    results = {}

    def variants_of(store, round_number):
        variants = (["typed", "tower"] + (["bare"] if store == stores[0] else [])
                    + (["floor"] if args.floor and store == "redis" else [])
                    + (["baseline"] if args.baseline else []))
        return variants[::-1] if round_number % 2 else variants

    def run(round_number, store, workload, variant, server=None):
        if server:
            result = drive(args, servers, server)
        else:
            result = measure(args, servers, variant, store, workload)
        results.setdefault((store, workload, variant), []).append(result)
        print(f"round {round_number + 1} {store:8} {workload:10} {variant:8} "
              f"{result[0]:9.0f} req/s  p50 {result[1]:.2f} ms  p99 {result[2]:.2f} ms  "
              f"CPU/request: app {result[3]:.1f} µs, database {result[4]:.1f} µs  "
              f"machine idle {100 * result[5]:.0f}%",
              file=sys.stderr, flush=True)

    try:
        if args.keep_servers:
            for store in stores:
                for workload in workloads:
                    running = {}
                    try:
                        for variant in variants_of(store, 0):
                            running[variant] = Server(args, servers, variant, store, workload)
                        for round_number in range(args.rounds):
                            for variant in variants_of(store, round_number):
                                run(round_number, store, workload, variant, running[variant])
                    finally:
                        for server in running.values():
                            server.stop()
        else:
            for round_number in range(args.rounds):
                for store in stores:
                    for workload in workloads:
                        for variant in variants_of(store, round_number):
                            run(round_number, store, workload, variant)
    finally:
        servers.stop()

    keys = f", sessions of {args.keys} keys of 100 bytes, one read (read-write: and written back)" if args.keys else ""
    print(f"\n{args.rounds} rounds of {args.duration} s, {args.connections} connections, "
          f"{args.sessions} sessions{keys}; medians over rounds\n")
    print("| store | workload | bare axum req/s | tower-sessions req/s (p50 / p99 ms; app + db CPU µs/req) "
          "| typed-sessions req/s (p50 / p99 ms; app + db CPU µs/req) | typed / tower "
          "| machine idle (tower / typed) |")
    print("|---|---|---|---|---|---|---|")
    for store in stores:
        for workload in workloads:
            def median(variant, index):
                return statistics.median(r[index] for r in results[(store, workload, variant)])
            ratios = [t[0] / w[0] for t, w in zip(results[(store, workload, "typed")],
                                                   results[(store, workload, "tower")])]
            bare = results.get((stores[0], workload, "bare"))
            bare_text = f"{statistics.median(r[0] for r in bare):.0f}" if bare else "-"
            def cells(variant):
                return (f"{median(variant, 0):.0f} ({median(variant, 1):.2f} / {median(variant, 2):.2f}; "
                        f"{median(variant, 3):.0f} + {median(variant, 4):.0f})")
            print(f"| {store} | {workload} | {bare_text} | {cells('tower')} | {cells('typed')} "
                  f"| {statistics.median(ratios):.2f}× "
                  f"| {100 * median('tower', 5):.0f}% / {100 * median('typed', 5):.0f}% |")
            baseline = results.get((store, workload, "baseline"))
            if baseline:
                this_over_baseline = [t[0] / b[0] for t, b in zip(results[(store, workload, "typed")], baseline)]
                baseline_ratios = [b[0] / w[0] for b, w in zip(baseline, results[(store, workload, "tower")])]
                print(f"| {store} | {workload}: baseline binary (baseline / tower, baseline's idle; "
                      f"this over baseline: {statistics.median(this_over_baseline):.3f}×) | | | "
                      f"{cells('baseline')} | {statistics.median(baseline_ratios):.2f}× "
                      f"| {100 * median('baseline', 5):.0f}% |")
            floor = results.get((store, workload, "floor"))
            if floor:
                floor_ratios = [f[0] / w[0] for f, w in zip(floor, results[(store, workload, "tower")])]
                print(f"| {store} | {workload}: floor (GET{'' if workload == 'read-only' else ' + SET'}, "
                      f"no session code; floor / tower, floor's idle) | | | {cells('floor')} "
                      f"| {statistics.median(floor_ratios):.2f}× | {100 * median('floor', 5):.0f}% |")


if __name__ == "__main__":
    main()
