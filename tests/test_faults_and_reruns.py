"""Faults and reruns that must neither kill a real run nor lose or mix a result: the ImageNet
augmentation on the installed Pillow, unreadable images, overwrite and refusal, exact resume with
augmentation, interrupted validation and checkpoint writes, and bad input as one line."""

import csv
import json
import logging
import os
import random
import re
import subprocess
import sys
import time
from pathlib import Path

import lightning as L
import pytest
import torch
from hydra.errors import InstantiationException
from hydra.utils import instantiate

from s3.cli import run_errors_exit, user_errors_exit
from s3.errors import RunStopped
from s3.lit.supernet import SupernetModule
from s3.space import Arch
from s3.train import prepare as train_prepare
from s3.train import run as train
from tests.conftest import ROOT
from tests.helpers import FAST, ONE_SUPERNET, compose_cfg, fake_imagenet, read_archs

ENV = {**os.environ, "PYTHONPATH": str(ROOT), "WANDB_SILENT": "true"}


def _cli(script: str, out: Path, *overrides: str, timeout: int = 300) -> subprocess.CompletedProcess:
    cmd = [sys.executable, str(ROOT / script), *overrides, f"hydra.run.dir={out}"]
    return subprocess.run(cmd, cwd=out.parent if out.parent.is_dir() else ROOT, env=ENV, capture_output=True,
                          text=True, timeout=timeout)


def _one_line(proc: subprocess.CompletedProcess, message: str) -> None:
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert message in proc.stderr and "Traceback" not in proc.stderr, proc.stderr[-3000:]


def _weights(ckpt: Path) -> dict:
    return torch.load(ckpt, weights_only=True)


def _assert_same_weights(a: Path, b: Path) -> None:
    wa, wb = _weights(a), _weights(b)
    assert wa["global_step"] == wb["global_step"]
    for k, v in wa["state_dict"].items():
        torch.testing.assert_close(wb["state_dict"][k], v, rtol=0, atol=1e-6, msg=k)


# -- 1. ImageNet training survives its first epoch ------------------------------------------------------
IMAGENET_PRESETS = [("train", ["experiment=supernet_t"]), ("train", ["experiment=supernet_s"]),
                    ("train", ["experiment=supernet_b"]), ("train", ["experiment=retrain_t", "model=s3_t"]),
                    ("train", ["experiment=retrain_s", "model=s3_s"]), ("train", ["experiment=retrain_b", "model=s3_b"]),
                    ("search", ["experiment=space_t"]), ("search", ["experiment=space_s"]),
                    ("search", ["experiment=space_b"])]


def test_the_train_transform_of_every_imagenet_preset_survives_every_op_at_its_extremes(tmp_path):
    """timm's RandAugment asks for 0-bit posterize at high magnitudes, which Pillow 13 refuses:
    every op of every preset's RandAugment runs at the lowest and highest magnitude it can draw,
    then the whole transform on 500 random images (random draws reach 0 bits about once in 700)."""
    import copy

    from PIL import Image
    from timm.data.auto_augment import RandAugment

    transforms = {}
    for config, overrides in IMAGENET_PRESETS:
        dm = instantiate(compose_cfg(overrides, tmp_path, config_name=config).data)
        assert dm.auto_augment == "rand-m9-mstd0.5-inc1"
        train_tf = dm.transforms()[0]
        transforms.setdefault(repr(train_tf), train_tf)
    g = torch.Generator().manual_seed(0)
    image = Image.fromarray(torch.randint(0, 256, (224, 224, 3), dtype=torch.uint8, generator=g).numpy())
    for train_tf in transforms.values():
        (augment,) = [t for t in train_tf.transforms if isinstance(t, RandAugment)]
        assert len(augment.ops) == 15
        for op in augment.ops:
            for magnitude in (0.0, op.magnitude_max or 10.0):
                extreme = copy.copy(op)
                extreme.prob, extreme.magnitude, extreme.magnitude_std = 1.0, magnitude, 0.0
                assert extreme(image).size == (224, 224), (op.name, magnitude)
    random.seed(0)
    torch.manual_seed(0)
    for train_tf in transforms.values():
        for _ in range(500):
            pixels = torch.randint(0, 256, (48, 40, 3), dtype=torch.uint8, generator=g).numpy()
            assert train_tf(Image.fromarray(pixels)).shape == (3, 224, 224)


