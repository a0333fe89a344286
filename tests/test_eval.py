"""The evaluation harness end to end on every fixture suite: loaders, adapters, resume, concurrency, bad data."""

from __future__ import annotations

import argparse
import importlib
import json
import re
import shutil
import threading
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from emoreason.errors import BackendError, ConfigError, DataError, ModelError
from emoreason.evaluation import commands
from emoreason.evaluation.harness import (
    TASKS_DIR,
    find_tasks,
    load_task,
    render_prompt,
    resolve_tasks,
    run_task,
    score_sample,
    summary_markdown,
)
from emoreason.evaluation.loaders import load_samples
from emoreason.evaluation.models import OpenAIModel, Request, Response, evidence_text, load_evidence, make_model
from emoreason.evidence import Evidence
from emoreason.io import iter_jsonl
from emoreason.knowledge.facs import AUS
from emoreason.knowledge.taxonomy import compound_for
from emoreason.parsing import format_answer

FIXTURES = Path(__file__).parent / "fixtures"
ALL_TASKS = ["fec_caption", "dfew", "mafw", "ferv39k", "bp4d", "disfa", "c_expr_db", "mer_ov", "emer"]

# AU prototypes the fake reasoner matches against (a stand-in for the knowledge engine in harness tests).
PROTOTYPES = {
    "happiness": {"AU6", "AU12"},
    "sadness": {"AU1", "AU4", "AU15"},
    "surprise": {"AU1", "AU2", "AU5", "AU26"},
    "anger": {"AU4", "AU7", "AU23"},
    "disgust": {"AU9", "AU10"},
    "fear": {"AU1", "AU2", "AU4", "AU5", "AU20"},
}
PHRASES = {"AU1": "the inner brows raise", "AU2": "the brows raise", "AU4": "the brows lower", "AU5": "the eyes widen",
           "AU6": "the cheeks lift", "AU12": "she smiles", "AU26": "the jaw drops", "AU7": "the eyes narrow",
           "AU23": "the lips press together", "AU9": "the nose wrinkles", "AU25": "the lips part"}  # fmt: skip


def fake_analyze(ev: Evidence) -> tuple[str, str]:
    """Answer text and caption from the evidence's AU events, by best prototype overlap (Jaccard)."""
    active = {e.au for e in ev.au_events}
    ranked = sorted(PROTOTYPES, key=lambda k: -len(active & PROTOTYPES[k]) / len(active | PROTOTYPES[k] or {1}))
    emotion = ranked[0] if active else "neutral"
    compound = compound_for(ranked[0], ranked[1]) if len(active) > 4 else None
    think = "Key observations: " + "; ".join(f"{e.au} ({AUS[e.au].name}) at {e.apex:.1f} s" for e in ev.au_events)
    think += f". Overall emotional interpretation: the pattern fits {emotion}. Conclusion: {emotion}."
    events = sorted(ev.au_events, key=lambda e: e.onset)
    caption = ", then ".join(PHRASES.get(e.au, e.au) for e in events) + "."
    return format_answer(think, emotion, compound.label if compound else None, sorted(active)), caption.capitalize()


class FakeEngine:
    """Engine-shaped adapter (the real one wraps ``emoreason.reasoning.engine.analyze``)."""

    name = "fake-engine"
    max_concurrency = 1

    def __init__(self, fail_on: set[str] = frozenset(), interrupt_after: int | None = None):
        self.calls: list[str] = []
        self.fail_on = fail_on
        self.interrupt_after = interrupt_after

    def generate(self, request: Request) -> Response:
        if self.interrupt_after is not None and len(self.calls) >= self.interrupt_after:
            raise KeyboardInterrupt  # what a Ctrl-C / kill mid-run looks like to the harness
        self.calls.append(request.sample.id)
        if request.sample.id in self.fail_on:
            raise ModelError("simulated failure", request.sample.evidence)
        text, caption = fake_analyze(load_evidence(request.sample))
        return Response(text=text, caption=caption)


def read_metrics(out: Path, task: str) -> dict:
    return json.loads((out / task / "metrics.json").read_text())


# --- tasks and loaders ------------------------------------------------------------------------------------------------


def test_every_suite_has_a_task_a_fixture_and_a_data_card():
    tasks = find_tasks()
    assert sorted(tasks) == sorted(ALL_TASKS)
    root = Path(__file__).parents[1]
    for name in ALL_TASKS:
        task = load_task(tasks[name])
        samples = load_samples(task.loader, FIXTURES / task.data_path, task.loader_args)
        assert 2 <= len(samples) <= 4, name
        assert all(s.evidence is not None for s in samples)
        assert (root / "data_cards" / f"{task.suite}.md").exists(), task.suite
        assert (root / "emoreason" / "prompts" / f"{task.prompt}.md").exists(), task.prompt


