"""Stages 2-3 of ``train/train_face_reader.py``: cross-validated ablations on train, the fitted reader, dev scored once.

Candidates (all class-balanced, scored by identity-grouped cross-validation on train):

- ``geom_au_lr``: logistic regression over the 16 geometry features and 17 AU intensities (the issue's probe, no fer);
- ``mesh_lr``: logistic regression over the pose-normalised 468-point mesh + geometry features (the mesh branch);
- ``cnn``: the crop CNN (:func:`emoreason.perception.reader.build_cnn`), with and without augmentation;
- ``reader``: the late fusion of ``cnn`` and ``mesh_lr`` (the shipped reader);
- ``fer`` and ``reader+fer``: the ``fer`` classifier alone and fused in (ablation only; fer is not shipped).
"""

from __future__ import annotations

import hashlib
import json
import math
import sys
import time
from pathlib import Path

import numpy as np

from emoreason.metrics import classification_scores
from emoreason.perception import au as au_mod
from emoreason.perception.reader import LABELS, WEIGHTS_FILE, build_cnn, normalised_mesh, standardise_crops

K_FOLDS = 5
CNN_FOLDS = 3  # the CNN is slower to fit: 3 grouped folds for its out-of-fold logits
EPOCHS = 30  # 18 epochs: CV UAR 0.454 for the CNN and 0.547 fused; 30 epochs: 0.473 and 0.562
BATCH = 128
LR_C = 0.05
FER_ORDER = ("anger", "disgust", "fear", "happiness", "sadness", "surprise", "neutral")
SCORED = tuple(c for c in LABELS if c != "fear")  # fear: 17 train photos and 1 dev photo, too few to score


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def scores(y: np.ndarray, pred: list[str | None]) -> dict:
    keep = [i for i, t in enumerate(y) if t in SCORED]
    return classification_scores([pred[i] for i in keep], [str(y[i]) for i in keep], labels=list(SCORED))


def balanced_weights(y: np.ndarray, power: float = 1.0) -> np.ndarray:
    counts = np.array([max(1, (y == k).sum()) for k in range(len(LABELS))], np.float64)
    w = (len(y) / (len(LABELS) * counts)) ** power
    return w


def fit_lr(x: np.ndarray, y: np.ndarray, c: float = LR_C):
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    sc = StandardScaler().fit(x)
    lr = LogisticRegression(C=c, class_weight="balanced", max_iter=300)
    lr.fit(sc.transform(x), y)
    # columns for classes absent from a fold stay at -inf logits
    w = np.zeros((len(LABELS), x.shape[1]))
    b = np.full(len(LABELS), -30.0)
    w[lr.classes_], b[lr.classes_] = lr.coef_, lr.intercept_
    return sc, w, b


def lr_logits(model, x: np.ndarray) -> np.ndarray:
    sc, w, b = model
    return sc.transform(x) @ w.T + b


def augment(x, torch):
    """Flip, rotation (+-12 deg), scale (0.9-1.1), shift (+-6 %), gamma, blur and noise on a standardised batch."""
    import torch.nn.functional as F

    n = x.shape[0]
    flip = torch.rand(n) < 0.5
    x = torch.where(flip[:, None, None, None], x.flip(3), x)
    ang = (torch.rand(n) - 0.5) * 2 * math.radians(12)
    s = 0.9 + 0.2 * torch.rand(n)
    t = (torch.rand(n, 2) - 0.5) * 0.12
    cos, sin = torch.cos(ang) / s, torch.sin(ang) / s
    theta = torch.stack([torch.stack([cos, -sin, t[:, 0]], 1), torch.stack([sin, cos, t[:, 1]], 1)], 1)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    x = F.grid_sample(x, grid, padding_mode="border", align_corners=False)
    blur = torch.rand(n) < 0.2
    x = torch.where(blur[:, None, None, None], F.avg_pool2d(x, 3, 1, 1, count_include_pad=False), x)
    x = x * (0.8 + 0.4 * torch.rand(n, 1, 1, 1)) + 0.15 * torch.randn(n, 1, 1, 1)
    return x + 0.05 * torch.randn_like(x)


