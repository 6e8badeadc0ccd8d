"""A search run as a whole: resume after an interruption or a kill (arch and space search), the
Fabric and strategy it builds from the trainer config, one process against two, bad input and
supernets refused before any work, multirun sweeps and W&B."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from s3.search.evaluator import CandidateEvaluator
from s3.search.evolution import Evolution
from s3.search.session import SearchSession
from tests.conftest import ROOT
from tests.helpers import FAST, ONE_SUPERNET, SMALL, compose_cfg, user_error
from tests.helpers import csv_rows as _rows
from tests.helpers import run_search as _search


# -- resume --------------------------------------------------------------------------------------------
def test_search_resume_equals_uninterrupted(tmp_path, supernet_ckpt, monkeypatch):
    args = ["search=evolution", f"supernet={supernet_ckpt}", *SMALL]
    _search(tmp_path / "full", *args)

    measure = CandidateEvaluator.measure
    original = Evolution.run

    def interrupted(self, on_generation_end=None, progress=None):
        def stop(e):
            on_generation_end(e)
            if e.generation == 2:
                raise KeyboardInterrupt
        return original(self, stop, progress)

    monkeypatch.setattr(Evolution, "run", interrupted)
    with pytest.raises(KeyboardInterrupt):
        _search(tmp_path / "resumed", *args)
    assert not (tmp_path / "resumed" / "result.json").exists()
    monkeypatch.setattr(Evolution, "run", original)
    with pytest.raises(ValueError, match=r"holds a search started with other settings "
                                         r"\(constraints\.params\.max: None there, 900000\.0 here\)"):
        _search(tmp_path / "resumed", *args, "constraints.params.max=9e5")
    measured = []
    monkeypatch.setattr(CandidateEvaluator, "measure",
                        lambda self, arch, split=None: measured.append(split) or measure(self, arch, split))
    _search(tmp_path / "resumed", *args)  # the identical command continues, as a requeued job would
    monkeypatch.setattr(CandidateEvaluator, "measure", measure)
    assert sum(split is None for split in measured) == 6  # generation 2 only (the picks' validation passes a split)
    for name in ("archs.csv", "history.csv", "picks.csv"):
        assert _rows(tmp_path / "resumed" / name) == _rows(tmp_path / "full" / name), name
    with pytest.raises(ValueError, match=r"holds a finished search \(result.json\); pass overwrite=true"):
        _search(tmp_path / "resumed", *args)
    _search(tmp_path / "resumed", *args, "overwrite=true")  # afresh: the same result again
    assert _rows(tmp_path / "resumed" / "archs.csv") == _rows(tmp_path / "full" / "archs.csv")


def test_a_knob_added_later_leaves_the_identity_of_runs_at_its_neutral_value(tmp_path):
    """search.confirm=false is how space searches ran before the knob existed: their recorded
    identity (without it) still matches with it, while the default (confirm on) is another search,
    and continuing such a run without the setting names it."""
    from s3.run import SEARCH, RunDir
    from s3.search.configs import search_config
    from s3.search.session import search_identity
    from tests.helpers import compose_cfg

    def identity(*overrides):
        cfg = compose_cfg(["search=space", *overrides], tmp_path, config_name="search")
        return search_identity(cfg, search_config(cfg.search), None)

    assert identity()["search"]["confirm"] is True and identity() == identity("search.confirm=true")
    assert "confirm" not in identity(ONE_SUPERNET)["search"]
    run = RunDir(tmp_path / "run", SEARCH)  # a run recorded before the knob, continued under the default
    run.path.mkdir()
    run.save_identity(identity(ONE_SUPERNET))
    with pytest.raises(ValueError, match=r"other settings \(search\.confirm: unset there, True here\)"):
        run.check_identity(identity(), ("seed", "space", "data", "search"))
    run.check_identity(identity(ONE_SUPERNET), ("seed", "space", "data", "search"))  # as it ran: it continues


@pytest.mark.slow  # a whole entry-point process (make test-fast skips it)
def test_a_killed_search_process_continues_on_the_identical_command(tmp_path, supernet_ckpt):
    import signal
    import time

    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    args = [sys.executable, str(ROOT / "search.py"), *FAST, "search=evolution", f"supernet={supernet_ckpt}", *SMALL,
            "search.generations=6"]

    def command(out: Path) -> list[str]:
        return [*args, f"hydra.run.dir={out}"]

    full, part = tmp_path / "full", tmp_path / "part"
    _search(full, "search=evolution", f"supernet={supernet_ckpt}", *SMALL, "search.generations=6")  # in-process
    proc = subprocess.Popen(command(part), cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    state, deadline = part / "search_state.json", time.time() + 240
    while not (state.is_file() and json.loads(state.read_text())["generation"] >= 2) and time.time() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)  # mid-search: SLURM's time limit or preemption
    assert proc.wait(60) != 0 and not (part / "result.json").exists()
    done = subprocess.run(command(part), cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "continuing the search" in (part / "search.log").read_text()
    for name in ("archs.csv", "history.csv", "picks.csv"):
        assert _rows(part / name) == _rows(full / name), name


@pytest.mark.slow  # a whole entry-point process (make test-fast skips it)
def test_space_search_stopped_mid_pool_and_mid_training_continues_and_gives_each_training_its_own_wandb_run(
        tmp_path, monkeypatch):
    from s3.lit.supernet import SupernetModule

    monkeypatch.setenv("WANDB_SILENT", "true")
    args = ["search=space", "search.iterations=2", "search.samples=12", "search.top_k=3", "search.threshold=0.0",
            ONE_SUPERNET, "logger=wandb", "logger.wandb.offline=true", "callbacks.step_checkpoint.every_n_train_steps=5"]
    steps = {"iter1": 0, "stop_at": None}
    training_step = SupernetModule.training_step

    def stepped(self, batch, batch_idx):
        if "/iter1/" in str(self.trainer.checkpoint_callback.dirpath):
            steps["iter1"] += 1
            if steps["iter1"] == steps["stop_at"]:
                raise KeyboardInterrupt  # a stop in the middle of iteration 1's supernet training
        return training_step(self, batch, batch_idx)

    monkeypatch.setattr(SupernetModule, "training_step", stepped)
    calls = {"n": 0, "stop_at": None}
    measure = CandidateEvaluator.measure

    def counted(self, arch, split=None):
        calls["n"] += 1
        if calls["n"] == calls["stop_at"]:
            raise KeyboardInterrupt  # a stop in the middle of iteration 0's E-T Error pool
        return measure(self, arch, split)

    monkeypatch.setattr(CandidateEvaluator, "measure", counted)
    full = _search(tmp_path / "full", *args)
    full_calls, calls["n"], calls["stop_at"] = calls["n"], 0, 6
    assert full["iterations"] == 2
    with pytest.raises(KeyboardInterrupt):
        _search(tmp_path / "part", *args)
    assert not (tmp_path / "part" / "result.json").exists() and (tmp_path / "part" / "iter0" / "pool_state.json").is_file()
    calls["n"], calls["stop_at"], steps["iter1"], steps["stop_at"] = 0, None, 0, 8
    with pytest.raises((KeyboardInterrupt, SystemExit)):  # Lightning turns the interrupt into exit 1
        _search(tmp_path / "part", *args)
    assert steps["iter1"] == 8 and not (tmp_path / "part" / "iter1" / "pool_state.json").exists()
    steps["iter1"], steps["stop_at"] = 0, None
    assert _search(tmp_path / "part", *args) == {**full, "searched_space": str(tmp_path / "part" / "searched_space.yaml")}
    assert steps["iter1"] == 5  # the training continued from step 5's last.ckpt, not from its start
    assert calls["n"] == full_calls - 5  # the 5 archs scored before the stop are not scored again
    for name in ("iter0/archs.csv", "iter1/archs.csv", "iter0/et_error.csv"):
        assert _rows(tmp_path / "part" / name) == _rows(tmp_path / "full" / name), name
    # one W&B run per training and one for the search's summary, none merged into another
    runs = sorted(p.relative_to(tmp_path / "full").parts[0] for p in (tmp_path / "full").glob("**/wandb/offline-run-*"))
    assert runs == ["iter0", "iter1", "wandb"]
    # the summary run holds, besides Q / Q_e / Q_t, every choice's E-T Error and decision and every scored arch
    media = next((tmp_path / "part" / "wandb").glob("offline-run-*")) / "files" / "media" / "table" / "space"
    choices = json.loads(next(media.glob("choices_*.table.json")).read_text())
    archs = json.loads(next(media.glob("archs_*.table.json")).read_text())
    expected = [_rows(tmp_path / "part" / f"iter{t}" / "et_error.csv") for t in (0, 1)]
    assert len(choices["data"]) == sum(map(len, expected)) and choices["columns"][:4] == ["iteration", "stage",
                                                                                           "dimension", "choice"]
    assert [row[choices["columns"].index("decision")] for row in choices["data"]] == [
        r["decision"] for rows in expected for r in rows]
    assert len(archs["data"]) == 2 * 12 and {row[0] for row in archs["data"]} == {0, 1}


# -- devices -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("overrides, strategy, world, backend", [
    (["trainer=cpu"], "SingleDeviceStrategy", 1, None),
    (["trainer=cpu", "trainer.devices=auto"], "SingleDeviceStrategy", 1, None),
    (["trainer=ddp_cpu"], "DDPStrategy", 2, "gloo"),
    (["trainer=ddp_cpu", "trainer.num_nodes=2"], "DDPStrategy", 4, "gloo"),
    (["trainer=cpu", "trainer.devices=2", "+trainer.strategy=ddp_spawn"], "DDPStrategy", 2, None),
    (["trainer=cpu", "trainer.devices=3", "+trainer.strategy=ddp_find_unused_parameters_true"], "DDPStrategy", 3, None),
    (["trainer=ddp_cpu", "trainer.strategy._target_=lightning.pytorch.strategies.FSDPStrategy"], "DDPStrategy", 2, None),
])
def test_the_search_fabric_follows_the_trainer_config(tmp_path, overrides, strategy, world, backend):
    from s3.search.devices import build_fabric

    fabric = build_fabric(compose_cfg([*FAST, *overrides], tmp_path, config_name="search"))
    assert type(fabric.strategy).__name__ == strategy and fabric.world_size == world
    if backend:
        assert fabric.strategy._process_group_backend == backend
    if "+trainer.strategy=ddp_spawn" in overrides:
        assert fabric.strategy._start_method == "spawn"


def test_a_strategy_fabric_cannot_take_is_refused_before_anything_is_written(tmp_path):
    cfg = compose_cfg([*FAST, "search=random", "+trainer.strategy=ddp_sometimes"], tmp_path / "run", config_name="search")
    with pytest.raises(ValueError, match=r"trainer.strategy=ddp_sometimes: allowed 'auto', \[.*'ddp_spawn'"):
        SearchSession.open(cfg)
    assert not (tmp_path / "run").exists() or not any((tmp_path / "run").iterdir())


def _two_runs(tmp_path: Path, *overrides: str, one: tuple = (), two: tuple = ()) -> tuple[Path, Path]:
    """The same search.py command on one process and on two gloo processes."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    outs = []
    for name, trainer, extra in (("one", "cpu", one), ("two", "ddp_cpu", two)):
        out = tmp_path / name
        cmd = [sys.executable, str(ROOT / "search.py"), *FAST, *overrides, *extra, f"trainer={trainer}",
               f"hydra.run.dir={out}"]
        proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr[-3000:]
        outs.append(out)
    return outs[0], outs[1]


