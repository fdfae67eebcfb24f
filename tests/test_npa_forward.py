"""NPA's personalised forward: gathering only what each user reads, in chunks without gradients,
equals the plain per-user reading of every candidate and click."""

import pytest
import torch

from newsrec.core import as_batch
from newsrec.data import MINDDataModule
from newsrec.models import NPA
from newsrec.nn import masked_softmax


def _reference(model, batch):
    """Each user reads each of its clicks and candidates with its own word query (no tricks)."""
    features = model.cnn.word_features(batch["news"]["title"])
    mask = batch["news"]["title"] != 0
    word_keys = model._keys(batch["history_users"], model.word_query)
    news_keys = model._keys(batch["history_users"], model.news_query)

    def read(row, key):
        w = masked_softmax(features[row] @ key, mask[row])
        return w @ features[row]

    users = []
    for u in range(len(batch["history"])):
        clicked = torch.stack([read(r, word_keys[u]) for r in batch["history"][u]])
        w = masked_softmax(clicked @ news_keys[u], batch["history_mask"][u])
        users.append(w @ clicked)
    scores = []
    for b, u in enumerate(batch["user_index"].tolist()):
        scores.append(torch.stack([read(c, word_keys[u]) @ users[u] for c in batch["candidates"][b]]))
    return torch.stack(scores)


@pytest.mark.parametrize("share", [0.0, 1e9], ids=["gathered clicks", "matrix products"])
def test_personalised_forward_equals_the_per_user_reference_chunked_or_not(tiny_world, share):
    torch.manual_seed(0)
    dm = MINDDataModule(root=tiny_world, eval_batch_size=12)
    model = NPA.from_data(dm, word_dim=50, num_filters=16, query_dim=8, user_dim=8).eval()
    model.dense_read_share = share  # 0: always gather the clicks' features; 1e9: always the dense form
    batch = as_batch(next(iter(dm.val_dataloader())))
    with torch.no_grad():
        ref = _reference(model, batch)
        whole = model(batch)
        model.chunk_elements = 1  # one user per chunk
        chunked = model(batch)
    mask = batch["candidate_mask"]
    torch.testing.assert_close(whole[mask], ref[mask], rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(chunked, whole, rtol=1e-5, atol=1e-6)
    with torch.enable_grad():  # the training path (one chunk, gradients kept) gives the same scores
        scores = model(batch)
        torch.testing.assert_close(scores[mask], ref[mask], rtol=1e-4, atol=1e-5)
        scores[mask].sum().backward()
    assert all(p.grad is None or torch.isfinite(p.grad).all() for p in model.parameters())
    assert model.word_query.query.weight.grad.abs().sum() > 0  # the personalised word query learns
