"""Request bodies read with bounded memory: JSON whose long strings go to disk, and base64 decoded from disk in chunks.

A chat request carries its clip as a base64 string inside JSON, often 100 MB and more. :class:`SpillingJSONReader`
is fed the raw body chunk by chunk and keeps in memory only the JSON around long strings: every string longer than
``spill_at`` bytes is written, still JSON-escaped, to a file of its own, and the kept text holds a placeholder for it.
:func:`decode_base64_file` then turns such a file (a ``data:...;base64,`` URL or bare base64) into the clip's bytes on
disk, hashing as it goes, one chunk at a time. Nothing here touches the event loop: callers run :meth:`feed`,
:meth:`finish` and :func:`decode_base64_file` in a worker thread.

>>> import tempfile
>>> folder = Path(tempfile.mkdtemp())
>>> reader = SpillingJSONReader(folder, spill_at=8, max_kept=1000)
>>> reader.feed(b'{"short": "hi", "long": "data:video/mp4;base64,aGVsbG8gd29ybGQ="}')
>>> obj = reader.finish()
>>> obj["short"], reader.spill_of(obj["long"]).name
('hi', 'spill-0.txt')
>>> out = folder / "clip.bin"
>>> decoded = decode_base64_file(reader.spill_of(obj["long"]), out, max_bytes=100)
>>> decoded.mime, decoded.size, out.read_bytes()
('video/mp4', 11, b'hello world')
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

SPILL_AT = 64 * 1024  # strings longer than this (bytes, JSON-escaped) go to disk
DECODE_CHUNK = 1 << 20  # base64 characters decoded per step
MAX_JSON_DEPTH = 64  # deeper bodies are refused (json and the walks below would recurse)
_QUOTE_OR_ESCAPE = re.compile(rb'["\\]')
_HEADER = re.compile(rb"^data:(?P<mime>[\w.+-]+/[\w.+-]+)?(?:;[\w=.-]+)*;base64,")


class BodyError(Exception):
    """The body cannot be read: ``status`` is the HTTP answer (400 malformed, 413 too large)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message


