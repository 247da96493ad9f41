"""Offline checker of a fault-run history (JSONL): stale reads and corruption.

Why offline: the run only records what clients saw (invocation and completion time on one
monotonic clock, node, operation, result); every judgement is made afterwards from the whole
history, so the rules below can be unit-tested on hand-made histories (test_checker.py) and a
history can be re-checked with another bound.

Rules (issue #11 / #12):
- corruption: a read returns a value that no write (acknowledged or not) of that key ever
  carried, or one whose write was invoked after the read completed;
- stale read: a read invoked at t returns v although an operation covering the key (another
  write, a delete, an exact/glob/`*` invalidation, or an all-categories one) that was invoked
  after v's write completed was acknowledged (2xx) at c < t. Its age is t - c (the earliest
  such c). Ages up to the bound B are allowed (bound 0 for strict categories).
- unacknowledged operations may or may not have happened: they can supply values but never
  make a value stale. A failed write's effect window is taken to end at its completion plus
  `linger` (0 by default: the literal rule).
- 404 misses and 503 answers are always allowed (counted).
- the library workload (library.py): loaded reads (`f: "load"`, through `get_or_load`) are
  judged like reads, cache-aside writes (`via: "db"`: database write, then invalidation;
  acknowledged when both are) like writes and deletes; on these keys only they change the
  value (an invalidation makes a node reload the same value). A loaded value that the
  database (its `type: "db"` records) never held is corrupt.
- the near-cache workload (nearcache.py): its reads (`f: "load"`, `xc` = X-Cache, fail-safe
  `STALE` answers included) are judged like loaded reads. A 404 flagged `absent` (the
  origin's or a cached "not found") is a read of "no value": stale when a cache-aside put of
  the key was acknowledged at c < t, invoked after every cache-aside delete of the key
  invoked before the read completed ended (acked, or failed + linger); age t - c, as above.

Usage: python3 checker.py HISTORY.jsonl [--bound-ms B] [--strict roles,...] [--linger-ms L]
"""

import argparse
import bisect
import functools
import json
import re
import sys
from collections import Counter, defaultdict

US = 1_000_000  # history times are integer microseconds of a monotonic clock
READS = ("get", "load")


@functools.lru_cache(maxsize=4096)
def glob_regex(pattern):
    """The documented glob grammar: `*`, `?`, `[...]`, `[!...]`, `\\` escapes; the rest literal."""
    out, i, n = [], 0, len(pattern)
    while i < n:
        c = pattern[i]
        if c == "\\" and i + 1 < n:
            out.append(re.escape(pattern[i + 1]))
            i += 2
        elif c == "*":
            out.append(".*")
            i += 1
        elif c == "?":
            out.append(".")
            i += 1
        elif c == "[":
            j = i + 1
            neg = j < n and pattern[j] == "!"
            if neg:
                j += 1
            items, first = [], True
            while j < n and (pattern[j] != "]" or first):
                if pattern[j] == "\\" and j + 1 < n:
                    j += 1
                ch = pattern[j]
                if j + 2 < n and pattern[j + 1] == "-" and pattern[j + 2] != "]":
                    items.append(re.escape(ch) + "-" + re.escape(pattern[j + 2]))
                    j += 3
                else:
                    items.append(re.escape(ch))
                    j += 1
                first = False
            if j >= n:  # no closing bracket: a literal `[`
                out.append(re.escape("["))
                i += 1
            else:
                out.append("[" + ("^" if neg else "") + "".join(items) + "]")
                i = j + 1
        else:
            out.append(re.escape(c))
            i += 1
    return re.compile("".join(out), re.DOTALL)


def glob_match(pattern, key):
    return glob_regex(pattern).fullmatch(key) is not None


def acked(op):
    return op.get("status") is not None and 200 <= op["status"] < 300


def error_kind(op):
    """None for a normal outcome, else a short error label."""
    st, f = op.get("status"), op["f"]
    if st is None:
        return op.get("err") or "error"
    if 200 <= st < 300 or (f in READS and st == 404):
        return None
    return f"http_{st}"


def covers(op, cat, key):
    """Whether an (acknowledged) write/delete/invalidation changes (cat, key)."""
    f = op["f"]
    if f in ("put", "delete"):
        return op["cat"] == cat and op["key"] == key
    if f != "inv":
        return False
    if op["cat"] != "*" and op["cat"] != cat:
        return False
    if "key" in op and op.get("inv") == "exact":
        return op["key"] == key
    return glob_match(op["pattern"], key)


def load(path):
    """(meta, ops, faults) of a history."""
    return load_all(path)[:3]


