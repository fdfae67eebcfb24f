"""Reusable encoders, importable without Lightning (PyTorch Geometric layer style)."""

from newsrec.nn.attention import AdditiveAttention, MultiHeadSelfAttention, masked_softmax
from newsrec.nn.embedding import pretrained_embedding
from newsrec.nn.fastformer import Fastformer, FastformerAttention, FastformerLayer
from newsrec.nn.graph import GatedGraphEncoder, to_adjacency
from newsrec.nn.news import EntityEncoder, MultiViewCombiner, TextEncoder
from newsrec.nn.transition import TransitionScorer
from newsrec.nn.user import UserEncoder

__all__ = [
    "AdditiveAttention",
    "EntityEncoder",
    "Fastformer",
    "FastformerAttention",
    "FastformerLayer",
    "GatedGraphEncoder",
    "MultiHeadSelfAttention",
    "MultiViewCombiner",
    "TextEncoder",
    "TransitionScorer",
    "UserEncoder",
    "masked_softmax",
    "pretrained_embedding",
    "to_adjacency",
]
