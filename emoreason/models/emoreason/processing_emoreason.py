"""EmoReason processor: chat messages / text + Evidence + audio (+ face crops) → input ids and encoder inputs.

A ``<|face|>`` (``<|audio|>``) in the text becomes ``<|face_start|>`` + ``face_tokens`` × ``<|face|>`` +
``<|face_end|>``, so the placeholder count always equals the model's budget. ``face_values`` (B, T, F) are built from
``Evidence.aus`` (+ ``face.poses``, ``face.present``, optional landmarks) resampled to ``face_fps`` and capped at
``max_face_frames`` (uniform resampling); ``audio_values`` (B, frames, n_mels [+ prosody]) are Whisper's log-mel
(``WhisperFeatureExtractor``) at 100 frames/s, average-pooled down when longer than ``max_audio_frames``. Clips are
padded to the longest in the batch with boolean masks. Only samples whose text holds a placeholder contribute a clip.
"""

from __future__ import annotations

import functools
import re
from typing import Any

import numpy as np
import torch
from transformers import BatchFeature, ProcessorMixin

from emoreason.errors import ModelError
from emoreason.evidence import Evidence
from emoreason.knowledge.facs import INTENSITY_MAX, PERCEIVED_AUS

from .configuration_emoreason import LANDMARK_SUBSET, READER_LABELS

FACE_TOKEN, FACE_START, FACE_END = "<|face|>", "<|face_start|>", "<|face_end|>"
AUDIO_TOKEN, AUDIO_START, AUDIO_END = "<|audio|>", "<|audio_start|>", "<|audio_end|>"
SPECIAL_TOKENS: tuple[str, ...] = (FACE_START, FACE_TOKEN, FACE_END, AUDIO_START, AUDIO_TOKEN, AUDIO_END)
_PLACEHOLDER = re.compile(re.escape(FACE_TOKEN) + "|" + re.escape(AUDIO_TOKEN))
_R_EYE, _L_EYE = 33, 263  # mesh points on the outer eye corners, used to undo head roll


@functools.lru_cache(maxsize=4)
def _whisper_features(sr: int, n_fft: int, hop: int, n_mels: int) -> Any:
    from transformers import WhisperFeatureExtractor

    return WhisperFeatureExtractor(feature_size=n_mels, sampling_rate=sr, hop_length=hop, n_fft=n_fft)


def log_mel(audio: np.ndarray, sr: int = 16000, n_fft: int = 400, hop: int = 160, n_mels: int = 80) -> np.ndarray:
    """(frames, n_mels) log-mel from transformers' ``WhisperFeatureExtractor`` (the features the optional Whisper
    encoder expects: log10 power mel, an 8-decade floor under the clip's peak, ``(x + 4) / 4``), for the clip's own
    length (no 30 s padding): ``len(audio) // hop`` frames. Audio shorter than one window is zero-padded to it."""
    audio = np.asarray(audio, dtype=np.float32)
    if audio.size < n_fft:
        audio = np.pad(audio, (0, n_fft - audio.size))
    fe = _whisper_features(sr, n_fft, hop, n_mels)
    out = fe(audio, sampling_rate=sr, padding="longest", truncation=False, return_tensors="np",
             return_attention_mask=False)  # fmt: skip
    return out["input_features"][0].T.astype(np.float32)


def reader_features(evidence: Evidence, times: np.ndarray) -> np.ndarray:
    """(T, len(READER_LABELS) + 1): the learned face reader's probabilities at each AU frame (the nearest reader frame,
    in :data:`READER_LABELS` order) and a flag that the reader read that frame; zeros where it did not."""
    out = np.zeros((len(times), len(READER_LABELS) + 1), np.float32)
    r = evidence.reader
    if r is None or not r.times:
        return out
    col = {label: i for i, label in enumerate(r.labels)}
    rt = np.asarray(r.times, np.float64)
    for i, t in enumerate(times):
        row = r.probs[int(np.argmin(np.abs(rt - t)))]
        if row is not None:
            out[i, : len(READER_LABELS)] = [row[col[label]] if label in col else 0.0 for label in READER_LABELS]
            out[i, -1] = 1.0
    return out


def _landmarks_xy(mesh: list[list[float]] | np.ndarray | None, n: int) -> np.ndarray:
    """Subset x,y centred, scaled to unit RMS radius and rotated so the eye line is horizontal."""
    if mesh is None or len(mesh) == 0:
        return np.zeros(2 * n, np.float32)
    pts = np.asarray(mesh, np.float32)[:, :2]
    eye = pts[_L_EYE] - pts[_R_EYE]
    a = -np.arctan2(eye[1], eye[0])
    rot = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]], np.float32)
    sub = pts[list(LANDMARK_SUBSET)]
    sub = (sub - sub.mean(0)) @ rot.T
    return (sub / max(float(np.sqrt((sub**2).sum(1).mean())), 1e-6)).reshape(-1)


