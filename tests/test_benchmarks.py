"""Smoke tests of the benchmark scripts (--quick): they run and write JSON; never timed."""

import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.slow
def test_enforcement_modes_quick_writes_summary(tmp_path, ptb_dir):
    out = tmp_path / "modes"
    subprocess.run([sys.executable, os.path.join(ROOT, "benchmarks", "enforcement_modes.py"),
                    f"--data_dir={ptb_dir}", f"--out={out}", "--quick"], check=True, timeout=600,
                   capture_output=True)
    summary = json.loads((out / "summary.json").read_text())
    for mode in ("threshold", "proximal"):
        assert summary[mode]["valid_perplexity_shrunk"] > 1
        assert len(summary[mode]["hidden_after"]) == 2
