"""GRU4Rec-style recurrent encoder: the session-based neural baseline (causal by construction)."""

from torch import nn

from cmdrec.config import ModelConfig


class GRUBackbone(nn.Module):
    causal = True

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.input_dropout = nn.Dropout(config.dropout)
        self.gru = nn.GRU(
            config.d_model,
            config.d_model,
            num_layers=config.layers.n_layers,
            batch_first=True,
            dropout=config.dropout if config.layers.n_layers > 1 else 0.0,
        )

    def forward(self, embeddings, padding_mask):
        # right padding: outputs at real positions never depend on the padding after them
        return self.gru(self.input_dropout(embeddings))[0], {}
