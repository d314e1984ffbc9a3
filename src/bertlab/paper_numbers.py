"""The BERT paper's published ablation numbers (Devlin et al., 2019, arXiv:1810.04805v2), as data.

`bertlab.report_ablation` prints our ablation pipeline's results beside these. Every number is the
paper's, dev set, x100 as printed there (perplexity as is); row names and row order are the paper's.

- Table 5 "Ablation over the pre-training tasks using the BERT_BASE architecture": MNLI-m, QNLI, MRPC and
  SST-2 are accuracy (MRPC too: Table 5 reports accuracy, Table 1 F1), SQuAD v1.1 is F1.
- Table 6 "Ablation over BERT model size": #L layers, #H hidden size, #A attention heads; LM (ppl) is the
  masked LM perplexity of held-out training data; MNLI-m, MRPC and SST-2 are dev accuracy.
- Table 8 "Ablation over different masking strategies": the share of selected tokens replaced by [MASK],
  kept the SAME, or replaced by a RaNDom token; MNLI fine-tuning accuracy, CoNLL-2003 NER dev F1
  fine-tuned and feature-based (Section 5.3's best features: the last four layers concatenated).
- Figure 5 "Ablation over number of training steps" (MNLI dev accuracy after fine-tuning checkpoints of
  BERT_BASE pre-trained for k steps, Masked LM vs Left-to-Right) is a plot, not a table: its values can
  only be read off the figure approximately, so none are stored here and the report's paper column for
  it is empty. The text's one number: 1M steps give BERT_BASE "almost 1.0%" more MNLI accuracy than 500k.
"""

from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True)
class PaperColumn:
    """One result column: header as the paper prints it, and where our number for it comes from.

    `task` is bertlab's task name (conf/task/) whose fine-tuning score fills it, or `None` for a
    pre-training metric; `metric` is the key of our number (`val/acc`, or the pre-training metric's
    name, `perplexity`).
    """

    header: str
    task: str | None
    metric: str
    scale: float = 100.0  # ours x100 like the paper's percentages; 1 for perplexity


@dataclass(frozen=True)
class PaperRow:
    """One row: its name as the paper writes it, the key columns' cells, the paper's numbers by column."""

    name: str
    keys: tuple[str, ...]  # the row's own columns (Table 6: #L, #H, #A; Table 8: the mix)
    values: tuple[float | None, ...]  # one per PaperTable.columns; None: the paper has no number
    aliases: tuple[str, ...] = ()  # other names a pipeline job may use for the variant


@dataclass(frozen=True)
class PaperTable:
    """One of the paper's ablation tables: id (the pipeline's `ablation`), caption, columns, rows."""

    ablation: str
    title: str
    key_headers: tuple[str, ...]
    columns: tuple[PaperColumn, ...]
    rows: tuple[PaperRow, ...]
    note: str = ""


def _acc(header: str, task: str) -> PaperColumn:
    return PaperColumn(header, task, "val/acc")


def _f1(header: str, task: str) -> PaperColumn:
    return PaperColumn(header, task, "val/f1")


# Table 5 (Devlin et al., 2019): ablation over the pre-training tasks, BERT_BASE, dev
TABLE5 = PaperTable(
    ablation="table5",
    title="Table 5: ablation over the pre-training tasks (BERT_BASE architecture), dev",
    key_headers=("Tasks",),
    columns=(
        _acc("MNLI-m", "mnli"),
        _acc("QNLI", "qnli"),
        _acc("MRPC", "mrpc"),
        _acc("SST-2", "sst2"),
        _f1("SQuAD", "squad_v1"),
    ),
    rows=(
        PaperRow(
            "BERT_BASE", ("BERT_BASE",), (84.4, 88.4, 86.7, 92.7, 88.5), ("BERT", "base", "mlm_nsp", "mlm")
        ),
        PaperRow("No NSP", ("No NSP",), (83.9, 84.9, 86.5, 92.6, 87.9), ("mlm_no_nsp",)),
        PaperRow("LTR & No NSP", ("LTR & No NSP",), (82.1, 84.3, 77.5, 92.1, 77.8), ("ltr",)),
        PaperRow(
            "+ BiLSTM",
            ("+ BiLSTM",),
            (82.1, 84.1, 75.7, 91.6, 84.9),
            ("ltr_no_nsp_bilstm", "ltr_bilstm", "LTR & No NSP + BiLSTM"),
        ),
    ),
    note="MNLI-m, QNLI, MRPC, SST-2: accuracy; SQuAD v1.1: F1.",
)


def _size(layers: int, hidden: int, heads: int, values: tuple[float, ...], *aliases: str) -> PaperRow:
    return PaperRow(f"{layers}/{hidden}/{heads}", (str(layers), str(hidden), str(heads)), values, aliases)


