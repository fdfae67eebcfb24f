"""Hostile input, corrupt caches, concurrent preparation, NaN losses, killed and resumed runs."""

import multiprocessing as mp
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from newsrec.core.cache import CacheCorruptWarning
from newsrec.data import read_behaviors, read_news, read_vectors
from newsrec.data.prepare import load_behaviors, load_corpus
from newsrec.errors import DataFormatError

FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def check_reader(tmp_path, reader, data: bytes):
    """A reader either parses or raises DataFormatError naming the file — nothing else."""
    path = tmp_path / "input.tsv"
    path.write_bytes(data)
    try:
        reader(path)
    except DataFormatError as e:
        assert str(path) in str(e) and e.problem


@FAST
@given(data=st.binary(max_size=400))
def test_random_bytes_news(tmp_path, data):
    check_reader(tmp_path, read_news, data)


@FAST
@given(data=st.binary(max_size=400))
def test_random_bytes_behaviors(tmp_path, data):
    check_reader(tmp_path, read_behaviors, data)


@FAST
@given(data=st.binary(max_size=300))
def test_random_bytes_vectors(tmp_path, data):
    check_reader(tmp_path, read_vectors, data)


text = st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\t\r\n"), max_size=30)
news_id = st.from_regex(r"N[0-9]{1,6}", fullmatch=True)


@FAST
@given(rows=st.lists(st.tuples(text, text, text, text), min_size=1, max_size=8), crlf=st.booleans(), bom=st.booleans())
def test_valid_news_round_trips(tmp_path, rows, crlf, bom):
    """Titles with quotes, any unicode, CRLF line endings and a BOM are read back exactly."""
    lines = [f"N{i}\t{c}\t{s}\t{t}\t{a}\tu\t[]\t[]" for i, (c, s, t, a) in enumerate(rows)]
    data = (("\r\n" if crlf else "\n").join(lines) + "\n").encode()
    path = tmp_path / "news.tsv"
    path.write_bytes((b"\xef\xbb\xbf" if bom else b"") + data)
    t = read_news(path)
    assert t.column("title").to_pylist() == [r[2] for r in rows]
    assert t.column("abstract").to_pylist() == [r[3] for r in rows]


@FAST
@given(
    imps=st.lists(
        st.tuples(st.lists(news_id, max_size=5), st.lists(st.tuples(news_id, st.booleans()), min_size=1, max_size=6)),
        min_size=1,
        max_size=6,
    )
)
def test_valid_behaviors_round_trip(tmp_path, imps):
    lines = [
        f"{i}\tU{i}\t11/15/2019 8:55:22 AM\t{' '.join(h)}\t{' '.join(f'{n}-{int(y)}' for n, y in c)}"
        for i, (h, c) in enumerate(imps)
    ]
    path = tmp_path / "behaviors.tsv"
    path.write_text("\n".join(lines) + "\n")
    t = read_behaviors(path)
    assert t.column("history").to_pylist() == [h for h, _ in imps]
    assert t.column("candidates").to_pylist() == [[n for n, _ in c] for _, c in imps]
    assert t.column("labels").to_pylist() == [[int(y) for _, y in c] for _, c in imps]


@pytest.mark.parametrize("token", ["N1-2", "N1", "-1", "N1-", "N1-x", "N1--1"])
def test_bad_impression_tokens(tmp_path, token):
    path = tmp_path / "b.tsv"
    path.write_text(f"1\tU1\t11/15/2019 8:55:22 AM\t\tN2-1 {token}\n")
    with pytest.raises(DataFormatError) as e:
        read_behaviors(path)
    assert e.value.line == 1


def test_corrupt_cache_is_detected_and_rebuilt(tiny_world, tmp_path):
    root = tmp_path / "w"
    shutil.copytree(tiny_world, root, ignore=shutil.ignore_patterns("processed"))
    corpus = load_corpus(root)
    train = load_behaviors(root, "train", corpus)
    entry = next((root / "processed").glob("behaviors-train-*"))
    f = entry / "history.npy"
    raw = bytearray(f.read_bytes())
    raw[-1] ^= 0xFF  # flip bits: same size, wrong checksum
    f.write_bytes(bytes(raw))
    with pytest.warns(CacheCorruptWarning, match="checksum"):
        again = load_behaviors(root, "train", corpus)
    np.testing.assert_array_equal(again.history, train.history)
    (entry / "candidates.npy").write_bytes(b"truncated")
    with pytest.warns(CacheCorruptWarning, match="truncated"):
        again = load_behaviors(root, "train", corpus)
    np.testing.assert_array_equal(again.candidates, train.candidates)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a sound cache loads silently
        load_behaviors(root, "train", corpus)


@pytest.mark.parametrize("edit", ["vocabulary word", "null", "news id"])
def test_an_edited_or_corrupt_manifest_is_detected_and_rebuilt(tiny_world, tmp_path, edit):
    import json

    root = tmp_path / "w"
    shutil.copytree(tiny_world, root, ignore=shutil.ignore_patterns("processed"))
    corpus = load_corpus(root)
    manifest = next((root / "processed").glob("corpus-*")) / "manifest.json"
    text = manifest.read_text()
    if edit == "null":
        text = "null"
    else:
        m = json.loads(text)
        blob = json.dumps(m["meta"])
        word = corpus.vocab.itos[5] if edit == "vocabulary word" else corpus.news_ids[3]
        assert f'"{word}"' in blob
        m["meta"] = json.loads(blob.replace(f'"{word}"', f'"{word}x"', 1))
        text = json.dumps(m)
    manifest.write_text(text)
    with pytest.warns(CacheCorruptWarning, match="manifest"):
        again = load_corpus(root)
    assert again.vocab.itos == corpus.vocab.itos and again.news_ids == corpus.news_ids