def _scored(rows: list[dict]) -> list[tuple]:
    return [(r["arch"], float(r["top1"]), round(float(r["loss"]), 4), int(r["params"]), int(r["macs"])) for r in rows]


@pytest.mark.slow  # whole entry-point processes (make test-fast skips it)
@pytest.mark.parametrize("method", ["random", "evolution"])
def test_an_arch_search_on_two_processes_equals_one(tmp_path, supernet_ckpt, method):
    """The ranks score their share of each chunk of candidates and gather them: the same records,
    the same generations and the same found arch as one process (losses to float rounding)."""
    one, two = _two_runs(tmp_path, f"search={method}", f"supernet={supernet_ckpt}", *SMALL)
    assert len(_rows(one / "archs.csv")) == 18
    assert _scored(_rows(two / "archs.csv")) == _scored(_rows(one / "archs.csv"))
    assert _rows(two / "history.csv") == _rows(one / "history.csv")
    picks = [[(p["arch"], p["top1"], p["val_top1"]) for p in json.loads((d / "result.json").read_text())["picks"]]
             for d in (one, two)]
    assert picks[1] == picks[0] and len(picks[0]) == 2


@pytest.mark.slow  # whole entry-point processes (make test-fast skips it)
def test_a_space_search_on_two_processes_equals_one_with_the_global_batch(tmp_path):
    """Two gloo ranks x batch 16 train each iteration's supernet as one process x batch 32 does
    (the same samples per step, averaged gradients), then score the pool in shares: the same
    E-T Errors, decisions and searched space. Under the same per-rank batch the two would differ
    by design (twice the global batch), which is why the batch is halved here."""
    exact = ["data.augment=false", "trainer.precision=32-true", "search=space", "search.iterations=2",
             "search.samples=12", "search.top_k=3", "search.threshold=0.0", ONE_SUPERNET]
    one, two = _two_runs(tmp_path, *exact, one=("data.batch_size=32",), two=("data.batch_size=16",))
    a, b = (json.loads((d / "search_state.json").read_text())["iterations"] for d in (one, two))
    assert len(a) == len(b) == 2 and a[0]["moved"] > 0
    for x, y in zip(a, b):
        assert (y["space"], y["next_space"], y["moved"]) == (x["space"], x["next_space"], x["moved"])
        assert [d["action"] for d in y["decisions"]] == [d["action"] for d in x["decisions"]]
        assert y["et_error"] == pytest.approx(x["et_error"], abs=1e-6)
        assert _scored(_rows(two / f"iter{x['iteration']}" / "archs.csv")) == \
            _scored(_rows(one / f"iter{x['iteration']}" / "archs.csv"))
    assert (two / "searched_space.yaml").read_text() == (one / "searched_space.yaml").read_text()


