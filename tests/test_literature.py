import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from recsys import literature
from recsys.config import compose_config
from recsys.errors import ConfigError
from recsys.report import Runs
from recsys.train import run
from tests.conftest import SYNTHETIC

PUBLISHED = """name: A paper
protocol: msr
k: 10
rows:
  - {algorithm: Theirs, family: [als], map_r: 0.10, ndcg: 0.30, precision: 0.25, recall: 0.2}
  - {algorithm: Other, family: [], map_r: 0.05, ndcg: 0.10, precision: 0.05, recall: 0.05}
"""


@pytest.fixture(scope="module")
def runs(bench_runs):
    return bench_runs


def test_published_rows_sit_next_to_ours_on_the_same_protocol(runs, tmp_path):
    (tmp_path / "paper.yaml").write_text(PUBLISHED)
    published = literature.load_published(tmp_path / "paper.yaml")
    rows = literature.published_rows(runs, published)
    assert [r["ndcg"][0] for r in rows] == sorted((r["ndcg"][0] for r in rows), reverse=True)
    als = next(r for r in rows if r["algorithm"] == "als")
    mean = runs.table[runs.table.model == "als"]["test/ndcg_at_10"].mean()
    assert als["ndcg"][0] == pytest.approx(mean) and als["family"][0]["algorithm"] == "Theirs"
    assert als["map_r"][0] <= als["map"][0]  # dividing by |R| >= min(10, |R|)
    markdown = literature.published_markdown(runs, published)
    assert f"| Theirs {mean - 0.30:+.4f} |" in markdown  # against its family
    assert "| published | Theirs | 0.1000 | — | 0.3000 |" in markdown
    path = literature.write_published(runs, published, tmp_path / "out")
    assert "recsys next to A paper" in path.read_text()
    assert (tmp_path / "out" / "figures" / "literature.png").exists()


def test_a_published_table_of_another_protocol_is_refused(runs, tmp_path):
    (tmp_path / "paper.yaml").write_text(PUBLISHED.replace("protocol: msr", "protocol: loo"))
    with pytest.raises(ConfigError, match="used the loo protocol.*protocol=loo"):
        literature.published_rows(runs, literature.load_published(tmp_path / "paper.yaml"))
    (tmp_path / "bad.yaml").write_text("name: x\n")
    with pytest.raises(ConfigError, match="lacks k, protocol, rows"):
        literature.load_published(tmp_path / "bad.yaml")


def test_the_note_names_the_rows_that_read_when_ratings_were_given(runs, tmp_path,
                                                                    monkeypatch):
    (tmp_path / "paper.yaml").write_text(PUBLISHED)
    published = literature.load_published(tmp_path / "paper.yaml")
    assert literature.timed_note(runs, published) == ""  # the bench models read no time
    published["rows"][1]["reads_times"] = "decayed affinities"
    monkeypatch.setattr(literature, "_reads_times", lambda name: name == "als")
    note = literature.timed_note(runs, published)
    assert note == (" als: this model learns also from when the training ratings were given (no "
                    "test rating's time is read). Published rows that read the ratings' times "
                    "too: Other (decayed affinities).")
    assert note in literature.published_note(runs, published)


def test_protocols_are_compared_side_by_side_never_mixed(tracked_benchmark, mlflow_uri,
                                                         tmp_path, monkeypatch):  # fmt: skip
    _, data_dir, _ = tracked_benchmark
    monkeypatch.chdir(tmp_path)
    for protocol in ("msr", "temporal"):
        for seed in (1, 2):
            run(compose_config([f"data.dir={data_dir}", f"data.name={SYNTHETIC}",
                                f"tracking.uri={mlflow_uri}", "tracking.experiment=protocols",
                                "model=popular", f"protocol={protocol}", f"seed={seed}"]))
    by_protocol = literature.protocol_runs(MlflowClient(mlflow_uri), "protocols")
    assert list(by_protocol) == ["msr", "temporal"]
    assert all(len(r.table) == 2 for r in by_protocol.values())
    markdown = literature.protocols_markdown(by_protocol)
    assert markdown.startswith("| model | msr: NDCG@10 | msr: Recall@10 | msr: HitRate@10 | "
                               "temporal: NDCG@10")  # fmt: skip
    msr = by_protocol["msr"].table["test/ndcg_at_10"].mean()
    assert f"| popular | {msr:.4f} ± " in markdown
    assert "global temporal split" in literature.protocols_note(by_protocol)


def test_test_users_without_history_are_counted_and_a_column_leaves_them_out(monkeypatch):
    def runs(name, without, with_history):
        rows = [{"model": model, "seed": seed, "test/ndcg_at_10": 0.2 + 0.1 * (model == "ease"),
                 "test/recall_at_10": 0.1, "test/hit_rate_at_10": 0.5, "test/n_users": 300.0,
                 "test/n_users_without_history": without}
                | ({"test/with_history/ndcg_at_10": score} if with_history else {})
                for seed in (1, 2) for model, score in (("popular", 0.1), ("ease", 0.3))]
        return Runs(pd.DataFrame(rows), None, "protocols", {"protocol.name": name})

    by_protocol = {"msr": runs("msr", 0.0, False), "temporal": runs("temporal", 192.0, True)}
    markdown = literature.protocols_markdown(by_protocol)
    header, _, popular, ease = markdown.splitlines()
    assert header.endswith("| temporal: HitRate@10 | temporal: NDCG@10 with history |")
    assert "msr: NDCG@10 with history" not in header  # no such user under msr
    assert popular.endswith("| 0.1000 ± 0.0000 |") and ease.endswith("| 0.3000 ± 0.0000 |")
    monkeypatch.setattr(literature, "describe_protocol", lambda runs: "described")
    note = literature.protocols_note(by_protocol)
    assert "Under temporal, 192 of the 300 test users have no training or validation" in note
    assert "Under msr" not in note
    before = runs("temporal", 0.0, False)  # runs logged before the count: no column
    older = {"temporal": Runs(before.table.drop(columns="test/n_users_without_history"), None,
                              "protocols", before.protocol)}  # fmt: skip
    assert "with history" not in literature.protocols_markdown(older)
    assert "Under temporal" not in literature.protocols_note(older)
