"""EmoReason processor: placeholder expansion, Evidence → face features, log-mel audio, batching and clear errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from emoreason.errors import ModelError
from emoreason.knowledge.facs import PERCEIVED_AUS
from emoreason.models.emoreason import EmoReasonProcessor
from emoreason.models.emoreason.configuration_emoreason import LANDMARK_SUBSET
from emoreason.models.emoreason.processing_emoreason import AUDIO_TOKEN, FACE_TOKEN, log_mel
from emoreason.models.emoreason.testing import tiny_audio, tiny_evidence, tiny_tokenizer


@pytest.fixture(scope="module")
def proc() -> EmoReasonProcessor:
    return EmoReasonProcessor(tiny_tokenizer(), face_tokens=5, audio_tokens=3)


def _user(content: str) -> list[dict]:
    return [{"role": "user", "content": content}]


def test_messages_render_with_chat_template_and_expand_to_the_budget(proc):
    batch = proc(messages=_user("<|face|><|audio|>Why?"), evidence=tiny_evidence(), audio=tiny_audio())
    text = proc.decode(batch["input_ids"][0])
    assert text.startswith("<|im_start|>user\n<|face_start|>") and text.endswith("<|im_start|>assistant\n")
    assert text.count(FACE_TOKEN) == 5 and text.count(AUDIO_TOKEN) == 3
    assert "<|face_end|><|audio_start|>" in text and "<|audio_end|>Why?" in text


def test_face_features_follow_the_evidence(proc):
    ev = tiny_evidence(2.0, fps=10.0)
    feats, _ = proc.face_features(ev)
    assert feats.shape == (10, len(PERCEIVED_AUS) + 4 + 2 * len(LANDMARK_SUBSET))  # 2 s at 5 fps
    idx = [int(round(t * 10)) for t in np.arange(10) / 5.0]  # nearest analysed frames
    au6 = [ev.aus.intensities["AU6"][i] or 0.0 for i in idx]
    np.testing.assert_allclose(feats[:, PERCEIVED_AUS.index("AU6")], np.array(au6) / 5.0, rtol=1e-6)
    present = np.array([ev.face.present[i] for i in idx], np.float32)
    np.testing.assert_array_equal(feats[:, len(PERCEIVED_AUS) + 3], present)
    np.testing.assert_allclose(feats[present > 0, len(PERCEIVED_AUS)], 5.0 / 90.0, rtol=1e-6)  # yaw / 90
    assert np.all(feats[present == 0, len(PERCEIVED_AUS) + 4 :] == 0)  # no mesh → zero landmarks


def test_landmarks_are_pose_normalised(proc):
    ev = tiny_evidence(1.0, fps=5.0)
    moved = ev.model_copy(deep=True)
    a = np.deg2rad(25.0)
    rot = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    for i, mesh in enumerate(moved.face.landmarks):
        if mesh is not None:
            pts = np.asarray(mesh)
            pts[:, :2] = 1.7 * pts[:, :2] @ rot.T + [40.0, -12.0]  # rotate, scale, shift the whole face
            moved.face.landmarks[i] = pts.tolist()
    k = len(PERCEIVED_AUS) + 4
    np.testing.assert_allclose(proc.face_features(ev)[0][:, k:], proc.face_features(moved)[0][:, k:], atol=1e-4)


def test_landmarks_argument_replaces_the_evidence_mesh(proc):
    ev = tiny_evidence(1.0, fps=5.0)
    mesh = np.asarray([m if m is not None else np.zeros((468, 3)) for m in ev.face.landmarks])
    k = len(PERCEIVED_AUS) + 4
    bare = ev.model_copy(deep=True)
    bare.face.landmarks = None
    assert np.all(proc.face_features(bare)[0][:, k:] == 0)
    np.testing.assert_allclose(proc.face_features(bare, landmarks=mesh)[0], proc.face_features(ev)[0], atol=1e-6)
    batch = proc(text="<|face|>x", evidence=bare, landmarks=mesh[:, :, :2])
    np.testing.assert_allclose(batch["face_values"][0].numpy(), proc.face_features(ev)[0], atol=1e-6)
    with pytest.raises(ModelError, match="landmarks must be"):
        proc(text="<|face|>x", evidence=bare, landmarks=mesh[:3])


def test_long_clips_are_capped_and_short_clips_padded(proc):
    batch = proc(
        text=["<|face|><|audio|>a", "<|face|><|audio|>b"],
        evidence=[tiny_evidence(1.0, landmarks=False), tiny_evidence(80.0, landmarks=False)],
        audio=[tiny_audio(1.0), tiny_audio(80.0)],
    )
    assert batch["face_values"].shape[:2] == (2, 300) and batch["face_mask"].sum(1).tolist() == [5, 300]
    assert batch["audio_mask"].sum(1).tolist() == [100, 6000]  # 16000 / 160 frames; 80 s pooled to the cap
    assert batch["audio_values"].shape[2] == 83 and bool(torch.isfinite(batch["audio_values"]).all())


def test_log_mel_is_whispers_feature_extractor():
    """The audio features are WhisperFeatureExtractor's log-mel (what a Whisper encoder reads), unpadded: 100/s."""
    from transformers import WhisperFeatureExtractor

    y = tiny_audio(1.0)
    want = WhisperFeatureExtractor(feature_size=80)(y, sampling_rate=16000, return_tensors="np")["input_features"][0]
    got = log_mel(y)
    assert got.shape == (100, 80)  # 1 s, no 30 s padding
    # the extractor pads to 30 s with silence, which only changes the frames near the end and the peak-relative
    # floor; the first half second is the same mel
    np.testing.assert_allclose(got[:50], want.T[:50], rtol=1e-4, atol=1e-4)
    assert log_mel(np.zeros(10, np.float32)).shape == (2, 80)  # shorter than a window: one window of zeros


