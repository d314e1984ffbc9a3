"""The BERT encoder (Devlin et al., 2019), top to bottom in reading order.

Post-LayerNorm Transformer layers, exact GELU, learned absolute positions and segment embeddings.
Attribute names are those of transformers' `modeling_bert.py`, so published checkpoints load strictly.

Where we differ from transformers (same numbers, different work): when a batch has padding and
`config.unpad` is set, the dense layers run on the real tokens only and attention on length buckets
(`model/unpad.py`); outputs at padded positions are zeros instead of transformers' meaningless values.

`config.is_decoder` (the paper's left-to-right model) makes every self-attention causal, as transformers
does for that flag: a position attends to itself and earlier real tokens. There [CLS] sees only itself, so
the pooler reads each sequence's last real token instead (as GPT's classifier does); transformers'
pooler always reads position 0, so a causal model's `pooler_output` (and the classifiers over it) differ
from transformers' there, and the export warns (`model/convert.py`).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from bertlab.model.checkpoint import model_from_checkpoint
from bertlab.model.config import BertConfig
from bertlab.model.convert import write_folder
from bertlab.model.unpad import Padding


def activation(name: str) -> nn.Module:
    """The feed-forward activation by its transformers name ("gelu" is the exact erf form)."""
    return {
        "gelu": nn.GELU(),
        "gelu_new": nn.GELU(approximate="tanh"),
        "gelu_pytorch_tanh": nn.GELU(approximate="tanh"),
        "relu": nn.ReLU(),
    }[name]


class BertEmbeddings(nn.Module):
    """Word + position + token-type embeddings, LayerNorm, dropout: ids `(...,)` -> `(..., H)`."""

    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        # padding_idx as transformers: the [PAD] row starts at zero and gets no gradient
        self.word_embeddings = nn.Embedding(
            config.vocab_size, config.hidden_size, padding_idx=config.pad_token_id
        )
        self.position_embeddings = nn.Embedding(config.max_position_embeddings, config.hidden_size)
        self.token_type_embeddings = nn.Embedding(config.type_vocab_size, config.hidden_size)
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)

    def forward(self, input_ids: Tensor, token_type_ids: Tensor, position_ids: Tensor) -> Tensor:
        x = self.word_embeddings(input_ids) + self.token_type_embeddings(token_type_ids)
        x = x + self.position_embeddings(position_ids)
        return self.dropout(self.LayerNorm(x))


def causal_mask(keys: Tensor) -> Tensor:
    """Key-padding mask `(B, 1, 1, T)` bool -> `(B, 1, T, T)`: key j is attended from query i when it is
    real and j <= i. A query with no such key (padding before the first real token) attends to itself,
    so SDPA returns numbers rather than NaN there; real queries always see themselves, so are unchanged."""
    length = keys.shape[-1]
    allowed = keys & torch.ones(length, length, dtype=torch.bool, device=keys.device).tril()
    eye = torch.eye(length, dtype=torch.bool, device=keys.device)
    return allowed | (eye & ~allowed.any(-1, keepdim=True))


class BertSelfAttention(nn.Module):
    """Multi-head scaled dot-product attention: `(B, T, H)` -> `(B, T, H)` under a key-padding mask
    (and, with `config.is_decoder`, causal)."""

    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.num_heads, self.head_dim = config.num_attention_heads, config.head_dim
        self.query = nn.Linear(config.hidden_size, config.hidden_size)
        self.key = nn.Linear(config.hidden_size, config.hidden_size)
        self.value = nn.Linear(config.hidden_size, config.hidden_size)
        self.dropout_p = config.attention_probs_dropout_prob
        self.is_causal = config.is_decoder

    def forward(self, x: Tensor, mask: Tensor | None, padding: Padding | None) -> Tensor:
        """x `(B, T, H)` or packed `(N, H)`; mask bool (True = attend) or None: `(B, 1, 1, T)`, or under
        is_decoder `(B, 1, T, T)` with the causal part in it (`causal_mask`)."""
        # one GEMM for q, k, v: cheaper than three and the same numbers
        w = torch.cat((self.query.weight, self.key.weight, self.value.weight))
        b = torch.cat((self.query.bias, self.key.bias, self.value.bias))
        qkv = F.linear(x, w, b)
        if padding is None:
            # no padding: SDPA's own causal flag; with padding the mask already holds the causal part
            return self.attend(qkv, mask, causal=self.is_causal and mask is None)
        if not padding.shapes:  # padding only, no token to attend from
            return qkv[:, : self.num_heads * self.head_dim]
        # attention needs a grid: one per length bucket. A bucket row holds its sequence's real tokens in
        # order from slot 0, then padded slots; causally, a real query only reaches earlier slots, all real,
        # so the causal flag alone is the whole mask (padded-slot queries are never read back).
        masks = [None] * len(padding.shapes) if self.is_causal else padding.masks
        return padding.from_buckets(
            [self.attend(part, m, self.is_causal) for part, m in zip(padding.to_buckets(qkv), masks)]
        )

    def attend(self, qkv: Tensor, mask: Tensor | None, causal: bool = False) -> Tensor:
        """Fused projections `(B, T, 3H)` -> context `(B, T, H)`; mask bool `(B, 1, 1|T, T)` or None;
        causal: SDPA's lower-triangular mask (only with mask None)."""
        batch, length, _ = qkv.shape
        qkv = qkv.view(batch, length, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        ctx = F.scaled_dot_product_attention(
            qkv[0],
            qkv[1],
            qkv[2],
            attn_mask=mask,
            dropout_p=self.dropout_p if self.training else 0.0,
            is_causal=causal,
        )  # (B, heads, T, head_dim)
        return ctx.transpose(1, 2).reshape(batch, length, -1)


class BertSelfOutput(nn.Module):
    """Attention output projection, dropout, residual, LayerNorm (post-LN)."""

    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)

    def forward(self, x: Tensor, residual: Tensor) -> Tensor:
        return self.LayerNorm(self.dropout(self.dense(x)) + residual)