def load_all(path):
    """(meta, ops, faults, db): db = the library workload's database records."""
    meta, ops, faults, db = {}, [], [], []
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            line = line.strip()
            if not line:
                continue
            rec = json.loads(line)
            t = rec.get("type")
            if t == "meta":
                meta.update(rec)
            elif t == "op":
                ops.append(rec)
            elif t == "fault":
                faults.append(rec)
            elif t == "db":
                db.append(rec)
    return meta, ops, faults, db


def bucket(age_us, bound_us):
    if age_us <= bound_us:
        return "le_b"
    if age_us <= 2 * bound_us:
        return "le_2b"
    if age_us <= US:
        return "le_1s"
    return "gt_1s"


def check(ops, bound_ms, strict=(), linger_ms=0, faults=(), db=()):
    """Returns a dict: per-fault rows, totals, violation and corruption details. `db`: the
    database's records (library workload), to tell a loaded value the database never held."""
    bound_us, linger_us, strict = int(bound_ms * 1000), int(linger_ms * 1000), set(strict)
    writes = {}  # value -> put op (values are unique)
    keys = set()
    for op in ops:
        if op["f"] == "put":
            writes.setdefault(op["value"], op)
        if op["f"] in ("put", "delete") or op["f"] in READS:
            keys.add((op["cat"], op["key"]))
    db_values = {(r["cat"], r["key"], r["value"]) for r in db if r.get("op") == "put"}
    loads = Counter()
    changers = [op for op in ops if op["f"] in ("put", "delete", "inv") and acked(op)]
    # Keys of the library workload: the database is the truth, so only its writes and deletes
    # change the value; an invalidation (of the HTTP clients, in `--workload mixed`) makes
    # the node reload the same value from the database, which is not stale.
    db_keys = {(op["cat"], op["key"]) for op in ops if op.get("via") == "db"}
    # Per key: acknowledged covering ops sorted by invocation, with the suffix minimum of
    # their completion, so "earliest ack among ops invoked after T" is one bisect.
    index = {}
    for ck in keys:
        cov = sorted((o for o in changers if covers(o, *ck)
                      and (ck not in db_keys or o.get("via") == "db")), key=lambda o: o["t0"])
        t0s = [o["t0"] for o in cov]
        suffix, best = [None] * len(cov), None
        for i in range(len(cov) - 1, -1, -1):
            if best is None or cov[i]["t1"] < best["t1"]:
                best = cov[i]
            suffix[i] = best
        index[ck] = (t0s, suffix)

    absent_index = {}

    def absent_stale(op):
        """(age, the put, the delete read) when an absent read is stale, else None."""
        ck = (op["cat"], op["key"])
        if ck not in absent_index:
            mine = [o for o in ops if o.get("via") == "db" and (o["cat"], o["key"]) == ck]
            dels = sorted((o for o in mine if o["f"] == "delete"), key=lambda o: o["t0"])
            ends, best = [], None  # prefix maximum of the deletes' effect end
            for d in dels:
                end = d["t1"] + (0 if acked(d) else linger_us)
                if best is None or end > best[0]:
                    best = (end, d)
                ends.append(best)
            puts = sorted((o for o in mine if o["f"] == "put" and acked(o)),
                          key=lambda o: o["t0"])
            suffix, first = [None] * len(puts), None
            for i in range(len(puts) - 1, -1, -1):
                if first is None or puts[i]["t1"] < first["t1"]:
                    first = puts[i]
                suffix[i] = first
            absent_index[ck] = ([d["t0"] for d in dels], ends, [p["t0"] for p in puts], suffix)
        del_t0s, ends, put_t0s, suffix = absent_index[ck]
        j = bisect.bisect_right(del_t0s, op["t1"]) - 1
        end, source = ends[j] if j >= 0 else (None, None)
        i = bisect.bisect_right(put_t0s, end) if end is not None else 0
        if i >= len(put_t0s) or suffix[i]["t1"] >= op["t0"]:
            return None
        return op["t0"] - suffix[i]["t1"], suffix[i], source

    # A round is a top-level fault; the parts of a `combined` round (`part_of`) are in it.
    rounds = sorted(
        (f["t"], f["kind"]) for f in faults
        if f.get("phase") == "start" and not f.get("part_of")
    )
    starts = [r[0] for r in rounds]

    def fault_of(t):
        i = bisect.bisect_right(starts, t) - 1
        return rounds[i][1] if i >= 0 else "warmup"

    rows = defaultdict(lambda: {"ops": 0, "errors": Counter(), "reads": 0, "miss": 0,
                                "unavailable": 0, "stale": Counter(), "max_age_us": 0,
                                "violations": 0, "corrupt": 0})
    for kind in set(r[1] for r in rounds):
        rows[kind]["rounds"] = sum(1 for r in rounds if r[1] == kind)
    violations, corruptions = [], []
    strict_reads = strict_stale = 0
    for op in ops:
        row = rows[fault_of(op["t0"])]
        row["ops"] += 1
        ek = error_kind(op)
        if op["f"] not in READS:
            if ek:
                row["errors"][f'{op["f"]}:{ek}'] += 1
            continue
        is_load = op["f"] == "load"
        loads["invoked"] += is_load
        if op.get("status") == 404 and op.get("absent"):
            row["reads"] += 1
            loads["absent"] += 1
            found = absent_stale(op)
            if found is None:
                continue
            age, by, source = found
            row["stale"][bucket(age, bound_us)] += 1
            row["max_age_us"] = max(row["max_age_us"], age)
            loads["absent_stale"] += 1
            limit = 0 if op["cat"] in strict else bound_us
            if age > limit:
                loads["absent_violations"] += 1
                row["violations"] += 1
                violations.append({"read": op, "write": source, "by": by, "age_us": age,
                                   "fault": fault_of(op["t0"]), "strict": op["cat"] in strict})
            continue
        if op.get("status") == 404:
            row["miss"] += 1
            continue
        if op.get("status") == 503:
            row["unavailable"] += 1
            continue
        if ek:
            row["errors"][f'{op["f"]}:{ek}'] += 1
            continue
        row["reads"] += 1
        loads["reads"] += is_load
        cat, key, v = op["cat"], op["key"], op.get("result")
        is_strict = cat in strict
        strict_reads += is_strict
        w = writes.get(v)
        reason = None
        if w is None:
            reason = "never written"
        elif (w["cat"], w["key"]) != (cat, key):
            reason = f'written to {w["cat"]}/{w["key"]!r}'
        elif w["t0"] > op["t1"]:
            reason = "written after the read completed"
        elif is_load and db and (cat, key, v) not in db_values:
            reason = "loaded, but never in the database"
        if reason:
            row["corrupt"] += 1
            corruptions.append({"read": op, "reason": reason})
            continue
        w_end = w["t1"] + (0 if acked(w) else linger_us)
        t0s, suffix = index[(cat, key)]
        i = bisect.bisect_right(t0s, w_end)
        if i >= len(t0s) or suffix[i]["t1"] >= op["t0"]:
            continue
        by = suffix[i]
        age = op["t0"] - by["t1"]
        row["stale"][bucket(age, bound_us)] += 1
        row["max_age_us"] = max(row["max_age_us"], age)
        strict_stale += is_strict
        loads["stale"] += is_load
        limit = 0 if is_strict else bound_us
        if age > limit:
            loads["violations"] += is_load
            row["violations"] += 1
            violations.append({"read": op, "write": w, "by": by, "age_us": age,
                               "fault": fault_of(op["t0"]), "strict": is_strict})
    return {"rows": dict(rows), "violations": violations, "corruptions": corruptions,
            "bound_ms": bound_ms, "strict": sorted(strict), "strict_reads": strict_reads,
            "strict_stale": strict_stale, "loads": loads}


