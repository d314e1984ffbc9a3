"""Options that were renamed: old dotted key -> new dotted key.

`train.py` checks the command line against this dict before Hydra parses it, so an old override
(`data.max_seq_len=64`, `+data.max_seq_len=64`, `~data.max_seq_len`) stops with one line naming the
new key instead of failing deep in composition or, worse, being silently ignored. Append a line for
every option you rename.
"""

import copy
from typing import Any

RENAMED_KEYS: dict[str, str] = {
    # "old.key": "new.key",
    "data.max_train_sentences": "data.max_train_examples",
    "data.max_eval_sentences": "data.max_eval_examples",
    "data.max_seq_len": "data.max_seq_length",
    "data.max_docs": "data.max_train_examples",
    "data.split": "data.corpus_split",
    "data.max_train_samples": "data.max_train_examples",
    "data.max_eval_samples": "data.max_eval_examples",
}


# task modules whose label_names the config derives (${labels:...}); a checkpoint older than that lacks them
LABELLED_TASKS = ("SequenceClassificationTask", "TokenClassificationTask", "FeatureNERTask")


def upgrade_run_config(stored: dict[str, Any]) -> dict[str, Any]:
    """A checkpoint's stored run config in today's names: renamed `data.*` keys moved to their new names,
    GLUE's `validation*` split names gone with them, and `task.module.label_names` filled in for the tasks
    that take it (checkpoints written before the labels resolver)."""
    out = copy.deepcopy(stored)
    for old, new in RENAMED_KEYS.items():
        section, old_leaf = old.split(".", 1)
        node = out.get(section)
        if isinstance(node, dict) and old_leaf in node:
            node.setdefault(new.split(".", 1)[1], node.pop(old_leaf))
    module = out.get("task", {}).get("module", {})
    if str(module.get("_target_", "")).endswith(LABELLED_TASKS) and "label_names" not in module:
        from bertlab.resolvers import task_labels

        module["label_names"] = task_labels(str(out["task"]["name"]))
        for stale in ("num_labels", "val_split_names"):
            module.pop(stale, None)
    return out


def renamed_error(args: list[str]) -> str | None:
    """The one-line error for the first command-line override (`key=`, `+key=`, `++key=`, `~key`) of a
    renamed key, or None. Flags (`-m`, `--cfg job`) and their values name no key."""
    for arg in args:
        key = arg.lstrip("+~").split("=", 1)[0]
        if not arg.startswith("-") and key in RENAMED_KEYS:
            return f"error: {key} was renamed to {RENAMED_KEYS[key]}"
    return None
