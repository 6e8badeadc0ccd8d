"""The GPU pre-flight (s3/memory.py): the step's memory is a line in the batch, and a batch that
cannot fit is one line naming the batch and the checkpointing that would; on a CPU nothing probes."""

from __future__ import annotations

import pytest

from s3.memory import StepMemory, check_fits

GiB = 2**30


def test_the_steps_memory_is_the_least_squares_line_through_the_probes_plus_the_optimizer_state():
    m = StepMemory.fit({2: 3 * GiB + 2 * 0.5 * GiB, 4: 3 * GiB + 4 * 0.5 * GiB}, optimizer_bytes=1 * GiB)
    assert (m.fixed, m.per_image) == (pytest.approx(4 * GiB), pytest.approx(0.5 * GiB))
    assert m.at(128) == pytest.approx(68 * GiB)
    assert m.largest_batch(20 * GiB) == 32
    with pytest.raises(ValueError, match="two batches"):
        StepMemory.fit({2: 1.0})


def test_a_batch_that_cannot_fit_is_one_line_with_the_batch_and_the_checkpointing_that_would():
    plain, checkpointed = StepMemory(6 * GiB, 0.6 * GiB), StepMemory(6 * GiB, 0.15 * GiB)
    check_fits(plain, 100, 80 * GiB, "NVIDIA H100")  # 66 GiB of 73.6 usable: fits
    with pytest.raises(ValueError) as e:
        check_fits(plain, 128, 80 * GiB, "NVIDIA H100", checkpointed)
    message = str(e.value)
    assert "\n" not in message
    assert message.startswith("data.batch_size=128: the training step needs about 82.8 GiB per device")
    assert "NVIDIA H100 has 80.0 GiB (92% usable): data.batch_size=112 fits" in message
    assert "or model.net.grad_checkpointing=true (25.2 GiB at data.batch_size=128)" in message
    with pytest.raises(ValueError, match="still too much: data.batch_size=450 fits with it"):
        check_fits(StepMemory(6 * GiB, 2 * GiB), 500, 80 * GiB, "GPU", checkpointed)


def test_on_a_cpu_the_pre_flight_probes_nothing(tmp_path, monkeypatch):
    import s3.memory
    from s3.train import prepare
    from tests.helpers import FAST, compose_cfg

    monkeypatch.setattr(s3.memory, "probe", lambda *a, **k: pytest.fail("probed on a CPU"))
    prepare(compose_cfg(FAST, tmp_path))
