import hashlib
import zipfile

import pytest

from newsrec.data import download_mind, read_news, safe_extract_zip
from newsrec.errors import DataFormatError


def make_zip(path, members):
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return path


@pytest.mark.parametrize("name", ["../evil.txt", "/abs/evil.txt", "a/../../evil.txt", "C:/evil.txt"])
def test_safe_extract_rejects_escapes(tmp_path, name):
    z = make_zip(tmp_path / "a.zip", {"ok.txt": "x", name: "bad"})
    with pytest.raises(DataFormatError, match="unsafe"):
        safe_extract_zip(z, tmp_path / "out")
    assert not (tmp_path / "evil.txt").exists()
    assert not (tmp_path / "out" / "ok.txt").exists()  # checked before anything is written


def test_safe_extract_rejects_symlinks_and_corrupt(tmp_path):
    z = tmp_path / "l.zip"
    with zipfile.ZipFile(z, "w") as zf:
        info = zipfile.ZipInfo("link")
        info.external_attr = 0o120777 << 16
        zf.writestr(info, "/etc/passwd")
    with pytest.raises(DataFormatError, match="symbolic link"):
        safe_extract_zip(z, tmp_path / "out")
    (tmp_path / "bad.zip").write_bytes(b"not a zip")
    with pytest.raises(DataFormatError, match="not a valid zip"):
        safe_extract_zip(tmp_path / "bad.zip", tmp_path / "out")


NEWS = "N1\ta\tb\tTitle\tAbs\tu\t[]\t[]\n"
BEH = "1\tU1\t11/11/2019 9:05:58 AM\t\tN1-1\n"


def test_download_from_local_mirror(tmp_path):
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    make_zip(mirror / "MINDdemo_train.zip", {"news.tsv": NEWS, "behaviors.tsv": BEH, "entity_embedding.vec": ""})
    make_zip(mirror / "MINDdemo_dev.zip", {"MINDdemo_dev/news.tsv": NEWS, "MINDdemo_dev/behaviors.tsv": BEH})
    sha = hashlib.sha256((mirror / "MINDdemo_train.zip").read_bytes()).hexdigest()
    root = download_mind(
        tmp_path / "root", "demo", base_url=mirror.as_uri(), sha256={"train": sha}, show_progress=False
    )
    assert read_news(root / "train" / "news.tsv").num_rows == 1
    assert read_news(root / "dev" / "news.tsv").num_rows == 1  # wrapped folder lifted
    assert (root / "downloads" / "MINDdemo_train.zip").exists()
    # already there: nothing is fetched again, even from a dead URL
    download_mind(tmp_path / "root", "demo", base_url="file:///nonexistent", show_progress=False)


def test_download_errors(tmp_path):
    with pytest.raises(ValueError, match="variant must be one of"):
        download_mind(tmp_path, "huge")
    with pytest.raises(ValueError, match="no split"):
        download_mind(tmp_path, "small", splits=["test"])
    with pytest.raises(OSError, match="download them by hand"):
        download_mind(tmp_path / "r", "small", base_url=(tmp_path / "none").as_uri(), show_progress=False)
    mirror = tmp_path / "m"
    mirror.mkdir()
    make_zip(mirror / "MINDsmall_train.zip", {"news.tsv": NEWS, "behaviors.tsv": BEH})
    with pytest.raises(DataFormatError, match="checksum"):
        download_mind(
            tmp_path / "r2",
            "small",
            splits=["train"],
            base_url=mirror.as_uri(),
            sha256={"train": "0" * 64},
            show_progress=False,
        )


def test_the_three_download_helpers_share_one_signature(tmp_path):
    import inspect

    from newsrec.data import download_adressa, download_ebnerd

    shared = ["root", "variant", "base_url", "url", "sha256", "force", "show_progress"]
    for helper in (download_mind, download_ebnerd, download_adressa):
        params = list(inspect.signature(helper).parameters)
        assert [p for p in params if p in shared] == shared, helper.__name__
    # the old keyword names still work for one release, with a warning
    mirror = tmp_path / "m"
    mirror.mkdir()
    make_zip(mirror / "MINDsmall_train.zip", {"news.tsv": NEWS, "behaviors.tsv": BEH})
    with pytest.warns(DeprecationWarning, match="url= and variant="):
        root = download_mind(
            tmp_path / "old", size="small", splits=["train"], urls={"train": (mirror / "MINDsmall_train.zip").as_uri()},
            show_progress=False,
        )  # fmt: skip
    assert len(read_news(root / "train" / "news.tsv")) == 1
