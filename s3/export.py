"""What the search found, as a model directory another tool loads: `config.json` (the arch, the
network's geometry, the preprocessing its images need, where the weights came from, the measured
accuracy, the project's version), `model.safetensors` (the standalone model's weights only: no
optimizer, no supernet slices) and a model card (`README.md`). `from_pretrained` rebuilds the model."""

from __future__ import annotations

import json
import logging
import warnings
from importlib import metadata
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig
from safetensors.torch import load_file, save_file

from s3.cost import count_macs, count_params
from s3.evaluate import build_classifier
from s3.io import atomic_path, atomic_write_text
from s3.latency import Timing, interleaved, runner
from s3.models import NetConfig, S3Transformer
from s3.run import EXPORT, RunDir
from s3.space import Arch

log = logging.getLogger(__name__)

CONFIG, WEIGHTS, CARD, ONNX = EXPORT.marker, "model.safetensors", "README.md", "model.onnx"
FORMAT = "s3-model/1"
FORMATS = ("safetensors", "onnx")  # export.py format=: the directory, or the directory and model.onnx
ONNX_TOLERANCE = 1e-4  # max |logit difference| between onnxruntime and PyTorch on real images (fp32)


def version() -> str:
    try:
        return metadata.version("s3-nas")
    except metadata.PackageNotFoundError:
        return "unknown"


def model_config(model: S3Transformer, preprocessing: dict, source: str, evaluation: dict | None) -> dict[str, Any]:
    net = {"img_size": model.img_size, "patch_size": model.patch_size, "in_chans": model.in_chans,
           "num_classes": model.num_classes, "head_dim": model.head_dim, "drop_path_rate": model.drop_path_rate}
    geometry = {k: net[k] for k in ("img_size", "patch_size", "num_classes", "in_chans", "head_dim")}
    arch = model.arch
    return {"format": FORMAT, "architecture": "s3_transformer", "s3_version": version(), "arch": arch.to_dict(),
            "arch_string": str(arch), "net": net, "params": count_params(arch, **geometry),
            "macs": count_macs(arch, **geometry), "preprocessing": preprocessing, "source": source,
            "evaluation": evaluation}


def card(config: dict, directory: Path) -> str:
    ev, pre = config["evaluation"], config["preprocessing"]
    onnx = config.get("onnx")
    rows = config.get("latency") or []
    timing = "\n".join(f"| {r['backend']} | {r['batch']} | {r['threads']} | {r['median_ms']:.2f} | "
                       f"{r['min_ms']:.2f}-{r['max_ms']:.2f} |" for r in rows)
    timing = (f"\n## Latency on the exporting machine (fp32; the backends measured in turns)\n\n"
              f"| backend | batch | threads | median ms | spread ms |\n|---|---|---|---|---|\n{timing}\n"
              if rows else "")
    onnx_line = (f"\n- `model.onnx` (opset {onnx['opset']}, dynamic batch): onnxruntime's logits match PyTorch's to "
                 f"{onnx['max_abs_logit_error']:.1e} on {onnx['checked_images']} images (allowed {onnx['tolerance']:g})"
                 if onnx else "")
    measured = (f"top-1 **{ev['top1']:.2f} %** (top-5 {ev['top5']:.2f} %) on {ev['images']:,} images of "
                f"{ev['data']}'s {ev['split']} split" if ev else "not measured at export (`measure=false`)")
    return f"""# S3 model: `{config['arch_string']}`

- parameters: {config['params']:,}; MACs per image: {config['macs']:,} ({config['macs'] / 1e9:.3f} G)
- accuracy: {measured}
- input: {' x '.join(map(str, pre['input_size']))}, normalised with mean {pre['mean']} and std {pre['std']}
  ({pre.get('note') or 'crop_pct ' + str(pre.get('crop_pct'))})
- weights from: `{config['source']}`; exported by s3-nas {config['s3_version']}{onnx_line}
{timing}
## Load it

```python
import s3

model = s3.from_pretrained("{directory}").eval()  # an S3Transformer (torch.nn.Module)
# or through timm (`import s3` registers the family):
# timm.create_model("s3_transformer", pretrained=True, pretrained_cfg_overlay=dict(file="{directory / WEIGHTS}"))
```

`config.json` holds the architecture (the official S3 YAML schema under `arch`), the network's
geometry (`net`) and the preprocessing; `model.safetensors` the weights.
"""


def export_model(model: S3Transformer, directory: str | Path, preprocessing: dict, source: str,
                 evaluation: dict | None = None, onnx_images: torch.Tensor | None = None,
                 timing: dict | None = None) -> Path:
    """Write the model directory (atomically, file by file; `config.json` last). With
    `onnx_images`, also `model.onnx`, checked on them; with `timing` (`batches`, `repeats`,
    `rounds`), the latency of each backend."""
    directory = Path(directory)
    config = model_config(model, preprocessing, source, evaluation)
    onnx_file = None
    if onnx_images is not None:
        config["onnx"] = export_onnx(model, directory / ONNX, onnx_images)
        onnx_file = directory / ONNX
    if timing:
        config["latency"] = latency(model, onnx_file, preprocessing["input_size"], **timing)
    with atomic_path(directory / WEIGHTS) as tmp:
        save_file({k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}, str(tmp),
                  metadata={"format": "pt", "arch": config["arch_string"]})
    atomic_write_text(directory / CARD, card(config, directory))
    RunDir(directory, EXPORT).finish(config)
    return directory


