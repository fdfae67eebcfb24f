"""MIND title entities aligned with the title's words (DKN's input): exact on rows in MIND's
published format, with multi-word surface forms, quotes and punctuation next to an entity,
non-ASCII titles, and a stated policy for offsets that do not match."""

import json
import warnings

import numpy as np
import pytest

from newsrec.core import DataRequirements
from newsrec.data import MINDDataModule
from newsrec.data.entity_alignment import align_title_entities
from newsrec.data.text import tokenize


def entity(wid, surface, title, confidence=1.0, offset=None, label=None):
    """One entity of MIND's ``title_entities`` JSON, at ``surface``'s first offset in ``title``."""
    return {
        "Label": label or surface,
        "Type": "G",
        "WikidataId": wid,
        "Confidence": confidence,
        "OccurrenceOffsets": [title.index(surface) if offset is None else offset],
        "SurfaceForms": [surface],
    }


IDS = {"Q1": 11, "Q2": 12, "Q3": 13, "Q4": 14}


def align(title, ents, length=30):
    return align_title_entities(title, json.dumps(ents), IDS.get, length)


def test_multi_word_surface_forms_quotes_and_punctuation_map_to_exactly_their_words():
    title = 'Trump\'s "Space Force" lands in Los Angeles, California!'
    ents = [entity("Q1", "Space Force", title), entity("Q2", "Los Angeles", title), entity("Q3", "California", title)]
    ids, report = align(title, ents)
    tokens = tokenize(title)
    assert tokens == ["trump", "s", "space", "force", "lands", "in", "los", "angeles", ",", "california", "!"]
    want = [0, 0, 11, 11, 0, 0, 12, 12, 0, 13, 0]
    assert ids[: len(tokens)] == want and not any(ids[len(tokens) :])
    assert (report.aligned, report.relocated, report.unaligned) == (3, 0, 0)


def test_non_ascii_titles_whose_lower_case_changes_length_align_exactly():
    title = "İstanbul beats Köln in Zürich"  # "İ".lower() is two characters: offsets must not drift
    ents = [entity("Q1", "İstanbul", title), entity("Q2", "Köln", title), entity("Q3", "Zürich", title)]
    ids, report = align(title, ents)
    tokens = tokenize(title)
    first = tokenize("İstanbul")  # the tokenizer splits it at the combining dot: both words are the entity's
    assert [t for t, i in zip(tokens, ids) if i] == [*first, "köln", "zürich"]
    assert [i for i in ids if i] == [11] * len(first) + [12, 13] and report.aligned == 3


def test_offsets_that_do_not_match_are_relocated_or_left_out_never_an_error():
    title = "Apple sues Samsung over phones"
    ents = [
        entity("Q1", "Samsung", title, offset=0),  # wrong offset, surface form present: relocated
        entity("Q2", "Nokia", title, offset=3),  # surface form absent: left out
        entity("Q3", "apple", title, offset=0),  # differs in case only: relocated ignoring case
        {"WikidataId": "Q4", "OccurrenceOffsets": [99], "SurfaceForms": ["phones"], "Confidence": 0.5},  # beyond
        entity("Q9", "over", title),  # no id here: left out
    ]
    ids, report = align(title, ents, length=4)  # the title array keeps 4 tokens: "phones" is cut
    assert ids == [13, 0, 11, 0]
    assert (report.relocated, report.unaligned, report.no_id) == (3, 1, 1)


def test_overlapping_entities_keep_the_more_confident_one():
    title = "New York Times reports"
    ents = [entity("Q1", "New York", title, confidence=0.4), entity("Q2", "New York Times", title, confidence=0.9)]
    ids, _ = align(title, ents)
    assert ids[:4] == [12, 12, 12, 0]


