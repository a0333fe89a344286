"""Per-clip feature cache: a clip's :class:`~emoreason.evidence.Evidence` stored once, keyed by the clip's content.

The key is the SHA-256 of the file's bytes plus a ``tag`` naming the perception settings, so renaming or copying a clip
reuses its features and changing the settings does not. Entries live at ``<root>/<key[:2]>/<key>.json`` and are written
atomically, so an interrupted run leaves no half entry. Training epochs and rebuilt datasets read from here instead of
decoding the video again.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable
from pathlib import Path

from emoreason.errors import DataError, MediaError
from emoreason.evidence import Evidence
from emoreason.io import sha256_file

log = logging.getLogger(__name__)

_CHUNK = 1 << 20


def file_sha256(path: str | Path) -> str:
    """SHA-256 of a file's bytes, read in 1 MiB chunks."""
    try:
        return sha256_file(path)
    except FileNotFoundError:
        raise MediaError("file not found", path) from None


class FeatureCache:
    """Evidence per clip on disk. ``compute`` defaults to :func:`emoreason.perception.pipeline.perceive`."""

    def __init__(self, root: str | Path, tag: str = "default", compute: Callable[[Path], Evidence] | None = None):
        self.root = Path(root)
        self.tag = tag
        self._compute = compute
        self.hits = 0
        self.misses = 0

    def key(self, video: str | Path) -> str:
        return hashlib.sha256(f"{file_sha256(video)}:{self.tag}".encode()).hexdigest()

    def path_for(self, video: str | Path) -> Path:
        k = self.key(video)
        return self.root / k[:2] / f"{k}.json"

    def get(self, video: str | Path) -> Evidence | None:
        p = self.path_for(video)
        if not p.exists():
            return None
        try:
            return Evidence.load(p)
        except DataError:
            log.warning("ignoring a corrupt cache entry %s; it will be recomputed", p)
            return None

    def evidence_path(self, video: str | Path) -> Path:
        """The cached evidence file of ``video``, computing it first if needed."""
        p = self.path_for(video)
        if p.exists() and self.get(video) is not None:
            self.hits += 1
            return p
        self.misses += 1
        compute = self._compute
        if compute is None:
            from emoreason.perception.pipeline import perceive

            compute = perceive
        ev = compute(Path(video))
        ev.save(p)
        return p

    def evidence(self, video: str | Path) -> Evidence:
        return Evidence.load(self.evidence_path(video))
