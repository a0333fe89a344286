"""The evaluation harness: read a task (YAML), run a model over its samples, score, write results. Resumable.

A task is data (lmms-eval style): ``tasks/<suite>/<task>.yaml`` (package data beside this module) names the loader and
its arguments, the data folder under ``--data-root``, the prompt file, generation kwargs, the output type and the
metrics to report; an optional ``utils.py`` beside it may define hooks ``doc_to_text(sample, prompt) -> str`` and
``extract_prediction(sample, response) -> str``.

Files, under ``<out>/<task>/``:

- ``predictions.jsonl`` — one row per finished sample, appended (and fsync'd) as soon as it is scored: id, its ``key``,
  model, output, caption, the normalised prediction, the reference, per-sample scores, groups, ``failed`` and
  ``error``. The key is a hash of what the row depends on: the sample's media/evidence file contents, its reference
  labels, the model, the prompt as rendered for it, the generation kwargs, the task's output type and hooks file, and
  the row format version (:func:`sample_key`). A rerun skips ids whose last row has the same key and no error; rows
  whose key changed (a relabelled sample, a new evidence file, another prompt version) are recomputed, never reused;
  a truncated last line (a crash mid-write) is cut off first; failed rows are retried and the last row of an id wins.
  A crash therefore loses at most the sample being written. Rows of another model in the same folder are refused (a
  :class:`~emoreason.errors.ConfigError`), never mixed in.
- ``metrics.json`` — written atomically at the end, computed from the rows only, so an interrupted-then-resumed run
  gives the same numbers as an uninterrupted one.

Bad data (missing files, malformed rows, unknown or out-of-range labels, a dataset with no samples) raises
:class:`~emoreason.errors.DataError` naming the file and line while loading, before any model runs. A failure on one
sample at run time (unreadable video, no face, endpoint error, a NaN in an evidence file: any ``Exception``) is
recorded in that sample's row (``failed``, and a one-line ``error``) and the run goes on. Failed samples are excluded
from the metrics and said so: ``metrics.json`` gives ``n`` (samples), ``n_scored``, ``n_failed`` (also ``n_errors``) and
``failed`` (each id with its error), the log and the summary list them at the end, and ``emoreason eval`` exits 1.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import math
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from importlib.resources import files
from pathlib import Path
from types import ModuleType
from typing import Any

import yaml
from tqdm import tqdm

from emoreason import __version__, prompts
from emoreason import metrics as M
from emoreason.errors import ConfigError, DataError, EmoReasonError
from emoreason.evaluation.loaders import Sample, load_samples
from emoreason.evaluation.models import Model, Request, Response, load_evidence
from emoreason.io import append_jsonl, atomic_write_text, iter_jsonl, sha256_file
from emoreason.knowledge.facs import find_aus
from emoreason.knowledge.taxonomy import BASIC_EMOTIONS, C_EXPR_DB_LABELS
from emoreason.parsing import parse_output

log = logging.getLogger(__name__)


def _package_file(name: str) -> Path:
    """A file shipped in this package (package data). The task hooks are imported from their files, so these must be
    real paths: true for a wheel unpacked by pip and for an editable install, not for a zipped package."""
    res = files("emoreason.evaluation") / name
    if not isinstance(res, Path):
        raise ConfigError("emoreason must be installed as files, not zipped, to read its evaluation tasks", str(res))
    return res


TASKS_DIR = _package_file("tasks")
PUBLISHED_FILE = _package_file("published.yaml")

# Output type -> the aggregate metrics it can report (the YAML ``metrics`` list picks among these; first = primary).
OUTPUT_METRICS: dict[str, tuple[str, ...]] = {
    "caption": ("score", "content_precision", "content_recall", "content_f1", "temporal", "contradictions"),
    "classification": ("war", "uar"),
    "au": ("mean_f1",),
    "compound": ("macro_f1", "accuracy"),
    "open_vocab": ("hit", "precision", "recall", "f1"),
    "explanation": ("rouge_l", "faithfulness"),
}


@dataclass
class Task:
    name: str
    suite: str
    output_type: str
    loader: str
    data_path: str
    prompt: str
    metrics: list[str]
    loader_args: dict[str, Any] = field(default_factory=dict)
    generation: dict[str, Any] = field(default_factory=dict)
    labels: list[str] | None = None
    path: Path | None = None
    hooks: ModuleType | None = None

    @property
    def primary(self) -> str:
        return self.metrics[0]


def load_task(path: str | Path) -> Task:
    """Read and check one task YAML (and its folder's ``utils.py`` hooks, if any)."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError("task file not found", path) from None
    except yaml.YAMLError as e:
        raise ConfigError(f"malformed YAML: {e}", path) from None
    if not isinstance(data, dict):
        raise ConfigError("a task file must be a mapping", path)
    missing = [
        k for k in ("task", "suite", "output_type", "loader", "data_path", "prompt", "metrics") if k not in data
    ]
    if missing:
        raise ConfigError(f"missing keys: {', '.join(missing)}", path)
    unknown = set(data) - {"task", "suite", "output_type", "loader", "loader_args", "data_path", "prompt", "metrics",
                           "generation_kwargs", "labels", "description"}  # fmt: skip
    if unknown:
        raise ConfigError(f"unknown keys: {', '.join(sorted(unknown))}", path)
    otype = data["output_type"]
    if otype not in OUTPUT_METRICS:
        raise ConfigError(f"output_type {otype!r} is not one of {', '.join(OUTPUT_METRICS)}", path)
    bad = [m for m in data["metrics"] if m not in OUTPUT_METRICS[otype]]
    if not data["metrics"] or bad:
        raise ConfigError(f"metrics {bad or '[]'} not available for {otype}: {', '.join(OUTPUT_METRICS[otype])}", path)
    hooks = None
    utils = path.parent / "utils.py"
    if utils.exists():
        spec = importlib.util.spec_from_file_location(f"emoreason_eval_tasks.{data['suite']}.utils", utils)
        assert spec is not None and spec.loader is not None
        hooks = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(hooks)
    return Task(
        name=data["task"], suite=data["suite"], output_type=otype, loader=data["loader"], data_path=data["data_path"],
        prompt=data["prompt"], metrics=list(data["metrics"]), loader_args=data.get("loader_args") or {},
        generation=data.get("generation_kwargs") or {}, labels=data.get("labels"), path=path, hooks=hooks,
    )  # fmt: skip


def find_tasks(tasks_dir: Path = TASKS_DIR) -> dict[str, Path]:
    """Task name -> YAML path for every task under ``tasks_dir``."""
    if not tasks_dir.is_dir():
        raise ConfigError("tasks folder not found", tasks_dir)
    found: dict[str, Path] = {}
    for p in sorted(tasks_dir.glob("*/*.yaml")):
        try:
            name = (yaml.safe_load(p.read_text(encoding="utf-8")) or {}).get("task")
        except yaml.YAMLError as e:
            raise ConfigError(f"malformed YAML: {e}", p) from None
        if name:
            if name in found:
                raise ConfigError(f"task {name!r} defined twice (also in {found[name]})", p)
            found[name] = p
    return found


def resolve_tasks(names: list[str], tasks_dir: Path = TASKS_DIR) -> list[Task]:
    """Tasks by name; a suite name selects every task of that suite."""
    known = find_tasks(tasks_dir)
    tasks = []
    for name in names:
        if name in known:
            tasks.append(load_task(known[name]))
            continue
        suite = [p for p in known.values() if p.parent.name == name]
        if not suite:
            raise ConfigError(f"unknown task {name!r}; known: {', '.join(sorted(known))}")
        tasks.extend(load_task(p) for p in suite)
    return tasks


# ---------------------------------------------------------------------------------------------------------------------
# Prompts


def render_prompt(task: Task, sample: Sample, evidence: str) -> str:
    """The task's prompt (:func:`emoreason.prompts.render_prompt`) with ``{evidence}``, ``{labels}`` and ``{aus}``
    filled in, then the ``doc_to_text`` hook when the task has one.

    The eval prompts end with one newline, as their files did before :mod:`emoreason.prompts` stripped them; it is kept
    so that a versioned prompt renders byte for byte as it always has (a changed prompt is a new file)."""
    text = prompts.render_prompt(
        task.prompt,
        labels=", ".join(task.labels or ()),
        aus=", ".join(task.loader_args.get("aus", ())),
        evidence=evidence,
    )
    text += "\n"
    hook: Callable | None = getattr(task.hooks, "doc_to_text", None)
    return hook(sample, text) if hook else text


# ---------------------------------------------------------------------------------------------------------------------
# Per-sample scoring


def _labels(task: Task) -> list[str]:
    if task.labels:
        return list(task.labels)
    return list(C_EXPR_DB_LABELS if task.output_type == "compound" else BASIC_EMOTIONS)


def _plain_text(text: str) -> str:
    parsed = parse_output(text)
    return parsed.think if parsed.think is not None else text


def score_sample(task: Task, sample: Sample, response: Response | None) -> dict[str, Any]:
    """``{"pred": ..., "scores": {...}}`` for one sample; ``response`` None = the model failed on it."""
    t, ref = task.output_type, sample.reference
    text = response.text if response else ""
    hook = getattr(task.hooks, "extract_prediction", None)
    if t == "caption":
        pred = (hook(sample, response) if hook else response.caption or _plain_text(text)) if response else ""
        return {"pred": pred, "scores": M.caption_scores(pred, ref["caption"])}
    if t == "classification":
        pred = M.emotion_from_output(text) if response else None
        return {"pred": pred, "scores": {"correct": float(pred == ref["label"])}}
    if t == "au":
        # the answer's "aus" list; without an answer object, the AUs named in the reasoning, else in the whole text
        parsed = parse_output(text)
        aus = parsed.aus if parsed.answer is not None else parsed.think_aus if parsed.think else find_aus(text)
        return {"pred": aus, "scores": {}}
    if t == "compound":
        pred = M.compound_from_output(text) if response else None
        return {"pred": pred, "scores": {"correct": float(pred == ref["compound"])}}
    if t == "open_vocab":
        words = M.open_vocab_words(text) if response else []
        s = M.open_vocab_scores(words, ref["words"])
        return {"pred": words, "scores": {k: s[k] for k in ("hit", "precision", "recall", "f1")}}
    if t == "explanation":
        pred = (hook(sample, response) if hook else _plain_text(text)) if response else ""
        scores: dict[str, Any] = {"rouge_l": M.rouge_l(pred, ref["explanation"])}
        if response:
            scores["faithfulness"] = _faithfulness(pred, sample)
        return {"pred": pred, "scores": scores}
    raise ConfigError(f"output_type {t!r} is not one of {', '.join(OUTPUT_METRICS)}")


_FAITHFULNESS_MISSING: list[str] = []


def _faithfulness(text: str, sample: Sample) -> float | None:
    """Faithfulness of an explanation against the sample's evidence; None when no checker or no evidence exists."""
    if _FAITHFULNESS_MISSING or sample.evidence is None:
        return None
    try:
        return M.faithfulness_score(text, load_evidence(sample))
    except ModuleNotFoundError as e:
        _FAITHFULNESS_MISSING.append(str(e))
        log.warning("faithfulness not scored: %s", e)
        return None


# ---------------------------------------------------------------------------------------------------------------------
# Aggregation


def _mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else 0.0


def aggregate(task: Task, rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Task metrics from prediction rows (in sample order)."""
    t = task.output_type
    if t == "classification":
        return M.classification_scores([r["pred"] for r in rows], [r["ref"]["label"] for r in rows], _labels(task))
    if t == "compound":
        return M.macro_f1([r["pred"] for r in rows], [r["ref"]["compound"] for r in rows], _labels(task))
    if t == "au":
        return M.au_f1([r["pred"] for r in rows], [r["ref"]["aus"] for r in rows], task.loader_args["aus"])
    if t == "caption":
        out: dict[str, Any] = {k: _mean([r["scores"][k] for r in rows]) for k in M.CAPTION_KEYS}
        out["refs_without_events"] = sum(r["scores"]["n_ref"] == 0 for r in rows)
        return out
    if t == "open_vocab":
        return {k: _mean([r["scores"][k] for r in rows]) for k in OUTPUT_METRICS[t]}
    if t == "explanation":
        faith = [r["scores"]["faithfulness"] for r in rows if r["scores"].get("faithfulness") is not None]
        return {
            "rouge_l": _mean([r["scores"]["rouge_l"] for r in rows]),
            "faithfulness": _mean(faith) if faith else None,
            "faithfulness_n": len(faith),
        }
    raise ConfigError(f"output_type {t!r} is not one of {', '.join(OUTPUT_METRICS)}")


def disaggregate(task: Task, rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Every reported metric per group value (e.g. gender, age band, head pose) and the best-worst gap per metric."""
    columns = sorted({c for r in rows for c in r.get("groups", {})})
    out: dict[str, Any] = {}
    for col in columns:
        values = sorted({r["groups"][col] for r in rows if col in r.get("groups", {})})
        per_value = {}
        for v in values:
            sub = [r for r in rows if r.get("groups", {}).get(col) == v]
            agg = aggregate(task, sub)
            per_value[v] = {"n": len(sub), **{m: agg.get(m) for m in task.metrics}}
        gaps = {}
        for m in task.metrics:
            nums = [d[m] for d in per_value.values() if isinstance(d[m], (int, float))]
            gaps[m] = max(nums) - min(nums) if nums else None
        out[col] = {"values": per_value, "gap": gaps}
    return out


# ---------------------------------------------------------------------------------------------------------------------
# Running


def _read_rows(path: Path) -> dict[str, dict[str, Any]]:
    """Rows of a predictions file by id (last row wins), after cutting a truncated last line off the file."""
    if not path.exists():
        return {}
    data = path.read_bytes()
    if data and not data.endswith(b"\n"):
        cut = data.rfind(b"\n") + 1
        try:
            json.loads(data[cut:])
        except ValueError:
            log.warning(
                "%s: dropping a truncated last line (%d bytes) left by an interrupted run", path, len(data) - cut
            )
            with open(path, "r+b") as f:
                f.truncate(cut)
        else:  # a complete row that only lacks its newline: keep it
            with open(path, "ab") as f:
                f.write(b"\n")
    rows: dict[str, dict[str, Any]] = {}
    for row in iter_jsonl(path):
        if "id" not in row:
            raise DataError("a prediction row has no id", path)
        rows[str(row["id"])] = row
    return rows


ROW_VERSION = 2  # bump when rows are computed differently: older rows are then recomputed, not reused

_FILE_HASHES: dict[tuple[str, int, int], str] = {}


_WHOLE_FILE_BYTES = 8 << 20  # files up to this size are hashed whole; larger clips by size, head and tail


def _file_hash(path: Path) -> str:
    """sha256 of a file (an evidence file, a clip up to 8 MiB), remembered per (path, size, mtime) for the process.
    A larger clip is hashed by its size and its first and last 4 MiB, so that resuming a run over many long videos does
    not reread them all; any re-encode or replacement changes those."""
    st = path.stat()
    k = (str(path), st.st_size, st.st_mtime_ns)
    if k not in _FILE_HASHES:
        if st.st_size <= _WHOLE_FILE_BYTES:
            _FILE_HASHES[k] = sha256_file(path)
        else:
            h = hashlib.sha256(f"size={st.st_size};".encode())
            half = _WHOLE_FILE_BYTES // 2
            with open(path, "rb") as f:
                h.update(f.read(half))
                f.seek(st.st_size - half)
                h.update(f.read(half))
            _FILE_HASHES[k] = "head-tail:" + h.hexdigest()
    return _FILE_HASHES[k]


def sample_key(task: Task, sample: Sample, model_name: str) -> str:
    """The hash a prediction row is valid for: the sample's content (its evidence and media files' sha256), its
    reference, the model, the prompt as rendered for this sample (prompt version, labels, ``doc_to_text``), the
    generation kwargs, the output type, the task's hooks file and :data:`ROW_VERSION`. Any change gives a new key."""
    hooks = task.path.parent / "utils.py" if task.path is not None else None
    parts = {
        "row_version": ROW_VERSION,
        "task": task.name,
        "output_type": task.output_type,
        "model": model_name,
        "media": {
            kind: _file_hash(f) if f is not None else None
            for kind, f in (("evidence", sample.evidence), ("video", sample.video))
        },  # fmt: skip
        "reference": sample.reference,
        "prompt": render_prompt(task, sample, "\x00EVIDENCE\x00"),
        "generation": task.generation,
        "hooks": _file_hash(hooks) if hooks is not None and hooks.exists() else None,
    }
    blob = json.dumps(parts, sort_keys=True, ensure_ascii=True, default=str)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


def _one_line(e: BaseException) -> str:
    """``Type: message`` on one line (a multi-line message is joined; a very long one is cut at 500 characters)."""
    text = " ".join(f"{type(e).__name__}: {e}".split())
    return text if len(text) <= 500 else text[:497] + "..."


def _row(
    task: Task, sample: Sample, key: str, model_name: str, response: Response | None, error: str | None
) -> dict[str, Any]:
    scored: dict[str, Any] = {"pred": None, "scores": {}}
    if error is None:
        try:
            scored = score_sample(task, sample, response)
        except Exception as e:  # a hook or scorer failing on this one answer: a failed sample, not a dead run
            error = f"scoring failed: {_one_line(e)}"
            log.debug("%s/%s: scoring failed", task.name, sample.id, exc_info=True)
    return {
        "id": sample.id,
        "key": key,
        "model": model_name,
        "output": response.text if response else None,
        "caption": response.caption if response else None,
        "pred": scored["pred"],
        "ref": sample.reference,
        "scores": scored["scores"],
        "groups": sample.groups,
        "failed": error is not None,
        "error": error,
    }


def run_task(
    task: Task,
    model: Model,
    data_root: str | Path,
    out_dir: str | Path,
    *,
    limit: int | None = None,
    concurrency: int = 1,
    progress: bool = True,
) -> dict[str, Any]:
    """Evaluate ``model`` on ``task``; returns (and writes) the metrics. See the module docstring for the files."""
    root = Path(data_root) / task.data_path
    samples = load_samples(task.loader, root, task.loader_args)
    if limit is not None:
        samples = samples[:limit]
    if not samples:
        raise DataError(f"task {task.name!r}: no samples (loader {task.loader}); nothing to evaluate", root)
    task_dir = Path(out_dir) / task.name
    pred_path = task_dir / "predictions.jsonl"
    rows = _read_rows(pred_path)
    others = sorted({str(r.get("model")) for r in rows.values()} - {model.name})
    if others:
        raise ConfigError(f"holds predictions of another model ({', '.join(others)}), not {model.name}; "
                          "use another --out folder or delete this file", pred_path)  # fmt: skip
    keys = {s.id: sample_key(task, s, model.name) for s in samples}
    stale = [s.id for s in samples if s.id in rows and rows[s.id].get("key") != keys[s.id]]
    todo = [s for s in samples if s.id not in rows or rows[s.id].get("error") or rows[s.id].get("key") != keys[s.id]]
    if stale:
        log.warning("%s: %d rows are recomputed: their sample, labels, model, prompt or settings changed (%s)",
                    task.name, len(stale), ", ".join(stale[:10]) + (" ..." if len(stale) > 10 else ""))  # fmt: skip
    log.info(
        "%s: %d samples, %d already done, %d to run", task.name, len(samples), len(samples) - len(todo), len(todo)
    )

    def work(sample: Sample) -> dict[str, Any]:
        request = Request(sample, lambda ev: render_prompt(task, sample, ev), dict(task.generation))
        try:
            response, error = model.generate(request), None
        except Exception as e:  # any failure on one sample (not a Ctrl-C): recorded in its row, the run goes on
            response, error = None, _one_line(e)
            log.warning("%s/%s: %s", task.name, sample.id, error)
            if not isinstance(e, EmoReasonError):
                log.debug("%s/%s: traceback", task.name, sample.id, exc_info=True)
        return _row(task, sample, keys[sample.id], model.name, response, error)

    workers = max(1, min(concurrency, model.max_concurrency))
    bar = tqdm(total=len(todo), desc=task.name, unit="clip", disable=not progress or not todo, dynamic_ncols=True)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        it = iter(todo)
        running: set[Future] = set()
        try:
            while True:
                while len(running) < workers and (s := next(it, None)) is not None:
                    running.add(pool.submit(work, s))
                if not running:
                    break
                finished, running = wait(running, return_when=FIRST_COMPLETED)
                for fut in finished:
                    row = fut.result()
                    append_jsonl(pred_path, row)  # only this thread writes: no interleaved lines
                    rows[row["id"]] = row
                    bar.update(1)
        finally:
            for fut in running:
                fut.cancel()
            bar.close()

    ordered = [rows[s.id] for s in samples]
    scored = [r for r in ordered if not r.get("error")]
    failed = [{"id": r["id"], "error": r["error"]} for r in ordered if r.get("error")]
    result = {
        "task": task.name,
        "suite": task.suite,
        "model": model.name,
        "n": len(ordered),
        "n_scored": len(scored),
        "n_failed": len(failed),
        "n_errors": len(failed),
        "primary": task.primary,
        # failed samples are excluded (never scored as answers); with none left, there is no number to report
        "metrics": aggregate(task, scored) if scored else {m: None for m in task.metrics},
        "groups": disaggregate(task, scored),
        "failed": failed,
        "config": {
            "emoreason": __version__, "task_file": str(task.path) if task.path else None, "loader": task.loader,
            "data_path": task.data_path, "prompt": task.prompt, "generation_kwargs": task.generation,
            "limit": limit, "row_version": ROW_VERSION,
        },
    }  # fmt: skip
    atomic_write_text(task_dir / "metrics.json", _json(result))
    if failed:
        log.warning(
            "%s: %d of %d samples failed and are excluded from the metrics (rerun to retry them): %s", task.name,
            len(failed), len(ordered), "; ".join(f"{f['id']}: {f['error']}" for f in failed[:20])
            + (f"; ... {len(failed) - 20} more in {task_dir / 'metrics.json'}" if len(failed) > 20 else ""),
        )  # fmt: skip
    return result


def _json(obj: Any) -> str:
    return json.dumps(obj, indent=1, ensure_ascii=False, sort_keys=False) + "\n"


# ---------------------------------------------------------------------------------------------------------------------
# Summary tables


def load_published(path: Path = PUBLISHED_FILE) -> list[dict[str, Any]]:
    """Published reference numbers (``published.yaml``, package data): task, metric, value (0-1), method, source."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError("published results file not found", path) from None
    if not isinstance(data, dict) or not isinstance(data.get("results"), list):
        raise ConfigError("expected a mapping with a 'results' list", path)
    return data["results"]


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return "—" if math.isnan(v) else f"{v:.4f}"
    return "—" if v is None else str(v)


def summary_markdown(results: list[dict[str, Any]], tasks: list[Task], published: list[dict[str, Any]]) -> str:
    """A Markdown table of the runs, then a comparison against published numbers for the same task and metric."""
    by_name = {t.name: t for t in tasks}
    lines = ["| task | model | n | errors | metrics |", "|---|---|---|---|---|"]
    for r in results:
        ms = ", ".join(f"{m} {_fmt(r['metrics'].get(m))}" for m in by_name[r["task"]].metrics)
        lines.append(f"| {r['task']} | {r['model']} | {r['n']} | {r['n_errors']} | {ms} |")
    rows = []
    for r in results:
        for p in published:
            if p.get("task") == r["task"] and p.get("metric") in r["metrics"]:
                note = f" ({p['note']})" if p.get("note") else ""
                rows.append(f"| {r['task']} | {p['metric']} | {_fmt(r['metrics'][p['metric']])} | {p['value']:.4f} | "
                            f"{p['method']} | {p['source']}{note} |")  # fmt: skip
    if rows:
        lines += ["", "Published numbers (full test sets; not comparable with fixture or subset runs):", "",
                  "| task | metric | ours | published | method | source |", "|---|---|---|---|---|---|", *rows]  # fmt: skip
    for r in results:
        for col, g in r.get("groups", {}).items():
            m = by_name[r["task"]].primary
            vals = ", ".join(f"{v} {_fmt(d.get(m))} (n={d['n']})" for v, d in g["values"].items())
            lines.append(f"\n{r['task']} by {col}: {m} {vals}; gap {_fmt(g['gap'].get(m))}")
    failed = [(r["task"], f) for r in results for f in r.get("failed", [])]
    if failed:
        lines += ["", f"Failed samples ({len(failed)}), excluded from the metrics above; rerun to retry them:", ""]
        lines += [f"- {task}/{f['id']}: {f['error']}" for task, f in failed]
    return "\n".join(lines) + "\n"
