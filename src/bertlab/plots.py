"""What the notebooks show of runs: their curves (the CSV logger's metrics.csv) and a table of final
metrics (metrics.json) against the settings that tell the runs apart (.hydra/config.yaml).

Reading needs nothing beyond bertlab's own dependencies; `plot_curves` imports matplotlib when called
(`pip install -e ".[notebooks]"`). `bertlab.runs.find_run_dirs` finds the run folders of a sweep.
"""

from __future__ import annotations

import csv
import json
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from omegaconf import OmegaConf

if TYPE_CHECKING:
    from matplotlib.figure import Figure

Curve = tuple[list[int], list[float]]  # (steps, values)
STAGES = ("train", "val")
# where or how a run ran, not what it learned: never a column (the run column names the folder)
_NOT_SETTINGS = ("paths.", "hydra.")


def metrics_csv(run: Path) -> Path | None:
    """The CSV logger's metrics.csv of `run` (its newest `csv/version_N`), or None (logger=none|wandb)."""
    found = sorted(Path(run).glob("csv/version_*/metrics.csv"), key=lambda p: _version(p.parent.name))
    return found[-1] if found else None


def _version(name: str) -> int:
    match = re.fullmatch(r"version_(\d+)", name)
    return int(match[1]) if match else -1


def read_curves(run: Path) -> dict[str, Curve]:
    """Every logged key of `run` (`train/loss`, `val/mlm_acc`, `lr-AdamW/pg1`, ...) -> (steps, values)."""
    path = metrics_csv(run)
    if path is None:
        return {}
    curves: dict[str, Curve] = {}
    with path.open(newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            step = int(float(row.get("step") or 0))
            for key, value in row.items():
                if key in ("step", "epoch") or value in (None, ""):
                    continue
                steps, values = curves.setdefault(key, ([], []))
                steps.append(step)
                values.append(float(value))
    return curves


def flat_config(run: Path) -> dict[str, Any]:
    """`run/.hydra/config.yaml` as dotted keys (`task.module.optimizer.lr` -> 1e-4); {} when absent.

    Interpolations stay as written (`${seed}`), as Hydra saved them: equal text means an equal setting.
    """
    path = Path(run) / ".hydra" / "config.yaml"
    if not path.is_file():
        return {}
    return dict(_flatten(OmegaConf.to_container(OmegaConf.load(path), resolve=False)))


def _flatten(node: Any, prefix: str = "") -> Iterable[tuple[str, Any]]:
    if isinstance(node, dict) and node:
        for key, value in node.items():
            yield from _flatten(value, f"{prefix}{key}.")
    else:
        yield prefix.rstrip("."), node


def overrides(run: Path) -> dict[str, str]:
    """`run/.hydra/overrides.yaml` (the command line's `key=value`s) as a dict; {} when absent."""
    path = Path(run) / ".hydra" / "overrides.yaml"
    if not path.is_file():
        return {}
    given = OmegaConf.to_container(OmegaConf.load(path)) or []
    pairs = (str(o).lstrip("+~").partition("=") for o in given)  # type: ignore[union-attr]
    return {key: value for key, _, value in pairs}


def settings(runs: Sequence[Path]) -> list[str]:
    """The config keys that tell `runs` apart: those whose values differ between them (a sweep's axes).

    A single run has nothing to differ from: its command-line overrides are shown instead.
    Paths are left out (they say where a run ran, not what it learned).
    """
    configs = [flat_config(r) for r in runs]
    if len(runs) == 1:
        keys = [k for k in overrides(runs[0]) if k in configs[0]]
    else:
        every = sorted(set().union(*configs))
        keys = [
            k for k in every if len({json.dumps(c.get(k), sort_keys=True, default=str) for c in configs}) > 1
        ]
    return [k for k in keys if not k.startswith(_NOT_SETTINGS)]


def short_names(keys: Sequence[str]) -> dict[str, str]:
    """Each dotted key -> its last part (`lr`), or the whole key where two keys share a last part."""
    last = [k.rsplit(".", 1)[-1] for k in keys]
    return {k: s if last.count(s) == 1 else k for k, s in zip(keys, last)}


def run_labels(runs: Sequence[Path]) -> dict[Path, str]:
    """A legend label per run: its settings (`lr=0.001 batch_size=16`), else its folder's name."""
    keys = settings(runs) if len(runs) > 1 else []
    names = short_names(keys)
    labels = {}
    for run in runs:
        cfg = flat_config(run)
        text = " ".join(f"{names[k]}={cfg.get(k)}" for k in keys)
        labels[run] = text or Path(run).name
    if len(set(labels.values())) < len(labels):  # equal settings (a rerun): tell them apart by folder
        labels = {r: f"{Path(r).name}: {t}" if t != Path(r).name else t for r, t in labels.items()}
    return labels


def final_metrics(run: Path) -> dict[str, float]:
    """`run/metrics.json`'s numbers (what run.main returned at the end); {} when the run did not finish."""
    path = Path(run) / "metrics.json"
    try:
        metrics = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return {
        k: float(v) for k, v in metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool)
    }