def export_onnx(model: S3Transformer, path: str | Path, images: torch.Tensor) -> dict:
    """`model.onnx` with a dynamic batch (torch.onnx's TorchScript exporter: ten times faster than
    the dynamo one here, the same logits), checked on `images` (a batch of the data's own images):
    onnxruntime's logits must match PyTorch's within `ONNX_TOLERANCE`, or the export is refused."""
    import onnxruntime

    model = model.eval().cpu()
    path = Path(path)
    with atomic_path(path) as tmp, torch.no_grad(), warnings.catch_warnings():
        # the input-shape check traces as a constant (the image size is fixed; the batch stays dynamic)
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
        torch.onnx.export(model, (images[:1],), str(tmp), input_names=["images"], output_names=["logits"],
                          dynamic_axes={"images": {0: "batch"}, "logits": {0: "batch"}}, dynamo=False)
        session = onnxruntime.InferenceSession(str(tmp), providers=["CPUExecutionProvider"])
        got = torch.from_numpy(session.run(None, {"images": images.numpy()})[0])
        error = float((got - model(images)).abs().max())
        if not error <= ONNX_TOLERANCE:
            raise ValueError(f"{path.name}: onnxruntime's logits differ from PyTorch's by up to {error:.2e} on "
                             f"{len(images)} images (allowed {ONNX_TOLERANCE:g}); the export is not written")
    log.info("%s: onnxruntime matches PyTorch to %.1e on %d images", path, error, len(images))
    return {"file": path.name, "max_abs_logit_error": error, "checked_images": len(images), "tolerance": ONNX_TOLERANCE,
            "opset": _opset(path)}


def _opset(path: Path) -> int:
    import onnx

    return max(o.version for o in onnx.load(str(path), load_external_data=False).opset_import if o.domain in ("", "ai.onnx"))


def latency(model: S3Transformer, onnx_file: Path | None, input_size: list[int], batches=(1, 8), repeats: int = 5,
            rounds: int = 5) -> list[dict]:
    """Milliseconds per forward pass, PyTorch eager (fp32, CPU) and onnxruntime, measured in turns
    on this machine with this process's threads (`s3.latency`)."""
    rows = []
    for batch in batches:
        images = torch.randn(batch, *input_size)
        runners = {"pytorch": runner(model.cpu(), "pytorch", images)}
        if onnx_file is not None:
            runners["onnxruntime"] = runner(model, "onnxruntime", images, str(onnx_file))
        times = interleaved(runners, repeats, rounds)
        timings = [Timing.of("model", name, batch, t) for name, t in times.items()]
        log.info("latency at batch %d: %s", batch, ", ".join(f"{t.backend} {t.median_ms:.2f} ms" for t in timings))
        rows += [t.to_row() for t in timings]
    return rows


def read_config(directory: str | Path) -> dict:
    from s3.io import read_json

    directory = Path(directory)
    if not (directory / CONFIG).is_file():
        raise FileNotFoundError(f"{directory}: no {CONFIG}; not a model directory written by export.py")
    config = read_json(directory / CONFIG, "S3 model config", ("format", "arch", "net"),
                       "export the model again with export.py")
    if config["format"] != FORMAT:
        raise ValueError(f"{directory / CONFIG}: format {config['format']!r}, this version reads {FORMAT!r}")
    return config


def from_pretrained(directory: str | Path, map_location: str | torch.device = "cpu") -> S3Transformer:
    """The exported model of `directory`, its weights loaded strictly."""
    directory = Path(directory)
    config = read_config(directory)
    net = NetConfig.of(config["net"])
    model = S3Transformer(Arch.from_dict(config["arch"]), **net.model_kwargs())
    model.load_state_dict(load_file(str(directory / WEIGHTS), device=str(map_location)), strict=True)
    return model


# -- export.py -------------------------------------------------------------------------------------
def prepare(cfg: DictConfig):
    """Everything that can fail on bad input before the export: the run directory, the data, the
    arch and its weights (a retrained checkpoint, or a supernet's inherited slices)."""
    from hydra.utils import instantiate

    if cfg.format not in FORMATS:
        raise ValueError(f"format={cfg.format}: allowed {list(FORMATS)}")
    RunDir.claim(cfg.paths.output_dir, EXPORT, overwrite=bool(cfg.get("overwrite"))).record_hydra(cfg)
    datamodule = instantiate(cfg.data)
    datamodule.check("validate")
    module = build_classifier(cfg)
    trainer = instantiate(cfg.trainer, logger=False, callbacks=[], enable_checkpointing=False)
    return datamodule, module, trainer


def run(cfg: DictConfig, datamodule, module, trainer) -> dict:
    evaluation = onnx_images = None
    datamodule.setup("validate")
    loader = datamodule.val_dataloader()
    if cfg.measure:  # the card's accuracy: measured now, on the validation split
        metrics = trainer.validate(module, dataloaders=loader, verbose=False)[0]
        evaluation = {"top1": metrics["val/top1"], "top5": metrics["val/top5"], "split": "val",
                      "images": len(loader.dataset), "data": type(datamodule).__name__.removesuffix("DataModule")}
    if cfg.format == "onnx":  # checked on the data's own images, preprocessed as the model expects them
        onnx_images = next(iter(loader))[0][: cfg.onnx_check_images].float()
    timing = dict(cfg.latency) if cfg.latency else None
    out = export_model(module.model.float(), cfg.paths.output_dir, datamodule.preprocessing(), str(cfg.ckpt_path),
                       evaluation, onnx_images, timing)
    config = json.loads((out / CONFIG).read_text())
    log.info("exported %s (%s params) to %s; load it with s3.from_pretrained(%r)", config["arch_string"],
             f"{config['params']:,}", out, str(out))
    return config