def test_loader_references_follow_each_format():
    by = {t.name: t for t in resolve_tasks(ALL_TASKS)}

    def refs(name: str) -> dict:
        t = by[name]
        return {s.id: s.reference for s in load_samples(t.loader, FIXTURES / t.data_path, t.loader_args)}

    assert refs("dfew") == {"1": {"label": "happiness"}, "2": {"label": "sadness"}, "3": {"label": "surprise"}}
    assert refs("ferv39k")["Speech/Talk/0003"] == {"label": "neutral"}
    assert refs("mafw")["00023"] == {"label": "sadness"}  # helplessness through the task's label_map
    assert refs("bp4d")["M003_T8"] == {"aus": ["AU4", "AU7", "AU23", "AU24"]}  # the uncoded (9) first frame ignored
    assert refs("disfa")["SN001"] == {"aus": ["AU6", "AU12", "AU25"]}  # AU4 at trace intensity 1 stays out
    assert refs("c_expr_db") == {"101": {"compound": "happily surprised"}, "102": {"compound": "sadly angry"}}
    assert refs("mer_ov")["sample_00000002"] == {"words": ["worried", "nervous"]}


def test_suite_name_selects_its_tasks():
    assert [t.name for t in resolve_tasks(["fec_bench"])] == ["fec_caption"]
    with pytest.raises(ConfigError, match="unknown task 'nope'"):
        resolve_tasks(["nope"])


# --- end to end -------------------------------------------------------------------------------------------------------


def test_all_suites_end_to_end(tmp_path):
    model = FakeEngine()
    results = {t.name: run_task(t, model, FIXTURES, tmp_path, progress=False) for t in resolve_tasks(ALL_TASKS)}
    for name, r in results.items():
        assert r == read_metrics(tmp_path, name)
        rows = list(iter_jsonl(tmp_path / name / "predictions.jsonl"))
        assert len(rows) == r["n"] and r["n_errors"] == 0
    m = {name: r["metrics"] for name, r in results.items()}
    assert (m["dfew"]["war"], m["dfew"]["uar"]) == (1.0, 1.0)
    assert m["ferv39k"]["war"] == 1.0
    assert m["mafw"]["war"] == 1.0
    # the fake names the prototype AUs: BP4D clip 1 misses AU10, clip 2 AU24; DISFA adds AU1/2/5 etc. per clip
    assert 0.5 < m["bp4d"]["mean_f1"] < 1.0 and 0.5 < m["disfa"]["mean_f1"] <= 1.0
    assert 0.0 <= m["c_expr_db"]["macro_f1"] <= 1.0
    assert 0.0 < m["fec_caption"]["score"] <= 1.0 and m["fec_caption"]["contradictions"] >= 0
    assert m["mer_ov"]["hit"] == 1.0  # the fake's one emotion is in every reference group
    assert 0.0 < m["emer"]["rouge_l"] < 1.0
    # disaggregation: MAFW carries a gender group; every reported metric per value plus the gap
    g = results["mafw"]["groups"]["gender"]
    assert g["values"]["female"]["n"] == 2 and g["values"]["male"]["n"] == 1
    assert g["gap"]["war"] == 0.0


def test_per_sample_errors_are_recorded_counted_and_retried(tmp_path):
    (task,) = resolve_tasks(["dfew"])
    r = run_task(task, FakeEngine(fail_on={"2"}), FIXTURES, tmp_path, progress=False)
    # the failure is excluded from the metrics, and said so: counted, listed with its reason
    assert r["n_errors"] == r["n_failed"] == 1 and r["n_scored"] == 2 and r["metrics"]["war"] == 1.0
    assert r["failed"] == [{"id": "2", "error": "ModelError: " + str(FIXTURES / "dfew/Clip/original/00002.evidence.json")
                            + ": simulated failure"}]  # fmt: skip
    rows = list(iter_jsonl(tmp_path / "dfew" / "predictions.jsonl"))
    assert [row["error"] is not None for row in rows] == [False, True, False]
    assert "simulated failure" in rows[1]["error"]
    again = FakeEngine()
    r2 = run_task(task, again, FIXTURES, tmp_path, progress=False)
    assert again.calls == ["2"] and r2["n_errors"] == 0 and r2["metrics"]["war"] == 1.0


