import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from newsrec.data import iter_behaviors, read_behaviors, read_news, read_vectors
from newsrec.errors import DataFormatError

NEWS = (
    'N1\tsports\tgolf\tThe "Open" is back\tAn abstract.\thttp://x/1\t[]\t[]\n'
    "N2\tnews\tus\tTitle two\t\thttp://x/2\t"
    '[{"Label": "PGA Tour", "Type": "O", "WikidataId": "Q910409", "Confidence": 1.0, '
    '"OccurrenceOffsets": [0], "SurfaceForms": ["PGA Tour"]}]\t[]\n'
)
BEHAVIORS = "1\tU1\t11/11/2019 9:05:58 AM\tN1 N2\tN1-1 N2-0\n2\tU2\t11/12/2019 1:00:00 PM\t\tN2-1 N1-0 N2-0\n"


def write(tmp_path, name, text, mode="w"):
    p = tmp_path / name
    if isinstance(text, bytes):
        p.write_bytes(text)
    else:
        p.write_text(text, encoding="utf-8", newline="")
    return p


def test_read_news_keeps_quotes_and_empty_fields(tmp_path):
    t = read_news(write(tmp_path, "news.tsv", NEWS))
    assert t.column_names[:4] == ["news_id", "category", "subcategory", "title"]
    assert t.column("title").to_pylist() == ['The "Open" is back', "Title two"]
    assert t.column("abstract").to_pylist() == ["An abstract.", ""]


def test_read_news_crlf_and_bom(tmp_path):
    data = b"\xef\xbb\xbf" + NEWS.replace("\n", "\r\n").encode()
    t = read_news(write(tmp_path, "news.tsv", data))
    assert t.column("news_id").to_pylist() == ["N1", "N2"]
    assert t.column("abstract_entities").to_pylist() == ["[]", "[]"]


@pytest.mark.parametrize(
    "text, line, words",
    [
        (NEWS + "N3\tonly\tthree\n", 3, "expected 8"),
        (NEWS + NEWS.splitlines()[0] + "\n", 3, "more than once"),
        (NEWS.encode() + b"N9\ta\tb\t\xff\xfe\tx\tu\t[]\t[]\n", 3, "UTF-8"),
    ],
)
def test_read_news_errors_name_file_and_line(tmp_path, text, line, words):
    p = write(tmp_path, "news.tsv", text)
    with pytest.raises(DataFormatError) as e:
        read_news(p)
    assert e.value.line == line and str(p) in str(e.value) and words in str(e.value)


def test_read_behaviors(tmp_path):
    t = read_behaviors(write(tmp_path, "behaviors.tsv", BEHAVIORS))
    assert t.column("impression_id").to_pylist() == [1, 2]
    assert t.column("history").to_pylist() == [["N1", "N2"], []]
    assert t.column("candidates").to_pylist() == [["N1", "N2"], ["N2", "N1", "N2"]]
    assert t.column("labels").to_pylist() == [[1, 0], [1, 0, 0]]
    assert t.schema.field("time").type == pa.timestamp("s")
    assert t.column("time")[1].as_py().hour == 13


def test_read_behaviors_test_split_has_no_labels(tmp_path):
    t = read_behaviors(write(tmp_path, "b.tsv", "7\tU1\t11/15/2019 8:55:22 AM\tN1\tN1 N2\n"))
    assert t.column("candidates").to_pylist() == [["N1", "N2"]]
    assert t.column("labels").to_pylist() == [None]


@pytest.mark.parametrize(
    "row, words",
    [
        ("3\tU3\t11/12/2019 1:00:00 PM\t\tN1-x N2-0", "N1-x"),
        ("3\tU3\t11/12/2019 1:00:00 PM\t\tN1-2", "0 or 1"),
        ("3\tU3\t11/12/2019 1:00:00 PM\t\tN1-1-1", "N1-1-1"),
        ("3\tU3\t11/12/2019 1:00:00 PM\t\t-1", "-1"),
        ("3\tU3\t11/12/2019 1:00:00 PM\t\tN1", "no label"),
        ("3\tU3\t11/12/2019 1:00:00 PM\t\t", "no candidates"),
        ("x3\tU3\t11/12/2019 1:00:00 PM\t\tN1-1", "not an integer"),
        ("3\tU3\t2019-11-12 13:00\t\tN1-1", "does not match"),
        ("3\tU3\t11/12/2019 1:00:00 PM\tN1-1", "expected 5"),
        ("3\t\t11/12/2019 1:00:00 PM\t\tN1-1", "empty user"),
        # impossible dates, which strptime would roll over (11/31 -> 12/01, 02/30 -> 03/02)
        ("3\tU3\t11/31/2019 8:55:22 AM\t\tN1-1", "not a real date"),
        ("3\tU3\t02/30/2019 8:55:22 AM\t\tN1-1", "not a real date"),
        ("99999999999999999999\tU3\t11/12/2019 1:00:00 PM\t\tN1-1", "64-bit"),
    ],
)
def test_read_behaviors_errors(tmp_path, row, words):
    p = write(tmp_path, "behaviors.tsv", BEHAVIORS + row + "\n")
    with pytest.raises(DataFormatError) as e:
        read_behaviors(p)
    assert e.value.line == 3, str(e.value)
    assert words in str(e.value) and "behaviors.tsv" in str(e.value)


