"""Adressa conversion on JSON-lines fixtures with the published field names."""

import json
import tarfile
from pathlib import Path

import pytest

from newsrec.cli import main
from newsrec.data import MINDDataModule
from newsrec.data.adressa import convert_adressa
from newsrec.data.mind import read_news
from newsrec.errors import DataFormatError

DAY0 = 1483228800  # 2017-01-01 00:00:00 UTC
CONFIGS = Path(__file__).parents[1] / "configs"


def event(user, article, day, hour, title=None, category="nyheter|politikk", publish_day=None, **extra):
    e = {
        "eventId": hash((user, article, day, hour)) & 0xFFFFFF,
        "userId": user,
        "time": DAY0 + day * 86400 + hour * 3600,
        "activeTime": 30,
        "city": "trondheim",
        "deviceType": "Mobile",
        "url": f"http://adressa.no/{article}",
        "sessionStart": False,
        "sessionStop": False,
    }
    if article is not None:
        p = day if publish_day is None else publish_day
        e.update(
            id=article,
            title=title if title is not None else f"Tittel {article} på norsk",
            category1=category,
            publishtime=f"2017-01-0{p + 1}T06:00:00.000Z",
        )
    e.update(extra)
    return e


def write_week(folder: Path, days: dict[int, list[dict]]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for d in range(7):
        lines = [json.dumps(e, ensure_ascii=False) for e in days.get(d, [])]
        (folder / f"2017010{d + 1}").write_text("\n".join(lines) + ("\n" if lines else ""), encoding="utf-8")
    return folder


def small_week(root: Path) -> Path:
    articles = [f"a{k}" for k in range(30)]
    days = {d: [] for d in range(7)}
    for d in range(7):
        for u in range(4):
            days[d].append(event(f"cx:u{u}", articles[(d * 4 + u) % 30], d, 8 + u))
            days[d].append(event(f"cx:u{u}", articles[(d * 4 + u + 1) % 30], d, 12 + u))
        days[d].append(event("cx:u0", None, d, 20))  # a front-page event: no article id
    days[5].append(dict(days[5][0]))  # a duplicate event
    days[5].append(event("cx:u9", "untitled", 5, 9, title=""))  # an article never given a title
    return write_week(root / "one_week", days)


def lines(path):
    return Path(path).read_text(encoding="utf-8").splitlines()


def test_conversion_follows_the_time_split_and_is_reproducible(tmp_path):
    src = small_week(tmp_path / "src")
    report = convert_adressa(src, tmp_path / "out", num_negatives=4, seed=1, show_progress=False)
    assert report.events == 7 * 9 + 2
    assert (report.without_article, report.without_title, report.duplicates) == (7, 1, 1)
    assert report.impressions == {"train": 8, "dev": 8}  # day 6 and day 7: 4 users x 2 clicks
    train = [line.split("\t") for line in lines(tmp_path / "out" / "train" / "behaviors.tsv")]
    dev = [line.split("\t") for line in lines(tmp_path / "out" / "dev" / "behaviors.tsv")]
    # history = the user's clicks before the window, oldest first (train: days 1-5; dev: days 1-6)
    u0_train = next(r for r in train if r[1] == "cx:u0")
    assert u0_train[3].split() == ["a0", "a1", "a4", "a5", "a8", "a9", "a12", "a13", "a16", "a17"]
    u0_dev = next(r for r in dev if r[1] == "cx:u0")
    assert u0_dev[3].split()[-2:] == ["a20", "a21"] and len(u0_dev[3].split()) == 12
    assert u0_train[2] == "1/6/2017 8:00:00 AM"
    for row in train + dev:
        tokens = [t.rsplit("-", 1) for t in row[4].split()]
        clicked = [a for a, label in tokens if label == "1"]
        assert len(clicked) == 1 and len(tokens) == 5  # the click + 4 distinct negatives
        assert len({a for a, _ in tokens}) == 5
        assert "untitled" not in row[4]
    # one seed, one root; another seed, other negatives
    again = tmp_path / "again"
    convert_adressa(src, again, num_negatives=4, seed=1, show_progress=False)
    assert lines(again / "train" / "behaviors.tsv") == lines(tmp_path / "out" / "train" / "behaviors.tsv")
    other = tmp_path / "other"
    convert_adressa(src, other, num_negatives=4, seed=2, show_progress=False)
    assert lines(other / "train" / "behaviors.tsv") != lines(tmp_path / "out" / "train" / "behaviors.tsv")
    news = read_news(tmp_path / "out" / "train" / "news.tsv")
    row = {k: news.column(k)[0].as_py() for k in news.column_names}
    assert (row["news_id"], row["category"], row["subcategory"]) == ("a0", "nyheter", "politikk")
    assert row["title"] == "Tittel a0 på norsk"
    assert "untitled" not in news.column("news_id").to_pylist()


def test_the_tar_gz_as_distributed_reads_like_its_folder(tmp_path):
    folder = small_week(tmp_path / "src")
    archive = tmp_path / "one_week.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(folder, arcname="one_week")
    convert_adressa(archive, tmp_path / "a", num_negatives=3, show_progress=False)
    convert_adressa(folder, tmp_path / "b", num_negatives=3, show_progress=False)
    for split in ("train", "dev"):
        assert lines(tmp_path / "a" / split / "behaviors.tsv") == lines(tmp_path / "b" / split / "behaviors.tsv")


def test_bad_input_is_one_error(tmp_path):
    src = small_week(tmp_path / "src")
    with (src / "20170103").open("a", encoding="utf-8") as f:
        f.write('{"userId": "cx:u1", "time": 1483400000, "id": "a3"\n')
    with pytest.raises(DataFormatError, match=r"20170103, line 10: not a JSON event"):
        convert_adressa(src, tmp_path / "out", show_progress=False)
    with pytest.raises(FileNotFoundError, match="neither an Adressa archive"):
        convert_adressa(tmp_path / "nowhere", tmp_path / "out", show_progress=False)
    with pytest.raises(ValueError, match="cannot hold"):
        convert_adressa(small_week(tmp_path / "ok"), tmp_path / "out", history_days=6, show_progress=False)


def test_convert_command_then_fit(tmp_path, capsys):
    src = small_week(tmp_path / "src")
    out = tmp_path / "out"
    assert main(["convert", "adressa", str(src), str(out), "--negatives", "4"]) == 0
    assert "train: 8 impressions" in capsys.readouterr().out
    assert len(MINDDataModule(str(out), word_vectors=None).behaviors("train")) == 8
    assert main(["convert", "adressa", str(src), str(tmp_path / "o2"), "--negatives", "4", "--split", "4,2,1"]) == 0
    assert "train: 16 impressions" in capsys.readouterr().out
    assert main(["convert", "adressa", str(src), str(tmp_path / "o3"), "--split", "4,2"]) == 1
    assert "--split must be three day counts" in capsys.readouterr().err
    args = ["fit", "--config", str(CONFIGS / "glory_adressa.yaml"), "--data.root", str(out)]
    args += ["--trainer.fast_dev_run", "true", "--trainer.default_root_dir", str(tmp_path / "run")]
    args += ["--trainer.enable_progress_bar", "false", "--trainer.accelerator", "cpu"]
    assert main(args) == 0, capsys.readouterr().err


@pytest.mark.parametrize(
    "bad_line, message",
    [
        ('["cx:u1", 1483400000, "a3"]', r"line 10: not a JSON object but a JSON list"),
        (
            '{"userId": "cx:u1", "time": "yesterday", "id": "a3"}',
            r"line 10: field 'time' is 'yesterday', expected a whole number",
        ),
        (b'{"userId": "cx:u1", "time": 1483400000, "id": "a3", "title": "\xff\xfe"}', r"line 10: not valid UTF-8"),
    ],
)
@pytest.mark.parametrize("packed", [False, True])
def test_a_bad_event_names_the_file_as_distributed_and_its_line(tmp_path, bad_line, message, packed):
    """#37 items 14 and 17: the file's own line number (not pyarrow's row in a block), the path
    with its one_week/ folder (inside the archive too), no traceback for invalid UTF-8."""
    folder = small_week(tmp_path / "src")
    with (folder / "20170103").open("ab") as f:
        f.write(bad_line if isinstance(bad_line, bytes) else bad_line.encode())
        f.write(b"\n")
    src = folder
    if packed:
        src = tmp_path / "one_week.tar.gz"
        with tarfile.open(src, "w:gz") as tar:
            tar.add(folder, arcname="one_week")
    where = r"one_week\.tar\.gz:one_week/20170103, " if packed else r"one_week/20170103, "
    with pytest.raises(DataFormatError, match=where + message):
        convert_adressa(src, tmp_path / "out", show_progress=False)
    assert not (tmp_path / "out").exists()


def test_events_without_a_time_or_a_user_are_dropped_and_counted(tmp_path):
    """#37 items 15-16: no numpy warning, no silent drop: every dropped event has a reason."""
    import warnings

    folder = small_week(tmp_path / "src")
    extra = [event("cx:u1", "a1", 2, 9), event(None, "a2", 2, 10), event("cx:u2", "a3", 2, 11)]
    del extra[0]["time"]
    extra[2]["time"] = None
    extra[1].pop("userId")
    with (folder / "20170103").open("a", encoding="utf-8") as f:
        f.write("\n".join(json.dumps(e) for e in extra) + "\n")
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        report = convert_adressa(folder, tmp_path / "out", show_progress=False)
    assert (report.without_time, report.without_user) == (2, 1)
    assert any("2 without a time" in line for line in report.lines())


def test_the_convert_command_says_how_many_events_had_no_time(tmp_path, capsys):
    """#48 item 8: an event without a time, or with ``"time": null``, is a counted drop that the
    command prints (exit 0), never a silent one; the rest converts."""
    folder = small_week(tmp_path / "src")
    extra = [event("cx:u1", "a1", 2, 9), event("cx:u2", "a3", 2, 11)]
    del extra[0]["time"]
    extra[1]["time"] = None
    with (folder / "20170103").open("a", encoding="utf-8") as f:
        f.write("\n".join(json.dumps(e) for e in extra) + "\n")
    assert main(["convert", "adressa", str(folder), str(tmp_path / "out"), "--negatives", "4"]) == 0
    out = capsys.readouterr().out
    assert "0 without a userId and 2 without a time dropped" in out and "train: 8 impressions" in out
