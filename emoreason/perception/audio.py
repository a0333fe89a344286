"""Voice prosody from 16 kHz mono samples: speech activity, pitch, energy, jitter/shimmer-style measures, speaking rate.

Owns :func:`analyze_prosody` (samples -> :class:`~emoreason.evidence.Prosody`) and :func:`audio_flags`.

Choices, measured on this project's 2-core CPU with 10 s of 16 kHz speech:

- **Speech activity**: the Silero VAD that ships inside faster-whisper (``faster_whisper.vad.get_speech_timestamps``,
  ONNX, offline), 0.01-0.07 s per 10 s. Segments are padded by 100 ms and joined over pauses shorter than 300 ms.
- **Pitch**: ``librosa.yin`` (0.05 s per 10 s) instead of ``librosa.pyin`` (7.9 s per 10 s, slower than real time);
  on the espeak test sentence the two agree to a median of 0.03 semitone on pyin's voiced frames. yin has no voicing
  decision, so a frame is **voiced** when it lies in a VAD speech segment, its energy is within ``VOICED_DB_BELOW_PEAK``
  of the clip's loudest frames, and its normalised autocorrelation at the yin period is at least ``VOICED_PERIODICITY``;
  pitch spikes and octave errors (see :func:`_pitch_outliers`) are then set unvoiced.
- **Jitter / shimmer** are frame-level ("-style") measures, not Praat's cycle-to-cycle ones: within runs of voiced
  frames (10 ms hop), the mean absolute difference of consecutive pitch periods over the mean period, and the same for
  frame RMS amplitudes.
- **Speaking rate**: syllable nuclei counted as energy peaks inside voiced stretches (prominence >= 2 dB, >= 100 ms
  apart, after de Jong & Wempe 2009), divided by the seconds of speech.

All clip-level summaries are ``None`` when no speech is found.
"""

from __future__ import annotations

import logging

import numpy as np

from emoreason.errors import MediaError
from emoreason.evidence import Prosody, QualityFlag

log = logging.getLogger(__name__)

SR = 16000
HOP_S = 0.01
FRAME_S = 0.064  # yin window: holds two periods of FMIN
FMIN, FMAX = 65.0, 500.0  # Hz: adult and child voices
VOICED_PERIODICITY = 0.5  # normalised autocorrelation at the pitch period (Praat's voicing threshold is 0.45)
VOICED_DB_BELOW_PEAK = 35.0  # frames quieter than the 95th-percentile energy minus this are unvoiced
OUTLIER_SPIKE_ST = 4.0  # semitones from the local 5-frame median: a pitch spike
OUTLIER_CLIP_ST = 14.0  # semitones from the clip's median voiced pitch: an octave error
SILENT_PEAK = 10 ** (-60 / 20)  # peak sample below -60 dBFS: silent audio
ENERGY_FLOOR_DB = -100.0
SYLLABLE_PROMINENCE_DB = 2.0
SYLLABLE_MIN_GAP_S = 0.1
VAD_PAD_S = 0.1
VAD_MIN_SILENCE_S = 0.3


def speech_segments(samples: np.ndarray, sr: int = SR) -> list[tuple[float, float]]:
    """Speech segments ``(start_s, end_s)`` from faster-whisper's bundled Silero VAD."""
    from faster_whisper.vad import VadOptions, get_speech_timestamps

    y = samples if sr == SR else resample(samples, sr, SR)
    opts = VadOptions(min_silence_duration_ms=int(VAD_MIN_SILENCE_S * 1000), speech_pad_ms=int(VAD_PAD_S * 1000))
    stamps = get_speech_timestamps(np.ascontiguousarray(y, np.float32), opts, sampling_rate=SR)
    return [(round(s["start"] / SR, 3), round(s["end"] / SR, 3)) for s in stamps]


def resample(y: np.ndarray, sr: int, target: int) -> np.ndarray:
    """``y`` from ``sr`` Hz to ``target`` Hz (librosa's resampler, as :func:`emoreason.media.load_audio` uses)."""
    import librosa

    return librosa.resample(y, orig_sr=sr, target_sr=target)