def test_posterize_keeps_pillows_old_meaning_of_zero_bits():
    from PIL import Image
    from timm.data import auto_augment

    from s3.data.images import register_safe_posterize

    register_safe_posterize()
    img = Image.new("RGB", (4, 4), (200, 100, 50))
    assert list(auto_augment.NAME_TO_OP["PosterizeIncreasing"](img, 0).getdata()) == [(0, 0, 0)] * 16
    assert list(auto_augment.NAME_TO_OP["PosterizeIncreasing"](img, 1).getdata()) == [(128, 0, 0)] * 16
    assert auto_augment.NAME_TO_OP["Posterize"](img, 8) is img


def _fake_imagenet(root: Path, per_class: int = 10) -> Path:
    return fake_imagenet(root, train=per_class, val=4, size=(36, 40))


SMALL_IMAGENET = ["data=imagenet", "data.num_classes=2", "data.num_workers=1", "data.pin_memory=false",
                  "data.batch_size=2", "data.eval_batch_size=4", "data.search_per_class=1", "data.max_train=null",
                  "trainer.max_epochs=1", "trainer.log_every_n_steps=1"]


def test_imagenet_composes_with_the_default_experiment(tmp_path):
    root = _fake_imagenet(tmp_path / "imagenet", per_class=6)
    cfg = compose_cfg(["data=imagenet", f"data.root={root}", "data.num_classes=2", "data.search_per_class=1",
                       "data.max_train=8"], tmp_path)
    dm = instantiate(cfg.data)  # experiment=tiny (the default) sets data.max_train: every data module takes it
    dm.setup("fit")
    assert (len(dm.train_set), len(dm.search_set)) == (8, 2)  # max_train counts training images only


@pytest.mark.slow  # a whole entry-point process (make test-fast skips it)
def test_an_unreadable_image_is_one_line_and_the_fixed_run_continues_exactly(tmp_path):
    root = _fake_imagenet(tmp_path / "imagenet")
    data = [*SMALL_IMAGENET, f"data.root={root}"]
    full = _cli("train.py", tmp_path / "full", *data)
    assert full.returncode == 0, full.stderr[-3000:]

    dm = instantiate(compose_cfg(data, tmp_path / "probe").data)
    dm.setup("fit")
    order = [i for i, _ in dm.train_sampler()]  # epoch 0's order: break the 7th image trained on
    bad = Path(dm.train_set.dataset.samples[dm.train_set.indices[order[6]]][0])
    intact = bad.read_bytes()
    bad.write_bytes(intact[:200])  # truncated, as some copies of ImageNet hold

    verify = _cli("train.py", tmp_path / "verify", *data, "data.verify=true")
    _one_line(verify, f"data.verify: 1 of 28 images cannot be decoded ({bad}")
    assert not list((tmp_path / "verify" / "checkpoints").glob("*.ckpt"))  # before any training

    part = _cli("train.py", tmp_path / "part", *data)
    _one_line(part, f"{bad}: cannot decode the image")
    assert "re-run the identical command to continue" in part.stderr
    stopped = _weights(tmp_path / "part" / "checkpoints" / "last.ckpt")["global_step"]
    assert stopped == 3  # the three batches before the one holding the bad image
    bad.write_bytes(intact)
    again = _cli("train.py", tmp_path / "part", *data)
    assert again.returncode == 0, again.stderr[-3000:]
    rerun = tmp_path / "part"  # it resumed (a re-run started afresh would also end on `full`'s weights)
    assert f"continuing the unfinished run in {rerun} from {rerun / 'checkpoints' / 'last.ckpt'}" in \
        (rerun / "train.log").read_text()
    _assert_same_weights(tmp_path / "full" / "checkpoints" / "last.ckpt", tmp_path / "part" / "checkpoints" / "last.ckpt")


def test_imagenet_augmentation_is_a_function_of_the_samples_key(tmp_path):
    """RandAugment, the random resized crop and erasing repeat for the same (seed, epoch, rank,
    position), whatever the global generators hold, and differ for the copies of an image."""
    from s3.data.seeded import KeyedSamples

    root = _fake_imagenet(tmp_path / "imagenet", per_class=3)
    dm = instantiate(compose_cfg([*SMALL_IMAGENET, f"data.root={root}", "data.repeated_aug=3"], tmp_path).data)
    dm.setup("fit")
    keyed = list(dm.train_sampler())
    assert [i for i, _ in keyed[:3]] == [keyed[0][0]] * 3  # three copies of one image, one rank
    samples = KeyedSamples(dm.train_set, per_sample=True)
    torch.manual_seed(1)
    first = [samples[k][0] for k in keyed[:3]]
    torch.manual_seed(2)
    random.seed(5)
    again = [samples[k][0] for k in keyed[:3]]
    assert all(torch.equal(a, b) for a, b in zip(first, again))
    assert not torch.equal(first[0], first[1]) and not torch.equal(first[1], first[2])


