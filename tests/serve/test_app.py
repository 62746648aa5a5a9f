"""The HTTP API over real exported bundles: each endpoint through FastAPI's TestClient (httpx),
bad input of every kind answered with a 4xx and one line, and the command line serving it with
a real uvicorn on a free loopback port."""

import json
import re
import socket
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from recsys.errors import RecsysError
from recsys.serve import app as app_module
from recsys.serve.routing import Demographics, RoutedRecommender
from tests.serve.conftest import start_server, stop_server

LOAD_TEST = str(Path(__file__).parents[2] / "experiments" / "benchmark_serve.py")
NOT_A_FILM = "a liked film is a MovieLens id (a whole number) or a title (1 to 200 characters)"


@pytest.fixture(scope="module")
def routers(new_user_bundles) -> dict[str, RoutedRecommender]:
    return {model: RoutedRecommender.load(path) for model, path in new_user_bundles.items()}


@pytest.fixture(scope="module")
def clients(routers) -> dict[str, TestClient]:
    return {model: TestClient(app_module.create_app(router), raise_server_exceptions=False)
            for model, router in routers.items()}  # fmt: skip


@pytest.fixture(scope="module")
def client(clients) -> TestClient:
    return clients["als"]


def test_health_names_the_model_its_routes_and_the_users(clients, routers):
    health = clients["two_tower"].get("/health").json()
    assert health["status"] == "ok" and health["model"] == "two_tower"
    assert health["users"] == 120 and health["user_ids"] == [1, 120] and health["movies"] == 200
    assert health["routes"] == ["known-user", "fold-in", "demographics", "popular"]
    assert health["demographics"]["gender"] == ["F", "M"]
    assert health["demographics"]["occupation"] == routers["two_tower"].tower.vocabularies[
        "occupation"]
    als = clients["als"].get("/health").json()
    assert als["routes"] == ["known-user", "fold-in", "popular"] and als["demographics"] is None
    assert als["run_id"] == routers["als"].demo.manifest["run_id"]


def test_a_known_user_gets_the_models_list(client, routers):
    response = client.get("/recommend/7", params={"k": 5})
    assert response.status_code == 200
    answer = response.json()
    expected = routers["als"].recommend(user_id=7, k=5).table
    assert answer["route"] == "known-user" and answer["note"] is None
    assert [f["movie_id"] for f in answer["films"]] == expected["movie_id"].tolist()
    first = answer["films"][0]
    assert first["rank"] == 1 and first["because"] is None
    assert first["title"] == expected["title"].iloc[0] and first["year"] == expected["year"].iloc[0]
    assert first["genres"] == expected["genres"].iloc[0].split("|")
    assert first["score"] == pytest.approx(float(expected["score"].iloc[0]))
    assert len(client.get("/recommend/7").json()["films"]) == 10  # k defaults to 10


def test_an_unknown_user_is_a_404_that_says_what_to_do(client):
    response = client.get("/recommend/9999")
    assert response.status_code == 404
    problem = response.json()
    assert problem["detail"] == ("unknown user 9999: MovieLens user ids here run from 1 to 120 "
                                 "(120 users)")  # fmt: skip
    assert any("POST /recommend" in s for s in problem["suggestions"])
    assert any("GET /movies?search=" in s for s in problem["suggestions"])


@pytest.mark.parametrize("k", ["0", "-1", "101", "abc", "2.5", "", "1e3"])
def test_a_bad_k_is_a_422_naming_k(client, k):
    for path in ("/recommend/7", "/similar/100"):
        response = client.get(path, params={"k": k})
        assert response.status_code == 422
        assert response.json()["detail"].startswith("query.k: ")
    response = client.post("/recommend", json={"k": k})
    assert response.status_code == 422 and response.json()["detail"].startswith("body.k: ")


def test_liked_films_are_folded_in_and_each_film_says_why(client, routers):
    response = client.post("/recommend", json={"liked": [100, "Star Wars (1977)"], "k": 8})
    answer = response.json()
    expected = routers["als"].recommend(liked=[100, 50], k=8).table
    assert response.status_code == 200 and answer["route"] == "fold-in"
    assert [f["movie_id"] for f in answer["films"]] == expected["movie_id"].tolist()
    assert {f["because"]["title"] for f in answer["films"]} <= {"Fargo (1996)",
                                                               "Star Wars (1977)"}  # fmt: skip
    assert not {100, 50} & {f["movie_id"] for f in answer["films"]}


