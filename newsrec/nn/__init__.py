"""Reusable encoders, importable without Lightning (PyTorch Geometric layer style)."""

from newsrec.nn.attention import AdditiveAttention, MultiHeadSelfAttention, masked_softmax
from newsrec.nn.cnn import CNNTextEncoder
from newsrec.nn.embedding import (
    TABLE_INITS,
    LearnedEmbedding,
    copy_pretrained_,
    id_embedding,
    learned_embedding,
    pretrained_embedding,
)
from newsrec.nn.fastformer import Fastformer, FastformerAttention, FastformerLayer
from newsrec.nn.fm import FeatureField, fm_pairwise
from newsrec.nn.graph import (
    GRAPH_ENCODERS,
    GatedGraphConvolution,
    GatedGraphEncoder,
    MessagePassingEncoder,
    build_graph_encoder,
    check_graph_encoder,
)
from newsrec.nn.news import EntityEncoder, MultiViewCombiner, TextEncoder
from newsrec.nn.plm import PLM_POOLINGS, PretrainedTextEncoder, freeze_layers, load_pretrained_model
from newsrec.nn.text import NEWS_ENCODERS, TextEncoderFactory
from newsrec.nn.transition import TransitionScorer
from newsrec.nn.user import UserEncoder

__all__ = [
    "GRAPH_ENCODERS",
    "NEWS_ENCODERS",
    "PLM_POOLINGS",
    "TABLE_INITS",
    "AdditiveAttention",
    "CNNTextEncoder",
    "EntityEncoder",
    "Fastformer",
    "FastformerAttention",
    "FastformerLayer",
    "FeatureField",
    "LearnedEmbedding",
    "GatedGraphConvolution",
    "GatedGraphEncoder",
    "MessagePassingEncoder",
    "MultiHeadSelfAttention",
    "MultiViewCombiner",
    "PretrainedTextEncoder",
    "TextEncoder",
    "TextEncoderFactory",
    "TransitionScorer",
    "UserEncoder",
    "build_graph_encoder",
    "check_graph_encoder",
    "copy_pretrained_",
    "fm_pairwise",
    "freeze_layers",
    "id_embedding",
    "learned_embedding",
    "load_pretrained_model",
    "masked_softmax",
    "pretrained_embedding",
]
