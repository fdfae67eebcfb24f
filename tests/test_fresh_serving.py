"""A fresh article in serving (#49): posted to the service, GLORY's graph score ranks it by the
same rule as the training candidates it hid as fresh (its learned constant, the text deciding),
from the first request; the whole-index search re-scores it exactly; as readers click it, the
live graph's counts take over."""

import numpy as np
import pytest
import pytorch_lightning as pl
import torch
from _models import make

from newsrec.data import MINDDataModule
from newsrec.serving import Recommender


@pytest.fixture(scope="module")
def glory_ckpt(tiny_world, tmp_path_factory):
    """GLORY with the fresh-aware graph score (opt-in), trained a few steps (as test_serving's)."""
    out = tmp_path_factory.mktemp("fresh") / "ckpt"
    torch.manual_seed(0)
    dm = MINDDataModule(str(tiny_world), batch_size=8, history_length=20)
    model = make("glory_transitions", dm, graph_score_fresh=True).connect_data(dm)
    ckpt = pl.callbacks.ModelCheckpoint(dirpath=str(out), save_last=True)
    quiet = dict(logger=False, enable_progress_bar=False, enable_model_summary=False)
    pl.Trainer(max_epochs=1, limit_train_batches=4, limit_val_batches=0, callbacks=[ckpt], **quiet).fit(model, dm)
    return str(out / "last.ckpt")


def scores(rec, history, candidates) -> dict:
    return dict(rec.recommend(history, k=len(candidates), candidates=candidates, exclude_history=False))


def test_a_posted_article_gets_the_fresh_rule_at_once_and_the_graph_then_moves_it(glory_ckpt, tmp_path):
    rec = Recommender.from_checkpoint(glory_ckpt, index_dir=None, store=tmp_path / "c.sqlite", entity_refresh_seconds=0)
    scorer = rec.model.transition_scorer
    assert scorer.fresh_aware
    ids = rec.index.ids
    a = ids[5]
    silent = set(rec._snapshot.transition_table.silent().tolist())
    seen = [ids[r] for r in range(6, len(ids)) if r not in silent][:3]  # news the graph has seen
    history = [ids[3], ids[4], a]
    rec.add_news([{"news_id": "Nfresh", "title": "a story that broke this morning", "category": "news"}])
    before = scores(rec, history, [*seen, "Nfresh"])
    with torch.no_grad():
        scorer.fresh_bias += 1.0
    after = scores(rec, history, [*seen, "Nfresh"])
    assert after["Nfresh"] - before["Nfresh"] == pytest.approx(1.0, abs=1e-5)  # the fresh constant, from the start
    for n in seen:
        assert after[n] == pytest.approx(before[n], abs=1e-6)  # seen news never read it
    # the whole-index search re-scores the news the graph has never seen: the same score
    whole = dict(rec.recommend(history, k=rec.num_news, exclude_history=False))
    assert whole["Nfresh"] == pytest.approx(after["Nfresh"], abs=1e-5)
    # readers click it after a: it has edges now, and the fresh constant no longer applies
    clicks = [
        {"user_id": f"W{i}", "news_id": n, "time": 1_600_100_000.0 + 60.0 * (2 * i + j)}
        for i in range(12)
        for j, n in enumerate([a, "Nfresh"])
    ]
    assert rec.add_clicks(clicks) == {"accepted": 24}
    moved = scores(rec, history, [*seen, "Nfresh"])
    with torch.no_grad():
        scorer.fresh_bias -= 1.0
    assert scores(rec, history, [*seen, "Nfresh"])["Nfresh"] == pytest.approx(moved["Nfresh"], abs=1e-6)
    assert not np.isclose(moved["Nfresh"], after["Nfresh"], atol=1e-6)
    rec.close()
