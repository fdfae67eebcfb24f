"""DKN (Wang et al., WWW 2018): deep knowledge-aware network for news recommendation."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from newsrec.core import DataRequirements, NewsBatch
from newsrec.core.requirements import TITLE_ENTITY_FIELD
from newsrec.models.base import NewsRecModel, gather_rows
from newsrec.nn import masked_softmax

__all__ = ["DKN", "KCNN"]


class KCNN(nn.Module):
    r"""DKN's knowledge-aware CNN: each title word is three aligned channels, the word vector, its
    entity's vector and its entity's context (the mean of its neighbours' vectors), the entity
    channels mapped into the word space; convolutions of several windows over the words, then
    masked max-over-time pooling:

    .. math::
        \mathbf{W}_i = \big[\mathbf{w}_i;\ g(\mathbf{e}_i);\ g(\bar{\mathbf{e}}_i)\big] \in \mathbb{R}^{3 \times d},
        \quad g(\mathbf{e}) = \tanh(\mathbf{M}\mathbf{e} + \mathbf{b}), \qquad
        \mathbf{n} = \big[\max_i \operatorname{ReLU}(\mathbf{h}^{(w)} * \mathbf{W}_{i:i+w})\big]_{w}

    A word without an entity has zero entity channels. Padding never changes a vector.

    Args:
        word_dim, entity_dim: input sizes.
        num_filters: filters per window (100).
        windows: window sizes (1, 2, 3, 4: the paper's).

    Shapes: ``words [U, L, word_dim]``, ``entities [U, L, entity_dim]``, ``context [U, L,
    entity_dim]``, ``mask [U, L]`` → ``[U, num_filters · len(windows)]``.
    """

    def __init__(self, word_dim: int, entity_dim: int, num_filters: int = 100, windows: tuple[int, ...] = (1, 2, 3, 4)):
        super().__init__()
        self.transform = nn.Linear(entity_dim, word_dim)
        self.convs = nn.ModuleList(nn.Conv2d(3, num_filters, (w, word_dim)) for w in windows)
        self.windows = tuple(windows)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        self.transform.reset_parameters()
        for conv in self.convs:
            conv.reset_parameters()

    def forward(self, words: Tensor, entities: Tensor, context: Tensor, mask: Tensor) -> Tensor:
        keep = mask.unsqueeze(-1).to(words.dtype)
        has_entity = entities.abs().sum(-1, keepdim=True) > 0
        g = torch.tanh(self.transform(torch.stack([entities, context], 1))) * has_entity.unsqueeze(1)
        image = torch.cat([words.unsqueeze(1), g], 1) * keep.unsqueeze(1)  # [U, 3, L, d]
        L, out = words.shape[1], []
        for w, conv in zip(self.windows, self.convs):
            image_w = image if L >= w else nn.functional.pad(image, (0, 0, 0, w - L))
            h = torch.relu(conv(image_w)).squeeze(-1)  # [U, F, L - w + 1]
            starts = mask[:, : h.shape[-1]] if L >= w else mask[:, :1]  # a window starting on a real word
            out.append(h.masked_fill(~starts.unsqueeze(1), 0.0).amax(-1))
        return torch.cat(out, -1)


class DKN(NewsRecModel):
    r"""DKN: :class:`KCNN` news vectors over titles whose words are aligned with their entities
    (MIND's ``OccurrenceOffsets`` and ``SurfaceForms``, aligned once in the data layer:
    :mod:`newsrec.data.entity_alignment`), an attention over the clicked news whose weights depend
    on the candidate, and a DNN click predictor:

    .. math::
        a_k = \operatorname{softmax}_k\big(\mathcal{H}([\mathbf{n}_k; \mathbf{c}])\big), \qquad
        \mathbf{u}(\mathbf{c}) = \sum_k a_k \mathbf{n}_k, \qquad
        s = \mathcal{G}([\mathbf{u}(\mathbf{c}); \mathbf{c}])

    (:math:`\mathcal{H}`, :math:`\mathcal{G}`: two-layer DNNs). Entity vectors start from the
    data's TransE vectors (``entity_embedding.vec``); an entity's context is the mean of its
    ``num_entity_neighbors`` top neighbours in newsrec's global entity graph. MIND ships no
    knowledge-graph triples, so the click-built entity graph (GLORY's) stands in for the paper's
    one-hop KG neighbours.

    **Not cacheable**: the user depends on the candidate. Evaluation and serving run the plain
    forward, exactly; the attention's first layer is applied to each side separately and the
    candidates are scored ``candidate_chunk`` at a time, so ``[B, C, H, d]`` is never built.

    Args:
        entity_dim: entity vector size (100, TransE's on MIND).
        num_filters: KCNN filters per window (100); ``windows`` (1, 2, 3, 4), the paper's.
        attention_dim: hidden size of :math:`\mathcal{H}` and :math:`\mathcal{G}` (64).
        num_entity_neighbors: context entities per entity (10).
        candidate_chunk: candidates scored at a time (64).
        **kwargs: the :class:`NewsRecModel` arguments.

    Shapes: ``title [U, L]``, ``title_entity_words [U, L]``, ``title_entity_neighbors [U, L,
    M]`` → news ``[U, F · windows]``; users ``[B_u, H, F · windows + 1]`` (the clicked vectors and
    the click mask); scores ``[B, C]``.
    """

    cacheable = False
    user_is_vector = False

    def __init__(
        self,
        entity_dim: int = 100,
        num_filters: int = 100,
        windows: tuple[int, ...] = (1, 2, 3, 4),
        attention_dim: int = 64,
        num_entity_neighbors: int = 10,
        candidate_chunk: int = 64,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        self.save_hyperparameters()
        if self.text_encoders.kind != "glove":
            raise ValueError("DKN's KCNN aligns word vectors with entity vectors: use news_encoder='glove'")
        self.num_entity_neighbors, self.candidate_chunk = num_entity_neighbors, candidate_chunk
        self.entity_embedding = nn.Embedding(self.num_entity_ids, entity_dim, padding_idx=0)
        self.kcnn = KCNN(self.word_dim, entity_dim, num_filters, tuple(windows))
        self.news_dim = num_filters * len(windows)
        self.dropout = nn.Dropout(self.dropout_rate)
        self.attention_history = nn.Linear(self.news_dim, attention_dim)
        self.attention_candidate = nn.Linear(self.news_dim, attention_dim, bias=False)
        self.attention_out = nn.Linear(attention_dim, 1)
        self.predictor = nn.Sequential(
            nn.Linear(2 * self.news_dim, attention_dim), nn.ReLU(), nn.Linear(attention_dim, 1)
        )

    def data_requirements(self) -> DataRequirements:
        return DataRequirements(
            news_fields=("title", TITLE_ENTITY_FIELD), entity_neighbors=self.num_entity_neighbors, entity_graph={}
        )

    def pretrained_embeddings(self) -> dict[str, list[nn.Embedding]]:
        return {**super().pretrained_embeddings(), "entities": [self.entity_embedding]}

    def encode_news(self, news: dict[str, Tensor], history_news: Tensor | None = None) -> Tensor:
        tokens = news["title"]
        entities = self.entity_embedding(news[TITLE_ENTITY_FIELD])  # [U, L, e]
        neighbors = news["title_entity_neighbors"]  # [U, L, M], 0 = none
        present = (neighbors > 0).unsqueeze(-1).to(entities.dtype)
        context = (self.entity_embedding(neighbors) * present).sum(2) / present.sum(2).clamp_min(1)
        words = self.dropout(self.word_embedding(tokens))
        return self.kcnn(words, entities, context, tokens != 0)

    def encode_users(self, batch: dict, history_news: Tensor) -> Tensor:
        mask = batch["history_mask"]
        clicked = gather_rows(history_news, batch["history"])
        return torch.cat([clicked, mask.unsqueeze(-1).to(clicked.dtype)], -1)

    def score_candidates(self, users: Tensor, candidates: Tensor, batch: NewsBatch) -> Tensor:
        """Candidate-aware attention and the click predictor, ``candidate_chunk`` candidates at a
        time: ``users [B, H, d + 1]``, ``candidates [B, C, d]`` → ``[B, C]``."""
        clicked, mask = users[..., :-1], users[..., -1] > 0
        keys = self.attention_history(clicked)  # [B, H, a]
        out = []
        for start in range(0, candidates.shape[1], self.candidate_chunk):
            c = candidates[:, start : start + self.candidate_chunk]  # [B, c, d]
            hidden = torch.relu(keys.unsqueeze(1) + self.attention_candidate(c).unsqueeze(2))  # [B, c, H, a]
            weights = masked_softmax(self.attention_out(hidden).squeeze(-1), mask.unsqueeze(1))
            user = torch.einsum("bch,bhd->bcd", weights, clicked)
            out.append(self.predictor(torch.cat([user, c], -1)).squeeze(-1))
        return torch.cat(out, 1)
