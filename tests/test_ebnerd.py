"""EB-NeRD conversion on parquet fixtures written in the published schema, and multilingual
(xMIND-style) news text."""

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from _ebnerd import behaviors_table, history_table, small_ebnerd, write_split

from newsrec.cli import main
from newsrec.data import MINDDataModule
from newsrec.data.ebnerd import convert_ebnerd
from newsrec.data.mind import read_behaviors, read_news
from newsrec.data.text import tokenize
from newsrec.errors import DataFormatError

CONFIGS = Path(__file__).parents[1] / "configs"


def lines(path):
    return Path(path).read_text(encoding="utf-8").splitlines()


@pytest.mark.parametrize("list_type", [pa.list_, pa.large_list])
def test_conversion_is_exact_on_a_hand_checkable_download(tmp_path, list_type):
    src = small_ebnerd(tmp_path / "src", list_type=list_type)
    report = convert_ebnerd(src, tmp_path / "out", show_progress=False)
    out = tmp_path / "out"
    assert lines(out / "train" / "behaviors.tsv") == [
        "1\t7\t5/20/2023 7:00:00 AM\t103 104\t101-0 102-1 103-0",
        "2\t7\t5/20/2023 7:05:00 AM\t103 104\t104-0 105-1",
        "3\t8\t5/20/2023 7:09:00 AM\t101\t106-0 107-0 108-1 101-1",  # two clicks: two labels 1
        "4\t9\t5/20/2023 7:12:00 AM\t\t102-0 103-1",  # an empty history row
    ]
    # dev: the validation history, as of the split (user 10 has no history row)
    assert lines(out / "dev" / "behaviors.tsv") == [
        "11\t7\t5/21/2023 7:00:00 AM\t103 104 102 105\t106-0 107-1",
        "12\t10\t5/21/2023 8:00:00 AM\t\t101-0 108-1",
    ]
    # the test set has no clicks: no labels (read as -1), so predict writes ranks for all
    assert lines(out / "test" / "behaviors.tsv") == ["21\t8\t5/22/2023 7:00:00 AM\t101 108\t102 104 106"]
    assert report.impressions == {"train": 4, "dev": 2, "test": 1}
    assert report.users_without_history == {"train": 0, "dev": 1, "test": 0}
    assert report.texts_cleaned == 1
    news = read_news(out / "train" / "news.tsv")
    assert news.num_rows == 8
    row = {k: news.column(k)[1].as_py() for k in news.column_names}
    assert row["news_id"] == "102" and row["category"] == "sport" and row["subcategory"] == "11"
    assert row["title"] == "Brøndby vinder i Ålborg" and row["abstract"] == "underrubrik 102"
    assert news.column("title")[5].as_py() == "Kvinde død efter ulykke på motorvej"  # the tab became a space
    behaviors = read_behaviors(out / "train" / "behaviors.tsv")
    assert behaviors.num_rows == 4
    # the converted root is a newsrec root: the corpus maps EB-NeRD's entities
    dm = MINDDataModule(str(out), word_vectors=None, test_split="test")
    corpus = dm.corpus
    assert len(corpus.entity_vocab) == 2 + 2  # pad, unk, EB:Kasper Hjulmand, EB:DBU
    assert (dm.behaviors("test").labels == -1).all()


def test_danish_letters_survive_the_tokenizer():
    assert tokenize("Brøndby vinder i Ålborg: Æbler og ål") == ["brøndby", "vinder", "i", "ålborg", "æbler", "og", "ål"]


def test_multilingual_titles_are_read_and_tokenised(tmp_path, tiny_world):
    """xMIND ships MIND's files with translated news: CJK, Cyrillic and Arabic titles read,
    tokenise into words and build a corpus whose vocabulary holds them."""
    import shutil

    root = tmp_path / "xmind"
    shutil.copytree(tiny_world, root, ignore=shutil.ignore_patterns("processed"))
    titles = ["东京 股市 大幅 上涨", "Москва принимает новый закон", "الرئيس يزور المدينة اليوم"]
    path = root / "train" / "news.tsv"
    rows = [line.split("\t") for line in lines(path)]
    for row, title in zip(rows, titles):
        row[3] = title
    path.write_text("\n".join("\t".join(r) for r in rows) + "\n", encoding="utf-8")
    news = read_news(path)
    assert [news.column("title")[i].as_py() for i in range(3)] == titles
    assert tokenize(titles[1]) == ["москва", "принимает", "новый", "закон"]
    assert tokenize(titles[2]) == ["الرئيس", "يزور", "المدينة", "اليوم"]
    assert tokenize(titles[0]) == ["东京", "股市", "大幅", "上涨"]
    corpus = MINDDataModule(str(root), word_vectors=None).corpus
    for word in ("东京", "москва", "الرئيس"):
        assert word in corpus.vocab.stoi
    row = corpus.news_index[rows[1][0]]
    assert corpus.vocab.encode(["москва"])[0] in corpus.arrays["title"][row]


