"""Checkpoint conversion: the one explicit key map between checkpoints and our modules, and the export.

Loading is strict. Legacy entries are dropped by name, the pre-training heads are dropped when the
target has none, tied copies are checked; everything else left over, missing or of the wrong shape
raises one error listing the keys and the fix. Files are read in `model/checkpoint.py`; the other
direction, a transformers-format folder, is written here (`write_folder`).
"""

from __future__ import annotations

import json
import logging
import re
import shutil
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import Tensor, nn

from bertlab.model.config import BertConfig

log = logging.getLogger(__name__)

ENCODER_PREFIXES = ("embeddings.", "encoder.", "pooler.")
# Buffers older transformers versions saved; they carry no learned state.
LEGACY_BUFFERS = re.compile(r"(^|\.)embeddings\.(position_ids|token_type_ids)$")
# Tied copies: the decoder shares the word embeddings, its bias is `cls.predictions.bias`.
TIED = {
    "cls.predictions.decoder.weight": "bert.embeddings.word_embeddings.weight",
    "cls.predictions.decoder.bias": "cls.predictions.bias",
}


class CheckpointError(ValueError):
    """A checkpoint that does not fit the model, with what to do about it."""


def _rename_legacy(key: str) -> str:
    """TF-era LayerNorm names (gamma/beta) to weight/bias."""
    return re.sub(
        r"LayerNorm\.gamma$", "LayerNorm.weight", re.sub(r"LayerNorm\.beta$", "LayerNorm.bias", key)
    )


def map_keys(state: dict[str, Tensor], model: nn.Module) -> tuple[dict[str, Tensor], list[str]]:
    """Map a checkpoint's keys onto `model`'s names; returns (mapped state, keys dropped by name)."""
    expects_prefix = any(k.startswith("bert.") for k in model.state_dict())
    has_heads_module = hasattr(model, "cls")
    has_pooler = any(k.removeprefix("bert.").startswith("pooler.") for k in model.state_dict())
    has_nsp = any(k.startswith("cls.seq_relationship.") for k in model.state_dict())
    mapped: dict[str, Tensor] = {}
    dropped: list[str] = []
    for key, value in state.items():
        key = _rename_legacy(key)
        if LEGACY_BUFFERS.search(key):
            dropped.append(key)
            continue
        if expects_prefix and key.startswith(ENCODER_PREFIXES):
            key = "bert." + key
        elif not expects_prefix and key.startswith("bert."):
            key = key[len("bert.") :]
        if key.startswith("cls.") and not has_heads_module:
            dropped.append(key)  # pre-training heads; the fine-tuning model starts its own head
            continue
        if key.removeprefix("bert.").startswith("pooler.") and not has_pooler:
            dropped.append(key)  # token-level heads (NER, SQuAD) have no pooler, as in transformers
            continue
        if key.startswith("cls.seq_relationship.") and not has_nsp:
            dropped.append(key)  # an MLM-only (No NSP) or LTR model starts from BERT without its NSP head
            continue
        mapped[key] = value
    for alias, target in TIED.items():
        if alias in mapped:
            if target in mapped and not torch.equal(mapped[alias], mapped[target]):
                raise CheckpointError(f"checkpoint has an untied {alias}; BERT ties it to {target}")
            mapped.pop(alias)
    return mapped, dropped


def load_state(
    model: nn.Module, state: dict[str, Tensor], new_heads: bool = False, source: str = "checkpoint"
) -> list[str]:
    """Copy `state` into `model` strictly; with new_heads, missing non-encoder keys stay freshly initialised.

    Returns the keys left at their initial values.
    """
    mapped, dropped = map_keys(state, model)
    if dropped:
        log.info("%s: dropped by name %s", source, sorted(dropped))
    own = {k: v for k, v in model.state_dict().items() if k not in TIED}
    missing = sorted(set(own) - set(mapped))
    unexpected = sorted(set(mapped) - set(own))
    shapes = [
        f"{k} {tuple(mapped[k].shape)} vs model {tuple(own[k].shape)}"
        for k in sorted(set(own) & set(mapped))
        if mapped[k].shape != own[k].shape
    ]
    encoder_missing = [k for k in missing if k.removeprefix("bert.").startswith(("embeddings.", "encoder."))]
    allowed = [k for k in missing if k not in encoder_missing] if new_heads else []
    problems = []
    if shapes:
        problems.append(f"shape mismatch: {shapes[:6]}{' …' if len(shapes) > 6 else ''}")
    if unexpected:
        problems.append(f"unexpected keys: {unexpected[:8]}{' …' if len(unexpected) > 8 else ''}")
    if [k for k in missing if k not in allowed]:
        rest = [k for k in missing if k not in allowed]
        hint = (
            ""
            if new_heads or encoder_missing
            else " (no pooler in the checkpoint? pass add_pooling_layer=False; heads to train? new_heads=True)"
        )
        problems.append(f"missing keys: {rest[:8]}{' …' if len(rest) > 8 else ''}{hint}")
    if problems:
        raise CheckpointError(f"{source} does not fit {type(model).__name__}: " + "; ".join(problems))
    with torch.no_grad():
        for key, value in mapped.items():
            own[key].copy_(value)
    if allowed:
        log.warning("%s: newly initialised (not in the checkpoint): %s", source, allowed)
    return allowed


