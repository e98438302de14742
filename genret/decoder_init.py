"""A BERT decoder that starts as its encoder's mean pooling: DSI starting where dense retrieval is.

With atomic docids whose rows are the documents' mean-pooled embeddings (``genret.docid_init``), a decoder
whose first step outputs the query's mean-pooled encoder states scores every document by (nearly) the dense
retriever's cosine. :func:`init_decoder_as_mean_pooling` sets a ``BertLMHeadModel`` decoder's weights so that
it does, with nothing added to the architecture (a standard model, saved, loaded and trained as any other):

- first layer: the self-attention's LayerNorm scales the decoder's own token and position ``h`` by
  ``token_weight``; the cross-attention's query and key weights are 0, so every source position gets the same
  attention (padding masked), i.e. the mean of the encoder states; value and output are the identity, so that
  in ``LayerNorm(token_weight * h + mean)`` the mean is nearly all there is;
- every LayerNorm on the way without shift (bias 0) and with gain 1, but that first one;
- every other sub-layer's output projection 0 (self-attention, later cross-attentions, feed-forwards): each
  residual LayerNorm then passes its input on unchanged;
- the output transform's dense layer ``eps`` x identity: GELU is nearly linear around 0, and the LayerNorm
  after it undoes the scale.

The first step's output is then the LayerNorm of the pooled states: the pooled vector less its mean entry,
scaled to unit variance. Against rows that are the unit document embeddings the logits are ``sqrt(width)``
times the cosine with that centred vector. On cranfield (MiniLM, 1400 documents), 200 queries of a document's
first 12 words, before any training, share with exact dense MiniLM this much of their top 10:

    token_weight, eps     1e-2, 0.01   1e-3, 0.01   1e-3, 0.1 (default)   1e-3, 0.3   1e-3, 1
    top-10 overlap        0.988        0.997        0.966                 0.908       0.829

(the centring costs almost nothing). A smaller ``eps`` is closer to linear but starts the output transform as a
tiny matrix, which Adam's first steps (about the learning rate each) then rewrite; 0.1 is the compromise.
Training then starts from dense retrieval instead of from noise. Every weight stays trainable.

Measured with ``recipes/pseudo-beir.yaml`` on scifact with all 809 train claims held out of training (never
trained on; nDCG@10 at steps 1000 / 2000 / 3000 / 4000): 0.592 / 0.630 / 0.638 / 0.645 with this init, 0.570 /
0.613 / 0.630 / 0.636 from a random decoder (BM25 0.667, dense 0.660 on those claims). The first steps pull the
model away from where it starts (nearly dense's ranking, by the overlap above; not measured on these claims), and
training then climbs above the random start's curve.
"""

from __future__ import annotations

import torch
from transformers import EncoderDecoderModel, PreTrainedModel

from genret.models import ModelError


@torch.no_grad()
def init_decoder_as_mean_pooling(model: PreTrainedModel, token_weight: float = 1e-3, eps: float = 0.1) -> None:
    """Set ``model``'s BERT decoder so that its output at every step is its encoder states' mean, layer-normed
    (see the module docstring). ``model``: a bert2bert :class:`EncoderDecoderModel` whose decoder has
    cross-attention and the encoder's width (``name_or_path: minilm`` / ``bert``).

    Every weight moves at its usual pace in training: the identity maps are of order 1 (a large gain on the
    mean instead would make Adam's steps of about the learning rate tiny beside it), and the zeroed
    projections are residual branches that start silent, as in ReZero / Fixup."""
    decoder = model.decoder if isinstance(model, EncoderDecoderModel) else None
    bert = getattr(decoder, "bert", None)
    if bert is None or not getattr(decoder.config, "add_cross_attention", False):
        raise ModelError(
            f"init_decoder: mean-pooling needs a bert2bert encoder-decoder (name_or_path minilm or "
            f"bert), not {type(model).__name__}"
        )
    width = decoder.config.hidden_size
    if width != model.encoder.config.hidden_size:
        raise ModelError(
            f"init_decoder: mean-pooling needs the decoder as wide as the encoder "
            f"({width} != {model.encoder.config.hidden_size}): the pooled states pass through as they are"
        )
    eye = torch.eye(width)

    def set_linear(layer: torch.nn.Linear, weight: torch.Tensor | float) -> None:
        layer.weight.copy_(weight if isinstance(weight, torch.Tensor) else torch.full_like(layer.weight, weight))
        if layer.bias is not None:
            layer.bias.zero_()

    def plain(norm: torch.nn.LayerNorm, gain: float = 1.0) -> None:  # no shift: the pooled vector passes as it is
        norm.weight.fill_(gain)
        norm.bias.zero_()

    for i, layer in enumerate(bert.encoder.layer):
        plain(layer.attention.output.LayerNorm, token_weight if i == 0 else 1.0)
        plain(layer.crossattention.output.LayerNorm)
        plain(layer.output.LayerNorm)
        set_linear(layer.attention.output.dense, 0.0)
        set_linear(layer.output.dense, 0.0)
        cross = layer.crossattention
        if i == 0:
            set_linear(cross.self.query, 0.0)
            set_linear(cross.self.key, 0.0)
            set_linear(cross.self.value, eye)
            set_linear(cross.output.dense, eye)
        else:
            set_linear(cross.output.dense, 0.0)
    set_linear(decoder.cls.predictions.transform.dense, eps * eye)
    plain(decoder.cls.predictions.transform.LayerNorm)
