import itertools
import pickle

import numpy as np
import pytest
import scipy.sparse as sp

from recsys.config import create_model
from recsys.errors import ConfigError
from recsys.models.itemknn import _keep_top_k
from tests.models.contract import ModelContract


class TestEASE(ModelContract):
    model_name = "ease"
    overrides = {"regularization": 50.0, "dropout": 0.0, "zero_diagonal": True,
                 "user_weight": 0.0}  # plain EASE
    ndcg_bounds = (0.40, 1.0)
    ml100k_ndcg = (0.46, 1.0)

    def test_matches_the_closed_form(self, fitted, synthetic_matrices):
        train, _, _ = synthetic_matrices
        x = train.toarray().astype(np.float64)
        p = np.linalg.inv(x.T @ x + 50.0 * np.eye(x.shape[1]))
        b = np.eye(x.shape[1]) - p / np.diag(p)  # Steck's B = I - P diagMat(1/diag(P))
        np.testing.assert_allclose(fitted.score(np.arange(5)), x[:5] @ b, rtol=1e-3, atol=1e-4)

    @pytest.mark.parametrize(("zero_diagonal", "gamma"), [(True, 0.0), (False, 0.0),
                                                           (True, 0.7), (False, 0.7)])
    def test_dropout_minimises_the_expected_denoising_loss(self, zero_diagonal, gamma):
        # Steck (2020): E ||W^1/2 (X - (X o M / (1-p)) B)||^2 + lam ||B||^2 over every dropout
        # mask M of a 3 x 3 matrix (2^9 masks, each entry kept with probability 1-p), computed by
        # enumeration; user u's error weighs w_u = n_u^-gamma, scaled so sum_u w_u n_u = nnz
        x = np.array([[1, 1, 0], [1, 1, 1], [0, 1, 1]], dtype=np.float64)
        counts = x.sum(axis=1)  # n_u = 2, 3, 2
        w = counts**-gamma * counts.sum() / (counts**-gamma @ counts)
        p, lam = 0.3, 0.5
        masks = np.array(list(itertools.product([0, 1], repeat=9)), dtype=np.float64)
        masks = masks.reshape(-1, 3, 3)  # (512, 3, 3)
        weights = np.prod(np.where(masks == 1, 1 - p, p), axis=(1, 2))  # (512,)

        def expected_loss(b):
            noisy = x * masks / (1 - p)  # (512, 3, 3)
            errors = (w[:, None] * (x - noisy @ b) ** 2).sum(axis=(1, 2))
            return weights @ errors + lam * (b**2).sum()

        model = self.make_model(0, regularization=lam, dropout=p, zero_diagonal=zero_diagonal,
                                user_weight=gamma)  # fmt: skip
        b = model.fit(sp.csr_matrix(x))._weights.astype(np.float64)
        assert np.allclose(np.diag(b), 0) == zero_diagonal
        rng = np.random.default_rng(0)
        for _ in range(20):  # a minimum: every feasible step away costs
            step = rng.normal(size=(3, 3)) * 1e-2
            if zero_diagonal:
                np.fill_diagonal(step, 0)
            assert expected_loss(b + step) > expected_loss(b) - 1e-9

    def test_user_weights_match_a_loop_over_users(self, synthetic_matrices):
        train, _, _ = synthetic_matrices
        x = train.toarray().astype(np.float64)
        gamma = 0.5
        weights = np.array([max(row.sum(), 1.0) ** -gamma for row in x])
        weights *= x.sum() / (weights @ x.sum(axis=1))
        gram = sum(w * np.outer(row, row)  # sum_u w_u x_u x_u^T
                   for w, row in zip(weights, x, strict=True))
        assert np.trace(gram) == pytest.approx(x.sum())  # lambda keeps its scale
        b = np.linalg.solve(gram + 50.0 * np.eye(len(gram)), gram)  # (G + lam I)^-1 G
        model = self.make_model(0, dropout=0.0, zero_diagonal=False, user_weight=gamma)
        model.fit(train)
        np.testing.assert_allclose(model.score(np.arange(5)), x[:5] @ b, rtol=1e-3, atol=1e-4)

    def test_without_constraint_or_dropout_the_penalty_is_plain_ridge(self, synthetic_matrices):
        train, _, _ = synthetic_matrices
        x = train.toarray().astype(np.float64)
        gram = x.T @ x
        b = np.linalg.solve(gram + 50.0 * np.eye(len(gram)), gram)  # (G + lam I)^-1 G
        model = self.make_model(0, dropout=0.0, zero_diagonal=False).fit(train)
        np.testing.assert_allclose(model.score(np.arange(5)), x[:5] @ b, rtol=1e-3, atol=1e-4)