def test_any_per_sample_exception_is_recorded_and_the_run_goes_on(tmp_path):
    """A NaN duration (refused by the Evidence schema with a DataError) and a plain IndexError from the model on another
    sample: both samples fail, the other is scored and metrics.json is written, stating how many failed and were
    excluded."""
    shutil.copytree(FIXTURES / "dfew", tmp_path / "dfew")
    bad = tmp_path / "dfew/Clip/original/00002.evidence.json"
    bad.write_text(bad.read_text().replace('"duration_s": 3.0', '"duration_s": NaN'))
    assert "NaN" in bad.read_text()
    (task,) = resolve_tasks(["dfew"])
    model = make_model("engine")
    real_generate = model.generate

    def generate(request):
        if "00003" in str(request):
            raise IndexError("list index out of range")
        return real_generate(request)

    model.generate = generate
    r = run_task(task, model, tmp_path, tmp_path / "out", progress=False)
    assert r == read_metrics(tmp_path / "out", "dfew")
    rows = {row["id"]: row for row in iter_jsonl(tmp_path / "out/dfew/predictions.jsonl")}
    assert sorted(rows) == ["1", "2", "3"]
    assert rows["2"]["failed"] and rows["2"]["error"].startswith("DataError: ") and "\n" not in rows["2"]["error"]
    assert str(bad) in rows["2"]["error"] and "finite" in rows["2"]["error"]
    assert rows["3"]["failed"] and rows["3"]["error"] == "IndexError: list index out of range"
    assert not rows["1"]["failed"]
    assert r["n"] == 3 and r["n_failed"] == 2 and r["n_scored"] == 1
    assert [f["id"] for f in r["failed"]] == ["2", "3"] and r["failed"][0]["error"] == rows["2"]["error"]
    assert r["metrics"]["war"] == rows["1"]["scores"]["correct"]
    summary = summary_markdown([r], [task], [])
    assert "excluded" in summary and "dfew/2: DataError" in summary and "dfew/3: IndexError" in summary


def test_changed_labels_or_evidence_are_rescored_on_resume(dfew_copy):
    (task,) = resolve_tasks(["dfew"])
    out = dfew_copy / "out"
    assert run_task(task, FakeEngine(), dfew_copy, out, progress=False)["metrics"]["war"] == 1.0
    csv = dfew_csv(dfew_copy)
    csv.write_text(csv.read_text().replace("3,5", "3,1"))  # clip 3 (surprise) relabelled happiness
    model = FakeEngine()
    r = run_task(task, model, dfew_copy, out, progress=False)
    assert model.calls == ["3"] and r["metrics"]["war"] == pytest.approx(2 / 3)
    ev = dfew_copy / "dfew/Clip/original/00001.evidence.json"
    ev.write_text(ev.read_text().replace('"AU12"', '"AU9"').replace('"AU6"', '"AU10"'))  # now disgust: new evidence
    model = FakeEngine()
    r = run_task(task, model, dfew_copy, out, progress=False)
    assert model.calls == ["1"] and r["metrics"]["war"] == pytest.approx(1 / 3)
    changed = dict(task.generation, max_new_tokens=7)  # another generation setting: every row is redone
    model = FakeEngine()
    run_task(replace(task, generation=changed), model, dfew_copy, out, progress=False)
    assert model.calls == ["1", "2", "3"]


def test_resume_after_interruption_gives_identical_numbers(tmp_path):
    (task,) = resolve_tasks(["mafw"])
    full = run_task(task, FakeEngine(), FIXTURES, tmp_path / "full", progress=False)

    out = tmp_path / "resumed"
    with pytest.raises(KeyboardInterrupt):
        run_task(task, FakeEngine(interrupt_after=2), FIXTURES, out, progress=False)
    pred = out / "mafw" / "predictions.jsonl"
    assert len(list(iter_jsonl(pred))) == 2 and not (out / "mafw" / "metrics.json").exists()
    # a crash in the middle of writing the second row: its line is cut short
    data = pred.read_bytes()
    pred.write_bytes(data[: len(data) - 25])

    model = FakeEngine()
    resumed = run_task(task, model, FIXTURES, out, progress=False)
    assert model.calls == ["00022", "00023"]  # the first row survived; the truncated one is redone
    ids = [row["id"] for row in iter_jsonl(pred)]
    assert sorted(ids) == ["00021", "00022", "00023"]  # no duplicate, no loss
    assert resumed["metrics"] == full["metrics"] and resumed["groups"] == full["groups"]

    rerun = FakeEngine()
    assert run_task(task, rerun, FIXTURES, out, progress=False)["metrics"] == full["metrics"]
    assert rerun.calls == []
    # a complete last row that only lost its newline is kept, not redone
    pred.write_bytes(pred.read_bytes().rstrip(b"\n"))
    rerun = FakeEngine()
    assert run_task(task, rerun, FIXTURES, out, progress=False)["metrics"] == full["metrics"]
    assert rerun.calls == [] and len(list(iter_jsonl(pred))) == 3


