import os

import pytest
import torch

os.environ.setdefault("NEWSREC_PROGRESS", "0")
torch.set_num_threads(1)


@pytest.fixture(scope="session")
def tiny_world(tmp_path_factory):
    """A tiny synthetic MIND world shared by the tests (read-only: copy before changing)."""
    from newsrec.data import generate_mind

    return generate_mind(tmp_path_factory.mktemp("world") / "mind", num_users=120, num_news=200, seed=3)


@pytest.fixture(scope="session")
def postgres_server():
    """The DSN of a PostgreSQL server for the tests (``NEWSREC_TEST_POSTGRES``; ``.ci/postgres
    start DIR`` starts one and prints it). Without one the PostgreSQL tests are skipped, unless
    ``NEWSREC_REQUIRE_POSTGRES=1`` (CI), where that is a failure."""
    dsn = os.environ.get("NEWSREC_TEST_POSTGRES")
    if not dsn:
        why = "no PostgreSQL server: set NEWSREC_TEST_POSTGRES=postgresql://… (.ci/postgres start DIR prints one)"
        if os.environ.get("NEWSREC_REQUIRE_POSTGRES") == "1":
            pytest.fail(why)
        pytest.skip(why)
    return dsn


@pytest.fixture
def postgres_url(postgres_server):
    """A fresh database on the test server (dropped after the test)."""
    import uuid

    psycopg = pytest.importorskip("psycopg")
    name = f"newsrec_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(postgres_server, autocommit=True) as con:
        con.execute(f"CREATE DATABASE {name}")
    yield postgres_server.rsplit("/", 1)[0] + "/" + name
    with psycopg.connect(postgres_server, autocommit=True) as con:
        con.execute(f"DROP DATABASE {name} WITH (FORCE)")


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request, tmp_path):
    """A click store location of each backend: a SQLite file, a fresh PostgreSQL database."""
    if request.param == "sqlite":
        return str(tmp_path / "clicks.sqlite")
    return request.getfixturevalue("postgres_url")