# -- 2. results that are lost or mixed ------------------------------------------------------------------
SPACE = ["search=space", "search.iterations=2", "search.samples=12", "search.top_k=3", "search.threshold=0.0",
         ONE_SUPERNET]


def _search(out: Path, *overrides: str) -> dict:
    from s3.search.session import SearchSession

    return SearchSession.open(compose_cfg([*FAST, *overrides], out, config_name="search")).run()


def test_overwrite_clears_every_score_and_supernet_of_the_earlier_space_search(tmp_path, caplog):
    caplog.set_level(logging.INFO)
    out = tmp_path / "space"
    first = _search(out, *SPACE, "search.iterations=1")  # (iteration 0 holds every kind of score and supernet)
    first_ckpt = _weights(out / "iter0" / "checkpoints" / "last.ckpt")
    caplog.clear()
    second = _search(out, *SPACE, "search.iterations=1", "seed=7", "model.optim.lr=0.004", "overwrite=true")
    assert "already scored" not in caplog.text
    assert second["et_error"] != first["et_error"]
    retrained = _weights(out / "iter0" / "checkpoints" / "last.ckpt")
    assert retrained["hyper_parameters"]["optim"]["lr"] == 0.004 and retrained["global_step"] == first_ckpt["global_step"]
    assert not torch.equal(next(iter(retrained["state_dict"].values())), next(iter(first_ckpt["state_dict"].values())))
    scored = {r["arch"]: float(r["top1"]) for r in csv.DictReader(open(out / "iter0" / "archs.csv"))}
    assert json.loads((out / "iter0" / "pool_state.json").read_text())["key"]["split"]["images"] == 40
    assert len(scored) == 12
    with pytest.raises(ValueError, match="holds a finished search"):
        _search(out, *SPACE, "search.iterations=1", "seed=7", "model.optim.lr=0.004")


def test_pool_scores_of_another_supernet_are_not_read_back(tmp_path, caplog):
    """A pool_state.json left beside a retrained supernet (same space, other weights) is ignored."""
    caplog.set_level(logging.INFO)
    out = tmp_path / "space"
    _search(out, *SPACE, "search.iterations=1")
    state = json.loads((out / "iter0" / "pool_state.json").read_text())
    for name in ("search_state.json", "result.json"):
        (out / name).unlink()
    ckpt = _weights(out / "iter0" / "checkpoints" / "last.ckpt")
    ckpt["state_dict"] = {k: v + 0.01 if v.is_floating_point() else v for k, v in ckpt["state_dict"].items()}
    torch.save(ckpt, out / "iter0" / "checkpoints" / "last.ckpt")
    caplog.clear()
    _search(out, *SPACE, "search.iterations=1")
    assert "holds scores of another supernet" in caplog.text and "already scored" not in caplog.text
    assert json.loads((out / "iter0" / "pool_state.json").read_text())["key"] != state["key"]