def test_streaming_blocks_equal_one_read_and_keep_line_numbers(tmp_path):
    rows = [f"{i}\tU{i % 7}\t11/1{i % 9}/2019 9:0{i % 10}:00 AM\tN1 N{i}\tN{i}-1 N{i + 1}-0" for i in range(1, 400)]
    p = write(tmp_path, "b.tsv", "\n".join(rows) + "\n")
    whole = read_behaviors(p)
    blocks = list(iter_behaviors(p, block_size=1 << 12))
    assert len(blocks) > 3
    assert pa.concat_tables(blocks).equals(whole)
    rows[350] = rows[350].replace("-1", "-z")
    p2 = write(tmp_path, "b2.tsv", "\n".join(rows) + "\n")
    with pytest.raises(DataFormatError) as e:
        list(iter_behaviors(p2, block_size=1 << 12))
    assert e.value.line == 351


def test_empty_files(tmp_path):
    assert read_news(write(tmp_path, "n.tsv", "")).num_rows == 0
    assert read_behaviors(write(tmp_path, "b.tsv", "")).num_rows == 0


def test_read_vectors_glove_and_vec(tmp_path):
    keys, v = read_vectors(write(tmp_path, "g.txt", "the 0.1 0.2 0.3\nof -1 2 3e-1\n"))
    assert keys == ["the", "of"] and v.dtype == np.float32
    np.testing.assert_allclose(v, [[0.1, 0.2, 0.3], [-1, 2, 0.3]], rtol=1e-6)
    keys, v = read_vectors(write(tmp_path, "e.vec", "Q1\t0.5\t0.25\t\nQ2\t1\t2\t\n"))
    assert keys == ["Q1", "Q2"] and v.shape == (2, 2)
    keys, v = read_vectors(write(tmp_path, "g2.txt", "a 1 2\nb 3 4\nc 5 6\n"), keys={"c", "a"})
    assert keys == ["a", "c"] and v.tolist() == [[1, 2], [5, 6]]
    keys, v = read_vectors(write(tmp_path, "g3.txt", "b 3 4\nnew york 1 2\n"))
    assert keys == ["b", "new york"] and v.tolist() == [[3, 4], [1, 2]]


@pytest.mark.parametrize(
    "text, line, words",
    [
        ("a 1 2\nb 1 x\n", 2, "non-numeric"),
        ("a 1 2\nb 1 2 3\n", 2, "expected 2"),
        ("a 1 2\nb 1 nan\n", 2, "non-finite"),
        ("Q1\t1\t2\t\nQ2\t1\t\n", 2, "expected 2"),
    ],
)
def test_read_vectors_errors(tmp_path, text, line, words):
    with pytest.raises(DataFormatError) as e:
        read_vectors(write(tmp_path, "v.txt", text))
    assert e.value.line == line and words in str(e.value)


def test_synthetic_world_is_readable(tiny_world):
    news = read_news(tiny_world / "train" / "news.tsv")
    dev_news = read_news(tiny_world / "dev" / "news.tsv")
    assert dev_news.num_rows > news.num_rows  # fresh news appear only in dev
    b = read_behaviors(tiny_world / "train" / "behaviors.tsv")
    assert b.num_rows > 0 and b.column("labels").null_count == 0
    keys, v = read_vectors(tiny_world / "train" / "entity_embedding.vec")
    assert v.shape[1] == 100


def test_real_dates_at_month_ends_are_kept(tmp_path):
    rows = "1\tU1\t02/29/2020 11:59:59 PM\t\tN1-1\n2\tU2\t12/31/2019 12:00:00 AM\t\tN1-0\n"
    t = read_behaviors(write(tmp_path, "behaviors.tsv", rows))
    assert [str(x) for x in t.column("time").to_pylist()] == ["2020-02-29 23:59:59", "2019-12-31 00:00:00"]


