#!/usr/bin/env python3
"""Switchboard benchmarks (spec 13-quality.md, "Benchmarks"). Python 3.11, stdlib only.

    python3 bench/run.py reg-storm [--targets kamailio,switchboard] [--duration 10]
                                   [--sipp-procs 3] [--users 10000] [--rates 2000,4000,...]
                                   [--no-build] [--self-check]

reg-storm: 10,000 users registering with digest auth (SIPp, MD5, qop=auth, UDP on loopback)
at rising rates against each target in turn, in the same run: Kamailio (bench/kamailio/
kamailio.cfg, in-memory htable credentials + in-memory usrloc) and Switchboard (release
build, the same users imported with `switchboard extension import`). For each target it
prints the highest rate with zero failed registrations and < 1 % retransmissions, the
target's CPU-seconds per 10,000 registrations, and (Switchboard) resident memory per
binding; then one table with both and the Switchboard/Kamailio ratios. Everything is also
written to bench/results/<UTC date>-reg-storm.json.

See bench/README.md for what each figure means.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import hashlib
import json
import os
import platform
import re
import secrets
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field, asdict
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
REPO_DIR = BENCH_DIR.parent
RESULTS_DIR = BENCH_DIR / "results"
SCENARIO = BENCH_DIR / "sipp" / "reg_digest.xml"
KAMAILIO_CFG = BENCH_DIR / "kamailio" / "kamailio.cfg"
CARGO_TARGET_DIR = Path(os.environ.get("SWITCHBOARD_TARGET_DIR",
                                       Path.home() / ".cache" / "switchboard-target"))
SWITCHBOARD_BIN = CARGO_TARGET_DIR / "release" / "switchboard"

REALM = "bench.example"
HOST = "127.0.0.1"
CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")

# Pass criteria of one step.
MAX_RETRANS_FRACTION = 0.01      # retransmissions / registrations
MIN_ACHIEVED_FRACTION = 0.95     # successful registrations per second / asked rate


class BenchError(Exception):
    """A failure with a message meant for the reader (no traceback)."""


def log(msg: str) -> None:
    print(msg, flush=True)


def save_report(report: dict, out: str | None, started: dt.datetime, bench: str) -> Path:
    """Writes a run's JSON to `out`, or results/<UTC start>-<bench>.json, and says where."""
    RESULTS_DIR.mkdir(exist_ok=True)
    path = Path(out) if out else RESULTS_DIR / f"{started.strftime('%Y-%m-%dT%H%M%SZ')}-{bench}.json"
    path.write_text(json.dumps(report, indent=2) + "\n")
    log(f"\nresults: {path}")
    return path


def finish_workdir(workdir: Path, keep: bool) -> None:
    """Keeps the work directory (asked for, or the run failed) or removes it."""
    if keep:
        log(f"work directory kept: {workdir}")
    else:
        shutil.rmtree(workdir, ignore_errors=True)


# --------------------------------------------------------------------------------------
# Users
# --------------------------------------------------------------------------------------

@dataclass
class User:
    number: str
    secret: str

    def ha1_md5(self, realm: str = REALM) -> str:
        return hashlib.md5(f"{self.number}:{realm}:{self.secret}".encode()).hexdigest()


def make_users(count: int, first: int = 200000) -> list[User]:
    """Deterministic users (same secrets on every run, so runs are comparable)."""
    users = []
    for i in range(count):
        n = first + i
        tag = hashlib.sha256(f"switchboard-bench-{n}".encode()).hexdigest()[:10]
        users.append(User(str(n), f"pw-{n}-{tag}"))
    return users


def write_users_csv(users: list[User], path: Path) -> None:
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["number", "name", "sip_secret"])
        for u in users:
            w.writerow([u.number, f"Bench {u.number}", u.secret])


