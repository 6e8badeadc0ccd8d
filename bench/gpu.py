"""One prepared GPU check (issue 44): what only a GPU shows, in at most 8 minutes on one GPU.

    python bench/gpu.py                       # on a GPU machine: rows to bench/results/gpu.csv
    python bench/gpu.py --mini --out DIR      # the CPU miniature (tiny sizes; make test runs it)

Parts, each writing its rows as it finishes (a run cut short keeps what it measured):
  1 correctness  supernet == extracted standalone (fp32); SDPA == explicit attention (values and
                 gradients); S3-T's geometry == timm's swin_s3_tiny_224 with the same weights
  2 steps        training step, bf16 autocast, batch 128 at 224: the supernet (a subnet sampled per
                 step, S3-T and S3-B spaces) against the same archs standalone, S3-T against timm's
                 Swin; images/s and peak memory; the largest subnet of each space at the preset batch
  3 compile      torch.compile on the standalone step (first call, steady speed); recompiles of the
                 supernet under per-step sampling
  4 search       candidates evaluated per second on 10,000 images at 224
  5 loader       the real path: train.py's data module and Lightning loop on a generated ImageFolder
                 of ImageNet-size JPEGs: the loader's images/s beside the step's
A summary of the ratios against the targets ends the run.
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from rows import append_row  # noqa: E402

from s3.models import S3Transformer, Supernet  # noqa: E402
from s3.models.transformer import WindowAttention  # noqa: E402
from s3.models.zoo import released_arch  # noqa: E402
from s3.space import Arch, SearchSpace  # noqa: E402

COLUMNS = ["device", "torch", "cuda", "mode", "part", "name", "value", "unit"]
SPACES = ROOT / "conf" / "space"


@dataclass(frozen=True)
class Mode:
    name: str
    device: str
    batch: int
    img: int
    spaces: tuple[str, ...]      # conf/space/<name>.yaml of the supernet steps
    presets: tuple[int, ...]     # the presets' batch per device, for the largest subnets' memory
    steps: int                   # timed steps per model (after 3 warm-up steps)
    search_images: int
    loader_images: int           # JPEGs generated for part 5
    jpeg_size: tuple[int, int]
    budget_s: float              # the whole run's time budget
    compile_backend: str         # the miniature compiles with dynamo alone ("eager"): the path, not the speed

    @property
    def autocast(self):
        if self.device == "cuda":
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return contextlib.nullcontext()


FULL = Mode("full", "cuda", 128, 224, ("s3_t", "s3_b"), (128, 128), 10, 10_000, 4096, (500, 375), 480, "inductor")
MINI = Mode("mini", "cpu", 4, 32, ("tiny", "tiny"), (8, 8), 2, 64, 48, (40, 36), 600, "eager")


class Recorder:
    def __init__(self, path: Path, mode: Mode):
        self.path, self.mode, self.figures = path, mode, {}
        cuda = torch.version.cuda or ""
        name = torch.cuda.get_device_name() if mode.device == "cuda" else "cpu"
        self.common = {"device": name, "torch": torch.__version__, "cuda": cuda, "mode": mode.name}
        self.start = time.perf_counter()

    def __call__(self, part: str, name: str, value: float, unit: str) -> None:
        self.figures[(part, name)] = value
        append_row(self.path, COLUMNS, {**self.common, "part": part, "name": name, "value": value, "unit": unit})
        print(f"  {part:12s} {name:58s} {value:12.4g} {unit}", flush=True)

    def left(self) -> float:
        return self.mode.budget_s - (time.perf_counter() - self.start)


def sync(mode: Mode) -> None:
    if mode.device == "cuda":
        torch.cuda.synchronize()


def peak_mb(mode: Mode) -> float:
    return torch.cuda.max_memory_allocated() / 2**20 if mode.device == "cuda" else float("nan")


def reset_peak(mode: Mode) -> None:
    if mode.device == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


# -- 1. correctness ----------------------------------------------------------------------------------
def correctness(mode: Mode, rec: Recorder) -> None:
    space = SearchSpace.from_yaml(SPACES / f"{mode.spaces[0]}.yaml")
    supernet = Supernet(space, num_classes=10, drop_path_rate=0.0).to(mode.device).eval()
    x = torch.randn(2, 3, space.img_size, space.img_size, device=mode.device)
    worst = 0.0
    for seed in range(3):
        arch = space.sample(torch.Generator().manual_seed(seed))
        with torch.no_grad():
            worst = max(worst, float((supernet(x, arch) - supernet.extract(arch).to(mode.device).eval()(x)).abs().max()))
    rec("correctness", "supernet vs extracted standalone, max |logit diff| (fp32)", worst, "abs")
    arch = space.sample(torch.Generator().manual_seed(7))
    model = supernet.extract(arch).to(mode.device).train()
    out, grads = {}, {}
    for fused in (False, True):
        WindowAttention.fused_attn = fused
        model.zero_grad()
        logits = model(x)
        logits.square().mean().backward()
        out[fused] = logits.detach()
        grads[fused] = torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None])
    WindowAttention.fused_attn = None
    rec("correctness", "SDPA vs explicit attention, max |logit diff| (fp32)", float((out[True] - out[False]).abs().max()), "abs")
    rec("correctness", "SDPA vs explicit attention, max |grad diff| / max |grad|",
        float((grads[True] - grads[False]).abs().max() / grads[False].abs().max()), "rel")
    import timm

    from s3.models.checkpoint import to_native

    reference = timm.create_model("swin_s3_tiny_224").to(mode.device).eval()
    ours = S3Transformer(released_arch("s3_tiny")).to(mode.device).eval()
    ours.load_state_dict(to_native(reference.state_dict()), strict=False)
    image = torch.randn(1, 3, 224, 224, device=mode.device)
    with torch.no_grad():
        diff = float((ours(image) - reference(image)).abs().max())
    rec("correctness", "S3-T vs timm swin_s3_tiny_224, same weights, max |logit diff|", diff, "abs")


# -- 2. training steps -------------------------------------------------------------------------------
def step_rate(mode: Mode, model: torch.nn.Module, image_size: int, archs: list[Arch] | None = None,
              batch: int | None = None) -> tuple[float, float]:
    """Images/s of AdamW training steps (bf16 autocast on CUDA) and the peak memory (MiB);
    `archs`: a supernet, one arch per step in turn."""
    batch = batch or mode.batch
    model = model.to(mode.device).train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    x = torch.randn(batch, 3, image_size, image_size, device=mode.device)
    y = torch.randint(0, 10, (batch,), device=mode.device)
    reset_peak(mode)

    def step(i: int) -> None:
        with mode.autocast:
            logits = model(x, archs[i % len(archs)]) if archs else model(x)
            loss = F.cross_entropy(logits.float(), y)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    for i in range(3):
        step(i)
    sync(mode)
    start = time.perf_counter()
    for i in range(mode.steps):
        step(i)
    sync(mode)
    rate = batch * mode.steps / (time.perf_counter() - start)
    return rate, peak_mb(mode)


def steps(mode: Mode, rec: Recorder) -> None:
    import timm

    for name in dict.fromkeys(mode.spaces):
        space = SearchSpace.from_yaml(SPACES / f"{name}.yaml")
        archs = [space.sample(torch.Generator().manual_seed(s)) for s in range(4)]
        supernet = Supernet(space, num_classes=10, drop_path_rate=0.0)
        try:
            rate, peak = step_rate(mode, supernet, space.img_size, archs)
            rec("steps", f"{name}: supernet, a subnet per step (4 archs in turn), images/s", rate, "images/s")
            rec("steps", f"{name}: supernet peak memory", peak, "MiB")
            ratios = []
            for arch in archs:
                sup, _ = step_rate(mode, supernet, space.img_size, [arch])
                alone, _ = step_rate(mode, supernet.extract(arch), space.img_size)
                ratios.append(sup / alone)
            rec("steps", f"{name}: supernet / standalone step throughput, median of 4 archs",
                statistics.median(ratios), "x")
        except torch.OutOfMemoryError:
            rec("steps", f"{name}: supernet at batch {mode.batch}: out of memory", float("inf"), "MiB")
        del supernet
        reset_peak(mode)
        if rec.left() < 0:
            return
    # S3-T's standalone step against timm's Swin of the same arch (full) or of a small equal arch (mini)
    if mode.name == "full":
        ours, img = S3Transformer(released_arch("s3_tiny"), num_classes=1000), 224
        theirs = {"swin_s3_tiny_224": timm.create_model("swin_s3_tiny_224"),
                  "swin_tiny_patch4_window7_224": timm.create_model("swin_tiny_patch4_window7_224")}
    else:
        arch = Arch.create([1] * 4, [32, 64, 128, 256], [4.0] * 4, [1, 2, 4, 8], [2] * 4)
        ours, img = S3Transformer(arch, img_size=32, patch_size=4, num_classes=10), 32
        small = dict(img_size=32, window_size=2, num_classes=10, embed_dim=32, depths=(1, 1, 1, 1), num_heads=(1, 2, 4, 8))
        theirs = {n: timm.create_model(n, **small) for n in ("swin_s3_tiny_224", "swin_tiny_patch4_window7_224")}
    mine, peak = step_rate(mode, ours, img)
    rec("steps", "S3-T standalone step, images/s", mine, "images/s")
    rec("steps", "S3-T standalone peak memory", peak, "MiB")
    for name, model in theirs.items():
        rate, peak = step_rate(mode, model, img)
        rec("steps", f"timm {name} step, images/s", rate, "images/s")
        rec("steps", f"S3-T standalone / timm {name} step throughput", mine / rate, "x")
    for name, batch in zip(dict.fromkeys(mode.spaces), mode.presets):
        space = SearchSpace.from_yaml(SPACES / f"{name}.yaml")
        for checkpointing in (False, True):
            model = S3Transformer(space.largest(), img_size=space.img_size, patch_size=space.patch_size)
            model.set_grad_checkpointing(checkpointing)
            label = f"{name}: largest subnet at batch {batch}{' with activation checkpointing' if checkpointing else ''}"
            if mode.device == "cuda":  # the pre-flight's estimate (s3/memory.py) beside the measured peak
                from s3.memory import probe

                estimate = probe(model, space.img_size, 3, torch.device("cuda"), lambda: mode.autocast).at(batch)
                rec("steps", f"{label}, the pre-flight probe's estimate", estimate / 2**20, "MiB")
                model.cpu()
            try:
                _, peak = step_rate(mode, model, space.img_size, batch=batch)
            except torch.OutOfMemoryError:
                peak = float("inf")
            rec("steps", f"{label}, peak memory", peak, "MiB")
            del model
            reset_peak(mode)


# -- 3. torch.compile ---------------------------------------------------------------------------------
def compiled(mode: Mode, rec: Recorder) -> None:
    space = SearchSpace.from_yaml(SPACES / f"{mode.spaces[0]}.yaml")
    arch = space.sample(torch.Generator().manual_seed(0))
    eager, _ = step_rate(mode, S3Transformer(arch, img_size=space.img_size, patch_size=space.patch_size), space.img_size)
    model = S3Transformer(arch, img_size=space.img_size, patch_size=space.patch_size)
    model.compile(backend=mode.compile_backend)
    start = time.perf_counter()
    x = torch.randn(mode.batch, 3, space.img_size, space.img_size, device=mode.device)
    model.to(mode.device).train()
    with mode.autocast:
        model(x).float().mean().backward()
    sync(mode)
    rec("compile", "standalone: first compiled step", time.perf_counter() - start, "s")
    fast, _ = step_rate(mode, model, space.img_size)
    rec("compile", "standalone: compiled / eager step throughput", fast / eager, "x")
    import torch._dynamo as dynamo
    from torch._dynamo.utils import counters

    dynamo.reset()

    counters.clear()
    supernet = Supernet(space, num_classes=10, drop_path_rate=0.0).to(mode.device).train()
    supernet.compile(backend=mode.compile_backend)
    archs = [space.sample(torch.Generator().manual_seed(s)) for s in range(4)]
    for arch in archs:
        with mode.autocast:
            supernet(x, arch).float().mean().backward()
    rec("compile", "supernet: graphs compiled for 4 sampled subnets", counters["stats"]["unique_graphs"], "graphs")
    dynamo.reset()


# -- 4. search engine ---------------------------------------------------------------------------------
def search(mode: Mode, rec: Recorder) -> None:
    from s3.constraints import Constraints
    from s3.search.evaluator import CachedSplit, CandidateEvaluator

    space = SearchSpace.from_yaml(SPACES / f"{mode.spaces[0]}.yaml")
    images = torch.randn(mode.search_images, 3, space.img_size, space.img_size, dtype=torch.bfloat16)
    split = CachedSplit(images, torch.randint(0, 10, (mode.search_images,)))
    supernet = Supernet(space, num_classes=10).to(mode.device)
    evaluator = CandidateEvaluator(supernet, split, Constraints(space, num_classes=10), batch_size=256,
                                   autocast=lambda: mode.autocast)
    archs = [space.sample(torch.Generator().manual_seed(s)) for s in range(6)]
    evaluator.evaluate(archs[:1])
    sync(mode)
    start = time.perf_counter()
    evaluator.evaluate(archs[1:])
    sync(mode)
    rec("search", f"candidates per second on {mode.search_images:,} images", 5 / (time.perf_counter() - start),
        "archs/s")


# -- 5. the real path -----------------------------------------------------------------------------------
def jpeg_folder(root: Path, mode: Mode, classes: int = 10) -> Path:
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    for split, n in (("train", mode.loader_images), ("val", max(classes, mode.loader_images // 10))):
        for i in range(n):
            d = root / split / f"c{i % classes}"
            d.mkdir(parents=True, exist_ok=True)
            w, h = mode.jpeg_size
            pixels = rng.integers(0, 255, (h // 8, w // 8, 3), dtype=np.uint8).repeat(8, 0).repeat(8, 1)
            Image.fromarray(pixels).save(d / f"{i}.JPEG", quality=90)
    return root


def loader(mode: Mode, rec: Recorder, work: Path) -> None:
    import os

    import lightning as L
    from hydra.utils import instantiate

    from s3.config import compose_config

    root = jpeg_folder(work / "images", mode)
    workers = min(os.cpu_count() or 1, 8 if mode.name == "full" else 2)
    experiment = ["experiment=supernet_t", "trainer=gpu"] if mode.name == "full" else ["experiment=tiny", "space=tiny"]
    cfg = compose_config([*experiment, "data=folder", f"data.root={root}", f"data.batch_size={mode.batch}",
                          f"data.num_workers={workers}", "data.search_per_class=1", "data.max_train=null",
                          "data.max_val=null", "logger=none"], work / "run")
    dm = instantiate(cfg.data)
    dm.setup("fit")
    start, n = time.perf_counter(), 0
    for i, (x, _) in enumerate(dm.train_dataloader()):
        n += len(x)
        if i == 2 * mode.steps + 3:
            break
    rec("loader", f"data loader alone, {workers} workers, images/s", n / (time.perf_counter() - start), "images/s")

    class Clock(L.Callback):
        def __init__(self):
            self.times = []

        def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
            self.times.append(time.perf_counter())

    clock = Clock()
    module = instantiate(cfg.model, _convert_="all")
    trainer = L.Trainer(accelerator="gpu" if mode.device == "cuda" else "cpu", devices=1,
                        precision="bf16-mixed" if mode.device == "cuda" else "32-true", max_steps=mode.steps + 3,
                        logger=False, enable_checkpointing=False, limit_val_batches=0, callbacks=[clock],
                        enable_progress_bar=False, enable_model_summary=False)
    trainer.fit(module, datamodule=dm)
    t = clock.times[3:]
    rate = mode.batch * (len(t) - 1) / (t[-1] - t[0]) if len(t) > 1 else float("nan")
    rec("loader", "Lightning training loop (loader + supernet step), images/s", rate, "images/s")
    rec("loader", "loader / training-loop throughput (> 1: the step bounds training)",
        rec.figures[("loader", f"data loader alone, {workers} workers, images/s")] / rate, "x")


PARTS = {"correctness": correctness, "steps": steps, "compile": compiled, "search": search}


def summary(rec: Recorder) -> str:
    f = rec.figures
    lines = ["", "summary (targets from issue 44):"]
    for (_, name), value in f.items():
        if name.endswith("supernet / standalone step throughput, median of 4 archs"):
            lines.append(f"  {name}: {value:.3f}x (target >= 0.95x; bench/flow_cost.py assumes a supernet step "
                         f"costs 1.04x its subnet's: this machine says {1 / value:.2f}x)")
        if "S3-T standalone / timm" in name:
            lines.append(f"  {name}: {value:.3f}x (target >= 0.9x at equal arch)")
        if name.startswith("loader / training-loop"):
            lines.append(f"  {name}: {value:.2f}x ({'the step' if value > 1 else 'the loader'} bounds training)")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mini", action="store_true", help="the CPU miniature (tiny sizes)")
    parser.add_argument("--out", type=Path, default=None, help="where rows and generated images go")
    parser.add_argument("--parts", nargs="+", default=[*PARTS, "loader"], choices=[*PARTS, "loader"])
    args = parser.parse_args(argv)
    mode = MINI if args.mini else FULL
    if mode.device == "cuda" and not torch.cuda.is_available():
        print("bench/gpu.py: no CUDA device on this machine; run it on a GPU machine, or --mini for the CPU "
              "miniature", file=sys.stderr)
        raise SystemExit(2)
    out = args.out or (ROOT / "bench" / "results" if mode.name == "full" else ROOT / "logs" / "gpu_mini")
    out.mkdir(parents=True, exist_ok=True)
    rec = Recorder(out / "gpu.csv", mode)
    print(f"bench/gpu.py ({mode.name}) on {rec.common['device']}, torch {torch.__version__}", flush=True)
    for part in args.parts:
        if rec.left() < 0:
            print(f"  {part}: skipped, the {mode.budget_s:.0f} s budget is spent", flush=True)
            continue
        print(f"[{time.perf_counter() - rec.start:6.1f} s] {part}", flush=True)
        if part == "loader":
            loader(mode, rec, out / "work")
        else:
            PARTS[part](mode, rec)
    print(summary(rec), flush=True)
    return rec.figures


if __name__ == "__main__":
    main()
