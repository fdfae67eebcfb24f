import numpy as np
import pytest

from newsrec.data import (
    Behaviors,
    CorpusConfig,
    NewsCorpus,
    TrainingSamples,
    Vocabulary,
    load_entity_vectors,
    load_word_vectors,
    read_news,
    tokenize,
)
from newsrec.errors import DataFormatError, MissingNewsError


def ent(wid, label, conf, off):
    return (
        f'{{"Label": "{label}", "Type": "O", "WikidataId": "{wid}", "Confidence": {conf}, '
        f'"OccurrenceOffsets": [{off}], "SurfaceForms": ["{label}"]}}'
    )


TRAIN_NEWS = (
    "N1\tsports\tgolf\tTiger Woods wins, again!\tHe won.\tu\t"
    f"[{ent('Q1', 'Tiger Woods', 0.5, 0)}, {ent('Q2', 'Golf', 0.9, 12)}]\t[{ent('Q3', 'Masters', 0.9, 0)}]\n"
    "N2\tnews\tus\tStocks fall\tMarkets fell today.\tu\t[]\t[]\n"
)
DEV_NEWS = TRAIN_NEWS.splitlines()[1] + "\nN3\tweather\tstorms\tStorm hits coast\tRain.\tu\t[]\t[]\n"


@pytest.fixture
def corpus(tmp_path):
    (tmp_path / "train.tsv").write_text(TRAIN_NEWS)
    (tmp_path / "dev.tsv").write_text(DEV_NEWS)
    return NewsCorpus.from_files(
        [tmp_path / "train.tsv", tmp_path / "dev.tsv"], CorpusConfig(title_length=6, abstract_length=4, num_entities=5)
    )


def test_tokenize():
    assert tokenize("Tiger Woods wins, again!") == ["tiger", "woods", "wins", ",", "again", "!"]
    assert tokenize("") == []


def test_vocabulary_build_and_roundtrip(tmp_path):
    v = Vocabulary.build([["a", "b", "a"], ["c", "a", "b"]], min_count=2)
    assert v.itos == ["<pad>", "<unk>", "a", "b"]
    assert v.encode(["a", "zzz", "b"], length=5) == [2, 1, 3, 0, 0]
    v.save(tmp_path / "v.json")
    assert Vocabulary.load(tmp_path / "v.json") == v
    assert len(Vocabulary.build([["a", "b", "c"]], max_size=2)) == 4


def test_corpus_arrays(corpus):
    assert corpus.news_ids == ["<pad>", "N1", "N2", "N3"]
    assert corpus.num_train_news == 3
    assert (corpus.title[0] == 0).all() and corpus.category[0] == 0
    v = corpus.vocab
    assert corpus.title[1].tolist() == [v["tiger"], v["woods"], v["wins"], v[","], v["again"], v["!"]]
    # dev-only news: words unseen in training are unknown, category unknown
    assert "storm" not in v and corpus.title[3, 0] == 1
    assert corpus.category[3] == 1 and corpus.category[1] != 1
    # entities ordered by confidence, then source (title before abstract), then position
    e = corpus.entities
    assert [corpus.entity_vocab.itos[i] for i in e[1][:3]] == ["Q2", "Q3", "Q1"]
    assert e[2].tolist() == [0] * 5
    et = corpus.entity_text[1].tolist()
    assert et[:2] == [v["golf"], v["masters"]]


def test_corpus_cache_roundtrip(corpus, tmp_path):
    corpus.save(tmp_path / "cache" / "corpus")
    c2 = NewsCorpus.load(tmp_path / "cache" / "corpus")
    assert c2.news_ids == corpus.news_ids and c2.vocab == corpus.vocab
    for f in ("title", "abstract", "entities", "entity_text", "category"):
        np.testing.assert_array_equal(getattr(c2, f), getattr(corpus, f))


def test_malformed_entity_json_names_file_and_line(tmp_path):
    (tmp_path / "n.tsv").write_text("N1\ta\tb\tt\tx\tu\t[]\t[]\nN2\ta\tb\tt\tx\tu\t[{oops\t[]\n")
    with pytest.raises(DataFormatError) as e:
        NewsCorpus.from_files([tmp_path / "n.tsv"])
    assert e.value.line == 2 and "entity JSON" in str(e.value)