class BertAttention(nn.Module):
    """Self-attention block: attention then output projection with residual and LayerNorm."""

    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.self = BertSelfAttention(config)
        self.output = BertSelfOutput(config)

    def forward(self, x: Tensor, mask: Tensor | None, padding: Padding | None) -> Tensor:
        return self.output(self.self(x, mask, padding), x)


class BertIntermediate(nn.Module):
    """Feed-forward expansion: `(..., H)` -> `(..., I)` with the activation."""

    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.intermediate_size)
        self.intermediate_act_fn = activation(config.hidden_act)

    def forward(self, x: Tensor) -> Tensor:
        return self.intermediate_act_fn(self.dense(x))


class BertOutput(nn.Module):
    """Feed-forward contraction `(..., I)` -> `(..., H)`, dropout, residual, LayerNorm."""

    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.dense = nn.Linear(config.intermediate_size, config.hidden_size)
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)

    def forward(self, x: Tensor, residual: Tensor) -> Tensor:
        return self.LayerNorm(self.dropout(self.dense(x)) + residual)


class BertLayer(nn.Module):
    """One post-LN Transformer layer: attention block then feed-forward block."""

    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.attention = BertAttention(config)
        self.intermediate = BertIntermediate(config)
        self.output = BertOutput(config)

    def forward(self, x: Tensor, mask: Tensor | None, padding: Padding | None = None) -> Tensor:
        x = self.attention(x, mask, padding)
        return self.output(self.intermediate(x), x)


class BertEncoder(nn.Module):
    """A stack of `num_hidden_layers` BertLayers.

    `gradient_checkpointing` (transformers' name; hardware.activation_checkpointing sets it): in training
    with grad enabled, each layer keeps only its input and recomputes its activations in backward, with
    the same dropout draws (the RNG state is replayed), so the numbers are unchanged.
    """

    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.layer = nn.ModuleList(BertLayer(config) for _ in range(config.num_hidden_layers))
        self.gradient_checkpointing = False

    def forward(
        self, x: Tensor, mask: Tensor | None, padding: Padding | None, output_hidden_states: bool = False
    ) -> tuple[Tensor, tuple[Tensor, ...] | None]:
        """Embeddings `(B, T, H)`, or packed `(P, H)` under `padding`, through every layer.

        Returns the last layer's output `(B, T, H)` and, with output_hidden_states, the embeddings and
        every layer's output (L+1 x `(B, T, H)`); packed activations are padded back first.
        """
        repad = padding.pad if padding is not None else (lambda t: t)
        states: list[Tensor] = [repad(x)] if output_hidden_states else []
        checkpointed = self.gradient_checkpointing and self.training and torch.is_grad_enabled()
        for layer in self.layer:
            if checkpointed:  # non-reentrant: `padding` (no tensor) passes through, autocast is replayed
                x = checkpoint(layer, x, mask, padding, use_reentrant=False)
            else:
                x = layer(x, mask, padding)
            if output_hidden_states:
                states.append(repad(x))
        if output_hidden_states:
            return states[-1], tuple(states)
        return repad(x), None