class TestSessionEASE(ModelContract):
    model_name = "session_ease"
    # the synthetic times are random: one session a user (a gap longer than the data) is EASE
    overrides = {"regularization": 50.0, "gap_seconds": 10**9}
    ndcg_bounds = (0.40, 1.0)
    ml100k_ndcg = (0.44, 1.0)

    @staticmethod
    def timed(rows, n_users=3, n_items=4):
        """``(binary matrix, times)`` of ``(user, item, second)`` rows."""
        user, item, second = (np.array(c) for c in zip(*rows, strict=True))
        shape = (n_users, n_items)
        return (sp.csr_matrix((np.ones(len(user)), (user, item)), shape=shape),
                sp.csr_matrix((second, (user, item)), shape=shape))  # fmt: skip

    def test_sessions_split_each_user_where_a_pause_is_longer_than_the_gap(self):
        rows = [(0, 2, 100), (0, 0, 0), (0, 1, 60), (0, 3, 161),  # 0, 60, 100 | 161
                (1, 1, 5), (1, 3, 5), (2, 0, 0), (2, 2, 0)]  # fmt: skip
        train, times = self.timed(rows)
        model = create_model("session_ease", seed=0, overrides={"gap_seconds": 60},
                             rated_at=times)  # fmt: skip
        sessions = {tuple(np.flatnonzero(row)) for row in model.sessions(train).toarray()}
        assert sessions == {(0, 1, 2), (3,), (1, 3), (0, 2)}
        model.gap_seconds = 0.0  # only the same second: user 0's four ratings apart
        assert model.sessions(train).shape == (6, 4)

    def test_weights_are_ease_of_the_sessions_and_scores_of_the_whole_row(self, fitted,
                                                                          synthetic_matrices):
        train, _, _ = synthetic_matrices
        s = fitted.sessions(train).toarray()
        p = np.linalg.inv(s.T @ s + 50.0 * np.eye(s.shape[1]))
        b = np.eye(s.shape[1]) - p / np.diag(p)  # EASE's B on the sessions
        x = train.toarray().astype(np.float64)
        np.testing.assert_allclose(fitted.score(np.arange(5)), x[:5] @ b, rtol=1e-3, atol=1e-4)
        assert s.sum() == train.nnz
        ease = create_model("ease", seed=0, overrides={"regularization": 50.0, "dropout": 0.0,
                                                       "zero_diagonal": True, "user_weight": 0.0})
        np.testing.assert_allclose(ease.fit(train).score(np.arange(5)), fitted.score(
            np.arange(5)), rtol=1e-4, atol=1e-5)  # one session a user: EASE  # fmt: skip

    def test_only_the_training_interactions_times_are_read(self, synthetic_matrices):
        train, validation, test = synthetic_matrices
        fitted = self.make_model(0, gap_seconds=3600)  # many sessions a user
        assert fitted.fit(train).sessions(train).shape[0] > 2 * train.shape[0]
        scores = fitted.score(np.arange(20))
        held_out = sp.csr_matrix(validation + test, dtype=bool)
        times = fitted.rated_at.tolil()
        rng = np.random.default_rng(0)
        for u, i in zip(*held_out.nonzero(), strict=True):  # other times for every other rating
            times[u, i] = rng.integers(0, 10**9)
        fitted.rated_at = times.tocsr()
        np.testing.assert_array_equal(fitted.fit(train).score(np.arange(20)), scores)
        times = fitted.rated_at.tolil()
        for u, i in zip(*train.nonzero(), strict=True):
            times[u, i] = rng.integers(0, 10**9)  # training times: the sessions change
        fitted.rated_at = times.tocsr()
        assert not np.array_equal(fitted.fit(train).score(np.arange(20)), scores)

    def test_a_pickle_keeps_the_weights_and_no_rating_time(self, fitted, synthetic_matrices):
        train, _, _ = synthetic_matrices
        assert fitted.rated_at is not None
        loaded = pickle.loads(pickle.dumps(fitted))
        assert loaded.rated_at is None and fitted.rated_at is not None  # the original keeps them
        np.testing.assert_array_equal(loaded.score(np.arange(20)), fitted.score(np.arange(20)))
        with pytest.raises(ConfigError, match="needs when each rating was given"):
            loaded.fit(train)

    def test_without_the_ratings_times_it_says_how_to_build_it(self, synthetic_matrices):
        train, _, _ = synthetic_matrices
        with pytest.raises(ConfigError, match="needs when each rating was given"):
            create_model("session_ease", seed=0).fit(train)
        _, times = self.timed([(0, 0, 1)], n_users=2, n_items=2)
        with pytest.raises(ConfigError, match="the ratings' times are"):
            create_model("session_ease", seed=0, rated_at=times).fit(train)
        partial = sp.csr_matrix(train, dtype=np.int64)
        partial.data[:] = 7
        partial = partial.tolil()
        partial[train.nonzero()[0][0], train.nonzero()[1][0]] = 0
        partial = partial.tocsr()
        partial.eliminate_zeros()  # one training interaction without a time
        with pytest.raises(ConfigError, match="1 training interactions have no time"):
            create_model("session_ease", seed=0, rated_at=partial).fit(train)