@pytest.mark.parametrize(
    "entity, words",
    [
        ('{"WikidataId": null, "Confidence": 1.0}', "WikidataId"),
        ('{"WikidataId": ["Q1"], "Confidence": 1.0}', "WikidataId"),
        ('{"WikidataId": "Q1", "Confidence": NaN}', "Confidence"),
        ('{"WikidataId": "Q1", "Confidence": "high"}', "Confidence"),
        ('{"WikidataId": "Q1", "OccurrenceOffsets": [-3]}', "OccurrenceOffsets"),
        ('{"WikidataId": "Q1", "Label": 5}', "Label"),
    ],
)
def test_entity_fields_of_the_wrong_type_name_file_and_line(tmp_path, entity, words):
    (tmp_path / "n.tsv").write_text(f"N1\ta\tb\tt\tx\tu\t[]\t[]\nN2\ta\tb\tt\tx\tu\t[{entity}]\t[]\n")
    with pytest.raises(DataFormatError) as e:
        NewsCorpus.from_files([tmp_path / "n.tsv"])
    assert e.value.line == 2 and "n.tsv" in str(e.value) and words in str(e.value)


def test_word_and_entity_vectors(corpus, tmp_path):
    (tmp_path / "g.txt").write_text("tiger 1 2\nwoods 3 4\nunrelated 5 6\n")
    m, cov = load_word_vectors(corpus.vocab, tmp_path / "g.txt")
    assert m.shape == (len(corpus.vocab), 2) and (m[0] == 0).all()
    assert m[corpus.vocab["woods"]].tolist() == [3, 4]
    assert cov.found == 2 and cov.total == len(corpus.vocab) - 2
    (tmp_path / "e.vec").write_text("Q2\t1\t1\t\nQ9\t2\t2\t\n")
    em, ecov = load_entity_vectors(corpus.entity_vocab.stoi, tmp_path / "e.vec")
    assert em.shape == (len(corpus.entity_vocab), 2)
    assert em[corpus.entity_vocab["Q2"]].tolist() == [1, 1] and (em[:2] == 0).all()
    assert ecov.found == 1


BEHAVIORS = (
    "10\tU1\t11/11/2019 9:05:58 AM\tN1 N2 N1\tN1-1 N2-0 N3-0\n"
    "11\tU2\t11/12/2019 1:00:00 PM\t\tN2-1 N1-1\n"
    "12\tU1\t11/13/2019 1:00:00 PM\tN2\tN3-0 N2-1 N1-0 N3-0 N2-0 N1-0 N3-0\n"
)


def test_behaviors_arrays(corpus, tmp_path):
    (tmp_path / "b.tsv").write_text(BEHAVIORS)
    b = Behaviors.from_file(tmp_path / "b.tsv", corpus.lookup, block_size=64)
    assert b.impression_ids.tolist() == [10, 11, 12]
    assert b.user_ids == ["U1", "U2"] and b.users.tolist() == [0, 1, 0]
    assert b.history.tolist() == [1, 2, 1, 2] and b.history_offsets.tolist() == [0, 3, 3, 4]
    h, n = b.histories(np.array([0, 1, 2]), length=2)
    assert h.tolist() == [[2, 1], [0, 0], [2, 0]] and n.tolist() == [2, 0, 1]
    c, y, m = b.impressions(np.array([1, 0]))
    assert c.tolist() == [[2, 1, 0], [1, 2, 3]] and y.tolist() == [[1, 1, 0], [1, 0, 0]]
    assert m.tolist() == [[True, True, False], [True, True, True]]
    values, offsets = b.user_sequences()
    assert offsets.tolist() == [0, 3, 3] and values.tolist() == [1, 2, 1]


def test_missing_news_policy(corpus, tmp_path):
    (tmp_path / "b.tsv").write_text(
        BEHAVIORS + "13\tU3\t11/13/2019 1:00:00 PM\tN77\tN88-1\n14\tU3\t11/13/2019 1:00:00 PM\tN77\tN88-1 N1-0\n"
    )
    with pytest.raises(MissingNewsError) as e:
        Behaviors.from_file(tmp_path / "b.tsv", corpus.lookup)
    assert "N77" in str(e.value) and "N88" in str(e.value) and "4 news id" in str(e.value)
    with pytest.warns(UserWarning, match="dropped 4"):
        b = Behaviors.from_file(tmp_path / "b.tsv", corpus.lookup, missing="drop")
    assert b.impression_ids.tolist() == [10, 11, 12, 14]
    assert b.num_missing == 4 and b.num_dropped_impressions == 1
    c, y, m = b.impressions(np.array([3]))
    assert c.tolist() == [[1]] and y.tolist() == [[0]]