# Table 6 (Devlin et al., 2019): ablation over BERT model size, dev
TABLE6 = PaperTable(
    ablation="table6",
    title="Table 6: ablation over BERT model size, dev",
    key_headers=("#L", "#H", "#A"),
    columns=(
        PaperColumn("LM (ppl)", None, "perplexity", scale=1.0),
        _acc("MNLI-m", "mnli"),
        _acc("MRPC", "mrpc"),
        _acc("SST-2", "sst2"),
    ),
    rows=(
        _size(3, 768, 12, (5.84, 77.9, 79.8, 88.4)),
        _size(6, 768, 3, (5.24, 80.6, 82.2, 90.7)),
        _size(6, 768, 12, (4.68, 81.9, 84.8, 91.3)),
        _size(12, 768, 12, (3.99, 84.4, 86.7, 92.9), "BERT_BASE", "base"),
        _size(12, 1024, 16, (3.54, 85.7, 86.9, 93.3)),
        _size(24, 1024, 16, (3.23, 86.6, 87.8, 93.7), "BERT_LARGE", "large"),
    ),
    note="LM (ppl): masked LM perplexity of held-out data (ours: the held-out documents); "
    "MNLI-m, MRPC, SST-2: accuracy.",
)


def _mix(mask: int, same: int, rnd: int, values: tuple[float, ...]) -> PaperRow:
    return PaperRow(f"{mask}/{same}/{rnd}", (f"{mask}/{same}/{rnd}",), values)


# Table 8 (Devlin et al., 2019): ablation over masking strategies, dev
TABLE8 = PaperTable(
    ablation="table8",
    title="Table 8: ablation over different masking strategies, dev",
    key_headers=("MASK/SAME/RND",),
    columns=(
        _acc("MNLI Fine-tune", "mnli"),
        _f1("NER Fine-tune", "conll2003"),
        _f1("NER Feature-based", "conll2003_feature"),
    ),
    rows=(
        _mix(80, 10, 10, (84.2, 95.4, 94.9)),
        _mix(100, 0, 0, (84.3, 94.9, 94.0)),
        _mix(80, 0, 20, (84.1, 95.2, 94.6)),
        _mix(80, 20, 0, (84.4, 95.2, 94.7)),
        _mix(0, 20, 80, (83.7, 94.8, 94.6)),
        _mix(0, 0, 100, (83.6, 94.9, 94.6)),
    ),
    note="MASK/SAME/RND: % of the selected tokens replaced by [MASK], kept, replaced by a random token. "
    "MNLI: accuracy; NER (CoNLL-2003): entity F1.",
)

# Figure 5 (Devlin et al., 2019): MNLI dev accuracy vs pre-training steps; a plot, so no numbers
STEPS = PaperTable(
    ablation="steps",
    title="Figure 5: ablation over the number of pre-training steps (BERT_BASE), MNLI dev",
    key_headers=("Model", "steps"),
    columns=(_acc("MNLI-m", "mnli"),),
    rows=(
        PaperRow(
            "BERT_BASE (Masked LM)", ("BERT_BASE (Masked LM)",), (None,), ("BERT", "mlm", "masked_lm", "base")
        ),
        PaperRow(
            "BERT_BASE (Left-to-Right)",
            ("BERT_BASE (Left-to-Right)",),
            (None,),
            ("ltr", "left_to_right", "ltr_no_nsp"),
        ),
    ),
    note="The paper plots this (Figure 5) and prints no numbers: its column reads n/a. Its text: 1M "
    "steps give almost 1.0% more MNLI accuracy than 500k.",
)

PAPER_TABLES: dict[str, PaperTable] = {t.ablation: t for t in (TABLE5, TABLE6, TABLE8, STEPS)}


def _norm(text: str) -> str:
    return re.sub(r"[^a-z0-9]", "", str(text).lower())


def match_row(table: PaperTable, *names: str) -> PaperRow | None:
    """The row of `table` that one of `names` (a job's label, then its variant id) names; None if none.

    Spelling is forgiving: case and punctuation are ignored ("BERT_BASE", "bert-base"), Table 6's and 8's
    rows also match by their numbers in order ("L12_H768_A12", "mask80_same10_rnd10"), Figure 5's by
    "ltr"/"left-to-right" or "mlm"/"masked".
    """
    for name in (n for n in names if n):
        key = _norm(name)
        for row in table.rows:
            if key in {_norm(row.name), *map(_norm, row.aliases)}:
                return row
        if table.ablation in ("table6", "table8"):
            numbers = "/".join(re.findall(r"\d+", name))
            for row in table.rows:
                if numbers == row.name:
                    return row
        if table.ablation == "steps":
            if "ltr" in key or "lefttoright" in key:
                return table.rows[1]
            if "mlm" in key or "masked" in key:
                return table.rows[0]
    return None


__all__ = [
    "PAPER_TABLES",
    "STEPS",
    "TABLE5",
    "TABLE6",
    "TABLE8",
    "PaperColumn",
    "PaperRow",
    "PaperTable",
    "match_row",
]