def test_prosody_channels_come_from_the_evidence(proc):
    ev = tiny_evidence(1.0)
    feats = proc.audio_features(tiny_audio(1.0), ev)
    no_ev = proc.audio_features(tiny_audio(1.0), None)
    np.testing.assert_array_equal(feats[:, :80], no_ev[:, :80])
    assert np.all(no_ev[:, 80:] == 0) and feats[:, 82].max() == 1.0  # voiced channel
    np.testing.assert_allclose(feats[1, 81], (ev.prosody.energy_db[1] + 40.0) / 40.0, rtol=1e-5)


def test_only_samples_with_placeholders_contribute_clips(proc):
    batch = proc(text=["x", "<|face|>clip"], evidence=[None, tiny_evidence()], audio=[None, None])
    assert batch["face_values"].shape[0] == 1 and "audio_values" not in batch
    assert batch["attention_mask"][0].sum() < batch["attention_mask"][1].sum()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"text": "<|face|>x"}, "no evidence"),
        ({"text": "<|audio|>x", "evidence": None}, "no audio"),
        ({"text": "x", "audio": np.zeros(1600, np.float32)}, "no <\\|audio\\|> placeholder"),
        ({"text": "<|face|><|face|>x", "evidence": "ev"}, "at most one"),
        ({"text": ["a", "b"], "evidence": ["ev"]}, "one entry per text"),
        ({"text": "x", "messages": _user("x")}, "exactly one of"),
    ],
)
def test_clear_errors(proc, kwargs, message):
    if kwargs.get("evidence") == "ev":
        kwargs["evidence"] = tiny_evidence()
    if kwargs.get("evidence") == ["ev"]:
        kwargs["evidence"] = [tiny_evidence()]
    with pytest.raises(ModelError, match=message):
        proc(**kwargs)


def test_evidence_without_aus_is_an_error_naming_the_file(proc):
    ev = tiny_evidence()
    ev.aus = None
    with pytest.raises(ModelError, match="no AU series") as err:
        proc(text="<|face|>x", evidence=ev)
    assert "synthetic.mp4" in str(err.value)


def test_tokenizer_without_special_tokens_is_rejected():
    bare = EmoReasonProcessor(_bare_tokenizer())
    with pytest.raises(ModelError, match="lacks the special tokens"):
        bare(text="<|face|>x", evidence=tiny_evidence())


def _bare_tokenizer():
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel()
    tok.train_from_iterator(["hello world"], trainers.BpeTrainer(vocab_size=300, special_tokens=["<pad>"]))
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>")


def test_save_load_keeps_budget_and_template(proc, tmp_path):
    proc.save_pretrained(tmp_path)
    again = EmoReasonProcessor.from_pretrained(tmp_path)
    assert (again.face_tokens, again.audio_tokens) == (5, 3)
    assert again.chat_template == proc.chat_template
    a = proc(text="<|face|>x", evidence=tiny_evidence())
    b = again(text="<|face|>x", evidence=tiny_evidence())
    assert torch.equal(a["input_ids"], b["input_ids"]) and torch.equal(a["face_values"], b["face_values"])


def test_the_face_reader_reading_rides_in_the_face_features(tmp_path) -> None:
    """With ``face_config.use_reader`` the face features end with the reader's probabilities (READER_LABELS order,
    whatever order the evidence lists them in) and a read flag; a frame the reader did not read is zeros."""
    from emoreason.evidence import ExpressionCue
    from emoreason.models.emoreason import EmoReasonConfig, EmoReasonProcessor
    from emoreason.models.emoreason.configuration_emoreason import READER_LABELS
    from emoreason.models.emoreason.testing import tiny_evidence, tiny_model_dir

    path = tiny_model_dir(tmp_path, face_config={"use_reader": True})
    proc = EmoReasonProcessor.from_pretrained(path)
    config = EmoReasonConfig.from_pretrained(path)
    ev = tiny_evidence(2.0)
    labels = list(reversed(READER_LABELS))
    probs = [[0.0] * len(labels) for _ in ev.aus.times]
    for row in probs:
        row[labels.index("happiness")] = 0.9
    probs[1] = None  # a frame without a reading
    ev = ev.model_copy(update={"reader": ExpressionCue(model="r", labels=labels, times=ev.aus.times, probs=probs)})
    feats, _ = proc.face_features(ev)
    assert feats.shape[1] == config.face_feature_size
    tail = feats[:, -(len(READER_LABELS) + 1) :]
    assert tail[0, READER_LABELS.index("happiness")] == pytest.approx(0.9) and tail[0, -1] == 1.0
    no_reader, _ = proc.face_features(ev.model_copy(update={"reader": None}))
    assert (no_reader[:, -(len(READER_LABELS) + 1) :] == 0).all()