def test_rows_of_another_model_are_refused(tmp_path):
    (task,) = resolve_tasks(["dfew"])
    run_task(task, FakeEngine(), FIXTURES, tmp_path, progress=False)
    other = FakeEngine()
    other.name = "another-model"
    with pytest.raises(ConfigError, match="holds predictions of another model \\(fake-engine\\)"):
        run_task(task, other, FIXTURES, tmp_path, progress=False)


def test_predictions_read_from_each_output_form():
    (au_task,) = resolve_tasks(["bp4d"])
    (cls_task,) = resolve_tasks(["dfew"])
    sample = load_samples(au_task.loader, FIXTURES / "bp4d", au_task.loader_args)[0]
    answer = format_answer("AU6 and AU12 rise; AU4 is absent.", "happiness", None, ["AU6", "AU12", "AU10"])
    assert score_sample(au_task, sample, Response(answer))["pred"] == ["AU6", "AU12", "AU10"]
    assert score_sample(au_task, sample, Response("<think>AU6, AU12.</think><answer>happy</answer>"))["pred"] == [
        "AU6",
        "AU12",
    ]
    assert score_sample(au_task, sample, Response("I see AU12 and AU25."))["pred"] == ["AU12", "AU25"]
    assert score_sample(au_task, sample, None)["pred"] == []
    dfew_sample = load_samples(cls_task.loader, FIXTURES / "dfew", cls_task.loader_args)[0]
    assert score_sample(cls_task, dfew_sample, Response("She is clearly delighted."))["pred"] == "happiness"
    assert score_sample(cls_task, dfew_sample, None) == {"pred": None, "scores": {"correct": 0.0}}


def test_limit(tmp_path):
    (task,) = resolve_tasks(["ferv39k"])
    assert run_task(task, FakeEngine(), FIXTURES, tmp_path, limit=2, progress=False)["n"] == 2


# --- bad data ---------------------------------------------------------------------------------------------------------


@pytest.fixture
def dfew_copy(tmp_path) -> Path:
    shutil.copytree(FIXTURES / "dfew", tmp_path / "dfew")
    return tmp_path


def dfew_csv(root: Path) -> Path:
    return root / "dfew/EmoLabel_DataSplit/test(single-labeled)/set_1.csv"


def test_bad_rows_name_file_and_line(dfew_copy):
    (task,) = resolve_tasks(["dfew"])
    csv = dfew_csv(dfew_copy)
    csv.write_text("video_name,label\n1,1\n2,9\n")
    with pytest.raises(DataError, match=r"line 3: label '9' is not a class index 1-7") as e:
        run_task(task, FakeEngine(), dfew_copy, dfew_copy / "out", progress=False)
    assert str(csv) in str(e.value)
    csv.write_text("video_name,label\n1,1,extra\n")
    with pytest.raises(DataError, match="line 2: expected 2 columns"):
        run_task(task, FakeEngine(), dfew_copy, dfew_copy / "out", progress=False)
    csv.write_text("video_name,label\n1,1\n7,2\n")
    with pytest.raises(DataError, match="sample '7' has no media file"):
        run_task(task, FakeEngine(), dfew_copy, dfew_copy / "out", progress=False)
    csv.write_text("video_name,label\n1,1\n1,2\n")
    with pytest.raises(DataError, match="duplicate sample id '1'"):
        run_task(task, FakeEngine(), dfew_copy, dfew_copy / "out", progress=False)
    with pytest.raises(DataError, match="dataset folder not found"):
        run_task(task, FakeEngine(), dfew_copy / "nowhere", dfew_copy / "out", progress=False)


@pytest.mark.parametrize("value", ["0", "-1", "8", "1.5", "two", ""])
def test_out_of_range_or_non_integer_label_indices_are_refused(dfew_copy, value):
    """DFEW labels are 1-7: 0 must not wrap around to the last class (fear), nor -1 to disgust."""
    (task,) = resolve_tasks(["dfew"])
    csv = dfew_csv(dfew_copy)
    csv.write_text(f"video_name,label\n1,1\n2,{value}\n")
    with pytest.raises(DataError, match=r"line 3: label .* is not a class index 1-7") as e:
        run_task(task, FakeEngine(), dfew_copy, dfew_copy / "out", progress=False)
    assert str(csv) in str(e.value)


