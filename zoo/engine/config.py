"""Composing configs and building objects from them, with one-line errors for a person's mistakes.

A config is code, so building is an allow-list: a ``_target_`` (at any depth, also
inside lists) must name a class that configs are meant to build, i.e. a class marked
with :func:`zoo.registry.buildable` or a subclass of one (the zoo's models, data,
evaluators, layers, schedules), or one of torch's optimizers (``torch.optim``) and
learning-rate schedulers (``torch.optim.lr_scheduler``). The module is imported only
after its name passed that test: importing an arbitrary module can itself run code.
A config read from a run directory is data: it may hold plain ``${a.b}``
interpolations, never a resolver (``${oc.env:...}``, ``${oc.decode:...}``).

:func:`compose` returns a config that has been checked end to end before anything is
built: targets allowed, metadata read from the dataset's files filled in
(``DataModule.infer_meta``), every interpolation resolvable, and the keys of the
schemas in :mod:`zoo.engine.schema` within their types, ranges and choices.
"""

from __future__ import annotations

import difflib
import importlib
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf

from zoo.errors import UserError, choices

GROUPS = ("model", "data", "optim", "sched", "trainer", "logger", "experiment", "debug")
# Modules outside the zoo whose classes a config may build (optimizers, LR schedulers).
TORCH_MODULES = ("torch.optim", "torch.optim.lr_scheduler")
_DOTTED = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)+$")
# The only interpolation a run directory's config may hold: ${a.b.c} (or ${a[0]}).
_PLAIN_INTERPOLATION = re.compile(r"\$\{[A-Za-z0-9_.\[\]]+\}")


# The configs shipped inside the package, as Hydra names them: found through the import
# system, so an installed wheel composes from any directory (a checkout has ./configs
# linking to the same folder).
PACKAGE_CONFIGS = "pkg://zoo.configs"
# A folder holding its own root config is a whole config tree (a fork's, the tests'):
# it replaces the shipped configs instead of adding to them.
_ROOT_CONFIGS = ("train.yaml", "solve.yaml")


@dataclass(frozen=True)
class Configs:
    """Where configs come from: one primary tree (the shipped ``pkg://zoo.configs``, or
    a folder) and a person's own folders appended after it on Hydra's search path. Their
    ``model/``, ``data/``, ``experiment/``, ... files add choices next to the shipped
    ones; a name the primary tree already has is a mistake (Hydra would silently take
    the first), not an override."""

    primary: str = PACKAGE_CONFIGS
    extra: tuple[str, ...] = ()

    def with_dirs(self, dirs: list[str] | tuple[str, ...]) -> Configs:
        """These folders added (``--config-dir DIR``, ``$ZOO_CONFIG_DIR``); a folder with
        its own ``train.yaml`` replaces the primary tree instead."""
        primary, extra = self.primary, list(self.extra)
        for d in dirs:
            path = Path(d).expanduser()
            if not path.is_dir():
                raise UserError(f"config dir {d} does not exist (or is not a folder)")
            url = f"file://{path.resolve()}"
            if any((path / name).is_file() for name in _ROOT_CONFIGS):
                primary, extra = url, [e for e in extra if e != url]
            elif url != primary and url not in extra:
                extra.append(url)
        return Configs(primary, tuple(e for e in extra if e != primary))

    @property
    def sources(self) -> tuple[str, ...]:
        return (self.primary, *self.extra)


def default_config_dir() -> Path:
    """The folder of the shipped configs (``zoo/configs/``), or $ZOO_CONFIG_DIR's tree."""
    env = [d for d in os.environ.get("ZOO_CONFIG_DIR", "").split(os.pathsep) if d]
    if env and any((Path(env[0]) / n).is_file() for n in _ROOT_CONFIGS):
        return Path(env[0])
    return Path(__file__).resolve().parents[1] / "configs"


def default_configs() -> Configs:
    """The shipped configs plus the folders of $ZOO_CONFIG_DIR (``os.pathsep``-separated)."""
    env = [d for d in os.environ.get("ZOO_CONFIG_DIR", "").split(os.pathsep) if d]
    return Configs().with_dirs(env)