def train_cnn(crops: np.ndarray, y: np.ndarray, *, seed: int, aug: bool = True, epochs: int = EPOCHS):
    import torch

    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    x_all = torch.from_numpy(standardise_crops(crops))
    y_all = torch.from_numpy(y.astype(np.int64))
    net = build_cnn()
    opt = torch.optim.AdamW(net.parameters(), lr=3e-3, weight_decay=1e-3)
    steps = epochs * math.ceil(len(y) / BATCH)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=3e-3, total_steps=steps)
    loss_fn = torch.nn.CrossEntropyLoss(weight=torch.tensor(balanced_weights(y, 0.5), dtype=torch.float32),
                                        label_smoothing=0.05)  # fmt: skip
    for ep in range(epochs):
        net.train()
        order = rng.permutation(len(y))
        tot = 0.0
        for i in range(0, len(y), BATCH):
            idx = torch.from_numpy(order[i : i + BATCH])
            xb = x_all[idx]
            if aug:
                xb = augment(xb, torch)
            loss = loss_fn(net(xb), y_all[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            tot += loss.item() * len(idx)
        if ep % 6 == 5 or ep == epochs - 1:
            log(f"  cnn epoch {ep + 1}/{epochs} loss {tot / len(y):.3f}")
    net.eval()
    return net


def cnn_logits(net, crops: np.ndarray) -> np.ndarray:
    import torch

    with torch.inference_mode():
        x = torch.from_numpy(standardise_crops(crops))
        return np.concatenate([net(x[i : i + 512]).double().numpy() for i in range(0, len(x), 512)])


def fusion_weights(y: np.ndarray) -> np.ndarray:
    """Class-balanced weights for the fusion fit, capped at the rarest *scored* class's weight: fear (17 train photos,
    not scored) would otherwise pull the offsets toward calling fear."""
    w = balanced_weights(y)
    cap = max(w[LABELS.index(c)] for c in SCORED)
    return np.minimum(w, cap)


def log_softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(1, keepdims=True)
    return z - np.log(np.exp(z).sum(1, keepdims=True))


def fit_fusion(parts: list[np.ndarray], y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Scale per branch (on its log-probabilities) and per-class offset minimising the class-balanced cross-entropy."""
    import torch

    z = [torch.from_numpy(log_softmax(p)).float() for p in parts]
    a = torch.ones(len(parts), requires_grad=True)
    c = torch.zeros(len(LABELS), requires_grad=True)
    w = torch.tensor(fusion_weights(y), dtype=torch.float32)
    yt = torch.from_numpy(y.astype(np.int64))
    opt = torch.optim.LBFGS([a, c], max_iter=500, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        logit = sum(a[i] * z[i] for i in range(len(z))) + c
        loss = torch.nn.functional.cross_entropy(logit, yt, weight=w) + 1e-3 * (c**2).sum()
        loss.backward()
        return loss

    opt.step(closure)
    return a.detach().numpy().astype(np.float64), c.detach().numpy().astype(np.float64)


def fused(parts: list[np.ndarray], a: np.ndarray, c: np.ndarray) -> np.ndarray:
    return sum(a[i] * log_softmax(parts[i]) for i in range(len(parts))) + c


MAX_UNCERTAIN_OOF = 0.05  # open-set budget on train out-of-fold photos (half the 10 % where a face is visible)


def fit_open_set(probs: np.ndarray, y: np.ndarray) -> dict:
    """The engine's open-set rule for the reader ("uncertain" when best < BELOW and best < RATIO x second), fitted on
    train out-of-fold probabilities: among the (BELOW, RATIO) on a grid that keep at most ``MAX_UNCERTAIN_OOF`` of the
    photos uncertain and whose withheld calls are right at most half as often as the calls given, the one that
    withholds the most.
    Probabilities are taken as the engine sees them (contempt gets the fusion's smoothing mass)."""
    from emoreason.reasoning.fusion import EXPRESSION_EPS

    q = np.concatenate([probs, np.full((len(probs), 1), EXPRESSION_EPS)], axis=1)
    q /= q.sum(1, keepdims=True)
    order = np.sort(q, axis=1)
    best, second = order[:, -1], order[:, -2]
    right = q[:, : len(LABELS)].argmax(1) == y
    out = None
    for below in np.arange(0.20, 0.46, 0.01):
        for ratio in (1.1, 1.25, 1.5, 2.0):
            unc = (best < below) & (best < ratio * second)
            if not unc.any() or unc.mean() > MAX_UNCERTAIN_OOF:
                continue
            acc = float(right[unc].mean())
            cand = {"below": round(float(below), 2), "ratio": ratio, "uncertain_rate": round(float(unc.mean()), 4),
                    "accuracy_of_withheld_calls": round(acc, 4),
                    "accuracy_of_given_calls": round(float(right[~unc].mean()), 4)}  # fmt: skip
            # the largest abstention whose withheld calls are right at most half as often as the calls given
            if acc <= 0.5 * cand["accuracy_of_given_calls"] and (
                out is None or cand["uncertain_rate"] > out["uncertain_rate"]
            ):
                out = cand
    return out or {"below": 0.0, "ratio": 1.0, "uncertain_rate": 0.0}


def argmax_labels(z: np.ndarray) -> list[str]:
    return [LABELS[k] for k in z.argmax(1)]


def fit_all(
    features: Path, work: Path, out_dir: Path, cards: Path, *, argv: list[str], select_only: bool = False
) -> dict:
    from sklearn.model_selection import GroupKFold

    t_start = time.time()
    d = np.load(features)
    labels, split, ident = d["labels"], d["split"], d["identity"]
    face = ~np.isnan(d["landmarks"][:, 0, 0])
    y_all = np.array([LABELS.index(v) for v in labels])
    mesh_x = np.full((len(labels), 468 * 3 + d["features"].shape[1]), np.nan)
    mesh_x[face] = np.concatenate([normalised_mesh(d["landmarks"][face]), d["features"][face]], axis=1)
    geom_x = np.concatenate([d["features"], d["aus"]], axis=1)
    fer = d["fer"][:, [FER_ORDER.index(c) for c in LABELS]].astype(np.float64)
    has_fer = bool(np.isfinite(fer[face]).all())
    tr, dv = np.where((split == "train") & face)[0], np.where((split == "dev") & face)[0]
    y, groups = y_all[tr], ident[tr]
    log(f"train photos with a face {len(tr)}/{(split == 'train').sum()}, dev {len(dv)}/{(split == 'dev').sum()}")

    oof: dict[str, np.ndarray] = {}
    folds = list(GroupKFold(n_splits=K_FOLDS).split(tr, y, groups))
    lr_cache = work / "lr_oof.npz"
    if lr_cache.is_file():
        oof.update(dict(np.load(lr_cache).items()))
    for name, x in (("geom_au_lr", geom_x[tr]), ("mesh_lr", mesh_x[tr])):
        if name not in oof:
            z = np.zeros((len(tr), len(LABELS)))
            for f_tr, f_te in folds:
                z[f_te] = lr_logits(fit_lr(x[f_tr], y[f_tr]), x[f_te])
            oof[name] = z
            np.savez(lr_cache, **{k: v for k, v in oof.items() if k.endswith("_lr")})
        z = oof[name]
        log(f"cv {name}: UAR {scores(labels[tr], argmax_labels(z))['uar']:.3f}")
    if has_fer:
        oof["fer"] = np.log(np.clip(fer[tr], 1e-6, 1))

    cache = work / "cnn_oof.npz"
    cnn_folds = list(GroupKFold(n_splits=CNN_FOLDS).split(tr, y, groups))
    if cache.is_file():
        oof.update({k: v for k, v in np.load(cache).items()})
    for name, aug in (("cnn", True), ("cnn_noaug_e18", False)):
        if name in oof:
            continue
        if name == "cnn_noaug_e18" and time.time() - t_start > 1800:
            log("skip cnn_noaug (time)")
            continue
        z = np.zeros((len(tr), len(LABELS)))
        for k, (f_tr, f_te) in enumerate(cnn_folds):
            log(f"{name} fold {k + 1}/{CNN_FOLDS}")
            net = train_cnn(d["crops"][tr][f_tr], y[f_tr], seed=k, aug=aug, epochs=EPOCHS if aug else 18)
            z[f_te] = cnn_logits(net, d["crops"][tr][f_te])
        oof[name] = z
        np.savez(cache, **{k: v for k, v in oof.items() if k.startswith("cnn")})
        log(f"cv {name}: UAR {scores(labels[tr], argmax_labels(z))['uar']:.3f}")

    # Late fusion fitted on out-of-fold logits; each combination's own CV score uses fusion weights fitted on the
    # other folds (nested), so the score is not fitted on the photos it scores.
    def cv_fusion(parts: list[np.ndarray]) -> np.ndarray:
        z = np.zeros((len(tr), len(LABELS)))
        for f_tr, f_te in folds:
            a, c = fit_fusion([p[f_tr] for p in parts], y[f_tr])
            z[f_te] = fused([p[f_te] for p in parts], a, c)
        return z

    combos = {"reader (cnn + mesh_lr)": ["cnn", "mesh_lr"], "cnn + geom_au_lr": ["cnn", "geom_au_lr"],
              "cnn + mesh_lr + geom_au_lr": ["cnn", "mesh_lr", "geom_au_lr"]}  # fmt: skip
    if has_fer:
        combos |= {
            "fer + geom_au_lr (the issue's probe)": ["fer", "geom_au_lr"],
            "reader + fer": ["cnn", "mesh_lr", "fer"],
        }
    ablation = {}
    for name in oof:
        ablation[name] = scores(labels[tr], argmax_labels(oof[name]))
    for name, parts in combos.items():
        ablation[name] = scores(labels[tr], argmax_labels(cv_fusion([oof[p] for p in parts])))
        log(f"cv {name}: UAR {ablation[name]['uar']:.3f}")

    if select_only:
        return {"ablation": ablation}
    # Final reader on all of train.
    a, c = fit_fusion([oof["cnn"], oof["mesh_lr"]], y)
    log(f"fusion a={a.round(3).tolist()} c={c.round(3).tolist()}")
    mesh_model = fit_lr(mesh_x[tr], y)
    net_path = work / "cnn_final.pt"
    import torch

    if net_path.is_file():
        net = build_cnn()
        net.load_state_dict(torch.load(net_path))
        net.eval()
    else:
        log("final cnn on all train")
        net = train_cnn(d["crops"][tr], y, seed=100)
        torch.save(net.state_dict(), net_path)
    sc, w, b = mesh_model
    state = {f"cnn.{k}": v.detach().clone().float() for k, v in net.state_dict().items()}
    state |= {"mesh.mean": torch.tensor(sc.mean_, dtype=torch.float32),
              "mesh.scale": torch.tensor(sc.scale_, dtype=torch.float32),
              "mesh.weight": torch.tensor(w, dtype=torch.float32), "mesh.bias": torch.tensor(b, dtype=torch.float32),
              "fuse.a": torch.tensor([a[0]], dtype=torch.float32), "fuse.b": torch.tensor([a[1]], dtype=torch.float32),
              "fuse.c": torch.tensor(c, dtype=torch.float32)}  # fmt: skip
    from safetensors.torch import save_file

    out_dir.mkdir(parents=True, exist_ok=True)
    wpath = out_dir / WEIGHTS_FILE
    save_file(state, str(wpath), metadata={"labels": ",".join(LABELS)})
    sha = hashlib.sha256(wpath.read_bytes()).hexdigest()
    version = time.strftime("%Y-%m-%d")
    (out_dir / "face_reader.json").write_text(json.dumps({"version": version, "sha256": sha, "labels": LABELS}) + "\n")

    # Fused train-OOF probabilities for the engine's open-set threshold (see reasoning/fusion.py).
    z_oof = fused([oof["cnn"], oof["mesh_lr"]], a, c)
    p_oof = np.exp(z_oof - z_oof.max(1, keepdims=True))
    p_oof /= p_oof.sum(1, keepdims=True)
    np.savez(work / "reader_oof.npz", probs=p_oof, y=y)
    open_set = fit_open_set(p_oof, y)
    log(f"open set on train OOF: {open_set}")

    # Dev, once: the reader as shipped (float32 weights, through the package's own FaceReader).
    from emoreason.perception.reader import FaceReader

    reader = FaceReader(wpath, expected_sha256=sha)
    p_dev = reader.predict(d["landmarks"][dv], d["features"][dv], d["crops"][dv])
    dev_pred: list[str | None] = [None] * int((split == "dev").sum())
    dev_idx = np.where(split == "dev")[0]
    pos = {j: i for i, j in enumerate(dev_idx)}
    for j, p in zip(dv, p_dev, strict=True):
        dev_pred[pos[j]] = LABELS[int(p.argmax())]
    dev = scores(labels[dev_idx], dev_pred)
    log(f"dev reader (per photo, no face = no answer): UAR {dev['uar']:.3f} WAR {dev['war']:.3f}")
    metrics = {
        "command": " ".join(argv),
        "weights_sha256": sha,
        "n_train_face": int(len(tr)),
        "n_dev_face": int(len(dv)),
        "no_face_rate": {
            "train": float(1 - face[split == "train"].mean()),
            "dev": float(1 - face[split == "dev"].mean()),
        },
        "cv": {
            "folds": K_FOLDS,
            "cnn_folds": CNN_FOLDS,
            "grouped_by": "identity",
            "scored_classes": list(SCORED),
            "ablation": ablation,
        },  # fmt: skip
        "fusion": {
            "a_cnn": float(a[0]),
            "b_mesh": float(a[1]),
            "c": dict(zip(LABELS, c.round(4).tolist(), strict=True)),
        },
        "open_set": open_set,
        "dev_reader_per_photo": dev,
        "train_seconds": round(time.time() - t_start, 1),
    }
    cards.mkdir(parents=True, exist_ok=True)
    (cards / "metrics.json").write_text(json.dumps(metrics, indent=1) + "\n")
    (cards / "confusion_dev.txt").write_text(confusion_text(dev))
    is_train = split == "train"
    readout = au_mod.fit_readout(d["features"][is_train & face], labels[is_train & face])
    metrics["au_readout_fit"] = readout
    (cards / "metrics.json").write_text(json.dumps(metrics, indent=1) + "\n")
    (cards / "prototype_aus_train.md").write_text(prototype_table(d["features"][is_train], labels[is_train]))
    log(f"done in {time.time() - t_start:.0f} s; weights sha256 {sha}")
    return metrics


def prototype_table(features: np.ndarray, labels: np.ndarray) -> str:
    """Markdown: for each class, each EMFACS prototype AU's mean intensity and occurrence rate (>= 2) on its photos,
    against the same on neutral photos, from the AU readout as shipped (a still photo keeps the neutral prior)."""
    from emoreason.knowledge.facs import OCCURRENCE_THRESHOLD, PERCEIVED_AUS
    from emoreason.knowledge.prototypes import PROTOTYPES
    from emoreason.perception import au as au_mod

    ok = ~np.isnan(features[:, 0])
    x, lab = features[ok].astype(np.float64), labels[ok]
    inten = au_mod.au_intensities(x, dict(au_mod.NEUTRAL_PRIOR), fps=1.0, smooth_s=0.0)
    neu = inten[lab == "neutral"]
    rows = ["| class (photos) | AU | mean intensity | present (>= 2) | on neutral: mean | on neutral: present |",
            "|---|---|---|---|---|---|"]  # fmt: skip
    for cls in LABELS:
        if cls == "neutral":
            continue
        m = inten[lab == cls]
        for au in (a for a in PROTOTYPES[cls] if a in PERCEIVED_AUS):
            k = PERCEIVED_AUS.index(au)
            rows.append(f"| {cls} ({len(m)}) | {au} | {m[:, k].mean():.2f} | {(m[:, k] >= OCCURRENCE_THRESHOLD).mean():.0%} "
                        f"| {neu[:, k].mean():.2f} | {(neu[:, k] >= OCCURRENCE_THRESHOLD).mean():.0%} |")  # fmt: skip
    return "\n".join(rows) + "\n"


def confusion_text(s: dict) -> str:
    cls = list(s["confusion"])
    cols = [*LABELS, "<none>"]
    head = "true \\ pred".ljust(12) + "".join(c[:9].rjust(10) for c in cols) + "\n"
    rows = [c.ljust(12) + "".join(str(s["confusion"][c].get(p, 0)).rjust(10) for p in cols) + "\n" for c in cls]
    return head + "".join(rows)
