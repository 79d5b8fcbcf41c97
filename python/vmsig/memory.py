"""Guest RAM, read-only and zero-copy, from a MEMCTX.

``MemMap`` is one generation: every descriptor mapped ``PROT_READ,
MAP_SHARED``. ``Memory`` (``Client.memory()``) follows the client's newest
generation and gives each call exactly one generation's map, never a mix.

Holes: guest RAM the guest never wrote is a hole of the memfd. Reading a
hole through a shared mapping makes the host allocate it (a page of zeros
per page read), so ``find``, ``dump`` and ``read(..., sparse=True)`` ask
the descriptor where its data is (``os.lseek`` ``SEEK_DATA``/``SEEK_HOLE``)
and never touch a hole; ``view`` and plain ``read`` touch what they cover.
"""
from __future__ import annotations

import errno as E
import mmap
import os
from typing import Callable, Iterator, List, Optional, Tuple

from . import errors
from .events import MemCtx, Segment

CHUNK = 1 << 20
PAGE = mmap.PAGESIZE


class MemMap:
    """One MEMCTX generation, mapped read-only. Views into it keep it alive."""

    def __init__(self, ev: MemCtx) -> None:
        if ev.status != 0:
            raise errors.Unavailable(-ev.status if ev.status < 0 else E.ENODEV,
                                     "guest RAM is not available", ev.why)
        self.generation = ev.generation
        self.ram_size = ev.ram_size
        self.endpoint = ev.endpoint
        self.segments: List[Segment] = sorted(ev.segments, key=lambda s: s.gpa)
        for a, b in zip(self.segments, self.segments[1:]):
            if a.gpa + a.size > b.gpa:
                raise errors.InvalidArgument(E.EINVAL, "overlapping MEMCTX segments")
        self.fds: List[int] = []
        self.maps: List[Optional[mmap.mmap]] = []
        self.base: List[int] = []   # file offset where each map starts
        self.sealed = True
        try:
            for i, fd in enumerate(ev.fds):
                own = os.dup(fd)
                self.fds.append(own)
                segs = [s for s in self.segments if s.fd_index == i]
                if not segs:
                    self.maps.append(None)
                    self.base.append(0)
                    continue
                lo = min(s.offset for s in segs) // PAGE * PAGE
                hi = max(s.offset + s.size for s in segs)
                st = os.fstat(own)
                if st.st_size < hi:
                    raise errors.InvalidArgument(E.EINVAL, "segment outside its fd")
                try:
                    import fcntl
                    seals = fcntl.fcntl(own, getattr(fcntl, "F_GET_SEALS", 1034))
                    if not seals & getattr(fcntl, "F_SEAL_SHRINK", 2):
                        self.sealed = False
                except OSError:
                    self.sealed = False
                self.maps.append(mmap.mmap(own, hi - lo, mmap.MAP_SHARED, mmap.PROT_READ,
                                           offset=lo))
                self.base.append(lo)
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        """Unmap (maps still exported through a view stay until it is released)."""
        for m in self.maps:
            if m is not None:
                try:
                    m.close()
                except BufferError:
                    pass  # a view still uses it: it goes with the view
        self.maps = []
        fds, self.fds = self.fds, []
        for fd in fds:
            try:
                os.close(fd)
            except OSError:
                pass

    def __enter__(self) -> "MemMap":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ---------------------------------------------------------------- lookup
    def _seg(self, gpa: int) -> Optional[Segment]:
        lo, hi = 0, len(self.segments)
        while lo < hi:
            mid = (lo + hi) // 2
            s = self.segments[mid]
            if gpa < s.gpa:
                hi = mid
            elif gpa - s.gpa >= s.size:
                lo = mid + 1
            else:
                return s
        return None

    def _pieces(self, gpa: int, n: int) -> List[Tuple[Segment, int, int]]:
        """[(segment, offset in it, length)] covering [gpa, gpa+n), or EFAULT."""
        out, at, left = [], gpa, n
        while left > 0:
            s = self._seg(at)
            if s is None:
                raise errors.BadAddress(E.EFAULT, "0x%x is not guest RAM in MEMCTX generation %d"
                                        % (at, self.generation))
            k = min(left, s.size - (at - s.gpa))
            out.append((s, at - s.gpa, k))
            at += k
            left -= k
        return out

    def _mpos(self, s: Segment, off: int) -> int:
        return s.offset + off - self.base[s.fd_index]

    def view(self, gpa: int, n: int) -> memoryview:
        """A read-only memoryview of [gpa, gpa+n), no copy (one segment only:
        BadAddress otherwise). Live: the guest changes it under you."""
        p = self._pieces(gpa, n)
        if len(p) != 1:
            raise errors.BadAddress(E.EFAULT, "[0x%x, 0x%x) spans %d segments; use read()"
                                    % (gpa, gpa + n, len(p)))
        s, off, k = p[0]
        pos = self._mpos(s, off)
        return memoryview(self.maps[s.fd_index])[pos:pos + k]

    def read(self, gpa: int, n: int, sparse: bool = False) -> bytes:
        """A copy of [gpa, gpa+n), across segments. ``sparse=True``: holes
        are filled with zeros without touching them (no host allocation)."""
        parts = []
        for s, off, k in self._pieces(gpa, n):
            m = self.maps[s.fd_index]
            pos = self._mpos(s, off)
            if not sparse:
                parts.append(m[pos:pos + k])
                continue
            at = off
            for d0, d1, is_data in self._extents(s, off, k):
                parts.append(m[self._mpos(s, d0):self._mpos(s, d1)] if is_data else bytes(d1 - d0))
                at = d1
            assert at == off + k
        return b"".join(parts)

    def read_into(self, gpa: int, buf) -> int:
        """Copy [gpa, gpa+len(buf)) into ``buf`` (any writable buffer:
        bytearray, mmap, a numpy array), across segments; returns the byte
        count. No allocation: for repeated copies. Make ``buf`` page-aligned
        (``mmap.mmap(-1, n)``) for big copies: glibc's memcpy from guest RAM
        (page-aligned) into a bytearray (16 bytes past a page) runs at less
        than half speed on x86 (docs/benchmarks.md, py.read_gbps)."""
        dst = memoryview(buf).cast("B")
        try:
            if dst.readonly:
                raise TypeError("read_into: the buffer is read-only")
            at = 0
            for s, off, k in self._pieces(gpa, dst.nbytes):
                pos = self._mpos(s, off)
                dst[at:at + k] = memoryview(self.maps[s.fd_index])[pos:pos + k]
                at += k
            return at
        finally:
            dst.release()

    # ---------------------------------------------------------------- holes
    def _extents(self, s: Segment, off: int, n: int) -> Iterator[Tuple[int, int, bool]]:
        """(start, end, is_data) offsets within segment s covering [off, off+n)."""
        fd = self.fds[s.fd_index]
        pos, end = s.offset + off, s.offset + off + n
        while pos < end:
            try:
                d = os.lseek(fd, pos, os.SEEK_DATA)
            except OSError as e:
                if e.errno == E.ENXIO:
                    d = end   # no data after pos
                else:         # no SEEK_DATA here: treat it all as data
                    yield pos - s.offset, end - s.offset, True
                    return
            d = min(d, end)
            if d > pos:
                yield pos - s.offset, d - s.offset, False
            if d >= end:
                return
            h = min(os.lseek(fd, d, os.SEEK_HOLE), end)
            yield d - s.offset, h - s.offset, True
            pos = h

    def data_ranges(self, gpa: Optional[int] = None, n: Optional[int] = None) -> List[Tuple[int, int]]:
        """[(gpa, length)] of the RAM that holds data (not holes) in the range
        (default: all RAM), found without touching any page."""
        out = []
        for s in self.segments:
            lo, hi = s.gpa, s.gpa + s.size
            if gpa is not None:
                lo, hi = max(lo, gpa), min(hi, gpa + (n or 0))
            if lo >= hi:
                continue
            for a, b, is_data in self._extents(s, lo - s.gpa, hi - lo):
                if is_data:
                    if out and out[-1][0] + out[-1][1] == s.gpa + a:
                        out[-1] = (out[-1][0], out[-1][1] + b - a)
                    else:
                        out.append((s.gpa + a, b - a))
        return out

    def runs(self) -> List[Tuple[int, int]]:
        """GPA-contiguous runs of segments: [(gpa, size)]."""
        out: List[Tuple[int, int]] = []
        for s in self.segments:
            if out and out[-1][0] + out[-1][1] == s.gpa:
                out[-1] = (out[-1][0], out[-1][1] + s.size)
            else:
                out.append((s.gpa, s.size))
        return out

    def find(self, pattern: bytes, start: Optional[int] = None, end: Optional[int] = None,
             max: Optional[int] = None) -> List[int]:
        """GPAs where ``pattern`` occurs, ascending (matches may cross segment
        boundaries inside a contiguous run). Holes are never read: a pattern
        with a nonzero byte cannot lie in one; an all-zero pattern matches
        there too (found from the hole map, not by reading it)."""
        pattern = bytes(pattern)
        plen = len(pattern)
        if not plen:
            raise ValueError("empty pattern")
        zero = not any(pattern)
        hits: List[int] = []
        for rg, rn in self.runs():
            lo = rg if start is None else max_(rg, start)
            hi = rg + rn if end is None else min(rg + rn, end)
            if hi - lo < plen:
                continue
            # Data extents of the run, merged; holes between them are zeros.
            data = self.data_ranges(lo, hi - lo)
            a = lo
            while a + plen <= hi:
                n = min(CHUNK + plen - 1, hi - a)
                if not zero and not _overlaps(data, a, n):
                    a += CHUNK
                    continue
                buf = self._window(data, a, n)
                i = buf.find(pattern)
                while i != -1 and i < CHUNK:
                    hits.append(a + i)
                    if max is not None and len(hits) >= max:
                        return hits
                    i = buf.find(pattern, i + 1)
                a += CHUNK
        return hits

    def _window(self, data: List[Tuple[int, int]], a: int, n: int) -> bytes:
        """[a, a+n) with data read from the mapping and holes as zeros."""
        if _covered(data, a, n):
            return self.read(a, n)
        out = bytearray(n)
        for g, k in data:
            lo, hi = max_(g, a), min(g + k, a + n)
            if lo < hi:
                out[lo - a:hi - a] = self.read(lo, hi - lo)
        return bytes(out)

    def dump(self, path: str, gpa: Optional[int] = None, n: Optional[int] = None,
             progress: Optional[Callable[[int, int], None]] = None) -> int:
        """Write guest RAM (default: every segment, in GPA order, back to back,
        as ``vmsig-helper dump``) to ``path``. Holes are not read: in a
        regular file they become holes of the file (seek), elsewhere zeros.
        ``progress(done, total)`` is called after each chunk. Returns bytes."""
        ranges = [(gpa, n)] if gpa is not None else [(s.gpa, s.size) for s in self.segments]
        total = sum(k for _, k in ranges)
        done = 0
        with open(path, "wb") as f:
            seekable = f.seekable()
            for g, k in ranges:
                self._pieces(g, k)  # EFAULT before writing anything of it
                data = self.data_ranges(g, k)
                at = g
                for dg, dk in data + [(g + k, 0)]:
                    if dg > at:  # a hole
                        gap = dg - at
                        if seekable:
                            f.seek(gap, os.SEEK_CUR)
                        else:
                            while gap:
                                z = min(gap, CHUNK)
                                f.write(bytes(z))
                                gap -= z
                        done += dg - at
                        at = dg
                    while at < dg + dk:
                        c = min(CHUNK, dg + dk - at)
                        f.write(self.read(at, c))
                        at += c
                        done += c
                        if progress:
                            progress(done, total)
                if progress:
                    progress(done, total)
            if seekable:
                f.truncate()
        return total


