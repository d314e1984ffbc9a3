"""Reading checkpoints: the one module that opens bertlab `.ckpt` files and transformers-format folders.

Two sources, one shape. `read_checkpoint(path) -> (BertConfig, state)` takes either a `.ckpt` that a
bertlab run wrote (its `model_config` hyper-parameter and the `model.` entries of its state dict) or a
transformers folder / hub name (config.json and the weights). `load_checkpoint(model, path)` copies one
into a built model after `check_size`; `model_from_checkpoint(cls, path)` builds the model from the
checkpoint's own config. `read_run_config(path)` is the whole resolved config a bertlab `.ckpt` stores,
which `run.py` reads back. Keys go through the one map in `model/convert.py`, which also writes exports.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any, TypeVar

import torch
from torch import Tensor, nn

from bertlab.model.config import BertConfig
from bertlab.model.convert import CheckpointError, load_state

log = logging.getLogger(__name__)
M = TypeVar("M", bound=nn.Module)

# the fields that decide the parameter shapes; dropout, unpad and the like may differ from the checkpoint
SIZE_FIELDS = ("hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size", "vocab_size")
WEIGHT_FILES = (
    "model.safetensors",
    "model.safetensors.index.json",
    "pytorch_model.bin",
    "pytorch_model.bin.index.json",
)


# -- transformers-format folders ------------------------------------------------------------------------
class MissingCheckpointError(CheckpointError):
    """A checkpoint that is neither a local folder nor to be had from the hub, in one line: what is missing
    (`name`), why (`reason`), every place looked (`where`, full paths) and the fix. `online` says whether
    going online would help, so a caller (run.py) can restate the fixes in its own terms."""

    def __init__(self, name: str, reason: str, where: str, online: bool, fix: str | None = None) -> None:
        if fix is None:
            fix = "pass a local transformers folder (config.json + weights)" + (
                ", or go online to download it" if online else ""
            )
        super().__init__(f"{name}: checkpoint not found ({reason}); looked for {where}; {fix}")
        self.name, self.reason, self.where, self.online = name, reason, where, online


def _hub_failure(err: Exception, name: str) -> tuple[str, bool]:
    """(why the hub could not provide `name`, whether going online would help)."""
    from huggingface_hub import constants
    from huggingface_hub.errors import RepositoryNotFoundError

    if isinstance(err, RepositoryNotFoundError):
        return f"the hub has no model {name!r}", False
    if constants.HF_HUB_OFFLINE:
        return "offline: HF_HUB_OFFLINE=1", True
    text = " ".join(str(err).split())
    if "connect" in text.lower() or "internet" in text.lower():
        return "the hub is unreachable", True
    return f"{type(err).__name__}: {text[:160]}", True


def download(name: str) -> Path:
    """The hub model `name` in the local cache (downloaded when online): configs, vocabulary and one weights
    format (safetensors when the repo has them, else pytorch_model.bin), never TF or Flax weights."""
    from huggingface_hub import list_repo_files, snapshot_download

    patterns = ["*.json", "vocab.txt", "*.safetensors", "*.bin"]
    hub_log = logging.getLogger("huggingface_hub")
    level = hub_log.level
    hub_log.setLevel(logging.ERROR)  # no retry warnings: a failure is one CheckpointError line
    try:
        try:
            if any(f.endswith(".safetensors") for f in list_repo_files(name)):
                patterns.remove("*.bin")
        except Exception:  # offline or unreachable: the cache may still hold it (snapshot_download looks)
            pass
        return Path(snapshot_download(name, allow_patterns=patterns))
    finally:
        hub_log.setLevel(level)


def resolve_folder(path: str | Path) -> Path:
    """A local folder as is; otherwise a hub name from the local cache, downloaded when online.

    Raises `MissingCheckpointError` naming the full paths looked at.
    """
    local = Path(path).expanduser()
    if local.is_dir():
        return local
    if local.exists() or str(path).startswith((".", "/", "~")):
        what = "a file" if local.exists() else "does not exist"
        raise MissingCheckpointError(
            str(path), "not a checkpoint folder", f"the folder {local.resolve()} ({what})", online=False,
            fix="pass a folder with config.json and weights",
        )  # fmt: skip
    try:
        return download(str(path))
    except Exception as err:
        from huggingface_hub import constants

        reason, online = _hub_failure(err, str(path))
        cache = Path(constants.HF_HUB_CACHE) / f"models--{str(path).replace('/', '--')}"
        where = f"the local folder {local.resolve()} and the hub cache {cache}"
        raise MissingCheckpointError(str(path), reason, where, online) from err


def read_folder_config(folder: Path) -> BertConfig:
    """BertConfig from `folder/config.json`."""
    file = folder / "config.json"
    if not file.is_file():
        raise CheckpointError(f"{file}: missing; a transformers-format BERT folder needs config.json")
    values = _read_json(file, "config.json")
    if values.get("model_type", "bert") != "bert":
        raise CheckpointError(
            f"{file}: model_type is {values['model_type']!r}, not 'bert'; use a BERT checkpoint"
        )
    return _config(values, file)


def _config(values: dict[str, Any], source: Path) -> BertConfig:
    """BertConfig from a checkpoint's stored values; a value it refuses is a CheckpointError naming `source`."""
    try:
        return BertConfig.from_dict(values)
    except (TypeError, ValueError) as err:
        raise CheckpointError(
            f"{source}: its model config cannot build a BERT ({err}); the file is damaged or not a BERT "
            "checkpoint's"
        ) from None