class BertPooler(nn.Module):
    """tanh(dense(h_[CLS])): `(B, T, H)` -> `(B, H)`. Under `config.is_decoder`, h of each row's last real
    token instead (see the module docstring); with `config.pooling="mean"`, the mean of the real tokens' h."""

    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)
        self.activation = nn.Tanh()
        self.last_token = config.is_decoder
        self.mean = config.pooling == "mean"

    def forward(self, hidden: Tensor, attention_mask: Tensor | None = None) -> Tensor:
        """hidden `(B, T, H)`, attention_mask `(B, T)` (1 real / 0 pad; None: all real) -> `(B, H)`."""
        if self.mean:
            if attention_mask is None:
                return self.activation(self.dense(hidden.mean(1)))
            real = attention_mask.to(hidden.dtype).unsqueeze(-1)  # (B, T, 1)
            # padded positions may hold anything (transformers' path): weight them out, never read them
            summed = (hidden * real).sum(1)
            return self.activation(self.dense(summed / real.sum(1).clamp_min(1.0)))
        if not self.last_token:
            return self.activation(self.dense(hidden[:, 0]))
        batch, length, _ = hidden.shape
        positions = torch.arange(length, device=hidden.device).expand(batch, length)
        if attention_mask is not None:
            positions = positions * attention_mask.bool()  # padding -> 0, below every later real token
        last = positions.amax(1)  # (B,): the last real position, whatever the padding's side
        return self.activation(self.dense(hidden[torch.arange(batch, device=hidden.device), last]))


class BertOutputs(NamedTuple):
    """last_hidden_state `(B, T, H)`; pooler_output `(B, H)` or None; hidden_states L+1 x `(B, T, H)`."""

    last_hidden_state: Tensor
    pooler_output: Tensor | None
    hidden_states: tuple[Tensor, ...] | None


class PreTrainedMixin:
    """from_pretrained / save_pretrained: transformers-format folders in (and bertlab .ckpt files), folders
    out; see model/checkpoint.py and model/convert.py."""

    config: BertConfig

    @classmethod
    def from_pretrained(cls, path: str, **kwargs: Any):
        """`model_from_checkpoint(cls, path, new_heads=False, config_overrides=None, **init_kwargs)`."""
        return model_from_checkpoint(cls, path, **kwargs)

    def save_pretrained(self, path: str, vocab_file: str | None = None, lowercase: bool = True) -> None:
        write_folder(self, path, vocab_file=vocab_file, lowercase=lowercase)  # type: ignore[arg-type]


def init_weights(module: nn.Module, std: float) -> None:
    """transformers' BERT initialisation: N(0, std) weights, zero biases, unit LayerNorm, zero [PAD] row."""
    if isinstance(module, nn.Linear):
        nn.init.normal_(module.weight, std=std)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.Embedding):
        nn.init.normal_(module.weight, std=std)
        if module.padding_idx is not None:
            with torch.no_grad():
                module.weight[module.padding_idx].zero_()
    elif isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)


class BertModel(PreTrainedMixin, nn.Module):
    """The encoder: ids `(B, T)` -> hidden states `(B, T, H)` and the pooled [CLS] vector `(B, H)`."""

    def __init__(self, config: BertConfig, add_pooling_layer: bool = True) -> None:
        super().__init__()
        self.config = config
        self.embeddings = BertEmbeddings(config)
        self.encoder = BertEncoder(config)
        self.pooler = BertPooler(config) if add_pooling_layer else None
        self.apply(lambda m: init_weights(m, config.initializer_range))

    def forward(
        self,
        input_ids: Tensor,
        attention_mask: Tensor | None = None,
        token_type_ids: Tensor | None = None,
        output_hidden_states: bool = False,
    ) -> BertOutputs:
        """input_ids, attention_mask (1 real / 0 pad), token_type_ids: `(B, T)`."""
        batch, length = input_ids.shape
        if length > self.config.max_position_embeddings:
            raise ValueError(
                f"sequence length {length} exceeds max_position_embeddings "
                f"{self.config.max_position_embeddings}; truncate inputs (max_seq_length)"
            )
        if token_type_ids is None:
            token_type_ids = torch.zeros_like(input_ids)
        position_ids = torch.arange(length, device=input_ids.device).expand(batch, length)
        padding: Padding | None = None
        mask: Tensor | None = None
        if attention_mask is not None and not bool(attention_mask.all()):
            mask = attention_mask.bool()[:, None, None, :]  # (B, 1, 1, T): keys to attend to
            if self.config.is_decoder and not self.config.unpad:
                mask = causal_mask(mask)  # (B, 1, T, T); the unpadded path is causal per bucket
            if self.config.unpad:
                padding = Padding(attention_mask)
                input_ids, token_type_ids, position_ids = (
                    padding.unpad(t) for t in (input_ids, token_type_ids, position_ids)
                )
        x = self.embeddings(input_ids, token_type_ids, position_ids)
        x, states = self.encoder(x, mask, padding, output_hidden_states)
        pooled = self.pooler(x, attention_mask) if self.pooler is not None else None
        return BertOutputs(x, pooled, states)