def test_each_route_of_a_new_user_through_the_api(clients):
    person = {"age": 25, "gender": "M", "occupation": "student", "zip_code": "55455"}
    routes = {
        ("multvae", json.dumps({"liked": [100, 3]})): "fold-in",
        ("two_tower", json.dumps({"demographics": person})): "demographics",
        ("two_tower", json.dumps({"liked": [100], "demographics": person})): "fold-in",
        ("als", json.dumps({})): "popular",
        ("als", json.dumps({"demographics": person})): "popular",
    }
    for (model, body), route in routes.items():
        response = clients[model].post("/recommend", content=body,
                                       headers={"Content-Type": "application/json"})
        assert response.status_code == 200 and response.json()["route"] == route, (model, body)
    note = clients["als"].post("/recommend", json={"demographics": person}).json()["note"]
    assert note.startswith("demographics need a two-tower bundle")
    method = clients["multvae"].post("/recommend", json={"liked": [100]}).json()["method"]
    assert method.startswith("Mult-VAE's encoder")


def test_demographics_reach_the_user_tower_as_given(clients, routers):
    person = {"age": 61, "gender": "F", "occupation": "doctor"}
    answer = clients["two_tower"].post("/recommend", json={"demographics": person, "k": 5})
    expected = routers["two_tower"].recommend(demographics=Demographics(**person), k=5).table
    assert [f["movie_id"] for f in answer.json()["films"]] == expected["movie_id"].tolist()


@pytest.mark.parametrize("body, status, detail", [
    ({"liked": [5000]}, 404, "unknown movie id 5000: ids run from 1 to 200"),
    ({"liked": ["Movie 5 (1956)"]}, 404, "unknown movie 'Movie 5 (1956)'; did you mean"),
    ({"liked": [True]}, 422, f"body.liked[0]: Value error, {NOT_A_FILM}"),
    ({"liked": [1.5]}, 422, f"body.liked[0]: Value error, {NOT_A_FILM}"),
    ({"liked": [3, ""]}, 422, f"body.liked[1]: Value error, {NOT_A_FILM}"),
    ({"liked": list(range(1, 102))}, 422, "body.liked: List should have at most 100 items"),
    ({"liked": "Fargo"}, 422, "body.liked: Input should be a valid list"),
    ({"likes": [100]}, 422, "body.likes: Extra inputs are not permitted"),
    ({"demographics": {"age": 0}}, 422, "body.demographics.age: Input should be greater"),
    ({"demographics": {"gender": "F"}}, 422, "body.demographics.age: Field required"),
    ({"demographics": {"age": 30, "occupation": "astronaut"}}, 422,
     "occupation 'astronaut' is not one the model knows: use one of artist, doctor"),
    ({"demographics": {"age": 30, "height": 180}}, 422, "body.demographics.height: Extra"),
    ([1, 2], 422, "body: Input should be a valid dictionary"),
])  # fmt: skip
def test_bad_bodies_are_4xx_with_one_line(clients, body, status, detail):
    response = clients["two_tower"].post("/recommend", json=body)
    assert response.status_code == status, response.text
    assert response.json()["detail"].startswith(detail) and "\n" not in response.json()["detail"]


@pytest.mark.parametrize("content, detail", [
    ("{", "body[1]: JSON decode error"), ("", "body: Field required"),
    ("null", "body: Input should be a valid dictionary"),
])  # fmt: skip
def test_a_body_that_is_not_json_is_a_422(client, content, detail):
    response = client.post("/recommend", content=content,
                           headers={"Content-Type": "application/json"})
    assert response.status_code == 422 and response.json()["detail"].startswith(detail)


def test_similar_films_by_title_or_id(client, routers):
    response = client.get("/similar/Fargo", params={"k": 5})
    assert response.status_code == 200
    similar = response.json()
    assert similar["movie"]["title"] == "Fargo (1996)" and similar["similarity"] == "pmi"
    fargo = routers["als"].demo.movie_row(100)
    assert similar["movie"]["ratings"] == routers["als"].rated_by[fargo]
    expected = routers["als"].demo.similar_items(100, k=5)["movie_id"].tolist()
    assert [f["movie_id"] for f in similar["films"]] == expected
    cosine = client.get("/similar/100", params={"similarity": "cosine", "k": 3}).json()
    assert [f["movie_id"] for f in cosine["films"]] == routers["als"].demo.similar_items(
        100, k=3, similarity="cosine")["movie_id"].tolist()
    assert client.get("/similar/100", params={"similarity": "dot"}).status_code == 422


