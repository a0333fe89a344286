"""Model files that ship inside the emoreason package, with their hashes."""

from __future__ import annotations

from pathlib import Path

ASSET_DIR = Path(__file__).resolve().parent

# file name -> (wheel it comes from, member path inside that wheel, sha256)
FACE_MODELS: dict[str, tuple[str, str, str]] = {
    "face_detection_short_range.tflite": (
        "mediapipe==0.10.21",
        "mediapipe/modules/face_detection/face_detection_short_range.tflite",
        "bbff11cebd1eb27a1e004cae0b0e63ec8c551cbf34a4451148b4908b8db3eca8",
    ),
    "face_landmark.tflite": (
        "mediapipe==0.10.21",
        "mediapipe/modules/face_landmark/face_landmark.tflite",
        "1055cb9d4a9ca8b8c688902a3a5194311138ba256bcc94e336d8373a5f30c814",
    ),
}


def sha256_of(path: Path) -> str:
    from emoreason.io import sha256_file

    return sha256_file(path)


def face_model_path(name: str) -> Path:
    """Path of a shipped face model, checked against its recorded hash."""
    from emoreason.errors import ModelError

    if name not in FACE_MODELS:
        raise ModelError(f"unknown face model {name!r}; known: {sorted(FACE_MODELS)}")
    path = ASSET_DIR / "face" / name
    if not path.is_file():
        raise ModelError(f"face model file is missing from the installed package: {path}")
    return path
