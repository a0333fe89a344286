"""The learned face reader: expression probabilities per analysed frame, learned from real, human-labelled faces.

Two branches over what perception already computes for a frame, fused late:

- **crop**: a small CNN (four conv stages of 16-32-64-128 channels with batch norm and max pooling, global average
  pooling; about 100 k weights) on the aligned grey face crop (:func:`emoreason.perception.face.roi_from_landmarks` at
  scale 1.2, the 64x64 crop perception keeps), shrunk to 48x48 and standardised to zero mean and unit SD per crop so
  lighting matters less;
- **mesh**: a linear read-out (multinomial logistic regression) over the pose-normalised 468-point mesh
  (:func:`normalised_mesh`: head rotation removed, centred between the eyes, in inter-ocular units) and the 16 geometry
  features of :mod:`emoreason.perception.au`, standardised with the train split's mean and SD;
- **fusion**: ``softmax(a * log_softmax(crop_logits) + b * log_softmax(mesh_logits) + c)`` with ``a``, ``b`` and the per-class offset ``c`` fitted
  on out-of-fold predictions of identity-grouped cross-validation on the train split.

Weights: ``emoreason/assets/reader/face_reader.safetensors``, made by ``train/train_face_reader.py`` (see the model card,
section "Face reader"). Their sha256 is :data:`WEIGHTS_SHA256`; a file with another hash is refused
(:class:`~emoreason.errors.ModelError`), so a corrupt or swapped file never reads faces silently. It stands alone: it
does not need the optional ``fer`` package.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from emoreason.errors import ModelError
from emoreason.evidence import ModelVersion
from emoreason.knowledge.taxonomy import BASIC_EMOTIONS
from emoreason.perception.face import face_frame

ASSET_DIR = Path(__file__).resolve().parent.parent / "assets" / "reader"
WEIGHTS_FILE = "face_reader.safetensors"
WEIGHTS_SHA256 = "d37c46623e460e23e8107dba7a4b1656619104e1263324e63b8327c05cc9359a"
MODEL_NAME = "emoreason/face_reader"
LABELS: tuple[str, ...] = BASIC_EMOTIONS  # output order
CROP_SIZE = 64
CROP_SCALE = 1.2
CNN_SIZE = 48
CHANNELS = (16, 32, 64, 128)
_R_EYE, _L_EYE = (33, 133), (263, 362)


def normalised_mesh(landmarks: np.ndarray) -> np.ndarray:
    """``(T, 468, 3)`` meshes (pixels) -> ``(T, 1404)``: head rotation removed, origin between the eyes, IOD units."""
    lm = np.asarray(landmarks, dtype=np.float64)
    if lm.ndim == 2:
        lm = lm[None]
    rot = face_frame(lm)
    eye_r, eye_l = lm[:, _R_EYE].mean(1), lm[:, _L_EYE].mean(1)
    iod = np.linalg.norm(eye_l - eye_r, axis=-1)
    origin = (eye_r + eye_l) / 2
    p = np.einsum("tnc,tcd->tnd", lm - origin[:, None], rot) / iod[:, None, None]
    return p.reshape(len(lm), -1)


def standardise_crops(crops: np.ndarray) -> np.ndarray:
    """``(N, h, w)`` uint8 -> ``(N, 1, 48, 48)`` float32 (area-resized), each crop at zero mean and unit SD."""
    import cv2

    x = np.asarray(crops)
    if x.shape[1:] != (CNN_SIZE, CNN_SIZE):
        x = (
            np.stack([cv2.resize(c, (CNN_SIZE, CNN_SIZE), interpolation=cv2.INTER_AREA) for c in x])
            if len(x)
            else (np.zeros((0, CNN_SIZE, CNN_SIZE)))
        )
    x = x.astype(np.float32)
    mu = x.mean(axis=(1, 2), keepdims=True)
    sd = x.std(axis=(1, 2), keepdims=True)
    return ((x - mu) / np.maximum(sd, 1.0))[:, None]


def build_cnn(n_classes: int = len(LABELS), channels: tuple[int, ...] = CHANNELS):
    """The crop branch (a ``torch.nn.Sequential``); its logits are its output."""
    import torch.nn as nn

    layers: list[nn.Module] = []
    c_in = 1
    for c in channels:
        layers += [nn.Conv2d(c_in, c, 3, padding=1, bias=False), nn.BatchNorm2d(c), nn.ReLU(inplace=True),
                   nn.MaxPool2d(2)]  # fmt: skip
        c_in = c
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(0.3), nn.Linear(c_in, n_classes)]
    return nn.Sequential(*layers)


def _log_softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=1, keepdims=True))


class FaceReader:
    """Seven expression probabilities (:data:`LABELS` order) per frame from its mesh, geometry features and crop."""

    def __init__(self, path: str | Path | None = None, *, expected_sha256: str | None = WEIGHTS_SHA256):
        import torch
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        from emoreason.assets import sha256_of

        self.path = Path(path) if path is not None else ASSET_DIR / WEIGHTS_FILE
        if not self.path.is_file():
            raise ModelError("face reader weights not found", self.path)
        self.sha256 = sha256_of(self.path)
        if expected_sha256 is not None and self.sha256 != expected_sha256:
            raise ModelError(f"face reader weights have sha256 {self.sha256}, expected {expected_sha256}: the file is "
                             "corrupt or not the shipped one", self.path)  # fmt: skip
        try:
            state = load_file(str(self.path))
        except (SafetensorError, OSError, ValueError) as e:
            raise ModelError(f"cannot read face reader weights: {e}", self.path) from e
        need = {"mesh.mean", "mesh.scale", "mesh.weight", "mesh.bias", "fuse.a", "fuse.b", "fuse.c"}
        if missing := need - set(state):
            raise ModelError(f"face reader weights lack {sorted(missing)}", self.path)
        self.cnn = build_cnn()
        cnn_state = {k[4:]: v for k, v in state.items() if k.startswith("cnn.")}
        try:
            self.cnn.load_state_dict(cnn_state)
        except RuntimeError as e:
            raise ModelError(f"face reader CNN weights do not fit the network: {e}", self.path) from e
        self.cnn.eval()
        self._torch = torch
        np_state = {k: v.numpy().astype(np.float64) for k, v in state.items() if not k.startswith("cnn.")}
        self.mesh_mean, self.mesh_scale = np_state["mesh.mean"], np_state["mesh.scale"]
        self.mesh_w, self.mesh_b = np_state["mesh.weight"], np_state["mesh.bias"]
        self.a, self.b, self.c = float(np_state["fuse.a"][0]), float(np_state["fuse.b"][0]), np_state["fuse.c"]
        if self.mesh_w.shape != (len(LABELS), self.mesh_mean.shape[0]):
            raise ModelError(f"face reader mesh weights have shape {self.mesh_w.shape}", self.path)

    def mesh_logits(self, landmarks: np.ndarray, features: np.ndarray) -> np.ndarray:
        x = np.concatenate([normalised_mesh(landmarks), np.asarray(features, np.float64)], axis=1)
        return ((x - self.mesh_mean) / self.mesh_scale) @ self.mesh_w.T + self.mesh_b

    def crop_logits(self, crops: np.ndarray) -> np.ndarray:
        torch = self._torch
        with torch.inference_mode():
            return self.cnn(torch.from_numpy(standardise_crops(crops))).double().numpy()

    def predict(self, landmarks: np.ndarray, features: np.ndarray, crops: np.ndarray) -> np.ndarray:
        """``(N, 468, 3)`` meshes, ``(N, 16)`` geometry features, ``(N, 64, 64)`` grey crops -> ``(N, 7)`` probabilities."""
        if len(landmarks) == 0:
            return np.zeros((0, len(LABELS)))
        z = self.a * _log_softmax(self.crop_logits(crops)) + self.b * _log_softmax(
            self.mesh_logits(landmarks, features)
        )
        z = z + self.c
        z -= z.max(axis=1, keepdims=True)
        p = np.exp(z)
        return p / p.sum(axis=1, keepdims=True)

    def version(self) -> ModelVersion:
        meta = ASSET_DIR / "face_reader.json"
        ver = json.loads(meta.read_text())["version"] if meta.is_file() else "unknown"
        return ModelVersion(name=MODEL_NAME, version=ver, sha256=self.sha256)


_SHARED: FaceReader | None = None


def shared_reader() -> FaceReader:
    """The shipped reader, loaded (and hash-checked) once per process."""
    global _SHARED
    if _SHARED is None:
        _SHARED = FaceReader()
    return _SHARED
