import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from s3.evaluate import build_classifier, prepare, run
from s3.models import S3Transformer, load_checkpoint, load_supernet
from s3.space import Arch
from tests.conftest import ROOT, released_arch
from tests.helpers import FAST, compose_cfg, user_error

ARCH = Arch.create([1, 1, 2, 1], [48, 64, 96, 128], [2.0, 3.0, [4.0, 2.0], 2.0], [1, 2, [2, 3], 2], [8, 4, 2, 2])


def same_precision(cfg):
    """The autocast evaluate.py's trainer runs under (bf16 where the CPU supports it)."""
    return torch.autocast("cpu", dtype=torch.bfloat16, enabled="bf16" in cfg.trainer.precision)


def _evaluate(out: Path, *overrides: str) -> dict:
    cfg = compose_cfg([*FAST, "throughput.repeats=2", "throughput.batch_size=8", *overrides], out,
                      config_name="evaluate")
    return run(cfg, *prepare(cfg))


def test_supernet_checkpoint_gives_inherited_weights_and_a_report(tmp_path, supernet_run):
    arch_file = ARCH.to_yaml(tmp_path / "arch.yaml")
    ckpt = supernet_run / "checkpoints" / "last.ckpt"
    result = _evaluate(tmp_path / "eval", f"arch={arch_file}", f"ckpt_path={ckpt}")
    assert json.loads((tmp_path / "eval" / "evaluation.json").read_text()) == result
    standalone = load_supernet(ckpt).extract(ARCH).eval()
    assert result["params"] == sum(p.numel() for p in standalone.parameters())
    assert result["images"] == 128 and result["throughput_batch"] == 8
    # the same accuracy as the extracted subnet run by hand over the same images
    cfg = compose_cfg([*FAST, f"arch={arch_file}", f"ckpt_path={ckpt}"], tmp_path / "c", config_name="evaluate")
    dm, _, _ = prepare(cfg)
    dm.setup("validate")
    correct = 0
    with torch.no_grad(), same_precision(cfg):
        for x, y in dm.val_dataloader():
            correct += int((standalone(x).argmax(-1) == y).sum())
    assert result["top1"] == pytest.approx(100 * correct / 128)


def test_throughput_is_images_over_the_timed_passes_after_warm_up(monkeypatch):

    import s3.evaluate

    calls, clock = [], iter([0.0, 0.1, 10.0, 12.5])  # the Timer's warm-up, then its timed passes

    class Counting(torch.nn.Module):
        def forward(self, x):
            calls.append(tuple(x.shape))
            return x

    value = s3.evaluate.throughput(Counting(), 32, batch_size=8, repeats=4, device=torch.device("cpu"), autocast=False,
                                   clock=lambda: next(clock))
    assert calls == [(8, 3, 32, 32)] * (3 + 2 + 4)  # 3 warm-up passes, the Timer's 2, then the 4 timed ones
    assert value == 8 * 4 / 2.5


def test_official_checkpoint_loads_into_the_model_preset(tmp_path):
    model = S3Transformer(released_arch("S3-T"))
    torch.save({"model": model.state_dict()}, tmp_path / "S3-T.pth")
    cfg = compose_cfg(["model=s3_t", "data=imagenet", f"ckpt_path={tmp_path / 'S3-T.pth'}"], tmp_path,
                      config_name="evaluate")
    module = build_classifier(cfg)
    assert module.arch == released_arch("S3-T") and cfg.data.img_size == 224
    assert sum(p.numel() for p in module.model.parameters()) == 28_328_674
    for (k, a), b in zip(module.model.state_dict().items(), model.state_dict().values()):
        assert torch.equal(a, b), k
    loaded = load_checkpoint(S3Transformer(released_arch("S3-T")), tmp_path / "S3-T.pth")
    assert all(torch.equal(a, b) for a, b in zip(loaded.state_dict().values(), model.state_dict().values()))


@pytest.mark.slow  # a whole entry-point process (make test-fast skips it)
def test_imagenet_validation_needs_only_val(tmp_path):
    """evaluate.py data=imagenet (split=val) reads val/ alone: no train/ to list or split."""
    from PIL import Image

    root = tmp_path / "imagenet"
    for c in ("n01", "n02"):
        (root / "val" / c).mkdir(parents=True)
        for i in range(2):
            Image.fromarray(torch.randint(0, 255, (80, 96, 3), dtype=torch.uint8).numpy()).save(root / "val" / c / f"{i}.JPEG")
    model = S3Transformer(released_arch("S3-T"), num_classes=2).eval()
    torch.save({"model": model.state_dict()}, tmp_path / "S3-T.pth")
    common = ["model=s3_t", "data=imagenet", f"data.root={root}", "data.num_classes=2", "data.num_workers=0",
              "data.pin_memory=false", f"ckpt_path={tmp_path / 'S3-T.pth'}", "throughput.batch_size=2",
              "throughput.repeats=1"]
    cfg = compose_cfg(common, tmp_path / "eval", config_name="evaluate")
    dm, module, trainer = prepare(cfg)
    result = run(cfg, dm, module, trainer)
    assert result["images"] == 4 and dm.train_set is None and not (root / "train").exists()
    # the official transform, written with torchvision's own ops (resize the short side to 256
    # bicubic, centre crop 224, ImageNet mean/std), against the data module's
    from torchvision import transforms as T
    official = T.Compose([T.Resize(256, interpolation=T.InterpolationMode.BICUBIC), T.CenterCrop(224), T.ToTensor(),
                          T.Normalize((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))])
    files = sorted((root / "val").rglob("*.JPEG"))
    by_hand = torch.stack([official(Image.open(f).convert("RGB")) for f in files])
    loaded = torch.cat([x for x, _ in dm.val_dataloader()])
    assert by_hand.shape == loaded.shape == (4, 3, 224, 224)
    torch.testing.assert_close(loaded, by_hand, atol=0.02, rtol=0)  # timm resizes in PIL, torchvision too: same pixels
    labels = torch.tensor([0 if f.parent.name == "n01" else 1 for f in files])
    with torch.no_grad(), same_precision(cfg):  # and the zoo weights, by hand
        correct = int((model(by_hand).argmax(-1) == labels).sum())
    assert result["top1"] == pytest.approx(100 * correct / 4)
    cfg = compose_cfg([*common, "split=search"], tmp_path / "search", config_name="evaluate")
    with pytest.raises(FileNotFoundError, match=r"ImageNet train split not found"):
        prepare(cfg)


