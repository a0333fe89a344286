"""A wheel install finds its own files: prompts, eval tasks (YAML + ``utils.py`` hooks), published numbers, assets.

The wheel is built from ``pyproject.toml``, ``README.md`` and ``emoreason/`` only and installed into a fresh venv whose
other packages come from this environment through a ``.pth`` listing its site-packages folders: a plain path line, so
this environment's own ``.pth`` files (the editable finder of ``emoreason``) are never run and cannot shadow the wheel.
The CLI then runs from a temporary folder, away from the checkout.
"""

from __future__ import annotations

import json
import os
import shutil
import site
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from emoreason.errors import ConfigError
from emoreason.evaluation.harness import find_tasks
from emoreason.prompts import load_prompt, prompt_names

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = Path(__file__).resolve().parent / "fixtures"
ANSWER = "The smile reaches the eyes (AU6 with AU12 at 1.20 s)."


@pytest.fixture(scope="module")
def wheel_env(tmp_path_factory) -> Path:
    """A venv with the freshly built wheel installed; returns its folder."""
    tmp = tmp_path_factory.mktemp("wheel")
    src = tmp / "src"
    src.mkdir()
    shutil.copy2(ROOT / "pyproject.toml", src)
    shutil.copy2(ROOT / "README.md", src)
    shutil.copytree(ROOT / "emoreason", src / "emoreason", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    dist = tmp / "dist"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(dist),
                    str(src)], check=True, cwd=tmp)  # fmt: skip
    (wheel,) = dist.glob("emoreason-*.whl")

    venv = tmp / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    py = venv / "bin" / "python"
    purelib = Path(subprocess.check_output([py, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                                           text=True).strip())  # fmt: skip
    base = [p for p in site.getsitepackages() if Path(p).is_dir()]
    (purelib / "_base_env.pth").write_text("".join(f"{p}\n" for p in base))
    subprocess.run([sys.executable, "-m", "pip", "--python", str(py), "install", "-q", "--no-deps", "--no-index",
                    str(wheel)], check=True, cwd=tmp)  # fmt: skip
    return venv


def run_in(venv: Path, cwd: Path, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    r = subprocess.run(list(args), cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert r.returncode == 0, f"{args} failed ({r.returncode}):\n{r.stdout}\n{r.stderr}"
    return r


@pytest.fixture
def chat_endpoint() -> Iterator[tuple[str, list[dict]]]:
    """A minimal OpenAI-compatible ``/v1/chat/completions`` that records each request and gives one fixed answer."""
    seen: list[dict] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 (http.server's name)
            seen.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            body = json.dumps({"choices": [{"message": {"role": "assistant", "content": ANSWER}}]}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v1", seen
    finally:
        server.shutdown()
        server.server_close()


def test_a_missing_tasks_folder_is_an_error_not_no_tasks(tmp_path):
    with pytest.raises(ConfigError, match="tasks folder not found"):
        find_tasks(tmp_path / "nope")


def test_the_wheel_is_imported_not_the_checkout(wheel_env, tmp_path):
    r = run_in(wheel_env, tmp_path, "python", "-c", "import emoreason; print(emoreason.__file__)")
    installed = Path(r.stdout.strip())
    assert wheel_env in installed.parents, installed
    assert ROOT not in installed.parents, installed


def test_the_wheel_ships_every_prompt_task_and_published_number(wheel_env, tmp_path):
    code = ("import json; from emoreason.prompts import prompt_names; "
            "from emoreason.evaluation.harness import find_tasks, load_published; "
            "print(json.dumps([prompt_names(), sorted(find_tasks()), len(load_published())]))")  # fmt: skip
    names, tasks, n_published = json.loads(run_in(wheel_env, tmp_path, "python", "-c", code).stdout)
    assert names == prompt_names()
    assert tasks == sorted(find_tasks())
    assert n_published > 0


def test_cli_report_eval_and_ask_from_a_wheel(wheel_env, tmp_path, astronaut_clip, chat_endpoint):
    r = run_in(wheel_env, tmp_path, "emoreason", "report", str(astronaut_clip), "-o", "astronaut.json", "--no-asr")
    report = json.loads((tmp_path / "astronaut.json").read_text())
    assert report["evidence"]["face_found"], r.stdout

    # every suite: the YAML tasks, their utils.py hooks (emer, fec_bench) and the published-numbers comparison
    suites = ",".join(sorted({p.parent.name for p in find_tasks().values()}))
    # no output flag: the default results folder, under the working directory
    run_in(
        wheel_env, tmp_path, "emoreason", "eval", "--tasks", suites, "--model", "engine", "--data-root", str(FIXTURES)
    )
    summary = json.loads((tmp_path / "results" / "summary.json").read_text())
    assert sorted(row["task"] for row in summary) == sorted(find_tasks())
    assert "R1-Omni" in (tmp_path / "results" / "summary.md").read_text()

    url, seen = chat_endpoint
    question = "Is the smile genuine?"
    r = run_in(wheel_env, tmp_path, "emoreason", "ask", str(astronaut_clip), question, "--model", f"openai:{url}",
               "--no-asr")  # fmt: skip
    assert ANSWER in r.stdout
    (request,) = seen
    system, user = request["messages"]
    assert system["content"].startswith(load_prompt("ask_system_v1").split("\n", 1)[0])
    assert user["content"] == load_prompt("ask_user_v1").format(question=question)