def _sample_index(times: np.ndarray, duration: float, fps: float, max_frames: int) -> np.ndarray:
    """Indices of the analysed frames nearest to a regular grid at ``fps`` (at most ``max_frames`` points)."""
    n = max(1, int(round(duration * fps)))
    grid = np.linspace(0.0, duration, n, endpoint=False) if n <= max_frames else np.linspace(0.0, duration, max_frames)
    idx = np.clip(np.searchsorted(times, grid), 0, len(times) - 1)
    prev = np.clip(idx - 1, 0, len(times) - 1)
    return np.where(np.abs(times[prev] - grid) < np.abs(times[idx] - grid), prev, idx)


def pad_frames(items: list[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-clip (T_i, ...) arrays → zero-padded (B, max T, ...) float32 values and the (B, max T) mask of real frames."""
    t = max(len(x) for x in items)
    values = np.zeros((len(items), t, *items[0].shape[1:]), np.float32)
    mask = np.zeros((len(items), t), bool)
    for i, x in enumerate(items):
        values[i, : len(x)], mask[i, : len(x)] = x, True
    return torch.from_numpy(values), torch.from_numpy(mask)


class EmoReasonProcessor(ProcessorMixin):
    """Tokenizer + face/audio feature builder for :class:`EmoReasonForConditionalGeneration`."""

    tokenizer_class = "AutoTokenizer"

    def __init__(
        self,
        tokenizer: Any = None,
        chat_template: str | None = None,
        face_tokens: int = 8,
        audio_tokens: int = 8,
        face_fps: float = 5.0,
        max_face_frames: int = 300,
        use_landmarks: bool = True,
        use_crops: bool = False,
        use_reader: bool = False,
        sampling_rate: int = 16000,
        n_fft: int = 400,
        hop_length: int = 160,
        n_mels: int = 80,
        use_prosody: bool = True,
        max_audio_frames: int = 6000,
    ) -> None:
        self.face_tokens, self.audio_tokens = face_tokens, audio_tokens
        self.face_fps, self.max_face_frames, self.use_landmarks, self.use_crops = (
            face_fps,
            max_face_frames,
            use_landmarks,
            use_crops,
        )
        self.use_reader = use_reader
        self.sampling_rate, self.n_fft, self.hop_length, self.n_mels = sampling_rate, n_fft, hop_length, n_mels
        self.use_prosody, self.max_audio_frames = use_prosody, max_audio_frames
        if chat_template is None:
            chat_template = getattr(tokenizer, "chat_template", None)
        super().__init__(tokenizer, chat_template=chat_template)

    @classmethod
    def from_model_config(cls, tokenizer: Any, config: Any) -> EmoReasonProcessor:
        """A processor whose budget and feature layout match an :class:`EmoReasonConfig`."""
        f, a = config.face_config, config.audio_config
        return cls(
            tokenizer,
            face_tokens=config.face_tokens,
            audio_tokens=config.audio_tokens,
            face_fps=f.fps,
            max_face_frames=f.max_frames,
            use_landmarks=f.use_landmarks,
            use_crops=f.use_crops,
            use_reader=f.use_reader,
            sampling_rate=a.sampling_rate,
            n_fft=a.n_fft,
            hop_length=a.hop_length,
            n_mels=a.n_mels,
            use_prosody=a.use_prosody,
            max_audio_frames=a.max_frames,
        )

    def token_ids(self) -> dict[str, int]:
        """Ids of the special tokens; a :class:`ModelError` when the tokenizer lacks one."""
        vocab = self.tokenizer.get_vocab()
        missing = [t for t in SPECIAL_TOKENS if t not in vocab]
        if missing:
            raise ModelError(f"the tokenizer lacks the special tokens {missing}; add them with add_special_tokens()")
        return {t: vocab[t] for t in SPECIAL_TOKENS}

    def expand(self, text: str) -> str:
        """Replace each single placeholder by start + budget × placeholder + end."""
        face = FACE_START + FACE_TOKEN * self.face_tokens + FACE_END
        audio = AUDIO_START + AUDIO_TOKEN * self.audio_tokens + AUDIO_END
        return _PLACEHOLDER.sub(lambda m: face if m.group(0) == FACE_TOKEN else audio, text)

    def face_features(  # noqa: C901
        self, evidence: Evidence, crops: np.ndarray | None = None, landmarks: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray | None]:
        """(T, F) face features from Evidence (and (T, 1, S, S) crops resampled alongside, when given).

        ``landmarks`` (frames, 468, 2 or 3), one mesh per AU frame, replaces ``evidence.face.landmarks``."""
        if evidence.aus is None or not evidence.aus.times:
            raise ModelError("the text asks for face tokens but the evidence has no AU series", evidence.media.path)
        times = np.asarray(evidence.aus.times, np.float64)
        au = np.stack(
            [
                [0.0 if v is None else v for v in evidence.aus.intensities.get(c, [None] * len(times))]
                for c in PERCEIVED_AUS
            ],
            1,
        )
        present = np.array(
            [
                any(evidence.aus.intensities.get(c, [None] * len(times))[i] is not None for c in PERCEIVED_AUS)
                for i in range(len(times))
            ],
            np.float32,
        )
        pose = np.zeros((len(times), 3), np.float32)
        marks = np.zeros((len(times), 2 * len(LANDMARK_SUBSET)), np.float32)
        face = evidence.face
        if face is not None and len(face.times) == len(times):
            present = np.asarray(face.present, np.float32)
            pose = np.array([[p.yaw, p.pitch, p.roll] if p else [0, 0, 0] for p in face.poses], np.float32) / 90.0
            if face.landmarks is not None:
                marks = np.stack([_landmarks_xy(m, len(LANDMARK_SUBSET)) for m in face.landmarks])
        if landmarks is not None:
            landmarks = np.asarray(landmarks, np.float32)
            if landmarks.ndim != 3 or landmarks.shape[0] != len(times) or landmarks.shape[1] < 468:
                raise ModelError(
                    f"landmarks must be (frames={len(times)}, 468, 2|3), got shape {landmarks.shape}",
                    evidence.media.path,
                )
            marks = np.stack([_landmarks_xy(m, len(LANDMARK_SUBSET)) for m in landmarks])
        parts = [au / INTENSITY_MAX, pose, present[:, None]] + ([marks] if self.use_landmarks else [])
        if self.use_reader:
            parts.append(reader_features(evidence, times))
        feats = np.concatenate(parts, 1).astype(np.float32)
        duration = max(float(evidence.media.duration_s), float(times[-1]) + 1e-3)
        idx = _sample_index(times, duration, self.face_fps, self.max_face_frames)
        if crops is None:
            return feats[idx], None
        crops = np.asarray(crops, np.float32)
        if crops.ndim != 3 or len(crops) != len(times):
            raise ModelError(
                f"crops must be (frames={len(times)}, S, S) grey images, got shape {crops.shape}", evidence.media.path
            )
        return feats[idx], crops[idx][:, None] / (255.0 if crops.max() > 1.5 else 1.0)

    def audio_features(self, audio: np.ndarray, evidence: Evidence | None = None) -> np.ndarray:
        """(frames, n_mels [+ 3 prosody]) at 100 frames/s, average-pooled to at most ``max_audio_frames``."""
        audio = np.asarray(audio, np.float32)
        if audio.ndim != 1 or audio.size == 0:
            raise ModelError(
                f"audio must be a non-empty 1-D {self.sampling_rate} Hz mono array, got shape {audio.shape}"
            )
        mel = log_mel(audio, self.sampling_rate, self.n_fft, self.hop_length, self.n_mels)
        if self.use_prosody:
            t = np.arange(len(mel)) * self.hop_length / self.sampling_rate
            pros = np.zeros((len(mel), 3), np.float32)
            p = evidence.prosody if evidence is not None else None
            if p is not None and p.times:
                pt = np.asarray(p.times)
                f0 = np.array([np.log2(v / 150.0) if v else 0.0 for v in p.f0_hz])
                pros[:, 0] = np.interp(t, pt, f0)
                pros[:, 1] = (np.interp(t, pt, np.asarray(p.energy_db, np.float64)) + 40.0) / 40.0
                pros[:, 2] = np.interp(t, pt, np.asarray(p.voiced, np.float64))
            mel = np.concatenate([mel, pros], 1)
        if len(mel) > self.max_audio_frames:
            edges = np.linspace(0, len(mel), self.max_audio_frames + 1).astype(int)
            mel = np.add.reduceat(mel, edges[:-1], axis=0) / np.diff(edges)[:, None]
        return mel.astype(np.float32)

    def render(self, messages: list[dict] | list[list[dict]], add_generation_prompt: bool = True) -> list[str]:
        """Chat messages (one conversation or a batch) → prompt strings with the tokenizer's chat template."""
        convs = [messages] if messages and isinstance(messages[0], dict) else messages
        return [
            self.tokenizer.apply_chat_template(c, tokenize=False, add_generation_prompt=add_generation_prompt)
            for c in convs
        ]

    def __call__(
        self,
        text: str | list[str] | None = None,
        messages: list[dict] | list[list[dict]] | None = None,
        evidence: Evidence | list[Evidence | None] | None = None,
        audio: np.ndarray | list[np.ndarray | None] | None = None,
        crops: np.ndarray | list[np.ndarray | None] | None = None,
        landmarks: Any = None,
        return_tensors: str = "pt",
        padding: bool | str = True,
        add_generation_prompt: bool = True,
        **kwargs: Any,
    ) -> BatchFeature:
        """Tokenise and build encoder inputs. Per sample: ``evidence`` (AUs, pose, presence, prosody), ``audio``
        (16 kHz mono array), ``crops`` (frames, S, S) grey face crops and ``landmarks`` (frames, 468, 2|3) meshes,
        both aligned with ``evidence.aus.times`` (landmarks default to ``evidence.face.landmarks``)."""
        if (text is None) == (messages is None):
            raise ModelError("pass exactly one of text or messages")
        if return_tensors != "pt":
            raise ModelError(f"return_tensors must be 'pt', got {return_tensors!r}")
        texts = (
            self.render(messages, add_generation_prompt)
            if messages is not None
            else ([text] if isinstance(text, str) else list(text))
        )
        n = len(texts)
        evs, auds, crps, lms = (
            x if isinstance(x, list) else [x] * n if n == 1 or x is None else None
            for x in (evidence, audio, crops, landmarks)
        )
        for name, xs in (("evidence", evs), ("audio", auds), ("crops", crps), ("landmarks", lms)):
            if xs is None or len(xs) != n:
                raise ModelError(
                    f"{name}: give one entry per text ({n}), got {type(xs).__name__ if xs is None else len(xs)}"
                )
        ids = self.token_ids()
        face_clips, face_crops, audio_clips = [], [], []
        for i, t in enumerate(texts):
            n_face, n_audio = t.count(FACE_TOKEN), t.count(AUDIO_TOKEN)
            if n_face > 1 or n_audio > 1:
                raise ModelError(
                    f"text {i}: at most one {FACE_TOKEN} and one {AUDIO_TOKEN} per sample, got {n_face} and {n_audio}"
                )
            if n_face:
                if evs[i] is None:
                    raise ModelError(f"text {i} has a {FACE_TOKEN} placeholder but no evidence was given")
                feats, crop = self.face_features(evs[i], crps[i], lms[i])
                if self.use_crops and crop is None:
                    raise ModelError(f"text {i}: the model uses face crops but none were given", evs[i].media.path)
                face_clips.append(feats)
                face_crops.append(crop)
            elif crps[i] is not None or lms[i] is not None:
                raise ModelError(f"text {i}: crops or landmarks given but the text has no {FACE_TOKEN} placeholder")
            if n_audio:
                if auds[i] is None:
                    raise ModelError(f"text {i} has an {AUDIO_TOKEN} placeholder but no audio was given")
                audio_clips.append(self.audio_features(auds[i], evs[i]))
            elif auds[i] is not None:
                raise ModelError(f"text {i}: audio given but the text has no {AUDIO_TOKEN} placeholder")
        enc = self.tokenizer(
            [self.expand(t) for t in texts], return_tensors="pt", padding=padding, add_special_tokens=False, **kwargs
        )
        for tok, want in (
            (FACE_TOKEN, len(face_clips) * self.face_tokens),
            (AUDIO_TOKEN, len(audio_clips) * self.audio_tokens),
        ):
            got = int((enc["input_ids"] == ids[tok]).sum())
            if got != want:
                raise ModelError(
                    f"{tok}: {got} tokens after tokenisation but {want} expected; the tokenizer splits the placeholder"
                )
        data = dict(enc)
        if face_clips:
            data["face_values"], data["face_mask"] = pad_frames(face_clips)
            if self.use_crops:
                data["face_crops"] = pad_frames(face_crops)[0]
        if audio_clips:
            data["audio_values"], data["audio_mask"] = pad_frames(audio_clips)
        return BatchFeature(data=data)

    def batch_decode(self, *args: Any, **kwargs: Any) -> list[str]:
        return self.tokenizer.batch_decode(*args, **kwargs)

    def decode(self, *args: Any, **kwargs: Any) -> str:
        return self.tokenizer.decode(*args, **kwargs)

    @property
    def model_input_names(self) -> list[str]:
        return ["input_ids", "attention_mask", "face_values", "face_mask", "face_crops", "audio_values", "audio_mask"]


__all__ = ["EmoReasonProcessor", "SPECIAL_TOKENS", "FACE_TOKEN", "AUDIO_TOKEN", "log_mel"]
