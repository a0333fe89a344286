"""Server settings: one dataclass with the limits and the engine choice of ``emoreason serve``."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from emoreason.errors import ConfigError

ENGINES = ("engine", "transformers", "vllm")


@dataclass
class Settings:
    host: str = field(default="127.0.0.1", metadata={"help": "Address to bind; loopback unless told otherwise."})
    port: int = field(default=8000, metadata={"help": "TCP port."})
    media_root: Path | None = field(
        default=None, metadata={"help": "Folder whose clips may be named by path; paths elsewhere are refused (403)."}
    )
    max_upload_mb: float = field(default=100.0, metadata={"help": "Largest clip accepted in a request (413 above)."})
    max_duration_s: float = field(default=300.0, metadata={"help": "Longest clip accepted (422 above)."})
    max_concurrency: int = field(default=2, metadata={"help": "Requests analysed at once."})
    queue_size: int = field(default=16, metadata={"help": "Requests waiting for a slot before 503 is answered."})
    timeout_s: float = field(default=300.0, metadata={"help": "Seconds a request may take before 504."})
    api_key: str | None = field(default=None, metadata={"help": "Bearer key required on /v1/* when set (401)."})
    engine: str = field(default="engine", metadata={"help": f"Reasoning engine, one of {', '.join(ENGINES)}."})
    model: str | None = field(
        default=None, metadata={"help": "Checkpoint folder for the transformers and vllm engines."}
    )
    lora: str | None = field(
        default=None,
        metadata={
            "help": "A peft LoRA adapter folder (safetensors) for --model: merged at load by the transformers "
            "engine, applied per request by the vllm engine."
        },
    )
    model_name: str = field(default="emoreason", metadata={"help": "The model id clients send and /v1/models lists."})
    fps: float = field(default=10.0, metadata={"help": "Frames analysed per second by perception; 0 = every frame."})
    max_side: int = field(default=720, metadata={"help": "Frames are downscaled to this long side."})
    asr: bool = field(default=True, metadata={"help": "Transcribe speech."})
    cache_size: int = field(default=64, metadata={"help": "Clips whose perception is kept in memory."})
    max_text_kb: int = field(
        default=1024, metadata={"help": "Largest request body apart from the clip: JSON or form fields (413 above)."}
    )
    header_timeout_s: float = field(
        default=10.0, metadata={"help": "Seconds a connection may take to send a request's headers (then closed)."}
    )
    body_timeout_s: float = field(
        default=120.0, metadata={"help": "Seconds a request's whole body may take to arrive (408 and closed)."}
    )
    keep_alive_s: float = field(default=5.0, metadata={"help": "Seconds an idle keep-alive connection is kept."})
    max_connections: int = field(
        default=64, metadata={"help": "Open connections at once; more are answered 503 and closed."}
    )

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * 1024 * 1024)

    @property
    def max_text_bytes(self) -> int:
        return self.max_text_kb * 1024

    def validate(self) -> Settings:
        """Raise :class:`ConfigError` for values the server cannot run with; returns self."""
        if self.engine not in ENGINES:
            raise ConfigError(f"unknown engine {self.engine!r}; use one of {', '.join(ENGINES)}")
        for name in ("max_upload_mb", "max_duration_s", "timeout_s", "max_text_kb", "header_timeout_s",
                     "body_timeout_s", "keep_alive_s", "max_connections"):  # fmt: skip
            if getattr(self, name) <= 0:
                raise ConfigError(f"{name} must be positive, got {getattr(self, name)}")
        if self.fps < 0:
            raise ConfigError(f"fps must be >= 0 (0 = every frame), got {self.fps}")
        if not 0 <= self.port <= 65535:
            raise ConfigError(f"port must be between 0 and 65535, got {self.port}")
        if self.max_concurrency < 1 or self.queue_size < 0 or self.cache_size < 1:
            raise ConfigError("max_concurrency and cache_size must be at least 1 and queue_size at least 0")
        if self.lora is not None and self.engine == "engine":
            raise ConfigError("--lora needs a model engine (transformers or vllm) and --model")
        if self.media_root is not None:
            root = Path(self.media_root).expanduser()
            if not root.is_dir():
                raise ConfigError("the media root is not a folder", root)
            self.media_root = root.resolve()
        return self