def test_the_data_module_gives_aligned_entity_ids_and_their_graph_neighbours(tmp_path):
    root = tmp_path / "mind"
    titles = {
        "N1": 'Biden visits "New Delhi" today',
        "N2": "Zürich: Modi meets Biden",
        "N3": "Weather in New Delhi",
    }
    ents = {
        "N1": [entity("Q10", "Biden", titles["N1"]), entity("Q20", "New Delhi", titles["N1"])],
        "N2": [
            entity("Q30", "Modi", titles["N2"]),
            entity("Q10", "Biden", titles["N2"]),
            entity("Q40", "Zürich", titles["N2"]),
        ],
        "N3": [entity("Q20", "New Delhi", titles["N3"], offset=2)],  # a wrong offset: relocated
    }
    for split in ("train", "dev"):
        (root / split).mkdir(parents=True)
        lines = [f"{n}\tnews\tworld\t{t}\tabstract\thttps://x\t{json.dumps(ents[n])}\t[]" for n, t in titles.items()]
        (root / split / "news.tsv").write_text("\n".join(lines) + "\n", encoding="utf-8")
        (root / split / "behaviors.tsv").write_text(
            "1\tU1\t11/15/2019 8:55:22 AM\tN1 N2\tN3-1 N1-0\n2\tU2\t11/15/2019 9:55:22 AM\tN2 N3\tN1-1 N2-0\n"
        )
    dm = MINDDataModule(str(root), word_vectors=None)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        dm.configure(DataRequirements(news_fields=("title", "title_entity_words"), entity_neighbors=2, entity_graph={}))
    arrays = dm.news_arrays()["title_entity_words"]
    stoi = dm.corpus.entity_vocab.stoi
    row = dm.corpus.news_index
    for n, title in titles.items():
        tokens = tokenize(title)
        named = {tokens[i]: int(arrays[row[n], i]) for i in range(len(tokens)) if arrays[row[n], i]}
        want = {w: stoi[e["WikidataId"]] for e in ents[n] for w in tokenize(e["SurfaceForms"][0])}
        assert named == want, n
    batch = dm.val_dataloader().dataset[np.arange(2)]
    assert batch["news"]["title_entity_neighbors"].shape[-1] == 2
    assert (batch["news"]["title_entity_neighbors"][batch["news"]["title_entity_words"] == 0] == 0).all()
    # serving adds news the same way
    fresh = dm.encode_news_rows([{"news_id": "N9", "title": titles["N1"], "title_entities": json.dumps(ents["N1"])}])
    np.testing.assert_array_equal(fresh["title_entity_words"][0], arrays[row["N1"]])


def test_malformed_entity_json_is_one_error_naming_the_problem():
    with pytest.raises(ValueError, match="JSON list"):
        align_title_entities("A title", json.dumps({"not": "a list"}), IDS.get, 5)


def test_kred_entity_context_counts_positions_occurrences_and_types():
    from newsrec.data.entity_alignment import entity_context, entity_type_id

    title = "Biden and Biden meet Modi"
    title_json = json.dumps(
        [
            {"WikidataId": "Q1", "Type": "P", "OccurrenceOffsets": [0, 10], "SurfaceForms": ["Biden", "Biden"]},
            {"WikidataId": "Q2", "Type": "P", "OccurrenceOffsets": [title.index("Modi")], "SurfaceForms": ["Modi"]},
        ]
    )
    abstract_json = json.dumps([{"WikidataId": "Q2", "Type": "P", "OccurrenceOffsets": [3]},
                                {"WikidataId": "Q3", "Type": "Place", "OccurrenceOffsets": [9]}])  # fmt: skip
    got = entity_context(title_json, abstract_json, ["Q1", "Q2", "Q3", "<pad>"])
    np.testing.assert_array_equal(got[0], [1, 3, 2, 0])  # title, both, abstract, none
    np.testing.assert_array_equal(got[1], [2, 2, 1, 0])  # occurrences
    assert list(got[2]) == [entity_type_id("P")] * 2 + [entity_type_id("Place"), 0]
    assert entity_type_id("P") == 16 and 27 <= entity_type_id("Place") < 32 and entity_type_id("") == 0
    assert entity_context("not json", "[]", ["Q1"]).tolist() == [[0], [0], [0]]  # never an error