def _prepare(root: str) -> list[str]:
    return load_corpus(root).news_ids


def test_concurrent_preparation_never_corrupts(tiny_world, tmp_path):
    root = tmp_path / "w"
    shutil.copytree(tiny_world, root, ignore=shutil.ignore_patterns("processed"))
    with mp.get_context("spawn").Pool(3) as pool:
        results = pool.map(_prepare, [str(root)] * 3)
    assert results[0] == results[1] == results[2]
    entries = list((root / "processed").glob("corpus-*"))
    assert len(entries) == 1 and not list((root / "processed").glob(".*.lock"))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert load_corpus(root).news_ids == results[0]


def test_non_finite_loss_stops_with_step_and_impressions(tiny_world):
    from newsrec.data import MINDDataModule
    from newsrec.models import NRMS

    dm = MINDDataModule(str(tiny_world), batch_size=4)
    model = NRMS(num_words=dm.num_words, word_dim=50, num_heads=2, head_dim=8, attention_hidden=8)
    dm.configure(model.data_requirements())
    batch = next(iter(dm.train_dataloader()))
    with torch.no_grad():
        model.user_encoder.pooling.proj.weight.fill_(float("nan"))
    with pytest.raises(FloatingPointError, match="impression ids") as e:
        model.training_step(batch, 0)
    assert str(batch["impression_ids"][0].item()) in str(e.value) and "step 0" in str(e.value)


def test_degenerate_news_give_finite_scores(tiny_world):
    """Empty titles, news without entities and empty histories: finite scores in every model."""
    from newsrec.data import MINDDataModule
    from newsrec.models import FUM, GLORY, NRMS

    dm = MINDDataModule(str(tiny_world), eval_batch_size=4)
    size = dict(word_dim=50, num_heads=2, head_dim=8, attention_hidden=8)
    models = [
        NRMS(num_words=dm.num_words, **size),
        GLORY(num_words=dm.num_words, num_entity_ids=dm.num_entity_ids, entity_heads=2, entity_head_dim=4, **size),
        FUM(
            num_words=dm.num_words,
            num_entity_ids=dm.num_entity_ids,
            num_categories=dm.num_categories,
            num_subcategories=dm.num_subcategories,
            category_dim=4,
            entity_heads=2,
            entity_head_dim=4,
            fine_dim=6,
            **size,
        ),
    ]
    for model in models:
        model.eval()
        dm.configure(model.data_requirements())
        batch = dm.val_dataloader().dataset[np.arange(4)]
        for k, v in batch["news"].items():
            if k != "entity_neighbors":
                v.zero_()  # every news: no title, no abstract, no entity, no category
        batch["history_mask"][0] = False
        with torch.no_grad():
            assert torch.isfinite(model(batch)).all(), type(model).__name__


@pytest.mark.slow
def test_killed_run_resumes_to_the_same_model(tiny_world, tmp_path):
    worker = str(Path(__file__).parent / "_resume_worker.py")

    def run(*a):
        return subprocess.run(
            [sys.executable, worker, str(tiny_world), *a],
            capture_output=True,
            text=True,
            timeout=600,
        )

    full = run(str(tmp_path / "full"), "3")
    assert full.returncode == 0, full.stderr[-2000:]
    from newsrec.data import MINDDataModule

    per_epoch = len(MINDDataModule(str(tiny_world), batch_size=8, seed=3).train_dataloader())
    die_after = per_epoch + per_epoch // 2 + 1  # in the middle of the second epoch
    killed = run(str(tmp_path / "resumed"), "3", "--die-after", str(die_after))
    assert killed.returncode == -9, killed.stderr[-2000:]
    assert (tmp_path / "resumed" / "last.ckpt").exists() and not (tmp_path / "resumed" / "final.pt").exists()
    resumed = run(str(tmp_path / "resumed"), "3", "--resume")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    a = torch.load(tmp_path / "full" / "final.pt", weights_only=True)
    b = torch.load(tmp_path / "resumed" / "final.pt", weights_only=True)
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=0, msg=k)


def test_atomic_checkpoints_never_leave_a_truncated_file(tmp_path, monkeypatch):
    from newsrec.checkpoint_io import AtomicCheckpointIO

    io = AtomicCheckpointIO()
    target = tmp_path / "last.ckpt"
    io.save_checkpoint({"state_dict": {"w": torch.ones(3)}}, target)
    good = target.read_bytes()

    def crash(*args, **kwargs):
        raise OSError("disk full")

    import lightning_fabric.plugins.io.torch_io as torch_io

    monkeypatch.setattr(torch_io, "_atomic_save", crash)
    with pytest.raises(OSError, match="disk full"):
        io.save_checkpoint({"state_dict": {"w": torch.zeros(3)}}, target)
    assert target.read_bytes() == good  # the old checkpoint is intact
    assert [p.name for p in tmp_path.iterdir()] == ["last.ckpt"]  # no temporary file left
    loaded = torch.load(target, weights_only=True)
    assert torch.equal(loaded["state_dict"]["w"], torch.ones(3))
