"""What a pre-trained encoder knows before fine-tuning: frozen features, pre-trained against random init.

Fine-tuning scores mix what pre-training learned with what fine-tuning learns from the labels (a randomly
initialised encoder learns a bag of words from 8,000 SST-2 rows). This probe keeps the encoder frozen, so
only pre-training shows. For each layer's output (0 = embeddings), mean-pooled over real tokens and the
[CLS] vector:

- SST-2: a logistic regression (L2, full-batch L-BFGS) on `--train-rows` training sentences, dev accuracy;
- STS-B: the cosine of the two sentences' vectors, Spearman correlation with the dev scores (no training).

The random encoder has the checkpoint's config and vocabulary (`--seed` draws its weights), as
`pretrained=null` does in `bench/core_claim.py`.

    python bench/probe_features.py --pretrained runs/core_claim/pretrain/export --glue ../shared/data/glue
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import torch
from torch import Tensor
from torchmetrics.functional import spearman_corrcoef

from bertlab.data.glue_files import read_glue_tsv
from bertlab.data.tokenizer import load_tokenizer
from bertlab.model.bert import BertModel
from bertlab.model.checkpoint import read_model_config

REPO = Path(__file__).resolve().parents[1]
log = logging.getLogger("probe_features")


@torch.no_grad()
def features(model: BertModel, tokenizer, texts: list[str], length: int, batch: int = 128) -> Tensor:
    """Per layer, mean-pooled and [CLS] vectors: `(L+1, 2, N, H)`."""
    tokenizer.enable_truncation(length)
    tokenizer.enable_padding(pad_id=tokenizer.token_to_id("[PAD]"))
    out = []
    for i in range(0, len(texts), batch):
        enc = tokenizer.encode_batch(texts[i : i + batch])
        ids = torch.tensor([e.ids for e in enc])
        mask = torch.tensor([e.attention_mask for e in enc])
        states = model(ids, mask, output_hidden_states=True).hidden_states
        real = mask.unsqueeze(-1).float()  # (B, T, 1)
        out.append(torch.stack([torch.stack([(h * real).sum(1) / real.sum(1), h[:, 0]]) for h in states]))
    return torch.cat(out, dim=2)


def probe_accuracy(x_train: Tensor, y_train: Tensor, x_dev: Tensor, y_dev: Tensor, l2: float = 1e-3) -> float:
    """Dev accuracy of an L2-regularised logistic regression on standardised features `(N, H)`."""
    mean, std = x_train.mean(0), x_train.std(0) + 1e-6
    x_train, x_dev = (x_train - mean) / std, (x_dev - mean) / std
    w = torch.zeros(x_train.shape[1] + 1, requires_grad=True)
    opt = torch.optim.LBFGS([w], max_iter=500, line_search_fn="strong_wolfe")
    targets = y_train.float()

    def closure() -> Tensor:
        opt.zero_grad()
        logits = x_train @ w[:-1] + w[-1]
        loss = (
            torch.nn.functional.binary_cross_entropy_with_logits(logits, targets) + l2 * w[:-1].square().sum()
        )
        loss.backward()
        return loss

    opt.step(closure)
    with torch.no_grad():
        return float(((x_dev @ w[:-1] + w[-1] > 0).long() == y_dev).float().mean())


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--pretrained", required=True, help="export folder (or .ckpt) of a pre-training run")
    p.add_argument("--tokenizer", help="vocab.txt / tokenizer.json / folder (default: --pretrained's)")
    p.add_argument("--glue", default=str(REPO.parent / "shared" / "data" / "glue"))
    p.add_argument("--train-rows", type=int, default=4000, help="SST-2 training sentences for the probe")
    p.add_argument("--max-seq-length", type=int, default=64)
    p.add_argument("--seed", type=int, default=1, help="draws the random encoder's weights")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    tokenizer = load_tokenizer(args.tokenizer or args.pretrained)
    glue = Path(args.glue)
    sst_train = read_glue_tsv("sst2", glue / "SST-2" / "train.tsv", "train").head(args.train_rows)
    sst_dev = read_glue_tsv("sst2", glue / "SST-2" / "dev.tsv", "dev")
    sts_dev = read_glue_tsv("stsb", glue / "STS-B" / "dev.tsv", "dev")
    assert sts_dev.text_b is not None and sts_dev.labels is not None
    assert sst_train.labels is not None and sst_dev.labels is not None
    y_train, y_dev = torch.tensor(sst_train.labels), torch.tensor(sst_dev.labels)
    gold = torch.tensor(sts_dev.labels, dtype=torch.float)

    torch.manual_seed(args.seed)
    config = read_model_config(args.pretrained)
    starts = {
        "pretrained": BertModel.from_pretrained(args.pretrained, new_heads=True, add_pooling_layer=False),
        "random": BertModel(config, add_pooling_layer=False),
    }
    rows: dict[str, list[list[str]]] = {}
    for start, model in starts.items():
        model.eval()
        log.info("%s: features of %d + %d SST-2 and 2 x %d STS-B sentences", start, len(sst_train),
                 len(sst_dev), len(sts_dev))  # fmt: skip
        tr, dv = (features(model, tokenizer, s.text_a, args.max_seq_length) for s in (sst_train, sst_dev))
        a, b = (features(model, tokenizer, t, args.max_seq_length) for t in (sts_dev.text_a, sts_dev.text_b))
        for layer in range(tr.shape[0]):
            cells = []
            for kind in range(2):  # 0 mean-pooled, 1 [CLS]
                acc = probe_accuracy(tr[layer, kind], y_train, dv[layer, kind], y_dev)
                cos = torch.nn.functional.cosine_similarity(a[layer, kind], b[layer, kind], dim=-1)
                # layer 0's [CLS] is one vector for every sentence: a constant cosine has no rank order
                rho = float(spearman_corrcoef(cos, gold)) if cos.std() > 1e-6 else float("nan")
                cells += [f"{100 * acc:.1f}", f"{100 * rho:.1f}"]
            rows.setdefault(str(layer), []).extend(cells)
    print("| layer | " + " | ".join(
        f"{s}: SST-2 probe {k} | {s}: STS-B cosine {k}" for s in starts for k in ("mean", "[CLS]")
    ) + " |")  # fmt: skip
    print("|---" * (1 + 4 * len(starts)) + "|")
    for layer, cells in rows.items():
        print(f"| {layer} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
