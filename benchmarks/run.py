"""Parley benchmark scenarios: print figures, compare with baselines in the same run.

    python3 benchmarks/run.py --quick                 # smoke run, about a minute
    python3 benchmarks/run.py                         # S1-S5 + scaling + 10-minute soak
    python3 benchmarks/run.py --scenario issue7       # rooms, storage, storms, big database
    python3 benchmarks/run.py --scenarios s1,s2 --servers parley,textbook
    python3 benchmarks/run.py --scenarios s6 --soak-minutes 1

Servers (each scenario starts a fresh process per server, on 127.0.0.1, port 0):
  parley    python_server.py at the repository root (skipped if absent), with
            its history in a temporary --data-dir (persistence on; the
            directory is removed when the server stops)
  textbook  benchmarks/textbook_server.py: thread per client, sendall under a lock
  ngircd    /usr/sbin/ngircd with a generated config (skipped if absent:
            apt-get install ngircd)

Scenarios (clients speak protocol 1 unless the rooms cap is said):
  s1     fan-out burst: N clients, 10 send a burst of 25 messages each (Parley
         twice: protocol-1 clients, then rooms-cap clients)
  s1tls  the same burst with every client on Parley's TLS port (a self-signed
         certificate; Parley only), next to plain TCP in the same run
  s1ws   the same burst with every client a WebSocket (/ws on the same port; Parley
         only, needs the websockets package), next to plain TCP in the same run
  s2     latency at a steady 20,000 deliveries/s
  s3     10,000 clients connect and register; then one message to all
  s3r    the same with rooms-cap clients (Parley only)
  s4     slow consumers: bursts with one client that never reads and one
         that reads a byte a second, against the same run without them
  s5     flood: one client sends as fast as it can while the others chat
  s6     soak (Parley only): churn with resume, every id accounted for
  scale  cost at 10 / 100 / 1,000 / 10,000 clients for a fixed message rate
  rooms  1,000 rooms-cap clients in 100 rooms (and #general), 10% of the
         messages DMs: deliveries/s, delivery and ack latency per rate
  stored every message labelled, acked after its commit: an offered-rate
         ladder (sustained msg/s stored) and ack latency at 2,000 msg/s
  disconnect  10,000 clients close their sockets at once: a new client's
         time to its welcome (protocol 1 and rooms cap)
  bigdb  a database filled to 0 / 100,000 / 1,000,000 messages: server start
         time, RSS, history pages and searches through the server

Nothing here asserts: the suite prints figures (and, with --json, saves them).
Every wait is bounded; servers and workers are killed on exit.
"""
from __future__ import annotations

import argparse
import atexit
import json
import os
import random
import re
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Optional

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)

import loadgen  # noqa: E402
from loadgen import IRC, PARLEY, LoadGen, percentiles  # noqa: E402

PARLEY_SERVER = os.path.join(ROOT, "python_server.py")


def parley_server_path() -> str:
    return os.environ.get("PARLEY_BENCH_SERVER") or PARLEY_SERVER
TEXTBOOK_SERVER = os.path.join(HERE, "textbook_server.py")
NGIRCD = "/usr/sbin/ngircd"
LISTEN_RE = re.compile(r"listening on \[?127\.0\.0\.1\]?:(\d+)")
TLS_RE = re.compile(r"TLS on \[?127\.0\.0\.1\]?:(\d+)")
CLK_TCK = os.sysconf("SC_CLK_TCK")

_live: list["ServerProc"] = []


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------
# servers
# ---------------------------------------------------------------------------
def _raise_nofile_preexec() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


NGIRCD_CONF = """\
[Global]
Name = irc.bench
Info = Parley benchmark baseline
AdminInfo1 = bench
AdminInfo2 = bench
AdminEMail = bench@localhost
Listen = 127.0.0.1
Ports = {port}
MotdPhrase = bench
[Limits]
MaxConnections = 0
MaxConnectionsIP = 0
MaxJoins = 0
MaxNickLength = 30
{penalty}PingTimeout = 600
PongTimeout = 600
[Options]
DNS = no
Ident = no
PAM = no
"""