def test_a_dataset_without_samples_is_an_error(dfew_copy):
    (task,) = resolve_tasks(["dfew"])
    dfew_csv(dfew_copy).write_text("video_name,label\n")
    with pytest.raises(DataError, match=r"task 'dfew': no samples") as e:
        run_task(task, FakeEngine(), dfew_copy, dfew_copy / "out", progress=False)
    assert str(dfew_copy / "dfew") in str(e.value) and "\n" not in str(e.value)
    assert not (dfew_copy / "out" / "dfew" / "metrics.json").exists()


def test_unknown_label_names_file_and_line(tmp_path):
    shutil.copytree(FIXTURES / "mafw", tmp_path / "mafw")
    split = tmp_path / "mafw/Train & Test Set/single/no_caption/set_1/test.txt"
    split.write_text("00021 anger\n00022 bewildered_x\n")
    (task,) = resolve_tasks(["mafw"])
    with pytest.raises(DataError, match=r"test.txt: line 2: unknown emotion label 'bewildered_x'"):
        run_task(task, FakeEngine(), tmp_path, tmp_path / "out", progress=False)


def test_malformed_evidence_is_a_per_sample_error(dfew_copy):
    (dfew_copy / "dfew/Clip/original/00002.evidence.json").write_text('{"media": {"path": 3')
    (task,) = resolve_tasks(["dfew"])
    r = run_task(task, FakeEngine(), dfew_copy, dfew_copy / "out", progress=False)
    assert r["n_errors"] == 1
    row = [x for x in iter_jsonl(dfew_copy / "out/dfew/predictions.jsonl") if x["id"] == "2"][0]
    assert "DataError" in row["error"] and "00002.evidence.json" in row["error"] and "malformed JSON" in row["error"]


def test_bad_task_files(tmp_path):
    good = (TASKS_DIR / "dfew" / "dfew.yaml").read_text()
    bad = tmp_path / "t.yaml"
    bad.write_text(good.replace("metrics: [war, uar]", "metrics: [war, bleu]"))
    with pytest.raises(ConfigError, match=r"\['bleu'\] not available for classification"):
        load_task(bad)
    bad.write_text(good.replace("output_type: classification", "output_type: vibes"))
    with pytest.raises(ConfigError, match="output_type 'vibes'"):
        load_task(bad)
    bad.write_text("task: [unclosed")
    with pytest.raises(ConfigError, match="malformed YAML"):
        load_task(bad)
    with pytest.raises(ConfigError, match="unknown model 'gpt'"):
        make_model("gpt")


# --- OpenAI-compatible endpoint ---------------------------------------------------------------------------------------


class FakeChatServer:
    """A tiny OpenAI-compatible chat server on 127.0.0.1 answering from the AU events in the prompt."""

    def __init__(self, overlap: int = 0, fail_words: tuple[str, ...] = ()):
        """``overlap``: hold each request until that many are in flight at once (at most 5 s), so a test of
        concurrency does not depend on timing."""
        self.lock = threading.Lock()
        self.overlapped = threading.Event()
        self.in_flight = 0
        self.max_in_flight = 0
        self.requests: list[dict] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep test output quiet
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with outer.lock:
                    outer.in_flight += 1
                    outer.max_in_flight = max(outer.max_in_flight, outer.in_flight)
                    outer.requests.append({"path": self.path, **body})
                    if outer.in_flight >= overlap:
                        outer.overlapped.set()
                outer.overlapped.wait(timeout=5.0)
                prompt = body["messages"][-1]["content"]
                if isinstance(prompt, list):  # content parts: read the text ones
                    prompt = " ".join(p.get("text", "") for p in prompt)
                with outer.lock:
                    outer.in_flight -= 1
                if any(re.search(rf"\b{w}\b", prompt) for w in fail_words):
                    self.send_response(400)
                    self.end_headers()
                    self.wfile.write(b'{"error": "bad request"}')
                    return
                emotion = next((e for e, aus in (("happiness", "AU12"), ("surprise", "AU26"), ("sadness", "AU15"),
                                                 ("anger", "AU23"), ("disgust", "AU9")) if re.search(rf"\b{aus}\b", prompt)),
                               "neutral")  # fmt: skip
                answer = format_answer("Key observations: from the evidence.", emotion)
                reply = {"id": "x", "object": "chat.completion", "model": body["model"],
                         "choices": [{"index": 0, "message": {"role": "assistant", "content": answer},
                                      "finish_reason": "stop"}]}  # fmt: skip
                data = json.dumps(reply).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()


