"""Face/AU and audio encoders of the EmoReason model: per-frame features in, per-time-step tokens of width d out.

Both take ``(values, mask)`` with ``values`` (B, T, F) and ``mask`` (B, T) bool (False = padding) and return
``(tokens, mask)`` with tokens (B, T', d). Positions are sinusoidal, so any clip length works; the compressor then
squeezes T' steps into the fixed token budget.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

if TYPE_CHECKING:
    from .configuration_emoreason import EmoReasonAudioConfig, EmoReasonFaceConfig


def sinusoids(length: int, dim: int, device: torch.device | None = None) -> torch.Tensor:
    """Fixed sinusoidal positions (length, dim), as in the original transformer and Whisper."""
    half = dim // 2
    inv = torch.exp(-math.log(10000.0) * torch.arange(half, device=device, dtype=torch.float32) / max(half - 1, 1))
    t = torch.arange(length, device=device, dtype=torch.float32)[:, None] * inv[None]
    out = torch.cat([t.sin(), t.cos()], dim=1)
    return F.pad(out, (0, dim - out.shape[1]))


def _transformer(d: int, heads: int, layers: int) -> nn.TransformerEncoder:
    layer = nn.TransformerEncoderLayer(
        d, heads, 4 * d, dropout=0.0, activation="gelu", batch_first=True, norm_first=True
    )
    return nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)


def _run(encoder: nn.TransformerEncoder, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Self-attention over valid steps; a row with no valid step attends to its first step (output stays masked)."""
    keep = mask.clone()
    keep[~mask.any(1), 0] = True
    return encoder(x, src_key_padding_mask=~keep)


class FaceEncoder(nn.Module):
    """AU intensities + head pose + presence (+ landmarks) (+ grey crops) per frame → temporal face tokens.

    Each frame is concatenated with its difference to the previous frame (motion), projected to d and layer-normed
    (the raw features are small, 0-1, so without the norm the projected frame is ~50x smaller than the positional
    sinusoids and every photo's tokens come out nearly the same), mixed over time by a residual Conv1d, then a small
    pre-norm TransformerEncoder.
    """

    def __init__(self, cfg: EmoReasonFaceConfig, feature_size: int) -> None:
        super().__init__()
        d = cfg.hidden_size
        self.feature_size = feature_size
        self.inp = nn.Linear(2 * feature_size, d)
        self.inp_norm = nn.LayerNorm(d)
        self.crop_stem = None
        if cfg.use_crops:
            self.crop_stem = nn.Sequential(
                nn.Conv2d(1, 16, 3, 2, 1), nn.GELU(), nn.Conv2d(16, 32, 3, 2, 1), nn.GELU(),
                nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(32, d),
            )  # fmt: skip
        self.tconv = nn.Conv1d(d, d, cfg.temporal_kernel, padding=cfg.temporal_kernel // 2)
        self.encoder = _transformer(d, cfg.num_heads, cfg.num_layers)
        self.norm = nn.LayerNorm(d)

    def forward(
        self, values: torch.Tensor, mask: torch.Tensor, crops: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if values.shape[-1] != self.feature_size:
            raise ValueError(
                f"face_values has {values.shape[-1]} features per frame, the config expects {self.feature_size}"
            )
        diff = torch.cat([torch.zeros_like(values[:, :1]), values[:, 1:] - values[:, :-1]], dim=1)
        x = self.inp(torch.cat([values, diff], -1))
        if self.crop_stem is not None:
            if crops is None:
                raise ValueError("face_config.use_crops is set but no face_crops were given")
            b, t = crops.shape[:2]
            x = x + self.crop_stem(crops.flatten(0, 1).to(x.dtype)).view(b, t, -1)
        x = self.inp_norm(x) * mask[..., None].to(x.dtype)
        x = x + F.gelu(self.tconv(x.transpose(1, 2))).transpose(1, 2)
        x = x + sinusoids(x.shape[1], x.shape[2], x.device).to(x.dtype)
        return self.norm(_run(self.encoder, x, mask)), mask


class AudioEncoder(nn.Module):
    """Log-mel (+ prosody) frames at 100/s → conv subsampling ×4 (25 tokens/s) → small TransformerEncoder.

    With ``whisper_config`` set, a Whisper encoder (30 s windows, 50 tokens/s) replaces conv + transformer; load its
    pretrained weights with :meth:`load_whisper`. Prosody channels are then pooled ×2 and added after projection.
    """

    def __init__(self, cfg: EmoReasonAudioConfig, feature_size: int) -> None:
        super().__init__()
        d = cfg.hidden_size
        self.n_mels, self.feature_size = cfg.n_mels, feature_size
        self.whisper = None
        if cfg.whisper_config:
            from transformers import WhisperConfig
            from transformers.models.whisper.modeling_whisper import WhisperEncoder

            wcfg = WhisperConfig(**{k: v for k, v in cfg.whisper_config.items() if k != "model_type"})
            if wcfg.num_mel_bins != cfg.n_mels:
                raise ValueError(f"Whisper expects {wcfg.num_mel_bins} mel bands, audio_config.n_mels is {cfg.n_mels}")
            self.whisper = WhisperEncoder(wcfg)
            self.window = 2 * wcfg.max_source_positions
            self.proj = nn.Linear(wcfg.d_model, d)
            self.prosody = nn.Linear(feature_size - cfg.n_mels, d) if feature_size > cfg.n_mels else None
        else:
            self.conv1 = nn.Conv1d(feature_size, d, 3, 2, 1)
            self.conv2 = nn.Conv1d(d, d, 3, 2, 1)
            self.encoder = _transformer(d, cfg.num_heads, cfg.num_layers)
        self.norm = nn.LayerNorm(d)

    def load_whisper(self, path: str) -> None:
        """Copy the encoder weights of a local Whisper checkpoint (WhisperModel or WhisperForConditionalGeneration)."""
        from transformers import WhisperModel

        if self.whisper is None:
            raise ValueError("audio_config has no whisper_config; build the config with audio_config.whisper_path")
        self.whisper.load_state_dict(WhisperModel.from_pretrained(path).encoder.state_dict())

    def forward(self, values: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if values.shape[-1] != self.feature_size:
            raise ValueError(
                f"audio_values has {values.shape[-1]} features per frame, the config expects {self.feature_size}"
            )
        x = values * mask[..., None].to(values.dtype)
        if self.whisper is not None:
            return self._whisper(x, mask)
        mask1 = mask[:, ::2]
        h = F.gelu(self.conv1(x.transpose(1, 2))) * mask1[:, None].to(x.dtype)  # padding stays zero, as at the edge
        x = F.gelu(self.conv2(h)).transpose(1, 2)
        mask = mask1[:, ::2]
        x = x + sinusoids(x.shape[1], x.shape[2], x.device).to(x.dtype)
        return self.norm(_run(self.encoder, x, mask)), mask

    def _whisper(self, x: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        b, t, _ = x.shape
        n = -(-t // self.window)
        x = F.pad(x, (0, 0, 0, n * self.window - t))
        mel = x[..., : self.n_mels].reshape(b * n, self.window, self.n_mels).transpose(1, 2)
        h = self.whisper(mel.to(self.proj.weight.dtype)).last_hidden_state.reshape(b, n * self.window // 2, -1)
        h = self.proj(h)
        if self.prosody is not None:
            h = h + self.prosody(F.avg_pool1d(x[..., self.n_mels :].transpose(1, 2), 2).transpose(1, 2))
        mask = F.pad(mask, (0, n * self.window - t))[:, ::2]
        return self.norm(h), mask
