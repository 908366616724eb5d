"""BERT encoder (BERT4Rec-style): bidirectional, so it trains with `mlm` only."""

from torch import nn
from transformers import BertConfig, BertModel

from cmdrec.config import ModelConfig
from cmdrec.models.backbones import feed_forward


class BertBackbone(nn.Module):
    causal = False

    def __init__(self, config: ModelConfig):
        super().__init__()
        width, activation = feed_forward(config, 4 * config.d_model, "gelu")
        self.model = BertModel(
            BertConfig(
                vocab_size=1,
                hidden_size=config.d_model,
                num_hidden_layers=config.layers.n_layers,
                num_attention_heads=config.layers.n_heads,
                intermediate_size=width,
                hidden_act=activation,
                hidden_dropout_prob=config.dropout,
                attention_probs_dropout_prob=config.dropout,
                max_position_embeddings=config.position_table,
                type_vocab_size=1,
                pad_token_id=None,
            ),
            add_pooling_layer=False,
        )

    def forward(self, embeddings, padding_mask):
        return self.model(inputs_embeds=embeddings, attention_mask=padding_mask.long()).last_hidden_state, {}
