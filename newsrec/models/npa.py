"""NPA (Wu et al., KDD 2019): neural news recommendation with personalised attention."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from newsrec.core import DataRequirements, NewsBatch, as_batch
from newsrec.models.base import NewsRecModel, gather_rows
from newsrec.nn import id_embedding, masked_softmax
from newsrec.nn.cnn import CNNTextEncoder

__all__ = ["NPA"]


class PersonalisedQuery(nn.Module):
    r"""A user's attention key from their ID embedding (NPA's preference query):

    .. math::
        \mathbf{q} = \operatorname{ReLU}(\mathbf{V}\mathbf{e}_u + \mathbf{v}), \qquad
        \mathbf{k} = \tanh(\mathbf{W}_p\mathbf{q} + \mathbf{b}_p), \qquad
        a_i = \operatorname{softmax}_i(\mathbf{c}_i^\top\mathbf{k})

    Shapes: ``e_u [..., user_dim]`` → ``k [..., out_dim]``.
    """

    def __init__(self, user_dim: int, query_dim: int, out_dim: int) -> None:
        super().__init__()
        self.query = nn.Linear(user_dim, query_dim)
        self.key = nn.Linear(query_dim, out_dim)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        self.query.reset_parameters()
        self.key.reset_parameters()

    def forward(self, user_embedding: Tensor) -> Tensor:
        return torch.tanh(self.key(torch.relu(self.query(user_embedding))))


class NPA(NewsRecModel):
    r"""NPA: a user-ID embedding ``e_u`` (``user_dim`` = 50) gives a word query and a news query
    (:class:`PersonalisedQuery`, 200-d); news: word vectors → CNN (``num_filters`` = 400, window
    3) → attention over the words with the word query; user: attention over the clicked news with
    the news query; score: inner product.

    .. math::
        \mathbf{r} = \sum_i \alpha_i \mathbf{c}_i,\
        \alpha_i = \operatorname{softmax}_i(\mathbf{c}_i^\top \mathbf{k}_w(u)), \qquad
        \mathbf{u} = \sum_j \beta_j \mathbf{r}_j,\
        \beta_j = \operatorname{softmax}_j(\mathbf{r}_j^\top \mathbf{k}_d(u)), \qquad
        s = \mathbf{u}^\top \mathbf{r}_c

    Two forms:

    - ``personalised=True`` (default, the paper): every news, the candidates included, is read
      with the user's own word query, so a news vector depends on the user: **not cacheable**
      (evaluation and serving run the plain forward, exact and slower). The forward never
      materialises ``[B, C, L, F]``: a candidate's score is
      :math:`\sum_l \alpha_{l}\,(\mathbf{c}_l^\top\mathbf{u})`.
    - ``personalised=False`` (the cacheable form FUM's Table 2 timed): the words of every news
      are pooled with the shared query of the unknown user, and only the news-level attention is
      personalised. Cacheable.

    The user-ID table has the data's ``num_users`` rows (the training users, linked by the CLI);
    row 0, every user the training split lacks, is the zero vector, so an unseen user gets the
    shared queries :math:`\operatorname{ReLU}(\mathbf{v})` and a finite score.

    Args:
        num_filters: the CNN's filters (400), the model size.
        window: the CNN's window (3).
        user_dim: the user-ID embedding size (50).
        query_dim: the preference queries' size (200).
        personalised: the paper's personalised candidate encoding (True) or the cacheable form.
        **kwargs: the :class:`NewsRecModel` arguments (``num_users`` among the data sizes).

    Shapes: ``title [U, L]`` → word features ``[U, L, num_filters]``; ``history_users [B_u]``
    → users ``[B_u, num_filters]``; scores ``[B, C]``.
    """

    def __init__(
        self,
        num_filters: int = 400,
        window: int = 3,
        user_dim: int = 50,
        query_dim: int = 200,
        personalised: bool = True,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        self.save_hyperparameters()
        if self.text_encoders.kind != "glove":
            raise ValueError("NPA's personalised word attention reads CNN word features: use news_encoder='glove'")
        self.personalised = personalised
        self.cacheable = not personalised
        self.cnn = CNNTextEncoder(self.word_embedding, num_filters, window, dropout=self.dropout_rate, pooling=False)
        self.user_embedding = id_embedding(self.num_users, user_dim)
        self.word_query = PersonalisedQuery(user_dim, query_dim, num_filters)
        self.news_query = PersonalisedQuery(user_dim, query_dim, num_filters)

    def data_requirements(self) -> DataRequirements:
        return DataRequirements(news_fields=("title",), user_ids=True)

    def _keys(self, users: Tensor, query: PersonalisedQuery) -> Tensor:
        """``[B_u] → [B_u, F]``: the users' attention keys (row 0: the unknown user's)."""
        return query(self.user_embedding(users.clamp(0, self.user_embedding.num_embeddings - 1)))

    def _pool(self, features: Tensor, mask: Tensor, key: Tensor) -> Tensor:
        """Attention over ``features [..., L, F]`` with ``key [..., F]`` → ``[..., F]``."""
        weights = masked_softmax(torch.einsum("...lf,...f->...l", features, key), mask)
        return torch.einsum("...l,...lf->...f", weights, features)

    def encode_news(self, news: dict[str, Tensor], history_news: Tensor | None = None) -> Tensor:
        """Unpersonalised news vectors ``[U, F]``: the unknown user's word query."""
        tokens = news["title"]
        key = self._keys(torch.zeros(1, dtype=torch.long, device=tokens.device), self.word_query)[0]
        return self._pool(self.cnn.word_features(tokens), tokens != 0, key)

    def encode_users(self, batch: dict, history_news: Tensor) -> Tensor:
        users = batch["history_users"]
        clicked = gather_rows(history_news, batch["history"])  # [B_u, H, F]
        return self._pool(clicked, batch["history_mask"], self._keys(users, self.news_query))

    def forward(self, batch: NewsBatch) -> Tensor:
        if not self.personalised:
            return super().forward(batch)
        batch = as_batch(batch)
        tokens = batch["news"]["title"]
        features, word_mask = self.cnn.word_features(tokens), tokens != 0  # [U, L, F], [U, L]
        word_keys = self._keys(batch["history_users"], self.word_query)  # [B_u, F]
        clicked = gather_rows(features, batch["history"])  # [B_u, H, L, F]: each user reads their clicks
        clicked = self._pool(clicked, gather_rows(word_mask, batch["history"]), word_keys[:, None])
        users = self._pool(clicked, batch["history_mask"], self._keys(batch["history_users"], self.news_query))
        users, word_keys = users.index_select(0, batch["user_index"]), word_keys.index_select(0, batch["user_index"])
        # a candidate's vector is Σ_l α_l c_l, so its score is Σ_l α_l (c_l · u): no [B, C, L, F]
        logits = torch.einsum("ulf,bf->bul", features, word_keys)  # [B, U, L]
        projected = torch.einsum("ulf,bf->bul", features, users)
        index = batch["candidates"].unsqueeze(-1).expand(-1, -1, tokens.shape[-1])  # [B, C, L]
        weights = masked_softmax(logits.gather(1, index), word_mask[batch["candidates"]])
        return (weights * projected.gather(1, index)).sum(-1)