def _periodicity(y: np.ndarray, periods: np.ndarray, hop: int, frame: int, max_period: int) -> np.ndarray:
    """Normalised autocorrelation of each centred frame at its own (integer) period, computed in chunks."""
    pad = np.pad(y, (frame // 2, frame // 2 + max_period))
    w = frame - max_period
    out = np.zeros(len(periods), np.float32)
    chunk = 2048
    idx = np.arange(w)
    for c0 in range(0, len(periods), chunk):
        starts = np.arange(c0, min(c0 + chunk, len(periods))) * hop
        lags = periods[c0 : c0 + len(starts)]
        a = pad[starts[:, None] + idx]
        b = pad[starts[:, None] + lags[:, None] + idx]
        num = (a * b).sum(axis=1)
        den = np.sqrt((a * a).sum(axis=1) * (b * b).sum(axis=1)) + 1e-12
        out[c0 : c0 + len(starts)] = num / den
    return out


def _pitch_outliers(f0: np.ndarray, voiced: np.ndarray) -> np.ndarray:
    """Octave errors and spikes: voiced frames more than ``OUTLIER_SPIKE_ST`` semitones from their 5-frame median or
    more than ``OUTLIER_CLIP_ST`` semitones from the clip's median voiced pitch."""
    from scipy.ndimage import median_filter

    out = np.zeros(len(f0), bool)
    if voiced.sum() < 3:
        return out
    st = 12 * np.log2(np.maximum(f0, 1.0))
    ref = np.median(st[voiced])
    for r in _runs(voiced):
        local = median_filter(st[r], size=5, mode="nearest") if len(r) >= 3 else np.full(len(r), ref)
        out[r] = np.abs(st[r] - local) > OUTLIER_SPIKE_ST
    return out | (voiced & (np.abs(st - ref) > OUTLIER_CLIP_ST))


def _local_variation(values: np.ndarray, runs: list[np.ndarray]) -> float | None:
    diffs = [np.abs(np.diff(values[r])) for r in runs if len(r) >= 2]
    if not diffs:
        return None
    d = np.concatenate(diffs)
    mean = float(np.mean(np.concatenate([values[r] for r in runs if len(r) >= 2])))
    return float(d.mean() / mean) if mean > 0 else None


def _runs(mask: np.ndarray) -> list[np.ndarray]:
    """Index arrays of the runs of consecutive True values."""
    idx = np.flatnonzero(mask)
    if len(idx) == 0:
        return []
    return np.split(idx, np.flatnonzero(np.diff(idx) > 1) + 1)


def _syllable_count(energy_db: np.ndarray, voiced: np.ndarray, hop_s: float) -> int:
    from scipy.ndimage import uniform_filter1d
    from scipy.signal import find_peaks

    smooth = uniform_filter1d(energy_db, size=5, mode="nearest")
    peaks, _ = find_peaks(
        smooth, prominence=SYLLABLE_PROMINENCE_DB, distance=max(1, round(SYLLABLE_MIN_GAP_S / hop_s))
    )
    return int(voiced[peaks].sum())


def analyze_prosody(samples: np.ndarray, sr: int = SR) -> Prosody:
    """Prosody of a mono clip (any rate; analysed at 16 kHz) on a 10 ms grid plus clip-level summaries."""
    import librosa

    y = np.asarray(samples, dtype=np.float32)
    if y.ndim != 1:
        raise MediaError(f"audio must be mono 1-D samples, got shape {y.shape}")
    if not np.all(np.isfinite(y)):
        raise MediaError("audio holds NaN or infinite samples")
    if sr != SR:
        y = resample(y, sr, SR).astype(np.float32)
    hop = int(round(HOP_S * SR))
    frame = int(round(FRAME_S * SR))
    if len(y) < frame:
        y = np.pad(y, (0, frame - len(y)))
    n = 1 + len(y) // hop
    rms = librosa.feature.rms(y=y, frame_length=frame // 2, hop_length=hop, center=True)[0][:n]
    energy_db = np.maximum(20 * np.log10(rms + 1e-12), ENERGY_FLOOR_DB)
    times = np.arange(len(rms)) * HOP_S
    silent = float(np.max(np.abs(y), initial=0.0)) < SILENT_PEAK

    segments = [] if silent else speech_segments(y, SR)
    in_speech = np.zeros(len(rms), bool)
    for s, e in segments:
        in_speech[int(s / HOP_S) : int(np.ceil(e / HOP_S)) + 1] = True
    duration = len(y) / SR
    speech_s = sum(e - s for s, e in segments)

    f0 = np.full(len(rms), np.nan)
    voiced = np.zeros(len(rms), bool)
    if segments:
        f0_all = librosa.yin(y, fmin=FMIN, fmax=FMAX, sr=SR, frame_length=frame, hop_length=hop, center=True)[
            : len(rms)
        ]
        max_period = int(np.ceil(SR / FMIN))
        periods = np.clip(np.round(SR / f0_all).astype(int), 1, max_period)
        period_corr = _periodicity(y, periods, hop, frame, max_period)
        loud = energy_db >= np.percentile(energy_db[in_speech], 95) - VOICED_DB_BELOW_PEAK
        voiced = in_speech & loud & (period_corr >= VOICED_PERIODICITY)
        voiced &= ~_pitch_outliers(f0_all, voiced)
        f0[voiced] = f0_all[voiced]

    summary: dict[str, float | None] = {}
    if voiced.sum() >= 3:
        fv = f0[voiced]
        lo, hi = np.percentile(fv, [5, 95])
        runs = _runs(voiced)
        summary.update(
            f0_mean_hz=round(float(fv.mean()), 2),
            f0_std_hz=round(float(fv.std()), 2),
            f0_range_semitones=round(float(12 * np.log2(hi / lo)), 3),
            jitter_local=_round(_local_variation(1.0 / f0, runs), 5),
            shimmer_local=_round(_local_variation(rms, runs), 5),
        )
    if segments:
        e_sp = energy_db[in_speech]
        summary.update(energy_mean_db=round(float(e_sp.mean()), 2), energy_std_db=round(float(e_sp.std()), 2))
        if speech_s > 0:
            summary["speaking_rate_sps"] = round(_syllable_count(energy_db, voiced, HOP_S) / speech_s, 3)

    return Prosody(
        hop_s=HOP_S,
        times=[round(float(t), 3) for t in times],
        f0_hz=[None if np.isnan(v) else round(float(v), 1) for v in f0],
        energy_db=[round(float(v), 1) for v in energy_db],
        voiced=voiced.tolist(),
        speech_segments=segments,
        speech_ratio=round(min(1.0, speech_s / duration), 4) if duration > 0 else 0.0,
        **summary,
    )


def _round(v: float | None, nd: int) -> float | None:
    return None if v is None else round(v, nd)


def audio_flags(prosody: Prosody) -> list[QualityFlag]:
    """``silent_audio`` when the track is digital silence (all frames below -60 dBFS) and ``no_speech`` when the VAD
    found no speech."""
    flags: list[QualityFlag] = []
    if not prosody.energy_db or max(prosody.energy_db) < 20 * np.log10(SILENT_PEAK):
        flags.append(QualityFlag(code="silent_audio", message="the audio track is silent (below -60 dBFS throughout)"))
    if not prosody.speech_segments:
        flags.append(QualityFlag(code="no_speech", message="no speech found in the audio track (Silero VAD)"))
    return flags