def test_openai_endpoint_with_bounded_concurrency(tmp_path):
    (task,) = resolve_tasks(["ferv39k"])
    with FakeChatServer(overlap=2) as server:
        model = make_model(f"openai:{server.url}", endpoint_model="tiny")
        r = run_task(task, model, FIXTURES, tmp_path, concurrency=2, progress=False)
    assert r["model"] == f"openai:{server.url}#tiny"
    assert len(server.requests) == 3 and server.max_in_flight == 2  # overlapped, and never more than the bound
    req = server.requests[0]
    assert req["path"] == "/v1/chat/completions" and req["model"] == "tiny" and req["max_tokens"] == 512
    prompts = [r["messages"][0]["content"] for r in server.requests]
    assert sum(bool(re.search(r"\bAU20\b", p)) for p in prompts) == 1  # the fear clip's evidence is in its prompt
    assert "anger, disgust, fear, happiness, neutral, sadness, surprise" in req["messages"][0]["content"]
    assert r["metrics"]["war"] == pytest.approx(2 / 3)  # the fake server says "neutral" for the fear clip


def test_openai_endpoint_errors(tmp_path):
    (task,) = resolve_tasks(["dfew"])
    with FakeChatServer(fail_words=("AU15",)) as server:
        r = run_task(task, make_model(f"openai:{server.url}"), FIXTURES, tmp_path, concurrency=3, progress=False)
    assert r["n_errors"] == 1
    bad = [row for row in iter_jsonl(tmp_path / "dfew/predictions.jsonl") if row["error"]]
    assert bad[0]["id"] == "2" and "HTTP 400" in bad[0]["error"]
    dead = OpenAIModel("http://127.0.0.1:9/v1", retries=0)  # nothing listens on the discard port
    sample = load_samples(task.loader, FIXTURES / "dfew", task.loader_args)[0]
    with pytest.raises(BackendError, match="endpoint failed after 1 tries"):
        dead.generate(Request(sample, lambda ev: "hi"))


def test_eval_command_against_local_endpoint(tmp_path, capsys):
    parser = argparse.ArgumentParser()
    commands.add_parser(parser.add_subparsers())
    with FakeChatServer() as server:
        argv = ["eval", "--tasks", "dfew,c_expr_db", "--model", f"openai:{server.url}", "--data-root", str(FIXTURES),
                "-o", str(tmp_path), "--concurrency", "2"]  # fmt: skip
        args = parser.parse_args(argv)
        args.quiet = True
        assert args.func(args) == 0
    out = capsys.readouterr().out
    assert "| dfew | openai:" in out and "war 1.0000" in out
    assert (
        "| dfew | war | 1.0000 | 0.6583 | R1-Omni | Zhao et al. 2025" in out
    )  # the comparison with published numbers
    assert (tmp_path / "summary.md").read_text() == out
    assert [r["task"] for r in json.loads((tmp_path / "summary.json").read_text())] == ["dfew", "c_expr_db"]
    assert read_metrics(tmp_path, "c_expr_db")["metrics"]["invalid"] == 2  # no compound in the fake's answers


def test_emoreason_eval_through_the_cli(tmp_path, capsys):
    from emoreason.cli import main

    with FakeChatServer() as server:
        argv = ["-q", "eval", "--tasks", "mer_openvocab", "--model", f"openai:{server.url}", "--data-root",
                str(FIXTURES), "-o", str(tmp_path)]  # fmt: skip
        assert main(argv) == 0
    assert "| mer_ov | openai:" in capsys.readouterr().out
    assert main(["eval", "--tasks", "dfew", "--model", "gpt", "--data-root", str(FIXTURES)]) == 2
    assert capsys.readouterr().err.strip() == (
        "emoreason: error: unknown --model 'gpt'; use engine, transformers:PATH, openai:URL or vllm:PATH"
    )


def test_eval_command_fails_when_samples_fail(tmp_path, capsys):
    parser = argparse.ArgumentParser()
    commands.add_parser(parser.add_subparsers())
    with FakeChatServer(fail_words=("AU15",)) as server:
        args = parser.parse_args(["eval", "--tasks", "dfew", "--model", f"openai:{server.url}", "--data-root",
                                  str(FIXTURES), "-o", str(tmp_path)])  # fmt: skip
        args.quiet = True
        assert args.func(args) == 1
    assert "samples failed (dfew: 1)" in capsys.readouterr().err


def test_evidence_text_names_aus_and_times():
    ev = Evidence.load(FIXTURES / "dfew/Clip/original/00001.evidence.json")
    text = evidence_text(ev)
    assert "AU12 (lip corner puller) 0.2-2.8 s, apex 1.0 s, peak 3.6" in text


