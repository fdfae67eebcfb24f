"""Global graphs (GLORY) and samplers, in PyTorch Geometric data structures."""

from newsrec.graphs.bipartite import BipartiteNeighbors, bipartite_click_graph, sample_bipartite_neighbors
from newsrec.graphs.entity_graph import ENTITY_GRAPH_METHODS, build_entity_graph
from newsrec.graphs.news_graph import NEWS_GRAPH_METHODS, build_news_graph
from newsrec.graphs.sampling import EntityNeighborSampler, KHopSampler, NeighborTable
from newsrec.graphs.store import load_graph, load_or_build_graph, save_graph

__all__ = [
    "BipartiteNeighbors",
    "bipartite_click_graph",
    "sample_bipartite_neighbors",
    "ENTITY_GRAPH_METHODS",
    "EntityNeighborSampler",
    "KHopSampler",
    "NEWS_GRAPH_METHODS",
    "NeighborTable",
    "build_entity_graph",
    "build_news_graph",
    "load_graph",
    "load_or_build_graph",
    "save_graph",
]
