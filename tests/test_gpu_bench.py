"""bench/gpu.py, the prepared GPU check, kept working by its CPU miniature: every part runs and
writes its rows, and the correctness part's values hold on this machine too."""

from __future__ import annotations

import csv
import subprocess
import sys

import pytest

from tests.conftest import ROOT


@pytest.mark.slow  # every part of the script, tiny sizes, on the CPU
def test_the_gpu_check_runs_every_part_in_its_cpu_miniature(tmp_path):
    proc = subprocess.run([sys.executable, str(ROOT / "bench" / "gpu.py"), "--mini", "--out", str(tmp_path)],
                          capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = {(r["part"], r["name"]): float(r["value"]) for r in csv.DictReader(open(tmp_path / "gpu.csv"))}
    assert {part for part, _ in rows} == {"correctness", "steps", "compile", "search", "loader"}
    assert all(r["mode"] == "mini" and r["device"] == "cpu" for r in csv.DictReader(open(tmp_path / "gpu.csv")))
    correctness = {name: v for (part, name), v in rows.items() if part == "correctness"}
    assert correctness["supernet vs extracted standalone, max |logit diff| (fp32)"] < 1e-5
    assert correctness["SDPA vs explicit attention, max |logit diff| (fp32)"] < 1e-4
    assert correctness["SDPA vs explicit attention, max |grad diff| / max |grad|"] < 1e-4
    assert correctness["S3-T vs timm swin_s3_tiny_224, same weights, max |logit diff|"] < 1e-4
    ratios = [v for (part, name), v in rows.items() if name.endswith("throughput") or "throughput," in name]
    assert len(ratios) >= 4 and all(0 < v < 100 for v in ratios)
    assert rows[("compile", "supernet: graphs compiled for 4 sampled subnets")] >= 1
    assert "summary (targets from issue 44):" in proc.stdout and "bounds training" in proc.stdout


def test_the_gpu_check_says_in_one_line_that_it_needs_a_gpu(tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("a machine with CUDA runs the full check")
    proc = subprocess.run([sys.executable, str(ROOT / "bench" / "gpu.py"), "--out", str(tmp_path)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "no CUDA device on this machine; run it on a GPU machine, or --mini" in proc.stderr