def as_configs(where: Configs | Path | str | None) -> Configs:
    """A :class:`Configs` for what callers pass: None (the defaults), a folder (a whole
    config tree, as tests and benchmarks pass) or a ``pkg://``/``file://`` URL."""
    if where is None:
        return default_configs()
    if isinstance(where, Configs):
        return where
    text = str(where)
    if text.startswith(("pkg://", "file://")):
        return Configs(text)
    return Configs(f"file://{Path(text).resolve()}")


def _entries(source: str, group: str) -> list[str]:
    """The config names of ``group`` in one source (``NAME.yaml`` files)."""
    if source.startswith("pkg://"):
        from importlib import resources

        try:
            folder = resources.files(source[len("pkg://"):].replace("/", "."))
            for part in group.split("/"):
                folder = folder / part
            items = list(folder.iterdir()) if folder.is_dir() else []
        except (ModuleNotFoundError, FileNotFoundError, NotADirectoryError):
            return []
        return sorted(i.name[:-5] for i in items if i.name.endswith(".yaml") and i.is_file())
    d = Path(source.removeprefix("file://")) / group
    return sorted(p.stem for p in d.glob("*.yaml")) if d.is_dir() else []


def list_group(config_dir: Configs | Path | str | None, group: str) -> list[str]:
    """Every choice of ``group`` (``model``, ``data``, ...) over all the config sources."""
    names: set[str] = set()
    for source in as_configs(config_dir).sources:
        names.update(_entries(source, group))
    return sorted(names)


def list_group_by_source(config_dir: Configs | Path | str | None,
                         group: str) -> list[tuple[str, list[str]]]:
    """``[(source, names)]`` for each source that has choices of ``group``."""
    out = []
    for source in as_configs(config_dir).sources:
        names = _entries(source, group)
        if names:
            out.append((source, names))
    return out


def check_added_configs(configs: Configs) -> None:
    """An added folder may not reuse a name the primary tree has: Hydra takes the first
    match on its search path, so the person's file would be silently ignored."""
    for source in configs.extra:
        folder = Path(source[len("file://"):])
        for sub in sorted(p for p in folder.iterdir() if p.is_dir()):
            clash = sorted(set(_entries(source, sub.name)) & set(_entries(configs.primary, sub.name)))
            if clash:
                raise UserError(f"config dir {folder}: {sub.name}/{clash[0]}.yaml has the name of "
                                f"a shipped config, which Hydra would use instead; rename it")


def hydra_search_path(configs: Configs) -> Any:
    """Hydra's search path: its own configs, the primary tree, the installed plugins'
    configs, then the added folders (before the structured configs)."""
    from hydra._internal.utils import create_config_search_path

    search_path = create_config_search_path(configs.primary)
    if configs.extra:
        entries = search_path.get_path()
        schema = entries.pop(-1) if entries and entries[-1].provider == "schema" else None
        for source in configs.extra:
            search_path.append("zoo config dir", source)
        if schema is not None:
            search_path.append(schema.provider, schema.path)
    return search_path


def initialize_hydra(configs: Configs, job_name: str = "app") -> Any:
    """Set up Hydra's global state for ``configs`` (what ``initialize_config_dir`` does,
    with the zoo's search path); returns the ``Hydra`` object. Callers clear it after."""
    from hydra import version
    from hydra._internal.hydra import Hydra

    version.setbase(None)
    check_added_configs(configs)
    return Hydra.create_main_hydra2(job_name, hydra_search_path(configs))


# --------------------------------------------------------------------------- composing
def compose(config_dir: Configs | Path | str | None, config_name: str, overrides: list[str],
            check: bool = True) -> DictConfig:
    """Compose ``config_name`` with command-line ``overrides``; raise UserError on mistakes.

    With ``check`` (the default) the result has passed :func:`prepare`. The returned
    config still holds the ``hydra`` node (run dir, group choices). ``config_dir`` is a
    :class:`Configs`, a whole config tree's folder, or None: the shipped configs plus
    $ZOO_CONFIG_DIR's folders.
    """
    cfg = _hydra_compose(as_configs(config_dir), config_name, overrides)
    if check:
        prepare(cfg)
    return cfg


