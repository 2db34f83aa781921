"""Kept runs replay anywhere: no file under results/ holds a machine's absolute path."""

import glob
import importlib.util
import json
import os

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
spec = importlib.util.spec_from_file_location("results_paths", os.path.join(ROOT, "scripts", "results.py"))
results_script = importlib.util.module_from_spec(spec)
spec.loader.exec_module(results_script)


def strings(value):
    if isinstance(value, dict):
        for v in value.values():
            yield from strings(v)
    elif isinstance(value, list):
        for v in value:
            yield from strings(v)
    elif isinstance(value, str):
        yield value


def test_no_kept_file_holds_an_absolute_path():
    files = [p for p in glob.glob(os.path.join(ROOT, "results", "**", "*"), recursive=True)
             if os.path.isfile(p) and not p.endswith(".png")]
    assert len(files) > 50
    found = []
    for path in files:
        text = open(path).read()
        found += [(os.path.relpath(path, ROOT), m) for m in results_script.ABSOLUTE_PATH.findall(text)]
        if path.endswith(".json"):  # every string value, wherever it sits
            found += [(os.path.relpath(path, ROOT), s) for s in strings(json.loads(text))
                      if os.path.isabs(s)]
        if path.endswith("flags.txt"):
            found += [(os.path.relpath(path, ROOT), line) for line in text.splitlines()
                      if os.path.isabs(line.partition("=")[2])]
    assert not found, found[:10]


def test_keep_writes_paths_relative_to_the_repository(tmp_path, monkeypatch):
    workdir = tmp_path / "somewhere" / "run"
    (workdir / "export").mkdir(parents=True)
    data = os.path.join(results_script.SHARED_DATA, "ptb")
    (workdir / "metrics.csv").write_text("epoch\n1\n")
    (workdir / "flags.txt").write_text(f"--data_dir={data}\n--workdir={workdir}\n--seed=0\n")
    results = {"epochs": 1, "run": {"commit": "abc"}, "value": 1.2345678901234567,
               "export": {"tflite": {"path": str(workdir / "export" / "model.tflite")}}}
    (workdir / "results.json").write_text(json.dumps(results, indent=1))
    monkeypatch.setattr(results_script, "RESULTS", str(tmp_path / "results"))
    results_script.keep(str(workdir), "ptb", "small")
    kept = tmp_path / "results" / "ptb" / "small"
    assert (kept / "flags.txt").read_text() == ("--data_dir=../shared/data/ptb\n"
                                                "--workdir=runs/ptb/small\n--seed=0\n")
    got = json.loads((kept / "results.json").read_text())
    assert got["export"]["tflite"]["path"] == "runs/ptb/small/export/model.tflite"
    assert got["value"] == results["value"] and got["run"] == results["run"]

    # A path that is neither the run's, the repository's nor the shared data's is refused.
    (workdir / "flags.txt").write_text("--data_dir=/somewhere/else/ptb\n")
    with pytest.raises(SystemExit, match="/somewhere/else/ptb"):
        results_script.keep(str(workdir), "ptb", "small")
    assert (kept / "flags.txt").read_text().startswith("--data_dir=../shared/data/ptb")
