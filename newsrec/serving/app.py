"""The HTTP service behind ``newsrec serve``: a FastAPI app over a :class:`Recommender`
(extra ``[serve]``: fastapi + uvicorn).

Endpoints (JSON): ``GET /health``, ``POST /recommend``, ``POST /recommend/batch``,
``POST /news``, and with a click store ``POST /clicks`` and ``GET /graph/neighbors``; OpenAPI
docs at ``/docs``. Bad input is a 4xx JSON error ``{"detail": ...}``
that says what is wrong, never a traceback; a click store that fails (read-only, damaged, a
database server gone) is a 503 whose detail names the store and what to do.
"""

# no ``from __future__ import annotations``: FastAPI reads the request models' annotations at runtime
from dataclasses import dataclass
from typing import Any

from newsrec.serving.recommender import Recommender
from newsrec.serving.store import StoreError

__all__ = ["ServiceLimits", "create_app"]


@dataclass
class ServiceLimits:
    """What one request may ask for (each breach is a 4xx that names the limit).

    Attributes:
        max_k: longest list a request may ask for.
        max_history: longest history accepted (only the model's ``history_length`` most recent
            clicks count).
        max_candidates: most candidates per request.
        max_batch: most requests in one ``/recommend/batch``.
        max_news: most articles in one ``POST /news``.
        max_clicks: most clicks in one ``POST /clicks``.
        max_body_bytes: largest request body (413 beyond).
    """

    max_k: int = 1000
    max_history: int = 1000
    max_candidates: int = 10_000
    max_batch: int = 256
    max_news: int = 10_000
    max_clicks: int = 100_000
    max_body_bytes: int = 8 * 1024 * 1024