def _hydra_compose(config_dir: Configs, config_name: str, overrides: list[str],
                   suggest: bool = True) -> DictConfig:
    from hydra import compose as hydra_compose
    from hydra.core.global_hydra import GlobalHydra
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    _check_group_choices(config_dir, overrides)
    GlobalHydra.instance().clear()
    try:
        initialize_hydra(config_dir)
        cfg = hydra_compose(config_name, overrides=overrides, return_hydra_config=True)
    except (HydraException, OmegaConfBaseException, ValueError) as e:
        msg = _one_line(e)
        m = re.match(r"bad override: no key '([^']+)'", msg)
        if m and suggest:
            close = _closest_key(config_dir, config_name, overrides, m.group(1))
            if close:
                msg = f"bad override: no key '{m.group(1)}' in the config (did you mean '{close}'?)"
        raise UserError(msg) from None
    finally:
        GlobalHydra.instance().clear()
    OmegaConf.set_struct(cfg, False)
    return cfg


def _closest_key(config_dir: Configs, config_name: str, overrides: list[str], key: str) -> str:
    """The existing key nearest to a mistyped ``key`` (composed without that override)."""
    rest = [o for o in overrides if o.split("=", 1)[0].lstrip("+~") != key]
    try:
        cfg = _hydra_compose(config_dir, config_name, rest, suggest=False)
    except UserError:
        return ""
    parent, _, leaf = key.rpartition(".")
    node = OmegaConf.select(cfg, parent) if parent else cfg
    if not isinstance(node, DictConfig):
        return ""
    close = difflib.get_close_matches(leaf, [str(k) for k in node], n=1, cutoff=0.6)
    return f"{parent + '.' if parent else ''}{close[0]}" if close else ""


def _check_group_choices(config_dir: Configs, overrides: list[str]) -> None:
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
    m = re.match(r"(?:In '[^']+': )?Could not override '([^']+)'", first)
    if m:
        key = m.group(1)
        hint = next((ln for ln in lines if ln.startswith("To append")), "")
        if hint:
            return f"bad override: no key '{key}' in the config ({hint[0].lower() + hint[1:]})"
        return f"bad override of '{key}': {lines[-1] if len(lines) > 1 else first}"
    return first


def prepare(cfg: DictConfig, where: str = "config") -> None:
    """Check a composed config before anything is built: allowed targets, metadata from
    the data files filled in, every interpolation resolvable, schema keys valid."""
    check_targets(cfg, where)
    fill_data_meta(cfg)
    validate(resolved(cfg))


def validate(cfg: Any) -> None:
    """Types, ranges and choices of the trainer, optim, sched, data-loader keys and the seed."""
    from zoo.engine.schema import validate as check

    check(cfg)


def fill_data_meta(cfg: DictConfig) -> None:
    """Write what the data's files hold (class names and count) and derived metadata
    (``num_features``) into ``cfg.data``, so the model's ``${data.*}`` resolve to them
    and the run's config.yaml records them; values the config gives are checked."""
    from omegaconf.errors import OmegaConfBaseException

    from zoo.data.base import DataModule

    data = cfg.get("data")
    if not isinstance(data, DictConfig) or "_target_" not in data:
        return
    cls = locate(data._target_, "data")
    if not issubclass(cls, DataModule):
        raise UserError(f"data._target_ '{data._target_}' is not a data module")
    try:
        given = OmegaConf.to_container(data, resolve=True, throw_on_missing=False)
    except OmegaConfBaseException:
        return  # reported with its key by resolved()
    given.pop("_target_", None)
    for k, v in cls.infer_meta(given).items():
        data[k] = v


def resolved(cfg: DictConfig) -> dict[str, Any]:
    """The config without its ``hydra`` node as resolved plain containers; a reference
    to a key that does not exist is one line (a model needing data metadata its data
    lacks names both)."""
    from omegaconf.errors import InterpolationKeyError, OmegaConfBaseException

    out: dict[str, Any] = {}
    for k in cfg:
        if k == "hydra":
            continue
        try:
            node = cfg._get_node(k)
            out[str(k)] = (OmegaConf.to_container(node, resolve=True, throw_on_missing=False)
                           if isinstance(node, (DictConfig, ListConfig)) else cfg[k])
        except InterpolationKeyError as e:
            raise UserError(_missing_key_message(cfg, e)) from None
        except OmegaConfBaseException as e:
            if "Missing mandatory value" in str(e):
                continue  # a ??? value: reported with its key when the run resolves the config
            raise UserError(f"config error: {str(e).strip().splitlines()[0]}") from None
    return out