def _evaluate_cli(tmp_path: Path, *overrides: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    fast = [] if "data=imagenet" in overrides else FAST
    cmd = [sys.executable, str(ROOT / "evaluate.py"), *fast, f"hydra.run.dir={tmp_path}", *overrides]
    return subprocess.run(cmd, cwd=tmp_path.parent, env=env, capture_output=True, text=True, timeout=120)


def test_bad_input_is_one_clear_line(tmp_path, supernet_run, capsys):
    arch_file = ARCH.to_yaml(tmp_path / "arch.yaml")
    garbage = tmp_path / "garbage.ckpt"
    garbage.write_bytes(b"not a checkpoint")
    other = Arch.create([1, 1, 1, 1], [32, 64, 96, 128], [2.0] * 4, [1, 1, 2, 2], [4, 4, 2, 2])
    torch.save(S3Transformer(other, img_size=32, patch_size=2, num_classes=10).state_dict(), tmp_path / "other.pth")
    cases = [
        ([f"arch={arch_file}", f"ckpt_path={tmp_path / 'missing.ckpt'}"], "does not exist"),
        ([f"arch={arch_file}", f"ckpt_path={garbage}"], "could not be read as a PyTorch checkpoint"),
        ([f"arch={arch_file}", f"ckpt_path={tmp_path / 'other.pth'}"], "does not fit the model: key"),
        ([f"arch={arch_file}", f"ckpt_path={supernet_run / 'checkpoints/last.ckpt'}", "data.root=/nonexistent"],
         "Fashion-MNIST not found"),
        (["model=s3_t", "data=imagenet", "data.root=/nonexistent/imagenet", f"ckpt_path={garbage}"],
         "ImageNet val split not found: expected class folders in /nonexistent/imagenet/val"),
    ]
    for overrides, message in cases:  # in-process: what evaluate.py runs before any work
        fast = [] if "data=imagenet" in overrides else FAST
        cfg = compose_cfg([*fast, *overrides], tmp_path / "bad", config_name="evaluate")
        assert message in user_error(capsys, prepare, cfg), overrides


@pytest.mark.slow  # a whole entry-point process (make test-fast skips it)
def test_bad_input_through_the_command_line_is_exit_2_and_one_line(tmp_path):
    arch_file = ARCH.to_yaml(tmp_path / "arch.yaml")
    proc = _evaluate_cli(tmp_path / "bad", f"arch={arch_file}", f"ckpt_path={tmp_path / 'missing.ckpt'}")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert proc.stderr.strip().count("\n") == 0 and "missing.ckpt does not exist" in proc.stderr, proc.stderr


def test_evaluate_composes_cifar_data(tmp_path):
    from hydra.utils import instantiate

    from s3.data import CIFARDataModule

    cfg = compose_cfg(["data=cifar10", "arch=x.yaml", "ckpt_path=x.ckpt"], tmp_path, config_name="evaluate")
    assert isinstance(instantiate(cfg.data), CIFARDataModule) and cfg.data.img_size == 32  # was: unexpected img_size
    with pytest.raises(ValueError, match=r"data.img_size=224: CIFAR images are 32x32"):
        CIFARDataModule(img_size=224)


@pytest.mark.slow  # a whole entry-point process (make test-fast skips it)
def test_a_second_evaluation_into_one_directory_is_refused(tmp_path, supernet_run, capsys):
    """Two evaluate.py runs aimed at one directory would both write evaluation.json and its log:
    a finished one is refused without overwrite=true, a running one by its lock."""
    args = [f"arch={ARCH.to_yaml(tmp_path / 'arch.yaml')}", f"ckpt_path={supernet_run / 'checkpoints' / 'last.ckpt'}"]
    _evaluate(tmp_path / "done", *args)
    cfg = compose_cfg([*FAST, *args], tmp_path / "done", config_name="evaluate")
    assert "holds a finished evaluation (evaluation.json); pass overwrite=true" in user_error(capsys, prepare, cfg)
    prepare(compose_cfg([*FAST, *args, "overwrite=true"], tmp_path / "done", config_name="evaluate"))
    busy = tmp_path / "busy"
    busy.mkdir()
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time; from filelock import FileLock; "
                               "lock = FileLock(sys.argv[1]); lock.acquire(); print('held', flush=True); time.sleep(120)",
                               str(busy / ".lock")], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        cfg = compose_cfg([*FAST, *args], busy, config_name="evaluate")
        assert "is in use by another run" in user_error(capsys, prepare, cfg)
        assert not (busy / "evaluation.json").exists()
    finally:
        holder.kill()
