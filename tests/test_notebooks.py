"""The notebooks run top to bottom on a tiny sweep the test makes, and are committed with outputs stripped.

The sweep is `train.py -m` over two learning rates of a tiny pre-training on the embedded pydoc corpus
(no data download, no shared data). Executing needs `pip install -e ".[dev]"` (nbclient, ipykernel,
matplotlib); without them those tests skip, the stripped-outputs check still runs.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bertlab import plots
from bertlab.runs import find_run_dirs
from tests.hydra_helpers import REPO

NOTEBOOKS = sorted((REPO / "notebooks").glob("*.ipynb"))
LRS = ("1e-3", "3e-3")
TINY = [
    "model=bert_tiny", "model.num_hidden_layers=1", "model.hidden_size=36", "model.num_attention_heads=3",
    "model.intermediate_size=37", "data.vocab_size=300", "data.max_seq_length=32", "data.batch_size=8",
    "data.max_train_examples=30", "data.val_docs=4", "hardware.precision=32-true", "logger=csv",
    "trainer.max_steps=4", "trainer.val_check_interval=2", "trainer.log_every_n_steps=1",
    "trainer.enable_model_summary=false",
]  # fmt: skip


def test_there_are_notebooks() -> None:
    assert {p.name for p in NOTEBOOKS} >= {"inspect_run.ipynb", "compare_runs.ipynb", "ablations.ipynb"}


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_outputs_are_stripped(path: Path) -> None:
    """A notebook is committed without outputs: clear them (Kernel > Restart & Clear Output) before adding."""
    nb = json.loads(path.read_text(encoding="utf-8"))
    for i, cell in enumerate(nb["cells"]):
        if cell["cell_type"] == "code":
            assert cell.get("outputs") == [], f"{path.name} cell {i} has outputs"
            assert cell.get("execution_count") is None, f"{path.name} cell {i} has an execution count"


@pytest.fixture(scope="module")
def sweep(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A two-run sweep folder (jobs 0 and 1, one learning rate each), as `python train.py -m` writes it."""
    root = tmp_path_factory.mktemp("notebooks")
    folder = root / "sweep"
    args = ["-m", *TINY, f"task.module.optimizer.lr={','.join(LRS)}", f"hydra.sweep.dir={folder}",
            f"paths.cache_dir={root / 'cache'}"]  # fmt: skip
    proc = subprocess.run([sys.executable, "train.py", *args], cwd=REPO, capture_output=True, text=True,
                          timeout=300, env=os.environ | {"WANDB_MODE": "offline"})  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    return folder


def test_sweep_table_and_curves(sweep: Path) -> None:
    """What compare_runs shows: the learning rate is the one setting that differs; both runs have curves."""
    runs = find_run_dirs([sweep])
    assert [r.name for r in runs] == ["0", "1"]
    assert plots.settings(runs) == ["task.module.optimizer.lr"]
    rows = plots.results_table(runs)
    assert [(r["run"], r["task.module.optimizer.lr"]) for r in rows] == [("0", 1e-3), ("1", 3e-3)]
    assert all(
        {"val/mlm_loss", "val/mlm_acc"} <= r.keys() and not any(k.startswith("train/") for k in r)
        for r in rows
    )
    assert plots.run_labels(runs) == {runs[0]: "lr=0.001", runs[1]: "lr=0.003"}
    curves = plots.read_curves(runs[0])
    assert curves["train/mlm_loss"][0] == [0, 1, 2, 3]
    assert len(curves["val/mlm_loss"][0]) == 2
    assert plots.curve_metrics([curves])[:2] == ["loss", "mlm_acc"]
    assert "task.module.optimizer.lr" in plots.format_table(rows).splitlines()[0]


@pytest.fixture(scope="module")
def jupyter(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A Jupyter path with a kernel spec of its own: the kernel is this interpreter, whatever else is installed.

    Skips (before the sweep is built) when nbclient, ipykernel or matplotlib is missing.
    """
    for module in ("matplotlib", "ipykernel", "nbclient", "nbformat"):
        pytest.importorskip(module)
    root = tmp_path_factory.mktemp("jupyter")
    spec = root / "kernels" / "bertlab-test"
    spec.mkdir(parents=True)
    argv = [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"]
    kernel = {"argv": argv, "display_name": "bertlab tests", "language": "python"}
    (spec / "kernel.json").write_text(json.dumps(kernel), encoding="utf-8")
    return root


@pytest.fixture(scope="module")
def ablations(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Pipeline jobs as the ablation pipeline writes them: two Table 8 mixes and the steps curve (MLM, LTR)."""
    from tests.test_report_ablation import task, write_job

    root = tmp_path_factory.mktemp("ablations")
    for i, mix in enumerate(("80/10/10", "0/0/100")):
        write_job(
            root / "table8" / str(i), "table8", mix, {"sst2": task(0.8 - i / 10), "conll2003": task(0.7)}
        )
    for label, base in (("BERT (Masked LM)", 0.6), ("BERT (Left-to-Right)", 0.5)):
        steps = {s: {"sst2": task(base + s / 10000)} for s in (100, 200, 300)}
        write_job(root / "steps" / label.split()[1].strip("()"), "steps", label, steps=steps)
    return root


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_runs(
    path: Path, jupyter: Path, sweep: Path, ablations: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every cell runs without raising, in a kernel of this interpreter, on the tiny sweep."""
    import nbclient
    import nbformat

    monkeypatch.setenv("JUPYTER_PATH", str(jupyter))
    monkeypatch.setenv("MPLBACKEND", "Agg")
    monkeypatch.setenv("BERTLAB_RUNS", str(sweep))
    monkeypatch.setenv("BERTLAB_RUN", str(sweep / "0"))
    monkeypatch.setenv("BERTLAB_ABLATIONS", str(ablations))

    nb = nbformat.read(path, as_version=4)
    client = nbclient.NotebookClient(nb, kernel_name="bertlab-test", timeout=120,
                                     resources={"metadata": {"path": str(path.parent)}})  # fmt: skip
    client.execute()  # raises CellExecutionError on the first cell that raises
    text = "\n".join(
        str(out.get("text", "")) + str(out.get("data", {}).get("text/plain", ""))
        for cell in nb.cells
        if cell.cell_type == "code"
        for out in cell.outputs
    )
    if path.name == "compare_runs.ipynb":
        assert "task.module.optimizer.lr" in text and "val/mlm_loss" in text, text[-2000:]
    if path.name == "ablations.ipynb":
        # both Table 8 rows printed in the paper's layout, and one figure per table plus the Figure 5 curve
        shown = "\n".join(
            str(o.get("data", {}).get("text/markdown", ""))
            for c in nb.cells
            if c.cell_type == "code"
            for o in c.outputs
        )
        assert "| 80/10/10 |" in shown and "| 0/0/100 |" in shown, shown[-2000:]
        figures = [
            o
            for c in nb.cells
            if c.cell_type == "code"
            for o in c.outputs
            if "image/png" in o.get("data", {})
        ]
        assert len(figures) == 2, len(figures)