def results_table(
    runs: Sequence[Path], prefixes: Sequence[str] | None = ("val/", "test/")
) -> list[dict[str, Any]]:
    """One row per run: `run` (its folder), the settings that differ, then its final metrics.

    `prefixes` picks the metrics shown (None: every number in metrics.json). A run that did not finish
    has empty metric cells.
    """
    runs = [Path(r) for r in runs]
    keys = settings(runs)
    root = _common_parent(runs)
    rows = []
    for run in runs:
        cfg = flat_config(run)
        metrics = final_metrics(run)
        row: dict[str, Any] = {"run": str(run.relative_to(root)) if root else str(run)}
        row |= {k: cfg.get(k) for k in keys}
        row |= {k: v for k, v in metrics.items() if prefixes is None or k.startswith(tuple(prefixes))}
        rows.append(row)
    return rows


def _common_parent(runs: Sequence[Path]) -> Path | None:
    if not runs:
        return None
    parts = list(runs[0].parts)
    for run in runs[1:]:
        n = 0
        while n < min(len(parts), len(run.parts)) and parts[n] == run.parts[n]:
            n += 1
        parts = parts[:n]
    if len(runs) == 1:
        parts = parts[:-1]
    return Path(*parts) if parts else None


def format_table(rows: Sequence[Mapping[str, Any]], digits: int = 5) -> str:
    """Rows as a plain-text table (for when pandas is not installed): floats to `digits` significant digits."""
    columns = list(dict.fromkeys(k for row in rows for k in row))

    def cell(value: Any) -> str:
        if value is None:
            return ""
        if isinstance(value, float):
            return f"{value:.{digits}g}"  # 2e-05 stays 2e-05, 294.98892 becomes 294.99
        return str(value)

    cells = [[cell(row.get(c)) for c in columns] for row in rows]
    widths = [max(len(c), *(len(r[i]) for r in cells)) for i, c in enumerate(columns)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(columns, widths))]
    lines += ["  ".join(v.ljust(w) for v, w in zip(r, widths)) for r in cells]
    return "\n".join(lines)


def curve_metrics(curves: Iterable[Mapping[str, Curve]]) -> list[str]:
    """The metric names logged under train/ or val/ by any run (`loss`, `mlm_acc`, ...), in first-seen order."""
    names: dict[str, None] = {}
    for run_curves in curves:
        for key in run_curves:
            stage, _, name = key.partition("/")
            if stage in STAGES and name:
                names[name] = None
    return list(names)


def plot_curves(
    runs: Sequence[Path], metrics: Sequence[str] | None = None, ncols: int = 3, size: float = 4.5
) -> Figure:
    """One panel per metric, one colour per run (legend in the first panel): train solid, val dashed; x is the step.

    `metrics` are names without the stage (`mlm_loss`); None: every train/ or val/ metric logged.
    Runs without a metrics.csv (not run with logger=csv) are left out of the panels.
    """
    import matplotlib.pyplot as plt

    runs = [Path(r) for r in runs]
    curves = {r: read_curves(r) for r in runs}
    plotted = [r for r in runs if curves[r]]
    if not plotted:
        raise FileNotFoundError(
            f"none of {len(runs)} runs has a csv/version_*/metrics.csv (run with logger=csv)"
        )
    names = list(metrics) if metrics is not None else curve_metrics(curves.values())
    labels = run_labels(plotted)
    nrows = max(1, math.ceil(len(names) / ncols))
    width = min(ncols, max(1, len(names)))
    fig, axes = plt.subplots(nrows, width, figsize=(size * width, 0.75 * size * nrows), squeeze=False)
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for ax, name in zip(axes.flat, names):
        for i, run in enumerate(plotted):
            label = labels[run]  # once per run and panel: the legend lists runs, the line style the stage
            for stage in STAGES:
                steps, values = curves[run].get(f"{stage}/{name}", ([], []))
                if not steps:
                    continue
                ax.plot(steps, values, color=colours[i % len(colours)],
                        linestyle="-" if stage == "train" else "--", marker=None if stage == "train" else ".",
                        label=label)  # fmt: skip
                label = None
        ax.set_title(name)
        ax.set_xlabel("step")
    axes.flat[0].legend(title="train solid, val dashed", fontsize="small")
    for ax in list(axes.flat)[len(names) :]:
        ax.set_visible(False)
    fig.tight_layout()
    return fig
