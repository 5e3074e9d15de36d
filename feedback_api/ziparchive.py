"""A deterministic Zip64 writer whose deflated members are compressed on several threads.

Python's zipfile deflates a member on one core (~0.9 s for the 590 MB JSONL of a 1M-row export,
the longest step after the export itself). Here a member is cut into CHUNK-sized pieces, each
deflated by its own compressor on a thread pool (zlib releases the GIL) and ended with a sync
flush, which byte-aligns it; the pieces one after the other, closed by an empty final block,
are one valid deflate stream (pigz's scheme). The CRC-32 runs over the pieces in order in the
calling thread meanwhile. The output depends only on the files and CHUNK: fixed order, dates
(1980-01-01), permissions (0644), Zip64 records always (like zipfile's force_zip64). Any zip
reader reads it; tests/test_ziparchive.py checks it with zipfile, member by member.
"""

from __future__ import annotations

import os
import struct
import threading
import zlib
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

CHUNK = 4 << 20  # bytes deflated per task
THREADS = 2
LEVEL = 1  # the JSONL is most of an export's bytes: level 1 is ~3x faster than the default
FINAL_BLOCK = b"\x03\x00"  # an empty fixed-Huffman block with the final bit
DOS_DATE, DOS_TIME = (0 << 9) | (1 << 5) | 1, 0  # 1980-01-01 00:00:00
VERSION = 45  # Zip64
MADE_BY = (3 << 8) | VERSION  # Unix, so that the permissions below are read
EXTERNAL_ATTR = 0o100644 << 16  # a regular file, rw-r--r--
FULL = 0xFFFFFFFF


@dataclass
class _Entry:
    name: bytes
    method: int
    crc: int
    size: int
    compressed: int
    offset: int


@dataclass
class Deflated:
    """A file deflated ahead of the archive (by a Follower), as _member would deflate it."""

    path: Path  # the deflate stream, final block included
    crc: int
    size: int  # of the file


def write_zip(target: Path, members: list[tuple[str, Path, bool | Deflated]]) -> None:
    """Write `target` with each (name in the archive, file, deflate?) in order; a member
    deflated ahead is copied as it is."""
    entries = []
    with open(target, "wb") as out, ThreadPoolExecutor(THREADS) as pool:
        for name, path, deflate in members:
            if isinstance(deflate, Deflated):
                entries.append(_copied(out, name.encode(), deflate))
            else:
                entries.append(_member(out, pool, name.encode(), path, deflate))
        _central_directory(out, entries)


class Follower(threading.Thread):
    """Deflates a file while another thread appends to it, in the CHUNK pieces _member cuts, at
    the lowest CPU priority (Linux: this thread only), so that it takes the CPU the writing
    leaves idle. The writer calls grow(size) after each flushed write and close() at the end;
    result() waits for the rest."""

    def __init__(self, source: Path, target: Path):
        super().__init__(daemon=True)
        self.source, self.target = source, target
        self.available, self.closed = 0, False
        self.changed = threading.Condition()
        self.crc = self.size = 0
        self.error: BaseException | None = None

    def grow(self, size: int) -> None:
        with self.changed:
            self.available = size
            self.changed.notify()

    def close(self) -> None:
        with self.changed:
            self.closed = True
            self.changed.notify()

    def run(self) -> None:
        try:
            if hasattr(os, "setpriority"):
                os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 19)
            with open(self.source, "rb") as source, open(self.target, "wb") as out:
                while chunk := self._next(source):
                    self.crc = zlib.crc32(chunk, self.crc)
                    self.size += len(chunk)
                    out.write(_deflate(chunk))
                out.write(FINAL_BLOCK)
        except BaseException as exc:  # re-raised by result()
            self.error = exc

    def _next(self, source) -> bytes:
        """The next piece: CHUNK bytes, or what is left once the writer closed."""
        with self.changed:
            self.changed.wait_for(lambda: self.closed or self.available - self.size >= CHUNK)
            size = min(CHUNK, self.available - self.size)
        return source.read(size) if size > 0 else b""

    def result(self) -> Deflated:
        self.close()
        self.join()
        if self.error is not None:
            raise self.error
        return Deflated(self.target, self.crc, self.size)


def _copied(out, name: bytes, deflated: Deflated) -> _Entry:
    entry = _Entry(name, 8, deflated.crc, deflated.size, 0, out.tell())
    entry.compressed = deflated.path.stat().st_size
    out.write(_local_header(entry))
    with open(deflated.path, "rb") as source:
        while block := source.read(CHUNK):
            out.write(block)
    return entry


def _deflate(chunk: bytes) -> bytes:
    compressor = zlib.compressobj(LEVEL, zlib.DEFLATED, -15)
    return compressor.compress(chunk) + compressor.flush(zlib.Z_SYNC_FLUSH)


def _member(out, pool, name: bytes, path: Path, deflate: bool) -> _Entry:
    offset = out.tell()
    entry = _Entry(name, 8 if deflate else 0, 0, 0, 0, offset)
    out.write(_local_header(entry))  # sizes and CRC filled in below
    start = out.tell()
    pending: deque = deque()  # deflated chunks in flight, in order
    with open(path, "rb") as source:
        for chunk in iter(lambda: source.read(CHUNK), b""):
            entry.crc = zlib.crc32(chunk, entry.crc)
            entry.size += len(chunk)
            if not deflate:
                out.write(chunk)
                continue
            pending.append(pool.submit(_deflate, chunk))
            while len(pending) > THREADS * 2:  # bounded memory: a few chunks in flight
                out.write(pending.popleft().result())
    while pending:
        out.write(pending.popleft().result())
    if deflate:
        out.write(FINAL_BLOCK)
    end = out.tell()
    entry.compressed = end - start
    out.seek(offset)
    out.write(_local_header(entry))
    out.seek(end)
    return entry


def _fields(entry: _Entry, extra: bytes) -> bytes:
    """What the local header and the central directory record both say of a member, from
    "version needed" to "extra field length" (sizes in the Zip64 extra field)."""
    return struct.pack(
        "<HHHHHIIIHH",
        VERSION,
        0,
        entry.method,
        DOS_TIME,
        DOS_DATE,
        entry.crc,
        FULL,
        FULL,
        len(entry.name),
        len(extra),
    )


def _local_header(entry: _Entry) -> bytes:
    extra = struct.pack("<HHQQ", 1, 16, entry.size, entry.compressed)
    return struct.pack("<I", 0x04034B50) + _fields(entry, extra) + entry.name + extra


def _central_directory(out, entries: list[_Entry]) -> None:
    start = out.tell()
    for entry in entries:
        extra = struct.pack("<HHQQQ", 1, 24, entry.size, entry.compressed, entry.offset)
        # comment length, disk, internal and external attributes, local header offset
        tail = struct.pack("<HHHII", 0, 0, 0, EXTERNAL_ATTR, FULL)
        head = struct.pack("<IH", 0x02014B50, MADE_BY)
        out.write(head + _fields(entry, extra) + tail + entry.name + extra)
    end = out.tell()
    count, size = len(entries), end - start
    # Zip64 end of central directory record, its locator, then the classic record.
    out.write(
        struct.pack(
            "<IQHHIIQQQQ", 0x06064B50, 44, MADE_BY, VERSION, 0, 0, count, count, size, start
        )
    )
    out.write(struct.pack("<IIQI", 0x07064B50, 0, end, 1))
    out.write(struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, 0xFFFF, 0xFFFF, FULL, FULL, 0))
