"""What a newcomer meets in the first hour: the documented paths run, bad input and a bad
environment are one line before any work, and the console and plots say what they show."""

from __future__ import annotations

import errno
import logging
import math
import subprocess
import sys
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from tests.conftest import ROOT, SPACES
from tests.helpers import FAST, compose_cfg, tiny_arch_file, user_error


def _entry(script: str, *args: str, cwd: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    import os

    return subprocess.run([sys.executable, str(ROOT / script), *args], cwd=cwd, capture_output=True, text=True,
                          timeout=300, env={**os.environ, **(env or {})})


# -- documented paths that crashed or misled ---------------------------------------------------------
def test_early_stopping_watches_the_metric_the_module_logs(tmp_path):
    supernet = compose_cfg([*FAST, "callbacks=[default,early_stopping]"], tmp_path / "a")
    one_arch = compose_cfg([*FAST, "callbacks=[default,early_stopping]", "experiment=retrain_tiny",
                            f"arch={tiny_arch_file(tmp_path)}"], tmp_path / "b")
    assert supernet.callbacks.early_stopping.monitor == "val/largest/top1"
    assert one_arch.callbacks.early_stopping.monitor == "val/top1"


def _search_hydra(tmp_path: Path, *overrides: str):
    from hydra.core.hydra_config import HydraConfig

    cfg = compose_cfg(list(overrides), tmp_path, config_name="search")
    HydraConfig.instance().set_config(cfg)
    return cfg


@pytest.mark.parametrize("overrides, experiment, epochs, data", [
    ([], "retrain_tiny", 3, "FashionMNISTDataModule"),  # the embedded default: its short recipe, not 300 epochs
    (["experiment=supernet_t", "data.root=/data/imagenet"], "retrain_t", 300, "ImageNetDataModule"),
    (["data=cifar10", "space=wide"], "retrain_tiny", 3, "CIFARDataModule"),
])
def test_the_printed_next_step_is_the_retraining_that_fits_the_search(tmp_path, overrides, experiment, epochs, data):
    from s3.search.arch_search import retrain_command

    _search_hydra(tmp_path / "search", *overrides)
    command = retrain_command(tmp_path / "top1.yaml")
    assert command.startswith(f"python train.py experiment={experiment} arch={tmp_path / 'top1.yaml'}")
    printed = command.split()[2:]
    cfg = compose_cfg(printed, tmp_path / "retrain")  # the printed command's own config
    assert cfg.trainer.max_epochs == epochs and cfg.data._target_.endswith(data)
    assert cfg.model._target_.endswith("StandaloneModule") and cfg.data.max_train is None
    assert all(o in printed for o in overrides if not o.startswith("experiment="))


@pytest.mark.slow  # a whole entry-point process (make test-fast skips it)
def test_logger_null_works_as_the_template_writes_it(tmp_path):
    from s3.cli import null_as_none

    assert null_as_none(["train.py", "logger=null", "callbacks=null", "debug=null", "seed=1", "arch=null"]) == \
        ["train.py", "logger=none", "callbacks=none", "~debug", "seed=1", "arch=null"]
    run = _entry("train.py", "logger=null", "--cfg", "job", cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    assert OmegaConf.create(run.stdout).logger == {}


# -- one line, exit 2, before any work ---------------------------------------------------------------
def test_an_online_wandb_logger_without_a_key_or_a_server_is_one_line(tmp_path, capsys, monkeypatch):
    from s3.train import prepare

    (tmp_path / "netrc").write_text("")
    monkeypatch.setenv("NETRC", str(tmp_path / "netrc"))
    monkeypatch.setenv("WANDB_MODE", "online")
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    cfg = compose_cfg([*FAST, "logger=wandb"], tmp_path / "run")
    err = user_error(capsys, prepare, cfg)
    assert "no W&B API key" in err and "wandb login" in err and "WANDB_MODE=offline" in err and "wandb sync" in err
    assert not (tmp_path / "run").exists()  # refused before the run directory was claimed
    monkeypatch.setenv("WANDB_API_KEY", "0" * 40)
    monkeypatch.setenv("WANDB_BASE_URL", "http://127.0.0.1:9")  # nothing listens on the discard port here
    err = user_error(capsys, prepare, cfg)
    assert "127.0.0.1:9 cannot be reached" in err and "logger.wandb.offline=true" in err
    monkeypatch.setenv("WANDB_MODE", "offline")  # offline needs neither
    from s3.config import check_wandb

    check_wandb(cfg)


def test_a_missing_cifar_is_one_line_and_nothing_is_downloaded_unasked(tmp_path, capsys, monkeypatch):
    import torchvision

    from s3.train import prepare

    def no_download(*args, download=False, **kwargs):
        assert not download, "downloaded without data.download=true"
        raise RuntimeError("Dataset not found or corrupted.")

    monkeypatch.setattr(torchvision.datasets, "CIFAR10", no_download)
    cfg = compose_cfg([*FAST, "data=cifar10", f"data.root={tmp_path / 'nowhere'}"], tmp_path / "run")
    assert cfg.data.download is False
    err = user_error(capsys, prepare, cfg)
    assert f"data.root={tmp_path / 'nowhere'}" in err and "data.download=true" in err


@pytest.mark.parametrize("bound", ["nan", "inf", "-inf"])
def test_a_bound_that_is_not_a_finite_number_is_refused(tmp_path, capsys, bound):
    from s3.search.session import SearchSession

    cfg = compose_cfg([*FAST, f"constraints.macs.max={bound}"], tmp_path, config_name="search")
    assert f"constraints.macs.max={float(bound)!r}: must be a finite number" in user_error(capsys, SearchSession.open,
                                                                                           cfg)


def test_an_arch_or_space_file_holding_nan_is_refused(tmp_path):
    from s3.space import Arch, SearchSpace

    arch = OmegaConf.load(tiny_arch_file(tmp_path))
    arch.MLP_RATIO[0] = [float("nan")] * len(arch.MLP_RATIO[0])
    OmegaConf.save(arch, tmp_path / "nan.yaml")
    with pytest.raises(ValueError, match=r"mlp_ratios\[0\]\[0\]=nan: must be a number"):
        Arch.from_yaml(tmp_path / "nan.yaml")
    space = OmegaConf.load(SPACES / "tiny.yaml")
    space.stages[0].mlp_ratio = [2.0, math.nan]
    with pytest.raises(ValueError, match="nan is not a finite number"):
        SearchSpace.from_dict(OmegaConf.to_container(space))


def test_max_epochs_zero_is_recorded_as_not_trained_instead_of_finished(tmp_path, caplog):
    from s3.train import fit, prepare

    cfg = compose_cfg([*FAST, "trainer.max_epochs=0"], tmp_path / "run")
    with caplog.at_level(logging.WARNING, logger="s3.train"):
        fit(cfg, *prepare(cfg))
    assert not (tmp_path / "run" / "finished.json").exists()  # so supernet=latest never takes an untrained supernet
    assert "nothing was trained (trainer.max_epochs=0)" in caplog.text


def test_a_full_disk_under_the_log_file_gives_the_one_line_and_nothing_before_it(tmp_path, capsys):
    from s3.cli import fail, quiet_library_noise

    class FullDisk:
        def write(self, text):
            raise OSError(errno.ENOSPC, "No space left on device")

        def flush(self):
            raise OSError(errno.ENOSPC, "No space left on device")

    handler = logging.FileHandler(tmp_path / "run.log", delay=True)
    handler.stream = FullDisk()
    root, raise_exceptions = logging.getLogger(), logging.raiseExceptions
    root.addHandler(handler)
    try:
        quiet_library_noise()
        logging.getLogger("s3").warning("something")  # what any log line of the run meets on that disk
        with pytest.raises(SystemExit) as e:
            fail("the disk is full")
    finally:
        root.removeHandler(handler)
        logging.raiseExceptions = raise_exceptions
    err = capsys.readouterr().err
    assert e.value.code == 2 and err == "error: the disk is full\n", err


@pytest.mark.slow  # a whole entry-point process (make test-fast skips it)
def test_a_refused_start_leaves_no_empty_run_folder(tmp_path):
    run = _entry("train.py", f"paths.log_dir={tmp_path / 'logs'}", "data=cifar10",
                 f"data.root={tmp_path / 'nowhere'}", cwd=tmp_path)
    assert run.returncode == 2 and run.stderr.strip().splitlines()[-1].startswith("error: data.root="), run.stderr
    assert "Traceback" not in run.stderr
    assert not (tmp_path / "logs" / "train").exists()


# -- output a person reads ---------------------------------------------------------------------------
def test_rich_tables_are_never_cut_to_an_ellipsis(capsys, monkeypatch):
    import rich
    from rich.table import Table

    from s3.console import print_table, quiet_library_noise
    from s3.evaluate import images_per_second

    monkeypatch.setenv("COLUMNS", "80")
    table = Table()
    for name in ("a header that is long", "another header that is long", "a third header, long too", "fourth one"):
        table.add_column(name)
    table.add_row("CrossEntropyLoss", "SupernetModule", "SoftTargetCrossEntropy", "1,234,567")
    print_table(table)
    out = capsys.readouterr().out
    assert "…" not in out and "SoftTargetCrossEntropy" in out and "a third header, long too" in out
    saved = rich.get_console()
    try:
        quiet_library_noise()  # stdout is not a terminal here: Lightning's summary gets room for its columns
        assert rich.get_console().width >= 160
    finally:
        rich._console = saved
    assert images_per_second(0.42) == "0.42" and images_per_second(3.14159) == "3.14" and \
        images_per_second(2048.4) == "2,048"


def test_macs_are_called_macs_everywhere():
    from s3.search.evolution import EvolutionConfig
    from s3.search.report import RECORD_COLUMNS

    for preset in (ROOT / "conf" / "constraints").glob("*.yaml"):
        assert set(OmegaConf.load(preset)) == {"params", "macs", "latency_ms"}, preset
    assert "macs" in RECORD_COLUMNS and "flops" not in RECORD_COLUMNS
    with pytest.raises(ValueError, match=r"allowed \['params', 'macs', 'latency_ms'\]"):
        EvolutionConfig(pareto_cost="flops")


def test_the_sweep_summary_reads_the_sweep_directory_from_the_jobs_whole_config(tmp_path):
    from hydra.core.utils import JobReturn, JobStatus
    from hydra.types import RunMode
    from omegaconf import open_dict, read_write

    from s3.sweep import SweepSummary

    cfg = compose_cfg([*FAST, f"paths.log_dir={tmp_path}"], tmp_path)  # hydra.sweep.dir = ${paths.log_dir}/...
    with read_write(cfg.hydra), open_dict(cfg.hydra):
        cfg.hydra.mode, cfg.hydra.job.num = RunMode.MULTIRUN, 0
    sweep = Path(cfg.hydra.sweep.dir)
    (sweep / "0").mkdir(parents=True)
    job = JobReturn(overrides=["seed=1"], status=JobStatus.COMPLETED)
    job.hydra_cfg = OmegaConf.create({"hydra": OmegaConf.to_container(cfg.hydra)})  # as Hydra hands it: no paths
    SweepSummary().on_job_end(config=cfg, job_return=job)
    assert (sweep / "summary.md").is_file() and str(sweep).startswith(str(tmp_path))
    (sweep / ".submitit" / "%j").mkdir(parents=True)  # what submitit's local executor leaves
    SweepSummary().on_multirun_end(config=cfg)
    assert not (sweep / ".submitit" / "%j").exists()


def test_library_noise_is_filtered_at_one_place(caplog):
    import warnings

    import torch
    from timm.scheduler import CosineLRScheduler

    from s3.console import quiet_library_noise

    quiet_library_noise()
    with warnings.catch_warnings(record=True) as caught:
        warnings.warn("The number of training batches (4) is smaller than the logging interval", UserWarning,
                      stacklevel=1)
    assert caught == []
    with caplog.at_level(logging.INFO):
        CosineLRScheduler(torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1), t_initial=1)
        logging.getLogger("torch.utils.cpp_extension").warning("No CUDA runtime is found, using CUDA_HOME='/usr'")
        logging.getLogger("lightning.fabric.utilities.seed").info("Seed set to 42")
    assert caplog.records == []


def test_wandb_runs_outside_a_sweep_are_named_by_task_experiment_and_overrides(tmp_path):
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import open_dict, read_write

    from s3.run import build_loggers, run_name

    cfg = compose_cfg(["logger=wandb", "logger.wandb.offline=true", "experiment=retrain_tiny"], tmp_path)
    with read_write(cfg.hydra), open_dict(cfg.hydra):
        cfg.hydra.job.override_dirname = "arch=top1.yaml,experiment=retrain_tiny"
    HydraConfig.instance().set_config(cfg)
    assert run_name(cfg, "retrain") == "retrain arch=top1.yaml,experiment=retrain_tiny"
    assert run_name(cfg, "mine") == "mine"  # a name given with logger.wandb.name is kept
    with read_write(cfg.hydra), open_dict(cfg.hydra):
        cfg.hydra.job.override_dirname, cfg.hydra.runtime.choices.experiment = "seed=2", "tiny"
    HydraConfig.instance().set_config(cfg)
    assert run_name(cfg, cfg.task_name) == f"{cfg.task_name} tiny seed=2"
    (logger,) = build_loggers(cfg)
    assert logger._wandb_init["name"] == f"{cfg.task_name} tiny seed=2"
    assert "anonymous" not in logger._wandb_init  # W&B warns "the anonymous setting has no effect" at every run


def test_debug_profiler_profiles_without_anomaly_detection(tmp_path):
    cfg = compose_cfg(["debug=profiler"], tmp_path)
    assert cfg.trainer.profiler == "simple" and cfg.trainer.detect_anomaly is False


def test_test_true_says_which_split_it_evaluates():
    from s3.data import FashionMNISTDataModule
    from s3.data.imagenet import ImageNetDataModule

    assert "official test split, which is also the validation split" in FashionMNISTDataModule.test_split
    assert ImageNetDataModule.test_split.startswith("val/")


@pytest.mark.parametrize("overrides, request_", [
    ([], {"nodes": 1, "tasks_per_node": 1, "gpus_per_node": 0, "mem_gb": 16}),  # the CPU trainer asks for no GPU
    (["trainer=ddp", "trainer.devices=8", "trainer.num_nodes=4"],
     {"nodes": 4, "tasks_per_node": 8, "gpus_per_node": 8, "mem_gb": 480}),
    (["trainer=ddp_cpu"], {"nodes": 1, "tasks_per_node": 2, "gpus_per_node": 0, "mem_gb": 32}),
    (["trainer=gpu", "hydra.launcher.mem_gb=100", "hydra.launcher.timeout_min=60"],
     {"nodes": 1, "tasks_per_node": 1, "gpus_per_node": 1, "mem_gb": 100, "timeout_min": 60}),
])
def test_the_slurm_preset_follows_the_trainer(tmp_path, overrides, request_):
    cfg = compose_cfg(["hydra/launcher=slurm", *overrides], tmp_path)
    launcher = OmegaConf.to_container(cfg.hydra.launcher, resolve=True)
    assert {k: launcher[k] for k in request_} == request_


@pytest.mark.slow  # a whole entry-point process (make test-fast skips it)
def test_the_hydra_config_resolves_on_its_own(tmp_path):
    run = _entry("train.py", "hydra/launcher=slurm", "--cfg", "hydra", "--resolve", cwd=tmp_path)
    assert run.returncode == 0 and "gpus_per_node: 0" in run.stdout, run.stderr


@pytest.mark.slow  # a whole entry-point process (make test-fast skips it)
def test_the_help_lists_every_config_group_hydra_finds(tmp_path):
    out = _entry("train.py", "--help", cwd=tmp_path).stdout
    listed = dict(line.split(": ", 1) for line in out.split("== Configuration groups ==")[1].split("== Config ==")[0]
                  .splitlines() if ": " in line)
    for group in ("data", "space", "model", "trainer", "logger", "callbacks", "experiment", "debug", "constraints"):
        assert set(listed[group].split(", ")) == {p.stem for p in (ROOT / "conf" / group).glob("*.yaml")}, group


def test_plots_say_what_they_show(tmp_path, monkeypatch):
    from s3.constraints import Range
    from s3.search import report

    figures = {}
    monkeypatch.setattr(report, "_save", lambda fig, path: figures.setdefault(Path(path).name, fig))
    records = [{"params": 1e5 * i, "macs": 2e6 * i, "top1": 50.0 + i} for i in range(1, 8)]
    report.plot_pareto(tmp_path / "pareto.png", records, records[-3:], list(range(7)),
                       {"params": Range(None, None), "macs": Range(None, None)})
    report.plot_pareto(tmp_path / "nsga.png", records, records, None, {}, picked_by="params")
    report.plot_et_error(tmp_path / "et_error.png", [{"iteration": 0, "et_error": {"q": 30, "q_e": 31, "q_t": 29}}])

    def labels(fig):
        return [t.get_text() for ax in fig.axes if ax.get_legend() for t in ax.get_legend().get_texts()]

    assert "picks: the 3 highest top-1" in labels(figures["pareto.png"])
    assert "picks: the 7 archs of the accuracy/params front" in labels(figures["nsga.png"])
    assert figures["pareto.png"]._suptitle.get_text() == "7 evaluated archs: top-1 against params and MACs"
    assert "E-T Error" in figures["et_error.png"].axes[0].get_title()


def test_the_dimensions_plot_is_laid_out_for_reading(tmp_path):
    from PIL import Image

    from s3.search.et_error import DimensionFit, ETError
    from s3.search.report import plot_dimensions

    fits = [DimensionFit(stage, dim, (1, 2, 3), tuple(ETError(q_e=31 - i, q_t=29 - i, n=10, k=2) for i in range(3)),
                         slope=-1.0)
            for stage in range(4) for dim in ("depth", "embed_dim", "mlp_ratio", "num_heads", "window_size")]
    path = plot_dimensions(tmp_path / "dimensions.png", fits)
    width, height = Image.open(path).size
    assert width / height < 2.5 and height > 800, (width, height)


@pytest.mark.slow  # a whole entry-point process (make test-fast skips it)
def test_a_short_train_and_search_print_no_warning_that_carries_no_information(tmp_path):
    small = ["data.max_train=320", "data.max_val=128", "data.batch_size=32", "data.search_per_class=4",
             "trainer.max_epochs=1", f"paths.log_dir={tmp_path / 'logs'}"]
    train = _entry("train.py", *small, f"hydra.run.dir={tmp_path / 'supernet'}", cwd=tmp_path)
    search = _entry("search.py", *small, f"supernet={tmp_path / 'supernet' / 'checkpoints' / 'last.ckpt'}",
                    "search.population=4", "search.generations=2", "search.parents=2", "search.mutations=1",
                    "search.crossovers=1", "search.top_k=1", f"hydra.run.dir={tmp_path / 'search'}", cwd=tmp_path)
    for run in (train, search):
        assert run.returncode == 0, run.stderr
        console = (run.stdout + run.stderr).lower()
        for noise in ("warning", "warn(", "tip", "no cuda runtime", "seed set to", "will have no effect",
                      "loading `train_dataloader`", "…"):
            assert noise not in console, (noise, console)


def test_a_bound_written_as_yaml_1_1_text_still_counts():
    """PyYAML reads `7.5e5` as the string '7.5e5' (YAML 1.1 wants `7.5e+5`): a bound read that way counts."""
    import yaml

    from s3.constraints import Constraints
    from s3.space import SearchSpace

    bounds = yaml.safe_load("params: {min: 7.5e5, max: 1.0e6}")["params"]
    assert bounds["min"] == "7.5e5"
    c = Constraints(SearchSpace.from_yaml(SPACES / "tiny.yaml"), bounds)
    assert (c.ranges["params"].min, c.ranges["params"].max) == (7.5e5, 1e6)
    with pytest.raises(ValueError, match=r"constraints.params.max='fast': must be a finite number"):
        Constraints(SearchSpace.from_yaml(SPACES / "tiny.yaml"), {"max": "fast"})


def test_a_search_phase_logs_its_progress_where_the_output_is_a_file(caplog):
    import io

    from rich.console import Console

    from s3.search.progress import progress_bar

    with caplog.at_level(logging.INFO, logger="s3.search.progress"):
        with progress_bar("evolution search", 40, console=Console(file=io.StringIO())) as advance:
            for _ in range(40):
                advance(1)
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 10 and lines[0].startswith("evolution search: 4/40") and lines[-1].startswith(
        "evolution search: 40/40")
