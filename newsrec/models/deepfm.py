"""DeepFM (Guo et al., IJCAI 2017): a factorisation machine and a DNN over shared embeddings."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from newsrec.models.libfm import NEWS_FIELDS, USER_FIELDS, LibFM

__all__ = ["DeepFM"]


class DeepFM(LibFM):
    r"""DeepFM: the :class:`LibFM` score plus a DNN over the fields' embeddings, sharing them:

    .. math::
        \hat{y} = \hat{y}_{FM} + \operatorname{MLP}\big([\mathbf{e}_1; \dots; \mathbf{e}_F]\big),
        \qquad \mathbf{e}_f = \sum_{i \in f} x_i \mathbf{v}_i

    over the same user-side and news-side fields and TF-IDF weights as :class:`LibFM` (three user
    fields, five news fields; ``hidden_dims`` 400-400-400 with ReLU and ``dropout`` 0.5 as the
    paper's setting). The user side and the news side are each computed once (the user state and
    the news vectors never depend on the other side: cacheable), but the DNN is no dot product:
    ``user_is_vector = False``, so serving scores every news from the cached vectors. The DNN's
    first layer is applied to each side separately (:math:`\mathbf{W}[\mathbf{e}_u; \mathbf{e}_n]
    = \mathbf{W}_u\mathbf{e}_u + \mathbf{W}_n\mathbf{e}_n`), so scoring ``C`` candidates never
    builds ``[B, C, 8k]``.

    Args:
        factor_dim: ``k`` (10).
        hidden_dims: the DNN's hidden layers (400, 400, 400).
        dnn_dropout: dropout in the DNN (0.5).
        **kwargs: the :class:`NewsRecModel` arguments.

    Shapes: news ``[U, k + 2 + 5k]`` (the FM vector, then the news fields' embeddings); users
    ``[B_u, k + 2 + 3k]``; scores ``[B, C]``.
    """

    user_is_vector = False

    def __init__(
        self, factor_dim: int = 10, hidden_dims: tuple[int, ...] = (400, 400, 400), dnn_dropout: float = 0.5, **kwargs
    ) -> None:
        super().__init__(factor_dim=factor_dim, **kwargs)
        self.save_hyperparameters()
        if not hidden_dims:
            raise ValueError("hidden_dims needs at least one layer")
        k, first = factor_dim, hidden_dims[0]
        self.user_input = nn.Linear(len(USER_FIELDS) * k, first)
        self.news_input = nn.Linear(len(NEWS_FIELDS) * k, first, bias=False)
        layers: list[nn.Module] = [nn.ReLU(), nn.Dropout(dnn_dropout)]
        for a, b in zip(hidden_dims[:-1], hidden_dims[1:]):
            layers += [nn.Linear(a, b), nn.ReLU(), nn.Dropout(dnn_dropout)]
        self.dnn = nn.Sequential(*layers, nn.Linear(hidden_dims[-1], 1))

    def encode_news(self, news: dict[str, Tensor], history_news: Tensor | None = None) -> Tensor:
        fields = self.news_fields(news)
        s, own = self.side_terms(fields)
        embeddings = [fields[name][0] for name, _ in NEWS_FIELDS]
        return torch.cat([s, own.unsqueeze(-1), torch.ones_like(own).unsqueeze(-1), *embeddings], -1)

    def encode_users(self, batch: dict, history_news: Tensor) -> Tensor:
        fields = self.user_fields(batch)
        s, own = self.side_terms(fields)
        embeddings = [fields[name][0] for name, _ in USER_FIELDS]
        return torch.cat([s, torch.ones_like(own).unsqueeze(-1), (own + self.bias).unsqueeze(-1), *embeddings], -1)

    def score(self, users: Tensor, candidates: Tensor) -> Tensor:
        width = self.factor_dim + 2
        fm = torch.einsum("bd,bcd->bc", users[:, :width], candidates[..., :width])
        hidden = self.user_input(users[:, width:]).unsqueeze(1) + self.news_input(candidates[..., width:])
        return fm + self.dnn(hidden).squeeze(-1)
