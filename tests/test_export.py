"""export.py: a found arch with its weights as a model directory (config.json, model.safetensors,
a model card) that `s3.from_pretrained` rebuilds exactly."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import s3
from s3.evaluate import prepare as evaluate_prepare
from s3.evaluate import run as evaluate_run
from s3.export import prepare, run
from s3.models import S3Transformer
from s3.space import Arch
from tests.conftest import ROOT
from tests.helpers import FAST, compose_cfg, tiny_arch_file, user_error

QUICK = ["latency.batches=[1]", "latency.repeats=2", "latency.rounds=2"]


def _export(out: Path, *overrides: str) -> dict:
    cfg = compose_cfg([*FAST, *QUICK, *overrides], out, config_name="export")
    return run(cfg, *prepare(cfg))


@pytest.fixture(scope="module")
def retrained(tmp_path_factory) -> tuple[Path, Path]:
    """A tiny arch retrained for one short epoch: (its arch YAML, its checkpoint)."""
    from s3.train import run as train

    tmp = tmp_path_factory.mktemp("retrain")
    arch = tiny_arch_file(tmp)
    train(compose_cfg([*FAST, "experiment=retrain_tiny", f"arch={arch}", "trainer.max_epochs=1"], tmp / "run"))
    return arch, tmp / "run" / "checkpoints" / "last.ckpt"


def test_an_export_of_a_retrained_arch_rebuilds_its_logits_exactly_and_says_what_it_is(tmp_path, retrained):
    arch, ckpt = retrained
    out = tmp_path / "model"
    config = _export(out, f"arch={arch}", f"ckpt_path={ckpt}")
    assert sorted(p.name for p in out.iterdir() if not p.name.startswith(".")) == \
        ["README.md", "config.json", "model.safetensors"]
    weights = torch.load(ckpt, weights_only=True)["state_dict"]
    model_weights = {k.removeprefix("model."): v for k, v in weights.items() if k.startswith("model.")}
    saved = load_file(str(out / "model.safetensors"))
    assert saved.keys() == model_weights.keys()  # the model's weights only: no optimizer, EMA or metric state
    assert all(torch.equal(saved[k], v) for k, v in model_weights.items())

    model = s3.from_pretrained(out).eval()
    reference = S3Transformer(Arch.from_yaml(arch), img_size=32, patch_size=2, num_classes=10, head_dim=32)
    reference.load_state_dict(model_weights)
    x = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(model(x), reference.eval()(x))

    on_disk = json.loads((out / "config.json").read_text())
    assert on_disk == json.loads(json.dumps(config))
    assert Arch.from_dict(on_disk["arch"]) == Arch.from_yaml(arch)
    assert on_disk["net"] == {"img_size": 32, "patch_size": 2, "in_chans": 3, "num_classes": 10, "head_dim": 32,
                              "drop_path_rate": 0.1}
    assert on_disk["params"] == sum(p.numel() for p in model.parameters())
    pre = on_disk["preprocessing"]
    assert pre["input_size"] == [3, 32, 32] and pre["mean"] == pytest.approx([0.286] * 3)
    assert pre["std"] == pytest.approx([0.353] * 3) and "28x28 images zero-padded to 32" in pre["note"]
    # the card's accuracy is what evaluate.py measures for the same arch and weights
    cfg = compose_cfg([*FAST, f"arch={arch}", f"ckpt_path={ckpt}", "throughput.repeats=1"], tmp_path / "ev",
                      config_name="evaluate")
    evaluated = evaluate_run(cfg, *evaluate_prepare(cfg))
    assert on_disk["evaluation"]["top1"] == evaluated["top1"] and on_disk["evaluation"]["images"] == 128
    card = (out / "README.md").read_text()
    assert f"top-1 **{evaluated['top1']:.2f} %**" in card and f'from_pretrained("{out}")' in card


def test_an_export_from_a_supernet_checkpoint_holds_the_arch_s_inherited_weights(tmp_path, supernet_run):
    from s3.models import load_supernet

    arch = tiny_arch_file(tmp_path)
    ckpt = supernet_run / "checkpoints" / "last.ckpt"
    _export(tmp_path / "model", f"arch={arch}", f"ckpt_path={ckpt}", "measure=false")
    model = s3.from_pretrained(tmp_path / "model").eval()
    inherited = load_supernet(ckpt).extract(Arch.from_yaml(arch)).eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(model(x), inherited(x))
    assert json.loads((tmp_path / "model" / "config.json").read_text())["evaluation"] is None


def test_a_finished_export_is_refused_unless_overwrite_and_bad_input_is_one_line(tmp_path, retrained, capsys):
    arch, ckpt = retrained
    out = tmp_path / "model"
    _export(out, f"arch={arch}", f"ckpt_path={ckpt}", "measure=false")
    again = compose_cfg([*FAST, f"arch={arch}", f"ckpt_path={ckpt}", "measure=false"], out, config_name="export")
    assert "holds a finished export (config.json); pass overwrite=true" in user_error(capsys, prepare, again)
    _export(out, f"arch={arch}", f"ckpt_path={ckpt}", "measure=false", "overwrite=true")
    missing = compose_cfg([*FAST, f"arch={arch}", f"ckpt_path={tmp_path / 'none.ckpt'}"], tmp_path / "bad",
                          config_name="export")
    assert "none.ckpt does not exist" in user_error(capsys, prepare, missing)
    other = compose_cfg([*FAST, f"arch={arch}", f"ckpt_path={ckpt}", "format=pt"], tmp_path / "pt", config_name="export")
    assert "format=pt: allowed ['safetensors', 'onnx']" in user_error(capsys, prepare, other)
    with pytest.raises(FileNotFoundError, match="no config.json; not a model directory written by export.py"):
        s3.from_pretrained(tmp_path)


def test_format_onnx_writes_a_dynamic_batch_model_that_onnxruntime_runs_as_pytorch_does(tmp_path, retrained):
    import onnxruntime

    arch, ckpt = retrained
    config = _export(tmp_path / "model", f"arch={arch}", f"ckpt_path={ckpt}", "format=onnx", "measure=false")
    assert config["onnx"]["checked_images"] == 32 and config["onnx"]["max_abs_logit_error"] <= 1e-4
    session = onnxruntime.InferenceSession(str(tmp_path / "model" / "model.onnx"), providers=["CPUExecutionProvider"])
    model = s3.from_pretrained(tmp_path / "model").eval()
    for batch in (1, 5):  # the batch is dynamic
        x = torch.randn(batch, 3, 32, 32)
        with torch.no_grad():
            torch.testing.assert_close(torch.from_numpy(session.run(None, {"images": x.numpy()})[0]), model(x),
                                       rtol=0, atol=1e-4)
    assert {(r["backend"], r["batch"]) for r in config["latency"]} == {("pytorch", 1), ("onnxruntime", 1)}
    assert all(r["min_ms"] <= r["median_ms"] <= r["max_ms"] for r in config["latency"])
    assert "| onnxruntime | 1 |" in (tmp_path / "model" / "README.md").read_text()


def test_onnx_export_of_shifted_windows_and_window_1_matches_pytorch(tmp_path):
    """Shifted blocks (the second of each stage, window below the grid) and window 1 (no attention
    across tokens) go through the gathers, masks and bias tables the export must carry."""
    from s3.export import export_onnx

    windows = [[8, 2], [4, 1], [1, 2], [2, 1]]  # global, shifted 2 and 1 (the second block of a stage), and 1
    arch = Arch.create([2, 2, 2, 2], [32, 64, 96, 128], [2.0] * 4, [1, 2, 3, 4], windows)
    model = S3Transformer(arch, img_size=32, patch_size=2, num_classes=10).eval()
    record = export_onnx(model, tmp_path / "model.onnx", torch.randn(6, 3, 32, 32))
    assert record["max_abs_logit_error"] <= 1e-4 and record["checked_images"] == 6
    with pytest.raises(ValueError, match="onnxruntime's logits differ from PyTorch's"):
        export_onnx(_Drifting(model), tmp_path / "drift.onnx", torch.randn(2, 3, 32, 32))
    assert not (tmp_path / "drift.onnx").exists()  # the check compares, it does not just run


class _Drifting(torch.nn.Module):
    """Exports one graph, then answers differently in eager mode (a stand-in for an export bug)."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, x):
        out = self.model(x)
        return out + 1.0 if not torch.jit.is_tracing() and not torch.onnx.is_in_onnx_export() else out


@pytest.mark.slow  # the ImageNet-size S3-T graph (make test-fast skips it)
def test_onnx_export_of_s3_t_matches_pytorch(tmp_path):
    from s3.export import export_onnx
    from tests.conftest import released_arch

    model = S3Transformer(released_arch("S3-T")).eval()
    record = export_onnx(model, tmp_path / "s3_t.onnx", torch.randn(2, 3, 224, 224))
    assert record["max_abs_logit_error"] <= 1e-4


@pytest.mark.slow  # a whole entry-point process (make test-fast skips it)
def test_export_py_writes_a_model_directory_from_the_command_line(tmp_path, retrained):
    arch, ckpt = retrained
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, str(ROOT / "export.py"), *FAST, f"arch={arch}", f"ckpt_path={ckpt}",
           f"hydra.run.dir={tmp_path / 'model'}"]
    proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "load it with s3.from_pretrained" in (tmp_path / "model" / "export.log").read_text()
    assert isinstance(s3.from_pretrained(tmp_path / "model"), S3Transformer)
