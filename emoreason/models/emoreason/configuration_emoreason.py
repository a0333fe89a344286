"""EmoReason model configuration: a text model sub-config plus face, audio and compressor settings.

``text_config`` is any decoder config that ``AutoModelForCausalLM`` builds (Qwen2 by default, llama for SmolLM2).
``face_config``, ``audio_config`` and ``compressor_config`` are typed sub-configs (:class:`EmoReasonFaceConfig`,
:class:`EmoReasonAudioConfig`, :class:`EmoReasonCompressorConfig`): given as dicts (``config.json``, keyword
arguments) they are checked field by field and built with the defaults below, and they are saved as plain dicts.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from types import MappingProxyType
from typing import Any

from transformers import AutoConfig, PreTrainedConfig

try:
    from transformers.configuration_utils import SubConfigSpec
except ImportError:
    SubConfigSpec = None

from emoreason.knowledge.facs import PERCEIVED_AUS
from emoreason.knowledge.taxonomy import BASIC_EMOTIONS

READER_LABELS: tuple[str, ...] = BASIC_EMOTIONS  # the face reader's labels, in the order face_values carries them

# A 72-point subset of the 468-point face mesh (jaw line, brows, nose, eyes, outer and inner lips), dlib-68 style.
LANDMARK_SUBSET: tuple[int, ...] = (
    127, 234, 93, 132, 58, 172, 136, 150, 176, 148, 152, 377, 400, 379, 365, 397, 288, 361, 323, 454, 356,
    70, 63, 105, 66, 107, 336, 296, 334, 293, 300, 168, 197, 5, 4, 75, 97, 2, 326, 305,
    33, 160, 158, 133, 153, 144, 362, 385, 387, 263, 373, 380,
    61, 39, 37, 0, 267, 269, 291, 405, 314, 17, 84, 181, 78, 82, 13, 312, 308, 317, 14, 87,
)  # fmt: skip


@dataclass
class _SubConfig:
    """A typed part of :class:`EmoReasonConfig`, saved as a plain dict in ``config.json``."""

    @classmethod
    def build(cls, given: Any, name: str) -> Any:
        """The sub-config from a dict (unknown keys are an error naming the allowed ones) or an instance."""
        if isinstance(given, cls):
            return given
        given = dict(given or {})
        allowed = {f.name for f in fields(cls)}
        if unknown := sorted(set(given) - allowed):
            raise ValueError(f"{name}: unknown keys {unknown}; allowed: {sorted(allowed)}")
        return cls(**given)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class EmoReasonFaceConfig(_SubConfig):
    """The face/AU encoder and the processor's face features."""

    hidden_size: int = 128  # width d of the face tokens
    num_layers: int = 2  # TransformerEncoder layers over time
    num_heads: int = 4
    num_aus: int = len(PERCEIVED_AUS)  # AU intensities / 5
    use_landmarks: bool = True  # LANDMARK_SUBSET x,y, pose-normalised
    num_landmarks: int = len(LANDMARK_SUBSET)
    use_crops: bool = False  # grey face crops through a tiny conv stem
    use_reader: bool = False  # the learned face reader's per-frame probabilities (READER_LABELS) and a read flag
    crop_size: int = 32
    fps: float = 5.0  # the processor resamples AU series to this rate
    max_frames: int = 300  # longer clips are resampled uniformly to this many frames (60 s at 5 fps)
    temporal_kernel: int = 3


@dataclass
class EmoReasonAudioConfig(_SubConfig):
    """The audio encoder and the processor's audio features (Whisper's log-mel + prosody)."""

    hidden_size: int = 128
    num_layers: int = 2
    num_heads: int = 4
    sampling_rate: int = 16000
    n_fft: int = 400
    hop_length: int = 160
    n_mels: int = 80
    use_prosody: bool = True  # f0 (log, normalised), energy, voiced appended per mel frame from Evidence.prosody
    num_prosody: int = 3
    max_frames: int = 6000  # mel frames (60 s at 100 frames/s); longer audio is average-pooled to this many
    whisper_path: str | None = None  # local dir of a Whisper checkpoint: its encoder replaces the small transformer
    whisper_config: dict | None = None  # filled from whisper_path so the architecture is rebuilt without the path


@dataclass
class EmoReasonCompressorConfig(_SubConfig):
    """The mixture-of-experts compressor's attention."""

    num_heads: int = 4
    ffn_mult: int = 2


_SUB_CONFIGS = {
    "face_config": EmoReasonFaceConfig,
    "audio_config": EmoReasonAudioConfig,
    "compressor_config": EmoReasonCompressorConfig,
}