class SpillingJSONReader:
    """Reads a JSON body fed in chunks; strings longer than ``spill_at`` bytes are written to files in ``folder``.

    The kept text (the JSON with placeholders for spilled strings) may grow to ``max_kept`` bytes (413 above).
    """

    def __init__(self, folder: Path, spill_at: int = SPILL_AT, max_kept: int = 1 << 20) -> None:
        self.folder, self.spill_at, self.max_kept = Path(folder), spill_at, max_kept
        self._tag = f"emoreason-spill:{secrets.token_hex(8)}:"
        self._kept = bytearray()
        self._in_string = False
        self._escaped = False  # the previous chunk ended inside a string on a backslash
        self._buf = bytearray()  # the current string, while short
        self._file: IO[bytes] | None = None  # the current string, once spilled
        self._spills: dict[str, Path] = {}

    def feed(self, data: bytes) -> None:
        view = memoryview(data)  # slices of a view are not copies: a chunk may be the whole body
        i, n = 0, len(data)
        while i < n:
            if not self._in_string:
                j = data.find(b'"', i)
                end = n if j < 0 else j + 1
                self._keep(view[i:end])
                self._in_string = j >= 0
                i = end
                continue
            if self._escaped:
                self._string(view[i : i + 1])
                self._escaped, i = False, i + 1
                continue
            m = _QUOTE_OR_ESCAPE.search(data, i)
            if m is None:
                self._string(view[i:])
                break
            j = m.start()
            if data[j] == 0x5C:  # a backslash: it and the byte it escapes belong to the string
                self._string(view[i : j + 2])
                self._escaped, i = j + 1 >= n, j + 2
            else:
                self._string(view[i:j])
                self._end_string()
                i = j + 1

    def finish(self) -> Any:
        """The parsed JSON, spilled strings replaced by placeholders (see :meth:`spill_of`)."""
        if self._in_string:
            self._close_file()
            raise BodyError(400, "the request body is not JSON (it ends inside a string)")
        try:
            obj = json.loads(bytes(self._kept))
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise BodyError(400, "the request body is not JSON") from None
        except RecursionError:
            raise BodyError(400, f"the request body is nested deeper than {MAX_JSON_DEPTH} levels") from None
        check_depth(obj)
        return obj

    def spill_of(self, value: Any) -> Path | None:
        """The file holding the string that ``value`` stands for, or None when ``value`` is not a placeholder."""
        return self._spills.get(value) if isinstance(value, str) and value.startswith(self._tag) else None

    def restore(self, value: str) -> str:
        """The spilled string ``value`` stands for, read back (for strings that are not clips: text, paths)."""
        path = self._spills[value]
        if path.stat().st_size > self.max_kept:
            raise BodyError(413, f"a string in the request is over {self.max_kept} bytes")
        try:
            return json.loads(b'"' + path.read_bytes() + b'"')
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise BodyError(400, "the request body is not JSON (a bad string)") from None

    # internals

    def _keep(self, piece: bytes | memoryview) -> None:
        self._kept += piece
        if len(self._kept) > self.max_kept:
            raise BodyError(413, f"the JSON around the clip is over the {self.max_kept}-byte limit")

    def _string(self, piece: bytes | memoryview) -> None:
        if self._file is not None:
            self._file.write(piece)
            return
        self._buf += piece
        if len(self._buf) > self.spill_at:
            path = self.folder / f"spill-{len(self._spills)}.txt"
            self._spills[f"{self._tag}{len(self._spills)}"] = path
            self._file = path.open("wb")
            self._file.write(self._buf)
            self._buf = bytearray()

    def _end_string(self) -> None:
        if self._file is not None:
            self._close_file()
            self._keep(f"{self._tag}{len(self._spills) - 1}".encode() + b'"')
        else:
            self._keep(bytes(self._buf) + b'"')
            self._buf = bytearray()
        self._in_string = False

    def _close_file(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


def check_depth(obj: Any, limit: int = MAX_JSON_DEPTH) -> None:
    """Raise :class:`BodyError` (400) when ``obj`` nests lists/objects deeper than ``limit``; no recursion."""
    stack = [(obj, 1)]
    while stack:
        x, depth = stack.pop()
        if isinstance(x, dict | list):
            if depth > limit:
                raise BodyError(400, f"the request body is nested deeper than {limit} levels")
            stack.extend((v, depth + 1) for v in (x.values() if isinstance(x, dict) else x))


@dataclass
class Decoded:
    mime: str | None  # from the data URL header, None for bare base64
    size: int
    sha256: str


def decode_base64_file(src: Path, dst: Path, max_bytes: int, what: str = "clip") -> Decoded:
    """Decode the JSON-escaped base64 (a data URL or bare) in ``src`` into ``dst``, ``DECODE_CHUNK`` at a time.

    Raises :class:`BodyError`: 400 for text that is not base64, 413 once more than ``max_bytes`` are decoded.
    """
    digest, size, mime, carry = hashlib.sha256(), 0, None, b""
    with src.open("rb") as f, dst.open("wb") as out:
        head = f.read(4096).replace(b"\\/", b"/")
        m = _HEADER.match(head)
        if m:
            mime = m.group("mime").decode() if m.group("mime") else None
            head = head[m.end() :]
        elif head.startswith(b"data:"):
            raise BodyError(400, f"{what}: a data URL must be base64 (data:<mime>;base64,...)")
        pending, ended = head, False
        while True:
            more = f.read(DECODE_CHUNK)
            if pending.endswith(b"\\") and more:  # an escape split across reads
                pending, more = pending + more[:1], more[1:]
            text = carry + pending.replace(b"\\/", b"/")
            if b"\\" in text:
                raise BodyError(400, f"{what}: not valid base64 (an escape other than \\/)")
            usable = len(text) - len(text) % 4 if more else len(text)
            piece, carry = text[:usable], text[usable:]
            if piece:
                if ended:
                    raise BodyError(400, f"{what}: not valid base64 (data after the padding)")
                try:
                    raw = base64.b64decode(piece, validate=True)
                except (binascii.Error, ValueError):
                    raise BodyError(400, f"{what}: not valid base64") from None
                ended = piece.endswith(b"=")
                size += len(raw)
                if size > max_bytes:
                    raise BodyError(413, f"{what}: clip is over the {max_bytes / 1024 / 1024:.1f} MB limit")
                digest.update(raw)
                out.write(raw)
            if not more:
                break
            pending = more
    return Decoded(mime=mime, size=size, sha256=digest.hexdigest())
