"""Inference for the Llama and Mixtral decoders trained from scratch without the library's per-call
machinery (mask building, output capture, cache and keyword handling), which is most of a small
model's time at serving batch sizes: the same weights, read from the Hugging Face modules, and the
same arithmetic. Used on CPU in eval mode for right-padded batches (every sequence its events, then
padding: what evaluation and serving build), where a causal mask alone is exact at every event;
anything else goes through the library. `tests/models/test_lean.py` holds the two equal."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.distributed.fsdp import FSDPModule

# up to this many tokens a mixture of experts runs every expert on every token and weighs the outputs
# (fewer, larger operations); beyond it each expert runs on its own tokens, through the library's
# expert kernels (on the VS full model one history is faster dense, eight are faster sparse)
DENSE_EXPERTS_TOKENS = 128


def applies(decoder: nn.Module, embeddings: torch.Tensor, padding_mask: torch.Tensor) -> bool:
    """Whether `decoder_forward` equals the library's forward here."""
    if decoder.training or torch.is_grad_enabled() or embeddings.device.type != "cpu":
        return False
    config = decoder.config
    if embeddings.dtype != torch.float32 or config._attn_implementation != "sdpa":
        return False
    if config.rope_parameters.get("rope_type", "default") != "default" or getattr(config, "sliding_window", None):
        return False
    # FSDP gathers a sharded module's weights in hooks on that module's own forward
    if any(isinstance(m, FSDPModule) for m in decoder.modules()):
        return False
    # right padding: no event after a pad
    return bool((padding_mask[:, 1:] <= padding_mask[:, :-1]).all())


def decoder_forward(decoder: nn.Module, embeddings: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """(last hidden states (B, T, D), router logits per layer (B*T, E), empty for a dense decoder) of a
    Hugging Face LlamaModel or MixtralModel."""
    batch, length, width = embeddings.shape
    cos, sin = _rotary(decoder.rotary_emb, length)
    hidden, router_logits = embeddings, []
    for layer in decoder.layers:
        hidden = hidden + _attention(layer.self_attn, _rms_norm(layer.input_layernorm, hidden), cos, sin)
        normed = _rms_norm(layer.post_attention_layernorm, hidden)
        if hasattr(layer.mlp, "experts"):
            mixed, logits = _experts(layer.mlp, normed.reshape(batch * length, width))
            hidden = hidden + mixed.view(batch, length, width)
            router_logits.append(logits)
        else:
            mlp = layer.mlp
            hidden = hidden + mlp.down_proj(mlp.act_fn(mlp.gate_proj(normed)) * mlp.up_proj(normed))
    return _rms_norm(decoder.norm, hidden), router_logits


def _rms_norm(norm: nn.Module, x: torch.Tensor) -> torch.Tensor:
    variance = x.pow(2).mean(-1, keepdim=True)
    return norm.weight * (x * torch.rsqrt(variance + norm.variance_epsilon))


def _rotary(rotary: nn.Module, length: int) -> tuple[torch.Tensor, torch.Tensor]:
    frequencies = torch.arange(length, dtype=torch.float32)[:, None] * rotary.inv_freq[None, :].float()
    angles = torch.cat((frequencies, frequencies), dim=-1)
    return angles.cos() * rotary.attention_scaling, angles.sin() * rotary.attention_scaling


def _rotate_half(x: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


def _attention(attention: nn.Module, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    batch, length, _ = x.shape
    shape = (batch, length, -1, attention.head_dim)
    q = attention.q_proj(x).view(shape).transpose(1, 2)
    k = attention.k_proj(x).view(shape).transpose(1, 2)
    v = attention.v_proj(x).view(shape).transpose(1, 2)
    q, k = q * cos + _rotate_half(q) * sin, k * cos + _rotate_half(k) * sin
    attended = F.scaled_dot_product_attention(
        q, k, v, is_causal=True, scale=attention.scaling, enable_gqa=attention.num_key_value_groups > 1
    )
    return attention.o_proj(attended.transpose(1, 2).reshape(batch, length, -1))


def _experts(block: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """A Mixtral sparse block: softmax router, top-k experts, their weights renormalised to sum to 1."""
    router, experts = block.gate, block.experts
    logits = F.linear(x, router.weight)
    top, chosen = logits.float().softmax(dim=-1).topk(router.top_k, dim=-1)
    top = top / top.sum(dim=-1, keepdim=True)
    if x.shape[0] <= DENSE_EXPERTS_TOKENS:
        weights = torch.zeros_like(logits).scatter_(1, chosen, top)  # (N, E), zero where not chosen (fp32 only)
        gate, up = torch.einsum("nd,efd->enf", x, experts.gate_up_proj).chunk(2, dim=-1)
        out = torch.einsum("enf,edf->end", experts.act_fn(gate) * up, experts.down_proj)
        return torch.einsum("end,ne->nd", out, weights), logits
    return experts(x, chosen, top), logits  # the library's own grouped expert kernels
