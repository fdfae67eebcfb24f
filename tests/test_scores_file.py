"""Per-impression scores out (``predict --scores_file``, ``predict_scores``), sizes from the data
(``Model.from_data``, the size check of ``connect_data``), threads and quiet output."""

import logging
import shutil
import warnings

import numpy as np
import pyarrow.parquet as pq
import pytest
import pytorch_lightning as pl
import torch
import yaml

from newsrec.cli import main
from newsrec.data import MINDDataModule
from newsrec.models import NPA, NRMS
from newsrec.training import SCORE_COLUMNS, apply_threads, predict_scores, quiet_dependency_notices

TINY = {"word_dim": 50, "num_heads": 2, "head_dim": 8, "attention_hidden": 8}


def _config(tmp_path, root, **data) -> str:
    config = {
        "seed_everything": 0,
        "model": {"class_path": "newsrec.models.NRMS", "init_args": TINY},
        "data": {"root": str(root), "batch_size": 8, "eval_batch_size": 16, **data},
        "trainer": {
            "max_epochs": 1,
            "limit_train_batches": 2,
            "limit_val_batches": 2,
            "accelerator": "cpu",
            "logger": False,
            "enable_progress_bar": False,
            "default_root_dir": str(tmp_path / "run"),
        },
    }
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump(config))
    return str(cfg)


def _behaviors_rows(path):
    """(impression id, user id, news id, label or None) of every candidate, read from the TSV."""
    rows = []
    for line in path.read_text().splitlines():
        iid, user, _, _, impressions = line.split("\t")
        for token in impressions.split():
            news, _, label = token.partition("-")
            rows.append((int(iid), user, news, int(label) if label else None))
    return rows


@pytest.fixture(scope="module")
def world_with_test(tiny_world, tmp_path_factory):
    """The tiny world plus an unlabelled test/ split (dev's impressions without labels)."""
    root = tmp_path_factory.mktemp("scores") / "mind"
    shutil.copytree(tiny_world, root, ignore=shutil.ignore_patterns("processed"))
    (root / "test").mkdir()
    for name in ("news.tsv", "entity_embedding.vec"):
        if (root / "dev" / name).exists():
            shutil.copy(root / "dev" / name, root / "test" / name)
    lines = []
    for line in (root / "dev" / "behaviors.tsv").read_text().splitlines():
        *head, impressions = line.split("\t")
        lines.append("\t".join([*head, " ".join(t.split("-")[0] for t in impressions.split())]))
    (root / "test" / "behaviors.tsv").write_text("\n".join(lines) + "\n")
    return root


def test_predict_writes_every_candidates_score_label_and_ids(world_with_test, tmp_path, capsys):
    cfg = _config(tmp_path, world_with_test)
    assert main(["fit", "--config", cfg]) == 0
    ckpt = next((tmp_path / "run").rglob("last.ckpt"))
    out = tmp_path / "scores.parquet"
    args = ["predict", "--config", cfg, "--ckpt_path", str(ckpt), "--prediction_file", str(tmp_path / "p.zip")]
    assert main([*args, "--scores_file", str(out)]) == 0
    assert "wrote" in capsys.readouterr().out
    table = pq.read_table(out)
    assert table.column_names == list(SCORE_COLUMNS)
    expected = _behaviors_rows(world_with_test / "dev" / "behaviors.tsv")
    assert table.num_rows == len(expected)  # one row per candidate, file order
    got = list(zip(*(table.column(c).to_pylist() for c in ("impression_id", "user_id", "news_id", "label"))))
    assert got == expected
    positions = table.column("position").to_numpy()
    assert positions[0] == 0 and (positions >= 0).all()

    # the scores are the model's forward on the same impressions
    dm = MINDDataModule(root=world_with_test, eval_batch_size=16)
    model = NRMS.load_from_checkpoint(ckpt, map_location="cpu", weights_only=True).connect_data(dm, stage="predict")
    model.eval()
    forward = {}
    with torch.inference_mode():
        for batch in dm.predict_dataloader():
            scores = model(batch)
            for iid, s, m in zip(batch["impression_ids"].tolist(), scores, batch["candidate_mask"]):
                forward[iid] = s[m].numpy()
    ids = table.column("impression_id").to_numpy()
    file_scores = table.column("score").to_numpy()
    for iid, ref in forward.items():
        np.testing.assert_allclose(file_scores[ids == iid], ref, rtol=1e-5, atol=1e-6)

    # an unlabelled split: no label column, the same ids
    unlabelled = tmp_path / "test_scores.parquet"
    assert main([*args, "--data.predict_split", "test", "--scores_file", str(unlabelled)]) == 0
    test_table = pq.read_table(unlabelled)
    assert "label" not in test_table.column_names
    assert test_table.column("news_id").to_pylist() == table.column("news_id").to_pylist()
    assert not list(tmp_path.glob(".*.tmp"))  # written atomically: no temporary left beside


