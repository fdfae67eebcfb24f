import zipfile
from pathlib import Path

import numpy as np
import pytest
import yaml

from newsrec.cli import main


def tiny_nrms_config(tmp_path, root, data=None, **trainer) -> str:
    """A config file for a tiny NRMS on ``root`` (``data`` / ``trainer`` entries override)."""
    config = {
        "model": {
            "class_path": "newsrec.models.NRMS",
            "init_args": {"word_dim": 50, "num_heads": 2, "head_dim": 8, "attention_hidden": 8},
        },
        "data": {"root": str(root), **(data or {})},
        "trainer": {"enable_progress_bar": False, "default_root_dir": str(tmp_path), **trainer},
    }
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump(config))
    return str(cfg)


def test_synth_prepare_baselines(tmp_path, capsys):
    root = tmp_path / "w"
    assert (
        main(["synth", "--out", str(root), "--users", "60", "--news", "80", "--knobs", '{"transition_strength": 0}'])
        == 0
    )
    assert main(["prepare", str(root)]) == 0
    assert main(["baselines", str(root)]) == 0
    out = capsys.readouterr().out
    assert all(name in out for name in ("popularity", "transition", "item_knn", "oracle"))


def test_bad_input_is_one_line_and_nonzero(tmp_path, capsys):
    root = tmp_path / "bad"
    (root / "train").mkdir(parents=True)
    (root / "train" / "news.tsv").write_text("N1\tonly\n")
    (root / "train" / "behaviors.tsv").write_text("")
    assert main(["prepare", str(root)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "news.tsv, line 1" in err[0]
    from newsrec.errors import DataFormatError

    with pytest.raises(DataFormatError):
        main(["prepare", str(root), "--verbose"])


@pytest.mark.parametrize("model", ["NRMS", "GLORY", "GLORY_TRANSITIONS", "FUM"])
def test_fit_and_predict_through_the_cli(tiny_world, tmp_path, model, capsys):
    init = {"word_dim": 50, "num_heads": 2, "head_dim": 8, "attention_hidden": 8}
    if model.startswith("GLORY"):
        init |= {"entity_heads": 2, "entity_head_dim": 4, "num_graph_neighbors": 3}
    if model == "GLORY_TRANSITIONS":  # the beyond-the-paper variant of configs/glory_transitions_demo.yaml
        model, init = "GLORY", init | {"graph_score": True, "user_recency": True, "graph_score_clicks": 10}
    if model == "FUM":
        init |= {"category_dim": 8, "entity_heads": 2, "entity_head_dim": 4, "fine_dim": 6}
    config = {
        "seed_everything": 0,
        "model": {"class_path": f"newsrec.models.{model}", "init_args": init},
        "data": {"root": str(tiny_world), "batch_size": 8, "eval_batch_size": 32},
        "trainer": {
            "max_epochs": 1,
            "limit_train_batches": 3,
            "accelerator": "cpu",
            "logger": False,
            "enable_progress_bar": False,
            "default_root_dir": str(tmp_path / "run"),
        },
    }
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump(config))
    assert main(["fit", "--config", str(cfg)]) == 0
    out = capsys.readouterr().out
    assert "validation metrics" in out
    assert "\npopularity" in out and "\noracle" in out  # the model's figures beside the references
    ckpts = sorted((tmp_path / "run").rglob("last.ckpt"))
    assert ckpts
    pred = tmp_path / "prediction.zip"
    assert main(["predict", "--config", str(cfg), "--ckpt_path", str(ckpts[0]), "--prediction_file", str(pred)]) == 0
    with zipfile.ZipFile(pred) as zf:
        lines = zf.read("prediction.txt").decode().splitlines()
    ids = [int(line.split()[0]) for line in lines]
    assert ids == sorted(ids) and len(ids) > 0
    assert all(line.split()[1].startswith("[") for line in lines)


CONFIGS = sorted((Path(__file__).parents[1] / "configs").glob("*.yaml"))


@pytest.mark.parametrize("path", CONFIGS, ids=[p.name for p in CONFIGS])
def test_every_config_parses(path, capsys):
    with pytest.raises(SystemExit) as e:
        main(["fit", "--config", str(path), "--print_config"])
    assert e.value.code in (0, None)
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed["model"]["class_path"].startswith("newsrec.models.")


def test_fit_on_bad_data_is_one_line(tmp_path, capsys):
    root = tmp_path / "bad"
    (root / "train").mkdir(parents=True)
    (root / "train" / "news.tsv").write_text("N1\ta\tb\tT\tA\tu\t[]\t[]\n")
    (root / "train" / "behaviors.tsv").write_text("1\tU1\t11/15/2019 8:55:22 AM\t\tN1-7\n")
    (root / "dev").mkdir()
    for f in ("news.tsv", "behaviors.tsv"):
        (root / "dev" / f).write_text((root / "train" / f).read_text())
    cfg = tmp_path / "c.yaml"
    cfg.write_text(
        yaml.safe_dump(
            {"model": {"class_path": "newsrec.models.NRMS"}, "data": {"root": str(root)}, "trainer": {"logger": False}}
        )
    )
    assert main(["fit", "--config", str(cfg)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("newsrec: error:") and "behaviors.tsv, line 1" in err[-1] and "0 or 1" in err[-1]


def test_missing_vector_files_are_named_in_prepare_and_fit(tiny_world, tmp_path, capsys):
    import shutil
    import warnings

    from newsrec.data import MINDDataModule

    root = tmp_path / "w"
    shutil.copytree(tiny_world, root, ignore=shutil.ignore_patterns("processed"))
    (root / "word_vectors.txt").unlink()
    for split in ("train", "dev"):
        (root / split / "entity_embedding.vec").unlink()
    assert main(["prepare", str(root)]) == 0
    out = capsys.readouterr().out
    assert "word_vectors.txt: word embeddings start random" in out and "entity embeddings start random" in out
    dm = MINDDataModule(str(root))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert dm.word_vectors() is None and dm.entity_vectors() is None
    notes = [str(w.message) for w in caught if "start random" in str(w.message)]
    assert len(notes) == 2  # once per datamodule, both files named


def test_test_says_which_split_it_evaluates(tiny_world, tmp_path, capsys):
    cfg = tiny_nrms_config(tmp_path, tiny_world, {"eval_batch_size": 64}, logger=False)
    assert main(["test", "--config", cfg]) == 0
    out = capsys.readouterr().out
    assert "evaluating the 'dev' split" in out and "has no test/ split" in out


@pytest.mark.parametrize("empty", ["train/news.tsv", "dev/behaviors.tsv"])
def test_an_empty_split_file_is_one_clear_error(tiny_world, tmp_path, capsys, empty):
    import shutil

    root = tmp_path / "w"
    shutil.copytree(tiny_world, root, ignore=shutil.ignore_patterns("processed"))
    (root / empty).write_text("\ufeff\n")
    assert main(["prepare", str(root)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and empty.split("/")[1] in err[0] and "is empty" in err[0]


def test_a_malicious_checkpoint_is_refused_in_one_line(tiny_world, tmp_path, capsys, monkeypatch):
    import os

    import torch

    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    ckpt = tmp_path / "evil.ckpt"
    torch.save({"state_dict": {}, "payload": Evil()}, ckpt)
    cfg = tiny_nrms_config(tmp_path, tiny_world, logger=False)
    monkeypatch.delenv("NEWSREC_DEBUG", raising=False)
    assert main(["test", "--config", str(cfg), "--ckpt_path", str(ckpt)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "weights_only" in err[0] and "trust" in err[0]
    assert not marker.exists()  # no pickled code ran
    import pickle

    with pytest.raises(pickle.UnpicklingError):
        main(["test", "--config", str(cfg), "--ckpt_path", str(ckpt), "--debug"])


def test_default_output_has_no_lightning_or_jsonargparse_noise(tiny_world, tmp_path, caplog, monkeypatch):
    import logging
    import warnings

    monkeypatch.delenv("NEWSREC_DEBUG", raising=False)
    cfg = tiny_nrms_config(
        tmp_path, tiny_world, {"batch_size": 8}, max_epochs=1, limit_train_batches=2, limit_val_batches=2
    )
    caplog.set_level(logging.INFO)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert main(["fit", "--config", cfg]) == 0
    said = [str(w.message) for w in caught] + [r.getMessage() for r in caplog.records]
    for noise in ("Unable to serialize", "GPU available", "Tip", "LeafSpec", "tensorboardX", "log_every_n_steps"):
        assert not any(noise in s for s in said), (noise, said)


def test_drop_counts_are_restated_whenever_the_cache_is_used(tiny_world, tmp_path, capsys):
    import shutil

    from newsrec.data.prepare import load_behaviors, load_corpus

    root = tmp_path / "w"
    shutil.copytree(tiny_world, root, ignore=shutil.ignore_patterns("processed"))
    dev = root / "dev" / "behaviors.tsv"
    lines = dev.read_text().splitlines()
    f = lines[0].split("\t")
    f[4] = "N99999-1"  # an impression whose only candidate is unknown: dropped
    lines[0] = "\t".join(f)
    dev.write_text("\n".join(lines) + "\n")
    corpus = load_corpus(root)
    with pytest.warns(UserWarning, match="dropped 1 unknown"):
        load_behaviors(root, "dev", corpus, missing="drop")  # builds the cache
    with pytest.warns(UserWarning, match="dev: 1 news id occurrences unknown"):
        load_behaviors(root, "dev", corpus, missing="drop")  # from the cache: said again
    assert main(["prepare", str(root), "--missing", "drop"]) == 0
    assert "users whose impressions were all dropped" in capsys.readouterr().out


def test_fit_writes_each_validation_once_to_metrics_csv(tiny_world, tmp_path):
    import csv

    logger = {"class_path": "pytorch_lightning.loggers.CSVLogger", "init_args": {"save_dir": str(tmp_path)}}
    cfg = tiny_nrms_config(
        tmp_path,
        tiny_world,
        {"batch_size": 8},
        max_epochs=2,
        limit_train_batches=2,
        limit_val_batches=2,
        num_sanity_val_steps=0,
        logger=logger,
    )
    assert main(["fit", "--config", str(cfg)]) == 0
    (metrics,) = tmp_path.rglob("metrics.csv")
    rows = [r for r in csv.DictReader(metrics.open()) if r.get("val/auc")]
    assert len(rows) == 2  # one per epoch; the closing validation of the best checkpoint adds none


@pytest.mark.parametrize("encoder", ["ggnn", "gcn", "gat", "sage", "gin"])
def test_every_graph_encoder_fits_from_the_glory_demo_config(tiny_world, tmp_path, encoder, capsys):
    """`newsrec fit --config configs/glory_demo.yaml --model.init_args.graph_encoder X
    --trainer.fast_dev_run true` for every encoder (on the tests' tiny world)."""
    config = Path(__file__).parents[1] / "configs" / "glory_demo.yaml"
    args = ["fit", "--config", str(config), "--model.init_args.graph_encoder", encoder]
    args += ["--trainer.fast_dev_run", "true", "--data.root", str(tiny_world), "--data.synthetic", "null"]
    args += ["--trainer.default_root_dir", str(tmp_path), "--trainer.enable_progress_bar", "false"]
    assert main(args) == 0, capsys.readouterr().err


@pytest.mark.parametrize("model", ["NRMS", "GLORY", "FUM"])
def test_every_base_option_reaches_every_model_through_the_cli(tiny_world, tmp_path, model):
    """The base module's arguments are declared once (NewsRecModel) and reach every model from
    the command line; a model's own defaults apply where none is given."""
    from newsrec.data import MINDDataModule
    from newsrec.lightning_cli import NewsRecCLI
    from newsrec.models import NewsRecModel

    base = ["--model", f"newsrec.models.{model}", "--data.root", str(tiny_world)]
    base += ["--trainer.default_root_dir", str(tmp_path), "--trainer.logger", "false"]
    cli = NewsRecCLI(NewsRecModel, MINDDataModule, subclass_mode_model=True, run=False, args=base)
    defaults = {"NRMS": (1e-4, "linear"), "GLORY": (2e-4, "warmup_constant"), "FUM": (1e-4, "constant")}[model]
    assert (cli.model.lr, cli.model.lr_schedule) == defaults
    assert cli.model.gradient_check is True
    options = {
        "lr": "0.5",
        "warmup_fraction": "0.25",
        "lr_schedule": "constant",
        "weight_decay": "0.01",
        "amsgrad": "true",
        "gradient_check": "false",
        "news_batch_size": "7",
        "beyond_accuracy": "all",
        "beyond_accuracy_k": "5",
    }
    args = base + [x for k, v in options.items() for x in (f"--model.init_args.{k}", v)]
    m = NewsRecCLI(NewsRecModel, MINDDataModule, subclass_mode_model=True, run=False, args=args).model
    assert (m.lr, m.warmup_fraction, m.lr_schedule, m.weight_decay) == (0.5, 0.25, "constant", 0.01)
    assert (m.gradient_check, m.news_batch_size, m.beyond_accuracy, m.beyond_accuracy_k) == (False, 7, "all", 5)
    assert m.hparams["gradient_check"] is False  # saved, so a checkpoint restores it
    assert m.amsgrad is True and m.configure_optimizers().param_groups[0]["amsgrad"] is True  # constant: Adam


@pytest.fixture(scope="module")
def cli_checkpoints(tiny_world, tmp_path_factory):
    """Tiny NRMS and GLORY checkpoints written by `newsrec fit` on the tiny world."""
    base = tmp_path_factory.mktemp("cli-ckpts")
    out = {}
    for name, extra in (("NRMS", {}), ("GLORY", {"entity_heads": 2, "entity_head_dim": 4, "num_graph_neighbors": 3})):
        run = base / name
        run.mkdir()
        cfg = tiny_nrms_config(run, tiny_world, max_epochs=1, limit_train_batches=2, limit_val_batches=0, logger=False)
        config = yaml.safe_load(Path(cfg).read_text())
        config["model"] = {
            "class_path": f"newsrec.models.{name}",
            "init_args": {**config["model"]["init_args"], **extra},
        }
        Path(cfg).write_text(yaml.safe_dump(config))
        assert main(["fit", "--config", cfg]) == 0
        out[name] = (cfg, str(next(run.rglob("last.ckpt"))))
    return out


@pytest.mark.parametrize("damage", ["empty", "text", "truncated"])
@pytest.mark.parametrize("command", ["validate", "test", "predict"])
def test_a_broken_checkpoint_is_one_line_naming_the_file(cli_checkpoints, tmp_path, capsys, damage, command):
    """#37 item 18: empty, text and truncated checkpoints in every command: one line, the file."""
    cfg, good = cli_checkpoints["NRMS"]
    bad = tmp_path / f"{damage}.ckpt"
    whole = Path(good).read_bytes()
    bad.write_bytes({"empty": b"", "text": b"not a checkpoint\n", "truncated": whole[: len(whole) // 2]}[damage])
    capsys.readouterr()
    assert main([command, "--config", cfg, "--ckpt_path", str(bad)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(bad) in err[0] and "Traceback" not in err[0]


def test_a_checkpoint_of_another_model_or_world_is_refused(cli_checkpoints, tmp_path, capsys):
    """#37 items 19-20: a GLORY checkpoint under an NRMS config, and a checkpoint of another
    world, are one line each (not GLORY's figures under NRMS's name, not a size-mismatch
    traceback)."""
    from newsrec.data import generate_mind

    nrms_cfg, nrms_ckpt = cli_checkpoints["NRMS"]
    _, glory_ckpt = cli_checkpoints["GLORY"]
    capsys.readouterr()
    assert main(["validate", "--config", nrms_cfg, "--ckpt_path", glory_ckpt]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "holds a GLORY model, but the config builds a NRMS" in err[0]
    other = generate_mind(tmp_path / "other", num_users=40, num_news=50, seed=11)
    cfg = tiny_nrms_config(tmp_path, other, logger=False)
    assert main(["validate", "--config", cfg, "--ckpt_path", nrms_ckpt]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "does not match" in err[0] and "vocabulary" in err[0]


def test_a_plm_config_without_its_weights_is_the_useful_sentence_alone(tiny_world, tmp_path, capsys):
    """#37 item 22: no resolved namespace, no union-subtype report: the model's own sentence."""
    cfg = str(Path(__file__).parents[1] / "configs" / "nrms_plm_demo.yaml")
    args = ["fit", "--config", cfg, "--model.init_args.plm_path", "package:not_installed_pkg/model",
            "--data.root", str(tiny_world), "--data.synthetic", "null", "--trainer.fast_dev_run", "true"]  # fmt: skip
    assert main(args) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [err[0]] and "no installed Python package 'not_installed_pkg'" in err[0]
    assert "Namespace(" not in err[0] and "Union" not in err[0]


ZOO_CONFIGS = ["gru", "naml", "fastformer", "npa", "lstur", "hierec", "miner", "libfm", "deepfm", "fim", "dkn"]
ZOO_CONFIGS += ["kred", "user_as_graph", "gerl", "gnewsrec", "digat"]


@pytest.mark.parametrize("name", ZOO_CONFIGS)
def test_zoo_demo_configs_fit_test_predict_and_serve(tiny_world, tmp_path, name):
    """Each baseline of the papers' tables from its demo config: fit (a few steps, on the tiny
    world), test, a prediction file, and serving from the checkpoint."""
    config = str(Path(__file__).parents[1] / "configs" / f"{name}_demo.yaml")
    common = ["--config", config, "--data.root", str(tiny_world), "--data.synthetic", "null"]
    common += ["--data.batch_size", "8", "--trainer.logger", "false", "--trainer.enable_progress_bar", "false"]
    run = ["--trainer.default_root_dir", str(tmp_path), "--trainer.max_steps", "2", "--trainer.limit_val_batches", "2"]
    assert main(["fit", *common, *run]) == 0
    ckpt = sorted(tmp_path.rglob("last.ckpt"))[0]
    assert main(["test", *common, "--ckpt_path", str(ckpt), "--trainer.limit_test_batches", "2"]) == 0
    pred = tmp_path / "prediction.zip"
    limit = ["--trainer.limit_predict_batches", "2"]
    assert main(["predict", *common, "--ckpt_path", str(ckpt), "--prediction_file", str(pred), *limit]) == 0
    assert zipfile.ZipFile(pred).read("prediction.txt").decode().strip()
    from newsrec.serving import Recommender

    rec = Recommender.from_checkpoint(ckpt, index_dir=None)
    top = rec.recommend(rec.index.ids[1:4], k=5, user_id="U-never-seen")
    assert len(top) == 5 and all(np.isfinite(s) for _, s in top)
