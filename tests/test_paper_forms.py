"""The papers' forms of HieRec, FIM, DKN, LSTUR and NAML (#45): what changed is checked on tiny
inputs, and a checkpoint of the former form refuses with the one-line "does not fit" error."""

import pytest
import torch
from _mechanisms import TINY

from newsrec.checkpoint_io import check_weights_fit
from newsrec.models import DKN, FIM, LSTUR, NAML, HieRec


def test_fim_reads_a_fixed_grid_whatever_the_batch_padding_and_keeps_the_order_of_clicks():
    torch.manual_seed(0)
    model = FIM(num_words=50, num_filters=4, dilations=(1, 2), conv_channels=(3, 2), history_length=10, title_length=7,
                word_dim=6, dropout=0.0, pretrained_words=False).eval()  # fmt: skip
    P, H, L, D = 3, 4, 5, sum(model.level_sizes)
    cand_words = torch.rand(P, L) > 0.3
    clicked_words = torch.rand(P, H, L) > 0.3
    clicks = torch.tensor([[True] * 4, [True, True, False, False], [False] * 4])
    cand = torch.randn(P, L, D) * cand_words[..., None]
    clicked = torch.randn(P, H, L, D) * (clicked_words & clicks[..., None])[..., None]
    with torch.no_grad():
        got = model.match(cand, clicked, clicks, cand_words, clicked_words)
        # the same pairs padded to the whole grid (10 clicks x 7 words): the same scores
        full = model.match(
            torch.nn.functional.pad(cand, (0, 0, 0, 2)), torch.nn.functional.pad(clicked, (0, 0, 0, 2, 0, 6)),
            torch.nn.functional.pad(clicks, (0, 6)), torch.nn.functional.pad(cand_words, (0, 2)),
            torch.nn.functional.pad(clicked_words, (0, 2, 0, 6)),
        )  # fmt: skip
        torch.testing.assert_close(got, full, atol=1e-5, rtol=1e-5)
        assert got[2] == pytest.approx(model.output.bias.item())  # an empty history: the bias
        flipped = model.match(cand, clicked.flip(1), clicks, cand_words, clicked_words.flip(1))
    assert not torch.allclose(flipped[0], got[0])  # the order of the clicks counts
    with pytest.raises(ValueError, match="history_length"):
        model.match(cand, clicked.repeat(1, 3, 1, 1), clicks.repeat(1, 3), cand_words, clicked_words.repeat(1, 3, 1))


def test_learned_tables_start_as_the_originals():
    sizes = dict(num_words=30, num_categories=5, num_subcategories=9, num_users=7, num_entity_ids=11, **TINY)
    hierec = HieRec(**sizes)
    assert hierec.topic_embedding.weight.abs().sum() == 0 and hierec.subtopic_embedding.weight.abs().sum() == 0
    for score in (hierec.subtopic_pooling, hierec.topic_pooling, hierec.user_pooling):
        assert score.score.weight.abs().sum() == 0  # equal weights inside every group at the start
    tables = [LSTUR(**sizes).topic_embedding, LSTUR(**sizes).subtopic_embedding]
    tables += [view[0] for view in NAML(**sizes).category_views.values()]
    for table in tables:  # Keras' uniform ±0.05, the padding row zero
        assert table.weight[1:].abs().max() <= 0.05 and table.weight[0].abs().sum() == 0


@pytest.mark.parametrize(
    "cls, extra, old_form",
    [
        (HieRec, {}, lambda sd: {k: v for k, v in sd.items() if not k.startswith("news_projection")}),
        (FIM, {"num_filters": 4, "conv_channels": (3, 2)}, lambda sd: sd | {"output.weight": torch.zeros(1, 18)}),
        (DKN, {"entity_dim": 4, "num_filters": 3}, lambda sd: {k: v for k, v in sd.items() if "convs.3" not in k}),
    ],
)
def test_a_checkpoint_of_the_former_form_does_not_fit(cls, extra, old_form):
    model = cls(num_words=30, num_categories=5, num_subcategories=9, num_entity_ids=11, **TINY, **extra)
    with pytest.raises(ValueError, match=f"does not fit {cls.__name__} "):
        check_weights_fit(old_form(model.state_dict()), model, "old.ckpt")
    check_weights_fit(model.state_dict(), model, "new.ckpt")
