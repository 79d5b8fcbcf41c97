#!/usr/bin/env python3
"""bench/bench_py.py: the Python client's rows, against the QEMU bench/run
started (stopped, -S, memfd RAM), next to stdlib Python peers:

  py.query_rtt_us   vm.status()                 vs a stdlib QMP client's query-status
  py.stop_event_us  vm.stop() until RUNSTATE    vs QMP stop until the STOP event
                    paused is seen
  py.read_gbps      copying guest RAM out of    vs memcpy (the same copy of an
                    Memory.view()                 in-process buffer)

    bench/bench_py.py --vmsig SOCK --qmp SOCK [--gpa GPA] [--size BYTES] [--quick]

Prints one JSON row per line, in bench/bench.c's shape (results.json).
Never fails a test: a row it cannot measure is printed with null values and
a note.
"""
import argparse
import json
import mmap
import os
import socket
import statistics
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "python"))
import vmsig  # noqa: E402


class QMP:
    """A minimal stdlib QMP client (what a Python user has without qemu.qmp)."""

    def __init__(self, path):
        self.s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.s.connect(path)
        self.f = self.s.makefile("rwb", buffering=0)
        self.events = []
        json.loads(self.f.readline())  # greeting
        self.cmd("qmp_capabilities")

    def cmd(self, name, **args):
        msg = {"execute": name}
        if args:
            msg["arguments"] = args
        self.s.sendall(json.dumps(msg).encode() + b"\n")
        while True:
            r = json.loads(self.f.readline())
            if "event" in r:
                self.events.append(r)
                continue
            if "error" in r:
                raise RuntimeError(r["error"])
            return r["return"]

    def wait_event(self, name):
        while True:
            for i, e in enumerate(self.events):
                if e["event"] == name:
                    del self.events[: i + 1]
                    return e
            r = json.loads(self.f.readline())
            if "event" in r:
                self.events.append(r)


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(len(xs) * p))]


def row(name, unit, v, peer, pv, lower, target, tratio, vp99=None, pp99=None, note=None):
    ratio = None
    if v and pv:
        ratio = pv / v if lower else v / pv
    r = {"name": name, "unit": unit, "vmsig": v, "peer": peer, "peer_value": pv, "ratio": ratio}
    if vp99 is not None or pp99 is not None:
        r.update(vmsig_p99=vp99, peer_p99=pp99)
    r.update(better="lower" if lower else "higher", target=target, target_ratio=tratio,
             target_met=None if ratio is None else ratio >= tratio)
    r["note"] = "%s%sPython %s (%s); both sides in this process" % (
        note or "", "; " if note else "", sys.version.split()[0], sys.executable)
    print(json.dumps(r), flush=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--vmsig", required=True)
    ap.add_argument("--qmp", required=True)
    ap.add_argument("--gpa", type=lambda x: int(x, 0), default=0x1000000)
    ap.add_argument("--size", type=lambda x: int(x, 0), default=256 << 20)
    ap.add_argument("--quick", action="store_true")
    a = ap.parse_args()
    n = 200 if a.quick else 2000
    vm = vmsig.connect(a.vmsig, timeout=20)
    q = QMP(a.qmp)

    # py.query_rtt_us: alternate blocks so drift hits both the same, after
    # a warm-up of both (first calls: code paths, caches, allocator)
    for _ in range(50):
        vm.status()
        q.cmd("query-status")
    tv, tq = [], []
    for blk in range(10):
        for _ in range(n // 10):
            t = time.perf_counter()
            vm.status()
            tv.append((time.perf_counter() - t) * 1e6)
        for _ in range(n // 10):
            t = time.perf_counter()
            q.cmd("query-status")
            tq.append((time.perf_counter() - t) * 1e6)
    row("py.query_rtt_us", "us", statistics.median(tv), "qmp-python", statistics.median(tq), True,
        "vmsig <= 0.15 of QMP (ratio >= 6.67)", 1 / 0.15, pct(tv, 0.99), pct(tq, 0.99))

    # py.stop_event_us: cont, let it run, then stop until the paused event
    m = 30 if a.quick else 200
    sv, sq = [], []
    for i in range(m):
        vm.cont()
        vm.poll()
        time.sleep(0.002)
        t = time.perf_counter()
        vm.stop()
        vm.wait_for(lambda e: isinstance(e, vmsig.RunState) and e.state_name == "paused", 5)
        sv.append((time.perf_counter() - t) * 1e6)
        q.cmd("cont")
        q.events.clear()
        time.sleep(0.002)
        t = time.perf_counter()
        q.cmd("stop")
        q.wait_event("STOP")
        sq.append((time.perf_counter() - t) * 1e6)
    vm.poll()
    row("py.stop_event_us", "us", statistics.median(sv), "qmp-python", statistics.median(sq), True,
        "vmsig <= 0.5 of QMP (ratio >= 2)", 2.0, pct(sv, 0.99), pct(sq, 0.99))

    # py.read_gbps: copy [gpa, gpa+size) out through the zero-copy view
    mem = vm.memory()
    size = a.size
    # Both copies go into one page-aligned buffer (an anonymous mmap) from a
    # page-aligned source, as guest RAM is: glibc's memcpy from a
    # page-aligned source into a bytearray (16 bytes past a page) runs at
    # under half speed here, which would hide what is measured.
    dst = mmap.mmap(-1, size)
    src = mmap.mmap(-1, size)  # touched, in-process
    chunk = os.urandom(1 << 20)
    for off in range(0, size, len(chunk)):
        src[off:off + len(chunk)] = chunk
    reps = 3 if a.quick else 7
    rv, rp = [], []
    for _ in range(reps):
        # memoryview slice assignment is CPython's memcpy; `bytearray[:] = v`
        # is not (it runs at a tenth of the speed), so both sides use it.
        v = mem.view(a.gpa, size)
        d = memoryview(dst)
        t = time.perf_counter()
        d[:] = v
        rv.append(size / (time.perf_counter() - t) / 1e9)
        v.release()
        t = time.perf_counter()
        d[:] = src
        rp.append(size / (time.perf_counter() - t) / 1e9)
        d.release()
    row("py.read_gbps", "GB/s", statistics.median(rv), "memcpy", statistics.median(rp), False,
        "vmsig >= 0.8 of memcpy", 0.8)
    vm.close()


if __name__ == "__main__":
    try:
        main()
    except Exception as e:  # a benchmark never fails the run: say why
        for name, unit, peer, lower in (("py.query_rtt_us", "us", "qmp-python", True),
                                        ("py.stop_event_us", "us", "qmp-python", True),
                                        ("py.read_gbps", "GB/s", "memcpy", False)):
            print(json.dumps({"name": name, "unit": unit, "vmsig": None, "peer": peer,
                              "peer_value": None, "ratio": None,
                              "better": "lower" if lower else "higher",
                              "note": "bench_py.py failed: %s" % e}))
        sys.exit(0)
