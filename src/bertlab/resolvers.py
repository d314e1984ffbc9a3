"""OmegaConf resolvers the conf/ tree uses, so derived values are written in the config, not injected.

`${labels:<task>}` is a task's label strings in model-id order ([] for a regression such as STS-B):
`task.module.label_names: ${labels:${task.name}}` in conf/task/, and every head's size follows from it.
`${glue_metric:<task>}` is the GLUE task's main metric (`mcc` for CoLA, `spearmanr` for STS-B, ...):
`task.main_metric: val/${glue_metric:${task.name}}` in conf/task/_glue.yaml picks the best checkpoint.
"""

from __future__ import annotations

from omegaconf import OmegaConf


def task_labels(task: str) -> list[str]:
    """Label strings of a fine-tuning task in model-id order; [] for regression (STS-B)."""
    from bertlab.data.glue_tasks import GLUE_TASKS, get_task

    key = task.lower().replace("-", "").replace("_", "")
    if key in GLUE_TASKS:
        return list(get_task(key).labels)
    if task.startswith("conll2003"):
        from bertlab.data.ner import LABEL_NAMES

        return list(LABEL_NAMES)
    raise ValueError(f"${{labels:{task}}}: no label set known for task {task!r} (GLUE tasks and conll2003)")


def glue_metric(task: str) -> str:
    """The metric a GLUE task is reported and selected by (`bertlab.data.glue_tasks.main_metric`)."""
    from bertlab.data.glue_tasks import main_metric

    return main_metric(task)


def register() -> None:
    """Register bertlab's resolvers once (Hydra apps, tests and notebooks call this before composing)."""
    if not OmegaConf.has_resolver("labels"):
        # a ListConfig, not a list: `--cfg job --resolve` writes resolved values back into the config
        OmegaConf.register_new_resolver("labels", lambda task: OmegaConf.create(task_labels(task)))
    if not OmegaConf.has_resolver("glue_metric"):
        OmegaConf.register_new_resolver("glue_metric", glue_metric)


__all__ = ["glue_metric", "register", "task_labels"]