def _missing_key_message(cfg: DictConfig, e: Exception) -> str:
    m = re.search(r"Interpolation key '([^']+)' not found", str(e))
    missing = m.group(1) if m else "?"
    full = str(getattr(e, "full_key", "") or "")
    if missing.startswith("data.") and full.startswith("model."):
        return (f"model '{_choice(cfg, 'model')}' needs {missing} (for {full}), which data "
                f"'{_choice(cfg, 'data')}' does not provide; choose data that has it or set "
                f"{full}=...")
    return f"config error: {full or 'a value'} refers to {missing}, which is not in the config"


def _choice(cfg: DictConfig, group: str) -> str:
    from omegaconf.errors import OmegaConfBaseException

    for path in (f"hydra.runtime.choices.{group}", f"run_info.choices.{group}"):
        try:
            value = OmegaConf.select(cfg, path, default=None)
        except OmegaConfBaseException:  # e.g. an unresolvable ${now:} in the hydra node
            value = None
        if value:
            return str(value)
    target = OmegaConf.select(cfg, f"{group}._target_", default=None)
    return str(target).rsplit(".", 1)[-1] if target else "?"


# --------------------------------------------------------------------------- run directories
def check_run_config(cfg: DictConfig, where: str) -> None:
    """A config read from a run directory is data: no resolvers, only allowed targets,
    valid values. Raises UserError (one line) before anything is built or imported."""
    _refuse_resolvers(OmegaConf.to_container(cfg, resolve=False), where, "")
    check_targets(cfg, where, skip_hydra=False)
    validate(resolved(cfg))


