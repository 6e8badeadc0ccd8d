"""What every entry point derives from its composed config besides the work itself: the one
architecture it names, its loggers (closed on every exit), and the resolved config it leaves
beside its outputs."""

from __future__ import annotations

import netrc
import os
import socket
from pathlib import Path
from urllib.parse import urlparse

from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, ListConfig, OmegaConf, open_dict

from s3.space import Arch


def _integer(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def trains_supernet(cfg: DictConfig) -> bool:
    """Whether a (composed or saved) config trains a supernet rather than one architecture."""
    return str(OmegaConf.select(cfg, "model._target_", default="")).endswith("SupernetModule")


def val_metric(*, _root_: DictConfig) -> str:
    """`${val_metric:}`: the validation top-1 the run's module logs, what early stopping, a sweeper
    and `finished.json` readers watch: the largest subnet's for a supernet, else the arch's."""
    return "val/largest/top1" if trains_supernet(_root_) else "val/top1"


GPU_ACCELERATORS = ("gpu", "cuda")
SLURM_MEM_GB = {"gpu": 60, "cpu": 16}  # per task: what an ImageNet data loader and a model step need


def slurm_request(key: str, *, _root_: DictConfig) -> int:
    """`${slurm:KEY}` in conf/hydra/launcher/slurm.yaml: what SLURM is asked for, from the trainer
    (nodes, one task per device, a GPU per task only on a GPU accelerator, memory per task)."""
    t = OmegaConf.select(_root_, "trainer", default=None) or {}
    devices = t.get("devices", 1)
    tasks = len(devices) if isinstance(devices, (list, ListConfig)) else devices if _integer(devices) and devices > 0 else 1
    kind = "gpu" if str(t.get("accelerator", "cpu")) in GPU_ACCELERATORS else "cpu"
    request = {"nodes": int(t.get("num_nodes", 1) or 1), "tasks_per_node": tasks,
               "gpus_per_node": tasks if kind == "gpu" else 0, "mem_gb": SLURM_MEM_GB[kind] * tasks}
    if key not in request:
        raise ValueError(f"${{slurm:{key}}}: allowed {sorted(request)}")
    return request[key]


CONF_DIR = Path(__file__).resolve().parents[1] / "conf"


def compose_config(overrides: list[str] | None = None, output_dir: str | Path | None = None,
                   config_name: str = "train") -> DictConfig:
    """The config an entry point would compose (`train`, `search` or `evaluate` with these
    overrides), from Python: a notebook, a benchmark, a test. With `output_dir`, Hydra's runtime
    config is set as in a run there, so `${hydra:...}` paths resolve and the entry point's
    functions (`s3.train.prepare`, `SearchSession.open`) run in-process."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    GlobalHydra.instance().clear()
    with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
        cfg = compose(config_name, overrides=list(overrides or []), return_hydra_config=True)
    if output_dir is not None:
        with open_dict(cfg):
            cfg.hydra.runtime.output_dir = str(output_dir)
            cfg.hydra.job.num = 0
        HydraConfig.instance().set_config(cfg)
    return cfg


def register_config_resolvers() -> None:
    if not OmegaConf.has_resolver("val_metric"):
        OmegaConf.register_new_resolver("val_metric", val_metric)
    if not OmegaConf.has_resolver("slurm"):
        OmegaConf.register_new_resolver("slurm", slurm_request)



def check_run_config(cfg: DictConfig) -> None:
    """The top-level values every entry point reads, checked before any data is read or any
    directory written: one clear line naming the key instead of a traceback after minutes."""
    seed = cfg.get("seed")
    if not _integer(seed) or seed < 0:
        raise ValueError(f"seed={seed!r}: must be an integer >= 0")
    t = cfg.get("trainer") or {}
    devices = t.get("devices", 1)
    listed = isinstance(devices, (list, ListConfig)) and len(devices) > 0 and all(_integer(d) and d >= 0 for d in devices)
    if not (devices == "auto" or listed or (_integer(devices) and (devices >= 1 or devices == -1))):
        raise ValueError(f"trainer.devices={devices!r}: a number of devices >= 1 (-1: all), a list of device "
                         f"indices such as [0,1], or auto")
    nodes = t.get("num_nodes", 1)
    if not _integer(nodes) or nodes < 1:
        raise ValueError(f"trainer.num_nodes={nodes!r}: must be an integer >= 1")
    for key in ("max_epochs", "max_steps"):
        value = t.get(key)
        if value is not None and (not _integer(value) or value < -1):
            raise ValueError(f"trainer.{key}={value!r}: must be an integer >= 0, or -1 (or null) for no limit")
    check_wandb(cfg)


WANDB_OFF = ("offline", "dryrun", "disabled")


def wandb_online(conf: DictConfig) -> bool:
    """Whether a W&B logger config would talk to a server: not offline, and not switched off by the
    environment (`WANDB_MODE`, `WANDB_DISABLED`)."""
    if conf.get("offline") or os.environ.get("WANDB_MODE", "").lower() in WANDB_OFF:
        return False
    return os.environ.get("WANDB_DISABLED", "").lower() not in ("true", "1", "yes")


def wandb_host() -> tuple[str, int]:
    url = urlparse(os.environ.get("WANDB_BASE_URL") or "https://api.wandb.ai")
    return url.hostname or "api.wandb.ai", url.port or (80 if url.scheme == "http" else 443)


def wandb_has_key(host: str) -> bool:
    """An API key in `WANDB_API_KEY` or in the netrc file `wandb login` writes."""
    if os.environ.get("WANDB_API_KEY"):
        return True
    try:
        return netrc.netrc(os.environ.get("NETRC")).authenticators(host) is not None
    except (OSError, netrc.NetrcParseError):
        return False


def check_wandb(cfg: DictConfig) -> None:
    """An online W&B logger needs an API key and its server: without either, W&B fails after a minute
    or two of training (and a requeued job fails again). Said now, with the offline route."""
    conf = next((c for c in (cfg.get("logger") or {}).values()
                 if isinstance(c, DictConfig) and "Wandb" in str(c.get("_target_", ""))), None)
    if conf is None or not wandb_online(conf):
        return
    host, port = wandb_host()
    offline = ("or log offline with logger.wandb.offline=true (or WANDB_MODE=offline) and upload later with "
               "`wandb sync <run dir>/wandb/offline-run-*`")
    if not wandb_has_key(host):
        raise ValueError(f"logger=wandb is online but no W&B API key is configured for {host}: run `wandb login` "
                         f"or set WANDB_API_KEY, {offline}")
    try:
        socket.create_connection((host, port), timeout=5).close()
    except OSError as e:
        raise ValueError(f"logger=wandb is online but the W&B server {host}:{port} cannot be reached "
                         f"({e.strerror or e}): {offline}") from None


def available_memory() -> int | None:
    """Bytes of memory the kernel says a new allocation can get (Linux), else None."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError):
        pass
    return None


def check_fits_in_memory(params: int, what: str) -> None:
    """Refuse a model whose fp32 weights alone exceed the memory available, before allocating it."""
    need, free = 4 * params, available_memory()
    if free is not None and need > free:
        raise ValueError(f"{what} has {params:,} parameters: {need / 2**30:,.1f} GiB of fp32 weights alone (training "
                         f"needs about 4x: gradients and AdamW state), but {free / 2**30:,.1f} GiB of memory is "
                         f"available; choose a smaller architecture or space")


def resolve_arch(cfg: DictConfig) -> Arch:
    """`arch=path/to/arch.yaml`, else the architecture a model preset holds (model=s3_t)."""
    if cfg.get("arch"):
        return Arch.from_yaml(cfg.arch)
    inline = OmegaConf.select(cfg, "model.arch", throw_on_missing=False)
    if isinstance(inline, DictConfig):
        return Arch.from_dict(OmegaConf.to_container(inline))
    raise ValueError("arch=null: one architecture (model=standalone, experiment=retrain) needs arch=path/to/arch.yaml "
                     "or a model preset such as model=s3_t")
