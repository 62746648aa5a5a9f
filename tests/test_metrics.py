import math

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st

from recsys.metrics import (
    METRICS,
    catalogue_coverage,
    evaluate,
    hit_matrix,
    ranking_metrics,
)
from recsys.models import PopularRecommender


def truth_matrix(relevant: list[list[int]], n_items: int) -> sp.csr_matrix:
    rows = np.repeat(np.arange(len(relevant)), [len(r) for r in relevant])
    cols = np.concatenate([np.asarray(r, dtype=np.int64) for r in relevant])
    return sp.csr_matrix((np.ones(len(cols)), (rows, cols)), shape=(len(relevant), n_items))


def test_hand_computed_case():
    top = np.array([[3, 1, 7, 2, 5]])
    values = ranking_metrics(top, truth_matrix([[1, 2, 9]], 10), ks=[1, 5])
    assert values["precision@5"][0] == pytest.approx(2 / 5)
    assert values["recall@5"][0] == pytest.approx(2 / 3)
    assert values["map@5"][0] == pytest.approx((1 / 2 + 2 / 4) / 3)  # / min(5, |R| = 3)
    assert values["map_r@5"][0] == pytest.approx((1 / 2 + 2 / 4) / 3)  # / |R| = 3: the same
    assert values["map@1"][0] == values["map_r@1"][0] == 0.0
    dcg = 1 / math.log2(3) + 1 / math.log2(5)
    idcg = 1 + 1 / math.log2(3) + 1 / math.log2(4)
    assert values["ndcg@5"][0] == pytest.approx(dcg / idcg)
    assert values["hit_rate@5"][0] == 1.0
    assert values["mrr@5"][0] == pytest.approx(1 / 2)
    for name in METRICS:
        assert values[f"{name}@1"][0] == 0.0


def test_perfect_and_empty_rankings():
    top = np.array([[4, 2, 0, 1], [0, 1, 3, 5]])
    values = ranking_metrics(top, truth_matrix([[2, 4], [7]], 8), ks=[4])
    for name in ("recall", "map", "ndcg", "hit_rate", "mrr"):
        assert values[f"{name}@4"].tolist() == [1.0, 0.0]
    assert values["precision@4"].tolist() == [0.5, 0.0]


def test_map_and_ndcg_normalise_by_min_k_relevant():
    # 3 relevant items, k=2, both top slots hit: MAP@2 = NDCG@2 = 1, recall@2 = 2/3
    values = ranking_metrics(np.array([[0, 1]]), truth_matrix([[0, 1, 2]], 5), ks=[2])
    assert values["map@2"][0] == pytest.approx(1.0)
    assert values["ndcg@2"][0] == pytest.approx(1.0)
    assert values["recall@2"][0] == pytest.approx(2 / 3)
    # MAP by |R| (Microsoft Recommenders' published table): (1/1 + 2/2) / 3
    assert values["map_r@2"][0] == pytest.approx(2 / 3)


def test_empty_slots_never_hit():
    # -1 marks a slot left empty after exclusion; it must not match row 0's item n_items-1
    truth = truth_matrix([[4], [0]], 5)
    hits = hit_matrix(np.array([[-1, 4], [-1, -1]]), truth)
    assert hits.tolist() == [[False, True], [False, False]]


def test_users_without_relevant_items_are_refused():
    with pytest.raises(ValueError, match="at least one relevant"):
        ranking_metrics(np.array([[0]]), truth_matrix([[]], 3), ks=[1])


def naive_metrics(top: np.ndarray, relevant: list[set[int]], k: int) -> dict[str, list[float]]:
    out = {name: [] for name in METRICS}
    for ranking, rel in zip(top, relevant, strict=True):  # reference implementation: a loop
        ranking = list(ranking[:k])
        hits = [int(i in rel) for i in ranking]
        out["precision"].append(sum(hits) / k)
        out["recall"].append(sum(hits) / len(rel))
        ap = sum(sum(hits[: i + 1]) / (i + 1) for i in range(k) if hits[i])
        out["map"].append(ap / min(k, len(rel)))
        out["map_r"].append(ap / len(rel))
        dcg = sum(h / math.log2(i + 2) for i, h in enumerate(hits))
        idcg = sum(1 / math.log2(i + 2) for i in range(min(k, len(rel))))
        out["ndcg"].append(dcg / idcg)
        out["hit_rate"].append(float(any(hits)))
        out["mrr"].append(next((1 / (i + 1) for i, h in enumerate(hits) if h), 0.0))
    return out


def test_agrees_with_a_naive_loop_on_random_data():
    rng = np.random.default_rng(0)
    n_users, n_items, k = 300, 60, 20
    top = np.stack([rng.permutation(n_items)[:k] for _ in range(n_users)])
    relevant = [set(rng.choice(n_items, rng.integers(1, 25), replace=False).tolist())
                for _ in range(n_users)]  # fmt: skip
    truth = truth_matrix([sorted(r) for r in relevant], n_items)
    values = ranking_metrics(top, truth, ks=[1, 5, k])
    for cut in (1, 5, k):
        expected = naive_metrics(top, relevant, cut)
        for name in METRICS:
            np.testing.assert_allclose(values[f"{name}@{cut}"], expected[name], rtol=1e-12)


