"""The HTTP API and the page over one bundle (FastAPI, served by uvicorn).

    python -m recsys.serve [--bundle data/bundles/ml-100k] [--host 127.0.0.1] [--port 8000]

binds 127.0.0.1 (this machine only) unless told otherwise (``--port 0``: any free port; the
first line printed says which), and serves:

    GET  /recommend/{user_id}?k=10     a MovieLens user of the bundle (route known-user)
    POST /recommend                    a new user: {"liked": [ids or titles], "demographics":
                                       {"age": 30, "gender": "F", ...}, "k": 10}, either or
                                       both or neither (routes fold-in, demographics, popular)
    GET  /similar/{movie}?k=10         films rated by the same users (id or title)
    GET  /movies?search=fargo          films whose title holds the text, the most rated first,
                                       each with ``ratings``: how many users rated it
    GET  /health                       the bundle's model, run, sizes and routes
    GET  /                             the page: search films, like a few, see the list change
    GET  /docs, /openapi.json          the API's OpenAPI description

Every answer of ``/recommend`` names its route (``recsys.serve.routing``). Bad input is a 4xx
with a ``detail`` line naming the problem and the fix: 404 for a user or film the bundle lacks
(with ``suggestions``), 422 for a value out of range (``k`` from 1 to ``MAX_K``, an unknown
occupation, a malformed body). The recommender only reads its arrays, so requests share no
state. The quick routes (a known user: one FAISS search, ~0.3 ms; the film search; health) are
``async``: they run on the event loop, which saves the ~0.3 ms hop to a worker thread; the ones
that may take milliseconds (co-rating PMI for similar films and for fold-in's reasons, the
closest titles of a misspelt one) are plain ``def``, run in FastAPI's thread pool, so they
never hold the loop up.
"""

from __future__ import annotations

import argparse
import math
import signal
import socket
import sys
from pathlib import Path
from typing import Annotated, Literal

import numpy as np
import pandas as pd
from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PlainValidator,
    StringConstraints,
    WithJsonSchema,
)

from recsys.cli import ArgumentParser
from recsys.demo import SIMILARITIES
from recsys.errors import NotFoundError, RecsysError
from recsys.serve.routing import ROUTES, Demographics, Recommendation, RoutedRecommender

MAX_K = 100  # films in one answer at most
PAGE = Path(__file__).with_name("page.html")

K = Annotated[int, Query(ge=1, le=MAX_K, description=f"how many films, 1 to {MAX_K}")]


def movie_reference(value: object) -> int | str:
    """A liked film as the body gives it: a MovieLens id or a title (one message for both)."""
    if isinstance(value, bool) or not isinstance(value, int | str) or (
            isinstance(value, str) and not 1 <= len(value) <= 200):  # fmt: skip
        raise ValueError("a liked film is a MovieLens id (a whole number) or a title (1 to 200 "
                         "characters)")  # fmt: skip
    return value


Movie = Annotated[int | str, PlainValidator(movie_reference), WithJsonSchema(
    {"anyOf": [{"type": "integer"}, {"type": "string", "minLength": 1, "maxLength": 200}]})]


class Reason(BaseModel):
    """The liked film a recommended film is most similar to (co-rating PMI)."""

    movie_id: int
    title: str


class Film(BaseModel):
    rank: int
    movie_id: int
    title: str = Field(description="MovieLens title, with the year in brackets")
    year: int | None
    genres: list[str]
    score: float | None = Field(
        description="what ranks the list, highest first; the answer's method says what it is "
                    "(the popular route: how many users rated the film)")  # fmt: skip
    because: Reason | None = Field(None, description="fold-in only: the liked film it is like")


class ListedFilm(BaseModel):
    """A film of the catalogue, as ``/movies`` lists it and ``/similar`` names its film."""

    movie_id: int
    title: str = Field(description="MovieLens title, with the year in brackets")
    year: int | None
    genres: list[str]
    ratings: int = Field(description="how many users rated the film (in the bundle's data)")


class Answer(BaseModel):
    route: Literal[ROUTES]  # type: ignore[valid-type]
    method: str = Field(description="how the route scored the films")
    note: str | None = Field(description="why a route was passed over, if one was")
    films: list[Film]


class Similar(BaseModel):
    movie: ListedFilm
    similarity: str
    films: list[Film]


class DemographicsIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    age: int = Field(ge=1, le=120, description="years")
    gender: Annotated[str, StringConstraints(max_length=10)] | None = Field(None, examples=["F"])
    occupation: Annotated[str, StringConstraints(max_length=50)] | None = Field(
        None, examples=["writer"])
    zip_code: Annotated[str, StringConstraints(max_length=10)] | None = Field(
        None, examples=["94110"])


