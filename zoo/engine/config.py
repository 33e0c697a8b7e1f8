"""Composing configs and building objects from them, with one-line errors for a person's mistakes."""

from __future__ import annotations

import importlib
import re
import os
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf

from zoo.errors import UserError, choices

# Targets a config may name. A config is code: one read from a run directory must not
# be able to call arbitrary functions.
ALLOWED_TARGET_PREFIXES = ("zoo.", "torch.", "torchvision.")
GROUPS = ("model", "data", "optim", "sched", "trainer", "logger", "experiment")
# Keys of a data config that configure loading rather than describe the data.
DATA_LOADER_KEYS = ("_target_", "batch_size", "eval_batch_size", "num_workers")


def default_config_dir() -> Path:
    """``configs/`` beside the entry scripts (the repository root), or $ZOO_CONFIG_DIR."""
    env = os.environ.get("ZOO_CONFIG_DIR")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[2] / "configs"


def list_group(config_dir: Path, group: str) -> list[str]:
    d = Path(config_dir) / group
    if not d.is_dir():
        return []
    return sorted(p.stem for p in d.glob("*.yaml"))


def compose(config_dir: Path, config_name: str, overrides: list[str]) -> DictConfig:
    """Compose ``config_name`` with command-line ``overrides``; raise UserError on mistakes.

    The returned config still holds the ``hydra`` node (run dir, group choices).
    """
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    _check_group_choices(config_dir, overrides)
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=str(Path(config_dir).resolve()), version_base=None):
            cfg = hydra_compose(config_name, overrides=overrides, return_hydra_config=True)
    except (HydraException, OmegaConfBaseException, ValueError) as e:
        raise UserError(_one_line(e)) from None
    finally:
        GlobalHydra.instance().clear()
    OmegaConf.set_struct(cfg, False)
    return cfg


def _check_group_choices(config_dir: Path, overrides: list[str]) -> None:
    """Unknown model/data/... names get a message that lists the valid ones."""
    for ov in overrides:
        if "=" not in ov:
            raise UserError(f"bad override '{ov}': expected key=value (e.g. model=lenet)")
        key, value = ov.split("=", 1)
        key = key.lstrip("+~")
        if key in GROUPS and value not in ("", "null"):
            valid = list_group(config_dir, key)
            if value not in valid:
                raise UserError(f"unknown {key} '{value}'; valid choices: {choices(valid)}")


def _one_line(e: BaseException) -> str:
    msg = str(e).strip()
    lines = [ln.strip() for ln in msg.splitlines() if ln.strip()]
    first = lines[0] if lines else type(e).__name__
    m = re.match(r"Could not override '([^']+)'", first)
    if m:
        key = m.group(1)
        hint = next((ln for ln in lines if ln.startswith("To append")), "")
        if hint:
            return f"bad override: no key '{key}' in the config ({hint[0].lower() + hint[1:]})"
        return f"bad override of '{key}': {lines[-1] if len(lines) > 1 else first}"
    return first


def apply_trainer_profile(cfg: DictConfig, config_dir: Path, overrides: list[str]) -> None:
    """Re-apply a trainer profile marked ``apply_last`` (e.g. debug) over the model's trainer
    settings, then the command line's ``trainer.*`` overrides over that."""
    if not cfg.trainer.get("apply_last", False):
        return
    choice = cfg.hydra.runtime.choices.get("trainer")
    own = OmegaConf.load(Path(config_dir) / "trainer" / f"{choice}.yaml")
    own.pop("defaults", None)
    cfg.trainer = OmegaConf.merge(cfg.trainer, own)
    for ov in overrides:
        key, value = ov.split("=", 1)
        key = key.lstrip("+")
        if key.startswith("trainer."):
            OmegaConf.update(cfg, key, OmegaConf.create({"v": _parse_value(value)}).v, merge=True)


def _parse_value(value: str) -> Any:
    import yaml

    try:
        return yaml.safe_load(value)
    except yaml.YAMLError:
        return value


def check_targets(node: Any, where: str = "config") -> None:
    """Reject ``_target_`` values outside zoo/torch/torchvision (configs read from run dirs)."""
    if isinstance(node, (DictConfig, dict)):
        for k, v in node.items():
            if k == "_target_" and not str(v).startswith(ALLOWED_TARGET_PREFIXES):
                raise UserError(f"{where}: refusing to build '{v}': only targets under "
                                f"{', '.join(ALLOWED_TARGET_PREFIXES)} are allowed")
            check_targets(v, where)
    elif isinstance(node, (ListConfig, list)):
        for v in node:
            check_targets(v, where)


def locate(path: str) -> Any:
    """Import ``package.module.Name``; a bad path is a UserError."""
    if not str(path).startswith(ALLOWED_TARGET_PREFIXES):
        raise UserError(f"refusing to build '{path}': only targets under "
                        f"{', '.join(ALLOWED_TARGET_PREFIXES)} are allowed")
    module_name, _, attr = str(path).rpartition(".")
    try:
        module = importlib.import_module(module_name)
        return getattr(module, attr)
    except (ImportError, AttributeError) as e:
        raise UserError(f"cannot find '{path}': {e}") from None


def build(node: DictConfig | dict, what: str, **extra: Any) -> Any:
    """``Class(**node_without__target_, **extra)`` with nested nodes as plain containers."""
    if node is None or "_target_" not in node:
        raise UserError(f"the {what} config has no _target_")
    kwargs = OmegaConf.to_container(node, resolve=True) if isinstance(node, DictConfig) else dict(node)
    target = kwargs.pop("_target_")
    cls = locate(target)
    kwargs.update(extra)
    try:
        return cls(**kwargs)
    except TypeError as e:
        if "argument" in str(e):
            raise UserError(f"bad {what} option for {target}: {e}") from None
        raise


def data_meta(data_cfg: DictConfig) -> dict[str, Any]:
    c = OmegaConf.to_container(data_cfg, resolve=True)
    return {k: v for k, v in c.items() if k not in DATA_LOADER_KEYS}