class TestItemKNN(ModelContract):
    model_name = "itemknn"
    overrides = {"neighbors": 50, "shrinkage": 10.0, "block_size": 64}
    ndcg_bounds = (0.38, 1.0)
    ml100k_ndcg = (0.38, 1.0)

    def test_blocks_do_not_change_the_result(self, synthetic_matrices):
        train, _, _ = synthetic_matrices
        small = self.make_model(0, neighbors=20, block_size=7).fit(train).score(np.arange(9))
        large = self.make_model(0, neighbors=20, block_size=10_000).fit(train).score(np.arange(9))
        np.testing.assert_array_equal(small, large)

    def test_similarity_is_shrunk_cosine_with_top_k(self):
        x = sp.csr_matrix(np.array([[1, 1, 0], [1, 1, 1], [0, 1, 1]], dtype=np.float32))
        model = self.make_model(0, neighbors=1, shrinkage=1.0).fit(x)
        # items 0,1 share 2 users: 2/(sqrt(2*3)+1); items 1,2 share 2: 2/(sqrt(3*2)+1)
        expected = 2 / (np.sqrt(6) + 1)
        similarity = model._similarity.toarray()
        assert similarity[0, 1] == pytest.approx(expected) and similarity[0, 2] == 0
        assert (similarity > 0).sum(axis=1).tolist() == [1, 1, 1]

    def test_keep_top_k_drops_non_positive(self):
        kept = _keep_top_k(np.array([[0.0, 0.5, -1.0, 0.2]], dtype=np.float32), 3).toarray()
        np.testing.assert_allclose(kept, [[0.0, 0.5, 0.0, 0.2]])

    def test_keep_top_k_breaks_ties_by_the_lower_item_index(self):
        # five items tie for two places: the two lowest indices win, whatever the CPU's
        # partition kernel would pick (np.argpartition differs with and without AVX-512)
        similarity = np.array([[0.3, 0.5, 0.5, 0.1, 0.5, 0.5, 0.5, 0.9]], dtype=np.float32)
        kept = _keep_top_k(similarity, 3).toarray()[0]
        assert np.flatnonzero(kept).tolist() == [1, 2, 7]


@pytest.mark.parametrize(("model", "overrides"), [("ease", {"regularization": 0}),
                                                  ("ease", {"dropout": 1.0}),
                                                  ("ease", {"zero_diagonal": "no"}),
                                                  ("ease", {"user_weight": -0.5}),
                                                  ("itemknn", {"neighbors": 0}),
                                                  ("itemknn", {"shrinkage": -1})])
def test_bad_hyperparameters(model, overrides):
    with pytest.raises(ConfigError):
        create_model(model, seed=0, overrides=overrides)


