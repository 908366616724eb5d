"""A pretrained decoder (Llama family) as the sequence encoder: the fused feature vectors reach
it through a trainable input projection (`inputs_embeds`), its hidden states reach the heads
through a trainable output projection; its own token embedding and LM head are not used.

The decoder arrives already loaded (and quantised or wrapped in adapters): models never touch
files; `cmdrec.artifacts.adapters` does the loading."""

import torch
from torch import nn

from cmdrec.config import ModelConfig


class PretrainedDecoderBackbone(nn.Module):
    causal = True

    def __init__(self, config: ModelConfig, decoder: nn.Module):
        super().__init__()
        hidden = decoder.config.hidden_size
        self.decoder = decoder
        self.input_projection = nn.Linear(config.d_model, hidden)
        self.output_projection = nn.Linear(hidden, config.d_model)
        # 16-bit bases take 16-bit inputs; quantised (compute in fp32 here) and fp32 bases take fp32
        dtype = next(p.dtype for p in decoder.parameters() if p.is_floating_point())
        self.input_dtype = dtype if dtype in (torch.bfloat16, torch.float16) else None

    def forward(self, embeddings, padding_mask):
        # use_cache=False: whole sequences are scored and never generated, so a key/value cache is wasted work
        inputs = self.input_projection(embeddings)
        if self.input_dtype is not None:
            inputs = inputs.to(self.input_dtype)
        hidden = self.decoder(
            inputs_embeds=inputs, attention_mask=padding_mask.long(), use_cache=False
        ).last_hidden_state
        return self.output_projection(hidden.to(self.output_projection.weight.dtype)), {}