@pytest.mark.parametrize("movie, detail", [
    ("Movie 5 (1956)", "unknown movie 'Movie 5 (1956)'; did you mean"),
    ("5000", "unknown movie id 5000"), ("Face/Off (1997)", "unknown movie 'Face/Off (1997)'"),
    ("²", "unknown movie '²'"), ("%00", "unknown movie"),
])  # fmt: skip
def test_an_unknown_film_is_a_404_with_suggestions(client, movie, detail):
    response = client.get(f"/similar/{movie}")
    assert response.status_code == 404 and response.json()["detail"].startswith(detail)
    assert isinstance(response.json()["suggestions"], list)


def test_movies_are_searched_by_title(client, routers):
    found = client.get("/movies", params={"search": "fargo"}).json()
    assert [f["title"] for f in found] == ["Fargo (1996)"] and found[0]["year"] == 1996
    fargo = routers["als"].demo.movie_row(100)
    assert set(found[0]) == {"movie_id", "title", "year", "genres", "ratings"}
    assert found[0]["ratings"] == routers["als"].rated_by[fargo]
    assert len(client.get("/movies", params={"search": "movie", "limit": 3}).json()) == 3
    assert client.get("/movies", params={"search": "no such film"}).json() == []
    assert client.get("/movies", params={"limit": 0}).status_code == 422
    assert client.get("/movies", params={"search": "x" * 201}).status_code == 422


def test_the_most_rated_list_and_the_popular_route_say_they_count_ratings(client):
    listed = client.get("/movies").json()
    popular = client.post("/recommend", json={"k": 20}).json()
    assert popular["route"] == "popular" and "how many users rated" in popular["method"]
    assert [f["movie_id"] for f in listed] == [f["movie_id"] for f in popular["films"]]
    assert [f["ratings"] for f in listed] == [f["score"] for f in popular["films"]]
    schemas = client.get("/openapi.json").json()["components"]["schemas"]
    assert "how many users rated" in schemas["ListedFilm"]["properties"]["ratings"]["description"]
    assert "popular route" in schemas["Film"]["properties"]["score"]["description"]


def test_openapi_describes_every_endpoint_and_the_page_is_served(client):
    paths = client.get("/openapi.json").json()["paths"]
    assert set(paths) == {"/recommend/{user_id}", "/recommend", "/similar/{movie}", "/movies",
                          "/health"}  # fmt: skip
    assert "404" in paths["/recommend/{user_id}"]["get"]["responses"]
    assert client.get("/docs").status_code == 200
    page = client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert 'id="search"' in page.text and 'id="recommendations"' in page.text
    assert '<link rel="icon" href="data:image/svg+xml,' in page.text  # no /favicon.ico 404
    assert page.text.count("Nothing liked yet") == 1  # the empty box's one text, JS reuses it


@pytest.mark.parametrize("method, path", [
    ("GET", "/recommend/abc"), ("GET", "/recommend/1.5"), ("GET", "/recommend/-3"),
    ("GET", "/recommend/" + "9" * 40), ("GET", "/recommend/"), ("GET", "/similar/"),
    ("GET", "/recommend/7?k=" + "9" * 40), ("DELETE", "/recommend/7"), ("PUT", "/recommend"),
    ("GET", "/nowhere"), ("GET", "/similar/" + "a" * 201), ("GET", "/similar/%20%20"),
    ("POST", "/movies"), ("GET", "/movies?limit=-1"), ("GET", "/similar/100?k=0"),
])  # fmt: skip
def test_hostile_requests_get_a_4xx(client, method, path):
    response = client.request(method, path)
    assert 400 <= response.status_code < 500, (path, response.status_code, response.text)


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=st.text(max_size=60), number=st.integers(min_value=-(2**70), max_value=2**70))
def test_no_input_makes_the_service_answer_5xx(client, text, number):
    responses = [
        client.get("/movies", params={"search": text}),
        client.get(f"/similar/{quote(text, safe='')}"),
        client.get(f"/recommend/{number}", params={"k": text}),
        client.post("/recommend", json={"liked": [text, number],
                                        "demographics": {"age": number, "gender": text,
                                                         "occupation": text, "zip_code": text}}),
    ]  # fmt: skip
    assert all(r.status_code < 500 for r in responses), [(r.url, r.text) for r in responses]