def export_state(model: nn.Module) -> dict[str, Tensor]:
    """State dict as transformers saves it: tied copies left out, tensors whole, contiguous, on CPU.

    Sharded (FSDP2 DTensor) parameters are gathered: a collective, so every rank must call this.
    """
    out = {}
    for key, value in model.state_dict().items():
        if key in TIED:
            continue
        if hasattr(value, "full_tensor"):
            value = value.full_tensor()
        out[key] = value.detach().cpu().contiguous()
    return out


def write_folder(
    model: nn.Module,
    path: str | Path,
    vocab_file: str | Path | None = None,
    lowercase: bool = True,
    state: dict[str, Tensor] | None = None,
    label_names: Sequence[str] | None = None,
) -> Path:
    """Write config.json + model.safetensors (+ vocab.txt, tokenizer_config.json) for transformers.

    `state` is `export_state(model)` when the caller already gathered it (sharded training).
    `label_names` (model-id order) become config.json's `id2label` / `label2id` for a model with
    `num_labels` outputs; without them (or for a regression's one output) the names are `LABEL_i`.
    A model with `export_encoder_only` (a head transformers lacks) is written as its encoder, a BertModel.
    """
    from safetensors.torch import save_file

    out = Path(path)
    out.mkdir(parents=True, exist_ok=True)
    config: BertConfig = model.config  # type: ignore[assignment]
    weights = state if state is not None else export_state(model)
    architecture = type(model).__name__
    encoder_only = bool(getattr(model, "export_encoder_only", False))
    if encoder_only:
        # a head transformers has no class for (the "+ BiLSTM" classifier): the encoder alone, as a BertModel
        weights = {k.removeprefix("bert."): v for k, v in weights.items() if k.startswith("bert.")}
        log.warning(
            "export: transformers has no %s (task.module.bilstm=true); %s holds the fine-tuned encoder alone, "
            "as a BertModel without pooler (add_pooling_layer=False); the BiLSTM and classifier are in the "
            ".ckpt",
            architecture,
            out,
        )
        architecture = "BertModel"
    elif any(k.removeprefix("bert.").startswith("pooler.") for k in weights) and (
        config.is_decoder or config.pooling != "cls"
    ):
        reads = (
            "the mean of its real tokens (pooling=mean)"
            if config.pooling == "mean"
            else "its last real token (causal: is_decoder)"
        )
        log.warning(
            "export: %s pools %s; transformers' pooler reads position 0, so its pooled output and "
            "classifier logits differ from bertlab's; load %s with bertlab's from_pretrained for the "
            "fine-tuned numbers",
            architecture,
            reads,
            out,
        )
    values = config.to_dict() | {"architectures": [architecture], "tie_word_embeddings": True}
    # no cross-attention layers (transformers' default, written out): with is_decoder true, transformers'
    # BertModel / BertLMHeadModel are the same causal encoder as ours
    values["add_cross_attention"] = False
    if hasattr(model, "num_labels") and not encoder_only:
        n = int(model.num_labels)  # type: ignore[arg-type]
        names = list(label_names or [])
        if len(names) != n or len(set(names)) != n:
            names = [f"LABEL_{i}" for i in range(n)]
        values |= {
            "id2label": {str(i): name for i, name in enumerate(names)},
            "label2id": {name: i for i, name in enumerate(names)},
        }
    (out / "config.json").write_text(json.dumps(values, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    save_file(weights, str(out / "model.safetensors"), metadata={"format": "pt"})
    if vocab_file is not None:
        if Path(vocab_file).resolve() != (out / "vocab.txt").resolve():
            shutil.copyfile(vocab_file, out / "vocab.txt")
        tok_cfg = {
            "do_lower_case": lowercase,
            "tokenizer_class": "BertTokenizer",
            "model_max_length": config.max_position_embeddings,
        }
        (out / "tokenizer_config.json").write_text(json.dumps(tok_cfg, indent=2) + "\n", encoding="utf-8")
    return out
