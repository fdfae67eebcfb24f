"""benchmarks/peers.py without TensorFlow: the peer's side files, the common scorer, and the
one-line failure when the peer cannot be installed."""

import importlib.util
import pickle
from pathlib import Path

import numpy as np
import pytest

PEERS = Path(__file__).parents[1] / "benchmarks" / "peers.py"


@pytest.fixture(scope="module")
def peers():
    spec = importlib.util.spec_from_file_location("peers_benchmark", PEERS)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_side_files_are_what_the_peers_iterator_reads(peers, tiny_world, tmp_path):
    files = peers.write_peer_files(Path(tiny_world), tmp_path / "side")
    words = pickle.load(open(files["word_dict.pkl"], "rb"))
    users = pickle.load(open(files["uid2index.pkl"], "rb"))
    verts = pickle.load(open(files["vert_dict.pkl"], "rb"))
    emb = np.load(files["embedding.npy"])
    assert sorted(words.values()) == list(range(1, len(words) + 1))  # 1-based, 0 = padding
    assert emb.shape == (len(words) + 1, 50) and not emb[0].any()
    assert users["<unk>"] == 0 and sorted(users.values()) == list(range(len(users)))  # a <unk> row 0
    train_users = {line.split("\t")[1] for line in (tiny_world / "train" / "behaviors.tsv").read_text().splitlines()}
    assert set(users) - {"<unk>"} == train_users
    first = (tiny_world / "train" / "news.tsv").read_text().splitlines()[0].split("\t")
    assert all(w in words for w in peers.tokenize(first[3])) and first[1] in verts
    vectors = {
        parts[0]: np.asarray(parts[1:], np.float32)
        for line in (tiny_world / "word_vectors.txt").read_text().splitlines()
        if len(parts := line.split(" ")) > 2
    }
    word = next(w for w in words if w in vectors)
    np.testing.assert_allclose(emb[words[word]], vectors[word])


def test_the_common_scorer_on_an_exact_example(peers):
    # impression 1: the click ranked 2nd of 3 → AUC 0.5, MRR 1/2; impression 2: clicks ranked 1st and 3rd
    got = peers.common_scores([[0, 1, 0], [1, 0, 1]], [[0.9, 0.5, 0.1], [3.0, 2.0, 1.0]])
    assert got["auc"] == pytest.approx((0.5 + 0.5) / 2)
    assert got["mrr"] == pytest.approx((0.5 + (1 + 1 / 3) / 2) / 2)
    ndcg1 = (1 / np.log2(3)) / 1.0
    ndcg2 = (1 + 1 / np.log2(4)) / (1 + 1 / np.log2(3))
    assert got["ndcg@10"] == pytest.approx((ndcg1 + ndcg2) / 2)


def test_a_peer_that_cannot_be_installed_is_one_line_and_nonzero(peers, tmp_path, capsys, monkeypatch):
    with pytest.raises(SystemExit) as info:
        peers.peer_python(tmp_path / "venv", version=(3, 13, 0))
    assert info.value.code != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "3.9-3.11" in err[0] and "3.13.0" in err[0]
    monkeypatch.setenv("PIP_NO_INDEX", "1")  # no network: pip finds nothing
    monkeypatch.setenv("PIP_FIND_LINKS", str(tmp_path))
    with pytest.raises(SystemExit) as info:
        peers.peer_python(tmp_path / "venv", version=(3, 11, 7))
    assert info.value.code != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("peers.py: error: could not install the peer")
