#!/usr/bin/env python3
"""Switchboard `media` benchmark (spec 13-quality.md, "Benchmarks"). Python 3.11, stdlib only.

    python3 bench/media.py [--targets rtpengine,switchboard] [--calls 250,500,1000,...]
                           [--duration 10] [--threads 2] [--no-build]

Concurrent calls, each streaming 20 ms G.711 (172-byte RTP, 50 packets/s) both ways through
the relay under test, on loopback; the load comes from crates/relay/examples/relay_load.rs,
the same clients for both targets:

- switchboard: Switchboard's relay (crates/relay, what the PBX uses for every call), started
  inside relay_load; its CPU is that of its `media-N` threads.
- rtpengine: a userspace-only rtpengine (no kernel module) that this script starts; each call
  is set up over ng (offer, answer) and deleted after the step; its CPU is that of all its
  threads.

The steps of the targets alternate (rtpengine at C calls, Switchboard at C, rtpengine at the
next C, ...), `--duration` seconds each, until a step loses >= 0.1 % of the packets or the
machine's CPU is saturated. Per step: calls, streams, relayed packets/s, loss, target
CPU-seconds, CPU per 1,000 streams (% of a core), packets/s per core of target CPU. Per
target: the most calls passing (loss < 0.1 %) and its packets/s per core. Prints one table
and writes bench/results/<UTC time>-media.json.

See bench/README.md ("media") for what each figure means.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.dont_write_bytecode = True   # no bench/__pycache__ from importing run.py
sys.path.insert(0, str(Path(__file__).resolve().parent))
# The /proc helpers, process-group handling and machine description of the reg-storm runner.
from run import (BenchError, _proc_stat, add_noise_args, finish_workdir, kill_group,  # noqa: E402
                 log, machine_info, run_text, save_report, thread_cpu_seconds)

BENCH_DIR = Path(__file__).resolve().parent
REPO_DIR = BENCH_DIR.parent
RESULTS_DIR = BENCH_DIR / "results"
CARGO_TARGET_DIR = Path(os.environ.get("CARGO_TARGET_DIR",
                                       Path.home() / ".cache" / "switchboard-target"))
RELAY_LOAD_BIN = CARGO_TARGET_DIR / "release" / "examples" / "relay_load"

HOST = "127.0.0.1"
MAX_LOSS_PCT = 0.1               # a step passes with loss below this
DEFAULT_LADDER = [250, 500, 1000, 1500, 2000]
TARGETS = ("rtpengine", "switchboard")


# --------------------------------------------------------------------------------------
# rtpengine
# --------------------------------------------------------------------------------------

def bencode(v) -> bytes:
    """Enough bencode for the readiness check (relay_load does the real ng work)."""
    if isinstance(v, int):
        return b"i%de" % v
    if isinstance(v, str):
        v = v.encode()
    if isinstance(v, bytes):
        return b"%d:%s" % (len(v), v)
    if isinstance(v, dict):
        return b"d" + b"".join(bencode(k) + bencode(v[k]) for k in sorted(v)) + b"e"
    raise TypeError(type(v))


def ng_ping(port: int, timeout: float = 0.5) -> bool:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(timeout)
    cookie = f"media-py-{os.getpid()}-{time.monotonic_ns()}"
    try:
        s.sendto(cookie.encode() + b" " + bencode({"command": "ping"}), (HOST, port))
        return b"pong" in s.recv(65535)
    except OSError:
        return False
    finally:
        s.close()


class Rtpengine:
    def __init__(self, args, workdir: Path):
        self.args = args
        self.log_path = workdir / "rtpengine.log"
        self.proc: subprocess.Popen | None = None
        self.cmd = [
            "rtpengine", "--foreground", "--log-stderr",
            "--config-file=none",               # not /etc/rtpengine/rtpengine.conf
            f"--interface={HOST}",
            f"--listen-ng={HOST}:{args.ng_port}",
            f"--port-min={args.rtpengine_port_min}", f"--port-max={args.rtpengine_port_max}",
            "--table=-1",                       # no kernel forwarding: userspace only
            f"--num-threads={args.threads}",
            f"--log-level={args.rtpengine_log_level}",
            "--delete-delay=0",                 # deleted calls free their ports at once
        ]

    def start(self) -> None:
        if not shutil.which("rtpengine"):
            raise BenchError("rtpengine not found: apt-get install -y rtpengine-daemon")
        if ng_ping(self.args.ng_port, 0.3):
            raise BenchError(f"something already answers ng on {HOST}:{self.args.ng_port}")
        log("starting rtpengine: " + " ".join(self.cmd))
        self.proc = subprocess.Popen(self.cmd, stdout=subprocess.DEVNULL,
                                     stderr=self.log_path.open("wb"), start_new_session=True)
        end = time.monotonic() + 10
        while time.monotonic() < end:
            if self.proc.poll() is not None:
                raise BenchError(f"rtpengine exited ({self.proc.returncode}):\n{self.log_tail()}")
            if ng_ping(self.args.ng_port):
                return
            time.sleep(0.2)
        raise BenchError(f"rtpengine does not answer ng ping:\n{self.log_tail()}")

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self) -> None:
        kill_group(self.proc)
        self.proc = None

    def log_tail(self, n: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""

    def version(self) -> str:
        out = run_text(["sh", "-c", "dpkg-query -W -f '${Version}' rtpengine-daemon"])
        return out or run_text(["rtpengine", "--version"])


# --------------------------------------------------------------------------------------
# Steps
# --------------------------------------------------------------------------------------

CLK_TCK = os.sysconf("SC_CLK_TCK")


def all_cpu_ticks() -> dict[int, tuple[int, int]]:
    """pid -> (pgrp, utime+stime) of every process. Unlike run.py's, without the CPU of
    reaped children: a build reaping a compiler that ran for a minute would otherwise count
    that minute in the window in which it was reaped."""
    out = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            st = _proc_stat(int(d))
            if st:
                out[int(d)] = (int(st[2]), int(st[11]) + int(st[12]))
    return out


def other_cpu_seconds(before: dict, after: dict, exclude_pgids: set[int]) -> float:
    """CPU used between two all_cpu_ticks() snapshots by processes outside exclude_pgids
    and outside this script; a process started in between counts whole."""
    me = os.getpid()
    ticks = 0
    for pid, (pgrp, t) in after.items():
        if pgrp in exclude_pgids or pid == me:
            continue
        ticks += t - before[pid][1] if pid in before else t
    return max(0, ticks) / CLK_TCK

def build() -> None:
    log(f"building relay_load (release, CARGO_TARGET_DIR={CARGO_TARGET_DIR}) ...")
    env = dict(os.environ, CARGO_TARGET_DIR=str(CARGO_TARGET_DIR))
    r = subprocess.run(["cargo", "build", "--release", "-j2", "-p", "switchboard-relay",
                        "--example", "relay_load"],
                       cwd=REPO_DIR, env=env, capture_output=True, text=True)
    if r.returncode != 0:
        raise BenchError("cargo build failed:\n" + r.stderr[-3000:])


def wait_quiet(args, exclude: set[int]) -> float:
    """Wait up to --quiet-wait s until other processes use < --quiet-threshold cores."""
    end = time.monotonic() + args.quiet_wait
    announced = False
    while True:
        a, t0 = all_cpu_ticks(), time.monotonic()
        time.sleep(1.0)
        busy = other_cpu_seconds(a, all_cpu_ticks(), exclude) / (time.monotonic() - t0)
        if busy <= args.quiet_threshold or time.monotonic() > end:
            if busy > args.quiet_threshold:
                log(f"  warning: other processes still use {busy:.2f} cores; measuring anyway")
            return busy
        if not announced:
            log(f"  waiting for the machine to be quiet ({busy:.2f} cores busy elsewhere) ...")
            announced = True


def load_command(args, target: str, calls: int, rtpengine: Rtpengine | None) -> list[str]:
    cmd = [str(args.relay_load_bin), "--json", "--calls", str(calls),
           "--seconds", str(args.duration), "--clients", str(args.clients),
           "--sockets", str(args.sockets), "--bind", HOST]
    if target == "switchboard":
        cmd += ["--target", "switchboard", "--threads", str(args.threads),
                "--port-min", str(args.relay_port_min), "--port-max", str(args.relay_port_max)]
    else:
        cmd += ["--target", "rtpengine", "--ng", f"{HOST}:{args.ng_port}",
                "--rtpengine-pid", str(rtpengine.proc.pid)]
    return cmd


def run_step(args, target: str, calls: int, rtpengine: Rtpengine | None, workdir: Path) -> dict:
    exclude = {rtpengine.proc.pid} if rtpengine and rtpengine.alive() else set()
    quiet = wait_quiet(args, exclude) if args.quiet_wait > 0 else None
    cmd = load_command(args, target, calls, rtpengine)
    out_path = workdir / f"{target}-{calls}-{time.strftime('%H%M%S')}.out"
    before, t0 = all_cpu_ticks(), time.monotonic()
    with out_path.open("w") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            rc = proc.wait(timeout=args.duration + 120)
        except subprocess.TimeoutExpired:
            kill_group(proc)
            raise BenchError(f"relay_load did not finish: {out_path}")
    wall = time.monotonic() - t0
    # relay_load (reaped, so no longer listed) and rtpengine are left out.
    other = other_cpu_seconds(before, all_cpu_ticks(), exclude | {proc.pid})
    text = out_path.read_text(errors="replace")
    line = next((l for l in text.splitlines() if l.startswith("json: ")), None)
    if rc != 0 or line is None:
        raise BenchError(f"relay_load {target} {calls} calls failed ({rc}):\n{text[-2000:]}")
    step = json.loads(line[len("json: "):])
    step["pass"] = step["loss_pct"] < MAX_LOSS_PCT
    # CPU per 1,000 streams: cores (CPU-seconds per second) ÷ streams × 1,000.
    step["cpu_pct_per_1000_streams"] = 100 * step["cores_per_1000_streams"]
    step["client_cores"] = step["client_cpu_s"] / step["seconds"]
    step["other_cores"] = other / wall
    step["quiet_before_cores"] = quiet
    step["wall_seconds"] = wall
    step["command"] = cmd
    # The machine is the limit once target + clients use (nearly) all of its cores.
    step["machine_cores_used"] = step["target_cores"] + step["client_cores"]
    step["saturated"] = step["machine_cores_used"] >= args.saturation * (os.cpu_count() or 1)
    if rtpengine is not None and target == "rtpengine":
        if not rtpengine.alive():
            raise BenchError(f"rtpengine died during the step:\n{rtpengine.log_tail()}")
        step["rtpengine_threads_cpu_s_total"] = thread_cpu_seconds(rtpengine.proc.pid)
    return step


def fmt_step(s: dict) -> str:
    return (f"{s['target']:<11} {s['calls']:>5} calls {s['streams']:>5} streams "
            f"{s['relayed_pps']:>9,.0f} pkt/s  loss {s['loss_pct']:6.3f}%  "
            f"CPU {s['target_cpu_s']:5.2f} s ({s['target_cores']:.2f} cores, "
            f"{s['cpu_pct_per_1000_streams']:.1f}% of a core per 1k streams)  "
            f"{(s['pps_per_core'] or 0):>9,.0f} pkt/s/core  clients {s['client_cores']:.2f} "
            f"others {s['other_cores']:.2f} cores  {'pass' if s['pass'] else 'FAIL'}"
            f"{' saturated' if s['saturated'] else ''}")


class Ladder:
    """One target's steps: the call counts in order, stopping after a failing step (after
    the retries a noisy machine earns) or one that saturates the machine."""

    def __init__(self, args, target: str):
        self.args, self.target = args, target
        if args.calls:
            self.todo = [int(c) for c in args.calls.split(",") if c.strip()]
        else:
            self.todo = [c for c in DEFAULT_LADDER if c <= args.max_calls]
            c = self.todo[-1] if self.todo else args.step_calls
            while c + args.step_calls <= args.max_calls:
                c += args.step_calls
                self.todo.append(c)
        self.steps: list[dict] = []      # every attempt
        self.done = False
        self.stopped_by = "ladder end"

    def next_calls(self) -> int | None:
        return None if self.done or not self.todo else self.todo[0]

    def record(self, step: dict, retries_left: int) -> bool:
        """Returns True if the step is to be run again (it failed on a noisy machine)."""
        self.steps.append(step)
        if not step["pass"] and step["other_cores"] > self.args.noise_threshold and retries_left:
            step["retried"] = True
            return True
        self.todo.pop(0)
        if not step["pass"]:
            self.done, self.stopped_by = True, f"loss >= {MAX_LOSS_PCT}% at {step['calls']} calls"
        elif step["saturated"] and not self.args.calls:
            self.done, self.stopped_by = True, f"machine CPU saturated at {step['calls']} calls"
        if not self.todo and not self.done:
            self.done = True
        return False

    def final_steps(self) -> list[dict]:
        return [s for s in self.steps if not s.get("retried")]

    def summary(self) -> dict:
        final = self.final_steps()
        passing = [s for s in final if s["pass"]]
        best = max(passing, key=lambda s: s["calls"]) if passing else None
        failing = [s["calls"] for s in final if not s["pass"]]
        keys = ("calls", "streams", "relayed_pps", "loss_pct", "target_cpu_s", "target_cores",
                "cpu_pct_per_1000_streams", "pps_per_core", "client_cores", "other_cores",
                "saturated")
        return {
            "target": self.target,
            "max_calls_passing": best["calls"] if best else None,
            "lowest_calls_failing": min(failing) if failing else None,
            "stopped_by": self.stopped_by,
            "best": {k: best[k] for k in keys} if best else None,
            "steps": self.steps,
        }


def common_step(results: dict) -> dict | None:
    """The highest call count every target passed without saturating the machine (else the
    highest every target passed): the fair CPU comparison, because CPU per packet falls as
    the load rises (more packets per wake-up), most of all once the machine is saturated."""
    final = [[s for s in r["steps"] if s["pass"] and not s.get("retried")]
             for r in results.values()]
    if len(final) < 2:
        return None
    for unsaturated in (True, False):
        passed = [{s["calls"]: s for s in steps if not (unsaturated and s["saturated"])}
                  for steps in final]
        common = set(passed[0]).intersection(*passed[1:])
        if common:
            c = max(common)
            return {"calls": c, "unsaturated": unsaturated,
                    **{name: {"pps_per_core": p[c]["pps_per_core"],
                              "cpu_pct_per_1000_streams": p[c]["cpu_pct_per_1000_streams"]}
                       for name, p in zip(results, passed)}}
    return None


def num(v, fmt="{:,.0f}") -> str:
    return "-" if v is None else fmt.format(v)


def print_table(results: dict, common: dict | None) -> str:
    lines = ["", "steps (pass = loss < 0.1 %):",
             f"{'target':<11} {'calls':>5} {'streams':>7} {'pkt/s':>9} {'loss %':>7} "
             f"{'CPU s':>6} {'cores':>5} {'%core/1k str':>12} {'pkt/s/core':>10} "
             f"{'clients':>7} {'others':>6}  result"]
    steps = sorted((s for r in results.values() for s in r["steps"]),
                   key=lambda s: (s["calls"], s["target"]))
    for s in steps:
        lines.append(
            f"{s['target']:<11} {s['calls']:>5} {s['streams']:>7} {s['relayed_pps']:>9,.0f} "
            f"{s['loss_pct']:>7.3f} {s['target_cpu_s']:>6.2f} {s['target_cores']:>5.2f} "
            f"{s['cpu_pct_per_1000_streams']:>12.1f} {num(s['pps_per_core']):>10} "
            f"{s['client_cores']:>7.2f} {s['other_cores']:>6.2f}  "
            f"{'pass' if s['pass'] else 'FAIL'}{' (retried)' if s.get('retried') else ''}"
            f"{' saturated' if s['saturated'] else ''}")
    lines += ["", f"{'':<36}" + "".join(f"{name:>16}" for name in results)]

    def row(label, f):
        lines.append(f"{label:<36}" + "".join(f"{f(r):>16}" for r in results.values()))

    row("most calls with loss < 0.1 %", lambda r: num(r["max_calls_passing"]))
    row("  relayed packets/s there", lambda r: num((r["best"] or {}).get("relayed_pps")))
    row("  packets/s per core of target CPU", lambda r: num((r["best"] or {}).get("pps_per_core")))
    row("  CPU per 1,000 streams (% of a core)",
        lambda r: num((r["best"] or {}).get("cpu_pct_per_1000_streams"), "{:.1f}"))
    row("  machine saturated there", lambda r: "-" if not r["best"] else
        ("yes" if r["best"]["saturated"] else "no"))
    row("lowest calls failing", lambda r: num(r["lowest_calls_failing"]))
    if common:
        c = common["calls"]
        lines.append(f"at {c} calls, the most both passed"
                     + (" without saturating the machine:" if common["unsaturated"] else ":"))
        row(f"  packets/s per core at {c} calls",
            lambda r: num(common[r["target"]]["pps_per_core"]))
        row(f"  CPU per 1,000 streams at {c} calls",
            lambda r: num(common[r["target"]]["cpu_pct_per_1000_streams"], "{:.1f}"))
    lines.append("target: >= 100,000 relayed packets/s per core")
    text = "\n".join(lines)
    log(text)
    return text


# --------------------------------------------------------------------------------------
# Main
# --------------------------------------------------------------------------------------

def _sigterm(signum, frame):
    raise KeyboardInterrupt


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--targets", default="rtpengine,switchboard",
                    help="comma-separated, alternating in this order within each step")
    ap.add_argument("--calls", help="explicit call counts, e.g. 500,1000 (run all of them); "
                                    "default: 250,500,1000,1500,2000 then +--step-calls "
                                    "until a step fails or saturates the machine")
    ap.add_argument("--step-calls", type=int, default=500)
    ap.add_argument("--max-calls", type=int, default=4000,
                    help="ladder end (each call takes 4 relay ports and 4 file descriptors)")
    ap.add_argument("--duration", type=int, default=10, help="seconds per step")
    ap.add_argument("--threads", type=int, default=2,
                    help="forwarding threads of both targets (relay threads; rtpengine "
                         "--num-threads); the PBX starts one relay thread per core")
    ap.add_argument("--clients", type=int, default=2, help="relay_load client threads")
    ap.add_argument("--sockets", type=int, default=4, help="client sockets per side per thread")
    ap.add_argument("--relay-port-min", type=int, default=10000)
    ap.add_argument("--relay-port-max", type=int, default=29999)
    ap.add_argument("--rtpengine-port-min", type=int, default=35000)
    ap.add_argument("--rtpengine-port-max", type=int, default=60000)
    ap.add_argument("--ng-port", type=int, default=22222)
    ap.add_argument("--rtpengine-log-level", type=int, default=3)
    ap.add_argument("--saturation", type=float, default=0.9,
                    help="a step whose target + clients use this fraction of the cores ends "
                         "the ladder")
    ap.add_argument("--relay-load-bin", default=str(RELAY_LOAD_BIN))
    ap.add_argument("--no-build", action="store_true", help="do not run cargo build")
    add_noise_args(ap, noise_retries=2, quiet_wait=20)
    ap.add_argument("--keep", action="store_true", help="keep the work directory")
    ap.add_argument("--out", help="result JSON (default bench/results/<UTC time>-media.json)")
    args = ap.parse_args()

    targets = [t.strip() for t in args.targets.split(",") if t.strip()]
    for t in targets:
        if t not in TARGETS:
            ap.error(f"unknown target {t!r}")

    signal.signal(signal.SIGTERM, _sigterm)
    started = dt.datetime.now(dt.timezone.utc)
    workdir = Path(tempfile.mkdtemp(prefix="sb-bench-media-"))
    log(f"work directory: {workdir}")
    report: dict = {"bench": "media", "started_utc": started.isoformat(timespec="seconds"),
                    "machine": machine_info(), "parameters": vars(args),
                    "criteria": {"loss_pct_below": MAX_LOSS_PCT,
                                 "target_pps_per_core_at_least": 100000},
                    "results": {}}
    rtpengine: Rtpengine | None = None
    ladders: dict[str, Ladder] = {}
    rc = 0
    try:
        if not args.no_build:
            build()
        if "rtpengine" in targets:
            rtpengine = Rtpengine(args, workdir)
            rtpengine.start()
            report["rtpengine"] = {"version": rtpengine.version(), "command": rtpengine.cmd}
        ladders = {t: Ladder(args, t) for t in targets}
        retries = {t: args.noise_retries for t in targets}
        # Alternate: each target's next step in turn, so that the shared machine's drift
        # during the run affects both alike.
        while any(l.next_calls() is not None for l in ladders.values()):
            for t, ladder in ladders.items():
                calls = ladder.next_calls()
                if calls is None:
                    continue
                while True:
                    step = run_step(args, t, calls, rtpengine, workdir)
                    log("  " + fmt_step(step))
                    if not ladder.record(step, retries[t]):
                        break
                    retries[t] -= 1
                    log("  (other processes were busy during a failed step: again)")
                retries[t] = args.noise_retries
        for t, ladder in ladders.items():
            report["results"][t] = ladder.summary()
    except BenchError as e:
        log(f"\n{e}")
        rc = 1
        for t, ladder in ladders.items():
            report["results"].setdefault(t, ladder.summary())
    except KeyboardInterrupt:
        log("\ninterrupted: stopping everything")
        rc = 130
        for t, ladder in ladders.items():
            report["results"].setdefault(t, ladder.summary())
    finally:
        if rtpengine is not None:
            rtpengine.stop()
        report["finished_utc"] = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
        if report["results"]:
            common = common_step(report["results"])
            if common:
                report["common"] = common
            report["table"] = print_table(report["results"], common)
            save_report(report, args.out, started, "media")
        finish_workdir(workdir, keep=bool(args.keep or rc))
    return rc


if __name__ == "__main__":
    sys.exit(main())