class NewUser(BaseModel):
    """A user the bundle never saw: liked films (MovieLens ids or titles) and/or demographics;
    with neither, the popular list."""

    model_config = ConfigDict(extra="forbid")

    liked: list[Movie] = Field(default_factory=list, max_length=MAX_K,
                                          examples=[[100, "Heat (1995)"]])  # fmt: skip
    demographics: DemographicsIn | None = None
    k: int = Field(10, ge=1, le=MAX_K)


class Problem(BaseModel):
    detail: str
    suggestions: list[str] = []


class Health(BaseModel):
    status: Literal["ok"]
    model: str
    run_id: str | None
    users: int
    user_ids: tuple[int, int] = Field(description="the smallest and the largest")
    movies: int
    routes: list[str]
    demographics: dict[str, list[str]] | None = Field(
        description="the genders and occupations the user tower knows (two-tower bundles)")


def create_app(router: RoutedRecommender) -> FastAPI:
    """The API and the page over ``router``'s bundle."""
    demo = router.demo
    catalogue = Catalogue(router)
    app = FastAPI(title="recsys", version=str(demo.manifest.get("run_id") or "")[:8],
                  description=__doc__.split("\n\n")[0])  # fmt: skip
    page = PAGE.read_text()
    not_found = {404: {"model": Problem}, 422: {"model": Problem}}

    @app.exception_handler(RecsysError)
    def bad_input(request: Request, error: RecsysError) -> JSONResponse:
        status = 404 if isinstance(error, NotFoundError) else 422
        suggestions = getattr(error, "suggestions", [])
        return JSONResponse({"detail": str(error), "suggestions": suggestions}, status)

    @app.exception_handler(RequestValidationError)
    def invalid_request(request: Request, error: RequestValidationError) -> JSONResponse:
        """FastAPI's validation errors as one ``detail`` line: where, what is wrong."""
        problems = [f"{location(e['loc'])}: {e['msg']}" for e in error.errors()]
        return JSONResponse({"detail": "; ".join(problems), "suggestions": []}, 422)

    @app.get("/recommend/{user_id}", response_model=Answer, responses=not_found)
    async def recommend_user(user_id: int, k: K = 10):
        """Top-k films for a MovieLens user of the bundle, none they rated."""
        try:
            return catalogue.answer(router.recommend(user_id=user_id, k=k))
        except NotFoundError as error:
            raise NotFoundError(f"unknown user {user_id}: {error.suggestions[0]}", [
                f"a user of the bundle: GET /recommend/{{user_id}} ({error.suggestions[0]})",
                "someone new: POST /recommend with liked films and/or demographics",
                "films to like: GET /movies?search=TEXT"]) from None

    @app.post("/recommend", response_model=Answer, responses=not_found)
    def recommend_new_user(user: NewUser):
        """Top-k films for someone new, by the first route that fits: liked films (fold-in),
        demographics (two-tower bundles), or the popular list."""
        person = None if user.demographics is None else Demographics(
            **user.demographics.model_dump())  # fmt: skip
        return catalogue.answer(router.recommend(liked=user.liked, demographics=person,
                                                 k=user.k))  # fmt: skip

    @app.get("/similar/{movie:path}", response_model=Similar, responses=not_found)
    def similar(movie: Annotated[str, StringConstraints(max_length=200)], k: K = 10,
                similarity: Literal[SIMILARITIES] = "pmi"):  # type: ignore[valid-type]
        """Films like ``movie`` (id, title, or the start of a title): rated by the same users
        more often than chance (pmi), or closest by the model's film vectors (cosine)."""
        row = demo.movie_row(movie)
        return {"movie": catalogue.listed([row])[0], "similarity": similarity,
                "films": catalogue.films(*demo.similar_rows(row, k, similarity))}

    @app.get("/movies", response_model=list[ListedFilm])
    async def movies(search: Annotated[str, Query(max_length=200)] = "",
                     limit: Annotated[int, Query(ge=1, le=MAX_K)] = 20):  # fmt: skip
        """Films whose title holds ``search`` (case aside), the most rated first (``ratings``:
        how many users rated it); without ``search``, the most rated."""
        return catalogue.listed(router.search(search, limit)[0].tolist())

    @app.get("/health", response_model=Health)
    async def health():
        """What is served: the bundle's model and run, its users and films, and routes."""
        tower = router.tower
        return {"status": "ok", "model": router.model, "run_id": demo.manifest.get("run_id"),
                "users": len(demo.user_ids),
                "user_ids": (int(demo.user_ids.min()), int(demo.user_ids.max())),
                "movies": len(demo.items), "routes": router.routes,
                "demographics": None if tower is None else {
                    name: tower.vocabularies[name] for name in ("gender", "occupation")}}

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def index():
        return page

    return app


def location(parts: tuple) -> str:
    """``("body", "liked", 0)`` -> ``body.liked[0]``: where in the request a problem is."""
    return "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in parts).lstrip(".")