@pytest.mark.slow  # whole entry-point processes (make test-fast skips it)
def test_a_space_search_scoring_in_forked_workers_equals_one_process(tmp_path):
    """`search.workers=2` forks its scoring processes after each iteration's supernet trained in
    this process: every pool's records, the E-T Errors and the searched space equal, bit for bit."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    search = ["search=space", "search.iterations=2", "search.samples=12", "search.top_k=3", "search.threshold=0.0",
              ONE_SUPERNET]
    for name, workers in (("one", 1), ("forked", 2)):
        cmd = [sys.executable, str(ROOT / "search.py"), *FAST, *search, f"search.workers={workers}",
               f"hydra.run.dir={tmp_path / name}"]
        proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr[-3000:]
    one, forked = (json.loads((tmp_path / d / "search_state.json").read_text())["iterations"] for d in ("one", "forked"))
    assert len(one) == 2 and one[0]["moved"] > 0 and forked == one
    for t in range(2):
        assert _rows(tmp_path / "forked" / f"iter{t}" / "archs.csv") == _rows(tmp_path / "one" / f"iter{t}" / "archs.csv")


# -- bad input -----------------------------------------------------------------------------------------
def _search_cli(tmp_path: Path, *overrides: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, str(ROOT / "search.py"), *FAST, f"hydra.run.dir={tmp_path}", *overrides]
    return subprocess.run(cmd, cwd=tmp_path.parent, env=env, capture_output=True, text=True, timeout=120)


@pytest.mark.slow  # a whole entry-point process (make test-fast skips it)
def test_unsatisfiable_constraints_fail_before_any_evaluation(tmp_path):
    proc = _search_cli(tmp_path / "bad", "constraints.params.max=1e5", "supernet=/nonexistent.ckpt")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "constraints.params=[-inf, 100k] cannot be met" in proc.stderr and "range over [2" in proc.stderr


@pytest.mark.parametrize("overrides, message", [
    (["search=space", "search.samples=5", "search.top_k=10"], "search.top_k=10: the top tier cannot exceed search.samples=5"),
    (["search=space", "search.batch_size=0"], "search.batch_size=0: must be >= 1"),
    (["search.batch_size=0"], "search.batch_size=0: must be >= 1"),
    (["data.batch_size=0"], "data.batch_size=0: must be >= 1"),
    (["search.workers=0"], "search.workers=0: must be >= 1"),
    (["search.workers=2", "trainer=ddp_cpu"], "search.workers=2: scoring processes serve a one-process CPU search"),
])
def test_bad_search_knobs_are_one_line_before_any_work(tmp_path, overrides, message, capsys):

    cfg = compose_cfg([*FAST, *overrides, "supernet=/nonexistent.ckpt"], tmp_path / "bad", config_name="search")
    assert message in user_error(capsys, SearchSession.open, cfg)  # in-process: what search.py runs before any work


def test_supernet_of_another_space_is_rejected(tmp_path, supernet_ckpt, capsys):

    cfg = compose_cfg([*FAST, "space=s3_t", f"supernet={supernet_ckpt}"], tmp_path / "bad", config_name="search")
    err = user_error(capsys, SearchSession.open, cfg)
    assert "trained on another space" in err and "img_size 224 != 32" in err
    cfg = compose_cfg([*FAST, f"paths.log_dir={tmp_path / 'empty'}"], tmp_path / "none", config_name="search")
    assert "Train one first (`python train.py`" in user_error(capsys, SearchSession.open, cfg)


def test_a_search_split_other_than_the_held_out_one_is_refused_even_for_a_copied_checkpoint(tmp_path, supernet_ckpt,
                                                                                           capsys):
    import shutil


    copied = tmp_path / "elsewhere" / "supernet.ckpt"  # no search_split.json beside it
    copied.parent.mkdir()
    shutil.copy(supernet_ckpt, copied)
    for ckpt in (supernet_ckpt, copied):  # in-process: what search.py runs before any work
        cfg = compose_cfg([*FAST, f"supernet={ckpt}", "data.search_per_class=5", *SMALL], tmp_path / "bad",
                          config_name="search")
        assert "the search split differs from the one held out" in user_error(capsys, SearchSession.open, cfg)
    cfg = compose_cfg([*FAST, f"supernet={copied}", "data.root=/nonexistent/fashion"], tmp_path / "nodata",
                      config_name="search")
    assert "Fashion-MNIST not found" in user_error(capsys, SearchSession.open, cfg)


# -- sweeps and W&B ------------------------------------------------------------------------------------
def test_wandb_offline_gets_the_evaluated_archs_table(tmp_path, supernet_ckpt, monkeypatch):
    monkeypatch.setenv("WANDB_SILENT", "true")
    out = tmp_path / "wandb"
    _search(out, f"supernet={supernet_ckpt}", *SMALL, "logger=wandb", "logger.wandb.offline=true")
    tables = list((out / "wandb").glob("offline-run-*/files/media/table/search/archs_*.table.json"))
    assert len(tables) == 1
    table = json.loads(tables[0].read_text())
    assert len(table["data"]) == 18 and table["columns"][:2] == ["rank", "top1"]
    picks = json.loads(next((out / "wandb").glob("offline-run-*/files/media/table/search/picks_*.table.json")).read_text())
    result = json.loads((out / "result.json").read_text())
    assert picks["columns"] == ["rank", "top1", "val_top1", "params", "macs", "arch"]
    assert [row[2] for row in picks["data"]] == [p["val_top1"] for p in result["picks"]] and len(picks["data"]) == 2
    run = tables[0].parents[4]  # offline-run-*/
    import time

    deadline = time.time() + 60  # the resolved config is logged (offline: in the run file, which W&B's
    while time.time() < deadline:  # service process may still be flushing when the run has ended)
        record = next(run.glob("run-*.wandb")).read_bytes()
        if b'"population":6,"generations":3' in record:
            break
        time.sleep(0.5)
    assert b'"population":6,"generations":3' in record and b"task_name" in record and b"constraints" in record
    plots = (run / "files" / "media" / "images" / "search" / "plots").glob("*.png")
    assert sorted(p.name.rsplit("_", 2)[0] for p in plots) == ["history", "pareto"]  # one key per figure


@pytest.mark.slow  # a whole entry-point process (make test-fast skips it)
def test_multirun_one_search_per_budget_finishes_its_feasible_jobs_and_summarises_them(tmp_path, supernet_ckpt):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, str(ROOT / "search.py"), "-m", *FAST, f"supernet={supernet_ckpt}", *SMALL,
           "constraints.params.max=1e5,6e5,9e5", f"hydra.sweep.dir={tmp_path}"]
    proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    # job 0 cannot be met on the tiny space: it is recorded, the others still run, the sweep exits 2
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert "error: 1 of 3 jobs failed: job 0 (constraints.params.max=100000.0): constraints.params=[-inf, 100k]" \
        in proc.stderr
    summary = _rows(tmp_path / "summary.csv")
    assert [(r["job"], r["status"]) for r in summary] == [("0", "failed"), ("1", "done"), ("2", "done")]
    assert "cannot be met" in json.loads((tmp_path / "0" / "failed.json").read_text())["error"]
    for job, budget in (("1", 6e5), ("2", 9e5)):
        rows = _rows(tmp_path / job / "archs.csv")
        assert rows and all(int(r["params"]) <= budget for r in rows)
        pick = json.loads((tmp_path / job / "result.json").read_text())["picks"][0]
        row = summary[int(job)]
        assert (row["arch"], int(row["params"]), int(row["macs"]), float(row["top1"])) == (
            pick["arch"], pick["params"], pick["macs"], round(pick["top1"], 2))
    assert (tmp_path / "summary.md").read_text().count("\n") == 2 + 3


def test_wandb_runs_of_a_sweep_are_named_by_job_and_overrides(tmp_path):
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode
    from omegaconf import open_dict, read_write

    from s3.run import build_loggers, run_name

    cfg = compose_cfg(["logger=wandb", "logger.wandb.offline=true", "seed=2"], tmp_path, config_name="search")
    with read_write(cfg.hydra), open_dict(cfg.hydra):
        cfg.hydra.mode, cfg.hydra.job.num, cfg.hydra.job.override_dirname = RunMode.MULTIRUN, 1, "seed=2"
        cfg.hydra.sweep.dir = str(tmp_path / "sweep")
    HydraConfig.instance().set_config(cfg)
    assert run_name(cfg, "search") == "search tiny [1] seed=2"
    (logger,) = build_loggers(cfg)
    assert logger._wandb_init["name"] == "search tiny [1] seed=2" and logger._wandb_init["group"] == "sweep"
    assert logger._wandb_init["tags"] == ["dev"]
