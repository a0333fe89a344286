"""The ``Evidence`` schema: everything perception found in a clip, with times, as one pydantic model.

Every later stage (reasoning, reports, the model's processor, training data, evaluation) reads this and nothing else, so
each claim EmoReason makes can be traced to a number here. Times are seconds from the start of the clip.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, ValidationError

from emoreason.errors import DataError
from emoreason.io import atomic_write_text, read_json

SCHEMA_VERSION = "1.0"


class ModelVersion(BaseModel):
    """A model or library that produced part of the evidence."""

    name: str
    version: str
    sha256: str | None = None


class MediaInfo(BaseModel):
    path: str
    container: str | None = None
    duration_s: float
    has_video: bool
    has_audio: bool
    width: int | None = None
    height: int | None = None
    native_fps: float | None = None
    sample_fps: float | None = Field(None, description="frames per second actually analysed")
    n_frames: int = Field(0, description="number of frames analysed")
    audio_sample_rate: int | None = Field(None, description="rate of the analysed audio (16 kHz mono)")
    still_image: bool = Field(False, description="the input is a photo (one image, no time axis), not a clip")


class HeadPose(BaseModel):
    yaw: float  # degrees, + = the person turns to their left
    pitch: float  # degrees, + = head up
    roll: float  # degrees, + = head tilts to their left


class FaceTrack(BaseModel):
    """The main face, frame by frame. Lists are aligned with ``times``; ``None`` where the face was not found."""

    times: list[float]
    present: list[bool]
    boxes: list[list[float] | None] = Field(description="[x0, y0, x1, y1] in pixels")
    scores: list[float | None]
    poses: list[HeadPose | None]
    coverage: float = Field(description="fraction of analysed frames with the main face")
    max_faces: int = Field(0, description="largest number of faces seen in one frame")
    track_switches: int = Field(0, description="times the main track was lost and re-acquired")
    landmarks: list[list[list[float]] | None] | None = Field(
        None, description="optional 468x3 mesh per frame, pixels (x, y) and relative depth; omitted by default"
    )


class AUSeries(BaseModel):
    """AU intensities on the 0-5 scale, one value per analysed frame (``None`` where no face)."""

    times: list[float]
    intensities: dict[str, list[float | None]]
    baseline: dict[str, float] = Field(default_factory=dict, description="neutral reference per AU feature used")
    method: str = "landmark-geometry"


class AUEvent(BaseModel):
    au: str
    onset: float
    apex: float
    offset: float
    peak: float = Field(description="intensity at the apex, 0-5")
    mean: float = Field(description="mean intensity between onset and offset")

    @property
    def duration(self) -> float:
        return self.offset - self.onset


class ExpressionCue(BaseModel):
    """Per-frame probabilities from a visual expression classifier, when one is available."""

    model: str
    labels: list[str]
    times: list[float]
    probs: list[list[float] | None]


class Prosody(BaseModel):
    """Voice features on a regular frame grid (``hop_s``) plus clip-level summaries."""

    hop_s: float
    times: list[float]
    f0_hz: list[float | None]
    energy_db: list[float]
    voiced: list[bool]
    speech_segments: list[tuple[float, float]] = Field(default_factory=list)
    speech_ratio: float = 0.0
    f0_mean_hz: float | None = None
    f0_std_hz: float | None = None
    f0_range_semitones: float | None = None
    energy_mean_db: float | None = None
    energy_std_db: float | None = None
    jitter_local: float | None = Field(None, description="mean absolute period difference / mean period")
    shimmer_local: float | None = Field(None, description="mean absolute amplitude difference / mean amplitude")
    speaking_rate_sps: float | None = Field(None, description="syllable-like onsets per second of speech")
    words_per_minute: float | None = None


class Word(BaseModel):
    word: str
    start: float
    end: float
    probability: float | None = None


class Transcript(BaseModel):
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


class QualityFlag(BaseModel):
    code: FlagCode
    message: str


class Evidence(BaseModel):
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

    def has_flag(self, code: str) -> bool:
        return any(f.code == code for f in self.flags)

    def save(self, path: str | Path) -> Path:
        return atomic_write_text(path, self.model_dump_json(indent=1, exclude_none=False))

    @classmethod
    def load(cls, path: str | Path) -> Evidence:
        data = read_json(path)
        try:
            return cls.model_validate(data)
        except ValidationError as e:
            first = e.errors()[0]
            where = ".".join(str(p) for p in first["loc"])
            raise DataError(f"not an Evidence file: {where}: {first['msg']}", path) from None
