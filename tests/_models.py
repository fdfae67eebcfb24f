"""Tiny versions of every model for the tests (one factory, shared by the test modules)."""

from newsrec.models import FUM, GLORY, NRMS

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
    "fum_concat": (FUM, dict(TINY_FUM, fusion="concat", fine_user_dim=4)),
    "fum_mhsa": (FUM, dict(TINY_FUM, fine_encoder="mhsa", genres=("title", "abstract", "entity_text"))),
}


def make(name: str, dm, **kw):
    """A small model of variant ``name`` sized for the datamodule ``dm``."""
    cls, extra = VARIANTS[name.lower()]
    sizes = dict(
        num_words=dm.num_words,
        num_entity_ids=dm.num_entity_ids,
        num_categories=dm.num_categories,
        num_subcategories=dm.num_subcategories,
    )
    model = cls(**sizes, **{**SMALL, **extra, **kw})
    recency = getattr(getattr(model, "user_encoder", None), "recency", None)
    if recency is not None:  # zero-initialised: randomise so that invariant tests see the term
        recency.weight.data.normal_()
    return model
