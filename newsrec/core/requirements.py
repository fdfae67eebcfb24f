"""What a model asks of the data side, and what the data side hands a model back.

The handshake is two calls, with no Trainer in between::

    dm.configure(model.data_requirements())     # the data side builds what the model needs
    model.attach_data(dm.model_inputs())        # the model gets its pretrained vectors and news

:meth:`NewsRecModel.connect_data(dm) <newsrec.models.NewsRecModel.connect_data>` makes both.
The same two calls serve a Lightning ``Trainer`` (the ``newsrec`` CLI makes them before every
command), a plain PyTorch loop and the serving code.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = [
    "CLICK_GRAPH_FIELDS",
    "DATA_SIZE_ARGUMENTS",
    "ROW_FIELD",
    "SEMANTIC_EDGE_FIELD",
    "SEMANTIC_GRAPH_FIELD",
    "SEMANTIC_NEIGHBOR_FIELD",
    "TITLE_ENTITY_FIELD",
    "DataRequirements",
    "ModelInputs",
    "NewsGraphBuild",
    "NewsGraphSampling",
]

#: the news field that is each news' own corpus row (a news-ID feature: LibFM, DeepFM)
ROW_FIELD = "row"

#: the news field of each title word's entity id (``[N, title_length]``; DKN), see
#: :mod:`newsrec.data.entity_alignment`
TITLE_ENTITY_FIELD = "title_entity_words"

#: the news fields of the user–news click graph's neighbour tables (``user_news_graph``)
CLICK_GRAPH_FIELDS = ("news_clickers", "news_coclicked")

#: the news field of each news' nearest news by title (``[N, k]`` corpus rows; in a batch, positions)
SEMANTIC_NEIGHBOR_FIELD = "semantic_neighbors"

#: the news fields of each news' semantic-augmented graph (DIGAT; :mod:`newsrec.data.semantic_graph`):
#: its nodes (``[N, S]`` corpus rows, which join the batch as positions) and its edges
SEMANTIC_GRAPH_FIELD, SEMANTIC_EDGE_FIELD = "semantic_graph", "semantic_graph_edges"

#: the data's sizes every model takes (the datamodule's properties of the same names)
DATA_SIZE_ARGUMENTS = ("num_words", "num_entity_ids", "num_categories", "num_subcategories", "num_users", "num_news")


@dataclass(frozen=True)
class NewsGraphBuild:
    """How the global news graph is built from the training clicks
    (:func:`~newsrec.graphs.build_news_graph`): ``method`` (``"dir_seq"``, ``"undir_seq"``,
    ``"co_occurrence"``) and whether ``self_loops`` are kept."""

    method: str = "dir_seq"
    self_loops: bool = True


@dataclass(frozen=True)
class NewsGraphSampling:
    """How each user's subgraph is sampled from the news graph
    (:class:`~newsrec.graphs.KHopSampler`): top-``num_neighbors`` per hop, ``num_hops`` hops,
    messages along ``direction`` (``"in"`` | ``"out"``), ``edges`` ``"induced"`` | ``"sampled"``."""

    num_neighbors: int = 8
    num_hops: int = 2
    direction: str = "in"
    edges: str = "induced"


_BUILD_KEYS = ("method", "self_loops")


@dataclass
class DataRequirements:
    """What a model needs in its batches (declared by the model, read by the data side).

    Attributes:
        news_fields: corpus fields gathered for every news in a batch (``title``, ``abstract``,
            ``category``, ``subcategory``, ``entities``, ``entity_text``; ``plm_title`` and
            ``plm_abstract``: the texts tokenised for the model's PLM, which need
            ``text_tokenizer``; ``row``: each news' own corpus row, for a news-ID feature;
            ``title_entity_words``: the entity id of each title word, aligned from MIND's
            offsets and surface forms; ``semantic_neighbors``: each news' nearest news by title
            embedding, which join the batch).
        news_graph: how the news graph is built (:class:`NewsGraphBuild`), or ``None`` for no
            news graph.
        news_graph_sampling: how each user's subgraph is sampled from it
            (:class:`NewsGraphSampling`; default ones when ``news_graph`` is given). A dict with
            the keys of both (the form of newsrec 0.1) is still accepted as ``news_graph``.
        entity_neighbors: M_e for the entity-graph neighbours of every news' entities (adds
            ``news["entity_neighbors"] [U, E, M_e]``), or ``None``.
        entity_graph: keyword arguments of the entity-graph build (``method``, ``self_loops``).
        transitions: ``m``, the number of most recent clicks whose click-graph transitions to
            every candidate the batch carries (``transition_features``), or ``None``.
        text_tokenizer: ``{"path": str, "max_length": int}``: the PLM tokenizer (a folder,
            ``package:NAME/SUB`` or a hub name) and the tokens kept per text for the ``plm_*``
            fields (:mod:`newsrec.data.plm_text`), or ``None``.
        user_news_graph: ``M``: the sampled neighbour tables of the training split's user–news
            click graph (:func:`~newsrec.graphs.sample_bipartite_neighbors`) as the news fields
            ``news_clickers [U, M]`` and ``news_coclicked [U, M]`` (GERL, GNewsRec), or ``None``.
        user_ids: the batch carries ``history_users [B_u]``: each history's user as an index of
            the training split's user vocabulary (``1 … num_users - 1``; ``0`` for a user the
            training split does not have: a new user at evaluation or serving time). Distinct
            histories are then distinct per user.
        semantic_graph: each news' semantic-augmented graph as the news fields
            ``semantic_graph`` and ``semantic_graph_edges`` (DIGAT): ``{"hops", "neighbors",
            "threshold", "encoder"}`` (:func:`~newsrec.data.semantic_graph.semantic_graph_arrays`),
            or ``None``.
    """

    news_fields: tuple[str, ...] = ("title",)
    news_graph: NewsGraphBuild | None = None
    news_graph_sampling: NewsGraphSampling | None = None
    entity_neighbors: int | None = None
    entity_graph: dict | None = None
    transitions: int | None = None
    text_tokenizer: dict | None = None
    user_ids: bool = False
    user_news_graph: int | None = None
    semantic_graph: dict | None = None

    def __post_init__(self) -> None:
        if isinstance(self.news_graph, dict):  # newsrec 0.1: one dict for the build and the sampler
            given = dict(self.news_graph)
            self.news_graph = NewsGraphBuild(**{k: given.pop(k) for k in _BUILD_KEYS if k in given})
            self.news_graph_sampling = NewsGraphSampling(**given)
        if self.news_graph is not None and self.news_graph_sampling is None:
            self.news_graph_sampling = NewsGraphSampling()


@dataclass
class ModelInputs:
    """What the data side gives a model once it is configured for the model's requirements.

    Every field is a callable, evaluated only when the model needs it (a GloVe matrix is built
    only for ``fit``; the news chunks only for evaluation, serving or GLORY's approximate mode).

    Attributes:
        pretrained: ``{"words": () -> [num_words, d] | None, "entities": () -> [num_entity_ids, d]
            | None}``: pretrained matrices in the vocabularies' row order (``None`` when the
            data has no such file).
        news_chunks: ``batch_size -> iterable of {"news": {field: [n, ...]}, "news_rows": [n]}``:
            every news of the corpus, rows ``0..N-1`` in order, with the fields the model asked
            for (and ``entity_neighbors`` when asked).
        num_news: ``N``, the corpus size (row 0 is the padding news).
        beyond_accuracy: ``() -> dict`` of :class:`~newsrec.metrics.BeyondAccuracyMetrics`
            arguments (``item_categories``, ``item_vectors``, ``click_counts``, …), or ``None``.
        signature: ``() -> dict`` of plain JSON values describing the data (root, corpus
            settings, vocabulary and news-id checksums); models store it in their checkpoints
            so that serving can find and check the data, or ``None``.
        word_idf: ``() -> float32 [num_words]``: each word's inverse document frequency over
            the titles of the training split's news (the feature models' TF-IDF), or ``None``.
    """

    pretrained: dict[str, Callable[[], np.ndarray | None]]
    news_chunks: Callable[[int], Iterable[dict[str, Any]]]
    num_news: int
    beyond_accuracy: Callable[[], dict] | None = None
    signature: Callable[[], dict] | None = None
    word_idf: Callable[[], np.ndarray] | None = None
