"""User-as-Graph's heterogeneous graph convolution and hierarchical pooling: exact small
examples, padding that holds no mass, and one user node at the end."""

import pytest
import torch
from _mechanisms import CATEGORIES, NEWS, TINY, WORDS, batch_for, news_table

from newsrec.checkpoint_io import check_weights_fit
from newsrec.models import UserAsGraph
from newsrec.nn.hetero_pool import HeteroDenseConv, hetero_dense_pool


def test_hetero_conv_is_a_type_self_weight_plus_a_mean_per_relation():
    torch.manual_seed(0)
    conv = HeteroDenseConv(3, 2, num_relations=2, num_types=2)
    x = torch.randn(1, 4, 3)
    adj = torch.zeros(2, 1, 4, 4)
    adj[0, 0, 0, 1] = adj[0, 0, 0, 2] = 1.0  # node 0 hears 1 and 2 along relation 0
    adj[1, 0, 0, 3] = 1.0  # and node 3 (padding) along relation 1
    mask = torch.tensor([[True, True, True, False]])
    types = torch.tensor([[1, 0, 0, 0]])
    out = conv(x, adj, mask, types)
    expected = conv.self_weights[1](x[0, 0]) + conv.relations[0]((x[0, 1] + x[0, 2]) / 2)
    torch.testing.assert_close(out[0, 0], expected)
    assert (out[0, 3] == 0).all()  # padding comes out zero


def test_pooling_is_the_assignment_weighted_mean_and_padding_holds_no_mass():
    torch.manual_seed(0)
    z = torch.randn(1, 3, 2)
    logits = torch.randn(1, 3, 2)
    adj = torch.ones(1, 1, 3, 3)
    mask = torch.tensor([[True, True, False]])
    x, pooled_adj, kept = hetero_dense_pool(z, logits, adj, mask)
    s = torch.softmax(logits, -1)[0, :2]
    torch.testing.assert_close(x[0], (s.T @ z[0, :2]) / s.sum(0)[:, None])
    torch.testing.assert_close(pooled_adj[0, 0], s.T @ adj[0, 0, :2, :2] @ s)
    assert kept.all()
    _, _, none = hetero_dense_pool(z, logits, adj, torch.zeros(1, 3, dtype=torch.bool))
    assert not none.any()


def test_users_are_pooled_to_one_node_whatever_the_padding():
    torch.manual_seed(0)
    news = news_table()
    model = UserAsGraph(num_words=WORDS, num_categories=CATEGORIES + 1, num_entity_ids=30, num_news=NEWS,
                        cluster_sizes=(3, 2, 1), **TINY).eval()  # fmt: skip
    history = torch.randint(1, NEWS, (2, 6))
    mask = torch.ones(2, 6, dtype=torch.bool)
    mask[1, 3:] = False
    with torch.no_grad():
        t = model.encode_news(news)
        users = model.encode_users(batch_for(news, history, mask, history[:, :2]), t)
        alone = model.encode_users(batch_for(news, history[1:, :3], mask[1:, :3], history[1:, :2]), t)
        empty = model.encode_users(batch_for(news, history[:1], mask[:1] & False, history[:1, :2]), t)
    assert users.shape == (2, model.dim)
    torch.testing.assert_close(users[1], alone[0], atol=1e-5, rtol=1e-5)
    assert (empty == 0).all()
    assert model.topic_embedding.weight.abs().max() <= 0.05  # topic nodes start small


def test_cluster_sizes_must_end_with_one_node_and_former_checkpoints_do_not_fit():
    sizes = dict(num_words=WORDS, num_categories=CATEGORIES + 1, num_entity_ids=30, num_news=NEWS, **TINY)
    with pytest.raises(ValueError, match="end with 1"):
        UserAsGraph(cluster_sizes=(4, 2), **sizes)
    model = UserAsGraph(**sizes)
    former = {k: v for k, v in model.state_dict().items() if not k.startswith("pool_assign")}
    former["assignment.0.weight"] = torch.zeros(4, model.dim)  # a linear assignment per node type
    with pytest.raises(ValueError, match="does not fit UserAsGraph"):
        check_weights_fit(former, model, "old.ckpt")
