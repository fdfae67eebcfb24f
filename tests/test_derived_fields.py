"""News fields the data side derives for the graph models: the click graph's sampled neighbour
tables (GERL, GNewsRec) and the nearest news by title (DIGAT), checked against brute force."""

import numpy as np
import pytest
import torch

from newsrec.core import DataRequirements
from newsrec.data import MINDDataModule
from newsrec.graphs import bipartite_click_graph, sample_bipartite_neighbors


def test_click_graph_tables_hold_only_real_clickers_and_co_clicked_news():
    rng = np.random.default_rng(0)
    histories = [rng.choice(np.arange(1, 60), rng.integers(1, 12), replace=False) for _ in range(40)]
    values = np.concatenate(histories)
    offsets = np.concatenate([[0], np.cumsum([len(h) for h in histories])])
    users = np.arange(40)
    tables = sample_bipartite_neighbors((values, offsets), users, 40, 60, 5, seed=3)
    clicked = {(u, int(n)) for u, h in enumerate(histories) for n in h}
    for news in range(60):
        clickers = {u for u, n in clicked if n == news}
        got = [int(v) - 1 for v in tables.news_clickers[news] if v]
        assert set(got) <= clickers and len(got) == min(5, len(clickers)) and len(set(got)) == len(got)
        for other in tables.news_coclicked[news]:
            if other:  # a news clicked by one of this news' clickers, never the news itself
                assert other != news and any((u, int(other)) in clicked for u in clickers)
    again = sample_bipartite_neighbors((values, offsets), users, 40, 60, 5, seed=3)
    np.testing.assert_array_equal(again.news_clickers, tables.news_clickers)  # seeded: reproducible
    graph = bipartite_click_graph((values, offsets), users, 40, 60)
    assert graph["user", "clicks", "news"].edge_index.shape[1] == len(clicked)


def test_semantic_neighbors_are_the_nearest_titles_and_join_the_batch(tiny_world, tmp_path):
    import shutil

    root = tmp_path / "w"
    shutil.copytree(tiny_world, root, ignore=shutil.ignore_patterns("processed"))
    dm = MINDDataModule(str(root), history_length=20)
    dm.configure(DataRequirements(news_fields=("title", "semantic_neighbors")))
    got = dm.news_arrays()["semantic_neighbors"]
    # brute force: IDF-weighted mean word vectors, cosine, top-k without the news itself
    from newsrec.data.statistics import training_news_rows, word_idf

    titles = dm.corpus.arrays["title"].astype(np.int64)
    idf = word_idf(titles, training_news_rows(dm.behaviors("train")), dm.num_words)
    vectors = torch.einsum("nl,nld->nd", torch.from_numpy(idf[titles]), torch.as_tensor(dm.word_vectors())[titles])
    vectors = torch.nn.functional.normalize(vectors, dim=-1)
    for row in (1, 5, 17):
        sim = vectors[row] @ vectors.T
        sim[0] = sim[row] = -2
        best = set(torch.topk(sim, got.shape[1]).indices.tolist())
        assert set(got[row].tolist()) == best
    batch = dm.val_dataloader().dataset[np.arange(4)]
    cand = batch["candidates"][batch["candidate_mask"]]
    neighbors = batch["news"]["semantic_neighbors"][cand]
    assert (neighbors > 0).all()  # every candidate's neighbours are in the batch ...
    rows = batch["news_rows"]
    for c, nb in zip(cand.tolist(), neighbors.tolist()):  # ... as positions of the right news
        assert sorted(rows[nb].tolist()) == sorted(got[int(rows[c])].tolist())


@pytest.mark.parametrize("field", ["news_clickers", "semantic_neighbors"])
def test_news_added_in_serving_get_no_graph_neighbours(tiny_world, field):
    dm = MINDDataModule(str(tiny_world), history_length=20)
    req = DataRequirements(news_fields=("title", field), user_news_graph=4 if field == "news_clickers" else None)
    dm.configure(req)
    fresh = dm.encode_news_rows([{"news_id": "F1", "title": "a new story"}])
    assert fresh[field].shape[0] == 1 and not fresh[field].any()