def test_video_sample_goes_through_perception(tmp_path, astronaut_clip):
    """A sample with a clip and no precomputed evidence is perceived on the fly (the smiling astronaut)."""
    shutil.copytree(FIXTURES / "dfew", tmp_path / "dfew")
    (tmp_path / "dfew/Clip/original/00001.evidence.json").unlink()
    shutil.copy(astronaut_clip, tmp_path / "dfew/Clip/original/00001.mp4")
    (task,) = resolve_tasks(["dfew"])
    sample = load_samples(task.loader, tmp_path / "dfew", task.loader_args)[0]
    assert sample.evidence is None and sample.video is not None
    with FakeChatServer() as server:
        r = run_task(task, make_model(f"openai:{server.url}"), tmp_path, tmp_path / "out", limit=1, progress=False)
    assert r["n_errors"] == 0
    assert re.search(r"\bAU12\b", server.requests[0]["messages"][0]["content"])  # perception found the smile
    assert r["metrics"]["war"] == 1.0


def test_send_video_attaches_the_clip(tmp_path, astronaut_clip):
    shutil.copytree(FIXTURES / "dfew", tmp_path / "dfew")
    shutil.copy(astronaut_clip, tmp_path / "dfew/Clip/original/00001.mp4")
    (task,) = resolve_tasks(["dfew"])
    with FakeChatServer() as server:
        model = make_model(f"openai:{server.url}", send_video=True)
        run_task(task, model, tmp_path, tmp_path / "out", progress=False)
    contents = [r["messages"][0]["content"] for r in server.requests]
    (parts,) = [c for c in contents if isinstance(c, list)]  # sample 1 has a clip: sent as a video part
    text_part, video_part = parts
    assert "The clip is attached" in text_part["text"] and "{evidence}" not in text_part["text"]
    assert video_part["video_url"]["url"].startswith("data:video/mp4;base64,AAAA")
    texts = [c for c in contents if isinstance(c, str)]  # samples with evidence only still go as text
    assert len(texts) == 2 and any(re.search(r"\bAU15\b", t) for t in texts)
    with FakeChatServer() as server:
        run_task(task, make_model(f"openai:{server.url}", clip_only=True), tmp_path, tmp_path / "out2", limit=1,
                 progress=False)  # fmt: skip
    assert [p["type"] for p in server.requests[0]["messages"][0]["content"]] == ["video_url"]  # the clip alone


# --- the real engine and perception, once they exist ------------------------------------------------------------------


def test_engine_adapter_end_to_end(tmp_path):
    from emoreason.cli import main

    argv = ["-q", "eval", "--tasks", ",".join(ALL_TASKS), "--model", "engine", "--data-root", str(FIXTURES)]
    assert main([*argv, "-o", str(tmp_path / "full")]) == 0
    full = json.loads((tmp_path / "full" / "summary.json").read_text())
    assert [r["task"] for r in full] == ALL_TASKS and all(r["n_errors"] == 0 for r in full)
    by_task = {r["task"]: r for r in full}
    assert by_task["emer"]["metrics"]["faithfulness_n"] == 2  # the reasoning module's checker ran on both
    happy = next(iter_jsonl(tmp_path / "full" / "dfew" / "predictions.jsonl"))
    assert happy["id"] == "1" and happy["pred"] == "happiness" and happy["caption"]

    # interrupted: every task's predictions cut in the middle of their last row, then the same command again
    resumed = tmp_path / "resumed"
    shutil.copytree(tmp_path / "full", resumed)
    for task in ALL_TASKS:
        (resumed / task / "metrics.json").unlink()
        pred = resumed / task / "predictions.jsonl"
        data = pred.read_bytes()
        pred.write_bytes(data[: len(data) - 40])
    assert main([*argv, "-o", str(resumed)]) == 0
    again = json.loads((resumed / "summary.json").read_text())
    assert [(r["task"], r["metrics"], r["groups"]) for r in again] == [
        (r["task"], r["metrics"], r["groups"]) for r in full
    ]
    for task in ALL_TASKS:
        ids = [row["id"] for row in iter_jsonl(resumed / task / "predictions.jsonl")]
        assert len(ids) == len(set(ids)) == by_task[task]["n"]