def max_(a: int, b: int) -> int:
    return a if a > b else b


def _overlaps(data: List[Tuple[int, int]], a: int, n: int) -> bool:
    return any(g < a + n and a < g + k for g, k in data)


def _covered(data: List[Tuple[int, int]], a: int, n: int) -> bool:
    return any(g <= a and a + n <= g + k for g, k in data)


class Memory:
    """Guest RAM of one endpoint, following new MEMCTX generations.

    Every call (``read``, ``view``, ``find``, ``dump``) takes the newest map
    the client has received and uses that one generation throughout; a
    ``view`` keeps its generation's mapping alive while it exists.
    ``generation`` and ``map`` give the current one; ``refresh()`` reads
    what the server sent without blocking, so a new map is seen.
    """

    def __init__(self, client, endpoint: int) -> None:
        self._client = client
        self.endpoint = endpoint

    @property
    def map(self) -> MemMap:
        self._client._pump()
        m = self._client._maps.get(self.endpoint)
        if m is None:
            raise errors.Unavailable(E.ENODEV, "no MEMCTX for endpoint %d yet" % self.endpoint)
        if isinstance(m, errors.VmsigError):
            raise m
        return m

    def refresh(self) -> int:
        """Read pending frames (no wait); the current generation."""
        return self.map.generation

    @property
    def generation(self) -> int:
        return self.map.generation

    @property
    def ram_size(self) -> int:
        return self.map.ram_size

    @property
    def segments(self) -> List[Segment]:
        return self.map.segments

    @property
    def sealed(self) -> bool:
        return self.map.sealed

    def read(self, gpa: int, n: int, sparse: bool = False) -> bytes:
        """Copy [gpa, gpa+n) (see MemMap.read)."""
        return self.map.read(gpa, n, sparse)

    def view(self, gpa: int, n: int) -> memoryview:
        """Zero-copy memoryview of [gpa, gpa+n) (see MemMap.view)."""
        return self.map.view(gpa, n)

    def read_into(self, gpa: int, buf) -> int:
        """Copy [gpa, gpa+len(buf)) into a writable buffer (see MemMap.read_into)."""
        return self.map.read_into(gpa, buf)

    def u32(self, gpa: int) -> int:
        return int.from_bytes(self.map.view(gpa, 4), "little")

    def u64(self, gpa: int) -> int:
        return int.from_bytes(self.map.view(gpa, 8), "little")

    def find(self, pattern, start: Optional[int] = None, end: Optional[int] = None,
             max: Optional[int] = None) -> List[int]:
        """GPAs of ``pattern`` (bytes or str), skipping holes (see MemMap.find)."""
        if isinstance(pattern, str):
            pattern = pattern.encode()
        return self.map.find(pattern, start, end, max)

    def data_ranges(self, gpa: Optional[int] = None, n: Optional[int] = None):
        return self.map.data_ranges(gpa, n)

    # guest-virtual addresses (vmsig.introspect): root is a CR3 value
    # (vm.regs().cr3) or the kernel's (vm.linux().root); mode 0 = 4-level
    def translate(self, root: int, va: int, mode: int = 0, sparse: bool = False):
        """The guest-physical address of va (a ``Translation``); NotMapped
        (EFAULT, with .level) if it is not mapped."""
        from . import introspect
        return introspect.translate(self.map, root, va, mode, sparse)

    def vread(self, root: int, va: int, n: int, mode: int = 0, sparse: bool = False) -> bytes:
        """n bytes at guest-virtual address va, across pages; NotMapped
        (EFAULT) at the first page that is not mapped."""
        from . import introspect
        return introspect.vread(self.map, root, va, n, mode, sparse)

    def dump(self, path: str, gpa: Optional[int] = None, n: Optional[int] = None,
             progress: Optional[Callable[[int, int], None]] = None) -> int:
        """Write guest RAM to a file, skipping holes (see MemMap.dump)."""
        return self.map.dump(path, gpa, n, progress)