def _read_json(file: Path, what: str) -> dict[str, Any]:
    """A json object from `file`; a truncated or non-UTF-8 file is a CheckpointError naming it."""
    try:
        values = json.loads(file.read_bytes().decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise CheckpointError(
            f"{file}: not valid JSON ({err}); the {what} is damaged: restore it from the checkpoint's source"
        ) from None
    if not isinstance(values, dict):
        raise CheckpointError(
            f"{file}: holds a {type(values).__name__}, not a json object; restore the {what}"
        )
    return values


def _damaged(file: Path, err: BaseException, what: str) -> CheckpointError:
    """The CheckpointError for a weights file that cannot be read (truncated download, another format)."""
    size = file.stat().st_size if file.is_file() else 0
    first = " ".join(str(err).split())[:160] or type(err).__name__
    return CheckpointError(
        f"{file}: cannot be read as {what} ({first}; {size} bytes: truncated or another format?); "
        "download or copy it again"
    )


def _read_weights(file: Path) -> dict[str, Tensor]:
    """All tensors of one weights file (safetensors or a torch pickle, read weights_only)."""
    if file.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            return load_file(str(file))
        except Exception as err:  # safetensors raises its own SafetensorError (and OSError)
            raise _damaged(file, err, "safetensors") from None
    state = _torch_load(file, "a torch weights file")
    if not isinstance(state, dict) or not all(isinstance(v, Tensor) for v in state.values()):
        raise CheckpointError(f"{file}: does not hold a dict of tensors; pass a model's state dict file")
    return state


def _torch_load(file: Path, what: str, mmap: bool = False) -> Any:
    """`torch.load(file, weights_only=True)`; a file torch cannot read is a CheckpointError naming it.
    `mmap`: tensors stay on disk until touched (for reading a checkpoint's counters, not its weights)."""
    try:
        return torch.load(file, map_location="cpu", weights_only=True, mmap=mmap)
    except Exception as err:  # UnpicklingError, RuntimeError (zip), EOFError, ...
        raise _damaged(file, err, what) from None


def read_folder_state(folder: Path) -> dict[str, Tensor]:
    """All tensors of a folder: model.safetensors, pytorch_model.bin, or their sharded index files."""
    for name in WEIGHT_FILES:
        file = folder / name
        if not file.is_file():
            continue
        if name.endswith(".index.json"):
            weight_map = _read_json(file, "shard index").get("weight_map")
            if not isinstance(weight_map, dict):
                raise CheckpointError(f"{file}: has no 'weight_map' object; restore the shard index")
            shards = sorted(set(map(str, weight_map.values())))
            absent = [shard for shard in shards if not (folder / shard).is_file()]
            if absent:
                raise CheckpointError(
                    f"{folder}: shard(s) {absent} named by {name} are missing; copy them there"
                )
            out: dict[str, Tensor] = {}
            for shard in shards:
                out.update(_read_weights(folder / shard))
            return out
        return _read_weights(file)
    raise CheckpointError(f"{folder}: no weights ({', '.join(WEIGHT_FILES)}); save the model there first")


# -- bertlab .ckpt files (Lightning's format) -------------------------------------------------------------
def _read_ckpt(path: Path, mmap: bool = False) -> dict[str, Any]:
    """The checkpoint dict; weights_only: plain containers and tensors, nothing executed."""
    ckpt = _torch_load(path, "a bertlab .ckpt (Lightning checkpoint)", mmap=mmap)
    if not isinstance(ckpt, dict):
        raise CheckpointError(
            f"{path}: holds a {type(ckpt).__name__}, not a Lightning checkpoint; pass a run's .ckpt"
        )
    return ckpt


def read_lightning_ckpt(path: str | Path) -> dict[str, Any]:
    """A .ckpt that torch can read and that holds a state dict, memory-mapped (its weights are read only
    when touched); else a CheckpointError naming it (Lightning's own errors name no file)."""
    p = Path(path)
    if not p.is_file():
        raise CheckpointError(f"{p}: checkpoint file not found; pass a .ckpt a bertlab run wrote")
    ckpt = _read_ckpt(p, mmap=True)
    if "state_dict" not in ckpt:
        raise CheckpointError(f"{p}: has no state_dict; it is not a Lightning checkpoint")
    return ckpt


def check_ckpt_file(path: str | Path) -> Path:
    """`path` when `read_lightning_ckpt` accepts it, for callers that hand the file to Lightning."""
    read_lightning_ckpt(path)
    return Path(path)


def read_run_config(path: str | Path) -> dict[str, Any]:
    """The resolved run config (`hyper_parameters.run_config`) a bertlab run stored; {} if there is none."""
    return dict(_read_ckpt(Path(path)).get("hyper_parameters", {}).get("run_config") or {})


def read_checkpoint(path: str | Path) -> tuple[BertConfig, dict[str, Tensor]]:
    """(encoder config, state with transformers names) of a bertlab .ckpt, a transformers folder or a hub name."""
    p = Path(path)
    if not p.is_file():
        folder = resolve_folder(path)
        return read_folder_config(folder), read_folder_state(folder)
    ckpt = _read_ckpt(p)
    hparams = ckpt.get("hyper_parameters", {})
    if not isinstance(hparams, dict) or "model_config" not in hparams or "state_dict" not in ckpt:
        raise CheckpointError(
            f"{p}: not a bertlab checkpoint (no model_config in hyper_parameters, or no state_dict); pass a "
            "bertlab run's .ckpt or a transformers folder"
        )
    # the task module holds the model as `self.model`: its entries, without the prefix, are the model's
    state = {k.removeprefix("model."): v for k, v in ckpt["state_dict"].items() if k.startswith("model.")}
    return _config(dict(hparams["model_config"]), p), state


def checkpoint_vocabulary(path: str | Path) -> str | None:
    """Where a checkpoint's vocabulary is: a transformers folder or hub name holds its own; a bertlab .ckpt
    names the one its run used (`run_config.tokenizer`: a vocab.txt, a folder), or None."""
    if Path(path).is_file():
        return read_run_config(path).get("tokenizer")
    return str(resolve_folder(path))  # a hub name: its cached snapshot, which holds vocab.txt


def read_model_config(path: str | Path) -> BertConfig:
    """The encoder config of a bertlab .ckpt, a transformers folder or a hub name (a folder's weights unread)."""
    p = Path(path)
    if p.is_file():
        return read_checkpoint(p)[0]
    return read_folder_config(resolve_folder(path))


# -- into models ------------------------------------------------------------------------------------------
def check_size(found: BertConfig, expected: BertConfig, source: str) -> None:
    """Raise CheckpointError naming every size field where the checkpoint's config `found` differs."""
    wrong = [
        f"{f}: checkpoint {getattr(found, f)} vs model {getattr(expected, f)}"
        for f in SIZE_FIELDS
        if getattr(found, f) != getattr(expected, f)
    ]
    if wrong:
        raise CheckpointError(
            f"{source} does not fit the configured model ({'; '.join(wrong)}); build the model from the "
            "checkpoint's config (train.py: leave model= unset, the size is then read from the checkpoint)"
        )


def load_checkpoint(model: nn.Module, path: str | Path, new_heads: bool = False) -> list[str]:
    """Copy a .ckpt, folder or hub checkpoint into `model` (sizes checked against `model.config`).

    Strict as `convert.load_state`; with new_heads, heads the checkpoint lacks stay freshly initialised.
    Returns those fresh keys.
    """
    config, state = read_checkpoint(path)
    check_size(config, model.config, str(path))  # type: ignore[arg-type]
    fresh = load_state(model, state, new_heads=new_heads, source=str(path))
    log.info("loaded %s (fresh: %s)", path, fresh or "none")
    return fresh


def model_from_checkpoint(
    cls: type[M],
    path: str | Path,
    new_heads: bool = False,
    config_overrides: dict[str, Any] | None = None,
    **init_kwargs: Any,
) -> M:
    """`cls(checkpoint's config with config_overrides, **init_kwargs)` with the checkpoint's weights loaded
    strictly (see `convert.load_state`)."""
    config, state = read_checkpoint(path)
    for key, value in (config_overrides or {}).items():
        if not hasattr(config, key):
            raise CheckpointError(f"config override {key!r} is not a BertConfig field")
        setattr(config, key, value)
    config.__post_init__()
    model = cls(config, **init_kwargs)
    load_state(model, state, new_heads=new_heads, source=str(path))
    return model


__all__ = [
    "SIZE_FIELDS",
    "CheckpointError",
    "MissingCheckpointError",
    "check_ckpt_file",
    "check_size",
    "checkpoint_vocabulary",
    "download",
    "load_checkpoint",
    "model_from_checkpoint",
    "read_checkpoint",
    "read_folder_config",
    "read_folder_state",
    "read_lightning_ckpt",
    "read_model_config",
    "read_run_config",
    "resolve_folder",
]
