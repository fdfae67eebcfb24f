"""Tiny versions of every model for the tests (one factory, shared by the test modules)."""

import pytest
from _plm import tiny_bert_for

from newsrec.models import (
    DIGAT,
    DKN,
    FIM,
    FUM,
    GERL,
    GLORY,
    GRU,
    KRED,
    LSTUR,
    MINER,
    NAML,
    NPA,
    NRMS,
    DeepFM,
    FastformerNR,
    GNewsRec,
    HieRec,
    LibFM,
    UserAsGraph,
)

SMALL = dict(word_dim=50, num_heads=2, head_dim=8, attention_hidden=8, dropout=0.1)

TINY_GLORY = {"entity_heads": 2, "entity_head_dim": 4, "num_graph_neighbors": 3}
TINY_FUM = {"category_dim": 8, "entity_heads": 2, "entity_head_dim": 4, "fine_dim": 6, "fine_heads": 3}

VARIANTS = {
    "nrms": (NRMS, {}),
    "glory": (GLORY, TINY_GLORY),
    "glory_sampled": (GLORY, dict(TINY_GLORY, graph_edges="sampled", ggnn_edge_weights=True)),
    # beyond the paper: candidate-aware click-graph score + recency in the user encoder
    "glory_transitions": (GLORY, dict(TINY_GLORY, graph_score=True, user_recency=True, graph_score_clicks=8)),
    # the paper's comparison of graph encoders (GGNN is the default above)
    "glory_gcn": (GLORY, dict(TINY_GLORY, graph_encoder="gcn")),
    "glory_gat": (GLORY, dict(TINY_GLORY, graph_encoder="gat")),
    "glory_sage": (GLORY, dict(TINY_GLORY, graph_encoder="sage")),
    "glory_gin": (GLORY, dict(TINY_GLORY, graph_encoder="gin")),
    "fum": (FUM, TINY_FUM),
    # the papers' baselines (part 1)
    "gru": (GRU, {}),
    "naml": (NAML, {"num_filters": 16, "category_dim": 8}),
    "fastformer_nr": (FastformerNR, {}),
    "npa": (NPA, {"num_filters": 16, "user_dim": 6, "query_dim": 8}),
    "npa_cacheable": (NPA, {"num_filters": 16, "user_dim": 6, "query_dim": 8, "personalised": False}),
    "lstur": (LSTUR, {"num_filters": 12, "category_dim": 4}),
    "lstur_con": (LSTUR, {"num_filters": 12, "category_dim": 4, "variant": "con"}),
    "hierec": (HieRec, {}),
    "miner": (MINER, {"num_codes": 4, "code_dim": 8}),
    "dkn": (DKN, dict(entity_dim=100, num_filters=4, attention_dim=5, num_entity_neighbors=3, candidate_chunk=3)),
    "kred": (KRED, {"num_entity_neighbors": 3}),
    "kred_plm": (KRED, {"num_entity_neighbors": 3, "news_encoder": "plm", "plm_max_length": 12}),
    "digat": (DIGAT, {"num_layers": 1, "chunk_pairs": 5}),
    "gerl": (GERL, {"num_neighbors": 3}),
    "gnewsrec": (GNewsRec, {"num_neighbors": 3, "candidate_chunk": 3}),
    "user_as_graph": (UserAsGraph, {"cluster_sizes": (3, 1)}),
    "fim": (FIM, {"num_filters": 6, "dilations": (1, 2), "conv_channels": (4, 3), "chunk_pairs": 7}),
    "libfm": (LibFM, {"factor_dim": 4}),
    "deepfm": (DeepFM, {"factor_dim": 4, "hidden_dims": (8, 8)}),
    "miner_category": (MINER, {"num_codes": 4, "code_dim": 8, "category_aware": True, "category_dim": 4}),
    "fum_concat": (FUM, dict(TINY_FUM, fusion="concat", fine_user_dim=4)),
    "fum_mhsa": (FUM, dict(TINY_FUM, fine_encoder="mhsa", genres=("title", "abstract", "entity_text"))),
    # a pre-trained language model as the text encoder (a tiny random BERT, loaded by path)
    "nrms_plm": (NRMS, {"news_encoder": "plm", "plm_max_length": 12}),
    "glory_plm": (GLORY, dict(TINY_GLORY, news_encoder="plm", plm_max_length=12, plm_pooling="mean")),
    "miner_plm": (MINER, {"num_codes": 4, "code_dim": 8, "news_encoder": "plm", "plm_max_length": 12}),
    "fum_plm": (
        FUM,
        dict(
            TINY_FUM,
            news_encoder="plm",
            plm_max_length=12,
            plm_pooling="attention",
            genres=("title", "abstract", "category"),
        ),
    ),
}


def make(name: str, dm, **kw):
    """A small model of variant ``name`` sized for the datamodule ``dm``."""
    cls, extra = VARIANTS[name.lower()]
    sizes = dict(
        num_words=dm.num_words,
        num_entity_ids=dm.num_entity_ids,
        num_categories=dm.num_categories,
        num_subcategories=dm.num_subcategories,
        num_users=dm.num_users,
        num_news=dm.num_news,
    )
    if extra.get("news_encoder") == "plm" and "plm_path" not in kw:
        pytest.importorskip("transformers")
        kw["plm_path"] = tiny_bert_for(dm.root)
    model = cls(**sizes, **{**SMALL, **extra, **kw})
    if isinstance(model, GERL):  # its two-hop news' titles come from the attached corpus
        model.connect_data(dm, stage="validate")
    recency = getattr(getattr(model, "user_encoder", None), "recency", None)
    if recency is not None:  # zero-initialised: randomise so that invariant tests see the term
        recency.weight.data.normal_()
    return model
