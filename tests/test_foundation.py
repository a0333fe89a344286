"""The foundation's promises: the README's commands, CI running them, the error hierarchy, JSON I/O."""

from __future__ import annotations

import doctest
import json
import os
import re
from pathlib import Path

import pytest

import emoreason.knowledge.taxonomy
import emoreason.parsing
from emoreason.errors import DataError, EmoReasonError, MediaError
from emoreason.io import append_jsonl, atomic_write_text, iter_jsonl, read_json

ROOT = Path(__file__).resolve().parents[1]


def _block(name: str) -> str:
    text = (ROOT / "README.md").read_text()
    m = re.search(rf"<!-- {name} -->\s*```bash\n(.*?)\n```\s*<!-- /{name} -->", text, re.DOTALL)
    assert m, f"README.md has no {name} block"
    return m.group(1).strip()


def test_readme_has_two_single_line_commands():
    main, test = _block("main-command"), _block("test-command")
    assert "\n" not in main and "\n" not in test
    assert "emoreason report" in main
    assert "pytest" in test


def test_ci_runs_the_readme_test_command():
    ci = (ROOT / ".ci" / "run").read_text()
    assert "test-command" in ci and 'eval "$cmd"' in ci


def test_error_names_file():
    e = MediaError("no video stream", "clip.mp4")
    assert str(e) == "clip.mp4: no video stream"
    assert isinstance(e, EmoReasonError)


def test_read_json_malformed(tmp_path):
    p = tmp_path / "bad.json"
    p.write_text('{"a": 1,,}')
    with pytest.raises(DataError, match=r"bad.json: malformed JSON at line 1"):
        read_json(p)


def test_jsonl_append_and_truncated_tail(tmp_path):
    p = tmp_path / "rows.jsonl"
    append_jsonl(p, {"id": 1})
    append_jsonl(p, {"id": 2})
    with open(p, "a") as f:
        f.write('{"id": 3')  # a crash mid-write
    assert [r["id"] for r in iter_jsonl(p, skip_truncated_tail=True)] == [1, 2]
    with pytest.raises(DataError, match="line 3"):
        list(iter_jsonl(p))


def test_atomic_write_replaces_whole(tmp_path):
    p = tmp_path / "out.json"
    atomic_write_text(p, json.dumps({"v": 1}))
    atomic_write_text(p, json.dumps({"v": 2}))
    assert read_json(p) == {"v": 2}
    assert [x.name for x in tmp_path.iterdir()] == ["out.json"]
    mask = os.umask(0)
    os.umask(mask)
    assert p.stat().st_mode & 0o777 == 0o666 & ~mask  # like a file open() creates, not mkstemp's 0600


@pytest.mark.parametrize("module", [emoreason.parsing, emoreason.knowledge.taxonomy])
def test_doctests(module):
    result = doctest.testmod(module)
    assert result.attempted > 0 and result.failed == 0


def test_tree_is_ruff_clean():
    """The style gate of STYLE.md (ruff, line length 119) runs with the tests, so CI enforces it."""
    import shutil
    import subprocess

    ruff = shutil.which("ruff")
    assert ruff, "ruff is part of the dev extra"
    for args in (["check", "."], ["format", "--check", "."]):
        r = subprocess.run([ruff, *args], cwd=ROOT, capture_output=True, text=True)
        assert r.returncode == 0, r.stdout + r.stderr