def test_predict_scores_from_python_equals_the_cli_table(tiny_world, tmp_path):
    dm = MINDDataModule(root=tiny_world, eval_batch_size=16)
    pl.seed_everything(0)
    model = NRMS.from_data(dm, **TINY)
    trainer = pl.Trainer(logger=False, enable_progress_bar=False, enable_model_summary=False, accelerator="cpu")
    table = predict_scores(model, dm, trainer=trainer, path=tmp_path / "s.parquet")
    again = pq.read_table(tmp_path / "s.parquet")
    assert again.equals(table)
    assert table.num_rows == len(_behaviors_rows(tiny_world / "dev" / "behaviors.tsv"))
    # every impression's scores as the model ranks them: one AUC per impression, ready for tests
    labels, scores, ids = (table.column(c).to_numpy() for c in ("label", "score", "impression_id"))
    assert set(np.unique(labels)) <= {0, 1} and len(np.unique(ids)) == len(dm.behaviors("dev"))


def test_from_data_gives_every_size_and_wrong_sizes_fail_in_one_line(tiny_world):
    dm = MINDDataModule(root=tiny_world)
    model = NPA.from_data(dm, word_dim=50, num_filters=16, query_dim=8, user_dim=8)
    for name in NPA.data_size_arguments:
        assert getattr(model, name) == getattr(dm, name)
    assert model.user_embedding.num_embeddings == dm.num_users
    assert model._inputs is not None  # connected
    with pytest.raises(ValueError) as info:  # the default num_users=1 would merge every user into row 0
        NPA(num_words=dm.num_words, word_dim=50, num_filters=16, query_dim=8, user_dim=8).connect_data(dm)
    message = str(info.value)
    assert "\n" not in message and "num_users=1" in message and str(dm.num_users) in message
    assert "NPA.from_data" in message
    with pytest.raises(ValueError, match="num_words=7"):
        NRMS.from_data(dm, num_words=7, **TINY)
    # a model without a user table needs no user count: the README's two sizes still connect
    NRMS(num_words=dm.num_words, **TINY).connect_data(dm)


def test_threads_are_applied_by_the_flag_and_the_environment(tiny_world, tmp_path, monkeypatch):
    before = torch.get_num_threads()
    try:
        out = tmp_path / "w"
        assert main(["--threads", "2", "synth", "--out", str(out), "--users", "30", "--news", "40"]) == 0
        assert torch.get_num_threads() == 2
        monkeypatch.setenv("NEWSREC_THREADS", "1")
        assert main(["baselines", str(out)]) == 0
        assert torch.get_num_threads() == 1
        assert main(["baselines", str(out), "--threads=3"]) == 0
        assert torch.get_num_threads() == 3
        assert apply_threads("2") == 2 and torch.get_num_threads() == 2
        with pytest.raises(ValueError, match="positive number"):
            apply_threads("zero")
        assert main(["--threads", "0", "baselines", str(out)]) == 1
    finally:
        torch.set_num_threads(before)


