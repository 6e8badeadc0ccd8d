"""bench/standalone.py's cache of standalone runs: two benchmark processes that need the same run
(two study processes on disjoint search seeds can draw one arch) train it once; the other waits and
reads its result."""

from __future__ import annotations

import sys
import threading
import time

from s3.run import LOCK_FILE
from s3.space import SearchSpace
from tests.conftest import ROOT, SPACES

sys.path.insert(0, str(ROOT / "bench"))
import standalone  # noqa: E402


def test_one_run_needed_twice_at_once_is_trained_once(tmp_path, monkeypatch):
    calls = []

    def fake_train(cmd, cwd, stdout, stderr, env):  # train.py: writes its metrics after a while
        calls.append(cmd)
        out = next(a.split("=", 1)[1] for a in cmd if a.startswith("hydra.run.dir="))
        time.sleep(0.3)
        (tmp_path / out / "csv").mkdir(parents=True)
        (tmp_path / out / "csv" / "metrics.csv").write_text("epoch,val/top1\n0,81.25\n")
        (tmp_path / out / "finished.json").write_text("{}")
        return type("Done", (), {"returncode": 0})()

    monkeypatch.setattr(standalone.subprocess, "run", fake_train)
    arch = SearchSpace.from_yaml(SPACES / "tiny.yaml").smallest()
    results = []
    runs = [threading.Thread(target=lambda: results.append(
        standalone._run(arch, 0, standalone.Recipe(1, "200"), tmp_path, 1))) for _ in range(2)]
    for t in runs:
        t.start()
    for t in runs:
        t.join()
    assert len(calls) == 1
    assert [r["top1"] for r in results] == [81.25, 81.25]
    run_dir = next(p for p in (tmp_path / "1ep_200").iterdir() if p.is_dir())
    assert not (run_dir / LOCK_FILE).exists()  # train.py's own lock of its run dir: the cache's must not take it