def _replace(src: Path, split: str, behaviors=None, history=None):
    if behaviors is not None:
        pq.write_table(behaviors, src / split / "behaviors.parquet", row_group_size=3)
    if history is not None:
        pq.write_table(history, src / split / "history.parquet")


def test_bad_input_is_one_error_naming_file_row_group_and_offset(tmp_path):
    src = small_ebnerd(tmp_path / "src")
    out = tmp_path / "out"
    good = pq.read_table(src / "train" / "behaviors.parquet")
    # a clicked id that is not in the in-view list: row group 1, offset 0 (impression 4)
    bad = behaviors_table(
        [
            (1, 7, 0, [101, 102, 103], [102]),
            (2, 7, 5, [104, 105], [105]),
            (3, 8, 9, [106], [106]),
            (4, 9, 12, [102, 103], [104]),
        ]
    )
    _replace(src, "train", bad)
    where = r"behaviors.parquet: row group 1, offset 0 \(impression_id 4\): "
    with pytest.raises(DataFormatError, match=where + "clicked article id 104 is not in its article_ids_inview"):
        convert_ebnerd(src, out, show_progress=False)
    # an unknown in-view id: an error by default, dropped (and counted) with missing="drop"
    unknown = behaviors_table([(1, 7, 0, [101, 999], [101]), (2, 7, 5, [998], [998])])
    _replace(src, "train", unknown)
    with pytest.raises(DataFormatError, match=r"row group 0, offset 0 \(impression_id 1\): in-view article id 999"):
        convert_ebnerd(src, out, show_progress=False)
    report = convert_ebnerd(src, out, missing="drop", show_progress=False)
    assert report.dropped_ids["train"] == 2
    assert report.impressions["train"] == 1  # impression 2 had no known candidate left
    assert lines(out / "train" / "behaviors.tsv") == ["1\t7\t5/20/2023 7:00:00 AM\t103 104\t101-1"]
    # unknown ids in a history
    _replace(src, "train", good, history_table({7: [103, 555], 8: [101]}))
    with pytest.raises(DataFormatError, match=r"history.parquet: row 0 \(user_id 7\): article id 555"):
        convert_ebnerd(src, out, show_progress=False)
    _replace(src, "train", history=history_table({7: [103, 104], 8: [101]}))
    # a missing column, a column of the wrong type
    _replace(src, "train", good.drop(["article_ids_inview"]))
    with pytest.raises(DataFormatError, match="has no column 'article_ids_inview'"):
        convert_ebnerd(src, out, show_progress=False)
    wrong = good.set_column(good.schema.get_field_index("impression_time"), "impression_time", pa.array(["x"] * 4))
    _replace(src, "train", wrong)
    with pytest.raises(DataFormatError, match="column 'impression_time' is string, expected a timestamp column"):
        convert_ebnerd(src, out, show_progress=False)
    _replace(src, "train", good)
    (src / "articles.parquet").write_bytes(b"not parquet")
    with pytest.raises(DataFormatError, match="is not a readable parquet file"):
        convert_ebnerd(src, out, show_progress=False)


def test_history_read_in_chunks_writes_the_same_files(tmp_path, monkeypatch):
    """Histories are read a chunk of rows at a time and kept in file order: with chunks of two
    rows, users out of order and an unknown id in a later chunk, the files, the drop count and
    the error's row number are those of one chunk."""
    import newsrec.data.ebnerd as ebnerd

    src = small_ebnerd(tmp_path / "src")
    # users out of id order in the file; user 9's row (the fourth) holds an unknown id
    history = history_table({8: [101], 7: [103, 104], 10: [102], 9: [105, 556, 106]})
    order = pa.array([1, 0, 3, 2])  # history_table sorts by user id: rows 8, 7, 10, 9
    _replace(src, "train", history=history.take(order))
    runs = {}
    for chunk in (100_000, 2):
        monkeypatch.setattr(ebnerd, "_HISTORY_CHUNK_ROWS", chunk)
        with pytest.raises(DataFormatError, match=r"history.parquet: row 3 \(user_id 9\): article id 556"):
            convert_ebnerd(src, tmp_path / f"err{chunk}", show_progress=False)
        report = convert_ebnerd(src, tmp_path / f"out{chunk}", missing="drop", show_progress=False)
        runs[chunk] = (lines(tmp_path / f"out{chunk}" / "train" / "behaviors.tsv"), report.dropped_ids["train"])
    assert runs[2] == runs[100_000]
    behaviors, dropped = runs[2]
    assert dropped == 1
    assert [line.split("\t")[3] for line in behaviors] == ["103 104", "103 104", "101", "105 106"]


