#!/usr/bin/env python3
"""call-storm: authenticated calls between registered phones (spec 13-quality.md,
"Benchmarks"). Python 3.11, stdlib only; reuses bench/run.py's targets and helpers.

    python3 bench/call_storm.py [--targets kamailio,switchboard] [--rates 200,400,...]
                                [--duration 10] [--hold-ms 500] [--pairs 4000]
                                [--sipp-pairs 2] [--switchboard-bin PATH] [--keep]

N callers (200000…) call N callees (200000+N…), caller i always dialling callee i. Per
target: the callees register from the ports of the callee SIPp processes (reg_digest.xml),
then at each rate of a ladder (200, 400, 600, … calls/s, the targets' steps alternating)
the caller SIPp processes (sipp/call_uac.xml: INVITE, 407, ACK, INVITE with
Proxy-Authorization, 180, 200, ACK, hold, BYE, 200) call the callee SIPp processes
(sipp/call_uas.xml: 180, 200 with SDP, ACK, BYE → 200) through the target: Kamailio as a
stateful Record-Routing proxy (kamailio/kamailio-calls.cfg) or Switchboard as a B2BUA
with the media anchored at its relay and a CDR per call. A step passes with 0 failed calls
on either side, < 1 % retransmissions and ≥ 95 % of the asked rate. Reported: each target's
highest passing rate, its CPU µs per call / CPU-s per 10,000 calls there and at the
highest rate both passed, and the Switchboard/Kamailio ratio. Afterwards Switchboard's CDR
rows are counted and its /metrics checked to come back to 0 calls and 0 transactions.
JSON in bench/results/<UTC time>-call-storm.json. See bench/README.md ("call-storm").
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import re
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

sys.dont_write_bytecode = True  # no bench/__pycache__ from importing run.py
sys.path.insert(0, str(Path(__file__).resolve().parent))
import run as rs  # noqa: E402  (bench/run.py: targets, /proc helpers, SIPp statistics)
from run import BenchError, HOST, REALM, log  # noqa: E402

UAC = rs.BENCH_DIR / "sipp" / "call_uac.xml"
UAS = rs.BENCH_DIR / "sipp" / "call_uas.xml"
REG = rs.BENCH_DIR / "sipp" / "reg_digest.xml"
KAMAILIO_CALLS_CFG = rs.BENCH_DIR / "kamailio" / "kamailio-calls.cfg"
DEFAULT_BIN = Path("/work/bench-target/release/switchboard")


# --------------------------------------------------------------------------------------
# Targets: run.py's, with the call configuration
# --------------------------------------------------------------------------------------

class KamailioCalls(rs.Kamailio):
    cfg_path = KAMAILIO_CALLS_CFG

    def tm_stats(self) -> dict:
        out = self._kamcmd("tm.stats")
        return {k: int(v) for k, v in re.findall(r"(\w+):\s*(\d+)", out)}

    def after_step(self) -> dict:
        return {"tm": self.tm_stats()}

    def still_busy(self, everything: bool) -> int:
        """Transactions in progress (`everything`: also those in tm's wait timer)."""
        tm = self.tm_stats()
        return tm.get("current", 0) - (0 if everything else tm.get("waiting", 0))


class SwitchboardCalls(rs.Switchboard):
    def __init__(self, args, workdir, users):
        super().__init__(args, workdir, users)
        self.http_listen = f"{HOST}:{args.switchboard_http_port}"

    def extra_config(self, d: Path) -> str:
        return (f"rtp:\n  port_min: {self.args.rtp_port_min}\n  port_max: {self.args.rtp_port_max}\n"
                "voicemail:\n  unsolicited_mwi: false\n")

    def metrics(self) -> dict:
        """The switchboard_* gauges and counters of GET /metrics (no labels kept apart
        from the reason of dropped media packets)."""
        try:
            with urllib.request.urlopen(f"http://{self.http_listen}/metrics", timeout=5) as r:
                text = r.read().decode(errors="replace")
        except OSError as e:
            return {"error": str(e)}
        out: dict = {}
        for line in text.splitlines():
            m = re.match(r"^(switchboard_[a-z_]+)(\{[^}]*\})?\s+(\S+)$", line)
            if m:
                name = m.group(1) + (m.group(2) or "")
                try:
                    out[name] = float(m.group(3))
                except ValueError:
                    pass
        return out

    def rtp_sockets(self) -> int:
        """UDP sockets bound in rtp.port_min..=port_max (the relay's RTP/RTCP ports in use
        or kept bound for reuse; nothing else on the machine binds there)."""
        n = 0
        for name in ("/proc/net/udp", "/proc/net/udp6"):
            try:
                lines = Path(name).read_text().splitlines()[1:]
            except OSError:
                continue
            for line in lines:
                port = int(line.split()[1].rsplit(":", 1)[1], 16)
                if self.args.rtp_port_min <= port <= self.args.rtp_port_max:
                    n += 1
        return n

    def cdr_rows(self) -> int | None:
        try:
            con = sqlite3.connect(f"file:{self.db_path}?mode=ro", uri=True, timeout=5)
            try:
                return con.execute("SELECT COUNT(*) FROM cdr").fetchone()[0]
            finally:
                con.close()
        except sqlite3.Error:
            return None

    def still_busy(self, everything: bool) -> int:
        """Calls in progress (`everything`: also transactions waiting out 64*T1)."""
        m = self.metrics()
        keys = ["switchboard_calls_active", "switchboard_media_sessions"]
        if everything:
            keys.append("switchboard_sip_transactions")
        return int(sum(m.get(k) or 0 for k in keys))

    def after_step(self) -> dict:
        m = self.metrics()
        out = {k: m.get(k) for k in ("switchboard_calls_active", "switchboard_sip_transactions",
                                     "switchboard_media_sessions", "switchboard_media_idle_port_pairs")}
        out["rtp_sockets"] = self.rtp_sockets()
        out["rtp_sockets_beyond_idle"] = unaccounted_sockets(out["rtp_sockets"], m)
        out["cdr_rows"] = self.cdr_rows()
        return out


def unaccounted_sockets(bound: int, metrics: dict) -> int:
    """Bound RTP/RTCP sockets beyond the pairs the relay keeps bound for reuse (two
    sockets each, `switchboard_media_idle_port_pairs`): after the calls, a leak."""
    return bound - 2 * int(metrics.get("switchboard_media_idle_port_pairs") or 0)


# --------------------------------------------------------------------------------------
# Users and injection files
# --------------------------------------------------------------------------------------

def write_inj(workdir: Path, callers, callees, k_procs: int) -> tuple[list[Path], list[Path], list[int]]:
    """Per SIPp pair k: callers-k.inf (caller;secret;callee;domain) and callees-k.inf
    (callee;secret;domain, for the registration), with the same slice of pairs, so that
    every call of caller process k goes to callee process k (whose -m is then exact)."""
    n = len(callers)
    uac, reg, sizes = [], [], []
    for k in range(k_procs):
        lo, hi = k * n // k_procs, (k + 1) * n // k_procs
        a, b = workdir / f"callers-{k}.inf", workdir / f"callees-{k}.inf"
        with a.open("w") as f:
            f.write("SEQUENTIAL\n")
            for i in range(lo, hi):
                f.write(f"{callers[i].number};{callers[i].secret};{callees[i].number};{REALM}\n")
        with b.open("w") as f:
            f.write("SEQUENTIAL\n")
            for i in range(lo, hi):
                f.write(f"{callees[i].number};{callees[i].secret};{REALM}\n")
        uac.append(a)
        reg.append(b)
        sizes.append(hi - lo)
    return uac, reg, sizes


# --------------------------------------------------------------------------------------
# SIPp
# --------------------------------------------------------------------------------------

# Each target's SIPp processes get ports of their own (target i: base + i * PORT_BLOCK): a
# target that collapsed keeps retransmitting for up to 64*T1 after its step, and on shared
# ports those late requests reached the other target's next step as unexpected calls (a
# Switchboard step failed at 0.34 cores right after a collapsed Kamailio step).
PORT_BLOCK = 500


@dataclass(frozen=True)
class SippPorts:
    caller: int
    callee: int
    media: int

    @classmethod
    def of(cls, args, index: int) -> "SippPorts":
        off = index * PORT_BLOCK
        return cls(args.caller_base_port + off, args.callee_base_port + off,
                   args.media_base_port + off)

    def all(self, pairs: int) -> list[int]:
        return [self.caller + k for k in range(pairs)] + [self.callee + k for k in range(pairs)]


def sipp_common(args, stf: Path, err: Path, mp: int) -> list[str]:
    return ["-i", HOST, "-t", "u1", "-buff_size", str(args.sipp_buff_size),
            "-max_recv_loops", "10000", "-max_sched_loops", "10000", "-mp", str(mp),
            "-recv_timeout", str(args.recv_timeout_ms), "-nostdin",
            "-trace_stat", "-stf", str(stf), "-fd", "1",
            "-trace_err", "-error_file", str(err), "-trace_error_codes"]


def start(cmd: list[str], cwd: Path, stderr: Path) -> subprocess.Popen:
    return subprocess.Popen(cmd, cwd=cwd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=stderr.open("w"), start_new_session=True)


def reap(procs: dict[str, subprocess.Popen], deadline: float) -> dict[str, dict]:
    """Wait for every process (wait4: its CPU time) until `deadline`; then SIGUSR1 (SIPp:
    stop and exit once its calls are done), then kill. Returns name -> {rc, cpu}."""
    out: dict[str, dict] = {}
    pending = dict(procs)
    signalled = False
    while pending:
        for name, p in list(pending.items()):
            wpid, status, ru = os.wait4(p.pid, os.WNOHANG)
            if wpid:
                p.returncode = os.waitstatus_to_exitcode(status)
                out[name] = {"rc": p.returncode, "cpu": ru.ru_utime + ru.ru_stime}
                del pending[name]
        if not pending:
            break
        if time.monotonic() > deadline:
            if not signalled:
                for p in pending.values():
                    try:
                        os.kill(p.pid, signal.SIGUSR1)
                    except ProcessLookupError:
                        pass
                signalled = True
                deadline = time.monotonic() + 3
            else:
                for name, p in pending.items():
                    rs.kill_group(p, grace=2)
                    out[name] = {"rc": p.returncode, "cpu": None, "killed": True}
                break
        time.sleep(0.05)
    return out


def register_callees(args, target, reg_inj: list[Path], step_dir: Path) -> dict:
    """The callees register from the ports their UAS will answer on (bindings point
    there), one SIPp process per callee port, each for its slice."""
    step_dir.mkdir(parents=True, exist_ok=True)
    procs, counts = {}, {}
    for k, inj in enumerate(reg_inj):
        n = sum(1 for _ in inj.open()) - 1
        counts[k] = n
        cmd = ["sipp", f"{HOST}:{target.port}", "-sf", str(REG), "-inf", str(inj),
               "-p", str(target.ports.callee + k), "-r", str(args.register_rate), "-rp", "1000",
               "-m", str(n), "-l", "500", "-auth_uri", REALM,
               "-timeout", f"{int(n / args.register_rate + 30)}s",
               *sipp_common(args, step_dir / f"reg-{k}.csv", step_dir / f"reg-{k}-errors.log",
                            target.ports.media + 100 + k * 4)]
        procs[f"reg-{k}"] = start(cmd, step_dir, step_dir / f"reg-{k}.stderr")
    waited = reap(procs, time.monotonic() + max(counts.values()) / args.register_rate + 40)
    ok = 0
    for k in counts:
        st = rs.parse_sipp_stats(step_dir / f"reg-{k}.csv") or {}
        ok += int(st.get("SuccessfulCall(C)", 0))
    total = sum(counts.values())
    if ok != total:
        raise BenchError(f"{target.name}: only {ok}/{total} callees registered "
                         f"(see {step_dir}, exit codes {[w['rc'] for w in waited.values()]})")
    return {"registered": ok, "rate": args.register_rate}


def sipp_side(stf: Path) -> dict:
    st = rs.parse_sipp_stats(stf)
    if not st:
        return {}
    return {"created": int(st.get("TotalCallCreated", 0)),
            "successful": int(st.get("SuccessfulCall(C)", 0)),
            "failed": int(st.get("FailedCall(C)", 0)),
            "retransmissions": int(st.get("Retransmissions(C)", 0)),
            "unexpected": int(st.get("OutOfCallMsgs(C)", 0)) + int(st.get("DeadCallMsgs(C)", 0)),
            "failed_breakdown": {k[6:-3]: int(v) for k, v in st.items()
                                 if k.startswith("Failed") and k.endswith("(C)")
                                 and k != "FailedCall(C)" and v.isdigit() and int(v)},
            "elapsed": rs._epoch(st["CurrentTime"]) - rs._epoch(st["StartTime"]),
            "response_time_1_ms": st.get("ResponseTime1(C)")}


def run_call_step(args, target, uac_inj: list[Path], sizes: list[int], total_rate: float,
                  calls_total: int, step_dir: Path) -> dict:
    procs_n = len(uac_inj)
    other_before = rs.wait_quiet(args, target) if args.quiet_wait > 0 else None
    step_dir.mkdir(parents=True, exist_ok=True)
    rate_k = total_rate / procs_n
    duration = calls_total / total_rate
    hold = args.hold_ms / 1000
    calls = [calls_total * (k + 1) // procs_n - calls_total * k // procs_n for k in range(procs_n)]
    for k in range(procs_n):
        if rate_k * (hold + 0.5) > sizes[k]:
            log(f"  warning: {sizes[k]} callers per SIPp process at {rate_k:.0f}/s with "
                f"{args.hold_ms} ms hold: a caller may be in two calls at once")
    cpu0 = target.cpu_seconds()
    threads0 = rs.thread_cpu_seconds(target.proc.pid)
    all0 = rs.all_cpu_ticks()
    udp0 = rs.udp_counters()
    drops0 = rs.socket_drops(target.port)
    t0 = time.monotonic()
    popens: dict[str, subprocess.Popen] = {}
    try:
        for k in range(procs_n):
            cmd = ["sipp", "-sf", str(UAS), "-p", str(target.ports.callee + k), "-m", str(calls[k]),
                   "-timeout", f"{int(duration + hold + args.recv_timeout_ms / 1000 + 60)}s",
                   *sipp_common(args, step_dir / f"uas-{k}.csv", step_dir / f"uas-{k}-errors.log",
                                target.ports.media + 100 + k * 4)]
            popens[f"uas-{k}"] = start(cmd, step_dir, step_dir / f"uas-{k}.stderr")
        time.sleep(0.3)  # the UAS sockets are bound before the first INVITE
        for k in range(procs_n):
            cmd = ["sipp", f"{HOST}:{target.port}", "-sf", str(UAC), "-inf", str(uac_inj[k]),
                   "-p", str(target.ports.caller + k), "-r", f"{rate_k:.3f}", "-rp", "1000",
                   "-m", str(calls[k]), "-d", str(args.hold_ms),
                   "-l", str(max(200, int(rate_k * (hold + args.max_inflight_seconds)))),
                   "-timeout", f"{int(duration + hold + args.recv_timeout_ms / 1000 + 30)}s",
                   *sipp_common(args, step_dir / f"uac-{k}.csv", step_dir / f"uac-{k}-errors.log",
                                target.ports.media + k * 4)]
            if k == 0:
                uac_example = " ".join(cmd)
            popens[f"uac-{k}"] = start(cmd, step_dir, step_dir / f"uac-{k}.stderr")
        # Callers first (they end on their own), then the callees get a grace period.
        uac = {n: p for n, p in popens.items() if n.startswith("uac")}
        waited = reap(uac, time.monotonic() + duration + hold + args.recv_timeout_ms / 1000 + 40)
        uas = {n: p for n, p in popens.items() if n.startswith("uas")}
        waited.update(reap(uas, time.monotonic() + args.recv_timeout_ms / 1000 + 5))
    finally:
        for p in popens.values():
            if p.returncode is None:
                rs.kill_group(p, grace=2)
    wall = time.monotonic() - t0
    cpu1 = target.cpu_seconds()
    threads1 = rs.thread_cpu_seconds(target.proc.pid)
    udp1 = rs.udp_counters()
    drops = rs.socket_drops(target.port) - drops0
    others = rs.other_cpu_seconds(all0, rs.all_cpu_ticks(),
                                  {target.proc.pid} | {p.pid for p in popens.values()})

    sides: dict[str, dict] = {}
    for name in popens:
        s = sipp_side(step_dir / f"{name}.csv")
        if not s:
            raise BenchError(f"SIPp {name} wrote no statistics (see {step_dir}/{name}.stderr: "
                             f"{(step_dir / f'{name}.stderr').read_text()[-500:]})")
        s.update(rc=waited.get(name, {}).get("rc"), cpu_seconds=waited.get(name, {}).get("cpu"),
                 killed=waited.get(name, {}).get("killed", False))
        sides[name] = s
    uacs = [s for n, s in sides.items() if n.startswith("uac")]
    uass = [s for n, s in sides.items() if n.startswith("uas")]
    succ = sum(s["successful"] for s in uacs)
    failed = sum(s["failed"] for s in uacs)
    callee_ok = sum(s["successful"] for s in uass)
    callee_failed = sum(s["failed"] for s in uass)
    unfinished = sum(max(0, c - s["successful"] - s["failed"]) for c, s in zip(calls, uacs))
    retrans_uac = sum(s["retransmissions"] for s in uacs)
    retrans_uas = sum(s["retransmissions"] for s in uass)
    retrans = retrans_uac + retrans_uas
    # Achieved rate: successful calls over the time the callers spent creating them (the
    # caller's elapsed time minus the hold of the last call; setup and BYE are included,
    # so a target that answers slowly shows a lower rate).
    achieved = sum(s["successful"] / max(s["elapsed"] - hold, 1e-3) for s in uacs)
    target_cpu = cpu1 - cpu0
    uac_cpu = sum(s["cpu_seconds"] or 0 for s in uacs)
    uas_cpu = sum(s["cpu_seconds"] or 0 for s in uass)
    per = (lambda x: round(1e6 * x / succ, 1) if succ else None)
    step = {
        "rate_asked": round(total_rate, 1),
        "calls_asked": calls_total,
        "hold_ms": args.hold_ms,
        "successful": succ,
        "failed": failed,
        "unfinished": unfinished,
        "callee_successful": callee_ok,
        "callee_failed": callee_failed,
        "retransmissions": retrans,
        "retransmissions_caller": retrans_uac,
        "retransmissions_callee": retrans_uas,
        "retransmission_pct": round(100 * retrans / max(1, succ + failed), 3),
        "unexpected_messages": sum(s["unexpected"] for s in sides.values()),
        "rate_achieved": round(achieved, 1),
        "wall_seconds": round(wall, 2),
        "target_cpu_seconds": round(target_cpu, 3),
        "target_cpu_us_per_call": per(target_cpu),
        "target_cpu_s_per_10k": round(1e4 * target_cpu / succ, 3) if succ else None,
        "target_cores_used": round(target_cpu / wall, 2),
        "target_thread_cores": {k: round((threads1.get(k, 0) - v) / wall, 3)
                                for k, v in threads0.items() if threads1.get(k, 0) - v > 0},
        "sipp_cpu_seconds": round(uac_cpu + uas_cpu, 3),
        "sipp_cpu_us_per_call": per(uac_cpu + uas_cpu),
        "sipp_caller_cpu_us_per_call": per(uac_cpu),
        "sipp_callee_cpu_us_per_call": per(uas_cpu),
        "sipp_cores_used": round((uac_cpu + uas_cpu) / wall, 2),
        "udp_rcvbuf_errors": udp1.get("RcvbufErrors", 0) - udp0.get("RcvbufErrors", 0),
        "udp_drops_target_socket": drops,
        "other_cores_used": round(others / wall, 2),
        "other_cores_before_step": None if other_before is None else round(other_before, 2),
        "sipp": sides,
        "sipp_caller_command_example": uac_example,
    }
    reasons = []
    if failed or callee_failed:
        bd = rs.sum_dicts(s["failed_breakdown"] for s in sides.values())
        reasons.append(f"{failed} failed calls (callee side {callee_failed}) {bd}")
    if unfinished:
        reasons.append(f"{unfinished} unfinished")
    if callee_ok != succ and not (failed or callee_failed):
        reasons.append(f"callees completed {callee_ok} calls, callers {succ}")
    if retrans >= rs.MAX_RETRANS_FRACTION * max(1, succ + failed):
        reasons.append(f"retransmissions {step['retransmission_pct']} % >= 1 %")
    if achieved < rs.MIN_ACHIEVED_FRACTION * total_rate:
        reasons.append(f"achieved {achieved:.0f}/s < 95 % of {total_rate:.0f}/s")
    if any(s["rc"] != 0 for s in sides.values()) and not reasons:
        reasons.append(f"SIPp exit codes { {n: s['rc'] for n, s in sides.items()} }")
    if not target.alive():
        reasons.append("target died")
    step["passed"] = not reasons
    step["fail_reasons"] = reasons
    return step


def fmt_step(s: dict) -> str:
    verdict = "ok  " if s["passed"] else "FAIL"
    line = (f"  {verdict} asked {s['rate_asked']:>6.0f}/s  got {s['rate_achieved']:>6.0f}/s  "
            f"ok {s['successful']:>6}  failed {s['failed']:>4}+{s['callee_failed']}  "
            f"retrans {s['retransmission_pct']:>5.2f} %  "
            f"target CPU {s['target_cpu_us_per_call'] or 0:>6.1f} us/call ({s['target_cores_used']:.2f} cores)  "
            f"SIPp {s['sipp_cpu_us_per_call'] or 0:>6.1f} us/call ({s['sipp_cores_used']:.2f} cores)  "
            f"others {s['other_cores_used']:.2f}  udp drops {s['udp_rcvbuf_errors']}"
            f" ({s['udp_drops_target_socket']} at the target)")
    if s["fail_reasons"]:
        line += "  <- " + "; ".join(s["fail_reasons"])
    after = s.get("target_after_step")
    if after:
        line += "\n         after: " + json.dumps(after, separators=(",", ":"))
    return line


# --------------------------------------------------------------------------------------
# One target's run
# --------------------------------------------------------------------------------------

class CallRun(rs.TargetRun):
    def __init__(self, args, target, workdir, uac_inj, reg_inj, sizes):
        super().__init__(args, target, workdir, uac_inj)
        self.reg_inj, self.sizes = reg_inj, sizes
        self.last_failed = False
        if not args.rates:
            self.rates = [float(r) for r in range(int(args.start_rate), int(args.max_rate) + 1,
                                                  int(args.rate_step))]

    def next_step(self):
        nxt = super().next_step()
        if nxt and nxt[1] == "refine":
            nxt = (round(nxt[0] / 25) * 25, "refine")
        return nxt

    def prepare(self) -> None:
        args, target, res = self.args, self.target, self.res
        log(f"\n== {target.name}: starting")
        target.start()
        res["info"] = target.info
        res["label"] = target.label
        log(f"  listening on udp:{HOST}:{target.port}  ({target.info.get('version', '')})")
        res["preflight"] = rs.preflight(target.name, target.port, target.users, want_sha256=False)
        log("  pre-flight: right secret -> 200, wrong secret -> "
            f"{res['preflight']['md5_wrong_secret'].get('status')}")
        log(f"  registering {sum(self.sizes)} callees from {len(self.reg_inj)} SIPp ports")
        res["callee_registration"] = register_callees(args, target, self.reg_inj,
                                                      self.workdir / target.name / "register")
        res["memory_loaded"] = target.memory()
        time.sleep(1.0)

    def drain(self, everything: bool) -> None:
        """Waits (up to --step-drain) until the previous step's calls are gone; after a
        failed step also its retransmitting transactions, whose late requests would
        otherwise reach the next step's callee SIPp as new calls and shift its -m."""
        end = time.monotonic() + self.args.step_drain
        while self.target.alive() and self.target.still_busy(everything) > 0:
            if time.monotonic() > end:
                log(f"  ({self.target.name}: still busy after {self.args.step_drain:.0f} s)")
                return
            time.sleep(0.5)

    def measure(self, rate: float, phase: str) -> dict:
        args, target = self.args, self.target
        attempts = []
        for attempt in range(args.noise_retries + 1):
            self.drain(everything=self.last_failed)
            time.sleep(args.settle + (2 if attempts else 0))
            step = run_call_step(args, target, self.inj, self.sizes, rate, int(rate * args.duration),
                                 self.workdir / target.name / f"step-{int(rate)}-{phase}-{attempt}")
            step["phase"] = phase
            step["target_after_step"] = target.after_step() if target.alive() else None
            log(fmt_step(step))
            attempts.append(step)
            if step["passed"] or step["other_cores_used"] <= args.noise_threshold or not target.alive():
                break
            log(f"  (other processes used {step['other_cores_used']:.2f} cores during that step: "
                "running it again)")
        final = attempts[-1]
        self.last_failed = not final["passed"]
        if len(attempts) > 1:
            final["noisy_attempts"] = attempts[:-1]
        return final

    def finish(self) -> dict:
        res, target, best = self.res, self.target, self.best
        res["best"] = best
        fails = [st["rate_asked"] for st in res["steps"] if not st["passed"]]
        res["lowest_failing_rate"] = min(fails) if fails else None
        res["memory_final"] = target.memory()
        res["seconds"] = round(time.monotonic() - self.t_start, 1)
        all_steps = [s for st in res["steps"] for s in [*st.get("noisy_attempts", []), st]]
        res["calls_successful_total"] = sum(s["successful"] for s in all_steps)
        res["calls_created_total"] = sum(v["created"] for s in all_steps
                                         for n, v in s["sipp"].items() if n.startswith("uac"))
        res["after_run"] = self.after_run()
        if best is None:
            log(f"  {target.name}: no step passed")
        else:
            log(f"  {target.name}: highest sustained rate {best['rate_achieved']:.0f} calls/s "
                f"(asked {best['rate_asked']:.0f}/s), target CPU {best['target_cpu_s_per_10k']} s "
                f"per 10k = {best['target_cpu_us_per_call']} us/call")
        return res

    def after_run(self) -> dict:
        """Switchboard: CDR rows = successful calls, and calls/transactions back to 0
        (non-INVITE server transactions live 64*T1 = 32 s after their reply, so wait up
        to --drain-wait). Kamailio: tm's transaction counters."""
        target, res = self.target, self.res
        if not target.alive():
            return {"error": "target not running"}
        end = time.monotonic() + self.args.drain_wait
        if isinstance(target, SwitchboardCalls):
            log(f"  {target.name}: waiting for calls, transactions and CDRs to settle ...")
            while True:
                m = target.metrics()
                cdr = target.cdr_rows()
                rtp = unaccounted_sockets(target.rtp_sockets(), m)
                calls, txs = m.get("switchboard_calls_active"), m.get("switchboard_sip_transactions")
                # A gauge missing from /metrics (see README) cannot be waited for.
                if (calls in (0, None) and txs in (0, None) and rtp == 0
                        and cdr == res["calls_successful_total"]) or time.monotonic() > end:
                    break
                time.sleep(1)
            out = {"cdr_rows": cdr, "calls_successful_total": res["calls_successful_total"],
                   "calls_created_total": res["calls_created_total"],
                   "cdr_rows_equal_successful_calls": cdr == res["calls_successful_total"],
                   "switchboard_calls_active": calls, "switchboard_sip_transactions": txs,
                   "metrics_back_to_zero": None if calls is None or txs is None else calls == 0 and txs == 0,
                   "metrics_missing": [k for k in ("switchboard_calls_active", "switchboard_sip_transactions",
                                                   "switchboard_media_sessions") if k not in m],
                   "rtp_sockets_beyond_idle_pairs": rtp,
                   "idle_port_pairs": m.get("switchboard_media_idle_port_pairs"),
                   "seconds_waited": round(self.args.drain_wait - max(0, end - time.monotonic()), 1),
                   "metrics": m}
            log(f"  {target.name}: CDR rows {cdr} for {res['calls_successful_total']} successful calls "
                f"({res['calls_created_total']} created); calls_active {calls}, "
                f"sip_transactions {txs}, relay sockets open beyond its idle pairs {rtp}"
                + (f"; missing from /metrics: {out['metrics_missing']}" if out["metrics_missing"] else ""))
            return out
        while True:
            tm = target.tm_stats()
            if tm.get("current", 1) == 0 or time.monotonic() > end:
                break
            time.sleep(1)
        log(f"  {target.name}: tm.stats {tm}")
        return {"tm": tm, "shm": target.memory()}


def run_interleaved(runs: list[CallRun]) -> None:
    active = list(runs)
    while active:
        for run in list(active):
            nxt = run.next_step()
            if nxt is None:
                active.remove(run)
                continue
            rate, phase = nxt
            log(f"  [{run.target.name}] {rate:.0f} calls/s ({phase})")
            run.record(run.measure(rate, phase))


# --------------------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------------------

def common_rate(results: dict) -> tuple[float | None, dict]:
    ok = {n: {s["rate_asked"]: s for s in r.get("steps", []) if s["passed"]}
          for n, r in results.items()}
    if len(ok) < 2:
        return None, {}
    common = set.intersection(*(set(v) for v in ok.values()))
    if not common:
        return None, {}
    rate = max(common)
    return rate, {n: ok[n][rate] for n in ok}


def print_table(results: dict, args) -> str:
    num, ratio = rs.num, rs.ratio
    k, s = results.get("kamailio", {}), results.get("switchboard", {})
    kb, sb = k.get("best") or {}, s.get("best") or {}
    head = ["", k.get("label") or "Kamailio", s.get("label") or "Switchboard", "SB/Kam", "target"]
    rows = [["highest sustained rate (calls/s)", num(kb.get("rate_achieved")), num(sb.get("rate_achieved")),
             ratio(sb.get("rate_achieved"), kb.get("rate_achieved")), "more"],
            ["  asked rate of that step", num(kb.get("rate_asked")), num(sb.get("rate_asked")), "", ""],
            ["  lowest failing rate", num(k.get("lowest_failing_rate")), num(s.get("lowest_failing_rate")), "", ""],
            ["target CPU us per call (at its max)", num(kb.get("target_cpu_us_per_call"), "{:.1f}"),
             num(sb.get("target_cpu_us_per_call"), "{:.1f}"),
             ratio(sb.get("target_cpu_us_per_call"), kb.get("target_cpu_us_per_call")), "<= x0.5"],
            ["target CPU-s per 10k calls (at its max)", num(kb.get("target_cpu_s_per_10k"), "{:.2f}"),
             num(sb.get("target_cpu_s_per_10k"), "{:.2f}"), "", ""]]
    crate, cs = common_rate(results)
    if crate:
        kc, sc = cs["kamailio"], cs["switchboard"]
        rows.append([f"target CPU us per call at {crate:,.0f}/s (both)", num(kc["target_cpu_us_per_call"], "{:.1f}"),
                     num(sc["target_cpu_us_per_call"], "{:.1f}"),
                     ratio(sc["target_cpu_us_per_call"], kc["target_cpu_us_per_call"]), "<= x0.5"])
        rows.append([f"target CPU-s per 10k calls at {crate:,.0f}/s", num(kc["target_cpu_s_per_10k"], "{:.2f}"),
                     num(sc["target_cpu_s_per_10k"], "{:.2f}"), "", ""])
        rows.append([f"SIPp CPU us per call at {crate:,.0f}/s", num(kc["sipp_cpu_us_per_call"], "{:.1f}"),
                     num(sc["sipp_cpu_us_per_call"], "{:.1f}"), "", ""])
    rows += [["SIPp CPU us per call (at max)", num(kb.get("sipp_cpu_us_per_call"), "{:.1f}"),
              num(sb.get("sipp_cpu_us_per_call"), "{:.1f}"), "", ""],
             ["target cores / SIPp cores at max",
              f"{num(kb.get('target_cores_used'), '{:.2f}')} / {num(kb.get('sipp_cores_used'), '{:.2f}')}",
              f"{num(sb.get('target_cores_used'), '{:.2f}')} / {num(sb.get('sipp_cores_used'), '{:.2f}')}", "", ""],
             ["other processes, cores, at max", num(kb.get("other_cores_used"), "{:.2f}"),
              num(sb.get("other_cores_used"), "{:.2f}"), "", ""]]
    ar = s.get("after_run") or {}
    if ar:
        rows.append(["Switchboard CDR rows / successful calls", "",
                     f"{num(ar.get('cdr_rows'))} / {num(ar.get('calls_successful_total'))}", "", "equal"])
        rows.append(["Switchboard calls_active, sip_transactions, RTP sockets after (not idle)", "",
                     f"{num(ar.get('switchboard_calls_active'))}, {num(ar.get('switchboard_sip_transactions'))}, "
                     f"{num(ar.get('rtp_sockets_beyond_idle_pairs'))}", "", "0, 0, 0"])
    widths = [max(len(str(r[i])) for r in rows + [head]) for i in range(5)]
    lines = [f"call-storm: {args.pairs:,} callers -> {args.pairs:,} callees, {args.sipp_pairs} caller + "
             f"{args.sipp_pairs} callee SIPp processes, hold {args.hold_ms} ms, {args.duration:g} s steps; "
             "pass = 0 failed calls, < 1 % retransmissions, >= 95 % of the asked rate",
             "  ".join(str(h).ljust(widths[i]) if i == 0 else str(h).rjust(widths[i]) for i, h in enumerate(head)),
             "  ".join("-" * w for w in widths)]
    for r in rows:
        lines.append("  ".join(str(c).ljust(widths[i]) if i == 0 else str(c).rjust(widths[i])
                               for i, c in enumerate(r)))
    for name, r in results.items():
        if r.get("error"):
            lines.append(f"{name}: {r['error']}")
    text = "\n".join(lines)
    print("\n" + text, flush=True)
    return text


# --------------------------------------------------------------------------------------
# Main
# --------------------------------------------------------------------------------------

def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--targets", default="kamailio,switchboard")
    ap.add_argument("--rates", help="explicit total rates (calls/s), e.g. 200,400,600; "
                                    "default: start-rate, +rate-step, … until a step fails, then bisection")
    ap.add_argument("--start-rate", type=float, default=400)
    ap.add_argument("--rate-step", type=float, default=400)
    ap.add_argument("--max-rate", type=float, default=8000)
    ap.add_argument("--refine", type=int, default=2,
                    help="bisection steps between the last passing and first failing rate")
    ap.add_argument("--duration", type=float, default=10, help="seconds of new calls per step")
    ap.add_argument("--hold-ms", type=int, default=500, help="pause between the ACK and the BYE")
    ap.add_argument("--settle", type=float, default=1.0)
    ap.add_argument("--step-drain", type=float, default=40,
                    help="before a step, wait up to this long for the last step's calls to end "
                         "(after a failed step: also its transactions, 64*T1 = 32 s)")
    ap.add_argument("--pairs", type=int, default=4000, help="callers (and as many callees)")
    ap.add_argument("--sipp-pairs", type=int, default=2,
                    help="caller SIPp processes (and as many callee SIPp processes)")
    ap.add_argument("--caller-base-port", type=int, default=16060)
    ap.add_argument("--callee-base-port", type=int, default=17060)
    ap.add_argument("--media-base-port", type=int, default=6000,
                    help="SIPp -mp of each process (kept apart so that none collides); each "
                         "target's SIPp ports are these bases + 500 x its place in --targets")
    ap.add_argument("--sipp-buff-size", type=int, default=4194304)
    ap.add_argument("--register-rate", type=float, default=500)
    ap.add_argument("--recv-timeout-ms", type=int, default=6000)
    ap.add_argument("--max-inflight-seconds", type=float, default=3.0,
                    help="SIPp -l = rate per process x (hold + this)")
    ap.add_argument("--kamailio-port", type=int, default=5080)
    ap.add_argument("--kamailio-children", type=int, default=2)
    ap.add_argument("--kamailio-shm-mb", type=int, default=1024,
                    help="Kamailio shared memory (-m): tm keeps every transaction 5 s after it ends; "
                         "256 MB ran out at 1,600 calls/s")
    ap.add_argument("--switchboard-port", type=int, default=5070)
    ap.add_argument("--switchboard-http-port", type=int, default=18080)
    ap.add_argument("--switchboard-bin", default=str(DEFAULT_BIN if DEFAULT_BIN.exists() else rs.SWITCHBOARD_BIN))
    ap.add_argument("--switchboard-log-level", default="warn")
    ap.add_argument("--switchboard-digest", default="MD5")
    ap.add_argument("--rtp-port-min", type=int, default=20000,
                    help="Switchboard rtp.port_min (clear of SIPp's ports 6000+, 16060+, 17060+ and "
                         "their second target's blocks; the "
                         "range is wide so that ports, not CPU, are not the limit: see README)")
    ap.add_argument("--rtp-port-max", type=int, default=59999)
    ap.add_argument("--drain-wait", type=float, default=60,
                    help="after the run, wait up to this long for calls/transactions to reach 0")
    rs.add_noise_args(ap, noise_retries=1)
    ap.add_argument("--keep", action="store_true")
    ap.add_argument("--out")
    ap.set_defaults(factor=2.0)  # run.py's ladder() reads it; call-storm's ramp is linear
    args = ap.parse_args()

    targets = [t.strip() for t in args.targets.split(",") if t.strip()]
    for t in targets:
        if t not in ("kamailio", "switchboard"):
            ap.error(f"unknown target {t!r}")
    if not shutil.which("sipp"):
        print("sipp not found: apt-get install -y sip-tester", file=sys.stderr)
        return 2
    if args.sipp_pairs > PORT_BLOCK // 2:
        ap.error(f"--sipp-pairs above {PORT_BLOCK // 2}: the targets' SIPp ports would overlap")
    for p in [p for i in range(len(targets)) for p in SippPorts.of(args, i).all(args.sipp_pairs)]:
        if not rs.udp_port_free(p):
            print(f"UDP port {p} (SIPp) is in use", file=sys.stderr)
            return 2

    signal.signal(signal.SIGTERM, rs._sigterm)
    started = dt.datetime.now(dt.timezone.utc)
    workdir = Path(tempfile.mkdtemp(prefix="sb-bench-call-storm-"))
    log(f"work directory: {workdir}")
    users = rs.make_users(2 * args.pairs)
    callers, callees = users[:args.pairs], users[args.pairs:]
    rs.write_users_csv(users, workdir / "users.csv")
    uac_inj, reg_inj, sizes = write_inj(workdir, callers, callees, args.sipp_pairs)

    report: dict = {"bench": "call-storm", "started_utc": started.isoformat(timespec="seconds"),
                    "machine": rs.machine_info(), "parameters": vars(args),
                    "criteria": {"failed": 0, "retransmissions_per_call_below": rs.MAX_RETRANS_FRACTION,
                                 "achieved_rate_at_least": rs.MIN_ACHIEVED_FRACTION},
                    "results": {}}
    rc = 0
    runs: list[CallRun] = []
    try:
        try:
            for index, name in enumerate(targets):
                cls = KamailioCalls if name == "kamailio" else SwitchboardCalls
                target = cls(args, workdir, users)
                target.ports = SippPorts.of(args, index)
                run = CallRun(args, target, workdir, uac_inj, reg_inj, sizes)
                try:
                    run.prepare()
                    runs.append(run)
                except BenchError as e:
                    log(f"\n{name}: {e}")
                    report["results"][name] = {"target": name, "error": str(e), "info": target.info}
                    rc = 1
                    rs.stop_target(target)
            if runs:
                try:
                    run_interleaved(runs)
                except BenchError as e:
                    log(f"\n{e}")
                    rc = 1
                for run in runs:
                    try:
                        report["results"][run.target.name] = run.finish()
                    except BenchError as e:
                        run.res["error"] = str(e)
                        report["results"][run.target.name] = run.res
        finally:
            for run in runs:
                rs.stop_target(run.target)
    except KeyboardInterrupt:
        log("\ninterrupted: stopping everything")
        rc = 130
    finally:
        report["finished_utc"] = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
        if report["results"]:
            report["table"] = print_table(report["results"], args)
            res = report["results"]
            kb = (res.get("kamailio") or {}).get("best") or {}
            sb = (res.get("switchboard") or {}).get("best") or {}
            if kb and sb:
                report["ratios"] = {
                    "rate_sb_over_kamailio": round(sb["rate_achieved"] / kb["rate_achieved"], 3),
                    "cpu_per_call_at_max_sb_over_kamailio":
                        round(sb["target_cpu_us_per_call"] / kb["target_cpu_us_per_call"], 3),
                    "targets": {"rate": "> 1 (more)", "cpu": "<= 0.5"}}
                crate, cs = common_rate(res)
                if crate:
                    report["ratios"]["common_rate"] = crate
                    report["ratios"]["cpu_per_call_at_common_rate_sb_over_kamailio"] = round(
                        cs["switchboard"]["target_cpu_us_per_call"] / cs["kamailio"]["target_cpu_us_per_call"], 3)
            rs.save_report(report, args.out, started, "call-storm")
        rs.finish_workdir(workdir, keep=bool(args.keep or rc))
    return rc


if __name__ == "__main__":
    sys.exit(main())