def test_engine_on_a_real_clip(tmp_path, astronaut_clip):
    shutil.copytree(FIXTURES / "dfew", tmp_path / "dfew")
    (tmp_path / "dfew/Clip/original/00001.evidence.json").unlink()
    shutil.copy(astronaut_clip, tmp_path / "dfew/Clip/original/00001.mp4")
    (task,) = resolve_tasks(["dfew"])
    r = run_task(task, make_model("engine"), tmp_path, tmp_path / "out", limit=1, progress=False)
    assert r["n_errors"] == 0
    row = next(iter_jsonl(tmp_path / "out/dfew/predictions.jsonl"))
    assert row["pred"] == "happiness"  # the smiling astronaut


@pytest.mark.parametrize("name", ALL_TASKS)
def test_rendered_prompts_are_pinned(name):
    """Each task's prompt as a model receives it (evidence stubbed); a changed prompt needs a new versioned file."""
    (task,) = resolve_tasks([name])
    sample = load_samples(task.loader, FIXTURES / task.data_path, task.loader_args)[0]
    assert render_prompt(task, sample, "<EVIDENCE>") == (FIXTURES / "eval_prompts" / f"{name}.txt").read_text()


def test_doctests():
    import doctest

    from emoreason.evaluation import models

    result = doctest.testmod(models)
    assert result.attempted > 0 and result.failed == 0


def test_against_the_project_server(tmp_path, astronaut_clip, two_faces_clip):
    """`emoreason serve` on a real local socket, clips sent alone (its full analysis), two requests at a time."""
    server_mod = importlib.import_module("emoreason.serving.server")
    import uvicorn

    from emoreason.serving.settings import Settings

    shutil.copytree(FIXTURES / "dfew", tmp_path / "dfew")
    for sid, clip in (("00001", astronaut_clip), ("00002", two_faces_clip)):
        (tmp_path / f"dfew/Clip/original/{sid}.evidence.json").unlink()
        shutil.copy(clip, tmp_path / f"dfew/Clip/original/{sid}.mp4")
    app = server_mod.create_app(Settings(asr=False, max_concurrency=2))
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        for _ in range(200):
            if server.started:
                break
            threading.Event().wait(0.05)
        port = server.servers[0].sockets[0].getsockname()[1]
        model = make_model(f"openai:http://127.0.0.1:{port}/v1", clip_only=True)
        (task,) = resolve_tasks(["dfew"])
        r = run_task(task, model, tmp_path, tmp_path / "out", limit=2, concurrency=2, progress=False)
    finally:
        server.should_exit = True
        thread.join(timeout=10)
    assert r["n_errors"] == 0
    rows = {row["id"]: row for row in iter_jsonl(tmp_path / "out/dfew/predictions.jsonl")}
    assert rows["1"]["output"].startswith("<think>") and rows["1"]["pred"] == "happiness"  # the smiling astronaut
    assert r["metrics"]["war"] == pytest.approx(0.5)  # clip 2 is the astronaut too, labelled sad in the fixture


def test_checkpoint_adapter(tmp_path):
    """A tiny random chat checkpoint end to end (its output is noise: only the plumbing is checked)."""
    from tests.fixtures.train.tiny_model import default_corpus, make_tiny_model

    ckpt = make_tiny_model(tmp_path / "ckpt", default_corpus())
    (task,) = resolve_tasks(["dfew"])
    task.generation["max_new_tokens"] = 8
    r = run_task(task, make_model(f"checkpoint:{ckpt}"), FIXTURES, tmp_path / "out", limit=1, progress=False)
    assert r["n_errors"] == 0 and r["model"] == f"checkpoint:{ckpt}"
    row = next(iter_jsonl(tmp_path / "out/dfew/predictions.jsonl"))
    # the row holds the model's own reply, verbatim: eight tokens of a random model are not in the answer format (the
    # engine once wrapped any reply in <think>/<answer> tags, which hid format failures from the format rate)
    from emoreason.parsing import parse_output

    assert isinstance(row["output"], str) and not parse_output(row["output"]).format_ok
    # an EmoReason checkpoint: the clip goes through its encoders, the task's max_new_tokens still applies
    from emoreason.models.emoreason.testing import tiny_model_dir

    mm = tiny_model_dir(tmp_path / "mm", text_config={"max_position_embeddings": 4096})
    model = make_model(f"checkpoint:{mm}")
    r = run_task(task, model, FIXTURES, tmp_path / "out-mm", limit=1, progress=False)
    assert r["n_errors"] == 0 and model._engine.clip is not None and model._engine.max_new_tokens == 8
    with pytest.raises(ModelError, match="checkpoint not found"):
        make_model(f"checkpoint:{tmp_path / 'missing'}")
    with pytest.raises(ModelError, match="no config.json"):
        make_model(f"checkpoint:{tmp_path}")