class TestEnsemble(ModelContract):
    model_name = "ensemble"
    overrides = {"members": {"ease": {"regularization": 50.0, "dropout": 0.0,
                                      "zero_diagonal": True},
                             "als": {"factors": 8},
                             # synthetic times are months apart: ~3 sessions a user
                             "session_ease": {"regularization": 50.0, "gap_seconds": 10**6},
                             "multvae": {"hidden": 64, "latent": 16, "anneal_steps": 50,
                                         "trainer": {"epochs": 30, "batch_size": 20,
                                                     "lr": 0.003, "device": "cpu",
                                                     "progress": False, "ema": 0.0}}}}  # fmt: skip
    ndcg_bounds = (0.40, 1.0)
    ml100k_ndcg = (0.47, 1.0)

    def test_scores_are_the_weighted_standardised_member_scores(self, synthetic_matrices):
        train, _, _ = synthetic_matrices
        model = self.make_model(0, weights={"ease": 4.0, "als": 1.0, "multvae": 3.0,
                                             "session_ease": 2.0}).fit(train)  # fmt: skip
        users = np.arange(6)
        by_hand = 0.0
        for name, weight in (("ease", 0.4), ("als", 0.1), ("multvae", 0.3),
                             ("session_ease", 0.2)):  # sum 1  # fmt: skip
            raw = model.members[name].score(users).astype(np.float64)  # a row at a time
            z = []
            for user, row in zip(users, raw, strict=True):
                unseen = row[train[user].toarray().ravel() == 0]  # mean and spread over these
                z.append((row - unseen.mean()) / unseen.std())
            by_hand = by_hand + weight * np.array(z)
        np.testing.assert_allclose(model.score(users), by_hand, rtol=1e-4, atol=1e-4)

    def test_without_the_ratings_times_it_refuses_before_any_member_trains(
            self, synthetic_matrices, monkeypatch):  # fmt: skip
        train, _, _ = synthetic_matrices
        model = create_model("ensemble", seed=0, overrides=self.overrides)  # no data given
        for member in model.members.values():
            monkeypatch.setattr(member, "fit_validated", None)  # any fit fails loudly
        with pytest.raises(ConfigError, match="members.session_ease needs when each rating"):
            model.fit(train)

    def test_standardising_leaves_out_the_given_entries(self):
        from recsys.models.ensemble import standardised

        scores = np.array([[9.0, 1.0, 2.0, 3.0], [5.0, 5.0, 5.0, 7.0], [1.0, 2.0, 3.0, 4.0]])
        left_out = sp.csr_matrix([[1, 0, 0, 0], [0, 0, 0, 1], [1, 1, 1, 1]], dtype=np.float32)
        z = standardised(scores, left_out)
        # row 0 over (1, 2, 3): mean 2, std sqrt(2/3); the left-out 9 with the same two
        np.testing.assert_allclose(z[0], (scores[0] - 2) / np.sqrt(2 / 3), rtol=1e-6)
        assert (z[1] == 0).all()  # no spread over (5, 5, 5): zeros, the left-out 7 too
        assert (z[2] == 0).all()  # nothing left to count
        np.testing.assert_allclose(standardised(scores)[2], (scores[2] - 2.5) / np.sqrt(1.25),
                                   rtol=1e-6)  # fmt: skip

    def test_standardising_is_exact_when_left_out_scores_are_far_from_the_rest(self):
        # 400 left-out scores near 3e4 beside 1,282 counted ones of spread ~1: summing all and
        # subtracting the left-out part would cancel catastrophically
        from recsys.models.ensemble import standardised

        rng = np.random.default_rng(0)
        scores = rng.normal(size=(1, 1682)).astype(np.float32)
        scores[0, :400] += 3e4
        left_out = sp.csr_matrix((np.ones(400), (np.zeros(400), np.arange(400))), shape=(1, 1682))
        rest = scores[0, 400:].astype(np.float64)
        expected = (scores[0, 400:] - rest.mean()) / rest.std()
        np.testing.assert_allclose(standardised(scores, left_out)[0, 400:], expected, rtol=1e-5,
                                   atol=1e-5)  # fmt: skip

    def test_catalogue_standardising_counts_the_seen_items_too(self, synthetic_matrices):
        train, _, _ = synthetic_matrices
        model = self.make_model(0, standardise_over="catalogue").fit(train)
        users = np.arange(3)
        by_hand = 0.0
        for name, weight in zip(model.members, model.weights, strict=True):
            raw = model.members[name].score(users).astype(np.float64)
            by_hand = by_hand + weight * (raw - raw.mean(1, keepdims=True)) / raw.std(
                1, keepdims=True)  # fmt: skip
        np.testing.assert_allclose(model.score(users), by_hand, rtol=1e-4, atol=1e-4)

    def test_weights_are_the_best_validation_point_of_the_grid(self, synthetic_matrices):
        train, _, _ = synthetic_matrices
        seen = []

        def validate(model):  # made up: peaks at ease 0.5, als 0.25, multvae 0.25, session 0
            if not hasattr(model, "members"):  # Mult-VAE early-stopping
                return 0.0
            seen.append(model.weights.copy())
            return -np.abs(model.weights - [0.5, 0.25, 0.25, 0.0]).sum()

        model = self.make_model(0, weights=None, weight_step=0.25)
        model.fit_validated(train, validate=validate)
        assert len(seen) == 35  # C(4 + 3, 3) points; 1/4 each is on this grid too
        np.testing.assert_allclose(model.weights, [0.5, 0.25, 0.25, 0.0])
        assert model.refit_overrides()["weights"] == pytest.approx(
            {"ease": 0.5, "als": 0.25, "multvae": 0.25, "session_ease": 0.0})

    def test_the_weight_search_scores_each_member_once_and_chooses_as_without_its_cache(
            self, synthetic_matrices, monkeypatch):  # fmt: skip
        from recsys.models import ensemble
        from recsys.train import validation_metric

        train, validation, _ = synthetic_matrices
        objective = validation_metric(validation, train, "val/ndcg@10", batch_size=16)
        batches = -(-np.count_nonzero(np.diff(validation.indptr)) // 16)
        found = []
        for room in (ensemble.SEARCH_CACHE_BYTES, 0):
            monkeypatch.setattr(ensemble, "SEARCH_CACHE_BYTES", room)
            model = self.make_model(0, weights=None, weight_step=0.25)
            ease, calls, values = model.members["ease"], [], []
            monkeypatch.setattr(ease, "score", lambda users, score=ease.score, calls=calls: (
                calls.append(len(users)), score(users))[1])  # fmt: skip

            def validate(fitted, values=values, model=model):  # every grid point's, in order
                value = objective(fitted)
                if fitted is model:
                    values.append(value)
                return value

            model.fit_validated(train, validate=validate)
            found.append((model.weights, values, len(calls)))
            assert model._search_cache is None  # let go after the search
        (cached_weights, cached_values, cached_calls), (weights, values, calls) = found
        np.testing.assert_array_equal(cached_weights, weights)
        assert len(values) == 35 and cached_values == values  # every point, bit for bit
        assert cached_calls == batches < calls  # once a batch, not once a grid point

    def test_simplex_grid_covers_every_point_once(self):
        from recsys.models.ensemble import simplex_grid

        grid = simplex_grid(3, 0.25)
        assert len(grid) == 15  # C(4 + 2, 2)
        assert all(np.isclose(w.sum(), 1) and (w >= 0).all() for w in grid)
        assert len({tuple(np.round(w, 6)) for w in grid}) == 15

    @pytest.mark.parametrize("weights", [{"a": 1.0}, {"a": 1.0, "b": 1.0, "c": 1.0}])
    def test_weights_must_name_every_member_and_no_other(self, weights):
        from recsys.models.ensemble import EnsembleRecommender
        from recsys.models.popular import PopularRecommender

        members = {"a": PopularRecommender, "b": PopularRecommender}
        with pytest.raises(ConfigError, match=r"a non-negative weight for each of \['a', 'b'\]"):
            EnsembleRecommender(members, weights=weights, weight_step=0.5,
                                standardise_over="unseen", seed=0, rated_at=None)  # fmt: skip

    @pytest.mark.parametrize(("overrides", "message"), [
        ({"weights": {"ease": 0.0, "als": 0.0, "multvae": 0.0, "session_ease": 0.0}},
         "must not all be 0"),
        ({"weights": {"ease": -1.0}}, "a non-negative weight for each of"),
        ({"weight_step": 0.3}, "must divide 1"),
        ({"standardise_over": "all"}, "standardise_over"),
    ])  # fmt: skip
    def test_bad_settings_are_config_errors(self, overrides, message):
        with pytest.raises(ConfigError, match=message):
            self.make_model(0, **overrides)
