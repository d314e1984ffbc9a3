"""Fill-mask: the top-k tokens, with probabilities, for each `[MASK]` of given sentences (`mode=predict`).

What transformers' `pipeline("fill-mask")` returns, from the MLM head of `BertForPreTraining`: a softmax
over the whole vocabulary at each mask position, each mask on its own (a sentence with two masks gets
two independent top-k lists from one forward pass). Writes `<run>/predictions.jsonl`, one line per
sentence, and logs one line per mask. The checkpoint must have its MLM head (`check_mlm_head`).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from bertlab.data.fill_mask import MASK, write_fill_mask_predictions
from bertlab.tasks.base import BertTask, gather_objects
from bertlab.tasks.pretrain import check_mlm_head, pretraining_model

log = logging.getLogger(__name__)


class FillMaskTask(BertTask):
    """Predicts only: ids `(B, T)` -> for each of the M masks, its `top_k` token ids and probabilities."""

    def __init__(self, model_config: dict[str, Any], top_k: int = 5, **shared: Any) -> None:
        super().__init__(model_config, **shared)
        self.top_k = top_k
        self.model, self.fresh = pretraining_model(self)
        self.rows: list[dict[str, Any]] = []

    def check_heads(self) -> None:
        """The masked-LM head must come from the checkpoint (the NSP head is not used)."""
        check_mlm_head(self.pretrained, self.fresh, "fill-mask")

    @torch.no_grad()
    def top_tokens(self, batch: dict[str, Tensor]) -> tuple[Tensor, Tensor]:
        """(probabilities, token ids), each `(M, k)` sorted best first, for the masks in row-major order."""
        mlm, _ = self.model(
            batch["input_ids"],
            batch["attention_mask"],
            batch["token_type_ids"],
            masked_positions=batch["mask_positions"],
        )  # (M, V)
        probs = mlm.float().softmax(dim=-1)
        return probs.topk(min(self.top_k, probs.shape[-1]), dim=-1)

    def predict_step(self, batch: dict[str, Tensor], batch_idx: int, dataloader_idx: int = 0) -> Tensor:
        """Keep each mask's top-k with its sentence index and token position, for the epoch's file;
        returns the probabilities `(M, k)`."""
        scores, ids = self.top_tokens(batch)
        where = batch["mask_positions"].nonzero().tolist()  # (M, 2): row, position; the order of (M, k)
        for (row, pos), s, t in zip(where, scores.tolist(), ids.tolist()):
            self.rows.append({"idx": int(batch["idx"][row]), "position": pos, "scores": s, "ids": t})
        return scores

    def eval_epoch_start(self, stage: str) -> None:
        self.rows = []

    def eval_epoch_end(self, stage: str) -> None:
        if stage == "predict":
            self.write_predictions()

    def write_predictions(self) -> None:
        """`<root>/predictions.jsonl`: per sentence its text, source, each mask's candidates (token, id,
        score) and `filled`, the text with each mask's best token; one log line per mask."""
        # keyed by (sentence, position): a distributed sampler repeats sentences to even out the ranks
        unique = {(r["idx"], r["position"]): r for part in gather_objects(self.rows) for r in part}
        rows = [unique[key] for key in sorted(unique)]
        self.rows = []
        if not self.trainer.is_global_zero:
            return
        examples = self.datamodule.split("predict").examples
        vocab = self.datamodule.tokenizer
        by_sentence: dict[int, list[dict[str, Any]]] = {}
        for r in rows:
            cands = [
                {"token": vocab.id_to_token(i), "id": i, "score": s} for i, s in zip(r["ids"], r["scores"])
            ]
            by_sentence.setdefault(r["idx"], []).append({"position": r["position"], "predictions": cands})
        records = []
        for idx, masks in sorted(by_sentence.items()):
            sentence = examples[idx]
            filled = sentence.text
            for n, mask in enumerate(masks, 1):
                filled = filled.replace(MASK, mask["predictions"][0]["token"], 1)
                best = ", ".join(f"{c['token']} ({c['score']:.4f})" for c in mask["predictions"])
                log.info("%s %r [MASK] %d/%d: %s", sentence.source, sentence.text, n, len(masks), best)
            records.append(
                {"source": sentence.source, "sentence": sentence.text, "masks": masks, "filled": filled}
            )
        path = write_fill_mask_predictions(Path(self.trainer.default_root_dir) / "predictions.jsonl", records)
        log.info("wrote %s (%d sentences, %d masks)", path, len(records), len(rows))