def test_training_samples(corpus, tmp_path):
    (tmp_path / "b.tsv").write_text(BEHAVIORS + "13\tU3\t11/13/2019 1:00:00 PM\t\tN1-1 N2-1\n")
    b = Behaviors.from_file(tmp_path / "b.tsv", corpus.lookup)
    s = TrainingSamples(b, num_negatives=4, seed=1)
    # impression 11 and 13 have no negatives: their 4 clicks form no sample
    assert len(s) == 2 and s.num_skipped == 4
    assert s.positives.tolist() == [1, 2]
    c0 = s.candidates(0).numpy()
    assert c0.shape == (2, 5) and (c0[:, 0] == [1, 2]).all()
    # row 0 (impression 10): 2 negatives < K -> with replacement, from {2, 3}
    assert set(c0[0, 1:]) <= {2, 3}
    # row 1 (impression 12): 6 negatives >= K -> without replacement, positions distinct
    assert set(c0[1, 1:]) <= {1, 2, 3}
    np.testing.assert_array_equal(s.candidates(0).numpy(), c0)


def test_negatives_without_replacement_are_uniform_and_distinct():
    rng = np.random.default_rng(0)
    n_imp = 300
    sizes = rng.integers(2, 40, size=n_imp)
    labels = np.concatenate([[1] + [0] * (k - 1) for k in sizes]).astype(np.int8)
    cands = np.arange(len(labels), dtype=np.int32)  # distinct news everywhere
    offsets = np.concatenate([[0], np.cumsum(sizes)])
    b = Behaviors(
        np.arange(n_imp),
        np.zeros(n_imp, np.int32),
        ["u"],
        np.zeros(n_imp, np.int64),
        np.zeros(0, np.int32),
        np.zeros(n_imp + 1, np.int64),
        cands,
        offsets,
        labels,
    )
    s = TrainingSamples(b, num_negatives=4, seed=0)
    counts = np.zeros(len(labels))
    for epoch in range(40):
        neg = s.negatives(epoch)
        row = s.rows
        lo, hi = offsets[row][:, None], offsets[row + 1][:, None]
        assert ((neg > lo) & (neg < hi)).all()  # from the same impression, never the click
        enough = (sizes[row] - 1) >= 4
        srt = np.sort(neg[enough], axis=1)
        assert (srt[:, 1:] != srt[:, :-1]).all()  # distinct
        np.add.at(counts, neg.ravel(), 1)
    assert not np.array_equal(s.negatives(0), s.negatives(1))
    # uniformity: an impression with n >= 4 negatives gives each one 4/n of the draws
    big = np.flatnonzero(sizes - 1 >= 4)
    expect = 40 * 4 / (sizes[big] - 1)
    got = np.array([counts[offsets[i] + 1 : offsets[i + 1]].mean() for i in big])
    np.testing.assert_allclose(got, expect, rtol=1e-12)


def test_synthetic_world_builds_corpus_and_behaviors(tiny_world):
    root = tiny_world
    corpus = NewsCorpus.from_files([root / "train" / "news.tsv", root / "dev" / "news.tsv"])
    assert len(corpus) == read_news(root / "dev" / "news.tsv").num_rows + 1
    train = Behaviors.from_file(root / "train" / "behaviors.tsv", corpus.lookup)
    dev = Behaviors.from_file(root / "dev" / "behaviors.tsv", corpus.lookup)
    assert train.has_labels and len(train) > len(dev) > 0
    assert (corpus.entities[1:] > 0).any(axis=1).all()  # every synthetic news has entities
    # time-ordered split
    assert train.times.max() < dev.times.min()


def test_datamodule_word_vectors_are_parsed_once(tiny_world, tmp_path, monkeypatch):
    import shutil

    import newsrec.data.text as text_module
    from newsrec.data import MINDDataModule

    root = tmp_path / "w"
    shutil.copytree(tiny_world, root, ignore=shutil.ignore_patterns("processed"))
    first = MINDDataModule(str(root)).word_vectors()
    assert first.shape[1] == 50 and list((root / "processed").glob("word-vectors-*"))

    def fail(*args, **kwargs):
        raise AssertionError("GloVe parsed again")

    monkeypatch.setattr(text_module, "load_word_vectors", fail)  # what prepare.load_word_matrix calls
    dm = MINDDataModule(str(root))
    np.testing.assert_array_equal(dm.word_vectors(), first)
    assert dm.word_coverage.ratio > 0.9


def test_datamodule_pins_batches_only_for_a_cuda_device(tiny_world):
    import pytorch_lightning as pl
    import torch

    from newsrec.data import MINDDataModule

    with pytest.raises(ValueError, match="pin_memory"):
        MINDDataModule(str(tiny_world), pin_memory="yes")
    dm = MINDDataModule(str(tiny_world))
    assert dm.train_dataloader().pin_memory == torch.cuda.is_available()  # "auto", no Trainer
    dm.trainer = pl.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False)
    assert not dm.train_dataloader().pin_memory and not dm.val_dataloader().pin_memory
    assert MINDDataModule(str(tiny_world), pin_memory=True).news_dataloader().pin_memory