def ms(us):
    return f"{us / 1000:.1f}"


def render(res, out=None, details=10):
    """Prints the per-fault table, the error breakdown and the worst violations."""
    out = out or sys.stdout
    b = res["bound_ms"]
    cols = ["fault", "rounds", "ops", "errors", "reads", "miss", "503",
            f"stale<={b:g}ms", f"<={2 * b:g}ms", "<=1s", ">1s", "max age ms", "VIOL", "CORRUPT"]
    rows, total = [], {"rounds": 0, "ops": 0, "errors": Counter(), "reads": 0, "miss": 0,
                       "unavailable": 0, "stale": Counter(), "max_age_us": 0,
                       "violations": 0, "corrupt": 0}
    for name in sorted(res["rows"], key=lambda k: (k != "warmup", k)):
        r = res["rows"][name]
        rows.append((name, r))
        for k in ("rounds", "ops", "reads", "miss", "unavailable", "violations", "corrupt"):
            total[k] += r.get(k, 0)
        total["errors"] += r["errors"]
        total["stale"] += r["stale"]
        total["max_age_us"] = max(total["max_age_us"], r["max_age_us"])
    rows.append(("TOTAL", total))

    def cells(name, r):
        s = r["stale"]
        return [name, str(r.get("rounds", 0)), str(r["ops"]), str(sum(r["errors"].values())),
                str(r["reads"]), str(r["miss"]), str(r["unavailable"]), str(s["le_b"]),
                str(s["le_2b"]), str(s["le_1s"]), str(s["gt_1s"]),
                ms(r["max_age_us"]) if sum(s.values()) else "-", str(r["violations"]),
                str(r["corrupt"])]

    table = [cols] + [cells(n, r) for n, r in rows]
    widths = [max(len(row[i]) for row in table) for i in range(len(cols))]

    def line(row):
        return "  ".join(c.ljust(w) if i == 0 else c.rjust(w)
                         for i, (c, w) in enumerate(zip(row, widths)))

    print(line(cols), file=out)
    print("  ".join("-" * w for w in widths), file=out)
    for row in table[1:-1]:
        print(line(row), file=out)
    print("  ".join("-" * w for w in widths), file=out)
    print(line(table[-1]), file=out)
    print(f"\nstale = a newer acknowledged change existed when the read started (age = read start -"
          f" that change's ack); VIOL = age > {b:g} ms (> 0 ms in strict categories"
          f" {','.join(res['strict']) or '-'})", file=out)
    loads = res.get("loads") or {}
    if loads.get("invoked"):
        print(f"loaded reads (get_or_load): {loads['invoked']} invoked, {loads['reads']} "
              f"returned a value, {loads['stale']} stale, {loads['violations']} beyond the "
              f"bound", file=out)
    if loads.get("absent"):
        print(f"absent reads (404 not_found through a loader): {loads['absent']}, "
              f"{loads['absent_stale']} stale, {loads['absent_violations']} beyond the bound",
              file=out)
    if res["strict"]:
        print(f"strict categories: {res['strict_reads']} reads, {res['strict_stale']} stale",
              file=out)
    print("\nerrors by kind:", file=out)
    for name, r in rows:
        if r["errors"]:
            kinds = ", ".join(f"{k} {n}" for k, n in sorted(r["errors"].items()))
            print(f"  {name:<16} {kinds}", file=out)
    if res["corruptions"]:
        print(f"\nCORRUPTION ({len(res['corruptions'])}):", file=out)
        for c in res["corruptions"][:details]:
            rd = c["read"]
            print(f'  read #{rd["id"]} {rd["node"]} {rd["cat"]}/{rd["key"]!r} -> '
                  f'{rd.get("result")!r}: {c["reason"]}', file=out)
    if res["violations"]:
        worst = sorted(res["violations"], key=lambda v: -v["age_us"])[:details]
        unacked = sum(1 for v in res["violations"] if v["write"] and not acked(v["write"]))
        print(f"\nreads beyond the bound ({len(res['violations'])}; {unacked} of them read a value"
              f" of a failed write, see --linger-ms), worst {len(worst)}:", file=out)
        by_key = Counter(f'{v["read"]["cat"]}/{v["read"]["key"]!r}' for v in res["violations"])
        by_node = Counter(v["read"]["node"] for v in res["violations"])
        print("  by key:  " + ", ".join(f"{k} {n}" for k, n in by_key.most_common()), file=out)
        print("  by node: " + ", ".join(f"{k} {n}" for k, n in sorted(by_node.items())),
              file=out)
        for v in worst:
            rd, w, by = v["read"], v["write"], v["by"]
            what = by["f"] + (f' {by.get("inv")} {by.get("pattern") or by.get("key")!r}'
                              if by["f"] == "inv" else "")
            if rd.get("status") == 404:
                got = (f'"not found" (#{w["id"]} delete on {w["node"]})' if w
                       else '"not found" (never written before)')
            else:
                got = f'#{w["id"]}\'s value ({w["node"]}{"" if acked(w) else ", unacked"})'
            label = f' X-Cache {rd["xc"]}' if rd.get("xc") else ""
            print(f'  age {ms(v["age_us"])} ms  [{v["fault"]}{", strict" if v["strict"] else ""}]'
                  f'  {"load" if rd["f"] == "load" else "read"} #{rd["id"]} on {rd["node"]} {rd["cat"]}/{rd["key"]!r} got '
                  f'{got}{label}; #{by["id"]} {what} on {by["node"]} acked first', file=out)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("history")
    ap.add_argument("--bound-ms", type=float, default=None)
    ap.add_argument("--strict", default=None, help="comma-separated strict categories")
    ap.add_argument("--linger-ms", type=float, default=None)
    ap.add_argument("--details", type=int, default=10)
    a = ap.parse_args(argv)
    meta, ops, faults, db = load_all(a.history)
    bound = a.bound_ms if a.bound_ms is not None else meta.get("bound_ms", 100)
    strict = (a.strict.split(",") if a.strict else meta.get("strict", [])) if a.strict != "" else []
    linger = a.linger_ms if a.linger_ms is not None else meta.get("linger_ms", 0)
    res = check(ops, bound, [s for s in strict if s], linger, faults, db)
    render(res, details=a.details)
    bad = bool(res["violations"] or res["corruptions"])
    print(f"\n{'FAIL' if bad else 'PASS'}: {len(res['violations'])} reads beyond the bound, "
          f"{len(res['corruptions'])} corrupt reads")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