def test_the_command_line_serves_on_loopback_with_a_real_uvicorn(served):
    assert served.startswith("http://127.0.0.1:")
    with httpx.Client(base_url=served, timeout=30) as real:
        assert real.get("/health").json()["model"] == "als"
        seconds = []
        for _ in range(20):
            start = time.perf_counter()
            real.get("/recommend/3").raise_for_status()
            seconds.append(time.perf_counter() - start)
        # Nagle's algorithm against the client's delayed ACK costs 40 ms a response
        assert sorted(seconds)[10] < 0.03, seconds
        answer = real.get("/recommend/3", params={"k": 4}).json()
        assert answer["route"] == "known-user" and len(answer["films"]) == 4
        liked = real.post("/recommend", json={"liked": ["Fargo (1996)"]}).json()
        assert liked["route"] == "fold-in" and liked["films"][0]["because"]["movie_id"] == 100
        assert real.get("/recommend/9999").status_code == 404
        assert "What would it show me?" in real.get("/").text


def test_the_server_stops_gracefully_on_sigterm(new_user_bundles):
    process, url, lines = start_server(new_user_bundles["two_tower"], "--log-level", "info")
    assert httpx.get(f"{url}/health", timeout=30).json()["routes"][2] == "demographics"
    assert stop_server(process) == 0
    time.sleep(0.5)  # the reader takes the last lines
    output = "".join(lines)
    assert "Finished server process" in output and output.endswith("stopped\n")
    assert "Traceback" not in output


def test_the_listening_socket_says_tcp_so_that_asyncio_turns_nagle_off():
    listening = app_module.listen("127.0.0.1", 0)
    with listening:
        assert listening.proto == socket.IPPROTO_TCP
        assert listening.getsockname()[0] == "127.0.0.1"


@pytest.mark.parametrize("host", ["", "  "])
def test_an_empty_host_is_one_line_naming_what_to_give(host):
    with pytest.raises(RecsysError, match="--host is empty: give an address, e.g. 127.0.0.1"):
        app_module.listen(host, 0)


def test_the_load_test_script_runs_bounded_against_a_server(served, new_user_bundles):
    result = subprocess.run([sys.executable, LOAD_TEST, "--bundle",
                             str(new_user_bundles["als"]), "--url", served, "--rate", "100",
                             "--requests", "50", "--max-seconds", "5"],
                            capture_output=True, text=True, timeout=120)  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "50 requests due at 100/s" in result.stdout
    assert re.search(r"p50 [\d.]+ ms +p95 [\d.]+ ms +p99 [\d.]+ ms", result.stdout)
    assert "errors 0" in result.stdout
    elsewhere = subprocess.run([sys.executable, LOAD_TEST, "--bundle",
                                str(new_user_bundles["als"]), "--url", "http://10.1.2.3:8000"],
                               capture_output=True, text=True, timeout=120)  # fmt: skip
    assert elsewhere.returncode == 1 and "is not on loopback" in elsewhere.stderr


def run_cli(*argv: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "recsys.serve", *argv], capture_output=True,
                          text=True, timeout=120)  # fmt: skip


def test_command_line_mistakes_are_one_line(tmp_path, new_user_bundles):
    missing = run_cli("--bundle", str(tmp_path / "none"))
    assert missing.returncode == 1 and missing.stderr.count("\n") == 1
    assert missing.stderr.startswith(f"error: no bundle at {tmp_path / 'none'}")
    assert "python -m recsys.export" in missing.stderr
    bad_port = run_cli("--port", "70000")
    assert bad_port.returncode == 2 and bad_port.stderr == (
        "error: argument --port: expected a port from 0 to 65535, got '70000' "
        "(see python -m recsys.serve --help)\n")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        busy = run_cli("--bundle", str(new_user_bundles["als"]), "--port", str(port))
    assert busy.returncode == 1 and busy.stderr.count("\n") == 1
    assert busy.stderr.startswith(f"error: cannot listen on 127.0.0.1 port {port} (Address "
                                  f"already in use): choose another --port")  # fmt: skip


def test_serving_imports_neither_mlflow_nor_hydra_and_torch_only_for_a_tower(new_user_bundles):
    code = ("import sys; from recsys.serve.app import create_app; "
            "from recsys.serve.routing import RoutedRecommender; "
            "create_app(RoutedRecommender.load(sys.argv[1])); "
            "print(sorted(m for m in ('mlflow', 'hydra', 'omegaconf', 'torch') "
            "if m in sys.modules))")  # fmt: skip
    for model, expected in (("als", "[]"), ("two_tower", "['torch']")):
        result = subprocess.run([sys.executable, "-c", code, str(new_user_bundles[model])],
                                capture_output=True, text=True, timeout=120, check=True)
        assert result.stdout.strip() == expected
