"""A pretrained decoder (Llama family) as the sequence encoder: the fused feature vectors reach
it through a trainable input projection (`inputs_embeds`), its hidden states reach the heads
through a trainable output projection; its own token embedding and LM head are not used.

The decoder arrives already loaded (and quantised or wrapped in adapters): models never touch
files; `cmdrec.training.adapters` does the loading."""

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

    def forward(self, embeddings, padding_mask):
        inputs = self.input_projection(embeddings)
        compute_dtype = next(p.dtype for p in self.decoder.parameters() if p.is_floating_point())
        if compute_dtype in (torch.bfloat16, torch.float16):
            inputs = inputs.to(compute_dtype)
        hidden = self.decoder(inputs_embeds=inputs, attention_mask=padding_mask.long()).last_hidden_state
        return self.output_projection(hidden.to(self.output_projection.weight.dtype)), {}
