"""SQuAD v1.1 / v2.0 span extraction (section 4.2-4.3): start and end vectors over the final hidden states.

Training is the original `run_squad`: loss = (CE(start) + CE(end)) / 2 over the window's positions, with
unanswerable windows (v2, or v1 windows that miss the answer) labelled at [CLS]. Evaluation needs every
window of an example before it can pick that example's answer, so the eval steps only collect logits;
the epoch end gathers them from every rank, picks the answers over the split's windows
(`postprocess_predictions`), scores them against the split's gold answers (`bertlab.metrics.squad`), logs
`stage/<official key>` (0-100, as the official scripts) and writes `predictions.json` (+ `null_odds.json`
for v2) into `trainer.default_root_dir`. Predict (mode=predict) does the same without scoring, for a file
whose answers are unknown.

SQuAD v2's null-score threshold: each validation also finds the threshold that would have scored best
on dev (`val/best_f1_thresh`). The module keeps the latest one and stores it in every checkpoint it
saves, so `best.ckpt` carries the threshold of its own validation. Test and predict apply it, unless
`null_score_diff_threshold` is set (on the command line: `task.module.null_score_diff_threshold=X`).
Validation itself answers at the set threshold, or 0.0: tuning on the set it scores would flatter it.

DDP: each rank collects its own rows; `gather_objects` hands every rank all of them, and every rank
scores the same rows (a repeat from the distributed sampler's padding is harmless: post-processing keys
rows by `feature_index`), so the logged values agree without a broadcast. Only rank 0 writes files.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from bertlab.data.squad_postprocess import postprocess_predictions, write_null_odds, write_predictions
from bertlab.data.squad_reader import gold_answers
from bertlab.metrics.squad import squad_v1_scores, squad_v2_scores
from bertlab.model.heads import BertForQuestionAnswering
from bertlab.tasks.base import BertTask, gather_objects

log = logging.getLogger(__name__)

# fills the columns a shorter batch lacks when rows of different widths are stacked; postprocess reads
# only a feature's own positions, so the value never competes, but it must not look like a good logit
PAD_LOGIT = -1.0e4

# the checkpoint entry holding SQuAD v2's dev-tuned null-score threshold (a float: weights_only loads it)
THRESHOLD_KEY = "squad_v2_null_score_diff_threshold"

# one eval batch, on the CPU: feature_index (B,), start logits (B, T), end logits (B, T)
Rows = tuple[Tensor, Tensor, Tensor]


def pad_cat(rows: list[Tensor], value: float = PAD_LOGIT) -> Tensor:
    """Stack `(B_i, T_i)` blocks into `(sum B_i, max T_i)`, right-padding the narrower ones with `value`."""
    width = max(r.shape[1] for r in rows)
    return torch.cat([F.pad(r, (0, width - r.shape[1]), value=value) for r in rows])


def span_loss(
    start_logits: Tensor, end_logits: Tensor, start_positions: Tensor, end_positions: Tensor
) -> Tensor:
    """(CE(start) + CE(end)) / 2 in float32: logits `(B, T)`, positions `(B,)` indexing T."""
    return (
        F.cross_entropy(start_logits.float(), start_positions)
        + F.cross_entropy(end_logits.float(), end_positions)
    ) / 2


class QuestionAnsweringTask(BertTask):
    """Fine-tunes BertForQuestionAnswering: ids `(B, T)` -> start and end logits, each `(B, T)`."""

    def __init__(
        self,
        model_config: dict[str, Any],
        version: int = 1,
        n_best_size: int = 20,
        max_answer_length: int = 30,
        null_score_diff_threshold: float | None = None,
        **shared: Any,
    ) -> None:
        super().__init__(model_config, **shared)
        if version not in (1, 2):
            raise ValueError(f"SQuAD version must be 1 or 2, got {version!r}")
        self.version = version
        self.n_best_size, self.max_answer_length = n_best_size, max_answer_length
        # v2: answer "" when null score - best span score > the threshold; None = the dev-tuned one
        self.null_score_diff_threshold = null_score_diff_threshold
        self.tuned_threshold: float | None = None  # best_f1_thresh of the latest validation (or checkpoint)
        self.model = self.build_model(BertForQuestionAnswering)
        self.collected: list[Rows] = []

    def threshold(self, stage: str) -> float:
        """The null-score threshold `stage` answers at: the one set, else (test, predict) the dev-tuned one,
        else 0.0."""
        if self.null_score_diff_threshold is not None:
            return float(self.null_score_diff_threshold)
        if stage != "val" and self.tuned_threshold is not None:
            return self.tuned_threshold
        return 0.0

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        if self.tuned_threshold is not None:
            checkpoint[THRESHOLD_KEY] = self.tuned_threshold

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        if THRESHOLD_KEY in checkpoint:
            self.tuned_threshold = float(checkpoint[THRESHOLD_KEY])

    def forward(self, batch: dict[str, Tensor]) -> tuple[Tensor, Tensor]:
        """Start and end logits, each `(B, T)`."""
        return self.model(batch["input_ids"], batch["attention_mask"], batch["token_type_ids"])

    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor:
        start, end = self(batch)
        loss = span_loss(start, end, batch["start_positions"], batch["end_positions"])
        self.log_metrics("train", {"loss": loss}, batch["input_ids"].shape[0], prog_bar=True)
        return loss

    # -- evaluation ----------------------------------------------------------------------------------
    def eval_step(self, stage: str, batch: dict[str, Tensor], dataloader_idx: int = 0) -> Rows:
        """Keep this batch's logits on the CPU (float32) until the epoch end, by feature index."""
        start, end = self(batch)
        row = (
            batch["feature_index"].detach().cpu(),
            start.detach().float().cpu(),
            end.detach().float().cpu(),
        )
        self.collected.append(row)
        return row

    def predict_step(self, batch: dict[str, Tensor], batch_idx: int, dataloader_idx: int = 0) -> Rows:
        # the answers are written at the epoch end; the rows are returned only for trainer.predict callers
        return self.eval_step("predict", batch, dataloader_idx)

    def eval_epoch_start(self, stage: str) -> None:
        self.collected = []  # rows left by an interrupted epoch must not leak into this one

    def eval_epoch_end(self, stage: str) -> None:
        """Gather every rank's rows, pick each question's answer, log the scores and write the files.

        Runs after every validation, so the files left after fit are those of the last one.
        """
        rows = [r for part in gather_objects(self.collected) for r in part]  # collective: every rank calls
        self.collected = []
        if self.trainer.sanity_checking:  # a few batches only: scores and files would be misleading
            return
        if not rows:
            log.warning("%s epoch had no batches: no SQuAD scores, no predictions.json", stage)
            return
        (name,) = self.datamodule.split_names(stage)  # one SQuAD split per stage
        split = self.datamodule.split(name)
        threshold = self.threshold(stage)
        if self.version == 2 and stage != "val":
            log.info('%s: answering "" where null score - best span score > %g', stage, threshold)
        predictions, null_odds = postprocess_predictions(
            split.examples,
            split.features,
            pad_cat([r[1] for r in rows]),
            pad_cat([r[2] for r in rows]),
            feature_index=torch.cat([r[0] for r in rows]),
            version_2=self.version == 2,
            n_best_size=self.n_best_size,
            max_answer_length=self.max_answer_length,
            null_score_diff_threshold=threshold,
        )
        if stage != "predict":  # predict has no answers to score against (and Lightning forbids logging)
            references = gold_answers(split.examples)
            if self.version == 1:
                scores = squad_v1_scores(references, predictions)
            else:
                scores = squad_v2_scores(references, predictions, null_odds)
                if stage == "val":
                    self.tuned_threshold = float(scores["best_f1_thresh"])
                else:
                    scores["null_score_diff_threshold"] = threshold
            # identical on every rank (same rows, same code), so the all-reduced mean is the value itself
            self.log_dict({f"{stage}/{k}": float(v) for k, v in scores.items()}, sync_dist=True)
        if self.trainer.is_global_zero:
            self._write(Path(self.trainer.default_root_dir), predictions, null_odds)

    def _write(self, out: Path, predictions: dict[str, str], null_odds: dict[str, float]) -> None:
        """Official `predictions.json` ({qid: text}) and, for v2, `null_odds.json` ({qid: float})."""
        path = write_predictions(predictions, out / "predictions.json")
        written = [path]
        if self.version == 2:
            written.append(write_null_odds(null_odds, out / "null_odds.json"))
        log.info("wrote %s (%d questions)", ", ".join(map(str, written)), len(predictions))


__all__ = ["PAD_LOGIT", "THRESHOLD_KEY", "QuestionAnsweringTask", "pad_cat", "span_loss"]