def test_labelled_then_unlabelled_rows_across_blocks_are_an_error(tmp_path):
    def row(i, labelled):
        return f"{i}\tU{i}\t11/12/2019 9:00:00 AM\tN1\t" + (f"N{i}-1 N{i + 1}-0" if labelled else f"N{i} N{i + 1}")

    every = write(tmp_path, "all.tsv", "\n".join(row(i, True) for i in range(1, 600)) + "\n")
    first_block = next(iter_behaviors(every, block_size=1 << 12)).num_rows  # rows of block 1
    # unlabelled rows from the first line of the second block on: no block is mixed
    lines = [row(i, i <= first_block) for i in range(1, 600)]
    p = write(tmp_path, "b.tsv", "\n".join(lines) + "\n")
    with pytest.raises(DataFormatError) as e:
        list(iter_behaviors(p, block_size=1 << 12))
    assert "have no labels while earlier lines do" in str(e.value) and "b.tsv" in str(e.value)
    assert e.value.line == first_block + 1


@pytest.mark.parametrize("bad_line", [2, 50, 300])
def test_invalid_utf8_in_vectors_names_its_own_line(tmp_path, bad_line):
    lines = [f"Q{i}\t0.1\t0.2\t".encode() for i in range(1, 400)]
    lines[bad_line - 1] = b"Q\xff\xfe\t0.1\t0.2\t"
    p = tmp_path / "e.vec"
    p.write_bytes(b"\n".join(lines) + b"\n")
    with pytest.raises(DataFormatError) as e:
        read_vectors(p)
    assert e.value.line == bad_line and "UTF-8" in str(e.value)


def test_entity_vector_files_of_different_widths_name_both(tmp_path):
    from newsrec.data.text import load_entity_vectors

    (tmp_path / "a.vec").write_text("Q1\t0.1\t0.2\t\n")
    (tmp_path / "b.vec").write_text("Q2\t0.1\t0.2\t0.3\t\n")
    with pytest.raises(DataFormatError) as e:
        load_entity_vectors({"Q1": 2, "Q2": 3}, [tmp_path / "a.vec", tmp_path / "b.vec"])
    assert "b.vec" in str(e.value) and "a.vec" in str(e.value) and "3 wide" in str(e.value)


def test_converted_text_fields_round_trip_through_the_news_reader(tmp_path):
    from newsrec.data.mind import tsv_field, write_tsv_lines

    title, changed = tsv_field(pa.array(["a\tb", None, "c\r\n\nd", "æøå 東京"]))
    assert title.to_pylist() == ["a b", "", "c d", "æøå 東京"] and changed == 2
    n = len(title)
    ids = pa.array([f"N{i}" for i in range(n)])
    empty = pa.array([""] * n)
    lists = pa.array(["[]"] * n)
    with open(tmp_path / "news.tsv", "w", encoding="utf-8") as f:
        write_tsv_lines(f, [ids, empty, empty, title, empty, empty, lists, lists])
    assert read_news(tmp_path / "news.tsv").column("title").to_pylist() == title.to_pylist()
    with open(tmp_path / "none.tsv", "w", encoding="utf-8") as f:
        write_tsv_lines(f, [pa.array([], pa.string())] * 8)
    assert (tmp_path / "none.tsv").read_text() == ""


def test_format_times_writes_minds_own_form_and_reads_back():
    """MIND writes ``11/15/2019 8:55:22 AM`` (no leading zeros); noon, midnight and a leap day."""
    import calendar

    from newsrec.data.mind import TIME_FORMAT, format_times

    cases = {
        "11/15/2019 8:55:22 AM": (2019, 11, 15, 8, 55, 22),
        "1/2/2017 12:00:00 AM": (2017, 1, 2, 0, 0, 0),
        "2/29/2020 12:05:09 PM": (2020, 2, 29, 12, 5, 9),
        "12/31/2023 11:59:59 PM": (2023, 12, 31, 23, 59, 59),
    }
    seconds = [calendar.timegm((*t, 0, 0, 0)) for t in cases.values()]
    assert format_times(seconds).to_pylist() == list(cases)
    back = pc.strptime(format_times(seconds), format=TIME_FORMAT, unit="s")
    assert pc.cast(back, pa.int64()).to_pylist() == seconds