def test_convert_command_then_fit_and_predict_round_trip(tmp_path, capsys):
    src = small_ebnerd(tmp_path / "src")
    # a few more impressions, so that training has batches
    rows = [(100 + k, 7 + k % 3, k, [101 + k % 8, 101 + (k + 3) % 8], [101 + k % 8]) for k in range(40)]
    write_split(src, "train", behaviors_table(rows), history_table({7: [103, 104], 8: [101], 9: [102]}))
    out = tmp_path / "out"
    assert main(["convert", "ebnerd", str(src), str(out)]) == 0
    printed = capsys.readouterr().out
    assert "train: 40 impressions" in printed and "test: 1 impressions" in printed
    for config in ("nrms_demo.yaml", "glory_demo.yaml", "fum_demo.yaml"):
        args = ["fit", "--config", str(CONFIGS / config), "--data.root", str(out), "--data.synthetic", "null"]
        args += ["--data.word_vectors", "null", "--trainer.fast_dev_run", "true"]
        args += ["--trainer.default_root_dir", str(tmp_path / config), "--trainer.enable_progress_bar", "false"]
        assert main(args) == 0, capsys.readouterr().err
    # predict on the unlabelled test split: the MIND file and the EB-NeRD submission
    import zipfile

    args = ["predict", "--config", str(CONFIGS / "nrms_demo.yaml"), "--data.root", str(out), "--data.synthetic", "null"]
    args += ["--data.word_vectors", "null", "--data.predict_split", "test", "--trainer.enable_progress_bar", "false"]
    args += ["--trainer.default_root_dir", str(tmp_path / "predict"), "--prediction_file", str(tmp_path / "p.zip")]
    args += ["--submission_file", str(tmp_path / "predictions.zip")]
    assert main(args) == 0, capsys.readouterr().err
    with zipfile.ZipFile(tmp_path / "predictions.zip") as zf:
        assert zf.namelist() == ["predictions.txt"]
        (line,) = zf.read("predictions.txt").decode().splitlines()
    iid, ranks = line.split(" ", 1)
    assert iid == "21" and sorted(int(r) for r in ranks.strip("[]").split(",")) == [1, 2, 3]
    with zipfile.ZipFile(tmp_path / "p.zip") as zf:
        assert zf.namelist() == ["prediction.txt"] and zf.read("prediction.txt").decode().splitlines() == [line]
    assert main(["convert", "ebnerd", str(tmp_path / "nowhere"), str(out)]) == 1
    assert "does not exist" in capsys.readouterr().err


def test_download_helpers_fetch_from_a_file_mirror_and_check_checksums(tmp_path):
    import hashlib
    import shutil
    import zipfile

    from newsrec.data import download_adressa, download_ebnerd

    mirror = tmp_path / "mirror"
    mirror.mkdir()
    src = small_ebnerd(tmp_path / "ebnerd_demo")
    with zipfile.ZipFile(mirror / "ebnerd_demo.zip", "w") as zf:  # the archive wraps one folder
        for f in src.rglob("*.parquet"):
            zf.write(f, f"ebnerd_demo/{f.relative_to(src)}")
    got = download_ebnerd(tmp_path / "data", "demo", base_url=mirror.as_uri(), show_progress=False)
    assert got == tmp_path / "data" / "ebnerd_demo" and (got / "train" / "behaviors.parquet").exists()
    convert_ebnerd(got, tmp_path / "out", show_progress=False)
    with pytest.raises(DataFormatError, match="SHA-256"):
        download_ebnerd(tmp_path / "d2", "demo", base_url=mirror.as_uri(), sha256="0" * 64, show_progress=False)
    with pytest.raises(OSError, match="could not download EB-NeRD demo"):
        download_ebnerd(tmp_path / "d3", "demo", base_url=(tmp_path / "none").as_uri(), show_progress=False)
    (mirror / "one_week.tar.gz").write_bytes(b"x")
    digest = hashlib.sha256(b"x").hexdigest()
    path = download_adressa(tmp_path / "a", "one_week", base_url=mirror.as_uri(), sha256=digest, show_progress=False)
    assert path.read_bytes() == b"x"
    shutil.rmtree(tmp_path / "a")
    with pytest.raises(DataFormatError, match="SHA-256"):
        download_adressa(tmp_path / "a", base_url=mirror.as_uri(), sha256="1" * 64, show_progress=False)


