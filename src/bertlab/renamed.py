"""Options that were renamed: old dotted key -> new dotted key.

`train.py` checks the command line against this dict before Hydra parses it, so an old override
(`data.max_seq_len=64`, `+data.max_seq_len=64`, `~data.max_seq_len`) stops with one line naming the
new key instead of failing deep in composition or, worse, being silently ignored. Append a line for
every option you rename.
"""

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


def renamed_error(args: list[str]) -> str | None:
    """The one-line error for the first command-line override (`key=`, `+key=`, `++key=`, `~key`) of a
    renamed key, or None. Flags (`-m`, `--cfg job`) and their values name no key."""
    for arg in args:
        key = arg.lstrip("+~").split("=", 1)[0]
        if not arg.startswith("-") and key in RENAMED_KEYS:
            return f"error: {key} was renamed to {RENAMED_KEYS[key]}"
    return None