def write_injection_files(users: list[User], procs: int, workdir: Path) -> list[Path]:
    """One SEQUENTIAL injection file per SIPp process, each with its own contiguous slice
    of the users, so that two processes never register the same user at the same time."""
    paths = []
    n = len(users)
    for k in range(procs):
        part = users[k * n // procs:(k + 1) * n // procs]
        p = workdir / f"users-{k}.inf"
        with p.open("w") as f:
            f.write("SEQUENTIAL\n")
            for u in part:
                f.write(f"{u.number};{u.secret};{REALM}\n")
        paths.append(p)
    return paths


# --------------------------------------------------------------------------------------
# /proc helpers
# --------------------------------------------------------------------------------------

def _proc_stat(pid: int) -> list[str] | None:
    try:
        data = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # comm may contain spaces and parentheses: split after the last ')'.
    rest = data[data.rindex(")") + 2:].split()
    return rest  # rest[0] = state (field 3), rest[2] = pgrp (field 5), rest[11] = utime


def group_pids(pgid: int) -> list[int]:
    pids = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            st = _proc_stat(int(d))
            if st and int(st[2]) == pgid:
                pids.append(int(d))
    return pids


def group_cpu_seconds(pgid: int) -> float:
    """utime + stime (+ reaped children) of every process in the process group."""
    ticks = 0
    for pid in group_pids(pgid):
        st = _proc_stat(pid)
        if st:
            ticks += int(st[11]) + int(st[12]) + int(st[13]) + int(st[14])
    return ticks / CLK_TCK


def thread_cpu_seconds(pid: int) -> dict[str, float]:
    """CPU seconds of each thread of `pid`, summed by thread name (tokio workers,
    the SQLite worker, ...), to see where a target spends its time."""
    out: dict[str, float] = {}
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return out
    for tid in tids:
        try:
            data = Path(f"/proc/{pid}/task/{tid}/stat").read_text()
        except OSError:
            continue
        name = data[data.index("(") + 1:data.rindex(")")]
        rest = data[data.rindex(")") + 2:].split()
        out[name] = out.get(name, 0.0) + (int(rest[11]) + int(rest[12])) / CLK_TCK
    return out


def rss_bytes(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def all_cpu_ticks() -> dict[int, tuple[int, int]]:
    """pid -> (pgrp, utime+stime+cutime+cstime) of every process on the machine."""
    out = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            st = _proc_stat(int(d))
            if st:
                out[int(d)] = (int(st[2]), int(st[11]) + int(st[12]) + int(st[13]) + int(st[14]))
    return out


def other_cpu_seconds(before: dict, after: dict, exclude_pgids: set[int]) -> float:
    """CPU used between two all_cpu_ticks() snapshots by processes outside exclude_pgids
    (and outside this runner, whose reaped children are the SIPp processes)."""
    me = os.getpid()
    ticks = 0
    for pid, (pgrp, t) in after.items():
        if pgrp in exclude_pgids or pid == me:
            continue
        ticks += t - before.get(pid, (pgrp, 0))[1] if pid in before else t
    return max(0, ticks) / CLK_TCK


def udp_counters() -> dict[str, int]:
    lines = [l.split() for l in Path("/proc/net/snmp").read_text().splitlines() if l.startswith("Udp:")]
    return {k: int(v) for k, v in zip(lines[0][1:], lines[1][1:])}


def socket_drops(port: int) -> int:
    """Datagrams the kernel dropped on the UDP sockets bound to `port` (the `drops`
    column of /proc/net/udp{,6}): the target's own share of the receive-buffer drops."""
    total = 0
    for name in ("/proc/net/udp", "/proc/net/udp6"):
        try:
            lines = Path(name).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            f = line.split()
            if len(f) >= 13 and int(f[1].rsplit(":", 1)[1], 16) == port:
                total += int(f[12])
    return total


def machine_cpu() -> tuple[float, float]:
    """(busy, total) jiffies of the whole machine, from /proc/stat."""
    parts = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    vals = [int(x) for x in parts]
    idle = vals[3] + (vals[4] if len(vals) > 4 else 0)
    total = sum(vals[:8])
    return total - idle, total


def udp_port_free(port: int) -> bool:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        s.bind((HOST, port))
        return True
    except OSError:
        return False
    finally:
        s.close()


def wait_port_free(port: int, timeout: float = 10.0) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if udp_port_free(port):
            return
        time.sleep(0.2)
    raise BenchError(f"UDP port {HOST}:{port} is in use (another SIP server running?)")


def kill_group(proc: subprocess.Popen | None, grace: float = 5.0) -> None:
    """SIGTERM then SIGKILL the process group that `proc` leads (started with
    start_new_session=True, so its pgid is its pid)."""
    if proc is None:
        return
    pgid = proc.pid
    try:
        os.killpg(pgid, signal.SIGTERM)
    except ProcessLookupError:
        pass
    end = time.monotonic() + grace
    while time.monotonic() < end:
        if proc.poll() is not None and not group_pids(pgid):
            return
        time.sleep(0.1)
    try:
        os.killpg(pgid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        pass


# --------------------------------------------------------------------------------------
# A tiny SIP digest client for the pre-flight checks (not for load)
# --------------------------------------------------------------------------------------

def _sip_request(sock: socket.socket, port: int, user: str, cseq: int, call_id: str,
                 auth: str = "") -> None:
    lport = sock.getsockname()[1]
    msg = (f"REGISTER sip:{REALM} SIP/2.0\r\n"
           f"Via: SIP/2.0/UDP {HOST}:{lport};branch=z9hG4bK{secrets.token_hex(8)};rport\r\n"
           f"Max-Forwards: 70\r\n"
           f"From: <sip:{user}@{REALM}>;tag={secrets.token_hex(4)}\r\n"
           f"To: <sip:{user}@{REALM}>\r\n"
           f"Call-ID: {call_id}\r\n"
           f"CSeq: {cseq} REGISTER\r\n"
           f"Contact: <sip:{user}@{HOST}:{lport}>\r\n"
           f"Expires: 3600\r\n"
           f"{auth}"
           f"User-Agent: switchboard-bench-preflight\r\n"
           f"Content-Length: 0\r\n\r\n")
    sock.sendto(msg.encode(), (HOST, port))


def _sip_response(sock: socket.socket, timeout: float) -> str | None:
    end = time.monotonic() + timeout
    while True:
        left = end - time.monotonic()
        if left <= 0:
            return None
        sock.settimeout(left)
        try:
            data, _ = sock.recvfrom(65535)
        except (socket.timeout, OSError):
            return None
        text = data.decode(errors="replace")
        if text.startswith("SIP/2.0 1"):
            continue  # provisional
        return text


def _status(resp: str | None) -> int | None:
    if not resp:
        return None
    m = re.match(r"SIP/2\.0 (\d{3})", resp)
    return int(m.group(1)) if m else None


def _challenges(resp: str) -> list[str]:
    return re.findall(r"(?im)^(?:WWW-Authenticate|Proxy-Authenticate)\s*:\s*(.*?)\s*$", resp)


def _param(challenge: str, name: str) -> str | None:
    m = re.search(rf'(?i)\b{name}\s*=\s*(?:"([^"]*)"|([^\s,]+))', challenge)
    return None if not m else (m.group(1) if m.group(1) is not None else m.group(2))


def digest_register(port: int, user: str, password: str, algorithm: str = "MD5",
                    timeout: float = 2.0) -> dict:
    """REGISTER, take the challenge for `algorithm`, answer it. Returns what happened."""
    out: dict = {"user": user, "algorithm": algorithm}
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        sock.bind((HOST, 0))
        call_id = secrets.token_hex(12) + "@bench"
        _sip_request(sock, port, user, 1, call_id)
        r1 = _sip_response(sock, timeout)
        out["first_status"] = _status(r1)
        if r1 is None:
            out["error"] = "no answer"
            return out
        chals = _challenges(r1)
        out["challenges"] = chals
        if out["first_status"] != 401 or not chals:
            out["error"] = f"expected 401 with WWW-Authenticate, got {r1.splitlines()[0]!r}"
            return out
        pick = [c for c in chals if (_param(c, "algorithm") or "MD5").upper() == algorithm]
        if not pick:
            out["error"] = f"no {algorithm} challenge offered"
            return out
        c = pick[0]
        realm, nonce = _param(c, "realm"), _param(c, "nonce")
        opaque, qop = _param(c, "opaque"), _param(c, "qop")
        h = (lambda s: hashlib.sha256(s.encode()).hexdigest()) if algorithm == "SHA-256" \
            else (lambda s: hashlib.md5(s.encode()).hexdigest())
        uri = f"sip:{REALM}"
        ha1 = h(f"{user}:{realm}:{password}")
        ha2 = h(f"REGISTER:{uri}")
        fields = [f'username="{user}"', f'realm="{realm}"', f'nonce="{nonce}"', f'uri="{uri}"',
                  f"algorithm={algorithm}"]
        if qop and "auth" in [q.strip() for q in qop.split(",")]:
            nc, cnonce = "00000001", secrets.token_hex(8)
            resp = h(f"{ha1}:{nonce}:{nc}:{cnonce}:auth:{ha2}")
            fields += ["qop=auth", f"nc={nc}", f'cnonce="{cnonce}"']
        else:
            resp = h(f"{ha1}:{nonce}:{ha2}")
        fields.append(f'response="{resp}"')
        if opaque is not None:
            fields.append(f'opaque="{opaque}"')
        _sip_request(sock, port, user, 2, call_id, "Authorization: Digest " + ", ".join(fields) + "\r\n")
        r2 = _sip_response(sock, timeout)
        out["status"] = _status(r2)
        if r2 is None:
            out["error"] = "no answer to the authenticated REGISTER"
        return out
    finally:
        sock.close()


def wait_sip_ready(port: int, proc: subprocess.Popen, timeout: float, name: str) -> str:
    """Poll with an unauthenticated REGISTER until a 401 arrives. Returns the 401."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if proc.poll() is not None:
            raise BenchError(f"{name} exited (status {proc.returncode}) before answering SIP")
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            sock.bind((HOST, 0))
            _sip_request(sock, port, "200000", 1, secrets.token_hex(12) + "@probe")
            r = _sip_response(sock, 0.5)
        finally:
            sock.close()
        if r is not None:
            return r
    raise BenchError(f"{name} did not answer REGISTER on udp:{HOST}:{port} within {timeout:.0f} s")


def preflight(name: str, port: int, users: list[User], want_sha256: bool) -> dict:
    """Correctness before load: the right secret gets 200, a wrong one 401/403, and the
    first challenge is one that SIPp 3.6 can answer (MD5)."""
    u = users[0]
    checks: dict = {}
    ok = digest_register(port, u.number, u.secret, "MD5")
    checks["md5_right_secret"] = ok
    if ok.get("status") != 200:
        raise BenchError(f"{name}: REGISTER with the right secret (MD5) did not get 200: {ok}")
    bad = digest_register(port, users[1].number, "wrong-secret-123", "MD5")
    checks["md5_wrong_secret"] = bad
    if bad.get("status") not in (401, 403):
        raise BenchError(f"{name}: REGISTER with a wrong secret got {bad.get('status')} (want 401/403)")
    if want_sha256:
        checks["sha256_right_secret"] = digest_register(port, u.number, u.secret, "SHA-256")
    first = (ok.get("challenges") or [""])[0]
    alg = (_param(first, "algorithm") or "MD5").upper()
    checks["first_challenge_algorithm"] = alg
    if alg != "MD5":
        raise BenchError(
            f"{name}: the first WWW-Authenticate of the 401 is algorithm={alg}. SIPp "
            f"{tool_version('sipp')} answers only the first challenge and only MD5 "
            "('createAuthHeader: authentication must use MD5 or AKAv1-MD5', fatal), so the "
            "load cannot run. List the MD5 challenge first (the SHA-256 one may follow), "
            f"or use a SIPp with SHA-256 support. 401 challenges: {ok.get('challenges')}")
    return checks


# --------------------------------------------------------------------------------------
# Targets
# --------------------------------------------------------------------------------------

class Target:
    name = "?"
    label = "?"

    def __init__(self, args, workdir: Path, users: list[User]):
        self.args = args
        self.workdir = workdir
        self.users = users
        self.proc: subprocess.Popen | None = None
        self.info: dict = {}

    @property
    def port(self) -> int:
        raise NotImplementedError

    def start(self) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        kill_group(self.proc)
        self.proc = None

    def cpu_seconds(self) -> float:
        return group_cpu_seconds(self.proc.pid) if self.proc else 0.0

    def memory(self) -> dict:
        return {}

    def bindings(self) -> dict:
        return {}

    def step_started(self) -> None:
        """Called when a measured step's load starts (the flooded variant starts its flood)."""

    def step_finished(self) -> dict:
        """Called when a step's load is over; what it returns goes into the step's figures."""
        return {}

    def helper_pgids(self) -> set[int]:
        """Process groups that belong to the target's load (not counted as noise)."""
        return set()

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log_tail(self, n: int = 25) -> str:
        p = getattr(self, "log_path", None)
        if not p or not Path(p).exists():
            return ""
        lines = Path(p).read_text(errors="replace").splitlines()
        return "\n".join(lines[-n:])


class Kamailio(Target):
    name = "kamailio"
    cfg_path = KAMAILIO_CFG       # call_storm.py uses kamailio/kamailio-calls.cfg

    @property
    def port(self) -> int:
        return self.args.kamailio_port

    def start(self) -> None:
        exe = shutil.which("kamailio") or "/usr/sbin/kamailio"
        if not Path(exe).exists():
            raise BenchError("kamailio not found: apt-get install -y kamailio")
        wait_port_free(self.port)
        d = self.workdir / "kamailio"
        d.mkdir(parents=True, exist_ok=True)
        db = d / "db"
        db.mkdir(exist_ok=True)
        # htable's db_text source: key = number, value = HA1 (string), never expires.
        with (db / "users").open("w") as f:
            f.write("key_name(string) key_type(int) value_type(int) key_value(string) expires(int)\n")
            for u in self.users:
                f.write(f"{u.number}:0:0:{u.ha1_md5()}:0\n")
        (db / "version").write_text("table_name(string) table_version(int)\nusers:2\n")
        self.ctl = d / "ctl.sock"
        self.log_path = d / "kamailio.log"
        cmd = [exe, "-f", str(self.cfg_path), "-DD", "-E",
               "-n", str(self.args.kamailio_children),
               "-l", f"udp:{HOST}:{self.port}",
               "-A", f'BENCH_CTL="unix:{self.ctl}"',
               "-A", f'BENCH_DB_URL="text://{db}"',
               "-m", str(self.args.kamailio_shm_mb), "-M", "16",
               "-P", str(d / "kamailio.pid"), "-w", str(d)]
        self.info["command"] = " ".join(cmd)
        self.info["version"] = tool_version("kamailio")
        self.info["children"] = self.args.kamailio_children
        self.proc = subprocess.Popen(cmd, cwd=d, stdin=subprocess.DEVNULL,
                                     stdout=self.log_path.open("w"), stderr=subprocess.STDOUT,
                                     start_new_session=True)
        wait_sip_ready(self.port, self.proc, 20, "kamailio")
        self.label = f"Kamailio {self.info['version'].split()[-1] if self.info['version'] else ''}".strip()

    def _kamcmd(self, *a: str) -> str:
        try:
            return subprocess.run(["kamcmd", "-s", f"unix:{self.ctl}", *a], capture_output=True,
                                  text=True, timeout=10).stdout
        except (OSError, subprocess.TimeoutExpired):
            return ""

    def _stat(self, name: str) -> int | None:
        # "stats.get_statistics group:name" answers nothing in 5.6; ask for the group.
        group = name.split(":")[0] + ":"
        m = re.search(rf"{re.escape(name)}\s*=\s*(\d+)", self._kamcmd("stats.get_statistics", group))
        return int(m.group(1)) if m else None

    def memory(self) -> dict:
        # Kamailio keeps usrloc in shared memory; RSS of its processes counts the same shared
        # pages several times, so report the shared-memory allocator's used size instead.
        return {"shm_used_bytes": self._stat("shmem:used_size"),
                "rss_main_bytes": rss_bytes(self.proc.pid) if self.proc else None}

    def bindings(self) -> dict:
        return {"registered_users": self._stat("usrloc:registered_users"),
                "location_contacts": self._stat("usrloc:location_contacts"),
                "accepted_regs": self._stat("registrar:accepted_regs")}


class Switchboard(Target):
    name = "switchboard"
    label = "Switchboard"
    http_listen = f"{HOST}:0"     # call_storm.py sets a fixed port to read /metrics

    def extra_config(self, d: Path) -> str:
        """More YAML for the config file (call_storm.py: the RTP port range, ...)."""
        return ""

    @property
    def port(self) -> int:
        return self.args.switchboard_port

    def start(self) -> None:
        exe = Path(self.args.switchboard_bin)
        if not exe.exists():
            raise BenchError(f"no Switchboard binary at {exe} (build it, or drop --no-build)")
        wait_port_free(self.port)
        d = self.workdir / "switchboard"
        (d / "data").mkdir(parents=True, exist_ok=True)
        self.db_path = d / "data" / "switchboard.db"
        cfg = d / "config.yml"
        cfg.write_text(
            f"data_dir: {d / 'data'}\n"
            f"database:\n  url: sqlite://{self.db_path}\n"
            f"logging:\n  level: {self.args.switchboard_log_level}\n"
            f"http:\n  listen: {self.http_listen}\n  tls: off\n"
            f"sip:\n  listen: [\"udp:{HOST}:{self.port}\"]\n  realm: {REALM}\n"
            f"  digest_algorithms: [{self.args.switchboard_digest}]\n"
            + self.extra_config(d))
        self.info["config"] = cfg.read_text()
        self.info["version"] = run_text([str(exe), "--version"]).strip()
        self.info["git_rev"] = git_rev()
        csv_path = self.workdir / "users.csv"
        t0 = time.monotonic()
        r = subprocess.run([str(exe), "--config", str(cfg), "extension", "import", str(csv_path)],
                           cwd=d, capture_output=True, text=True, timeout=600)
        self.info["import_seconds"] = round(time.monotonic() - t0, 2)
        self.info["import_output_tail"] = (r.stdout + r.stderr)[-2000:]
        if r.returncode != 0:
            raise BenchError(f"switchboard extension import failed (status {r.returncode}):\n"
                             f"{(r.stdout + r.stderr)[-2000:]}")
        log(f"  imported {len(self.users)} extensions in {self.info['import_seconds']} s")
        self.log_path = d / "switchboard.log"
        cmd = [str(exe), "--config", str(cfg), "serve"]
        self.info["command"] = " ".join(cmd)
        self.proc = subprocess.Popen(cmd, cwd=d, stdin=subprocess.DEVNULL,
                                     stdout=self.log_path.open("w"), stderr=subprocess.STDOUT,
                                     start_new_session=True)
        end = time.monotonic() + 60
        while "Switchboard is running:" not in self.log_path.read_text(errors="replace"):
            if self.proc.poll() is not None:
                raise BenchError(f"switchboard serve exited (status {self.proc.returncode}):\n"
                                 f"{self.log_tail()}")
            if time.monotonic() > end:
                raise BenchError("switchboard serve did not print 'Switchboard is running:' "
                                 f"within 60 s:\n{self.log_tail()}")
            time.sleep(0.1)
        try:
            wait_sip_ready(self.port, self.proc, 15, "switchboard")
        except BenchError as e:
            raise BenchError(f"{e} (is the SIP registrar in this build? "
                             f"log tail:\n{self.log_tail(10)})") from None

    def memory(self) -> dict:
        return {"rss_bytes": rss_bytes(self.proc.pid) if self.proc else None}

    def bindings(self) -> dict:
        """Best effort until the registrar's schema is known: row counts of the tables that
        look like registrations/bindings/phone inventory in the SQLite database."""
        out: dict = {}
        try:
            con = sqlite3.connect(f"file:{self.db_path}?mode=ro", uri=True, timeout=5)
            try:
                names = [r[0] for r in con.execute(
                    "SELECT name FROM sqlite_master WHERE type='table'")]
                for n in names:
                    if re.search(r"regist|binding|contact|location|device|phone|inventor", n, re.I):
                        out[n] = con.execute(f'SELECT COUNT(*) FROM "{n}"').fetchone()[0]
            finally:
                con.close()
        except sqlite3.Error as e:
            out["error"] = str(e)
        return out


# --------------------------------------------------------------------------------------
# SIPp
# --------------------------------------------------------------------------------------

@dataclass
class SippResult:
    proc: int
    rate: float
    calls: int
    returncode: int | None = None
    created: int = 0
    successful: int = 0
    failed: int = 0
    retransmissions: int = 0
    failed_breakdown: dict = field(default_factory=dict)
    elapsed: float = 0.0
    cpu_seconds: float = 0.0
    unexpected: int = 0


class SwitchboardFlooded(Switchboard):
    """Switchboard measured while an address it has blocked floods it (spec 13 / issue 8:
    a blocked flood must cost the registration storm < 5 % of its rate): during each step
    bench/flood.py sends --blocked-flood datagrams/s from 127.0.0.2, whose first one (a
    scanner's User-Agent) got it blocked. Its own port, so it runs beside `switchboard`."""
    name = "switchboard+flood"
    label = "Switchboard, blocked flood"

    def __init__(self, args, workdir, users):
        super().__init__(args, workdir, users)
        self.flood: subprocess.Popen | None = None
        self.http_port = args.switchboard_port + 2

    @property
    def port(self) -> int:
        return self.args.switchboard_port + 1

    def start(self) -> None:
        self.http_listen = f"{HOST}:{self.http_port}"
        super().start()

    def dropped(self) -> int:
        """switchboard_sip_blocked_dropped_total from /metrics."""
        import urllib.request
        with urllib.request.urlopen(f"http://{HOST}:{self.http_port}/metrics", timeout=5) as r:
            text = r.read().decode()
        m = re.search(r"^switchboard_sip_blocked_dropped_total\S* (\d+)", text, re.M)
        return int(m.group(1)) if m else 0

    def step_started(self) -> None:
        self.dropped0 = self.dropped()
        self.flood_t0 = time.monotonic()
        self.flood = subprocess.Popen(
            self.flood_command(),
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            text=True, start_new_session=True)
        time.sleep(0.5)  # blocked by its first datagram, flooding when the load starts

    def flood_command(self) -> list[str]:
        """bench/flood.c compiled (sendmmsg: the flooder takes little of the machine), or
        bench/flood.py when there is no gcc."""
        exe = self.workdir / "flood"
        if not exe.exists() and shutil.which("gcc"):
            subprocess.run(["gcc", "-O2", "-o", str(exe), str(BENCH_DIR / "flood.c")], check=True)
        rate = str(self.args.blocked_flood)
        if exe.exists():
            return [str(exe), "127.0.0.2", HOST, str(self.port), rate]
        return [sys.executable, str(BENCH_DIR / "flood.py"), "--source", "127.0.0.2",
                "--target", f"{HOST}:{self.port}", "--rate", rate]

    def helper_pgids(self) -> set[int]:
        return {self.flood.pid} if self.flood else set()

    def step_finished(self) -> dict:
        if not self.flood:
            return {}
        flood, self.flood = self.flood, None
        flood_cpu = group_cpu_seconds(flood.pid)
        flood.send_signal(signal.SIGTERM)
        out, _ = flood.communicate(timeout=10)
        wall = time.monotonic() - self.flood_t0
        m = re.search(r"sent (\d+)", out or "")
        sent = int(m.group(1)) if m else 0
        dropped = self.dropped() - self.dropped0
        return {"flood": {"datagrams_sent": sent, "rate_sent": round(sent / wall),
                          "dropped_unread_by_switchboard": dropped,
                          # The sender's CPU: on loopback it also pays the kernel's receive
                          # path, and it shares the machine with SIPp and the target.
                          "flooder_cores_used": round(flood_cpu / wall, 2)}}


def parse_sipp_stats(path: Path) -> dict | None:
    if not path.exists():
        return None
    lines = [l for l in path.read_text(errors="replace").splitlines() if l.strip()]
    if len(lines) < 2:
        return None
    header = lines[0].rstrip(";").split(";")
    last = lines[-1].rstrip(";").split(";")
    return dict(zip(header, last))


def _epoch(v: str) -> float:
    # "2026-11-22\t01:58:41.203643\t1795312721.203643"
    return float(v.split("\t")[-1])


def wait_quiet(args, target: Target) -> float:
    """Wait until the machine is idle apart from the (idle) target: other people's builds on
    a 2-core machine would otherwise decide the result. Returns the busy cores last seen."""
    end = time.monotonic() + args.quiet_wait
    announced = False
    while True:
        a, t0 = all_cpu_ticks(), time.monotonic()
        time.sleep(1.0)
        busy = other_cpu_seconds(a, all_cpu_ticks(), {target.proc.pid}) / (time.monotonic() - t0)
        if busy <= args.quiet_threshold or time.monotonic() > end:
            if busy > args.quiet_threshold:
                log(f"  warning: the machine is still busy ({busy:.2f} cores used by other "
                    "processes); the next step is measured anyway")
            return busy
        if not announced:
            log(f"  waiting for the machine to be quiet ({busy:.2f} cores busy elsewhere) ...")
            announced = True


def run_sipp_step(args, target: Target, inj: list[Path], total_rate: float, calls_total: int,
                  step_dir: Path, pause_target: tuple[float, float] | None = None) -> dict:
    """Run len(inj) SIPp processes in parallel, `total_rate` split evenly, `calls_total`
    registrations in all. Returns the step's figures."""
    procs = len(inj)
    other_before = wait_quiet(args, target) if args.quiet_wait > 0 else None
    step_dir.mkdir(parents=True, exist_ok=True)
    results: list[SippResult] = []
    popens: list[subprocess.Popen] = []
    rate_k = total_rate / procs
    duration = calls_total / total_rate
    # Collect everything before the load starts.
    cpu0 = target.cpu_seconds()
    threads0 = thread_cpu_seconds(target.proc.pid)
    m0 = machine_cpu()
    all0 = all_cpu_ticks()
    udp0 = udp_counters()
    target_drops0 = socket_drops(target.port)
    target.step_started()
    t0 = time.monotonic()
    try:
        for k in range(procs):
            calls_k = calls_total * (k + 1) // procs - calls_total * k // procs
            stf = step_dir / f"sipp-{k}.csv"
            cmd = ["sipp", f"{HOST}:{target.port}", "-sf", str(SCENARIO), "-inf", str(inj[k]),
                   "-i", HOST, "-p", str(args.sipp_base_port + k), "-t", args.transport,
                   "-r", f"{rate_k:.3f}", "-rp", "1000", "-m", str(calls_k),
                   "-l", str(max(200, int(rate_k * args.max_inflight_seconds))),
                   "-auth_uri", REALM, "-recv_timeout", str(args.recv_timeout_ms),
                   "-timeout", f"{int(duration + args.recv_timeout_ms / 1000 + 30)}s",
                   "-max_recv_loops", "10000", "-max_sched_loops", "10000",
                   "-buff_size", str(args.sipp_buff_size),
                   "-nostdin", "-trace_stat", "-stf", str(stf), "-fd", "1",
                   "-trace_err", "-error_file", str(step_dir / f"sipp-{k}-errors.log"),
                   "-trace_error_codes"]
            results.append(SippResult(proc=k, rate=rate_k, calls=calls_k))
            if k == 0:
                sipp_cmd_example = " ".join(cmd)
            popens.append(subprocess.Popen(cmd, cwd=step_dir, stdin=subprocess.DEVNULL,
                                           stdout=subprocess.DEVNULL,
                                           stderr=(step_dir / f"sipp-{k}.stderr").open("w"),
                                           start_new_session=True))
        if pause_target:
            # Self-check: freeze the target (SIGSTOP) to provoke retransmissions/failures.
            at, length = pause_target
            time.sleep(at)
            os.killpg(target.proc.pid, signal.SIGSTOP)
            time.sleep(length)
            os.killpg(target.proc.pid, signal.SIGCONT)
        deadline = time.monotonic() + duration + args.recv_timeout_ms / 1000 + 60
        pending = {p.pid: (i, p) for i, p in enumerate(popens)}
        while pending:
            for pid, (i, p) in list(pending.items()):
                wpid, status, ru = os.wait4(pid, os.WNOHANG)
                if wpid:
                    p.returncode = os.waitstatus_to_exitcode(status)
                    results[i].returncode = p.returncode
                    results[i].cpu_seconds = ru.ru_utime + ru.ru_stime
                    del pending[pid]
            if pending:
                if time.monotonic() > deadline:
                    raise BenchError("SIPp did not finish in time")
                time.sleep(0.05)
    finally:
        if pause_target and target.proc:
            try:
                os.killpg(target.proc.pid, signal.SIGCONT)
            except ProcessLookupError:
                pass
        for p in popens:
            if p.returncode is None:
                kill_group(p, grace=2)
    wall = time.monotonic() - t0
    helpers = target.helper_pgids()
    extra = target.step_finished()
    cpu1 = target.cpu_seconds()
    threads1 = thread_cpu_seconds(target.proc.pid)
    m1 = machine_cpu()
    udp1 = udp_counters()
    target_drops = socket_drops(target.port) - target_drops0
    others = other_cpu_seconds(all0, all_cpu_ticks(),
                               {target.proc.pid} | {p.pid for p in popens} | helpers)

    for r in results:
        st = parse_sipp_stats(step_dir / f"sipp-{r.proc}.csv")
        if not st:
            raise BenchError(f"SIPp wrote no statistics (see {step_dir}/sipp-{r.proc}.stderr:"
                             f" {(step_dir / f'sipp-{r.proc}.stderr').read_text()[-500:]})")
        r.created = int(st.get("TotalCallCreated", 0))
        r.successful = int(st.get("SuccessfulCall(C)", 0))
        r.failed = int(st.get("FailedCall(C)", 0))
        r.retransmissions = int(st.get("Retransmissions(C)", 0))
        r.unexpected = int(st.get("OutOfCallMsgs(C)", 0)) + int(st.get("DeadCallMsgs(C)", 0))
        r.failed_breakdown = {k[6:-3]: int(v) for k, v in st.items()
                              if k.startswith("Failed") and k.endswith("(C)") and k != "FailedCall(C)"
                              and v.isdigit() and int(v)}
        r.elapsed = _epoch(st["CurrentTime"]) - _epoch(st["StartTime"])

    succ = sum(r.successful for r in results)
    failed = sum(r.failed for r in results)
    retrans = sum(r.retransmissions for r in results)
    lost = sum(max(0, r.calls - r.successful - r.failed) for r in results)
    achieved = sum(r.successful / r.elapsed for r in results if r.elapsed > 0)
    target_cpu = cpu1 - cpu0
    sipp_cpu = sum(r.cpu_seconds for r in results)
    busy = (m1[0] - m0[0]) / max(1, (m1[1] - m0[1]))
    step = {
        "rate_asked": round(total_rate, 1),
        "registrations_asked": calls_total,
        "successful": succ,
        "failed": failed,
        "unfinished": lost,
        "retransmissions": retrans,
        "retransmission_pct": round(100 * retrans / max(1, succ + failed), 3),
        "rate_achieved": round(achieved, 1),
        "wall_seconds": round(wall, 2),
        "target_cpu_seconds": round(target_cpu, 3),
        "target_cpu_us_per_reg": round(1e6 * target_cpu / succ, 1) if succ else None,
        "target_cpu_s_per_10k": round(1e4 * target_cpu / succ, 3) if succ else None,
        "target_cores_used": round(target_cpu / wall, 2),
        # The target's main process by thread name (Kamailio's workers are processes
        # of their own, so there it is only the main one).
        "target_thread_cores": {k: round((threads1.get(k, 0) - v) / wall, 3)
                                for k, v in threads0.items() if threads1.get(k, 0) - v > 0},
        "sipp_cpu_seconds": round(sipp_cpu, 3),
        "sipp_cpu_us_per_reg": round(1e6 * sipp_cpu / succ, 1) if succ else None,
        "sipp_cores_used": round(sipp_cpu / wall, 2),
        "sipp_max_process_core": round(max(r.cpu_seconds / max(r.elapsed, 1e-9) for r in results), 2),
        # Kernel UDP counters (whole machine): receive-buffer drops mean lost datagrams.
        "udp_rcvbuf_errors": udp1.get("RcvbufErrors", 0) - udp0.get("RcvbufErrors", 0),
        "udp_in_errors": udp1.get("InErrors", 0) - udp0.get("InErrors", 0),
        # Of those, the drops on the target's socket; the rest were on SIPp's sockets.
        "udp_drops_target_socket": target_drops,
        # /proc/stat is tick-sampled: on this tickless VM it under-counts bursty processes
        # (it shows a few % while the per-process, runtime-based figures above show ~1 core).
        # Informational only; the per-process figures are the measurements.
        "proc_stat_busy_pct": round(100 * busy, 1),
        # CPU used by every other process on the machine (other builds, ...): should be ~0.
        "other_cores_used": round(others / wall, 2),
        "other_cores_before_step": None if other_before is None else round(other_before, 2),
        "sipp_processes": [asdict(r) for r in results],
        **extra,
        "sipp_command_example": sipp_cmd_example,
    }
    reasons = []
    if failed:
        reasons.append(f"{failed} failed {dict(sum_dicts(r.failed_breakdown for r in results))}")
    if lost:
        reasons.append(f"{lost} unfinished")
    if retrans >= MAX_RETRANS_FRACTION * max(1, succ + failed):
        reasons.append(f"retransmissions {step['retransmission_pct']} % >= 1 %")
    if achieved < MIN_ACHIEVED_FRACTION * total_rate:
        reasons.append(f"achieved {achieved:.0f}/s < 95 % of {total_rate:.0f}/s")
    if any(r.returncode not in (0,) for r in results) and not reasons:
        reasons.append(f"SIPp exit codes {[r.returncode for r in results]}")
    if not target.alive():
        reasons.append("target died")
    step["passed"] = not reasons
    step["fail_reasons"] = reasons
    return step


def sum_dicts(ds) -> dict:
    out: dict = {}
    for d in ds:
        for k, v in d.items():
            out[k] = out.get(k, 0) + v
    return out


def add_noise_args(ap: argparse.ArgumentParser, noise_retries: int, quiet_wait: float = 30) -> None:
    """The options for a shared machine: wait for quiet before a step, rerun a step
    that failed while other processes were busy (see `measured_step`)."""
    ap.add_argument("--quiet-wait", type=float, default=quiet_wait,
                    help="before each step wait up to this many seconds for other processes "
                         "to use less than --quiet-threshold cores (0 = do not wait)")
    ap.add_argument("--quiet-threshold", type=float, default=0.15)
    ap.add_argument("--noise-threshold", type=float, default=0.2,
                    help="a failed step during which other processes used more cores than "
                         "this is run again")
    ap.add_argument("--noise-retries", type=int, default=noise_retries)


def fmt_step(s: dict) -> str:
    verdict = "ok  " if s["passed"] else "FAIL"
    line = (f"  {verdict} asked {s['rate_asked']:>8.0f}/s  got {s['rate_achieved']:>8.0f}/s  "
            f"ok {s['successful']:>7}  failed {s['failed']:>4}  retrans {s['retransmission_pct']:>6.2f} %  "
            f"target CPU {s['target_cpu_us_per_reg'] or 0:>6.1f} us/reg ({s['target_cores_used']:.2f} cores)  "
            f"SIPp {s['sipp_cpu_us_per_reg'] or 0:>6.1f} us/reg ({s['sipp_cores_used']:.2f} cores)  "
            f"others {s['other_cores_used']:.2f} cores  udp drops {s['udp_rcvbuf_errors']}"
            f" ({s.get('udp_drops_target_socket', '?')} at the target)")
    if s["fail_reasons"]:
        line += "  <- " + "; ".join(s["fail_reasons"])
    threads = s.get("target_thread_cores") or {}
    if len(threads) > 1:
        line += "\n         threads: " + ", ".join(
            f"{k} {v:.2f}" for k, v in sorted(threads.items(), key=lambda kv: -kv[1]) if v >= 0.01)
    return line


# --------------------------------------------------------------------------------------
# reg-storm
# --------------------------------------------------------------------------------------

def measured_step(args, target: Target, inj: list[Path], rate: float, workdir: Path,
                  phase: str) -> dict:
    """One step at `rate`; a failed step during which other processes used more than
    --noise-threshold cores is run again (up to --noise-retries times): on a shared machine
    someone else's build must not decide the result. All attempts are kept."""
    attempts = []
    for attempt in range(args.noise_retries + 1):
        time.sleep(args.settle + (2 if attempts else 0))
        step = run_sipp_step(args, target, inj, rate, int(rate * args.duration),
                             workdir / target.name / f"step-{int(rate)}-{phase}-{attempt}")
        step["phase"] = phase
        log(fmt_step(step))
        attempts.append(step)
        if step["passed"] or step["other_cores_used"] <= args.noise_threshold:
            break
        if not target.alive():
            break
        log(f"  (other processes used {step['other_cores_used']:.2f} cores during that step: "
            "running it again)")
    final = attempts[-1]
    if len(attempts) > 1:
        final["noisy_attempts"] = attempts[:-1]
    return final


def ladder(args) -> list[float]:
    if args.rates:
        return [float(x) for x in args.rates.split(",") if x.strip()]
    rates, r = [], float(args.start_rate)
    while r <= args.max_rate:
        rates.append(round(r / 50) * 50)
        r *= args.factor
    return rates


class TargetRun:
    """One target's part of a run: start, pre-flight and warm-up, then the rising rates
    (`next_rate` / `record`) until its first failing step, then the bisection."""

    def __init__(self, args, target: Target, workdir: Path, inj: list[Path]):
        self.args, self.target, self.workdir, self.inj = args, target, workdir, inj
        self.res: dict = {"target": target.name, "steps": []}
        self.rates = ladder(args)
        self.best: dict | None = None
        self.first_fail: dict | None = None
        self.lo = self.hi = 0.0
        self.refines = 0
        self.t_start = time.monotonic()

    def prepare(self) -> None:
        args, target, res = self.args, self.target, self.res
        log(f"\n== {target.name}: starting")
        target.start()
        res["info"] = target.info
        res["label"] = target.label
        log(f"  listening on udp:{HOST}:{target.port}  ({target.info.get('version', '')})")
        res["preflight"] = preflight(target.name, target.port, target.users,
                                     want_sha256=target.name.startswith("switchboard")
                                     and "SHA-256" in args.switchboard_digest.upper())
        log("  pre-flight: right secret -> 200, wrong secret -> "
            f"{res['preflight']['md5_wrong_secret'].get('status')}")
        time.sleep(1.0)
        res["memory_idle"] = target.memory()
        res["bindings_idle"] = target.bindings()

        # Warm-up: every user registers once, at a modest rate: creates the 10,000 bindings.
        n = len(target.users)
        wrate = min(args.warmup_rate, args.start_rate)
        log(f"  warm-up: {n} registrations at {wrate:.0f}/s (one per user)")
        warm = run_sipp_step(args, target, self.inj, wrate, n, self.workdir / target.name / "warmup")
        log(fmt_step(warm))
        res["warmup"] = warm
        if warm["successful"] != n:
            raise BenchError(f"{target.name}: warm-up registered {warm['successful']}/{n} users "
                             f"({'; '.join(warm['fail_reasons'])})")
        time.sleep(1.0)
        res["memory_loaded"] = target.memory()
        res["bindings_loaded"] = target.bindings()
        mem = {}
        if target.name.startswith("switchboard"):
            a, b = res["memory_idle"].get("rss_bytes"), res["memory_loaded"].get("rss_bytes")
            if a and b:
                mem = {"rss_idle_bytes": a, "rss_loaded_bytes": b,
                       "bytes_per_binding": round((b - a) / n, 1)}
        else:
            a, b = res["memory_idle"].get("shm_used_bytes"), res["memory_loaded"].get("shm_used_bytes")
            if a is not None and b is not None:
                mem = {"shm_idle_bytes": a, "shm_loaded_bytes": b,
                       "shm_bytes_per_binding": round((b - a) / n, 1)}
        res["memory_per_binding"] = mem

    def next_step(self) -> tuple[float, str] | None:
        """The next rate to run and its phase, or None when this target is done: the
        ramp until the first failing step, then bisection between the last passing and
        the first failing rate."""
        if self.first_fail is None:
            if self.rates:
                return self.rates.pop(0), "ramp"
            return None
        if self.best is None or self.args.rates or self.refines >= self.args.refine \
                or self.hi / self.lo < 1.04:
            return None
        return round((self.lo + self.hi) / 2 / 50) * 50, "refine"

    def record(self, step: dict) -> None:
        self.res["steps"].append(step)
        if not self.target.alive():
            raise BenchError(f"{self.target.name} died during the {step['rate_asked']:.0f}/s "
                             f"step:\n{self.target.log_tail()}")
        if step["phase"] == "refine":
            self.refines += 1
            if step["passed"]:
                self.lo, self.best = step["rate_asked"], step
            else:
                self.hi = step["rate_asked"]
        elif step["passed"]:
            self.best = step
        else:
            self.first_fail = step
            if self.best:
                self.lo, self.hi = self.best["rate_asked"], step["rate_asked"]

    def finish(self) -> dict:
        res, target, best = self.res, self.target, self.best
        res["best"] = best
        fails = [st["rate_asked"] for st in res["steps"] if not st["passed"]]
        res["lowest_failing_rate"] = min(fails) if fails else None
        res["bindings_final"] = target.bindings()
        res["memory_final"] = target.memory()
        res["seconds"] = round(time.monotonic() - self.t_start, 1)
        if best is None:
            log(f"  {target.name}: no step passed")
        else:
            log(f"  {target.name}: highest sustained rate {best['rate_achieved']:.0f}/s "
                f"(asked {best['rate_asked']:.0f}/s), target CPU {best['target_cpu_s_per_10k']} s "
                f"per 10k = {best['target_cpu_us_per_reg']} us/registration")
        return res


def run_interleaved(args, runs: list[TargetRun]) -> None:
    """Steps of the targets in turn (A at r1, B at r1, A at r2, …), so that a change in
    the shared machine's speed during the run affects both alike. Each target keeps its
    own ramp and bisection."""
    active = list(runs)
    while active:
        for run in list(active):
            nxt = run.next_step()
            if nxt is None:
                active.remove(run)
                continue
            rate, phase = nxt
            if phase == "refine":
                time.sleep(2)
            log(f"  [{run.target.name}]")
            run.record(measured_step(args, run.target, run.inj, rate, run.workdir, phase))


def self_check(args, target: Target, workdir: Path, inj: list[Path]) -> dict:
    """Show what SIPp's counters mean: freeze the target for 1.2 s (expect retransmissions,
    no failures), then for longer than -recv_timeout (expect failed registrations)."""
    out = {}
    rate = 500.0
    log("  self-check: target frozen 1.2 s during a 4 s step at 500/s")
    s1 = run_sipp_step(args, target, inj, rate, int(rate * 4), workdir / target.name / "selfcheck-1",
                       pause_target=(1.5, 1.2))
    log(fmt_step(s1))
    time.sleep(2)
    log(f"  self-check: target frozen {args.recv_timeout_ms / 1000 + 1.5:.1f} s (> -recv_timeout)")
    s2 = run_sipp_step(args, target, inj, rate, int(rate * 4), workdir / target.name / "selfcheck-2",
                       pause_target=(1.5, args.recv_timeout_ms / 1000 + 1.5))
    log(fmt_step(s2))
    out["freeze_short"] = s1
    out["freeze_long"] = s2
    time.sleep(2)
    return out


# --------------------------------------------------------------------------------------
# Reporting
# --------------------------------------------------------------------------------------

def ratio(a, b) -> str:
    if a is None or b in (None, 0):
        return "-"
    return f"x{a / b:.2f}"


def num(v, fmt="{:,.0f}") -> str:
    return "-" if v is None else fmt.format(v)


def common_rate_cpu(results: dict) -> tuple[float | None, dict]:
    """CPU per registration of each target at the highest rate that both passed."""
    ok = {}
    for name, r in results.items():
        ok[name] = {s["rate_asked"]: s for s in r.get("steps", []) if s["passed"]}
    if len(ok) < 2:
        return None, {}
    common = set.intersection(*(set(v) for v in ok.values()))
    if not common:
        return None, {}
    rate = max(common)
    return rate, {name: ok[name][rate]["target_cpu_us_per_reg"] for name in ok}


def print_table(results: dict, args) -> str:
    k = results.get("kamailio", {})
    s = results.get("switchboard", {})
    kb, sb = k.get("best") or {}, s.get("best") or {}
    rows = []
    head = ["", k.get("label") or "Kamailio", s.get("label") or "Switchboard", "SB/Kam", "target"]
    rows.append(["highest sustained rate (reg/s)", num(kb.get("rate_achieved")),
                 num(sb.get("rate_achieved")), ratio(sb.get("rate_achieved"), kb.get("rate_achieved")),
                 ">= x1.5"])
    rows.append(["  asked rate of that step (reg/s)", num(kb.get("rate_asked")), num(sb.get("rate_asked")), "", ""])
    rows.append(["  lowest failing rate (reg/s)", num(k.get("lowest_failing_rate")),
                 num(s.get("lowest_failing_rate")), "", ""])
    rows.append(["target CPU-s per 10k reg (at its max)", num(kb.get("target_cpu_s_per_10k"), "{:.3f}"),
                 num(sb.get("target_cpu_s_per_10k"), "{:.3f}"),
                 ratio(sb.get("target_cpu_s_per_10k"), kb.get("target_cpu_s_per_10k")), "<= x0.5"])
    rows.append(["target CPU us per reg (at its max)", num(kb.get("target_cpu_us_per_reg"), "{:.1f}"),
                 num(sb.get("target_cpu_us_per_reg"), "{:.1f}"), "", ""])
    crate, ccpu = common_rate_cpu(results)
    if crate:
        rows.append([f"target CPU us per reg at {crate:,.0f}/s (both)",
                     num(ccpu.get("kamailio"), "{:.1f}"), num(ccpu.get("switchboard"), "{:.1f}"),
                     ratio(ccpu.get("switchboard"), ccpu.get("kamailio")), "<= x0.5"])
    rows.append(["SIPp CPU us per reg (at max)", num(kb.get("sipp_cpu_us_per_reg"), "{:.1f}"),
                 num(sb.get("sipp_cpu_us_per_reg"), "{:.1f}"), "", ""])
    rows.append(["target cores used at max", num(kb.get("target_cores_used"), "{:.2f}"),
                 num(sb.get("target_cores_used"), "{:.2f}"), "", ""])
    rows.append(["SIPp cores used at max", num(kb.get("sipp_cores_used"), "{:.2f}"),
                 num(sb.get("sipp_cores_used"), "{:.2f}"), "", ""])
    rows.append(["other processes, cores, at max", num(kb.get("other_cores_used"), "{:.2f}"),
                 num(sb.get("other_cores_used"), "{:.2f}"), "", ""])
    km, sm = k.get("memory_per_binding", {}), s.get("memory_per_binding", {})
    rows.append(["memory per binding (bytes)",
                 (num(km.get("shm_bytes_per_binding")) + " shm") if km.get("shm_bytes_per_binding") is not None else "-",
                 (num(sm.get("bytes_per_binding")) + " RSS") if sm.get("bytes_per_binding") is not None else "-",
                 "", ""])
    kbind = (k.get("bindings_final") or {}).get("registered_users")
    sbind = s.get("bindings_final")
    rows.append(["bindings after the run", num(kbind),
                 ", ".join(f"{a}={b}" for a, b in sbind.items()) if sbind else "-", "", ""])
    for name, r in results.items():
        if r.get("error"):
            rows.append([f"{name} error", "", "", "", ""])
    widths = [max(len(str(r[i])) for r in rows + [head]) for i in range(5)]
    lines = []
    title = (f"reg-storm: {args.users:,} users, digest MD5 qop=auth over UDP loopback, "
             f"{args.sipp_procs} SIPp processes, {args.duration:g} s steps, pass = 0 failed, "
             f"< 1 % retransmissions, >= 95 % of the asked rate")
    lines.append(title)
    lines.append("  ".join(str(h).ljust(widths[i]) if i == 0 else str(h).rjust(widths[i])
                           for i, h in enumerate(head)))
    lines.append("  ".join("-" * w for w in widths))
    for r in rows:
        lines.append("  ".join(str(c).ljust(widths[i]) if i == 0 else str(c).rjust(widths[i])
                               for i, c in enumerate(r)))
    for name, r in results.items():
        if r.get("error"):
            lines.append(f"{name}: {r['error']}")
    text = "\n".join(lines)
    print("\n" + text, flush=True)
    return text


def print_flood_table(results: dict, args) -> str:
    """Switchboard with and without a blocked address flooding it, at each rate both ran."""
    plain = {st["rate_asked"]: st for st in results.get("switchboard", {}).get("steps", [])}
    flooded = {st["rate_asked"]: st for st in results.get("switchboard+flood", {}).get("steps", [])}
    lines = [f"blocked flood: {args.blocked_flood:,} datagrams/s from a blocked address during each "
             "step of `switchboard+flood`",
             f"{'rate asked':>10}  {'plain reg/s':>11}  {'flood reg/s':>11}  {'rate lost':>9}  "
             f"{'plain us/reg':>12}  {'flood us/reg':>12}  {'flood sent/s':>12}  {'dropped':>10}  {'flooder cores':>13}"]
    for rate in sorted(set(plain) & set(flooded)):
        a, b = plain[rate], flooded[rate]
        lost = (1 - b["rate_achieved"] / a["rate_achieved"]) * 100 if a["rate_achieved"] else 0
        fl = b.get("flood", {})
        lines.append(f"{rate:>10,.0f}  {a['rate_achieved']:>11,.0f}  {b['rate_achieved']:>11,.0f}  "
                     f"{lost:>8.1f}%  {num(a.get('target_cpu_us_per_reg'), '{:.1f}'):>12}  "
                     f"{num(b.get('target_cpu_us_per_reg'), '{:.1f}'):>12}  "
                     f"{num(fl.get('rate_sent')):>12}  {num(fl.get('dropped_unread_by_switchboard')):>10}  "
                     f"{num(fl.get('flooder_cores_used'), '{:.2f}'):>13}"
                     f"{'' if a['passed'] and b['passed'] else '  (failed: ' + '; '.join(a['fail_reasons'] + b['fail_reasons']) + ')'}")
    pb, fb = (results.get(n, {}).get("best") or {} for n in ("switchboard", "switchboard+flood"))
    if pb.get("rate_achieved") and fb.get("rate_achieved"):
        lines.append(f"highest sustained: plain {pb['rate_achieved']:,.0f}/s, flooded "
                     f"{fb['rate_achieved']:,.0f}/s ({(1 - fb['rate_achieved'] / pb['rate_achieved']) * 100:.1f} % lost; "
                     "target < 5 %)")
    text = "\n".join(lines)
    print("\n" + text, flush=True)
    return text


# --------------------------------------------------------------------------------------
# Environment
# --------------------------------------------------------------------------------------

def stop_target(target: Target) -> None:
    target.stop()
    try:
        wait_port_free(target.port)
    except BenchError as e:
        log(str(e))


def run_text(cmd: list[str]) -> str:
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=20)
        return (r.stdout or r.stderr).strip()
    except (OSError, subprocess.TimeoutExpired):
        return ""


def tool_version(tool: str) -> str:
    if tool == "kamailio":
        out = run_text(["kamailio", "-v"])
        m = re.search(r"version:\s*(kamailio \S+)", out)
        return m.group(1) if m else out.splitlines()[0] if out else ""
    if tool == "sipp":
        out = run_text(["sipp", "-v"])
        m = re.search(r"SIPp v(\S+)", out)
        return m.group(1) if m else out
    return ""


def git_rev() -> str:
    rev = run_text(["git", "-C", str(REPO_DIR), "rev-parse", "--short", "HEAD"])
    dirty = run_text(["git", "-C", str(REPO_DIR), "status", "--porcelain", "--untracked-files=no"])
    return rev + ("-dirty" if dirty else "")


def machine_info() -> dict:
    model = ""
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
    mem = Path("/proc/meminfo").read_text().splitlines()[0].split()[1]
    return {"nproc": os.cpu_count(), "cpu_model": model, "kernel": platform.release(),
            "os": run_text(["sh", "-c", ". /etc/os-release && echo $PRETTY_NAME"]),
            "mem_total_kib": int(mem), "python": platform.python_version(),
            "kamailio": tool_version("kamailio"), "sipp": tool_version("sipp"),
            "switchboard_git_rev": git_rev()}


def build_switchboard() -> None:
    log(f"building Switchboard (release, CARGO_TARGET_DIR={CARGO_TARGET_DIR}) ...")
    env = dict(os.environ, CARGO_TARGET_DIR=str(CARGO_TARGET_DIR))
    r = subprocess.run(["cargo", "build", "--release", "-j2", "--bin", "switchboard"],
                       cwd=REPO_DIR, env=env, capture_output=True, text=True)
    if r.returncode != 0:
        raise BenchError("cargo build --release failed:\n" + r.stderr[-3000:])


# --------------------------------------------------------------------------------------
# Main
# --------------------------------------------------------------------------------------

def _sigterm(signum, frame):
    raise KeyboardInterrupt


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("bench", choices=["reg-storm"])
    ap.add_argument("--targets", default="kamailio,switchboard",
                    help="comma-separated, run in this order (default: kamailio,switchboard)")
    ap.add_argument("--rates", help="explicit total rates (reg/s), e.g. 2000,4000,6000; "
                                    "default: a geometric ramp then bisection")
    ap.add_argument("--start-rate", type=float, default=2000)
    ap.add_argument("--factor", type=float, default=1.5, help="ramp factor between steps")
    ap.add_argument("--max-rate", type=float, default=60000)
    ap.add_argument("--refine", type=int, default=3,
                    help="bisection steps between the last passing and first failing rate")
    ap.add_argument("--duration", type=float, default=10, help="seconds per step")
    ap.add_argument("--settle", type=float, default=0.5, help="idle seconds before each step")
    ap.add_argument("--sipp-procs", type=int, default=3)
    ap.add_argument("--sipp-base-port", type=int, default=16060,
                    help="SIPp process k binds udp:127.0.0.1:(base+k)")
    ap.add_argument("--transport", default="u1", choices=["u1", "un"])
    ap.add_argument("--sipp-buff-size", type=int, default=4194304,
                    help="SIPp -buff_size (socket send/receive buffers, bytes)")
    ap.add_argument("--users", type=int, default=10000)
    ap.add_argument("--warmup-rate", type=float, default=2000)
    ap.add_argument("--recv-timeout-ms", type=int, default=6000,
                    help="SIPp -recv_timeout: a registration not answered by then fails")
    ap.add_argument("--max-inflight-seconds", type=float, default=2.0,
                    help="SIPp -l = rate per process x this")
    ap.add_argument("--kamailio-port", type=int, default=5080)
    ap.add_argument("--kamailio-children", type=int, default=2, help="UDP worker processes")
    ap.add_argument("--kamailio-shm-mb", type=int, default=256)
    ap.add_argument("--switchboard-port", type=int, default=5070)
    ap.add_argument("--blocked-flood", type=int, default=50000,
                    help="datagrams/s the `switchboard+flood` target gets from a blocked address")
    ap.add_argument("--switchboard-bin", default=str(SWITCHBOARD_BIN))
    ap.add_argument("--switchboard-log-level", default="warn")
    ap.add_argument("--switchboard-digest", default="MD5",
                    help="sip.digest_algorithms of the Switchboard under test, e.g. MD5,SHA-256 "
                         "(the default offers what Kamailio's challenge offers: MD5 only)")
    ap.add_argument("--no-build", action="store_true", help="do not run cargo build")
    ap.add_argument("--self-check", action="store_true",
                    help="first freeze each target briefly to show SIPp's retransmission and "
                         "failure counters at work")
    add_noise_args(ap, noise_retries=2)
    ap.add_argument("--sequential", action="store_true",
                    help="run one target's whole ramp after the other's (default: their steps "
                         "alternate, so that the shared machine's drift affects both alike)")
    ap.add_argument("--keep", action="store_true", help="keep the work directory")
    ap.add_argument("--out", help="result JSON path (default bench/results/<UTC date>-reg-storm.json)")
    args = ap.parse_args()

    targets = [t.strip() for t in args.targets.split(",") if t.strip()]
    for t in targets:
        if t not in ("kamailio", "switchboard", "switchboard+flood"):
            ap.error(f"unknown target {t!r}")
    if not shutil.which("sipp"):
        print("sipp not found: apt-get install -y sip-tester", file=sys.stderr)
        return 2
    if args.sipp_procs < 1:
        ap.error("--sipp-procs must be >= 1")

    signal.signal(signal.SIGTERM, _sigterm)
    started = dt.datetime.now(dt.timezone.utc)
    workdir = Path(tempfile.mkdtemp(prefix="sb-bench-reg-storm-"))
    log(f"work directory: {workdir}")
    users = make_users(args.users)
    write_users_csv(users, workdir / "users.csv")
    inj = write_injection_files(users, args.sipp_procs, workdir)
    for k in range(args.sipp_procs):
        if not udp_port_free(args.sipp_base_port + k):
            print(f"UDP port {args.sipp_base_port + k} (SIPp) is in use", file=sys.stderr)
            return 2

    report: dict = {"bench": "reg-storm", "started_utc": started.isoformat(timespec="seconds"),
                    "machine": machine_info(), "parameters": vars(args),
                    "criteria": {"failed": 0, "retransmissions_per_registration_below": MAX_RETRANS_FRACTION,
                                 "achieved_rate_at_least": MIN_ACHIEVED_FRACTION},
                    "results": {}}
    rc = 0
    try:
        if any(t.startswith("switchboard") for t in targets) and not args.no_build:
            try:
                build_switchboard()
            except BenchError as e:
                report["results"]["switchboard"] = {"target": "switchboard", "error": str(e)}
                log(f"switchboard: {e}")
                targets = [t for t in targets if t != "switchboard"]
                rc = 1
        # Every target is started, checked and warmed up first; then their steps run
        # in turn (or, with --sequential, one target's whole ramp after the other's).
        runs: list[TargetRun] = []
        try:
            for name in targets:
                cls = {"kamailio": Kamailio, "switchboard": Switchboard,
                       "switchboard+flood": SwitchboardFlooded}[name]
                target = cls(args, workdir, users)
                try:
                    if args.self_check:
                        target.start()
                        report.setdefault("self_check", {})[name] = self_check(args, target, workdir, inj)
                        target.stop()
                        wait_port_free(target.port)
                    run = TargetRun(args, target, workdir, inj)
                    if args.sequential:
                        run.prepare()
                        run_interleaved(args, [run])
                        report["results"][name] = run.finish()
                        stop_target(target)
                    else:
                        runs.append(run)
                        run.prepare()
                except BenchError as e:
                    log(f"\n{name}: {e}")
                    report["results"][name] = {"target": name, "error": str(e), "info": target.info}
                    rc = 1
                    runs = [r for r in runs if r.target is not target]
                    stop_target(target)
            if runs:
                try:
                    run_interleaved(args, runs)
                    for run in runs:
                        report["results"][run.target.name] = run.finish()
                except BenchError as e:
                    log(f"\n{e}")
                    for run in runs:
                        report["results"].setdefault(run.target.name, run.res)
                    rc = 1
        finally:
            for run in runs:
                stop_target(run.target)
    except KeyboardInterrupt:
        log("\ninterrupted: stopping everything")
        rc = 130
    finally:
        report["finished_utc"] = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
        if report["results"]:
            report["table"] = print_table(report["results"], args)
            if "switchboard+flood" in report["results"]:
                report["flood_table"] = print_flood_table(report["results"], args)
            res = report["results"]
            if "kamailio" in res and "switchboard" in res:
                kb, sb = res["kamailio"].get("best") or {}, res["switchboard"].get("best") or {}
                if kb and sb:
                    report["ratios"] = {
                        "rate_sb_over_kamailio": round(sb["rate_achieved"] / kb["rate_achieved"], 3),
                        "cpu_per_reg_sb_over_kamailio": round(sb["target_cpu_us_per_reg"] / kb["target_cpu_us_per_reg"], 3),
                        "targets": {"rate": ">= 1.5", "cpu": "<= 0.5"}}
                    crate, ccpu = common_rate_cpu(res)
                    if crate:
                        report["ratios"]["common_rate"] = crate
                        report["ratios"]["cpu_per_reg_at_common_rate_sb_over_kamailio"] = round(
                            ccpu["switchboard"] / ccpu["kamailio"], 3)
            save_report(report, args.out, started, "reg-storm")
        finish_workdir(workdir, keep=args.keep or rc != 0)
    return rc


if __name__ == "__main__":
    sys.exit(main())
