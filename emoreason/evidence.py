"""The ``Evidence`` schema: everything perception found in a clip, with times, as one pydantic model.

Every later stage (reasoning, reports, the model's processor, training data, evaluation) reads this and nothing else, so
each claim EmoReason makes can be traced to a number here. Times are seconds from the start of the clip.

The schema protects every consumer: numbers are finite (no NaN or Infinity), per-frame lists are aligned with their
``times``, rates are positive, AU names are FACS codes from :mod:`emoreason.knowledge.facs`, key-frame thumbnails are
base64 JPEG. Unknown fields are dropped with a warning; a file of a newer major schema version is refused.
"""

from __future__ import annotations

import base64
import binascii
import logging
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal, Self, get_args, get_origin

from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator, model_validator

from emoreason.errors import DataError
from emoreason.io import atomic_write_text, read_json
from emoreason.knowledge.facs import AU_CODES, AUS, INTENSITY_MAX

log = logging.getLogger(__name__)

SCHEMA_VERSION = "1.1"  # 1.1: Evidence.key_frames
_VERSION_RE = re.compile(r"(\d+)\.(\d+)")


class _Part(BaseModel):
    """Base of every part of the schema: NaN and Infinity are refused wherever a number is expected."""

    model_config = ConfigDict(allow_inf_nan=False)


def _au_code(code: str) -> str:
    if code not in AUS:
        raise ValueError(f"unknown Action Unit {code!r}; known: {', '.join(AU_CODES)}")
    return code


def _aligned(times: list[float], **lists: list[Any] | None) -> None:
    """Raise ``ValueError`` unless every list given is as long as ``times``."""
    for name, values in lists.items():
        if values is not None and len(values) != len(times):
            raise ValueError(f"{name} has {len(values)} values for {len(times)} times")


class ModelVersion(_Part):
    """A model or library that produced part of the evidence."""

    name: str
    version: str
    sha256: str | None = None


class MediaInfo(_Part):
    path: str
    container: str | None = None
    duration_s: float = Field(ge=0)
    has_video: bool
    has_audio: bool
    width: int | None = Field(None, gt=0)
    height: int | None = Field(None, gt=0)
    native_fps: float | None = Field(None, gt=0)
    sample_fps: float | None = Field(None, gt=0, description="frames per second actually analysed")
    n_frames: int = Field(0, ge=0, description="number of frames analysed")
    audio_sample_rate: int | None = Field(None, gt=0, description="rate of the analysed audio (16 kHz mono)")
    still_image: bool = Field(False, description="the input is a photo (one image, no time axis), not a clip")


class HeadPose(_Part):
    yaw: float  # degrees, + = the person turns to their left
    pitch: float  # degrees, + = head up
    roll: float  # degrees, + = head tilts to their left


class FaceTrack(_Part):
    """The main face, frame by frame. Lists are aligned with ``times``; ``None`` where the face was not found."""

    times: list[float]
    present: list[bool]
    boxes: list[list[float] | None] = Field(description="[x0, y0, x1, y1] in pixels")
    scores: list[float | None]
    poses: list[HeadPose | None]
    coverage: float = Field(ge=0, le=1, description="fraction of analysed frames with the main face")
    max_faces: int = Field(0, ge=0, description="largest number of faces seen in one frame")
    track_switches: int = Field(0, ge=0, description="times the main track was lost and re-acquired")
    landmarks: list[list[list[float]] | None] | None = Field(
        None, description="optional 468x3 mesh per frame, pixels (x, y) and relative depth; omitted by default"
    )

    @model_validator(mode="after")
    def _check(self) -> Self:
        _aligned(self.times, present=self.present, boxes=self.boxes, scores=self.scores, poses=self.poses,
                 landmarks=self.landmarks)  # fmt: skip
        if any(b is not None and len(b) != 4 for b in self.boxes):
            raise ValueError("a face box is not [x0, y0, x1, y1]")
        return self