def create_app(recommender: Recommender, limits: ServiceLimits | None = None):
    """The FastAPI app serving ``recommender`` within ``limits``."""
    try:
        from fastapi import FastAPI, HTTPException, Query, Request
        from fastapi.exceptions import RequestValidationError
        from fastapi.responses import JSONResponse
        from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, StrictStr
    except ImportError:
        raise ImportError("the service needs fastapi and uvicorn: pip install 'newsrec-pyg[serve]'") from None

    limits = limits or ServiceLimits()
    rec = recommender

    class RecommendRequest(BaseModel):
        model_config = ConfigDict(extra="forbid")
        history: list[StrictStr] | None = Field(None, description="news ids the reader clicked, oldest first")
        user_id: StrictStr | None = Field(
            None, description="instead of a history: the user's history in the data and their stored clicks"
        )
        k: StrictInt = Field(10, description="how many news to return")
        candidates: list[StrictStr] | None = Field(None, description="rank only these ids (default: every news)")
        exclude_history: StrictBool = Field(True, description="never return a news of the history")

    class Item(BaseModel):
        news_id: str
        score: float

    class RecommendResponse(BaseModel):
        items: list[Item]
        unknown_history: list[str]

    class News(BaseModel):
        model_config = ConfigDict(extra="forbid")
        news_id: StrictStr
        title: StrictStr
        category: StrictStr | None = None
        subcategory: StrictStr | None = None
        abstract: StrictStr | None = None
        title_entities: StrictStr | None = None
        abstract_entities: StrictStr | None = None

    class NewsRequest(BaseModel):
        model_config = ConfigDict(extra="forbid")
        news: list[News]

    class NewsResponse(BaseModel):
        added: int
        updated: int

    class Click(BaseModel):
        model_config = ConfigDict(extra="forbid")
        user_id: StrictStr
        news_id: StrictStr
        time: StrictStr = Field(description="ISO 8601, e.g. 2019-11-15T08:00:00Z (no zone: UTC)")

    class ClicksRequest(BaseModel):
        model_config = ConfigDict(extra="forbid")
        clicks: list[Click]

    class ClicksResponse(BaseModel):
        accepted: int

    class Neighbor(BaseModel):
        news_id: str
        weight: float

    class Health(BaseModel):
        status: str
        model: str
        news: int
        search: str
        recall: float | None
        search_reason: str
        clicks: int | None
        graph_edges: int | None
        stale_entities: int | None

    app = FastAPI(
        title="newsrec",
        description="Top-k news for reading histories, from a trained newsrec model.",
        version="1",
    )

    @app.middleware("http")
    async def limit_body(request: Request, call_next):
        size = request.headers.get("content-length")
        if size is not None and (not size.isdigit() or int(size) > limits.max_body_bytes):
            return JSONResponse(
                {"detail": f"request body over {limits.max_body_bytes} bytes (ServiceLimits.max_body_bytes)"}, 413
            )
        if size is None and request.method == "POST":  # chunked: count what arrives
            body = b""
            async for chunk in request.stream():
                body += chunk
                if len(body) > limits.max_body_bytes:
                    return JSONResponse({"detail": f"request body over {limits.max_body_bytes} bytes"}, 413)
            request._body = body
        return await call_next(request)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError):
        problems = []
        for e in exc.errors():
            where = ".".join(str(x) for x in e.get("loc", ()) if x != "body") or "body"
            problems.append(f"{where}: {e.get('msg', 'invalid')}")
        return JSONResponse({"detail": "; ".join(problems[:10]) or "invalid request"}, 422)

    @app.exception_handler(StoreError)
    async def store_failed(request: Request, exc: StoreError):  # the database, not the request: retry later
        return JSONResponse({"detail": str(exc)}, 503, headers={"Retry-After": "30"})

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception):  # an internal error: JSON, no traceback
        return JSONResponse({"detail": f"internal error ({type(exc).__name__})"}, 500)

    def check(req: RecommendRequest, where: str = "") -> None:
        if not 1 <= req.k <= limits.max_k:
            raise HTTPException(422, f"{where}k must be between 1 and {limits.max_k}, got {req.k}")
        if (req.history is None) == (req.user_id is None):
            raise HTTPException(422, f"{where}give exactly one of history and user_id")
        if req.history is not None and not req.history:
            raise HTTPException(422, f"{where}history is empty: give at least one clicked news id")
        if req.user_id is not None and not req.user_id.strip():
            raise HTTPException(422, f"{where}user_id is empty")
        if req.history is not None and len(req.history) > limits.max_history:
            raise HTTPException(
                422, f"{where}history has {len(req.history)} ids, over the limit of {limits.max_history}"
            )
        if req.candidates is not None:
            if not req.candidates:
                raise HTTPException(422, f"{where}candidates is empty: omit it to rank every news")
            if len(req.candidates) > limits.max_candidates:
                raise HTTPException(
                    422, f"{where}{len(req.candidates)} candidates, over the limit of {limits.max_candidates}"
                )

    def run(reqs: list[RecommendRequest]) -> list[dict[str, Any]]:
        for i, r in enumerate(reqs):
            check(r, f"request {i}: " if len(reqs) > 1 else "")
        out = []
        # one batch per (k, exclude_history) group: the recommender batches the user vectors
        groups: dict[tuple[int, bool], list[int]] = {}
        for i, r in enumerate(reqs):
            groups.setdefault((r.k, r.exclude_history), []).append(i)
        results: dict[int, Any] = {}
        for (k, exclude), idx in groups.items():
            try:
                got = rec.recommend_many(
                    [reqs[i].history for i in idx],
                    k=k,
                    candidates=[reqs[i].candidates for i in idx],
                    exclude_history=exclude,
                    user_ids=[reqs[i].user_id for i in idx],
                )
            except KeyError as e:
                raise HTTPException(422, str(e.args[0]) if e.args else "unknown news id") from None
            except (ValueError, TypeError) as e:
                raise HTTPException(422, str(e)) from None
            results.update(zip(idx, got, strict=True))
        for i in range(len(reqs)):
            r = results[i]
            out.append({"items": [{"news_id": n, "score": s} for n, s in r], "unknown_history": r.unknown_history})
        return out

    @app.get("/health", response_model=Health)
    def health() -> dict:
        """Liveness, the model class, the number of news in the index, and the search that
        serves (``exact`` | ``faiss`` | ``forward``) with its last measured recall@10."""
        info = rec.search_info
        return {"status": "ok", "model": type(rec.model).__name__, "news": rec.num_news, "search": info["search"],
                "recall": info["recall"], "search_reason": info["reason"], **rec.click_info}  # fmt: skip

    @app.post("/recommend", response_model=RecommendResponse)
    def recommend(req: RecommendRequest) -> dict:
        """The top-``k`` news for one history."""
        return run([req])[0]

    @app.post("/recommend/batch", response_model=list[RecommendResponse])
    def recommend_batch(reqs: list[RecommendRequest]) -> list[dict]:
        """Many ``/recommend`` requests at once (answers in the same order)."""
        if not reqs:
            raise HTTPException(422, "the batch is empty")
        if len(reqs) > limits.max_batch:
            raise HTTPException(422, f"{len(reqs)} requests in one batch, over the limit of {limits.max_batch}")
        return run(reqs)

    @app.post("/news", response_model=NewsResponse)
    def add_news(req: NewsRequest) -> dict:
        """Add or update articles (MIND's news.tsv fields), rankable at once."""
        if not req.news:
            raise HTTPException(422, "news is empty")
        if len(req.news) > limits.max_news:
            raise HTTPException(422, f"{len(req.news)} articles, over the limit of {limits.max_news}")
        try:
            return rec.add_news([n.model_dump(exclude_none=True) for n in req.news])
        except KeyError as e:
            raise HTTPException(422, str(e.args[0]) if e.args else "unknown field") from None
        except (ValueError, TypeError) as e:  # DataFormatError (malformed entity JSON) included
            raise HTTPException(422, str(e)) from None

    @app.post("/clicks", response_model=ClicksResponse)
    def add_clicks(req: ClicksRequest) -> dict:
        """Store clicks (durably, before the answer) and move the live click graph: a request that
        starts after this answer sees them. One bad click refuses the whole list; nothing is stored."""
        if rec.store is None:
            raise HTTPException(404, "this service has no click store: start newsrec serve with --store")
        if not req.clicks:
            raise HTTPException(422, "clicks is empty")
        if len(req.clicks) > limits.max_clicks:
            raise HTTPException(422, f"{len(req.clicks)} clicks, over the limit of {limits.max_clicks}")
        try:
            return rec.add_clicks([c.model_dump() for c in req.clicks])
        except KeyError as e:
            raise HTTPException(422, str(e.args[0]) if e.args else "unknown news id") from None
        except (ValueError, TypeError) as e:
            raise HTTPException(422, str(e)) from None

    @app.get("/graph/neighbors", response_model=list[Neighbor])
    def graph_neighbors(
        news_id: str = Query(..., description="a news id of the index"),
        k: int = Query(10, ge=1, le=limits.max_k),
        direction: str = Query("out", pattern="^(out|in)$", description="out: read next; in: read before"),
    ) -> list[dict]:
        """A news' ``k`` heaviest live click transitions, heaviest first."""
        if rec.live is None:
            raise HTTPException(404, "this service has no live click graph: start newsrec serve with --store")
        try:
            got = rec.graph_neighbors(news_id, k, direction)
        except KeyError as e:
            raise HTTPException(404, str(e.args[0])) from None
        except (ValueError, TypeError) as e:
            raise HTTPException(422, str(e)) from None
        return [{"news_id": n, "weight": w} for n, w in got]

    return app
