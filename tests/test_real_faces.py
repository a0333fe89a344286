"""The real-faces loader and split on a tiny fixture, and the real-faces benchmark's scoring against hand counts."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from emoreason.data.real_faces import identity_of, load_real_faces
from emoreason.errors import DataError

ROOT = Path(__file__).resolve().parent.parent


def _bench():
    spec = importlib.util.spec_from_file_location("bench_real_faces", ROOT / "bench" / "bench_real_faces.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def make_dataset(tmp_path: Path, legend: str, train: list[str], dev: list[str], images: list[str] | None = None):
    root = tmp_path / "facial_expressions"
    (root / "data").mkdir(parents=True)
    (root / "images").mkdir()
    (root / "data" / "legend.csv").write_text("user.id,image,emotion\n" + legend)
    for name in images if images is not None else train + dev:
        cv2.imwrite(str(root / "images" / name), np.full((8, 8, 3), 128, np.uint8))
    split = tmp_path / "split.json"
    split.write_text(json.dumps({"source": "x", "identity": "y", "train": train, "dev": dev}))
    return root, split


LEGEND = (
    "1,Ann_Lee_0001.jpg,HAPPINESS\n1,Ann_Lee_0002.jpg,neutral\n1,Ann_Lee_0002.jpg,neutral\n"
    "2,Bob_0001.jpg,Anger\n2,Bob_0003.jpg,contempt\n3,Cy_Di_0001.jpg,surprise\n3,Cy_Di_0001.jpg,sadness\n"
    "4,facial-expressions_2868588k.jpg,disgust\n"
)


def test_loader_lowercases_dedups_drops_contempt_and_conflicts(tmp_path):
    train = ["Ann_Lee_0001.jpg", "Ann_Lee_0002.jpg", "Ann_Lee_0002.jpg", "Cy_Di_0001.jpg"]
    dev = ["Bob_0001.jpg", "Bob_0003.jpg", "facial-expressions_2868588k.jpg"]
    root, split = make_dataset(tmp_path, LEGEND, train, dev)
    ds = load_real_faces(root, split)
    got = [(p.path.name, p.label, p.identity, p.split) for p in ds]
    assert got == [
        ("Ann_Lee_0001.jpg", "happiness", "Ann_Lee", "train"),
        ("Ann_Lee_0002.jpg", "neutral", "Ann_Lee", "train"),
        ("Bob_0001.jpg", "anger", "Bob", "dev"),
        ("facial-expressions_2868588k.jpg", "disgust", "facial-expressions_2868588k", "dev"),
    ]
    assert ds.dropped == {"conflicting_labels": 1, "contempt": 1}
    assert ds.counts() == {"train": {"happiness": 1, "neutral": 1}, "dev": {"anger": 1, "disgust": 1}}
    assert ds.split("dev")[0].path == root / "images" / "Bob_0001.jpg"


def test_identity_strips_only_the_trailing_number():
    assert identity_of("Aaron_Eckhart_0001.jpg") == "Aaron_Eckhart"
    assert identity_of("Ann_Lee_0002") == "Ann_Lee"
    assert identity_of("facial-expressions_2868588k.jpg") == "facial-expressions_2868588k"


@pytest.mark.parametrize(
    ("train", "dev", "images", "message"),
    [
        (["Ann_Lee_0001.jpg"], ["Ann_Lee_0002.jpg"], None, "identities in both train and dev"),
        (["Ann_Lee_0001.jpg"], ["Ann_Lee_0001.jpg"], None, "in both train and dev"),
        (["Nobody_0001.jpg"], [], [], "has no label in legend.csv"),
        (["Ann_Lee_0001.jpg"], [], [], "is listed but not in images/"),
    ],
)
def test_loader_rejects_bad_splits_with_one_line(tmp_path, train, dev, images, message):
    root, split = make_dataset(tmp_path, LEGEND, train, dev, images)
    with pytest.raises(DataError, match=message):
        load_real_faces(root, split)


def test_loader_names_the_missing_path(tmp_path):
    with pytest.raises(DataError, match="data folder not found") as e:
        load_real_faces(tmp_path / "nope", tmp_path / "split.json")
    assert str(tmp_path / "nope") in str(e.value)
    root, split = make_dataset(tmp_path, "1,A_0001.jpg,fear\n", ["A_0001.jpg"], [])
    (root / "data" / "legend.csv").write_text("user.id,picture,emotion\n")
    with pytest.raises(DataError, match="lacks column"):
        load_real_faces(root, split)
    (root / "data" / "legend.csv").write_text("user.id,image,emotion\n1,A_0001.jpg,fear\n")
    with pytest.raises(DataError, match="split file not found"):
        load_real_faces(root, tmp_path / "missing.json")


def test_bench_scoring_against_hand_counts():
    score = _bench().score
    refs = ["happiness", "happiness", "happiness", "neutral", "neutral", "anger", "fear"]
    preds = ["happiness", "neutral", "uncertain", "neutral", None, "happiness", "fear"]
    s = score(preds, refs, labels=("neutral", "happiness", "anger"))
    # fear is not scored: 6 photos. Recall: happiness 1/3, neutral 1/2, anger 0/1. Correct 2 of 6. No answer 2 of 6.
    assert s["n"] == 6
    assert s["per_class_recall"] == {"neutral": 0.5, "happiness": round(1 / 3, 4), "anger": 0.0}
    assert s["uar"] == round((1 / 3 + 1 / 2 + 0) / 3, 4)
    assert s["war"] == round(2 / 6, 4)
    assert s["no_answer"] == round(2 / 6, 4)
    assert s["confusion"]["happiness"] == {"happiness": 1, "neutral": 1, "<none>": 1}
    with pytest.raises(ValueError, match="2 predictions for 1 references"):
        score(["a", "b"], ["a"])


def test_bench_and_training_say_when_the_data_path_is_missing(tmp_path, capsys):
    assert _bench().main(["--data", str(tmp_path / "nope"), "--split", str(tmp_path / "s.json")]) == 2
    assert "data folder not found" in capsys.readouterr().err
    spec = importlib.util.spec_from_file_location("tfr", ROOT / "train" / "train_face_reader.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    argv = ["--data", str(tmp_path), "--split", str(tmp_path / "s.json"), "--work", str(tmp_path / "w")]
    assert mod.main(argv) == 2
    assert "split file not found" in capsys.readouterr().err