class AUSeries(_Part):
    """AU intensities on the 0-5 scale, one value per analysed frame (``None`` where no face)."""

    times: list[float]
    intensities: dict[str, list[float | None]]
    baseline: dict[str, float] = Field(default_factory=dict, description="neutral reference per AU feature used")
    method: str = "landmark-geometry"

    @model_validator(mode="after")
    def _check(self) -> Self:
        for au, values in self.intensities.items():
            _au_code(au)
            _aligned(self.times, **{au: values})
            if any(v is not None and not 0 <= v <= INTENSITY_MAX for v in values):
                raise ValueError(f"{au} has an intensity outside 0-{INTENSITY_MAX:g}")
        return self


class AUEvent(_Part):
    au: str = Field(description="a FACS code from emoreason.knowledge.facs, e.g. AU12")
    onset: float
    apex: float
    offset: float
    peak: float = Field(ge=0, le=INTENSITY_MAX, description="intensity at the apex, 0-5")
    mean: float = Field(ge=0, le=INTENSITY_MAX, description="mean intensity between onset and offset")

    @field_validator("au")
    @classmethod
    def _known_au(cls, v: str) -> str:
        return _au_code(v)

    @model_validator(mode="after")
    def _ordered(self) -> Self:
        if not self.onset <= self.apex <= self.offset:
            raise ValueError(f"{self.au}: onset {self.onset}, apex {self.apex}, offset {self.offset} are not in order")
        return self

    @property
    def duration(self) -> float:
        return self.offset - self.onset


class ExpressionCue(_Part):
    """Per-frame probabilities from a visual expression classifier, when one is available."""

    model: str
    labels: list[str]
    times: list[float]
    probs: list[list[float] | None]

    @model_validator(mode="after")
    def _check(self) -> Self:
        _aligned(self.times, probs=self.probs)
        if any(row is not None and len(row) != len(self.labels) for row in self.probs):
            raise ValueError(f"a row of probs does not have one value per label ({len(self.labels)} labels)")
        return self


class Prosody(_Part):
    """Voice features on a regular frame grid (``hop_s``) plus clip-level summaries."""

    hop_s: float = Field(gt=0)
    times: list[float]
    f0_hz: list[float | None]
    energy_db: list[float]
    voiced: list[bool]
    speech_segments: list[tuple[float, float]] = Field(default_factory=list)
    speech_ratio: float = Field(0.0, ge=0, le=1)
    f0_mean_hz: float | None = None
    f0_std_hz: float | None = None
    f0_range_semitones: float | None = None
    energy_mean_db: float | None = None
    energy_std_db: float | None = None
    jitter_local: float | None = Field(None, description="mean absolute period difference / mean period")
    shimmer_local: float | None = Field(None, description="mean absolute amplitude difference / mean amplitude")
    speaking_rate_sps: float | None = Field(None, description="syllable-like onsets per second of speech")
    words_per_minute: float | None = None

    @model_validator(mode="after")
    def _check(self) -> Self:
        _aligned(self.times, f0_hz=self.f0_hz, energy_db=self.energy_db, voiced=self.voiced)
        if any(s > e for s, e in self.speech_segments):
            raise ValueError("a speech segment ends before it starts")
        return self


class Word(_Part):
    word: str
    start: float
    end: float
    probability: float | None = None

    @model_validator(mode="after")
    def _check(self) -> Self:
        if self.start > self.end:
            raise ValueError(f"the word {self.word!r} ends before it starts")
        return self


class Transcript(_Part):
    text: str
    language: str | None = None
    words: list[Word] = Field(default_factory=list)
    model: str | None = None


FlagCode = Literal[
    "no_video",
    "no_audio",
    "no_face",
    "low_face_coverage",
    "multiple_faces",
    "extreme_head_pose",
    "no_speech",
    "asr_unavailable",
    "short_clip",
    "long_clip_truncated",
    "low_resolution",
    "downscaled",
    "silent_audio",
    "expression_cue_unavailable",
    "truncated_audio",
]


class QualityFlag(_Part):
    code: FlagCode
    message: str


