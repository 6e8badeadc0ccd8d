"""The ImageNet path as a user runs it, on a fake ImageFolder of 224-pixel JPEGs: train.py
experiment=supernet_t, search.py on that supernet, evaluate.py model=s3_t with its weights."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from s3.models import load_supernet
from tests.conftest import ROOT, released_arch
from tests.helpers import fake_imagenet

DATA = ["data.num_classes=2", "data.num_workers=0", "data.pin_memory=false", "data.batch_size=2",
        "data.eval_batch_size=4", "data.search_per_class=1", "data.repeated_aug=0"]
ON_CPU = ["trainer.accelerator=cpu", "trainer.devices=1", "trainer.strategy=auto", "trainer.precision=32-true"]  # not DDP on GPUs


def _entry(script: str, cwd: Path, *overrides: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "WANDB_SILENT": "true"}
    proc = subprocess.run([sys.executable, str(ROOT / script), *overrides], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


@pytest.mark.slow  # a whole entry-point process (make test-fast skips it)
def test_supernet_t_trains_searches_and_evaluates_on_a_fake_imagenet(tmp_path):
    data = [f"data.root={fake_imagenet(tmp_path / 'imagenet')}", *DATA]
    train, search, evaluate = tmp_path / "train", tmp_path / "search", tmp_path / "evaluate"
    _entry("train.py", tmp_path, "experiment=supernet_t", *data, *ON_CPU, "trainer.max_epochs=1",
           f"hydra.run.dir={train}")
    ckpt = train / "checkpoints" / "last.ckpt"
    supernet = load_supernet(ckpt)
    assert (supernet.space.img_size, supernet.num_classes) == (224, 2) and supernet.space.contains(released_arch("S3-T"))
    assert torch.load(ckpt, weights_only=True)["global_step"] == 3  # 6 training images (one per class is held out), batch 2

    _entry("search.py", tmp_path, "experiment=supernet_t", *data, *ON_CPU, f"supernet={ckpt}", "search.population=2",
           "search.generations=2", "search.parents=1", "search.mutations=1", "search.crossovers=1",
           "search.top_k=1", f"hydra.run.dir={search}")
    result = json.loads((search / "result.json").read_text())
    assert result["evaluated"] == 4 and len(result["picks"]) == 1

    _entry("evaluate.py", tmp_path, "model=s3_t", "data=imagenet", *data, f"ckpt_path={ckpt}",
           "throughput.batch_size=2", "throughput.repeats=1", f"hydra.run.dir={evaluate}")
    evaluation = json.loads((evaluate / "evaluation.json").read_text())
    assert evaluation["images"] == 4 and evaluation["arch"] == released_arch("S3-T").to_dict()
    assert evaluation["params"] == 28_328_674 - 769 * (1000 - 2)  # S3-T with a 2-class head
