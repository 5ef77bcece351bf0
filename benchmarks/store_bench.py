"""Benchmark of the SQLite store (parley.server.store): prints figures, asserts nothing.

    python3 benchmarks/store_bench.py                      # 1,000,000 stored messages (~4 min)
    python3 benchmarks/store_bench.py --messages 100000    # a quicker run
    python3 benchmarks/store_bench.py --keep /tmp/pb       # keep the databases there

Figures, against the targets of issue 7:
  write   sustained messages/s stored with ack after commit     (target >= 20,000/s)
  ack     submit -> on_commit latency at a steady 2,000/s        (target p99 <= 20 ms)
  page    history page of 100, random room and `before`         (target p99 <= 10 ms)
  search  one common / medium / rare word over ~5 rooms + own DMs (target p99 <= 50 ms);
          also a common word in one quiet room, and words over 20 rooms
  open    Store.open() of the full database, fresh process       (target <= 2 s)
  rss     process RSS after open + reads, at 1/10 and full size  (target: independent of size)
  disk    bytes per message on disk, by table and index

The big database is filled directly with executemany (same schema and
triggers as the store), in a temporary directory: 100 rooms of unequal
activity, 1,000 sessions, 5% direct messages, 4% joins/leaves, texts of
Zipf-distributed random words.  Write and ack figures are measured on an
empty database and on the full one (ack: steady, then right after a burst at
full speed).  Each figure
says how busy the machine was (load, CPU pressure): latency tails on a shared
machine are mostly time spent waiting for a CPU.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "src"))

from parley.server.store import Store, Write  # noqa: E402

ROOMS = 100
SESSIONS = 1000
VOCAB = 20000
SEED = 7


# --- synthetic chat ----------------------------------------------------------------
def make_vocab(rng: random.Random) -> list[str]:
    common = ("the a to is it i you and of in that for on this be with are not have was but "
              "so do we can what just like if at my me your it's don't ok yes no lol thanks "
              "hi hello python pip code test server room message").split()
    syll = ["ka", "lo", "mi", "ne", "ru", "ta", "shi", "po", "ve", "da", "zo", "ri", "an", "el",
            "or", "um", "ex", "qu", "ly", "st", "ph", "gr", "ch", "bo", "fe"]
    words = list(dict.fromkeys(common))
    seen = set(words)
    while len(words) < VOCAB:
        w = "".join(rng.choice(syll) for _ in range(rng.randint(2, 4)))
        if w not in seen:
            seen.add(w)
            words.append(w)
    return words


class Chat:
    """Deterministic synthetic history: rooms, sessions, texts."""

    def __init__(self, seed: int = SEED):
        self.rng = rng = random.Random(seed)
        self.words = make_vocab(rng)
        # Zipf weights (s = 1.1): rank 1 is very common, the tail is rare
        self.cum = list(_accumulate([1 / (r ** 1.1) for r in range(1, len(self.words) + 1)]))
        self.rooms = [f"#room{i}" for i in range(ROOMS)]
        self.room_cum = list(_accumulate([1 / (r ** 0.8) for r in range(1, ROOMS + 1)]))
        self.sids = [f"{rng.getrandbits(64):016x}" for _ in range(SESSIONS)]
        self.names = [f"user{i}" for i in range(SESSIONS)]

    def text(self) -> str:
        n = self.rng.choice((2, 3, 4, 5, 6, 7, 8, 9, 10, 12, 14, 18, 25))
        return " ".join(self.rng.choices(self.words, cum_weights=self.cum, k=n))

    def room(self) -> str:
        return self.rng.choices(self.rooms, cum_weights=self.room_cum)[0]

    def user(self) -> int:
        return self.rng.randrange(SESSIONS)

    def row(self, id_: int, ts: int) -> tuple:
        """(id, ts, kind, room, sender, sender_sid, target, target_sid, text, label)"""
        r = self.rng.random()
        u = self.user()
        label = f"c{u}-{id_}"
        if r < 0.05:                                    # a direct message
            v = self.user()
            return (id_, ts, "say", None, self.names[u], self.sids[u], self.names[v],
                    self.sids[v], self.text(), label)
        if r < 0.09:                                    # a join or a leave
            kind = "join" if r < 0.07 else "leave"
            return (id_, ts, kind, self.room(), self.names[u], self.sids[u], None, None,
                    "quit" if kind == "leave" else None, None)
        kind = "me" if r < 0.11 else "say"
        return (id_, ts, kind, self.room(), self.names[u], self.sids[u], None, None,
                self.text(), label)


def _accumulate(xs):
    total = 0.0
    for x in xs:
        total += x
        yield total


# --- helpers -------------------------------------------------------------------------
def pct(xs: list[float], q: float) -> float:
    if not xs:
        return float("nan")
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))]


def ms(x: float) -> str:
    return f"{x * 1000:.2f} ms"


def rss_now() -> tuple[int, int]:
    """(current RSS, peak RSS of this process image) in kB: VmRSS and VmHWM on
    Linux (ru_maxrss would include the parent's size from before exec)."""
    cur = peak = 0
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    cur = int(line.split()[1])
                elif line.startswith("VmHWM:"):
                    peak = int(line.split()[1])
    except OSError:                                     # not Linux
        try:
            import resource
            peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
            if sys.platform == "darwin":
                peak //= 1024
        except ImportError:
            pass
    return cur, peak


def contention() -> str:
    """How busy the machine is (other processes compete for the CPU): the
    load average and Linux's CPU pressure (share of time something waited)."""
    parts = []
    try:
        parts.append("load %.1f" % os.getloadavg()[0])
    except (AttributeError, OSError):
        pass
    try:
        with open("/proc/pressure/cpu") as f:
            some = f.readline().split()[1]              # avg10=NN.NN
        parts.append(f"CPU pressure {some.split('=')[1]}%")
    except (OSError, IndexError):
        pass
    return ", ".join(parts) or "unknown"


def section(title: str) -> None:
    print(f"\n== {title}", flush=True)


# --- writes through the store ------------------------------------------------------
def bench_write(path: str, seconds: float, batch_wait: float, chat: Chat,
                window: int = 5000) -> dict:
    """As fast as the store takes them, at most ``window`` unacknowledged."""
    s = Store(path, batch_wait=batch_wait).open()
    start_id = s.last_id
    sem = threading.Semaphore(window)
    acked = [0]
    batches: list[int] = []

    last_ack = [0.0]

    def on_commit(batch, error):
        batches.append(len(batch))
        for _ in batch:
            sem.release()
        acked[0] += sum(1 for w in batch if w.id is not None)
        last_ack[0] = time.perf_counter()

    s.start(on_commit)
    texts = [chat.text() for _ in range(5000)]
    rooms = chat.rooms
    i = 0
    t0 = time.perf_counter()
    end = t0 + seconds
    while True:
        if i % 256 == 0 and time.perf_counter() >= end:
            break
        sem.acquire()
        u = i % SESSIONS
        s.submit(Write(op="event", kind="say", room=rooms[i % ROOMS], sender=chat.names[u],
                       sender_sid=chat.sids[u], text=texts[i % 5000], label=f"c{u}-{i}"))
        i += 1
    s.flush()                           # every ack, and the search index caught up
    indexed = time.perf_counter()
    elapsed = last_ack[0] - t0
    s.close()
    return {"rate": acked[0] / elapsed, "acked": acked[0], "batches": len(batches),
            "index_lag": indexed - last_ack[0],
            "avg_batch": statistics.mean(batches) if batches else 0,
            "max_batch": max(batches) if batches else 0, "stored_from": start_id}


def bench_ack(path: str, rate: int, seconds: float, batch_wait: float, chat: Chat) -> dict:
    """A steady ``rate`` messages/s (1 ms ticks); latency submit -> on_commit."""
    s = Store(path, batch_wait=batch_wait).open()
    lat: list[float] = []
    errors = [0]
    batches: list[int] = []

    def on_commit(batch, error):
        now = time.perf_counter()
        batches.append(len(batch))
        for w in batch:
            lat.append(now - w.ctx)
        if error:
            errors[0] += 1

    s.start(on_commit)
    texts = [chat.text() for _ in range(5000)]
    per_tick = rate / 1000.0
    owed = 0.0
    i = 0
    t0 = time.perf_counter()
    tick = t0
    while tick - t0 < seconds:
        owed += per_tick
        while owed >= 1:
            owed -= 1
            u = i % SESSIONS
            s.submit(Write(op="event", kind="say", room=chat.rooms[i % ROOMS],
                           sender=chat.names[u], sender_sid=chat.sids[u], text=texts[i % 5000],
                           label=f"c{u}-{i}", ctx=time.perf_counter()))
            i += 1
        tick += 0.001
        delay = tick - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
    s.flush()
    elapsed = time.perf_counter() - t0
    s.close()
    return {"sent": i, "rate": i / elapsed, "p50": pct(lat, 0.5), "p99": pct(lat, 0.99),
            "p999": pct(lat, 0.999), "max": max(lat) if lat else float("nan"),
            "errors": errors[0], "avg_batch": statistics.mean(batches) if batches else 0}


# --- the big database ----------------------------------------------------------------
def fill(path: str, chat: Chat, upto: int, state: dict) -> None:
    """Add rows straight into the database until it holds ``upto`` events,
    then let the store's indexer catch up (as after a server restart)."""
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=OFF")
    db.execute("PRAGMA cache_size=-200000")
    if not state.get("rooms"):
        db.execute("BEGIN")
        db.executemany("INSERT OR IGNORE INTO rooms(key, name, topic, created) VALUES (?,?,?,?)",
                       [(r, r.replace("room", "Room"), "", 0) for r in chat.rooms])
        db.executemany("INSERT OR IGNORE INTO sessions(sid, name, token_hash, created, seen) "
                       "VALUES (?,?,?,?,?)",
                       [(sid, n, os.urandom(32), 0, 0) for sid, n in zip(chat.sids, chat.names)])
        db.execute("COMMIT")
        state["rooms"] = True
    next_id = state.get("next_id", 1)
    ts = state.get("ts", 1_795_000_000_000)
    chunk = 50_000
    t0 = time.perf_counter()
    while next_id <= upto:
        n = min(chunk, upto - next_id + 1)
        rows = []
        for i in range(next_id, next_id + n):
            ts += chat.rng.randint(0, 400)
            rows.append(chat.row(i, ts))
        db.execute("BEGIN")
        db.executemany("INSERT INTO events(id, ts, kind, room, sender, sender_sid, target, "
                       "target_sid, text, label) VALUES (?,?,?,?,?,?,?,?,?,?)", rows)
        db.execute("COMMIT")
        next_id += n
        done = next_id - 1
        if done % 200_000 == 0 or next_id > upto:
            rate = (done - state.get("filled_from", 0)) / (time.perf_counter() - t0)
            print(f"   filled {done:,} events ({rate:,.0f}/s)", flush=True)
    state["next_id"], state["ts"] = next_id, ts
    state["filled_from"] = next_id - 1
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    db.close()
    # the search index, as a server builds it: open, and the indexer catches up
    t = time.perf_counter()
    s = Store(path).open()
    s.flush()
    while s._merging:                   # and merges, as it would in idle time
        time.sleep(0.05)
    s.close()
    print(f"   search index caught up in {time.perf_counter() - t:.1f} s", flush=True)


def disk_usage(path: str) -> dict:
    """Bytes on disk of the history and its search index, by table and index."""
    search = os.path.join(os.path.dirname(path), "parley-search.db")
    parts: dict = {}
    size = 0
    n = chat = 0
    for f in (path, search):
        if not os.path.exists(f):
            continue
        db = sqlite3.connect(f)
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        if f == path:
            n = db.execute("SELECT count(*) FROM events").fetchone()[0]
            chat = db.execute("SELECT count(*) FROM events WHERE kind IN ('say','me')").fetchone()[0]
        try:
            for name, pg in db.execute("SELECT name, sum(pgsize) FROM dbstat GROUP BY name"):
                key = "search index (parley-search.db)" if f == search else name
                parts[key] = parts.get(key, 0) + pg
        except sqlite3.OperationalError:
            pass
        db.close()
        size += os.path.getsize(f) + (os.path.getsize(f + "-wal") if os.path.exists(f + "-wal") else 0)
    return {"events": n, "chat": chat, "bytes": size, "per_event": size / max(1, n),
            "parts": parts}


def probe(path: str, n_queries: int, seed: int) -> dict:
    """In a fresh process: open time, query latencies, RSS."""
    code = f"""
import json, random, sys, time
sys.path.insert(0, {os.path.join(ROOT, 'src')!r})
sys.path.insert(0, {os.path.dirname(os.path.abspath(__file__))!r})
import store_bench as b
print(json.dumps(b.probe_inside({path!r}, {n_queries}, {seed})))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def probe_inside(path: str, n_queries: int, seed: int) -> dict:
    rss0 = rss_now()
    t0 = time.perf_counter()
    s = Store(path).open()
    t_open = time.perf_counter() - t0
    rss_open = rss_now()
    chat = Chat(SEED)
    rng = random.Random(seed)
    last = s.last_id
    # history: a page of 100 in a random room before a random id
    page = []
    for _ in range(n_queries):
        room = rng.choice(chat.rooms)
        before = rng.randint(1, last + 1)
        t = time.perf_counter()
        frames, more = s.history(chat.sids[0], room=room, before=before, limit=100)
        page.append(time.perf_counter() - t)
    page_newest = []
    for _ in range(n_queries // 4):
        t = time.perf_counter()
        s.history(chat.sids[0], room=rng.choice(chat.rooms), limit=100)
        page_newest.append(time.perf_counter() - t)
    dm_page = []
    for _ in range(n_queries // 4):
        u, v = rng.randrange(SESSIONS), rng.randrange(SESSIONS)
        t = time.perf_counter()
        s.history(chat.sids[u], peer=chat.names[v], limit=100)
        dm_page.append(time.perf_counter() - t)
    # search: single words over ~5 rooms + the user's own DMs, newest first, 50 a page
    common = chat.words[:30]
    mid = chat.words[200:2000]
    rare = chat.words[5000:]
    searches = {}
    hits = {}
    for label, pool in (("common", common), ("medium", mid), ("rare", rare)):
        lat, found = [], 0
        for _ in range(n_queries // 2):
            rooms = rng.sample(chat.rooms, 5)
            u = rng.randrange(SESSIONS)
            t = time.perf_counter()
            frames, more = s.search(chat.sids[u], rng.choice(pool), rooms, limit=50)
            lat.append(time.perf_counter() - t)
            found += len(frames)
        searches[label] = lat
        hits[label] = found / max(1, len(lat))
    # search in ONE room (the /search of a room), the quietest rooms, common words:
    # the case where walking a common word's matches to find a small room's is slow
    quiet = chat.rooms[-10:]
    lat = []
    for _ in range(n_queries // 2):
        t = time.perf_counter()
        s.search(chat.sids[0], rng.choice(common), quiet, room=rng.choice(quiet), limit=50)
        lat.append(time.perf_counter() - t)
    searches["1 quiet room"] = lat
    hits["1 quiet room"] = float("nan")
    lat = []
    for _ in range(n_queries // 2):                     # a user in 20 rooms
        t = time.perf_counter()
        s.search(chat.sids[0], rng.choice(common + mid), rng.sample(chat.rooms, 20), limit=50)
        lat.append(time.perf_counter() - t)
    searches["20 rooms"] = lat
    hits["20 rooms"] = float("nan")
    phrase = []
    for _ in range(n_queries // 4):
        rooms = rng.sample(chat.rooms, 5)
        q = '"' + " ".join(rng.sample(common[:10], 2)) + '"'
        t = time.perf_counter()
        s.search(chat.sids[rng.randrange(SESSIONS)], q, rooms, limit=50)
        phrase.append(time.perf_counter() - t)
    # unread and catch-up for a user in 5 rooms with an old read marker / last id
    unread, since = [], []
    for _ in range(n_queries // 4):
        rooms = rng.sample(chat.rooms, 5)
        u = rng.randrange(SESSIONS)
        t = time.perf_counter()
        s.unread(chat.sids[u], chat.names[u], rooms)
        unread.append(time.perf_counter() - t)
        t = time.perf_counter()
        s.since(max(0, last - 20000), rooms, chat.sids[u], 500)
        since.append(time.perf_counter() - t)
    rss_after = rss_now()
    s.close()

    def stats(xs):
        return {"p50": pct(xs, 0.5), "p99": pct(xs, 0.99), "max": max(xs), "n": len(xs)}

    return {"open": t_open, "last_id": last, "rss_start_kb": rss0[0], "rss_open_kb": rss_open[0],
            "rss_after_kb": rss_after[0], "rss_peak_kb": rss_after[1],
            "page": stats(page), "page_newest": stats(page_newest), "dm_page": stats(dm_page),
            "search": {k: stats(v) for k, v in searches.items()}, "hits": hits,
            "phrase": stats(phrase), "unread": stats(unread), "since": stats(since)}


def show_probe(r: dict) -> None:
    print(f"   open            {ms(r['open'])}   (last id {r['last_id']:,}; {contention()})")
    print(f"   RSS             {r['rss_open_kb'] / 1024:.1f} MB after open, "
          f"{r['rss_after_kb'] / 1024:.1f} MB after the queries (peak {r['rss_peak_kb'] / 1024:.1f} MB; "
          f"interpreter alone {r['rss_start_kb'] / 1024:.1f} MB)")
    for name, key in (("page of 100", "page"), ("newest 100", "page_newest"),
                      ("DM page of 100", "dm_page"), ("phrase search", "phrase"),
                      ("unread (5 rooms)", "unread"), ("since 500 (5 rooms)", "since")):
        st = r[key]
        print(f"   {name:<17} p50 {ms(st['p50'])}  p99 {ms(st['p99'])}  max {ms(st['max'])}  "
              f"(n={st['n']})")
    for k, st in r["search"].items():
        h = r["hits"][k]
        h = "" if h != h else f"{h:.1f} hits a page, "
        print(f"   search {k:<12} p50 {ms(st['p50'])}  p99 {ms(st['p99'])}  max {ms(st['max'])}  "
              f"({h}n={st['n']})")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--messages", type=int, default=1_000_000, help="stored events for the read tests")
    ap.add_argument("--queries", type=int, default=400, help="queries per read test")
    ap.add_argument("--write-seconds", type=float, default=5.0)
    ap.add_argument("--ack-seconds", type=float, default=8.0)
    ap.add_argument("--ack-rate", type=int, default=2000)
    ap.add_argument("--keep", help="directory for the databases (kept); default a temporary one")
    args = ap.parse_args()

    base = args.keep or tempfile.mkdtemp(prefix="parley-store-bench-")
    os.makedirs(base, exist_ok=True)
    print(f"Parley store benchmark: SQLite {sqlite3.sqlite_version}, Python "
          f"{sys.version.split()[0]}, {os.cpu_count()} CPUs, in {base}")
    chat = Chat(SEED)
    results: dict = {}
    try:
        section("writes through the store, empty database (ack after commit)")
        for bw in (0.0, 0.002):
            d = os.path.join(base, f"write-{bw}")
            shutil.rmtree(d, ignore_errors=True)
            r = bench_write(os.path.join(d, "parley.db"), args.write_seconds, bw, chat)
            results[f"write_empty_bw{bw}"] = r
            print(f"   [{contention()}]")
            print(f"   batch_wait={bw * 1000:.0f} ms: {r['rate']:,.0f} messages/s "
                  f"({r['acked']:,} in {args.write_seconds:.0f} s; {r['batches']:,} commits, "
                  f"{r['avg_batch']:.0f} a commit on average, at most {r['max_batch']}; "
                  f"search index caught up {ms(r['index_lag'])} after the last ack)")
        du = disk_usage(os.path.join(base, "write-0.0", "parley.db"))
        print(f"   on disk: {du['per_event']:.0f} bytes per message ({du['events']:,} messages "
              f"written through the store)")
        for bw in (0.0, 0.002):
            d = os.path.join(base, f"ack-{bw}")
            shutil.rmtree(d, ignore_errors=True)
            r = bench_ack(os.path.join(d, "parley.db"), args.ack_rate, args.ack_seconds, bw, chat)
            results[f"ack_empty_bw{bw}"] = r
            print(f"   ack at {r['rate']:,.0f}/s, batch_wait={bw * 1000:.0f} ms: p50 {ms(r['p50'])}  "
                  f"p99 {ms(r['p99'])}  p99.9 {ms(r['p999'])}  max {ms(r['max'])}  "
                  f"({r['avg_batch']:.1f} a commit, {r['errors']} failed; {contention()})")

        section(f"a database of {args.messages:,} events")
        big = os.path.join(base, "big", "parley.db")
        shutil.rmtree(os.path.dirname(big), ignore_errors=True)
        Store(big).open().close()                         # the schema, as the server makes it
        state: dict = {}
        tenth = max(1, args.messages // 10)
        t = time.perf_counter()
        fill(big, chat, tenth, state)
        section(f"reads at {tenth:,} events (fresh process)")
        small = probe(big, args.queries, 1)
        results["probe_tenth"] = small
        show_probe(small)
        du_small = disk_usage(big)
        section(f"filling up to {args.messages:,}")
        fill(big, chat, args.messages, state)
        print(f"   filled in {time.perf_counter() - t:.0f} s")
        section(f"reads at {args.messages:,} events (fresh process)")
        full = probe(big, args.queries, 2)
        results["probe_full"] = full
        show_probe(full)
        print(f"   RSS growth from {tenth:,} to {args.messages:,} events: "
              f"{(full['rss_after_kb'] - small['rss_after_kb']) / 1024:+.1f} MB after the same queries")

        section("bytes per event on disk")
        du = disk_usage(big)
        results["disk"] = du
        for label, d in ((f"{du_small['events']:,} events", du_small), (f"{du['events']:,} events", du)):
            print(f"   {label}: {d['bytes'] / 1e6:.1f} MB, {d['per_event']:.0f} bytes per event "
                  f"({d['chat']:,} of them messages)")
        if du["parts"]:
            for name, size in sorted(du["parts"].items(), key=lambda kv: -kv[1])[:8]:
                print(f"      {name:<24} {size / du['events']:6.1f} bytes per event")
        db = sqlite3.connect(big)
        avg_text = db.execute("SELECT avg(length(text)) FROM events WHERE kind IN ('say','me')").fetchone()[0]
        db.close()
        print(f"   (average message text: {avg_text:.0f} characters)")

        section(f"writes through the store on the full database ({args.messages:,})")
        r = bench_ack(big, args.ack_rate, args.ack_seconds, 0.0, chat)
        results["ack_full"] = r
        print(f"   ack at {r['rate']:,.0f}/s, steady: p50 {ms(r['p50'])}  p99 {ms(r['p99'])}  "
              f"p99.9 {ms(r['p999'])}  max {ms(r['max'])}  ({contention()})")
        r = bench_write(big, args.write_seconds, 0.0, chat)
        results["write_full"] = r
        print(f"   [{contention()}]")
        print(f"   burst: {r['rate']:,.0f} messages/s ({r['acked']:,} in {args.write_seconds:.0f} s; "
              f"{r['avg_batch']:.0f} a commit on average; search index caught up "
              f"{ms(r['index_lag'])} after the last ack)")
        r = bench_ack(big, args.ack_rate, args.ack_seconds, 0.0, chat)
        results["ack_after_burst"] = r
        print(f"   ack at {r['rate']:,.0f}/s right after that burst: p50 {ms(r['p50'])}  p99 {ms(r['p99'])}  p99.9 {ms(r['p999'])}  "
              f"max {ms(r['max'])}  ({contention()})")
        t = time.perf_counter()
        s = Store(big).open()
        reopen = time.perf_counter() - t
        s.close()
        print(f"   open again after the writes: {ms(reopen)}")

        section("summary against the targets")
        w = results["write_empty_bw0.0"]["rate"]
        wf = results["write_full"]["rate"]
        a = results["ack_empty_bw0.0"]["p99"]
        af = results["ack_full"]["p99"]
        print(f"   stored with ack after commit  {w:,.0f}/s empty, {wf:,.0f}/s at {args.messages:,}"
              f"   (target >= 20,000/s)")
        ab = results["ack_after_burst"]["p99"]
        print(f"   ack p99 at {args.ack_rate:,}/s         {ms(a)} empty, {ms(af)} at {args.messages:,}   "
              f"(target <= 20 ms; {ms(ab)} right after a {args.write_seconds:.0f} s burst)")
        print(f"   page of 100 p99               {ms(full['page']['p99'])}   (target <= 10 ms)")
        sp = max(v["p99"] for v in full["search"].values())
        print(f"   search p99 (worst word class) {ms(sp)}   (target <= 50 ms)")
        print(f"   open                          {ms(full['open'])}   (target <= 2 s)")
        print(f"   RSS after open + reads        {small['rss_after_kb'] / 1024:.1f} MB at {tenth:,}, "
              f"{full['rss_after_kb'] / 1024:.1f} MB at {args.messages:,}")
        print(f"   bytes per event on disk       {du['per_event']:.0f}")
    finally:
        if not args.keep:
            shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