class KeyFrame(_Part):
    """A small JPEG of one analysed frame, kept by perception so a report can show it without decoding the clip."""

    time: float = Field(description="s; 0 for a photo")
    jpeg: str = Field(description="base64 JPEG, the frame downscaled to a long side of a few hundred pixels")
    width: int = Field(gt=0)
    height: int = Field(gt=0)

    @field_validator("jpeg")
    @classmethod
    def _is_jpeg(cls, v: str) -> str:
        try:
            head = base64.b64decode(v[:16], validate=True)
            base64.b64decode(v, validate=True)
        except (binascii.Error, ValueError):
            raise ValueError("not base64") from None
        if not head.startswith(b"\xff\xd8"):
            raise ValueError("not a JPEG")
        return v

    def data_url(self) -> str:
        return f"data:image/jpeg;base64,{self.jpeg}"


def _submodel(annotation: Any) -> type[BaseModel] | None:
    """The schema model inside a field's annotation (``X``, ``X | None``, ``list[X | None]``), if any."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    if get_origin(annotation) is dict:
        return None
    for arg in get_args(annotation):
        if (m := _submodel(arg)) is not None:
            return m
    return None


def unknown_fields(model: type[BaseModel], data: Any, prefix: str = "") -> list[str]:
    """Dotted paths of the keys in ``data`` that ``model`` has no field for (list items as ``name[]``)."""
    if not isinstance(data, dict):
        return []
    out: list[str] = []
    for key, value in data.items():
        field = model.model_fields.get(key)
        if field is None:
            out.append(prefix + str(key))
            continue
        sub = _submodel(field.annotation)
        if sub is None:
            continue
        items = value if isinstance(value, list) else [value]
        name = prefix + key + ("[]" if isinstance(value, list) else "")
        for item in items:
            out += [u for u in unknown_fields(sub, item, name + ".") if u not in out]
    return out


class Evidence(_Part):
    schema_version: str = SCHEMA_VERSION
    created_at: str = Field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))
    media: MediaInfo
    face: FaceTrack | None = None
    aus: AUSeries | None = None
    au_events: list[AUEvent] = Field(default_factory=list)
    expression: ExpressionCue | None = None
    reader: ExpressionCue | None = Field(
        None, description="the learned face reader's per-frame expression probabilities"
    )
    prosody: Prosody | None = None
    transcript: Transcript | None = None
    flags: list[QualityFlag] = Field(default_factory=list)
    models: list[ModelVersion] = Field(default_factory=list)
    key_frames: list[KeyFrame] = Field(default_factory=list, description="2-4 thumbnails picked by perception")

    @model_validator(mode="before")
    @classmethod
    def _warn_unknown(cls, data: Any, info: ValidationInfo) -> Any:
        unknown = unknown_fields(cls, data)
        if unknown:
            where = (info.context or {}).get("path", "evidence")
            log.warning(
                "%s: unknown fields ignored (Evidence schema %s): %s", where, SCHEMA_VERSION, ", ".join(unknown)
            )
        return data

    @field_validator("schema_version")
    @classmethod
    def _readable_version(cls, v: str) -> str:
        m = _VERSION_RE.fullmatch(v)
        if m is None:
            raise ValueError(f"schema version {v!r} is not MAJOR.MINOR")
        major, ours = int(m.group(1)), int(SCHEMA_VERSION.split(".")[0])
        if major > ours:
            raise ValueError(f"schema version {v} is newer than this EmoReason reads ({ours}.x): upgrade emoreason")
        if major < ours:
            raise ValueError(
                f"schema version {v} is older than this EmoReason reads ({ours}.x): perceive the clip again"
            )
        return v

    def has_flag(self, code: str) -> bool:
        return any(f.code == code for f in self.flags)

    def save(self, path: str | Path) -> Path:
        return atomic_write_text(path, self.model_dump_json(indent=1, exclude_none=False))

    @classmethod
    def load(cls, path: str | Path) -> Evidence:
        data = read_json(path)
        try:
            return cls.model_validate(data, context={"path": str(path)})
        except ValidationError as e:
            raise DataError(f"not an Evidence file: {first_error(e)}", path) from None


def first_error(e: ValidationError) -> str:
    """``where: what`` of the first error of ``e`` on one line, with how many more there are."""
    errors = e.errors()
    first = errors[0]
    where = ".".join(str(p) for p in first["loc"])
    msg = first["msg"].removeprefix("Value error, ").replace("\n", " ")
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return f"{where}: {msg}{more}" if where else f"{msg}{more}"