@st.composite
def ranking_case(draw):
    n_items = draw(st.integers(2, 30))
    k = draw(st.integers(1, n_items))
    ranking = draw(st.permutations(range(n_items)))[:k]
    relevant = draw(st.sets(st.integers(0, n_items - 1), min_size=1, max_size=n_items))
    return np.array([ranking]), sorted(relevant), n_items, k


@settings(max_examples=200, deadline=None)
@given(ranking_case())
def test_values_lie_in_unit_interval(case):
    top, relevant, n_items, k = case
    values = ranking_metrics(top, truth_matrix([relevant], n_items), ks=[k])
    for value in values.values():
        assert 0.0 <= value[0] <= 1.0 + 1e-12


@settings(max_examples=200, deadline=None)
@given(ranking_case())
def test_perfect_ranking_scores_one(case):
    _, relevant, n_items, k = case
    others = [i for i in range(n_items) if i not in relevant]
    top = np.array([(relevant + others)[:k]])
    values = ranking_metrics(top, truth_matrix([relevant], n_items), ks=[k])
    for name in ("map", "ndcg", "hit_rate", "mrr"):
        assert values[f"{name}@{k}"][0] == pytest.approx(1.0)
    assert values[f"precision@{k}"][0] == pytest.approx(min(k, len(relevant)) / k)
    assert values[f"recall@{k}"][0] == pytest.approx(min(k, len(relevant)) / len(relevant))


@settings(max_examples=200, deadline=None)
@given(ranking_case(), st.randoms(use_true_random=False))
def test_reordering_non_relevant_items_changes_nothing(case, random):
    top, relevant, n_items, k = case
    truth = truth_matrix([relevant], n_items)
    ranking = top[0].tolist()
    slots = [i for i, item in enumerate(ranking) if item not in relevant]
    shuffled = [ranking[i] for i in slots]
    random.shuffle(shuffled)
    reordered = list(ranking)
    for slot, item in zip(slots, shuffled, strict=True):
        reordered[slot] = item
    before = ranking_metrics(top, truth, ks=[k])
    after = ranking_metrics(np.array([reordered]), truth, ks=[k])
    for name in before:
        assert after[name][0] == pytest.approx(before[name][0])


def test_coverage_counts_distinct_items():
    top = np.array([[0, 1, 2], [0, 1, 3], [4, -1, -1]])
    assert catalogue_coverage(top, n_items=10, k=1) == pytest.approx(2 / 10)
    assert catalogue_coverage(top, n_items=10, k=3) == pytest.approx(5 / 10)


def test_users_without_history_are_counted_and_the_others_averaged_apart():
    train = sp.csr_matrix(np.array([[1, 1, 0, 0, 0], [0, 0, 0, 0, 0], [0, 0, 0, 0, 0]], float))
    truth = sp.csr_matrix(np.array([[0, 0, 1, 0, 0], [1, 0, 0, 0, 0], [0, 0, 0, 1, 0]], float))
    model = PopularRecommender(seed=0).fit(train)  # items 0, 1 first, then by index
    result = evaluate(model, truth, train, ks=[1])
    # user 0 (history 0, 1) gets item 2: a hit; users 1 and 2 (no history) get item 0
    assert result.per_user["hit_rate@1"].tolist() == [1.0, 1.0, 0.0]
    assert result.summary["n_users_without_history"] == 2
    assert result.summary["with_history/hit_rate@1"] == 1.0  # user 0 alone
    assert result.summary["hit_rate@1"] == pytest.approx(2 / 3)
    none_known = evaluate(model, truth, sp.csr_matrix((3, 5)), ks=[1]).summary
    assert none_known["n_users_without_history"] == 3
    assert not any(key.startswith("with_history/") for key in none_known)  # the mean is all
    assert "n_users_without_history" not in evaluate(model, truth, None, ks=[1]).summary


def test_evaluate_skips_users_without_held_out_items_and_reports_them():
    train = sp.csr_matrix(np.array([[1, 1, 0, 0, 0], [0, 1, 0, 0, 0], [1, 0, 0, 0, 0]], float))
    truth = sp.csr_matrix(np.array([[0, 0, 1, 0, 0], [0, 0, 0, 0, 0], [0, 1, 0, 0, 1]], float))
    model = PopularRecommender(seed=0).fit(train)  # popularity: item1=2, item0=2, rest 0
    result = evaluate(model, truth, train, ks=[2], user_ids=np.array([10, 20, 30]))
    assert result.per_user["user_id"].tolist() == [10, 30]
    assert result.summary["n_users"] == 2 and result.summary["n_users_skipped"] == 1
    assert result.summary["n_users_without_history"] == 0
    assert not any(key.startswith("with_history/") for key in result.summary)
    # user 10 saw items 0,1 -> ranks 2,3 (ties by index); user 30 saw 0 -> ranks 1,2
    assert result.per_user["hit_rate@2"].tolist() == [1.0, 1.0]
    assert result.per_user["precision@2"].tolist() == [0.5, 0.5]