def _column(table: pa.Table, name: str, values, type_=None) -> pa.Table:
    i = table.schema.get_field_index(name)
    return table.set_column(i, name, pa.array(values, type_ or table.schema.field(name).type))


HOSTILE = {
    # (what is changed, the error's message)
    "null impression_id": (lambda t: _column(t, "impression_id", [1, None, 3, 4]), r"offset 1 .*impression_id is null"),
    "null user_id": (lambda t: _column(t, "user_id", [7, 7, None, 9]), r"offset 2 .*user_id is null"),
    "null impression_time": (
        lambda t: _column(t, "impression_time", t.column("impression_time").to_pylist()[:3] + [None]),
        r"row group 1, offset 0 .*impression_time is null",
    ),
    "null in an in-view list": (
        lambda t: _column(t, "article_ids_inview", [[101, None, 103], [104, 105], [106], [102, 103]]),
        r"row group 0, offset 0 \(impression_id 1\): a null article id in article_ids_inview",
    ),
    "null clicked list": (
        lambda t: _column(t, "article_ids_clicked", [[102], None, [101], [103]]),
        r"offset 1 \(impression_id 2\): article_ids_clicked is null",
    ),
    "in-view ids as strings": (
        lambda t: _column(t, "article_ids_inview", [["101"], ["104"], ["106"], ["102"]], pa.list_(pa.string())),
        r"column 'article_ids_inview' is list<\w+: string>, expected a list of integer article ids",
    ),
    "in-view ids as floats": (
        lambda t: _column(t, "article_ids_inview", [[101.5], [104.0], [106.0], [102.0]], pa.list_(pa.float64())),
        r"expected a list of integer article ids",
    ),
    "duplicate impression ids": (
        lambda t: _column(t, "impression_id", [1, 2, 3, 1]),
        r"impression_id 1 occurs more than once \(row groups \[0, 1\]\)",
    ),
}


@pytest.mark.parametrize("case", list(HOSTILE))
def test_hostile_behaviors_are_one_error_and_leave_no_root(tmp_path, case):
    """#37 items 7, 9-13: nulls, ids of the wrong type and duplicate impressions are one error
    naming the file, row group, offset and field; the output root is not created."""
    src = small_ebnerd(tmp_path / "src")
    change, message = HOSTILE[case]
    _replace(src, "train", change(pq.read_table(src / "train" / "behaviors.parquet")))
    with pytest.raises(DataFormatError, match=message):
        convert_ebnerd(src, tmp_path / "out", show_progress=False)
    assert not (tmp_path / "out").exists() and not list(tmp_path.glob(".out*"))


def test_nulls_in_articles_and_histories_are_one_error(tmp_path):
    """#37 items 7-8: a null article_id, a null user_id in history.parquet."""
    src = small_ebnerd(tmp_path / "src")
    history = pq.read_table(src / "train" / "history.parquet")
    _replace(src, "train", history=_column(history, "user_id", [7, None, 9]))
    with pytest.raises(DataFormatError, match=r"history.parquet: row 1: user_id is null"):
        convert_ebnerd(src, tmp_path / "out", show_progress=False)
    _replace(src, "train", history=history)
    articles = pq.read_table(src / "articles.parquet")
    pq.write_table(_column(articles, "article_id", [101, 102, None, 104, 105, 106, 107, 108]), src / "articles.parquet")
    with pytest.raises(DataFormatError, match=r"articles.parquet: row 2: article_id is null"):
        convert_ebnerd(src, tmp_path / "out", show_progress=False)


def test_a_failed_conversion_never_mixes_an_old_root_with_a_new_one(tmp_path):
    """#37 item 13: a failure in validation/ leaves an existing root exactly as it was (no new
    train/ beside the old dev/), and nothing half-written appears under the root's name."""
    src = small_ebnerd(tmp_path / "src")
    out = tmp_path / "out"
    convert_ebnerd(src, out, show_progress=False)
    before = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    _replace(src, "train", behaviors_table([(1, 7, 0, [101, 102], [102])]))  # a new, different train split
    validation = pq.read_table(src / "validation" / "behaviors.parquet")
    _replace(src, "validation", _column(validation, "user_id", [7, None]))
    with pytest.raises(DataFormatError):
        convert_ebnerd(src, out, show_progress=False)
    after = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    assert after == before and not list(tmp_path.glob(".out*"))
