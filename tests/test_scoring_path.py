"""One scoring path: training, cached evaluation and serving call the same model methods, for
cacheable models and for a model whose user state depends on the candidate."""

import ast
from pathlib import Path

import numpy as np
import pytest
import torch
from _models import SMALL, make

from newsrec.data import MINDDataModule
from newsrec.models import NRMS
from newsrec.models.base import gather_rows
from newsrec.nn import masked_softmax

SERVING = Path(__file__).parents[1] / "newsrec" / "serving"


class CandidateAttentionNRMS(NRMS):
    """A candidate-aware user (DKN-style): the user is the clicked news weighted by their
    similarity to each candidate, so the user state depends on the candidate (not cacheable)."""

    cacheable = False

    def encode_users(self, batch, history_news):
        clicked = gather_rows(history_news, batch["history"])  # [B_u, L, d]
        return torch.cat([clicked, batch["history_mask"].unsqueeze(-1).to(clicked.dtype)], dim=-1)

    def score(self, users, candidates):  # users [B, L, d + 1], candidates [B, C, d]
        clicked, mask = users[..., :-1], users[..., -1] > 0
        logits = torch.einsum("bld,bcd->bcl", clicked, candidates)
        weights = masked_softmax(logits, mask.unsqueeze(1).expand_as(logits))
        user = torch.einsum("bcl,bld->bcd", weights, clicked)
        return (user * candidates).sum(-1)


@pytest.fixture(scope="module")
def dm(tiny_world):
    return MINDDataModule(str(tiny_world), history_length=12, eval_batch_size=16)


def candidate_aware(dm):
    sizes = {k: getattr(dm, k) for k in NRMS.data_size_arguments}
    torch.manual_seed(0)
    return CandidateAttentionNRMS(**sizes, **SMALL).eval()


def test_the_service_holds_no_scoring_arithmetic():
    """No score term, no transition feature, no padded-history builder in newsrec/serving: the
    model's methods and the data side's request batches do that (search.py, the vector search
    that only shortlists, is the one place with inner products)."""
    banned_calls = {"einsum", "matmul", "bmm", "recent_clicks", "transition_scorer", "features", "score"}
    found = []
    for path in (p for p in SERVING.glob("*.py") if p.name != "search.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Attribute) and node.attr in banned_calls:
                found.append(f"{path.name}:{node.lineno} .{node.attr}")
            if isinstance(node, ast.BinOp) and isinstance(node.op, ast.MatMult):
                found.append(f"{path.name}:{node.lineno} @")
    assert not found, found


def test_a_candidate_aware_model_is_evaluated_by_its_plain_forward_and_ranked_the_same(dm):
    model = candidate_aware(dm).connect_data(dm, stage="validate")
    batch = next(iter(dm.val_dataloader()))
    with torch.no_grad():
        plain = model(batch)
        with model.cached_news() as cache:
            assert cache is None  # not cacheable: no news cache
            cached = model(batch)
    torch.testing.assert_close(cached, plain)
    # permuting the candidates permutes the scores: the user state follows each candidate
    perm = torch.randperm(batch["candidates"].shape[1])
    permuted = {k: batch[k] for k in batch.keys()}
    permuted["candidates"], permuted["candidate_mask"] = batch["candidates"][:, perm], batch["candidate_mask"][:, perm]
    permuted.pop("labels")
    with torch.no_grad():
        torch.testing.assert_close(model(permuted), plain[:, perm])


@pytest.mark.parametrize("name", ["nrms", "glory_transitions", "candidate_aware"])
def test_served_scores_equal_the_models_own_scores(dm, name):
    """Recommender scores == the model's forward on the evaluation batch, for cacheable models
    (vector index + score_candidates) and a candidate-aware one (forward over candidates)."""
    from newsrec.serving import Recommender

    torch.manual_seed(0)
    model = candidate_aware(dm) if name == "candidate_aware" else make(name, dm).eval()
    rec = Recommender(model, dm)
    b, ids = dm.behaviors("dev"), dm.corpus.news_ids
    batch = dm.val_dataloader().dataset[np.arange(8)]
    with torch.no_grad(), model.cached_news():
        offline = model(batch)
    for i, r in enumerate(batch["rows"].tolist()):
        hist, n = b.histories(np.array([r]), dm.history_length)
        cands, _, mask = b.impressions(np.array([r]))
        cand_ids = [ids[x] for x in cands[0][mask[0]]]
        got = dict(rec.recommend([ids[x] for x in hist[0, : n[0]]], k=len(cand_ids), candidates=cand_ids,
                                 exclude_history=False))  # fmt: skip
        want = offline[i][batch["candidate_mask"][i]].tolist()
        np.testing.assert_allclose([got[c] for c in cand_ids], want, rtol=1e-5, atol=1e-5)
    # the whole index, ranked through the shortlist, agrees with naming every news
    history = [ids[x] for x in b.histories(np.array([0]), dm.history_length)[0][0] if x]
    full = rec.recommend(history, k=10)
    named = dict(rec.recommend(history, k=rec.num_news, candidates=list(rec.index.ids[1:])))
    assert [n for n, _ in full] == sorted(named, key=named.get, reverse=True)[:10]