def test_every_command_lists_threads_and_a_config_may_set_them(tiny_world, tmp_path, capsys):
    for command in ("synth", "prepare", "baselines", "serve", "convert", "demo", "fit", "predict"):
        with pytest.raises(SystemExit):
            main([command, "--help"])
        assert "--threads" in capsys.readouterr().out, command
    before = torch.get_num_threads()
    try:
        config = yaml.safe_load(open(_config(tmp_path, tiny_world)))
        config["threads"] = 2
        (tmp_path / "c.yaml").write_text(yaml.safe_dump(config))
        torch.set_num_threads(1)
        assert main(["validate", "--config", str(tmp_path / "c.yaml")]) == 0
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


@pytest.mark.parametrize("command", ["validate", "test"])
def test_validate_and_test_refuse_the_files_only_predict_writes(tiny_world, tmp_path, capsys, command):
    cfg = _config(tmp_path, tiny_world)
    scores = tmp_path / "scores.parquet"
    assert main([command, "--config", cfg, "--scores_file", str(scores)]) == 1
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "--scores_file" in err and "newsrec predict" in err
    assert not scores.exists()
    assert main([command, "--config", cfg, "--prediction_file", str(tmp_path / "p.zip")]) == 1
    assert "--prediction_file" in capsys.readouterr().err


def test_fit_output_has_no_advertisements_or_leafspec_and_logs_samples_per_second(
    tiny_world, tmp_path, capsys, caplog, monkeypatch
):
    monkeypatch.delenv("NEWSREC_DEBUG", raising=False)
    cfg = _config(tmp_path, tiny_world)
    config = yaml.safe_load(open(cfg))
    config["trainer"]["logger"] = {"class_path": "CSVLogger", "init_args": {"save_dir": str(tmp_path / "logs")}}
    config["trainer"]["log_every_n_steps"] = 1
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(config))
    caplog.set_level(logging.INFO)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("default")
        assert main(["fit", "--config", cfg]) == 0
    io = capsys.readouterr()
    said = [io.out, io.err] + [str(w.message) for w in caught] + [r.getMessage() for r in caplog.records]
    for noise in ("litlogger", "litmodels", "LeafSpec"):
        assert not any(noise in s for s in said), noise
    metrics = next((tmp_path / "logs").rglob("metrics.csv")).read_text()
    assert "train/samples_per_s" in metrics.splitlines()[0]

    # and from Python: a plain Trainer after importing newsrec says no more (pytest resets the
    # warning filters of each test: install them again, as importing newsrec does)
    caplog.clear()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("default")
        quiet_dependency_notices()
        dm = MINDDataModule(root=tiny_world, batch_size=8)
        trainer = pl.Trainer(max_steps=1, limit_val_batches=0, enable_progress_bar=False, default_root_dir=tmp_path)
        trainer.fit(NRMS.from_data(dm, **TINY), dm)
    io = capsys.readouterr()
    said = [io.out, io.err] + [str(w.message) for w in caught] + [r.getMessage() for r in caplog.records]
    for noise in ("litlogger", "litmodels", "LeafSpec"):
        assert not any(noise in s for s in said), noise


def test_the_leaderboard_file_ranks_every_impression_as_candidate_ranks_does(tmp_path):
    from newsrec.training import candidate_ranks, write_prediction_file

    rng = np.random.default_rng(0)
    scores = [np.round(rng.random(rng.integers(1, 12)), 1) for _ in range(300)]  # ties included
    scores.append(np.zeros(0))  # an impression whose candidates were all dropped
    write_prediction_file(tmp_path / "p.txt", range(len(scores)), scores)
    lines = (tmp_path / "p.txt").read_text().splitlines()
    assert lines == [f"{i} [{','.join(map(str, candidate_ranks(s)))}]" for i, s in enumerate(scores)]
