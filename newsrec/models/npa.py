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
      (evaluation and serving run the plain forward, exact and slower). The forward gathers
      only the word features each user reads (its clicks' and its candidates', never every
      news of the batch for every user), as batched matrix products; without gradients it
      works in chunks of users, so evaluation memory is bounded whatever the batch.
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

    #: word features gathered at once when no gradient is kept (elements; bounds evaluation memory)
    chunk_elements: int = 1 << 22

    def _personal_news(self, features: Tensor, word_mask: Tensor, rows: Tensor, keys: Tensor) -> Tensor:
        r"""News vectors read with each user's own word query: ``features [U, L, F]``,
        ``word_mask [U, L]``, ``rows [b, n]`` (rows of ``features``) and ``keys [b, F]`` →
        ``[b, n, F]`` (:math:`\sum_l \alpha_l \mathbf{c}_l`, a fully padded news → 0).

        Only the ``[b, n, L, F]`` features the users read are gathered, as two batched matrix
        products; without gradients, in chunks of users of at most :attr:`chunk_elements`."""
        b, n = rows.shape
        length, dim = features.shape[1:]
        step = b if torch.is_grad_enabled() else max(1, self.chunk_elements // max(n * length * dim, 1))
        out = []
        for s in range(0, b, step):
            r, k = rows[s : s + step], keys[s : s + step]
            m = len(r)
            g = features.index_select(0, r.reshape(-1)).view(m, n * length, dim)  # [m, n·L, F]
            logits = torch.bmm(g, k.unsqueeze(-1)).view(m * n, 1, length)
            weights = masked_softmax(logits, word_mask.index_select(0, r.reshape(-1)).view(m * n, 1, length))
            out.append(torch.bmm(weights, g.view(m * n, length, dim)).view(m, n, dim))
        return out[0] if len(out) == 1 else torch.cat(out)

    #: the clicks are read by matrix products over every news of the batch (:meth:`_personal_users`)
    #: when the batch has fewer distinct news than this share of the users' clicks
    dense_read_share: float = 0.5

    def _personal_users(self, features: Tensor, word_mask: Tensor, batch: NewsBatch, word_keys: Tensor) -> Tensor:
        r"""Users ``[B_u, F]`` from their clicks, each read with the user's own word query
        (:math:`\mathbf{u} = \sum_j \beta_j \sum_l \alpha_{jl} \mathbf{c}_{jl}`).

        Two exact forms: gathering the ``[B_u, H, L, F]`` word features of the clicks
        (:meth:`_personal_news`), or, when the batch has few distinct news ``U`` against its
        ``B_u·H`` clicks (``U < dense_read_share · B_u·H``), three matrix products over all of
        them: every word's logits for every user's two keys ``[U·L, 2B_u]``, then the users as a
        ``[B_u, U·L]`` weight matrix times the ``[U·L, F]`` features (no gather, no
        ``[B_u, H, L, F]`` tensor)."""
        history, history_mask = batch["history"], batch["history_mask"]
        news_keys = self._keys(batch["history_users"], self.news_query)
        num_news, length, dim = features.shape
        users, clicks = history.shape
        if num_news >= self.dense_read_share * users * clicks:
            return self._pool(self._personal_news(features, word_mask, history, word_keys), history_mask, news_keys)
        flat = features.reshape(num_news * length, dim)
        logits = (flat @ torch.cat([word_keys, news_keys]).T).view(num_news, length, 2, users)
        who = torch.arange(users, device=history.device)[:, None]
        alpha = masked_softmax(logits[:, :, 0, :][history, :, who], word_mask[history])  # [B_u, H, L]
        beta = masked_softmax((alpha * logits[:, :, 1, :][history, :, who]).sum(-1), history_mask)  # [B_u, H]
        column = (history[..., None] * length + torch.arange(length, device=history.device)).view(users, -1)
        weights = flat.new_zeros(users, num_news * length)
        weights = weights.scatter_add(1, column, (beta[..., None] * alpha).view(users, -1))
        return weights @ flat

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
        users = self._personal_users(features, word_mask, batch, word_keys)  # [B_u, F]
        index = batch["user_index"]
        candidates = self._personal_news(features, word_mask, batch["candidates"], word_keys.index_select(0, index))
        return self.score_candidates(users.index_select(0, index), candidates, batch)  # [B, C]
