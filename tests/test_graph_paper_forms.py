"""GERL and GNewsRec as their papers build them: the views and layers of the paper, newsrec's
former forms as named options (off by default), and a checkpoint of the former form refuses with
the one-line "does not fit" error."""

import pytest
import torch
from _mechanisms import CATEGORIES, NEWS, TINY, USERS, WORDS, batch_for, news_table

from newsrec.checkpoint_io import check_weights_fit, model_from_checkpoint
from newsrec.models import GERL, GNewsRec

SIZES = dict(num_words=WORDS, num_categories=CATEGORIES + 1, num_users=USERS, num_news=NEWS, num_neighbors=4)


def graph_news():
    g = torch.Generator().manual_seed(1)
    news = news_table()
    news["news_clickers"] = torch.randint(0, USERS, (NEWS, 4), generator=g)
    news["news_coclicked"] = torch.randint(0, NEWS, (NEWS, 4), generator=g)
    return news


def test_gerl_is_the_sum_of_the_papers_views():
    """u = Att_1(t_clicked) + e_u + Att_2(e_neighbour users); n = t_n + Att_3(e_coclicked) +
    Att_4(t_coclicked), computed here by hand from the model's own modules."""
    torch.manual_seed(0)
    news = graph_news()
    model = GERL(**SIZES, **TINY).use_corpus(news).eval()
    assert not hasattr(model, "clicker_pooling") and not hasattr(model, "news_graph")
    history = torch.randint(1, NEWS, (3, 5))
    mask = torch.ones(3, 5, dtype=torch.bool)
    mask[1, 3:] = False
    users = torch.tensor([1, 5, 0])
    candidates = torch.randint(1, NEWS, (3, 4))
    with torch.no_grad():
        scores = model(batch_for(news, history, mask, candidates, users=users))
        t = model.encode_history_news(news)  # [N, d]
        co, cl = news["news_coclicked"], news["news_clickers"]
        items = t + model.coclicked_pooling(model.news_id_embedding(co), co > 0)
        items = items + model.coclicked_text_pooling(t[co], co > 0)
        neighbours = cl[history].flatten(1)
        keep = mask.repeat_interleave(4, 1) & (neighbours > 0) & (neighbours != users[:, None])
        u = model.clicked_pooling(t[history], mask) + model.user_embedding(users)
        u = u + model.neighbor_user_pooling(model.user_embedding(neighbours), keep)
    torch.testing.assert_close(scores, torch.einsum("bd,bcd->bc", u, items[candidates]))


def test_gerl_needs_its_corpus_and_says_so():
    model = GERL(**SIZES, **TINY).eval()
    news = graph_news()
    batch = batch_for(news, torch.ones(1, 2, dtype=torch.long), torch.ones(1, 2, dtype=torch.bool),
                      torch.ones(1, 2, dtype=torch.long), users=torch.tensor([1]))  # fmt: skip
    with pytest.raises(ValueError, match="connect_data"):
        model(batch)


def test_gerl_ids_start_as_the_reference_and_options_change_them():
    model = GERL(**SIZES, **TINY)
    assert model.user_embedding.weight[1:].norm(dim=-1).mean() > 2.0  # N(0, 1), zpqiu's start
    small = GERL(**SIZES, **TINY, id_init="uniform")
    assert small.user_embedding.weight[1:].abs().max() <= 0.05


@pytest.mark.parametrize("cls, option", [(GERL, "clicker_view"), (GNewsRec, "residual")])
def test_checkpoint_of_the_former_form_does_not_fit_and_loads_into_its_option(cls, option):
    torch.manual_seed(0)
    former = cls(**SIZES, **TINY, **{option: True})
    paper = cls(**SIZES, **TINY)
    with pytest.raises(ValueError, match=f"does not fit {cls.__name__} "):
        check_weights_fit(former.state_dict(), paper, "old.ckpt")
    again = cls(**SIZES, **TINY, **{option: True})
    check_weights_fit(former.state_dict(), again, "old.ckpt")
    again.load_state_dict(former.state_dict())


def test_gnewsrec_concatenates_long_and_short_term_users():
    """s = (W_c [u_L; u_S(c)] + b_c) · c, u_L = ReLU(W_2 [e_u; mean n]) and news through
    ReLU(W_1 [t; mean(clickers ∪ topic)]): the paper's layers (W with bias, 2·dim inputs)."""
    torch.manual_seed(0)
    model = GNewsRec(**SIZES, **TINY).eval()
    d = model.dim
    assert model.combine.in_features == 2 * d and model.combine.bias is not None
    assert model.news_layer.in_features == 2 * d and model.user_layer.in_features == 2 * d
    news = graph_news()
    with torch.no_grad():
        vectors = model.encode_news(news)
        assert (vectors >= 0).all()  # a ReLU layer
        history = torch.randint(1, NEWS, (2, 5))
        mask = torch.ones(2, 5, dtype=torch.bool)
        users = torch.tensor([3, 0])
        one = model(batch_for(news, history, mask, torch.randint(1, NEWS, (2, 3)), users=users))
        model.combine.weight[:, :d].zero_()  # the long-term half of W_c now reads nothing
        two = model(batch_for(news, history, mask, torch.randint(1, NEWS, (2, 3)), users=users))
    assert not torch.allclose(one, two)


def test_a_checkpoint_of_the_former_gerl_does_not_fit():
    """The former GERL (newsrec before this round) had ``user_dim`` and the clickers' view."""
    former = GERL(**SIZES, **TINY, clicker_view=True, id_init="uniform")
    hparams = {**{k: v for k, v in former.hparams.items() if k not in ("clicker_view", "id_init")}, "user_dim": None}
    ckpt = {"state_dict": former.state_dict(), "hyper_parameters": hparams, "newsrec_model": "newsrec.models.GERL"}
    with pytest.raises(ValueError, match="does not fit GERL"):
        model_from_checkpoint(ckpt, "old.ckpt")