class Catalogue:
    """The bundle's films as Python lists, so that an answer is built without pandas (a table
    of ten films costs more than the search that found them)."""

    def __init__(self, router: RoutedRecommender):
        items = router.demo.items
        self.ids = items["item_id"].tolist()
        self.titles = items["title"].tolist()
        self.years = [None if pd.isna(year) else int(year) for year in items["year"]]
        self.genres = items["genres"].tolist()
        self.ratings = router.rated_by.tolist()

    def answer(self, recommendation: Recommendation) -> dict:
        """A ``Recommendation`` as the API's ``Answer``."""
        return {"route": recommendation.route, "method": recommendation.method,
                "note": recommendation.note,
                "films": self.films(recommendation.rows, recommendation.scores,
                                    recommendation.because)}  # fmt: skip

    def listed(self, rows: list[int]) -> list[dict]:
        """The API's ``ListedFilm``s of catalogue ``rows``, in their order."""
        return [{"movie_id": self.ids[row], "title": self.titles[row], "year": self.years[row],
                 "genres": self.genres[row], "ratings": self.ratings[row]}
                for row in rows]  # fmt: skip

    def films(self, rows: np.ndarray, scores: np.ndarray,
              because: np.ndarray | None = None) -> list[dict]:  # fmt: skip
        """The API's ``Film``s of catalogue ``rows`` in rank order (a score that is not a
        finite number: ``None``; ``because``: rows of liked films, -1 for none)."""
        reasons = [-1] * len(rows) if because is None else because.tolist()
        return [{"rank": rank, "movie_id": self.ids[row], "title": self.titles[row],
                 "year": self.years[row], "genres": self.genres[row],
                 "score": score if math.isfinite(score) else None,
                 "because": None if reason < 0 else {"movie_id": self.ids[reason],
                                                     "title": self.titles[reason]}}
                for rank, row, score, reason in zip(range(1, len(rows) + 1), rows.tolist(),
                                                    scores.tolist(), reasons, strict=True)]


def main(argv: list[str] | None = None) -> int:
    parser = ArgumentParser(prog="python -m recsys.serve", description=__doc__)
    parser.add_argument("--bundle", default="data/bundles/ml-100k",
                        help="a folder written by python -m recsys.export")  # fmt: skip
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to listen on (default: this machine only)")  # fmt: skip
    parser.add_argument("--port", type=port_number, default=8000, help="0: any free port")
    parser.add_argument("--log-level", default="warning",
                        choices=["critical", "error", "warning", "info", "debug"])  # fmt: skip
    args = parser.parse_args(argv)
    try:
        router = RoutedRecommender.load(args.bundle)
        listening = listen(args.host, args.port)
    except RecsysError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    import uvicorn

    host, port = listening.getsockname()[:2]
    url = f"http://{f'[{host}]' if ':' in host else host}:{port}"
    print(f"serving {args.bundle} ({router.model}, run "
          f"{str(router.demo.manifest.get('run_id'))[:8]}; routes: {', '.join(router.routes)}) "
          f"at {url}/ (API docs: {url}/docs); Ctrl-C stops", flush=True)  # fmt: skip
    config = uvicorn.Config(create_app(router), log_level=args.log_level, access_log=False)
    signal.signal(signal.SIGTERM, stop)  # uvicorn finishes its requests, then raises it again
    try:
        uvicorn.Server(config).run(sockets=[listening])
    except (KeyboardInterrupt, Stopped):  # Ctrl-C or SIGTERM, after a graceful shutdown
        pass
    print("stopped", flush=True)
    return 0


class Stopped(Exception):
    """SIGTERM arrived (a service manager, ``kill``): the server has shut down gracefully."""


def stop(signum: int, frame) -> None:
    raise Stopped


def port_number(text: str) -> int:
    """An argparse ``type``: a TCP port, 0 to 65535."""
    if not text.isdecimal() or int(text) > 65535:
        raise argparse.ArgumentTypeError(f"expected a port from 0 to 65535, got {text!r}")
    return int(text)


def listen(host: str, port: int) -> socket.socket:
    """A socket bound to ``host:port`` and listening (connections wait in its backlog until
    the server accepts them); ``RecsysError`` with the fix if the address cannot be had."""
    if not host.strip():
        raise RecsysError("--host is empty: give an address, e.g. 127.0.0.1 (this machine only) "
                          "or 0.0.0.0 (every interface)")  # fmt: skip
    try:
        family, kind, protocol, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM)[0]
        # the protocol too: asyncio turns Nagle off (TCP_NODELAY) only on sockets that say TCP,
        # and with it on, a response's second write waits ~40 ms for the client's delayed ACK
        listening = socket.socket(family, kind, protocol)
        listening.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listening.bind(address)
        listening.listen(2048)
    except OSError as error:  # in use, not an address of this machine, no such host
        reason = error.strerror or str(error)
        raise RecsysError(f"cannot listen on {host} port {port} ({reason}): choose another "
                          f"--port (0: any free one) or --host") from None
    return listening