def _hold_lock(directory: Path) -> subprocess.Popen:
    code = ("import sys, time; from s3.run import lock_run_dir; lock_run_dir(sys.argv[1]); "
            "print('locked', flush=True); time.sleep(120)")
    holder = subprocess.Popen([sys.executable, "-c", code, str(directory)], env=ENV, stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "locked"
    return holder


@pytest.mark.slow  # a whole entry-point process (make test-fast skips it)
@pytest.mark.parametrize("script", ["train.py", "search.py"])
def test_a_refused_run_writes_nothing_into_the_holders_directory(tmp_path, script):
    held = tmp_path / "held"
    held.mkdir()
    records = {"search_split.json": '{"per_class": 100, "seed": 0, "search_indices": [1, 2, 3]}',
               ".hydra/config.yaml": "seed: 1\n", ".hydra/overrides.yaml": "- seed=1\n"}
    for name, text in records.items():
        (held / name).parent.mkdir(exist_ok=True)
        (held / name).write_text(text)
    holder = _hold_lock(held)
    try:
        proc = _cli(script, held, *FAST, *(["search=space"] if script == "search.py" else []))
    finally:
        holder.kill()
    _one_line(proc, "is in use by another run")
    for name, text in records.items():
        assert (held / name).read_text() == text, name


def test_a_finished_run_is_refused_even_from_its_own_checkpoint(tmp_path):
    out = tmp_path / "run"
    train(compose_cfg(FAST, out))
    finished = (out / "finished.json").read_text()
    assert json.loads(finished)["global_step"] == 10 and "val/largest/top1" in json.loads(finished)
    cfg = compose_cfg([*FAST, f"ckpt_path={out / 'checkpoints' / 'last.ckpt'}"], out)
    with pytest.raises(ValueError, match="holds a finished run"):
        train_prepare(cfg)
    assert (out / "finished.json").read_text() == finished
    with pytest.raises(ValueError, match="lies in the run directory that overwrite=true clears"):
        train_prepare(compose_cfg([*FAST, f"ckpt_path={out / 'checkpoints' / 'last.ckpt'}", "overwrite=true"], out))


def test_overwrite_in_a_fresh_or_unfinished_directory_starts_afresh(tmp_path):
    train(compose_cfg([*FAST, "overwrite=true"], tmp_path / "fresh"))
    assert json.loads((tmp_path / "fresh" / "finished.json").read_text())["global_step"] == 10


EXACT = [*FAST, "data.max_train=160", "trainer.max_epochs=2", "data.reprob=0.5",  # augmentation on, 5 steps an epoch
         "model.net.drop_path_rate=0.2"]


def test_resume_is_exact_with_augmentation_after_a_kill_while_last_ckpt_was_written(tmp_path, monkeypatch):
    """Killed (SIGKILL) while writing last.ckpt after epoch 1 of 2: the orphaned temporary is removed
    and the identical command continues from the newest complete checkpoint (epoch000.ckpt), with
    the uninterrupted run's crops, flips, erasing and drop path: the same final weights."""
    train(compose_cfg(EXACT, tmp_path / "full"))
    part = tmp_path / "part"
    train(compose_cfg([*EXACT, "+callbacks.interrupt._target_=tests.helpers.Interrupt",
                       "+callbacks.interrupt.epochs=1"], part))
    (part / "checkpoints" / "last.ckpt").unlink()
    orphan = part / "checkpoints" / ".last.ckpt.0123abcd.tmp"
    orphan.write_bytes(b"PK\x03\x04 half a checkpoint")
    torch.manual_seed(1234)  # whatever the global generators hold when the re-run starts
    step, trained = SupernetModule.training_step, []
    monkeypatch.setattr(SupernetModule, "training_step", lambda self, batch, i: trained.append(i) or step(self, batch, i))
    train(compose_cfg(EXACT, part))
    assert len(trained) == 5  # epoch 1's batches only: a run started afresh would also equal `full` below
    assert not orphan.exists()
    assert [s["step"] for s in read_archs(part / "sampled_archs.rank0.jsonl")] == list(range(10))
    _assert_same_weights(tmp_path / "full" / "checkpoints" / "last.ckpt", part / "checkpoints" / "last.ckpt")


class StopInValidation(L.Callback):
    """SIGTERM in the middle of epoch 0's validation, during its second batch: what Lightning's
    handler does on the signal (test only)."""

    def on_validation_batch_start(self, trainer, pl_module, batch, batch_idx, dataloader_idx=0):
        if trainer.current_epoch == 0 and not trainer.sanity_checking and batch_idx == 1:
            trainer._signal_connector.received_sigterm = True


def _val_rows(out: Path) -> list[dict]:
    return [{k: v for k, v in r.items() if k.startswith("val/") or k == "epoch"}
            for r in csv.DictReader(open(out / "csv" / "metrics.csv")) if r.get("val/largest/top1")]


def test_a_stop_during_validation_finishes_it_and_the_rerun_keeps_every_validation_row(tmp_path, monkeypatch):
    args = [*FAST, "data.max_train=160", "trainer.max_epochs=2", "data.eval_batch_size=32"]  # 4 validation batches
    train(compose_cfg(args, tmp_path / "full"))
    part = tmp_path / "part"
    with pytest.raises(SystemExit) as stop:
        train(compose_cfg([*args, "+callbacks.stop._target_=tests.test_faults_and_reruns.StopInValidation"], part))
    assert stop.value.code == 143
    assert _weights(part / "checkpoints" / "last.ckpt")["global_step"] == 5  # after epoch 0's validation
    step, trained = SupernetModule.training_step, []
    monkeypatch.setattr(SupernetModule, "training_step", lambda self, batch, i: trained.append(i) or step(self, batch, i))
    train(compose_cfg(args, part))
    assert len(trained) == 5  # epoch 1's batches only: a run started afresh would also equal `full` below
    full_rows = _val_rows(tmp_path / "full")
    assert len(full_rows) == 2 and _val_rows(part) == full_rows
    _assert_same_weights(tmp_path / "full" / "checkpoints" / "last.ckpt", part / "checkpoints" / "last.ckpt")


def test_data_max_train_counts_training_images_and_zero_is_refused(tmp_path):
    dm = instantiate(compose_cfg([*FAST, "data.max_train=2000", "data.search_per_class=100"], tmp_path).data)
    dm.setup("fit")
    assert (len(dm.train_set), len(dm.search_set)) == (2000, 1000)
    other = instantiate(compose_cfg([*FAST, "data.max_train=3000", "data.search_per_class=100"], tmp_path).data)
    other.setup("fit")
    assert other.split_identity() == dm.split_identity()  # a search may use another max_train than its supernet
    with pytest.raises(InstantiationException, match=r"data.max_train=0: the number of train images to use, an integer >= 1"):
        train_prepare(compose_cfg([*FAST, "data.max_train=0"], tmp_path / "zero"))
    with pytest.raises(ValueError, match=r"data.max_train=70000: there are only 59,000 images after the search split"):
        train_prepare(compose_cfg([*FAST, "data.max_train=70000", "data.search_per_class=100"], tmp_path / "many"))


def test_supernet_latest_takes_finished_trainings_only(tmp_path):
    from s3.search.inputs import resolve_supernet
    from s3.space import SearchSpace

    logs = tmp_path / "logs"
    train(compose_cfg(FAST, logs / "train" / "runs" / "finished"))
    time.sleep(0.05)
    train(compose_cfg([*FAST, "trainer.max_epochs=2", "+callbacks.interrupt._target_=tests.helpers.Interrupt",
                       "+callbacks.interrupt.epochs=1"], logs / "train" / "runs" / "stopped"))
    time.sleep(0.05)
    train(compose_cfg([*FAST, "+trainer.fast_dev_run=1"], logs / "train" / "runs" / "smoke"))
    assert not (logs / "train" / "runs" / "smoke" / "finished.json").exists()
    assert not (logs / "train" / "runs" / "stopped" / "finished.json").exists()
    cfg = compose_cfg([*FAST, f"paths.log_dir={logs}"], tmp_path / "s", config_name="search")
    space = SearchSpace.from_dict(cfg.space)
    assert resolve_supernet(cfg, space) == logs / "train" / "runs" / "finished" / "checkpoints" / "last.ckpt"
    (logs / "train" / "runs" / "finished" / "finished.json").unlink()
    with pytest.raises(FileNotFoundError, match=r"no finished supernet training .* \(\d unfinished, e.g. .*smoke"):
        resolve_supernet(cfg, space)


# -- 3. one line, exit 2, before any work ---------------------------------------------------------------
@pytest.mark.parametrize("overrides, message", [
    (["model.optim.lr=-1"], "model.optim.lr=-1: must be a number > 0"),
    (["model.optim.lr=fast"], "model.optim.lr='fast': must be a number > 0"),
    (["seed=abc"], "seed='abc': must be an integer >= 0"),
    (["trainer.devices=0"], "trainer.devices=0: a number of devices >= 1"),
    (["trainer.max_epochs=-2"], "trainer.max_epochs=-2: must be an integer >= 0, or -1 (or null) for no limit"),
    (["experiment=retrain_tiny", "arch=ARCH_DIR"], "is a directory; give the YAML file in it"),
    (["experiment=retrain_tiny", "arch=HUGE"], "GiB of fp32 weights alone"),
])
def test_bad_training_input_is_one_line_before_any_data_is_read(tmp_path, overrides, message, capsys, monkeypatch):
    huge = Arch.create([1, 1, 1, 1], [32, 64, 96, 200_000], [4.0] * 4, [1, 2, 3, 6250], [4, 4, 2, 2])
    replace = {"arch=ARCH_DIR": f"arch={tmp_path}", "arch=HUGE": f"arch={huge.to_yaml(tmp_path / 'huge.yaml')}"}
    overrides = [replace.get(o, o) for o in overrides]
    from s3.data.base import ClassificationDataModule

    monkeypatch.setattr(ClassificationDataModule, "setup", lambda *a, **k: pytest.fail("read the data first"))
    with pytest.raises(SystemExit) as e:
        user_errors_exit(train_prepare)(compose_cfg([*FAST, *overrides], tmp_path / "run"))
    err = capsys.readouterr().err
    assert e.value.code == 2 and message in err and len(err.strip().splitlines()) == 1, err


@pytest.mark.slow  # a whole entry-point process (make test-fast skips it)
def test_unwritable_run_directory_is_one_line_before_hydra_writes_there(tmp_path):
    proc = _cli("train.py", Path("/dev/null/run"), *FAST)
    _one_line(proc, "hydra.run.dir=/dev/null/run: cannot write there (/dev/null is not a writable directory)")
    sweep = subprocess.run([sys.executable, str(ROOT / "train.py"), "-m", *FAST, "seed=1,2",
                            "hydra.sweep.dir=/dev/null/sweep"], cwd=tmp_path, env=ENV, capture_output=True, text=True,
                           timeout=120)
    _one_line(sweep, "hydra.sweep.dir=/dev/null/sweep: cannot write there")


def test_a_full_disk_while_checkpointing_is_one_line_and_keeps_the_last_complete_checkpoint(tmp_path, monkeypatch,
                                                                                           capsys):
    import shutil

    import s3.io

    out = tmp_path / "run"
    train(compose_cfg([*FAST, "+callbacks.interrupt._target_=tests.helpers.Interrupt", "+callbacks.interrupt.epochs=1",
                       "trainer.max_epochs=2"], out))
    saved = _weights(out / "checkpoints" / "last.ckpt")["global_step"]

    def full_disk_save(obj, path, *args, **kwargs):
        Path(path).write_bytes(b"PK\x03\x04 partial")
        raise RuntimeError("[enforce fail at inline_container.cc:664] . unexpected pos 4416 vs 4310")

    Usage = type(shutil.disk_usage(tmp_path))
    monkeypatch.setattr(s3.io.shutil, "disk_usage", lambda p: Usage(100 << 30, (100 << 30) - (1 << 20), 1 << 20))
    monkeypatch.setattr(torch, "save", full_disk_save)
    with pytest.raises(RunStopped):  # the library raises; the entry point says it in one line, exit 2
        train(compose_cfg([*FAST, "trainer.max_epochs=2"], out))
    with pytest.raises(SystemExit) as e:
        run_errors_exit(train)(compose_cfg([*FAST, "trainer.max_epochs=2"], out))
    err = capsys.readouterr().err
    assert e.value.code == 2 and "the disk is full (1 MiB free of 100.0 GiB" in err and "continues from the last complete" in err, err
    monkeypatch.undo()
    assert _weights(out / "checkpoints" / "last.ckpt")["global_step"] == saved  # the complete one is untouched
    assert not list((out / "checkpoints").glob(".*.tmp"))


@pytest.mark.parametrize("name, text, message", [
    ("search_state.json", '{"iterations": [{"iter', "not a readable space search state (empty or truncated"),
    ("search_state.json", "", "not a readable space search state"),
    ("search_state.json", '{"generation": 3}', "not a space search state (no 'iterations')"),
    ("search_identity.json", '{"seed": 42', "not a readable search identity"),
    ("search_identity.json", '{"seed": 42, "spaces": {}}', "not a search identity (no 'space', 'data', 'search')"),
])
def test_a_damaged_search_record_is_one_line_naming_the_file(tmp_path, name, text, message):
    out = tmp_path / "space"
    out.mkdir()
    (out / name).write_text(text)
    with pytest.raises(ValueError, match=re.escape(f"{out / name}: {message}")) as e:
        from s3.search.session import SearchSession

        SearchSession.open(compose_cfg([*FAST, *SPACE], out, config_name="search"))
    assert "overwrite=true" in str(e.value)


def test_evaluate_without_ckpt_path_is_one_line(tmp_path, capsys):
    from s3.evaluate import prepare

    with pytest.raises(SystemExit) as e:
        user_errors_exit(prepare)(compose_cfg(["model=s3_fmnist"], tmp_path, config_name="evaluate"))
    err = capsys.readouterr().err
    assert e.value.code == 2 and err.strip() == "error: ckpt_path is required and has no value: pass ckpt_path=..."