class EmoReasonConfig(PreTrainedConfig):
    r"""Configuration of :class:`EmoReasonForConditionalGeneration`.

    Token budget: each clip becomes exactly ``face_tokens`` face tokens and ``audio_tokens`` audio tokens whatever its
    length; the text holds as many ``<|face|>`` / ``<|audio|>`` placeholders (the processor expands them).

    Compressor: ``num_experts`` experts, each a set of ``budget`` learned queries cross-attending the encoder tokens
    (every expert emits the whole budget, so the soft mixture keeps the count fixed); ``routing`` "soft" weights all
    experts by the gate softmax, "topk" keeps the ``expert_top_k`` largest gates (renormalised). ``use_compressor=False`` is
    the ablation: uniform temporal pooling of the encoder tokens to the same budget, no experts, no aux loss.
    (``expert_top_k``, not ``top_k``: a ``top_k`` field would be taken for the sampling parameter by ``generate``.)
    """

    model_type = "emoreason"
    # Not remote code: the Auto classes are registered on import. TRL's reference-model loader (GRPO with beta > 0 and
    # full fine-tuning) reads ``config.auto_map`` for models it does not know: an empty, read-only class attribute,
    # never saved, that says "no remote code".
    auto_map = MappingProxyType({})
    if SubConfigSpec is not None:
        sub_configs_defaults = {"text_config": SubConfigSpec(config_class=AutoConfig, model_type="qwen2")}
    else:
        sub_configs = {"text_config": AutoConfig}

    text_config: dict | PreTrainedConfig | None = None
    face_config: Any = field(default_factory=dict)  # EmoReasonFaceConfig (a dict in config.json)
    audio_config: Any = field(default_factory=dict)  # EmoReasonAudioConfig
    compressor_config: Any = field(default_factory=dict)  # EmoReasonCompressorConfig
    face_token_id: int | None = None
    audio_token_id: int | None = None
    face_tokens: int = 8
    audio_tokens: int = 8
    use_face: bool = True
    use_audio: bool = True
    # The modalities whose encoder (and compressor) training has updated, recorded by the training stages that did
    # (emoreason.training.sft). Serving puts a modality's placeholder into the prompt only when it is listed here: an
    # encoder that was never trained reads the clip into noise, so its tokens are not shown to the model at all.
    trained_modalities: list = field(default_factory=list)
    # Whether the prompt also carries the perception stage's observations as text (emoreason.evidence_text.
    # observations_text: the AUs present with their intensities and times, the face reader, the transcript) beside the
    # encoder tokens. Set by the training stage that taught the model to read them; serving builds the same prompt.
    prompt_observations: bool = False
    use_compressor: bool = True
    num_experts: int = 2
    routing: str = "soft"
    expert_top_k: int = 1
    aux_loss_coef: float = 0.01
    freeze_text: bool = False
    freeze_face: bool = False
    freeze_audio: bool = False
    freeze_compressor: bool = False
    initializer_range: float = 0.02
    tie_word_embeddings: bool = False

    def __post_init__(self, **kwargs: Any) -> None:
        if SubConfigSpec is None:
            tc = self.text_config
            if tc is None:
                tc = {"model_type": "qwen2"}
            if isinstance(tc, dict):
                tc = dict(tc)
                self.text_config = AutoConfig.for_model(tc.pop("model_type", "qwen2"), **tc)
        super().__post_init__(**kwargs)
        for name, cls in _SUB_CONFIGS.items():
            setattr(self, name, cls.build(getattr(self, name), name))
        if unknown := set(self.trained_modalities) - {"face", "audio"}:
            raise ValueError(f"trained_modalities may hold face and audio only, got {sorted(unknown)}")
        self.trained_modalities = sorted(set(self.trained_modalities))
        if self.routing not in ("soft", "topk"):
            raise ValueError(f"routing must be 'soft' or 'topk', got {self.routing!r}")
        if self.num_experts < 1 or not 1 <= self.expert_top_k <= self.num_experts:
            raise ValueError(
                f"need num_experts >= 1 and 1 <= expert_top_k <= num_experts, got {self.num_experts}, {self.expert_top_k}"
            )
        if self.face_tokens < 1 or self.audio_tokens < 1:
            raise ValueError(f"face_tokens and audio_tokens must be >= 1, got {self.face_tokens}, {self.audio_tokens}")
        a = self.audio_config
        if a.whisper_path and not a.whisper_config:
            from transformers import WhisperConfig

            a.whisper_config = WhisperConfig.from_pretrained(a.whisper_path).to_dict()
        if self.text_config.tie_word_embeddings:
            self.tie_word_embeddings = True

    @property
    def face_feature_size(self) -> int:
        """Per-frame width of ``face_values``: AUs, head pose (3), presence (1), landmarks x,y, reader (labels + 1)."""
        f = self.face_config
        reader = len(READER_LABELS) + 1 if f.use_reader else 0
        return f.num_aus + 4 + (2 * f.num_landmarks if f.use_landmarks else 0) + reader

    @property
    def audio_feature_size(self) -> int:
        """Per-frame width of ``audio_values``: log-mel bands plus prosody channels."""
        a = self.audio_config
        return a.n_mels + (a.num_prosody if a.use_prosody else 0)

    def to_dict(self) -> dict[str, Any]:
        """The config as saved: the typed sub-configs as plain dicts."""
        out = super().to_dict()
        for name in _SUB_CONFIGS:
            if isinstance(out.get(name), _SubConfig):
                out[name] = out[name].to_dict()
        return out


__all__ = [
    "EmoReasonAudioConfig",
    "EmoReasonCompressorConfig",
    "EmoReasonConfig",
    "EmoReasonFaceConfig",
    "LANDMARK_SUBSET",
]
