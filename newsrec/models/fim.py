"""FIM (Wang et al., ACL 2020): fine-grained interest matching for news recommendation."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from newsrec.core import DataRequirements, NewsBatch, as_batch
from newsrec.models.base import NewsRecModel
from newsrec.models.pairs import score_pairs

__all__ = ["FIM", "HierarchicalDilatedConvolution"]


class HierarchicalDilatedConvolution(nn.Module):
    r"""FIM's news encoder: stacked 1-D convolutions over the title's words with growing dilation,
    each level's output kept (a word-level representation per granularity):

    .. math::
        \mathbf{d}^{l}_i = \operatorname{LN}\Big(\operatorname{ReLU}\big(\mathbf{F}^l
        [\mathbf{d}^{l-1}_{i - r_l}; \mathbf{d}^{l-1}_i; \mathbf{d}^{l-1}_{i + r_l}] + \mathbf{b}^l\big)\Big),
        \qquad \mathbf{d}^0 = \text{word vectors}

    The word vectors themselves are granularity 0. Padded words are zero at every level (so they
    match nothing).

    Args:
        in_dim: word vector size.
        num_filters: filters per level (150).
        dilations: the dilation rate of each level (1, 2, 3).
        window: the convolutions' window (3).

    Shapes: ``x [U, L, in_dim]``, ``mask [U, L]`` → ``[U, L, in_dim + levels · num_filters]``:
    :math:`[\mathbf{d}^0; \mathbf{d}^1; \dots]` per word.
    """

    def __init__(
        self, in_dim: int, num_filters: int = 150, dilations: tuple[int, ...] = (1, 2, 3), window: int = 3
    ) -> None:
        super().__init__()
        dims = [in_dim] + [num_filters] * len(dilations)
        self.convs = nn.ModuleList(
            nn.Conv1d(a, num_filters, window, dilation=r, padding=r * (window // 2)) for a, r in zip(dims, dilations)
        )
        self.norms = nn.ModuleList(nn.LayerNorm(num_filters) for _ in dilations)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        for conv, norm in zip(self.convs, self.norms):
            conv.reset_parameters()
            norm.reset_parameters()

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        keep = mask.unsqueeze(-1).to(x.dtype)
        h = x * keep
        levels = [h]
        for conv, norm in zip(self.convs, self.norms):
            h = norm(torch.relu(conv(h.transpose(1, 2)).transpose(1, 2))) * keep
            levels.append(h)
        return torch.cat(levels, -1)


def _pooled(n: int) -> int:
    """Cells left of ``n`` positions after two 3-wide max poolings with the window cut short at the end."""
    once = math.ceil(n / 3)
    return math.ceil(once / 3)


class FIM(NewsRecModel):
    r"""FIM: every candidate is matched word by word against every clicked news, at every
    granularity of the :class:`HierarchicalDilatedConvolution` (the word vectors and each
    dilated level); the stacked matching matrices
    form a 3-D image (clicks × candidate words × clicked words, one channel per granularity)
    that a 3-D CNN reduces to the click score.

    .. math::
        \mathbf{M}^{l}_{k} = \frac{\mathbf{D}^{l}_c\, (\mathbf{D}^{l}_k)^\top}{\sqrt{f}}
        \in \mathbb{R}^{L \times L}, \qquad
        s = \mathbf{w}^\top \operatorname{Pool}\big(\operatorname{CNN}_{3D}([\mathbf{M}^{l}_{k}]_{l, k})\big)

    (:math:`f` the level's size). The 3-D CNN, as the paper: ``Conv3d(1 + levels → 32, 3×3×3)``,
    ELU, 3-D max pooling 3×3×3 (clicks × words × words: neighbouring clicks pool together and the
    order of the clicks is kept), ``Conv3d(32 → 16, 3×3×3)``, ELU, max pooling 3×3×3, flattened
    over the fixed grid of ``history_length`` clicks × ``title_length`` words (50 × 30 → 6 × 4 × 4
    cells, pooling windows at the end cut short, every click counts) and a linear layer.

    Padding never changes a score: padded clicks and words are zeroed after each convolution
    (the Keras code of ``taoqi98/FIM`` convolves its zero padding unmasked), a batch is computed
    only up to its own lengths (rounded up to the 9 of the two poolings) and the cells beyond are
    the zeros the full grid would hold. An empty history scores the output bias.

    **Not cacheable**: a score needs the candidate's words against every clicked news' words.
    The forward scores ``(impression, candidate)`` pairs in chunks, so that at most
    ``chunk_pairs`` pairs' matching tensors exist at a time (default: as many as fit in
    ``chunk_megabytes`` = 256 MB of float32 for the batch's history and title lengths); evaluation
    and serving run it exactly, only slower.

    Args:
        num_filters: HDC filters per level (150).
        dilations: HDC dilation rates (1, 2, 3).
        conv_channels: the 3-D convolutions' channels (32, 16).
        history_length, title_length: the grid the dense layer reads (50 clicks × 30 words: the
            data's ``history_length`` and ``title_length``); padding beyond them is cut, a click
            or a word beyond them is refused.
        chunk_pairs: pairs per chunk (``None``: from ``chunk_megabytes``).
        chunk_megabytes: the memory one chunk's tensors may take.
        **kwargs: the :class:`NewsRecModel` arguments (``word_dim`` 300, ``dropout`` 0.2, …).

    Shapes: ``title [U, L]`` → word levels ``[U, L, word_dim + levels · num_filters]``; scores
    ``[B, C]``.
    """

    cacheable = False

    def __init__(
        self,
        num_filters: int = 150,
        dilations: tuple[int, ...] = (1, 2, 3),
        conv_channels: tuple[int, int] = (32, 16),
        history_length: int = 50,
        title_length: int = 30,
        chunk_pairs: int | None = None,
        chunk_megabytes: float = 256.0,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        self.save_hyperparameters()
        if self.text_encoders.kind != "glove":
            raise ValueError("FIM matches word-level convolutions: use news_encoder='glove'")
        if chunk_pairs is not None and chunk_pairs < 1:
            raise ValueError(f"chunk_pairs must be >= 1, got {chunk_pairs}")
        self.num_filters, self.chunk_pairs, self.chunk_megabytes = num_filters, chunk_pairs, chunk_megabytes
        self.word_dropout = nn.Dropout(self.dropout_rate)
        self.hdc = HierarchicalDilatedConvolution(self.word_dim, num_filters, tuple(dilations))
        self.level_sizes = [self.word_dim] + [num_filters] * len(dilations)
        c1, c2 = conv_channels
        self.conv1 = nn.Conv3d(len(self.level_sizes), c1, 3, padding=1)
        self.conv2 = nn.Conv3d(c1, c2, 3, padding=1)
        self.history_length, self.title_length = history_length, title_length
        self.grid = (_pooled(history_length), _pooled(title_length), _pooled(title_length))
        self.output = nn.Linear(c2 * math.prod(self.grid), 1)

    def data_requirements(self) -> DataRequirements:
        return DataRequirements(news_fields=("title",))

    def encode_news(self, news: dict[str, Tensor], history_news: Tensor | None = None) -> Tensor:
        """Word-level representations at every granularity, ``[U, L, word_dim + levels · num_filters]``."""
        tokens = news["title"]
        return self.hdc(self.word_dropout(self.word_embedding(tokens)), tokens != 0)

    def pairs_per_chunk(self, clicks: int, words: int) -> int:
        """How many pairs one chunk holds (``chunk_pairs``, or what fits ``chunk_megabytes``)."""
        if self.chunk_pairs is not None:
            return self.chunk_pairs
        c1, levels = self.conv1.out_channels, self.conv1.in_channels
        per_pair = 4 * max(clicks, 1) * words * (words * (levels + 2 * c1) + sum(self.level_sizes))
        return max(1, int(self.chunk_megabytes * 2**20 // per_pair))

    def match(
        self, candidate: Tensor, clicked: Tensor, click_mask: Tensor, candidate_words: Tensor, clicked_words: Tensor
    ) -> Tensor:
        """Scores of ``P`` pairs: ``candidate [P, L, D]``, ``clicked [P, H, L, D]`` (``D`` the levels'
        sizes together), ``click_mask [P, H]`` and the real words ``candidate_words [P, L]``,
        ``clicked_words [P, H, L]`` → ``[P]``."""
        H, L = min(clicked.shape[1], self.history_length), min(candidate.shape[1], self.title_length)
        beyond = click_mask[:, H:].any() | candidate_words[:, L:].any() | (clicked_words[:, :, L:].any())
        if bool(beyond):
            raise ValueError(
                f"FIM(history_length={self.history_length}, title_length={self.title_length}) got "
                f"{int(click_mask.sum(1).max())} clicks or titles of more than {L} words: build it with the data's "
                "history_length and title_length"
            )
        candidate, clicked, candidate_words = candidate[:, :L], clicked[:, :H, :L], candidate_words[:, :L]
        click_mask, clicked_words = click_mask[:, :H], clicked_words[:, :H, :L]
        # up to a multiple of the two poolings' 9 (at most the grid): the cells beyond are zero
        h_cut, l_cut = min(-(-H // 9) * 9, self.history_length), min(-(-L // 9) * 9, self.title_length)
        candidate, clicked = F.pad(candidate, (0, 0, 0, l_cut - L)), F.pad(clicked, (0, 0, 0, l_cut - L, 0, h_cut - H))
        click_mask = F.pad(click_mask, (0, h_cut - H))
        word_i = F.pad(candidate_words, (0, l_cut - L))  # [P, L]
        word_j = F.pad(clicked_words, (0, l_cut - L, 0, h_cut - H))  # [P, H, L]
        levels = zip(candidate.split(self.level_sizes, -1), clicked.split(self.level_sizes, -1), self.level_sizes)
        image = torch.stack([torch.einsum("pif,phjf->phij", c, k) / math.sqrt(d) for c, k, d in levels], 1)
        keep = (click_mask[:, :, None, None] & word_i[:, None, :, None] & word_j[:, :, None, :]).unsqueeze(1)
        keep = keep.to(image.dtype)  # [P, 1, H, L, L]
        h = F.elu(self.conv1(image * keep)) * keep
        h = F.max_pool3d(h, 3, ceil_mode=True)
        keep = F.max_pool3d(keep, 3, ceil_mode=True)
        h = F.elu(self.conv2(h)) * keep
        h = F.max_pool3d(h, 3, ceil_mode=True)  # [P, c2, H'', L'', L'']
        gh, gl, _ = self.grid
        h = F.pad(h, (0, gl - h.shape[-1], 0, gl - h.shape[-2], 0, gh - h.shape[-3]))
        return self.output(h.flatten(1)).squeeze(-1)

    def forward(self, batch: NewsBatch) -> Tensor:
        batch = as_batch(batch)
        words = self.encode_news(batch["news"])  # [U, L, D]: every news of the batch once
        present = batch["news"]["title"] != 0  # [U, L]
        history = batch["history"].index_select(0, batch["user_index"])  # [B, H]
        click_mask = batch["history_mask"].index_select(0, batch["user_index"])
        step = self.pairs_per_chunk(history.shape[1], words.shape[1])
        return score_pairs(
            batch["candidates"], batch["candidate_mask"], step,
            lambda rows, news: self.match(
                words[news], words[history[rows]], click_mask[rows], present[news], present[history[rows]]
            ),
        )  # fmt: skip