def _refuse_resolvers(node: Any, where: str, path: str) -> None:
    if isinstance(node, dict):
        for k, v in node.items():
            _refuse_resolvers(k, where, path)
            _refuse_resolvers(v, where, f"{path}.{k}" if path else str(k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            _refuse_resolvers(v, where, f"{path}[{i}]")
    elif isinstance(node, str) and "${" in _PLAIN_INTERPOLATION.sub("", node):
        raise UserError(f"{where}: {path or 'a key'} holds '{node[:60]}'; a run's config may "
                        f"refer to other keys (${{a.b}}) but resolves no lookups such as "
                        f"${{oc.env:...}}")


# --------------------------------------------------------------------------- the allow-list
def check_targets(node: Any, where: str = "config", skip_hydra: bool = True) -> None:
    """Every ``_target_`` at any depth (dicts and lists) must pass :func:`locate`. A
    composed config's ``hydra`` node (Hydra's own launcher and sweeper, never built by
    the zoo) is skipped; a run directory's config has none, so nothing is skipped there."""
    if isinstance(node, (DictConfig, ListConfig)):
        node = OmegaConf.to_container(node, resolve=False)
    _check_targets(node, where, "", skip_hydra)


def _check_targets(node: Any, where: str, path: str, skip_hydra: bool) -> None:
    if isinstance(node, dict):
        for k, v in node.items():
            if path == "" and k == "hydra" and skip_hydra:
                continue
            here = f"{path}.{k}" if path else str(k)
            if k == "_target_":
                locate(v, f"{where}: {path}" if path else where)
            else:
                _check_targets(v, where, here, skip_hydra)
    elif isinstance(node, list):
        for i, v in enumerate(node):
            _check_targets(v, where, f"{path}[{i}]", skip_hydra)


def locate(path: Any, where: str = "config") -> type:
    """The class ``package.module.Name`` names, if configs may build it; else UserError.

    The module name is checked before it is imported: only ``zoo.*`` and
    :data:`TORCH_MODULES` are imported at all."""
    text = path if isinstance(path, str) else repr(path)
    refused = (f"{where}: refusing to build '{text[:80]}': a config may build only the zoo's "
               f"own classes (models, data, evaluators, layers, schedules) and the optimizers "
               f"and schedulers of torch.optim")
    if not isinstance(path, str) or not _DOTTED.match(path):
        raise UserError(refused)
    module_name, _, attr = path.rpartition(".")
    in_zoo = module_name == "zoo" or module_name.startswith("zoo.")
    if not (in_zoo or module_name in TORCH_MODULES):
        raise UserError(refused)
    try:
        module = importlib.import_module(module_name)
    except ImportError as e:
        raise UserError(f"{where}: cannot find '{path}': {e}") from None
    if not hasattr(module, attr):
        raise UserError(f"{where}: cannot find '{path}': module '{module_name}' has no "
                        f"attribute '{attr}'")
    obj = getattr(module, attr)
    if not _allowed_class(obj, module_name, in_zoo):
        raise UserError(refused)
    return obj


def _allowed_class(obj: Any, module_name: str, in_zoo: bool) -> bool:
    from zoo.registry import is_buildable

    if not isinstance(obj, type):
        return False
    if in_zoo:
        return is_buildable(obj)
    import torch

    if module_name == "torch.optim":
        return issubclass(obj, torch.optim.Optimizer) and obj.__module__.startswith("torch.optim")
    return (issubclass(obj, torch.optim.lr_scheduler.LRScheduler)
            and obj.__module__ == "torch.optim.lr_scheduler")


# --------------------------------------------------------------------------- building
def build(node: DictConfig | dict, what: str, **extra: Any) -> Any:
    """``Class(**kwargs, **extra)`` for a node with a ``_target_``. Nested nodes with a
    ``_target_`` (at any depth, also in lists) are built first, through the same
    allow-list, and passed as objects (a backbone arrives as an ``nn.Module``); nested
    nodes without one arrive as plain dicts and lists."""
    if node is None or "_target_" not in node:
        raise UserError(f"the {what} config has no _target_")
    spec = OmegaConf.to_container(node, resolve=True) if isinstance(node, DictConfig) else dict(node)
    return _build(spec, what, extra)


def _build(spec: dict, where: str, extra: dict[str, Any] | None = None) -> Any:
    spec = dict(spec)
    target = spec.pop("_target_")
    cls = locate(target, where)
    kwargs = {k: _instantiate(v, f"{where}.{k}") for k, v in spec.items()}
    kwargs.update(extra or {})
    try:
        return cls(**kwargs)
    except TypeError as e:
        if "argument" in str(e):
            raise UserError(f"bad {where} option for {target}: {e}") from None
        raise


def _instantiate(value: Any, where: str) -> Any:
    if isinstance(value, dict):
        if "_target_" in value:
            return _build(value, where)
        return {k: _instantiate(v, f"{where}.{k}") for k, v in value.items()}
    if isinstance(value, list):
        return [_instantiate(v, f"{where}[{i}]") for i, v in enumerate(value)]
    return value


# --------------------------------------------------------------------------- --cfg
def print_config(config_dir: Configs | Path | None, argv: list[str]) -> int:
    """``--cfg job|all|hydra [--resolve] key=value ...``: print the composed config (Hydra's
    convention) without training."""
    args = list(argv)
    i = next(i for i, a in enumerate(args) if a in ("--cfg", "-c"))
    which = args[i + 1] if i + 1 < len(args) else ""
    if which not in ("job", "all", "hydra"):
        raise UserError(f"--cfg takes job, all or hydra, got '{which or 'nothing'}'")
    del args[i:i + 2]
    resolve = "--resolve" in args
    args = [a for a in args if a != "--resolve"]
    for a in args:
        if a.startswith("-"):
            raise UserError(f"unknown option '{a}'; arguments are key=value overrides (see --help)")
    cfg = compose(config_dir, "train", [a for a in args if not a.startswith("resume=")])
    if which == "job":
        cfg = OmegaConf.masked_copy(cfg, [k for k in cfg if k != "hydra"])
    elif which == "hydra":
        cfg = cfg.hydra
    if resolve:
        out = OmegaConf.create(resolved(cfg) if which == "job" else OmegaConf.to_container(cfg))
    else:
        out = cfg
    print(OmegaConf.to_yaml(out), end="")
    return 0