class ServerProc:
    """A server subprocess with its log file and /proc metrics."""

    def __init__(self, kind: str, logdir: str, tag: str, flood_limits: bool = False,
                 parley_args: Optional[list] = None):
        self.kind, self.tag = kind, tag
        self.log_path = os.path.join(logdir, f"{tag}-{kind}.log")
        self.proc: Optional[subprocess.Popen] = None
        self.port = 0
        self.tls_port = 0                       # with --tls-port in parley_args
        self.flood_limits = flood_limits
        self.parley_args = parley_args or []
        self.cmd: list[str] = []
        self.proto = IRC if kind == "ngircd" else PARLEY
        self.conf = None
        self.db_bytes = 0
        self.data_dir: Optional[str] = None     # Parley's history: a temp dir, removed at stop
        if kind == "ngircd":
            self.conf = os.path.join(logdir, f"{tag}-ngircd.conf")

    def start(self, timeout: float = 20.0, poll: float = 0.05) -> None:
        if self.kind == "parley":
            self.cmd = [sys.executable, parley_server_path(), "--host", "127.0.0.1", "--port", "0",
                        "--log-level", "warning"]
            if not self.flood_limits:
                self.cmd += ["--rate", "100000", "--burst", "100000"]
            if not any(a.split("=")[0] in ("--db", "--data-dir") for a in self.parley_args):
                # persistence ON, in a throwaway directory (never the user's default)
                self.data_dir = tempfile.mkdtemp(prefix="parley-bench-data-")
                self.cmd += ["--data-dir", self.data_dir]
            self.cmd += self.parley_args
        elif self.kind == "textbook":
            self.cmd = [sys.executable, TEXTBOOK_SERVER, "--host", "127.0.0.1", "--port", "0"]
        elif self.kind == "ngircd":
            port = _free_port()
            with open(self.conf, "w") as f:
                f.write(NGIRCD_CONF.format(
                    port=port, penalty="" if self.flood_limits else "MaxPenaltyTime = 0\n"))
            os.chmod(self.conf, 0o644)
            self.cmd = [NGIRCD, "-n", "-f", self.conf]
        else:
            raise ValueError(self.kind)
        logf = open(self.log_path, "wb")
        self.proc = subprocess.Popen(self.cmd, stdin=subprocess.DEVNULL, stdout=logf,
                                     stderr=subprocess.STDOUT, preexec_fn=_raise_nofile_preexec,
                                     start_new_session=True, cwd=ROOT)
        logf.close()
        _live.append(self)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            m = LISTEN_RE.search(self.log_text())
            port = int(m.group(1)) if m else self._listening_port()
            if "--tls-port" in self.parley_args:
                t = TLS_RE.search(self.log_text())
                if not t:
                    port = 0
                else:
                    self.tls_port = int(t.group(1))
            if port:
                self.port = port
                if self._accepts():
                    return
            if self.proc.poll() is not None:
                break
            time.sleep(poll)
        tail = self.log_text()[-2000:]
        self.stop()
        raise RuntimeError(f"{self.kind} did not start (cmd: {' '.join(self.cmd)}):\n{tail}")

    def _listening_port(self) -> int:
        """The port the process listens on, from /proc (for a server that does
        not log it at the chosen level, e.g. Parley's INFO line at warning)."""
        try:
            fds = os.listdir(f"/proc/{self.proc.pid}/fd")
        except OSError:
            return 0
        inodes = set()
        for fd in fds:
            try:
                link = os.readlink(f"/proc/{self.proc.pid}/fd/{fd}")
            except OSError:
                continue
            if link.startswith("socket:["):
                inodes.add(link[8:-1])
        try:
            with open(f"/proc/{self.proc.pid}/net/tcp") as f:
                next(f)
                for line in f:
                    parts = line.split()
                    local, state, inode = parts[1], parts[3], parts[9]
                    if state == "0A" and inode in inodes:       # 0A = LISTEN
                        return int(local.split(":")[1], 16)
        except (OSError, StopIteration, IndexError, ValueError):
            pass
        return 0

    def _accepts(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                return True
        except OSError:
            return False

    def log_text(self) -> str:
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self) -> None:
        p = self.proc
        if p is None:
            return
        if p.poll() is None:
            try:
                os.killpg(p.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                p.wait(5)
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(p.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                p.wait(5)
        if self.data_dir is not None:
            self.db_bytes = _dir_bytes(self.data_dir)
            shutil.rmtree(self.data_dir, ignore_errors=True)
            self.data_dir = None
        if self in _live:
            _live.remove(self)

    # --- /proc metrics ------------------------------------------------------
    def status(self) -> dict:
        out = {"rss_mb": None, "hwm_mb": None, "threads": None}
        if not self.alive():
            return out
        try:
            with open(f"/proc/{self.proc.pid}/status") as f:
                for line in f:
                    k, _, v = line.partition(":")
                    if k == "VmRSS":
                        out["rss_mb"] = int(v.split()[0]) / 1024
                    elif k == "VmHWM":
                        out["hwm_mb"] = int(v.split()[0]) / 1024
                    elif k == "Threads":
                        out["threads"] = int(v)
        except OSError:
            pass
        return out

    def cpu(self) -> float:
        try:
            with open(f"/proc/{self.proc.pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            return (int(fields[11]) + int(fields[12])) / CLK_TCK
        except (OSError, IndexError, ValueError, AttributeError):
            return 0.0


def machine_busy() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine so far, from /proc/stat."""
    try:
        with open("/proc/stat") as f:
            v = [int(x) for x in f.readline().split()[1:]]
    except (OSError, ValueError):
        return 0.0, 0.0
    idle = v[3] + (v[4] if len(v) > 4 else 0)
    total = sum(v[:8])
    return (total - idle) / CLK_TCK, total / CLK_TCK


def code_state() -> str:
    """The commit the servers run, and whether the server's files differ from it."""
    server = os.path.abspath(parley_server_path())
    if os.path.dirname(server) != ROOT:
        # another tree (e.g. a `git archive` snapshot): say which, from its SNAPSHOT file
        try:
            with open(os.path.join(os.path.dirname(server), "SNAPSHOT")) as f:
                note = f.read().strip()
        except OSError:
            note = "no SNAPSHOT file"
        return f"{server} ({note})"
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, text=True,
                              capture_output=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "src/parley/server",
                                "src/parley/protocol.py", "python_server.py"], cwd=ROOT,
                               text=True, capture_output=True, timeout=10).stdout.split("\n")
    except (OSError, subprocess.SubprocessError):
        return "commit unknown"
    try:
        last = subprocess.run(["git", "log", "-1", "--format=%h", "--", "src/parley/server",
                               "src/parley/protocol.py"], cwd=ROOT, text=True,
                              capture_output=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        last = ""
    dirty = [ln[3:] for ln in dirty if ln.strip()]
    return (f"commit {head or '?'} (server last changed in {last or '?'})"
            + (f" with uncommitted changes in {', '.join(dirty)}" if dirty else ""))


_LEFT_RE = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) .* (\S+) left \((\w+)\)", re.M)


def server_leaves(text: str, names: set) -> list:
    """(time_ns, name, 'reason (server log)') of ``names`` leaving, from Parley's
    info-level log lines '<asctime> … <peer> <name> left (<reason>)'."""
    import datetime
    out = []
    for m in _LEFT_RE.finditer(text):
        if m.group(2) in names:
            t = datetime.datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S,%f").timestamp()
            out.append((int(t * 1e9), m.group(2), f"{m.group(3)} (server log)"))
    return out


def _dir_bytes(path: str) -> int:
    total = 0
    for dirpath, _dirs, files in os.walk(path):
        for f in files:
            try:
                total += os.path.getsize(os.path.join(dirpath, f))
            except OSError:
                pass
    return total


def _cleanup() -> None:
    for s in list(_live):
        try:
            s.stop()
        except Exception:
            pass


atexit.register(_cleanup)


class Sampler:
    """Samples server RSS and threads every ``every`` s in a thread."""

    def __init__(self, srv: ServerProc, every: float = 0.5):
        self.srv, self.every = srv, every
        self.max_rss = 0.0
        self.max_threads = 0
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> "Sampler":
        self._t.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._t.join(2)

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            st = self.srv.status()
            if st["rss_mb"]:
                self.max_rss = max(self.max_rss, st["rss_mb"])
            if st["threads"]:
                self.max_threads = max(self.max_threads, st["threads"])


# ---------------------------------------------------------------------------
# a plain blocking client: probes, users, history and search timings
# ---------------------------------------------------------------------------
def probe(port: int, name: str, caps: bool = False, keep: bool = False,
          timeout: float = 10.0) -> dict:
    """Connect, hello, wait for the welcome.  ``welcome_s`` is the time from
    connect() to the welcome line (None if it did not come within ``timeout``).
    With ``keep`` the socket stays open in ``sock`` (else bye and close)."""
    t0 = time.monotonic()
    out: dict = {"welcome_s": None, "sock": None, "buf": b"", "users": None, "error": None}
    try:
        s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    except OSError as e:
        out["error"] = f"connect: {e}"
        return out
    hello: dict = {"type": "hello", "version": 1, "name": name, "client": "bench-probe"}
    if caps:
        hello["caps"] = ["rooms"]
    try:
        s.sendall(json.dumps(hello).encode() + b"\n")
        out["sock"] = s
        obj = read_frame(out, lambda o: o.get("type") in ("welcome", "error"),
                         t0 + timeout)
        if obj is not None and obj.get("type") == "welcome":
            out["welcome_s"] = time.monotonic() - t0
            out["users"] = len(obj.get("users") or [])
            if keep:
                return out
            s.sendall(b'{"type":"bye"}\n')
        elif obj is not None:
            out["error"] = obj.get("code")
    except (OSError, ValueError) as e:
        out["error"] = f"{type(e).__name__}: {e}"
    out["sock"] = None
    s.close()
    return out


def read_frame(conn: dict, want, deadline: float) -> Optional[dict]:
    """Read frames from ``conn["sock"]`` until ``want(frame)``; answer pings.
    None at EOF or at the deadline."""
    s = conn["sock"]
    buf = conn["buf"]
    while True:
        nl = buf.find(b"\n")
        while nl >= 0:
            line, buf = buf[:nl], buf[nl + 1:]
            if line.strip():
                obj = json.loads(line)
                if obj.get("type") == "ping":
                    s.sendall(json.dumps({"type": "pong", "token": obj.get("token")}).encode()
                              + b"\n")
                elif want(obj):
                    conn["buf"] = buf
                    return obj
            nl = buf.find(b"\n")
        left = deadline - time.monotonic()
        if left <= 0:
            conn["buf"] = buf
            return None
        s.settimeout(left)
        try:
            data = s.recv(262144)
        except socket.timeout:
            conn["buf"] = buf
            return None
        if not data:
            conn["buf"] = buf
            return None
        buf += data


def request(conn: dict, frame: dict, answer_type: str, timeout: float = 10.0) -> Optional[dict]:
    """Send a labelled request; return its answer (or an error with its label)."""
    label = frame["label"]
    conn["sock"].sendall(json.dumps(frame).encode() + b"\n")
    return read_frame(conn, lambda o: o.get("label") == label and
                      o.get("type") in (answer_type, "error"), time.monotonic() + timeout)


_users_seq = [0]


def ask_users(conn: dict, timeout: float = 5.0) -> Optional[list]:
    _users_seq[0] += 1
    try:
        r = request(conn, {"type": "users", "label": f"u{_users_seq[0]}"}, "users", timeout)
    except (OSError, ValueError):
        return None
    return r.get("users") if r and r.get("type") == "users" else None


def query_timings(conn: dict, info: Optional[dict], n: int) -> tuple[list, list, dict]:
    """History pages of 100 in a filled room and full-text searches, one at a
    time; the seconds each took from request to answer (through the server),
    and how many messages the answers held."""
    got = {"history": 0, "results": 0}
    if info is None or n <= 0:
        return [], [], got
    rng = random.Random(11)
    room = info["query_room"]
    r = request(conn, {"type": "join", "room": room, "label": "jq"}, "room", 30)
    if r is None or r.get("type") != "room":
        raise RuntimeError(f"could not join {room}: {r}")
    hist, search = [], []
    lo, hi = info["first_id"], info["last_id"]
    for k in range(n):
        before = rng.randint(lo + 1, hi + 1)
        t = time.monotonic()
        r = request(conn, {"type": "history", "room": room, "before": before, "limit": 100,
                           "label": f"h{k}"}, "history", 30)
        if r is None or r.get("type") != "history":
            raise RuntimeError(f"history failed: {r}")
        hist.append(time.monotonic() - t)
        got["history"] += len(r.get("messages") or [])
    words = info["words"]
    for k in range(n):
        kind = k % 5
        if kind in (0, 1):                       # a common word
            q = words[rng.randrange(0, 50)]
        elif kind in (2, 3):                     # any word
            q = words[rng.randrange(0, len(words))]
        else:                                    # two words, both required
            q = f"{words[rng.randrange(0, 500)]} {words[rng.randrange(0, 500)]}"
        t = time.monotonic()
        r = request(conn, {"type": "search", "query": q, "limit": 50, "label": f"s{k}"},
                    "results", 30)
        if r is None or r.get("type") != "results":
            raise RuntimeError(f"search {q!r} failed: {r}")
        search.append(time.monotonic() - t)
        got["results"] += len(r.get("messages") or [])
    return hist, search, got


# ---------------------------------------------------------------------------
# a big history, written straight into the store's schema
# ---------------------------------------------------------------------------
def _vocab(rng: random.Random, size: int) -> list[str]:
    cons, vows = "bcdfghjklmnprstvwz", "aeiou"
    words, seen = [], set()
    while len(words) < size:
        w = "".join(rng.choice(cons) + rng.choice(vows) for _ in range(rng.randint(2, 4)))
        if w not in seen:
            seen.add(w)
            words.append(w)
    return words


def fill_db(path: str, count: int, rooms: int = 100, users: int = 1000, dm_frac: float = 0.1,
            seed: int = 7) -> dict:
    """Make the Parley database at ``path`` hold ``count`` chat messages (adding
    to what it has), written through the store's own API (``Store.submit``, its
    writer thread and group commit), so the schema, the full-text index and
    whatever else the store keeps are exactly what a live server writes: spread
    over #general and ``rooms`` rooms, a share ``dm_frac`` as direct messages
    between ``users`` sessions; 8 to 16 words each from a Zipf-distributed
    vocabulary."""
    import hashlib
    src = os.path.join(os.path.dirname(os.path.abspath(parley_server_path())), "src")
    if src not in sys.path:       # the store of the server under test
        sys.path.insert(0, src)
    from parley.server.store import Store, Write
    rng = random.Random(seed)
    words = _vocab(rng, 5000)
    cum, acc = [], 0.0
    for k in range(len(words)):
        acc += 1.0 / (k + 1)
        cum.append(acc)
    keys = ["#general"] + [f"#r{k}" for k in range(rooms)]
    sids = [f"{k:016x}" for k in range(users)]
    st = Store(path)
    st.open()
    try:
        have = st.last_id
        rng.seed(seed + have)
        st.start(None)
        if not have:
            for k in keys:
                st.submit(Write(op="room", room=k, name=k))
            for k, sid in enumerate(sids):
                st.submit(Write(op="session", sid=sid, name=f"u{k}",
                                token_hash=hashlib.sha256(sid.encode()).digest()))
        choices, randrange, rand = rng.choices, rng.randrange, rng.random
        todo = max(0, count - have)
        while todo > 0:
            for _ in range(min(20000, todo)):
                text = " ".join(choices(words, cum_weights=cum, k=8 + randrange(9)))
                a = randrange(users)
                if rand() < dm_frac:
                    b = randrange(users)
                    st.submit(Write(op="event", kind="say", room=None, sender=f"u{a}",
                                    sender_sid=sids[a], target=f"u{b}", target_sid=sids[b],
                                    text=text))
                else:
                    st.submit(Write(op="event", kind="say", room=keys[randrange(len(keys))],
                                    sender=f"u{a}", sender_sid=sids[a], text=text))
                todo -= 1
            if not st.flush(600):
                raise RuntimeError("the store did not commit the fill within 600 s")
        last = st.last_id
    finally:
        st.close()
    return {"first_id": 1, "last_id": last, "words": words,
            "query_room": keys[2 % len(keys)], "count": last}


# ---------------------------------------------------------------------------
# results
# ---------------------------------------------------------------------------
@dataclass
class Row:
    scenario: str
    server: str
    clients: int
    deliv_s: Optional[float] = None
    p50: Optional[float] = None
    p99: Optional[float] = None
    max: Optional[float] = None
    rss: Optional[float] = None
    hwm: Optional[float] = None
    threads: Optional[int] = None
    connect_s: Optional[float] = None
    notes: str = ""
    extra: dict = field(default_factory=dict)


def _f(v: Any, fmt: str = "{:.1f}") -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return fmt.format(v)
    return str(v)


def _deliv(v: Optional[float]) -> str:
    return "-" if v is None else f"{v:,.0f}"


HEAD = ("scenario", "server", "clients", "deliveries/s", "p50 ms", "p99 ms", "max ms",
        "RSS MB", "peak MB", "threads", "connect s", "notes")


def table(rows: list[Row]) -> str:
    cells = [HEAD] + [(r.scenario, r.server, f"{r.clients:,}", _deliv(r.deliv_s), _f(r.p50),
                       _f(r.p99), _f(r.max), _f(r.rss), _f(r.hwm), _f(r.threads),
                       _f(r.connect_s, "{:.2f}"), r.notes) for r in rows]
    w = [max(len(c[i]) for c in cells) for i in range(len(HEAD) - 1)]
    lines = []
    for k, c in enumerate(cells):
        lines.append("| " + " | ".join(c[i].ljust(w[i]) for i in range(len(w))) + " | " + c[-1])
        if k == 0:
            lines.append("|" + "|".join("-" * (x + 2) for x in w) + "| ---")
    return "\n".join(lines)


def print_row(r: Row) -> None:
    print(table([r]).splitlines()[-1], flush=True)


# ---------------------------------------------------------------------------
# a session: one server, one load generator, N registered clients
# ---------------------------------------------------------------------------
class Bench:
    def __init__(self, args):
        self.args = args
        self.quick = args.quick
        self.logdir = tempfile.mkdtemp(prefix="parley-bench-")
        self.rows: list[Row] = []
        self.counter = 0
        # "quiet" = no frame for this long: the previous step's traffic is over
        self.q_idle = 0.25 if self.quick else 1.0
        self.q_short = 0.2 if self.quick else 0.5

    def server(self, kind: str, tag: str, flood_limits: bool = False,
               parley_args: Optional[list] = None) -> ServerProc:
        self.counter += 1
        extra = list(parley_args or []) + list(self.args.parley_arg or [])
        srv = ServerProc(kind, self.logdir, f"{self.counter:02d}-{tag}", flood_limits, extra)
        srv.start()
        return srv

    def loadgen(self, srv: ServerProc, tls: bool = False, ws: bool = False) -> LoadGen:
        # ngircd listens with a backlog of 10 and accepts one connection per
        # turn of its loop: more handshakes in flight overflow its accept
        # queue (SYN retransmits, seconds lost); fewer leave it idle.  16 per
        # worker measured fastest at 4,000 clients.
        inflight = 16 if srv.kind == "ngircd" else 32
        lg = LoadGen("127.0.0.1", srv.tls_port if tls else srv.port, srv.proto,
                     workers=self.args.workers, max_inflight=inflight, reg_timeout=120.0,
                     tls=tls, ws=ws)
        lg.start()
        return lg

    @staticmethod
    def recipients(srv: ServerProc, n: int) -> int:
        """Deliveries per message: IRC does not echo a message to its sender."""
        return n - 1 if srv.proto == IRC else n

    def connect(self, lg: LoadGen, idxs, timeout: float, modes: Optional[dict] = None,
                track: bool = False, sample: int = 100, **kw) -> dict:
        """Connect and register ``idxs``; ``kw``: caps, rooms_of, part_general."""
        idxs = list(idxs)
        t0 = time.time_ns()
        total_before = lg.stats()["registered"]
        lg.connect(idxs, modes=modes, sample_every=max(1, len(idxs) // sample), track=track,
                   **kw)
        s = lg.wait_registered(total_before + len(idxs), timeout)
        s["connect_s"] = (s["last_reg_ns"] - t0) / 1e9 if s["last_reg_ns"] else None
        s["connect_ns"] = lg.stats(lat=True)["connect_ns"]
        s["t0_ns"] = t0
        return s

    def add(self, row: Row) -> None:
        self.rows.append(row)
        print_row(row)

    def servers(self, names: Optional[str] = None) -> list[str]:
        out = []
        for k in (names or self.args.servers).split(","):
            k = k.strip()
            if k == "parley" and not os.path.exists(parley_server_path()):
                log(f"skip parley: {parley_server_path()} does not exist")
                continue
            if k == "ngircd" and not os.path.exists(NGIRCD):
                log(f"skip ngircd: {NGIRCD} does not exist (Debian: apt-get install ngircd)")
                continue
            out.append(k)
        return out

    def run_each(self, name: str, fn, kinds: Optional[list] = None) -> None:
        for kind in (kinds if kinds is not None else self.servers()):
            log(f"--- {name} on {kind}")
            t = time.monotonic()
            first_row = len(self.rows)
            load0 = os.getloadavg()[0]
            busy0, total0 = machine_busy()
            try:
                fn(kind)
            except Exception as e:  # keep going: report, next server
                import traceback
                traceback.print_exc()
                self.add(Row(name, kind, 0, notes=f"FAILED: {type(e).__name__}: {e}"[:300]))
            busy1, total1 = machine_busy()
            ncpu = os.cpu_count() or 1
            use = (busy1 - busy0) / (total1 - total0) if total1 > total0 else 0.0
            machine = (f"machine during the scenario: {use:.0%} of {ncpu} CPUs busy (all "
                       f"processes), load average {load0:.1f} -> {os.getloadavg()[0]:.1f}")
            for r in self.rows[first_row:]:
                r.notes += "; " + machine
                r.extra["machine_busy"] = use
            log(f"    ({time.monotonic() - t:.1f} s; {machine})")

    def check_log(self, srv: ServerProc) -> str:
        text = srv.log_text()
        bad = [ln for ln in text.splitlines() if "Traceback" in ln or " ERROR" in ln
               or ln.startswith("ERROR")]
        if srv.kind == "parley" and bad:
            return f"server log: {len(bad)} Traceback/ERROR lines (first: {bad[0][:120]})"
        return ""

    # --- S1 ----------------------------------------------------------------
    def s1(self, kind: str) -> None:
        self._s1(kind, caps=False)
        if kind == "parley":
            self._s1(kind, caps=True)

    def s1tls(self, kind: str) -> None:
        """S1 over TLS (Parley only), after the same burst over plain TCP for comparison."""
        if kind != "parley":
            log(f"    s1tls: Parley only, {kind} skipped")
            return
        self._s1(kind, caps=False)
        self._s1(kind, caps=False, tls=True)

    def s1ws(self, kind: str) -> None:
        """S1 over WebSocket (Parley only), after the same burst over plain TCP."""
        if kind != "parley":
            log(f"    s1ws: Parley only, {kind} skipped")
            return
        self._s1(kind, caps=False)
        self._s1(kind, caps=False, ws=True)

    def _s1(self, kind: str, caps: bool, tls: bool = False, ws: bool = False) -> None:
        n = 200 if self.quick else self.args.s1_clients
        rounds = 1 if self.quick else 3
        extra = ["--tls-self-signed", "--tls-port", "0"] if tls else None
        srv = self.server(kind, "s1-ws" if ws else "s1-tls" if tls else "s1-caps" if caps
                          else "s1", parley_args=extra)
        lg = self.loadgen(srv, tls=tls, ws=ws)
        try:
            with Sampler(srv) as smp:
                c = self.connect(lg, range(n), timeout=120, caps=caps)
                lg.wait_quiet(idle=self.q_short, timeout=60)
                recip = self.recipients(srv, c["registered"])
                senders = list(range(10))
                rates, lats, notes = [], [], []
                cpu_s = lcpu_s = busy = 0.0
                total = 0
                for r in range(rounds):
                    lg.stats(reset=True, lat=True)
                    cpu0, lcpu0 = srv.cpu(), lg.cpu()
                    t_first = lg.burst(senders, 25)
                    expected = 10 * 25 * recip
                    s = lg.wait_marks(expected, timeout=60, idle=5)
                    cpu_s += srv.cpu() - cpu0
                    lcpu_s += lg.cpu() - lcpu0
                    got = lg.stats(lat=True)
                    total += got["marks"]
                    lats += got["lat"]
                    el = (got["last_mark_ns"] - t_first) / 1e9 if got["last_mark_ns"] else None
                    rate = got["marks"] / el if el else None
                    rates.append(rate)
                    busy += el or 0.0
                    log(f"    round {r + 1}: {got['marks']}/{expected} deliveries in "
                        f"{_f(el, '{:.3f}')} s = {_deliv(rate)}/s; lost {got['lost']}"
                        f" {got['lost_reasons']}")
                    if not s["complete"]:
                        notes.append(f"round {r + 1} incomplete {got['marks']}/{expected}")
                    lg.wait_quiet(idle=0.3, timeout=30)
            p = percentiles(lats)
            st = srv.status()
            ok = [x for x in rates if x]
            med = sorted(ok)[len(ok) // 2] if ok else None
            per_m = 1e6 / total if total else 0.0
            notes.insert(0, f"median of {rounds} bursts {', '.join(_deliv(x) for x in rates)}"
                            f"; {busy:.2f} s of bursts used server CPU {cpu_s:.2f} s, loadgen"
                            f" CPU {lcpu_s:.2f} s (per million deliveries: server "
                            f"{cpu_s * per_m:.2f} s, loadgen {lcpu_s * per_m:.2f} s)")
            self.add(Row("S1 fan-out burst" + (" (cap rooms)" if caps else "")
                         + (" (TLS)" if tls else "") + (" (WebSocket)" if ws else ""),
                         kind, n, med,
                         p["p50"], p["p99"], p["max"],
                         st["rss_mb"], st["hwm_mb"], smp.max_threads or st["threads"],
                         c["connect_s"], "; ".join(notes),
                         {"rates": rates, "lat_samples": p["n"]}))
        finally:
            lg.stop()
            srv.stop()

    # --- S2 ----------------------------------------------------------------
    def steady_run(self, srv: ServerProc, lg: LoadGen, n_recv: int, msgs_s: float,
                   duration: float, senders, also=None, **kw) -> dict:
        """``msgs_s`` messages/s round-robin over ``senders`` for ``duration`` s;
        ``also()`` starts at the same moment (the flooder); ``kw`` go to
        LoadGen.steady.  With ``room_sizes`` the expected deliveries are
        counted by the load generator, else ``n_recv`` per message."""
        lg.stats(reset=True, lat=True)
        cpu0, lcpu0 = srv.cpu(), lg.cpu()
        m0 = machine_busy()[0]
        t0 = time.monotonic()
        if also is not None:
            also()
        lg.steady(senders, msgs_s, duration, **kw)
        time.sleep(duration)
        cpu1, lcpu1 = srv.cpu(), lg.cpu()
        m1 = machine_busy()[0]
        wall = time.monotonic() - t0
        s = lg.wait_quiet(idle=self.q_idle, timeout=5 if self.quick else 30)
        got = lg.stats(lat=True)
        recip = self.recipients(srv, n_recv)
        span = ((got["last_mark_ns"] - got["first_send_ns"]) / 1e9
                if got["last_mark_ns"] and got["first_send_ns"] else duration)
        expected = got["expected"] if kw.get("room_sizes") else got["sent"] * recip
        return {"sent": got["sent"], "marks": got["marks"], "expected": expected,
                "deliv_s": got["marks"] / max(span, duration), "lat": got["lat"],
                "cpu": (cpu1 - cpu0) / wall, "lcpu": (lcpu1 - lcpu0) / wall,
                "other": max(0.0, (m1 - m0) - (cpu1 - cpu0) - (lcpu1 - lcpu0)) / wall,
                "stats": got, "quiet": s.get("quiet")}

    def s2(self, kind: str) -> None:
        n = 200 if self.quick else self.args.s2_clients
        duration = 1.5 if self.quick else 10.0
        srv = self.server(kind, "s2")
        lg = self.loadgen(srv)
        try:
            with Sampler(srv) as smp:
                c = self.connect(lg, range(n), timeout=120)
                lg.wait_quiet(idle=self.q_short, timeout=60)
                recip = self.recipients(srv, c["registered"])
                msgs_s = 20000.0 / recip
                r = self.steady_run(srv, lg, c["registered"], msgs_s, duration,
                                    list(range(min(100, n))))
            p = percentiles(r["lat"])
            st = srv.status()
            self.add(Row("S2 steady 20k/s", kind, n, r["deliv_s"], p["p50"], p["p99"], p["max"],
                         st["rss_mb"], st["hwm_mb"], smp.max_threads or st["threads"],
                         c["connect_s"],
                         f"{msgs_s:.1f} msg/s for {duration:g} s; delivered "
                         f"{r['marks']:,}/{r['expected']:,}; server CPU {r['cpu']:.0%}, "
                         f"loadgen CPU {r['lcpu']:.0%}, other processes {r['other']:.0%}"))
        finally:
            lg.stop()
            srv.stop()

    # --- S3 ----------------------------------------------------------------
    def s3(self, kind: str) -> None:
        self._s3(kind, caps=False)

    def s3r(self, kind: str) -> None:
        """S3 with clients that have the rooms cap (Parley only)."""
        if kind != "parley":
            log("    S3r needs the rooms cap: Parley only")
            return
        self._s3(kind, caps=True)

    def _s3(self, kind: str, caps: bool) -> None:
        n = 500 if self.quick else self.args.s3_clients
        reg_timeout = 30.0 if self.quick else self.args.s3_timeout
        srv = self.server(kind, "s3r" if caps else "s3",
                          parley_args=["--max-clients", str(max(20000, 2 * n))])
        lg = self.loadgen(srv)
        try:
            with Sampler(srv) as smp:
                cpu0, lcpu0 = srv.cpu(), lg.cpu()
                c = self.connect(lg, range(n), timeout=reg_timeout, caps=caps)
                cpu_reg, lcpu_reg = srv.cpu() - cpu0, lg.cpu() - lcpu0
                reg = c["registered"]
                t_reg = time.monotonic()
                q = lg.wait_quiet(idle=self.q_idle,
                                  timeout=30 if c.get("timed_out") else reg_timeout)
                drain = time.monotonic() - t_reg - (self.q_idle if q.get("quiet") else 0.0)
                st_reg = srv.status()
                lg.stats(reset=True, lat=True)
                t_first = lg.burst([0], 1)
                recip = self.recipients(srv, reg)
                lg.wait_marks(recip, timeout=60, idle=10)
                got = lg.stats(lat=True)
                one = (got["last_mark_ns"] - t_first) / 1e9 if got["last_mark_ns"] else None
                st = srv.status()
            cs = percentiles(c.get("connect_ns", []) or [])
            p = percentiles(got["lat"])
            dropped = c["failed"] + q["lost"]
            notes = (f"registered {reg:,}/{n:,} in {_f(c['connect_s'], '{:.2f}')} s"
                     f"{' (TIMED OUT)' if c.get('timed_out') else ''}; dropped {dropped}"
                     f" {dict(c['fail_reasons'], **q['lost_reasons'])}; join notices "
                     f"{q['joins']:,} drained {drain:.1f} s after{'' if q.get('quiet') else ' (NOT quiet)'}"
                     f"; RSS after join {_f(st_reg['rss_mb'])} MB; CPU while registering: "
                     f"server {cpu_reg:.1f} s, loadgen {lcpu_reg:.1f} s; connect p50/p99/max "
                     f"{_f(cs['p50'] and cs['p50'] / 1e3, '{:.2f}')}/"
                     f"{_f(cs['p99'] and cs['p99'] / 1e3, '{:.2f}')}/"
                     f"{_f(cs['max'] and cs['max'] / 1e3, '{:.2f}')} s; one message reached "
                     f"{got['marks']:,} clients ({recip:,} expected) in {_f(one, '{:.3f}')} s")
            notes += (f"; welcomes {c['welcomes']:,}, presence frames {q.get('presence', 0):,}"
                      f"; server peak RSS {_f(smp.max_rss)} MB")
            self.add(Row("S3 connect storm" + (" (cap rooms)" if caps else ""), kind, n, None,
                         p["p50"], p["p99"], p["max"],
                         st["rss_mb"], st["hwm_mb"], smp.max_threads or st["threads"],
                         c["connect_s"], notes,
                         {"one_msg_s": one, "join_drain_s": drain, "connect": cs}))
        finally:
            lg.stop()
            srv.stop()

    # --- S4 ----------------------------------------------------------------
    def burst_rounds(self, srv: ServerProc, lg: LoadGen, recip: int, duration: float,
                     idle: float, max_duration: float = 0.0, stop_when=None) -> dict:
        """Back-to-back S1 bursts (10 senders x 25) for ``duration`` s; then, while
        ``stop_when()`` is false, on up to ``max_duration`` s.  Each burst waits
        until delivered to all ``recip`` (or no progress for ``idle`` s)."""
        lg.stats(reset=True, lat=True)
        t0 = time.monotonic()
        t_end, t_max = t0 + duration, t0 + max(duration, max_duration)
        rounds, stuck = 0, 0
        first = last = 0
        cpu0 = srv.cpu()
        base = lg.stats()["marks"]
        while True:
            now = time.monotonic()
            if now >= t_max or (now >= t_end and (stop_when is None or stop_when())):
                break
            t_first = lg.burst(list(range(10)), 25)
            first = first or t_first
            s = lg.wait_marks(base + 250 * recip, timeout=30, idle=idle)
            rounds += 1
            base = s["marks"]
            if not s["complete"]:
                stuck += 1
                if stuck >= 2:
                    break
        got = lg.stats(lat=True)
        last = got["last_mark_ns"]
        span = (last - first) / 1e9 if last and first else None
        stalled_at = ((last - first) / 1e9) if stuck and last and first else None
        return {"marks": got["marks"], "rounds": rounds, "stuck": stuck, "span": span,
                "stalled_at": stalled_at,
                "deliv_s": got["marks"] / span if span else None, "lat": got["lat"],
                "expected": rounds * 250 * recip, "stats": got,
                "cpu": (srv.cpu() - cpu0) / (time.monotonic() - t0)}

    def s4(self, kind: str) -> None:
        n = 200 if self.quick else self.args.s4_clients
        duration = 1.0 if self.quick else 20.0
        max_duration = 2.0 if self.quick else 60.0
        idle = 1.5 if self.quick else 3.0
        bad_names = {f"u{n}", f"u{n + 1}"}
        results = {}
        for variant in ("without", "with"):
            # Parley at info level logs who left and why ("u1000 left (sendq_exceeded)"):
            # in a big room the others only get a coalesced presence frame, without reasons
            srv = self.server(kind, f"s4-{variant}",
                              parley_args=["--log-level", "info"] if variant == "with" else None)
            lg = self.loadgen(srv)
            try:
                with Sampler(srv) as smp:
                    modes = {n: "stall", n + 1: "slow"} if variant == "with" else {}
                    total = n + len(modes)
                    c = self.connect(lg, range(total), timeout=120, modes=modes)
                    lg.wait_quiet(idle=self.q_short, timeout=60)
                    t_start = time.time_ns()
                    recip = self.recipients(srv, n)    # the stalled ones count nothing

                    def bad_gone() -> bool:
                        gone = {who for _, who, _ in lg.stats()["leaves"]}
                        if srv.kind == "parley":     # protocol-1 clients see no presence frames
                            gone |= {who for _, who, _ in server_leaves(srv.log_text(), bad_names)}
                        return bad_names <= gone

                    r = self.burst_rounds(srv, lg, recip, duration, idle,
                                          max_duration if modes else 0.0,
                                          bad_gone if modes else None)
                    st = srv.status()
                    stats = lg.stats()
                    drained = lg.drain(seconds=1.0 if self.quick else 5.0) if modes else {}
                    r.update(status=st, threads=smp.max_threads, t_start=t_start,
                             leaves=stats["leaves"], drained=drained, connect_s=c["connect_s"],
                             lost=stats["lost_reasons"])
                    results[variant] = r
            finally:
                lg.stop()
                srv.stop()
            if kind == "parley" and variant == "with":
                results[variant]["server_leaves"] = server_leaves(srv.log_text(), bad_names)
        a, b = results["without"], results["with"]
        drop = (1 - b["deliv_s"] / a["deliv_s"]) if a["deliv_s"] and b["deliv_s"] else None
        bad = {}
        for when, who, why in sorted(b["leaves"] + b.get("server_leaves", [])):
            if who in bad_names and who not in bad:
                bad[who] = f"left '{why}' at {(when - b['t_start']) / 1e9:.1f} s"
        for d in b["drained"].values():
            who = d["name"]
            by = d["bye"].get("reason") if isinstance(d["bye"], dict) and "reason" in d["bye"] \
                else (d["bye"] or {}).get("raw") if d["bye"] else None
            end = ("closed (EOF)" if d["eof"] else f"closed ({d['error']})" if d["error"]
                   else "still open")
            bad.setdefault(who, "no leave notice seen")
            bad[who] += (f"; at end: {end}, bye frame: {by or 'none'}, "
                         f"{d['bytes_read_at_end']:,} B were unread")
        for variant, r in (("without", a), ("with", b)):
            p = percentiles(r["lat"])
            notes = (f"{r['rounds']} bursts in {_f(r['span'])} s, delivered {r['marks']:,}/"
                     f"{r['expected']:,}"
                     f"{'; STALLED: nobody received anything after %.1f s' % r['stalled_at'] if r['stalled_at'] else ''}"
                     f"; server CPU "
                     f"{r['cpu']:.0%}")
            if r["lost"]:
                notes += f"; disconnects {r['lost']}"
            if variant == "with":
                notes += (f"; others' throughput vs without: "
                          f"{'-' if drop is None else f'{-drop:+.1%}'}; "
                          + "; ".join(f"{'never reads' if k == f'u{n}' else 'reads 1 B/s'} "
                                      f"{k}: {v}" for k, v in sorted(bad.items())))
            self.add(Row(f"S4 slow consumers {variant}", kind, n + (2 if variant == "with" else 0),
                         r["deliv_s"], p["p50"], p["p99"], p["max"], r["status"]["rss_mb"],
                         r["status"]["hwm_mb"], r["threads"], r["connect_s"], notes))

    # --- S5 ----------------------------------------------------------------
    def s5(self, kind: str) -> None:
        n = 200 if self.quick else self.args.s5_clients
        duration = 1.5 if self.quick else 10.0
        results = {}
        for variant in ("without", "with"):
            srv = self.server(kind, f"s5-{variant}", flood_limits=True)
            lg = self.loadgen(srv)
            try:
                with Sampler(srv) as smp:
                    modes = {n: "flood"} if variant == "with" else {}
                    c = self.connect(lg, range(n + len(modes)), timeout=120, modes=modes)
                    lg.wait_quiet(idle=self.q_short, timeout=60)
                    recip = self.recipients(srv, n)
                    msgs_s = 20000.0 / recip
                    flood = (lambda: lg.flood(n, duration, reconnect=True)) if modes else None
                    r = self.steady_run(srv, lg, n, msgs_s, duration, list(range(min(100, n))),
                                        also=flood)
                    st = srv.status()
                    r.update(status=st, threads=smp.max_threads, connect_s=c["connect_s"])
                    results[variant] = r
            finally:
                lg.stop()
                srv.stop()
        a, b = results["without"], results["with"]
        for variant, r in (("without", a), ("with", b)):
            p = percentiles(r["lat"])
            s = r["stats"]
            notes = (f"delivered {r['marks']:,}/{r['expected']:,}; server CPU {r['cpu']:.0%}")
            if variant == "with":
                kicks = s["flood_kicks"]
                why = {}
                for _, reason in kicks:
                    why[reason] = why.get(reason, 0) + 1
                pa, pb = percentiles(a["lat"]), p
                notes += (f"; flooder wrote {s['flood_sent']:,} msgs into its socket, got "
                          f"{s['rate_limited']:,} "
                          f"rate_limited errors, disconnected {len(kicks)}x {why}, "
                          f"{s['flood_marks']:,} flood deliveries reached the others; "
                          f"others' p99 {_f(pa['p99'])} -> {_f(pb['p99'])} ms, deliveries "
                          f"{_deliv(a['deliv_s'])} -> {_deliv(b['deliv_s'])}/s")
            self.add(Row(f"S5 flood {variant}", kind, n + (1 if variant == "with" else 0),
                         r["deliv_s"], p["p50"], p["p99"], p["max"], r["status"]["rss_mb"],
                         r["status"]["hwm_mb"], r["threads"], r["connect_s"], notes))

    # --- S6 ----------------------------------------------------------------
    def s6(self, kind: str) -> None:
        n = 100 if self.quick else self.args.s6_clients
        minutes = 0.1 if self.quick and self.args.soak_minutes is None else \
            (self.args.soak_minutes if self.args.soak_minutes is not None else 10.0)
        duration = minutes * 60
        rate = self.args.s6_rate
        churn = self.args.s6_churn if self.args.s6_churn is not None else \
            (0.05 if self.quick else 0.002)
        srv = self.server(kind, "s6")
        lg = self.loadgen(srv)
        samples = []
        try:
            c = self.connect(lg, range(n), timeout=120, track=True)
            lg.wait_quiet(idle=self.q_short, timeout=60)
            lg.stats(reset=True, lat=True)
            t0 = time.monotonic()
            st0 = srv.status()
            samples.append((0.0, st0["rss_mb"], st0["threads"]))
            lg.steady(None, rate, duration, label=True)
            lg.call_all("churn", rate=churn, duration=duration)
            lats = []
            next_sample = t0 + (3 if self.quick else 10)
            while time.monotonic() < t0 + duration:
                time.sleep(min(1.0, max(0.0, next_sample - time.monotonic())))
                if time.monotonic() >= next_sample:
                    st = srv.status()
                    s = lg.stats(lat=True)
                    lats += s["lat"]
                    samples.append((time.monotonic() - t0, st["rss_mb"], st["threads"]))
                    log(f"    soak t={time.monotonic() - t0:5.0f} s RSS {_f(st['rss_mb'])} MB "
                        f"threads {st['threads']} ready {s['ready']}/{n} sent {s['sent']} "
                        f"reconnects {s['reconnects']} errors {s['errors']} byes {s['byes']}")
                    next_sample += 3 if self.quick else 10
                if not srv.alive():
                    log("    server died during the soak")
                    break
            lg.call_all("churn_stop")
            lg.call_all("steady_stop")
            lg.call_all("reconnect_all")
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and lg.stats()["ready"] < n:
                time.sleep(0.1)
            lg.wait_quiet(idle=1.0 if self.quick else 2.0, timeout=30)
            fin = lg.stats(lat=True)
            lats += fin["lat"]
            st = srv.status()
            samples.append((time.monotonic() - t0, st["rss_mb"], st["threads"]))
            rep = lg.call_all("track_report", timeout=60)
        finally:
            lg.stop()
            alive = srv.alive()
            srv.stop()
        msg_ids: set[int] = set()
        acked: set[int] = set()
        clients = {}
        for r in rep:
            msg_ids.update(r["msg_ids"])
            acked.update(r["ack_ids"])
            clients.update(r["clients"])
        all_ids = msg_ids | acked
        unseen_acked = acked - msg_ids
        missing_total, short, truncated, dups, not_ready, hist = 0, {}, 0, 0, 0, 0
        top = max(all_ids) if all_ids else 0
        for idx, cl in clients.items():
            seen = cl["seen"]
            base = cl["base"] if cl["base"] is not None else top
            limit = top if cl["state"] == loadgen.READY else (cl["last_id"] or base)
            if cl["state"] != loadgen.READY:
                not_ready += 1
            miss = [i for i in all_ids if base < i <= limit and (i >= len(seen) or not seen[i])]
            if miss:
                missing_total += len(miss)
                short[cl["name"]] = len(miss)
            truncated += cl["truncated"]
            dups += cl["dups"]
            hist += cl["hist"]
        rss = [x[1] for x in samples if x[1]]
        thr = [x[2] for x in samples if x[2]]
        p = percentiles(lats)
        logline = self.check_log(srv) or "server log: no Traceback/ERROR"
        notes = (f"{minutes:g} min, {rate:g} msg/s, churn {churn:g}/s per client: "
                 f"{fin.get('reconnects', '?')} reconnects; "
                 f"{len(all_ids):,} messages, missing deliveries {missing_total:,}"
                 f"{' ' + str(dict(list(short.items())[:5])) if short else ''}; "
                 f"acked but never delivered {len(unseen_acked)}; history catch-ups carried "
                 f"{hist:,} messages; truncated catch-ups {truncated}; duplicates {dups}; "
                 f"clients not reconnected at end {not_ready}; RSS {_f(rss[0] if rss else None)}"
                 f" -> {_f(rss[-1] if rss else None)} MB, threads {thr[0] if thr else '-'} -> "
                 f"{thr[-1] if thr else '-'} (min {min(thr) if thr else '-'}, max "
                 f"{max(thr) if thr else '-'}); server {'alive' if alive else 'DIED'}; {logline}")
        self.add(Row("S6 soak", kind, n, None, p["p50"], p["p99"], p["max"],
                     rss[-1] if rss else None, st.get("hwm_mb"), thr[-1] if thr else None,
                     c["connect_s"], notes, {"samples": samples}))
        self.soak_samples = samples

    # --- rooms: many clients over many rooms, plus direct messages -------------
    def rooms(self, kind: str) -> None:
        """1,000 clients with the rooms cap, 10 in each of 100 rooms (and all in
        #general); every client sends; a share of the messages are DMs to a
        random client.  Deliveries/s, delivery latency, ack latency."""
        if kind != "parley":
            log("    rooms and DMs need the rooms cap: Parley only")
            return
        a = self.args
        n = 200 if self.quick else a.rooms_clients
        nrooms = 20 if self.quick else a.rooms_count
        duration = 2.0 if self.quick else a.rooms_seconds
        rates = [float(x) for x in a.rooms_rates.split(",") if x.strip()]

        def room_of(i: int) -> str:
            return f"#r{i % nrooms}"

        sizes: dict = {}
        for i in range(n):
            sizes[room_of(i)] = sizes.get(room_of(i), 0) + 1
        srv = self.server(kind, "rooms")
        lg = self.loadgen(srv)
        try:
            with Sampler(srv) as smp:
                c = self.connect(lg, range(n), timeout=120, caps=True,
                                 rooms_of=lambda i: [room_of(i)])
                if c["registered"] < n:
                    raise RuntimeError(f"only {c['registered']}/{n} registered: "
                                       f"{c['fail_reasons']}")
                lg.wait_quiet(idle=self.q_short, timeout=60)
                for rate in rates:
                    r = self.steady_run(srv, lg, 0, rate, duration, list(range(n)),
                                        ack_lat=True, dm_frac=a.rooms_dm, dm_pool=list(range(n)),
                                        room_sizes=sizes, tick=0.001)
                    got = r["stats"]
                    p = percentiles(r["lat"])
                    pa = percentiles(got.get("ack_lat", []))
                    st = srv.status()
                    self.add(Row(f"Rooms {nrooms} rooms + {a.rooms_dm:.0%} DMs", kind, n,
                                 r["deliv_s"], p["p50"], p["p99"], p["max"], st["rss_mb"],
                                 st["hwm_mb"], smp.max_threads or st["threads"], c["connect_s"],
                                 f"{rate:g} msg/s for {duration:g} s ({got['dms']:,} DMs); "
                                 f"delivered {got['marks']:,}/{got['expected']:,}; acks "
                                 f"{got['acks']:,}/{got['sent']:,}, ack p50/p99/max "
                                 f"{_f(pa['p50'])}/{_f(pa['p99'])}/{_f(pa['max'])} ms; "
                                 f"errors {got['errors'] or 0}; server CPU {r['cpu']:.0%}, "
                                 f"loadgen CPU {r['lcpu']:.0%}, other processes {r['other']:.0%}"
                                 f"{'' if r['quiet'] else '; NOT drained'}",
                                 {"rate": rate, "ack": pa}))
        finally:
            lg.stop()
            srv.stop()

    # --- stored throughput: ack after commit ------------------------------------
    def wait_acks(self, lg: LoadGen, target: int, timeout: float, idle: float = 3.0) -> dict:
        deadline = time.monotonic() + timeout
        last, last_change = -1, time.monotonic()
        while True:
            s = lg.stats()
            now = time.monotonic()
            if s["acks"] != last:
                last, last_change = s["acks"], now
            if s["acks"] >= target or now > deadline or now - last_change > idle:
                return s
            time.sleep(0.02)

    def stored(self, kind: str) -> None:
        """Many senders, each alone in its own room (one delivery per message,
        so the store, not fan-out, is what is measured); every message is
        labelled and acknowledged after its commit.  A steady 2,000 msg/s for the
        ack latency, then an offered-rate ladder for sustained throughput."""
        if kind != "parley":
            log("    ack after commit: Parley only")
            return
        a = self.args
        n = 50 if self.quick else a.stored_clients
        duration = 1.5 if self.quick else a.stored_seconds
        rates = [float(x) for x in a.stored_rates.split(",") if x.strip()]
        # the steady run first, on a fresh server (the ladder leaves a backlog of
        # index merging and a grown heap behind it)
        plan = [(a.stored_steady, 2.0 if self.quick else a.stored_steady_seconds, "steady")] + \
            [(r, duration, "ladder") for r in rates]
        sizes = {f"#s{i}": 1 for i in range(n)}
        srv = self.server(kind, "stored")
        lg = self.loadgen(srv)
        total_stored = 0
        rows = []
        try:
            with Sampler(srv) as smp:
                c = self.connect(lg, range(n), timeout=120, caps=True,
                                 rooms_of=lambda i: [f"#s{i}"], part_general=True)
                if c["registered"] < n:
                    raise RuntimeError(f"only {c['registered']}/{n} registered: "
                                       f"{c['fail_reasons']}")
                lg.wait_quiet(idle=self.q_short, timeout=60)
                for rate, secs, what in plan:
                    lg.stats(reset=True, lat=True)
                    cpu0, lcpu0 = srv.cpu(), lg.cpu()
                    m0 = machine_busy()[0]
                    t0 = time.monotonic()
                    lg.steady(list(range(n)), rate, secs, ack_lat=True, room_sizes=sizes,
                              tick=0.002)
                    time.sleep(secs)
                    sent = lg.stats()["sent"]
                    got = self.wait_acks(lg, sent, timeout=60)
                    wall = time.monotonic() - t0
                    cpu, lcpu = (srv.cpu() - cpu0) / wall, (lg.cpu() - lcpu0) / wall
                    other = max(0.0, (machine_busy()[0] - m0) / wall - cpu - lcpu)
                    got = lg.stats(lat=True)
                    total_stored += got["acks"]
                    span = ((got["last_ack_ns"] - got["first_send_ns"]) / 1e9
                            if got["last_ack_ns"] and got["first_send_ns"] else None)
                    tail = ((got["last_ack_ns"] - got["last_send_ns"]) / 1e9
                            if got["last_ack_ns"] and got["last_send_ns"] else None)
                    acked_s = got["acks"] / span if span else None
                    pa = percentiles(got["ack_lat"])
                    st = srv.status()
                    kept_up = (got["acks"] == got["sent"] and not got["late_skipped"]
                               and tail is not None and tail < 0.5)
                    row = Row(f"Stored {what} (ack after commit)", kind, n, acked_s, pa["p50"],
                              pa["p99"], pa["max"], st["rss_mb"], st["hwm_mb"],
                              smp.max_threads or st["threads"], c["connect_s"],
                              f"offered {rate:,.0f} msg/s for {secs:g} s: sent {got['sent']:,}"
                              f" (late, not sent: {got['late_skipped']:,}), acked "
                              f"{got['acks']:,} = {_deliv(acked_s)} msg/s stored; last ack "
                              f"{_f(tail, '{:.2f}')} s after the last send "
                              f"({'kept up' if kept_up else 'DID NOT keep up'}); "
                              f"delivered {got['marks']:,}; errors {got['errors'] or 0}; "
                              f"server CPU {cpu:.0%}, loadgen CPU {lcpu:.0%}, other processes "
                              f"{other:.0%}; latency columns are the ACK latency",
                              {"offered": rate, "kept_up": kept_up, "tail_s": tail})
                    rows.append(row)
                    self.add(row)
        finally:
            lg.stop()
            srv.stop()
        if total_stored:
            log(f"    database after {total_stored:,} stored messages (and {n} sessions): "
                f"{srv.db_bytes:,} bytes = {srv.db_bytes / total_stored:.0f} B/message")
            for r in rows:
                r.extra["db_bytes"] = srv.db_bytes
                r.extra["stored"] = total_stored

    # --- a mass disconnect ---------------------------------------------------------
    def disconnect(self, kind: str) -> None:
        """N users connected; every socket closed at once (no bye); a new client's
        time to its welcome, probed right away and then every 0.25 s for 5 s;
        and how long until the server's user list is back to the probes."""
        if kind != "parley":
            log("    mass disconnect: Parley only")
            return
        a = self.args
        n = 500 if self.quick else a.disconnect_clients
        for caps in [x.strip() == "caps" for x in a.disconnect_variants.split(",") if x.strip()]:
            self._disconnect(kind, n, caps)

    def _disconnect(self, kind: str, n: int, caps: bool) -> None:
        srv = self.server(kind, "disc-caps" if caps else "disc",
                          parley_args=["--max-clients", str(max(20000, 2 * n))])
        lg = self.loadgen(srv)
        probes: list = []
        try:
            with Sampler(srv) as smp:
                c = self.connect(lg, range(n), timeout=self.args.s3_timeout, caps=caps)
                q = lg.wait_quiet(idle=self.q_idle, timeout=self.args.s3_timeout)
                st0 = srv.status()
                base = probe(srv.port, "probe-before", caps=caps)
                watcher = probe(srv.port, "watcher", caps=False, keep=True)
                cpu0 = srv.cpu()
                # every socket closed at once: the workers close theirs in parallel
                t_close = time.monotonic()
                for wid in range(lg.nworkers):
                    lg._send(wid, "close")
                k = 0
                first = probe(srv.port, f"probe{k}", caps=caps)
                probes.append((time.monotonic() - t_close, first))
                for wid in range(lg.nworkers):
                    lg._recv(wid, 60)
                t_closed = time.monotonic() - t_close
                users_empty = None
                next_probe = t_close + 0.25
                while time.monotonic() - t_close < 5.0:
                    now = time.monotonic()
                    if now >= next_probe:
                        k += 1
                        probes.append((now - t_close, probe(srv.port, f"probe{k}", caps=caps)))
                        next_probe += 0.25
                    if users_empty is None and watcher["sock"] is not None:
                        users = ask_users(watcher, timeout=5.0)
                        if users is not None and len(users) <= 2:
                            users_empty = time.monotonic() - t_close
                    time.sleep(0.02)
                cpu = srv.cpu() - cpu0
                if watcher["sock"] is not None:
                    watcher["sock"].close()
                st = srv.status()
        finally:
            lg.stop()
            srv.stop()
        waits = [p_["welcome_s"] for _, p_ in probes if p_["welcome_s"] is not None]
        failed = sum(1 for _, p_ in probes if p_["welcome_s"] is None)
        notes = (f"{c['registered']:,} connected in {_f(c['connect_s'], '{:.2f}')} s "
                 f"({'rooms cap' if caps else 'protocol 1'})"
                 f"{'' if q.get('quiet') else ' (joins NOT drained before the close)'}; all closed by the load generator "
                 f"within {t_closed:.2f} s; a new client's welcome: right after the close "
                 f"{_f(first['welcome_s'] and first['welcome_s'] * 1e3)} ms, then "
                 f"{len(probes) - 1} probes over 5 s: max "
                 f"{_f(max(waits) * 1e3 if waits else None)} ms, median "
                 f"{_f(sorted(waits)[len(waits) // 2] * 1e3 if waits else None)} ms, failed "
                 f"{failed}; before the disconnect {_f(base['welcome_s'] and base['welcome_s'] * 1e3)}"
                 f" ms; the server's user list was down to the probes after "
                 f"{_f(users_empty, '{:.2f}')} s; server CPU in those 5 s {cpu:.1f} s; "
                 f"RSS {_f(st0['rss_mb'])} -> {_f(st['rss_mb'])} MB")
        self.add(Row("Mass disconnect" + (" (cap rooms)" if caps else ""), kind, n, None,
                     first["welcome_s"] and first["welcome_s"] * 1e3,
                     None, max(waits) * 1e3 if waits else None, st["rss_mb"], st["hwm_mb"],
                     smp.max_threads or st["threads"], c["connect_s"], notes,
                     {"probes": [(t, p_["welcome_s"]) for t, p_ in probes],
                      "users_empty_s": users_empty}))

    # --- a big database: start time, RSS, pages and searches through the server --
    def bigdb(self, kind: str) -> None:
        """One database filled step by step (e.g. 0, 100,000, 1,000,000 messages);
        at each step the server is started a few times on it: time to listen and
        to a first welcome, RSS; then history pages and searches through the
        server, one at a time."""
        if kind != "parley":
            log("    a stored history: Parley only")
            return
        a = self.args
        steps = [20000] if self.quick else \
            [int(float(x)) for x in a.bigdb_steps.split(",") if x.strip()]
        tmp = tempfile.mkdtemp(prefix="parley-bench-bigdb-")
        try:
            path = os.path.join(tmp, "parley.db")
            for count in steps:
                t = time.monotonic()
                info = fill_db(path, count, rooms=a.bigdb_rooms)
                fill_s = time.monotonic() - t
                size = _dir_bytes(tmp)
                log(f"    filled to {count:,} messages in {fill_s:.1f} s: {size:,} bytes on disk"
                    + (f" ({size / count:.0f} B/message)" if count else ""))
                self._bigdb_step(kind, tmp, count, info, size, fill_s)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    def _bigdb_step(self, kind: str, d: str, n: int, info: dict, size: int,
                    fill_s: float) -> None:
        a = self.args
        starts, rss_start, rss_after, hist, search = [], [], [], [], []
        got = {"history": 0, "results": 0}
        for k in range(a.bigdb_starts):
            self.counter += 1
            srv = ServerProc("parley", self.logdir, f"{self.counter:02d}-bigdb-{n}-{k}",
                             parley_args=["--data-dir", d])
            t0 = time.monotonic()
            srv.start(poll=0.005)
            started = time.monotonic() - t0
            try:
                w = probe(srv.port, "starter", caps=True, keep=True)
                starts.append((started, started + (w["welcome_s"] or float("nan"))))
                rss_start.append(srv.status()["rss_mb"])
                if k == 0 and w["sock"] is not None and n:
                    hist, search, got = query_timings(w, info, a.bigdb_queries)
                    rss_after.append(srv.status()["rss_mb"])
                if w["sock"] is not None:
                    w["sock"].close()
            finally:
                srv.stop()
        ph = percentiles([x * 1e9 for x in hist])
        ps = percentiles([x * 1e9 for x in search])
        st_s = sorted(x[0] for x in starts)
        wl_s = sorted(x[1] for x in starts)
        notes = (f"{n:,} stored messages ({size:,} B on disk"
                 + (f", {size / n:.0f} B/message" if n else "") + f"); start to listening: "
                 f"{', '.join(f'{x:.2f}' for x in st_s)} s, to a first welcome "
                 f"{', '.join(f'{x:.2f}' for x in wl_s)} s ({len(starts)} starts); RSS after "
                 f"start {', '.join(_f(x) for x in rss_start)} MB")
        if n:
            notes += (f", after the queries {_f(rss_after[0] if rss_after else None)} MB; "
                      f"history page of 100 ({ph['n']} pages, {got['history']:,} messages): "
                      f"p50/p99/max {_f(ph['p50'])}/{_f(ph['p99'])}/{_f(ph['max'])} ms; search "
                      f"({ps['n']} queries, at most 50 results, {got['results']:,} in all): "
                      f"p50/p99/max "
                      f"{_f(ps['p50'])}/{_f(ps['p99'])}/{_f(ps['max'])} ms; latency columns: "
                      f"the history page; peak column: RSS after the queries")
        self.add(Row(f"Big database ({n:,} messages)", kind, 1, None, ph["p50"], ph["p99"],
                     ph["max"], rss_start[0] if rss_start else None,
                     rss_after[0] if rss_after else None, None,
                     st_s[len(st_s) // 2] if st_s else None, notes,
                     {"starts": starts, "search": ps, "history": ph, "bytes": size,
                      "fill_s": fill_s}))

    # --- scaling -----------------------------------------------------------
    def scale(self, kind: str) -> None:
        sizes = [10, 100, 1000] if self.quick else [10, 100, 1000, 10000]
        duration = 1.0 if self.quick else 5.0
        msgs_s = self.args.scale_rate
        srv = self.server(kind, "scale")
        lg = self.loadgen(srv)
        have = 0
        try:
            for size in sizes:
                c = self.connect(lg, range(have, size), timeout=self.args.s3_timeout)
                have = size
                q = lg.wait_quiet(idle=self.q_idle, timeout=self.args.s3_timeout)
                if c["registered"] < size:
                    self.add(Row("scale", kind, size, notes=f"only {c['registered']} registered"))
                    break
                r = self.steady_run(srv, lg, size, msgs_s, duration, list(range(min(100, size))))
                p = percentiles(r["lat"])
                st = srv.status()
                self.add(Row("scale", kind, size, r["deliv_s"], p["p50"], p["p99"], p["max"],
                             st["rss_mb"], st["hwm_mb"], st["threads"], c["connect_s"],
                             f"{msgs_s:g} msg/s for {duration:g} s, delivered {r['marks']:,}/"
                             f"{r['expected']:,}; server CPU {r['cpu']:.0%}, loadgen CPU "
                             f"{r['lcpu']:.0%}{'' if q.get('quiet') else '; joins NOT drained'}"))
        finally:
            lg.stop()
            srv.stop()


GROUPS = {
    "issue7": ["s1", "rooms", "stored", "s3", "s3r", "disconnect", "bigdb"],
    "all": ["s1", "s2", "s3", "s3r", "s4", "s5", "scale", "rooms", "stored", "disconnect",
            "bigdb", "s6"],
}


# in a group run, these scenarios run on Parley only (the baselines add minutes of
# timeouts at 10,000 clients); name them alone to run them on every server
PARLEY_ONLY_IN_GROUP = {"s3": "parley", "scale": "parley"}


def main(argv: Optional[list] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog=__doc__.split("\n", 2)[2])
    ap.add_argument("--quick", action="store_true", help="small counts: a smoke run")
    ap.add_argument("--scenarios", default="s1,s2,s3,s4,s5,scale,s6",
                    help="comma list of s1..s6, s3r, scale, rooms, stored, disconnect, bigdb, "
                         "or a group: issue7 (" + ",".join(GROUPS["issue7"]) + "), all "
                         "(default: s1-s6 and scale)")
    ap.add_argument("--servers", default=None,
                    help="comma list (default parley,textbook,ngircd; parley,textbook "
                         "with --quick)")
    ap.add_argument("--workers", type=int, default=2, help="load generator processes")
    ap.add_argument("--soak-minutes", type=float, default=None, help="S6 length (default 10)")
    ap.add_argument("--s1-clients", type=int, default=1000)
    ap.add_argument("--s2-clients", type=int, default=1000)
    ap.add_argument("--s3-clients", type=int, default=10000)
    ap.add_argument("--s3-timeout", type=float, default=120.0,
                    help="bound on registering / draining joins at 10k clients")
    ap.add_argument("--s4-clients", type=int, default=1000)
    ap.add_argument("--s5-clients", type=int, default=1000)
    ap.add_argument("--s6-clients", type=int, default=500)
    ap.add_argument("--s6-servers", default="parley",
                    help="S6 needs resume with history: Parley only (others to test the bench)")
    ap.add_argument("--s6-rate", type=float, default=10.0, help="S6 messages/s in total")
    ap.add_argument("--s6-churn", type=float, default=None,
                    help="S6 disconnect probability per client per second "
                         "(default 0.002, i.e. one a second at 500 clients; 0.05 with --quick)")
    ap.add_argument("--scale-rate", type=float, default=20.0, help="msgs/s for the scaling table")
    ap.add_argument("--rooms-clients", type=int, default=1000)
    ap.add_argument("--rooms-count", type=int, default=100, help="rooms in the rooms scenario")
    ap.add_argument("--rooms-dm", type=float, default=0.1, help="share of messages that are DMs")
    ap.add_argument("--rooms-rates", default="1000,2000,5000",
                    help="messages/s (comma list, one row each) in the rooms scenario")
    ap.add_argument("--rooms-seconds", type=float, default=10.0)
    ap.add_argument("--stored-clients", type=int, default=200, help="senders in 'stored'")
    ap.add_argument("--stored-rates", default="5000,10000,20000,30000",
                    help="offered messages/s (comma list) for the sustained-throughput ladder")
    ap.add_argument("--stored-seconds", type=float, default=5.0, help="length of each step")
    ap.add_argument("--stored-steady", type=float, default=2000.0,
                    help="messages/s of the ack-latency run")
    ap.add_argument("--stored-steady-seconds", type=float, default=10.0)
    ap.add_argument("--disconnect-clients", type=int, default=10000)
    ap.add_argument("--disconnect-variants", default="p1,caps",
                    help="p1 (protocol-1 clients), caps (rooms cap): comma list")
    ap.add_argument("--bigdb-steps", default="0,100000,1000000",
                    help="stored messages at each step of the big-database scenario")
    ap.add_argument("--bigdb-rooms", type=int, default=100)
    ap.add_argument("--bigdb-starts", type=int, default=3, help="server starts per database")
    ap.add_argument("--bigdb-queries", type=int, default=200,
                    help="history pages and searches (each) through the server")
    ap.add_argument("--parley-arg", action="append",
                    help="extra argument for python_server.py (repeatable), e.g. "
                         "--parley-arg=--max-clients=20000")
    ap.add_argument("--parley-server", help="path of the Parley entry point to run "
                    "(default: python_server.py at the repository root)")
    ap.add_argument("--json", help="also write the rows to this JSON file")
    ap.add_argument("--budget", type=float, default=None,
                    help="hard limit for the whole run in seconds (default: generous)")
    args = ap.parse_args(argv)
    if args.servers is None:
        args.servers = "parley,textbook" if args.quick else "parley,textbook,ngircd"

    loadgen.raise_nofile()
    if args.parley_server:
        os.environ["PARLEY_BENCH_SERVER"] = os.path.abspath(args.parley_server)
    scen = []
    group = False
    for name in (x.strip().lower() for x in args.scenarios.split(",") if x.strip()):
        group = group or name in GROUPS
        scen.extend(GROUPS.get(name, [name]))
    soak = args.soak_minutes if args.soak_minutes is not None else (0.1 if args.quick else 10)
    budget = args.budget or (600 if args.quick else 3600) + soak * 60 * ("s6" in scen)

    def _alarm(signum, frame):
        raise TimeoutError(f"benchmark budget of {budget:.0f} s exceeded")

    def _term(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGALRM, _alarm)
    signal.signal(signal.SIGTERM, _term)
    signal.alarm(int(budget))

    b = Bench(args)
    state = code_state()
    log(f"logs and configs in {b.logdir}; budget {budget:.0f} s; server code: {state}")
    t0 = time.monotonic()
    print(table([]), flush=True)
    try:
        for name in scen:
            if name == "s6":
                b.run_each("S6 soak", b.s6, b.servers(args.s6_servers))
                continue
            fn = getattr(b, name, None)
            if fn is None or name.startswith("_") or name in ("server", "loadgen", "connect"):
                log(f"unknown scenario {name}")
                continue
            only = PARLEY_ONLY_IN_GROUP.get(name) if group else None
            b.run_each(name.upper(), fn, b.servers(only) if only else None)
    except (KeyboardInterrupt, TimeoutError) as e:
        log(f"stopped: {type(e).__name__} {e}")
    finally:
        signal.alarm(0)
        _cleanup()
    print()
    print(f"## Results ({'quick' if args.quick else 'full'} run, {time.monotonic() - t0:.0f} s,"
          f" {os.cpu_count()} CPUs, Python {sys.version.split()[0]}, SQLite "
          f"{__import__('sqlite3').sqlite_version}; Parley {state})")
    print()
    print(table(b.rows))
    if args.json:
        with open(args.json, "w") as f:
            json.dump([r.__dict__ for r in b.rows], f, indent=1, default=str)
    return 0


if __name__ == "__main__":
    sys.exit(main())
