"""Models to and from Hugging Face ``transformers``, the reference implementations.

- ``from_transformers(model_or_folder)``: a ``PreTrainedModel`` or a local folder that
  ``save_pretrained`` wrote (``config.json`` + ``model.safetensors``) -> the equal zoo
  model, chosen by ``config.model_type``.
- ``to_transformers(model)``: a zoo model -> the equal reference model, chosen by the
  zoo model's class.

One module per family holds the mapping, with ``from_reference(ref)`` and
``to_reference(model)``: ``gpt2`` (``model=gpt``) and ``deepseek`` (``model=deepseek``).
``transformers`` is optional (``pip install -e ".[hf]"``); a GPT-2 folder is read with
``safetensors`` alone.

``init_from=FOLDER`` on ``train.py`` goes through :func:`adopt_folder_config` (the
folder's architecture and ``tokenizer.json`` replace the model and tokenizer settings
before anything is built) and :func:`folder_state` (its weights under the zoo's names).
"""

from __future__ import annotations

import importlib
import json
from pathlib import Path
from typing import Any

from zoo.errors import UserError

# config.model_type -> the module that maps it
FAMILIES = {"gpt2": "zoo.interop.gpt2", "deepseek_v3": "zoo.interop.deepseek"}
# the zoo model classes' module leaf -> the module that maps them back
ZOO_MODULES = {"gpt": "zoo.interop.gpt2", "deepseek": "zoo.interop.deepseek"}
# config.model_type -> the zoo model config (configs/model/NAME.yaml) that holds it
MODEL_CONFIGS = {"gpt2": "gpt", "deepseek_v3": "deepseek"}
EXTRA = "hf"
# model keys that say how to train, not what the weights are: init_from keeps the run's
TRAINING_KEYS = ("dropout", "mtp_depth", "balance")


def require(module: str, extra: str = EXTRA) -> Any:
    """Import an optional package or say in one line how to install it."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise UserError(f"this needs the optional package '{module}': "
                        f"pip install -e \".[{extra}]\"") from None


def is_folder(path: Any) -> bool:
    """A local folder with a ``config.json`` (what ``save_pretrained`` writes)."""
    try:
        return Path(str(path)).expanduser().is_dir() and (Path(str(path)).expanduser() / "config.json").is_file()
    except OSError:
        return False


def folder_config(folder: str | Path) -> dict[str, Any]:
    path = Path(str(folder)).expanduser() / "config.json"
    try:
        config = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise UserError(f"cannot read {path}: {e}") from None
    if not isinstance(config, dict) or "model_type" not in config:
        raise UserError(f"{path} names no model_type; is it a transformers config.json?")
    return config


def _family(model_type: str) -> Any:
    if model_type not in FAMILIES:
        raise UserError(f"no zoo model for transformers model_type '{model_type}'; "
                        f"supported: {', '.join(FAMILIES)}")
    return importlib.import_module(FAMILIES[model_type])


def from_transformers(model_or_folder: Any) -> Any:
    """The zoo model equal to a transformers model or a ``save_pretrained`` folder."""
    if isinstance(model_or_folder, (str, Path)):
        folder = Path(model_or_folder).expanduser()
        if not is_folder(folder):
            raise UserError(f"{folder} is not a transformers folder (no config.json)")
        config = folder_config(folder)
        family = _family(config["model_type"])
        if hasattr(family, "from_folder"):
            return family.from_folder(folder, config)
        require("transformers")
        from transformers import AutoModelForCausalLM

        ref = AutoModelForCausalLM.from_pretrained(str(folder))
        return family.from_reference(ref)
    config = getattr(model_or_folder, "config", None)
    model_type = getattr(config, "model_type", None)
    if model_type is None:
        raise UserError(f"{type(model_or_folder).__name__} is neither a transformers model "
                        "nor a folder")
    return _family(model_type).from_reference(model_or_folder)


def to_transformers(model: Any) -> Any:
    """The transformers reference model equal to a zoo model."""
    leaf = type(model).__module__.rsplit(".", 1)[-1]
    if leaf not in ZOO_MODULES:
        raise UserError(f"{type(model).__name__} has no transformers counterpart; "
                        f"convertible: {', '.join(ZOO_MODULES)}")
    require("transformers")
    return importlib.import_module(ZOO_MODULES[leaf]).to_reference(model)


# --------------------------------------------------------------------------- init_from=FOLDER
def adopt_folder_config(cfg: Any) -> list[str]:
    """``init_from=FOLDER``: the folder's architecture replaces ``cfg.model``'s keys and
    its ``tokenizer.json`` becomes ``cfg.data.tokenizer``, so the weights fit and the ids
    mean what they meant in pre-training. Returns what was changed, to print."""
    folder = Path(str(cfg.init_from)).expanduser().resolve()
    config = folder_config(folder)
    model_type = config["model_type"]
    family = _family(model_type)
    target = str(cfg.model.get("_target_", ""))
    leaf = target.rsplit(".", 2)[-2] if target.count(".") >= 2 else ""
    wanted = MODEL_CONFIGS.get(model_type, "?")
    if ZOO_MODULES.get(leaf) != FAMILIES[model_type]:
        raise UserError(f"init_from {folder} holds a transformers '{model_type}' model; train "
                        f"it with model={wanted} (this run builds {target or 'no model'})")
    if hasattr(family, "model_kwargs"):          # from config.json alone
        kwargs = family.model_kwargs(config)
    elif hasattr(family, "config_from_reference"):  # through transformers' config class
        require("transformers")
        from transformers import AutoConfig

        kwargs = family.config_from_reference(AutoConfig.from_pretrained(str(folder)))
    else:
        raise UserError(f"init_from a '{model_type}' folder is not supported yet; load it in "
                        "Python with zoo.interop.from_transformers")
    for k, v in kwargs.items():
        if k in TRAINING_KEYS and k in cfg.model:
            continue  # how to train, not what the weights are: the run's own value
        cfg.model[k] = v
    notes = [f"init_from {folder}: model settings from its config.json: "
             + ", ".join(f"{k}={cfg.model[k]}" for k in kwargs)]
    tok = folder / "tokenizer.json"
    data = cfg.get("data")
    if data is not None and "tokenizer" in data:
        given = str(data.get("tokenizer"))
        if given.endswith(".json"):
            notes.append(f"init_from: keeping data.tokenizer={given}")
        elif tok.is_file():
            data.tokenizer = str(tok)
            data.vocab_size = int(kwargs["vocab_size"])
            notes.append(f"init_from: data.tokenizer={tok} (the folder's), "
                         f"data.vocab_size={kwargs['vocab_size']}")
        else:
            raise UserError(f"init_from {folder} has no tokenizer.json: the pre-trained weights "
                            f"need the ids they were trained with; add it to the folder or "
                            f"set data.tokenizer=PATH/tokenizer.json")
    return notes


def folder_state(folder: str | Path, model: Any) -> dict[str, Any]:
    """The folder's weights under ``model``'s state-dict names (for ``init_from``)."""
    folder = Path(str(folder)).expanduser()
    config = folder_config(folder)
    family = _family(config["model_type"])
    if hasattr(family, "state_from_hf") and hasattr(family, "read_folder_state"):
        kw = family.model_kwargs(config)
        state = family.state_from_hf(family.read_folder_state(folder), kw["n_layer"],
                                     kw["tie_embeddings"])
    else:
        state = from_transformers(folder).state_dict()
    # what the model keeps beside its weights (its tokenizer slot) stays the model's own
    state.update({k: v for k, v in model.state_dict().items() if k.endswith("_extra_state")})
    return state
