"""fit_stream: epochs over shards on disk through partial_fit.

Equality is exact where fit_stream adds nothing to the arithmetic of
partial_fit (one shard is fit, bit for bit, without the L2 penalty whose lazy
catch-up partial_fit performs at the end of every call). Over several shards
the minibatches differ from those of an in-memory fit (rows of different
shards never meet), so the comparison there is on test R^2.
"""

import doctest
import importlib.util
import signal
import threading
import weakref
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp
from numpy.testing import assert_array_equal
from sklearn.base import clone
from sklearn.linear_model import SGDRegressor

import sksparsenn._network as _network
import sksparsenn.stream
from sksparsenn import SparseMLPRegressor, SparseMLPTransformer, fit_stream
from sksparsenn.datasets import make_sparse_regression
from sksparsenn.stream import NpzShards, save_npz_shards

EXAMPLES = Path(__file__).resolve().parents[1] / "doc" / "examples"

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")


@pytest.fixture(scope="module")
def data():
    X, y = make_sparse_regression(n_samples=6000, n_features=2**15, random_state=0)
    return X[:5000], y[:5000], X[5000:], y[5000:]


@pytest.fixture(scope="module")
def shards(data, tmp_path_factory):
    X, y, _, _ = data
    return save_npz_shards(X, y, tmp_path_factory.mktemp("shards"), n_shards=10)


@pytest.fixture(scope="module")
def small():
    X, y = make_sparse_regression(n_samples=600, n_features=2**12, random_state=1)
    return X, y


def _pairs(X, y, n):
    bounds = np.linspace(0, X.shape[0], n + 1).astype(int)
    return [(X[a:b], y[a:b]) for a, b in zip(bounds[:-1], bounds[1:])]


def _reg(**kw):
    params = dict(hidden_layer_sizes=(8,), solver="sgd", learning_rate_init=0.05,
                  row_scaling="l2", random_state=0)
    params.update(kw)
    return SparseMLPRegressor(**params)


def _weights(est):
    return est.coefs_ + est.intercepts_


# --------------------------------------------------------------------------- #
# Same results as in memory
# --------------------------------------------------------------------------- #
def test_stream_over_shards_matches_in_memory_fit(data, shards):
    # 10 shards of 500 rows, batch_size 250: every minibatch has the size of
    # fit's. On this data, SGD with lr=0.05 keeps improving until about epoch
    # 15, then its test R^2 oscillates by several hundredths from epoch to
    # epoch (in memory as well as streamed), so the comparison stops there.
    # Measured: in memory 0.2707, streamed 0.2682.
    X, y, X_test, y_test = data
    params = dict(hidden_layer_sizes=(32,), batch_size=250, max_iter=15, early_stopping=False)
    in_memory = _reg(**params).fit(X, y)
    streamed = fit_stream(_reg(**params), shards, early_stopping=False)
    r2_memory = in_memory.score(X_test, y_test)
    r2_stream = streamed.score(X_test, y_test)
    assert r2_memory > 0.2, r2_memory  # it learned something
    assert abs(r2_stream - r2_memory) < 0.01, (r2_stream, r2_memory)
    assert streamed.t_ == in_memory.t_ == 15 * X.shape[0]


def test_one_shard_is_fit_bit_for_bit(small):
    X, y = small
    params = dict(alpha=0.0, max_iter=4, batch_size=64)
    full = _reg(**params).fit(X, y)
    streamed, history = fit_stream(_reg(**params), [(X, y)], early_stopping=False,
                                   return_history=True)
    for a, b in zip(_weights(full), _weights(streamed)):
        assert_array_equal(a, b)
    assert streamed.loss_curve_ == full.loss_curve_
    assert history.loss == full.loss_curve_
    assert history.n_epochs == 4 and history.n_rows == [X.shape[0]] * 4


def test_loss_based_stopping_as_in_fit(small):
    # Without validation, the rule of fit without early stopping: stop after
    # n_iter_no_change + 1 epochs whose loss did not improve by tol.
    X, y = small
    params = dict(alpha=0.0, max_iter=50, tol=10.0, n_iter_no_change=2)
    full = _reg(**params).fit(X, y)
    streamed, history = fit_stream(_reg(**params), [(X, y)], return_history=True)
    assert history.stopped_early
    assert history.n_epochs == full.n_iter_ == 4


# --------------------------------------------------------------------------- #
# Shard order, early stopping, warm start
# --------------------------------------------------------------------------- #
def test_shard_order_is_seeded(small):
    X, y = small
    pairs = _pairs(X, y, 6)
    kw = dict(n_epochs=3, early_stopping=False, return_history=True)
    a, ha = fit_stream(_reg(), pairs, random_state=0, **kw)
    b, hb = fit_stream(_reg(), pairs, random_state=0, **kw)
    c, hc = fit_stream(_reg(), pairs, random_state=1, **kw)
    for order in ha.shard_order:
        assert sorted(order) == list(range(6))  # each shard once per epoch
    assert not all(np.array_equal(o, ha.shard_order[0]) for o in ha.shard_order[1:])
    assert all(np.array_equal(p, q) for p, q in zip(ha.shard_order, hb.shard_order))
    for w, v in zip(_weights(a), _weights(b)):
        assert_array_equal(w, v)
    assert not all(np.array_equal(p, q) for p, q in zip(ha.shard_order, hc.shard_order))
    # random_state=None: the estimator's seed, so a seeded estimator is reproducible
    _, hd = fit_stream(_reg(random_state=7), pairs, **kw)
    _, he = fit_stream(_reg(random_state=7), pairs, **kw)
    assert all(np.array_equal(p, q) for p, q in zip(hd.shard_order, he.shard_order))
    # no shuffling: the given order
    _, hf = fit_stream(_reg(), pairs, shuffle=False, **kw)
    assert all(list(o) == list(range(6)) for o in hf.shard_order)


def test_early_stopping_restores_the_best_epoch():
    # Adam at a high rate memorises the rare features: the validation score
    # peaks after a few epochs, then falls (measured: best at epoch 4 of 7).
    X, y = make_sparse_regression(n_samples=1500, n_features=2**12, n_informative=100,
                                  n_teacher_units=4, random_state=1)
    train, (X_val, y_val) = _pairs(X[:1200], y[:1200], 3), (X[1200:], y[1200:])
    est = _reg(hidden_layer_sizes=(32,), solver="adam", learning_rate_init=0.03)
    est, history = fit_stream(est, train, validation=(X_val, y_val), n_epochs=30,
                              n_iter_no_change=2, return_history=True)
    scores = history.validation_score
    assert history.stopped_early and history.n_epochs < 30
    assert len(scores) == history.n_epochs
    assert history.best_epoch == int(np.argmax(scores)) + 1 < history.n_epochs
    assert history.best_validation_score == max(scores)
    assert est.score(X_val, y_val) == max(scores)  # the best weights, restored
    # without early stopping: all epochs, the last weights
    est2, h2 = fit_stream(clone(est), train,
                          validation=(X_val, y_val), n_epochs=6, early_stopping=False,
                          return_history=True)
    assert h2.n_epochs == 6 and not h2.stopped_early
    assert est2.score(X_val, y_val) == h2.validation_score[-1]


def test_scoring_and_validation_from_files(shards, data):
    _, _, X_test, y_test = data
    est, history = fit_stream(_reg(), shards[:3], validation=shards[3], n_epochs=2,
                              scoring="neg_mean_squared_error", early_stopping=False,
                              return_history=True)
    assert all(s < 0 for s in history.validation_score)
    X_val, y_val = shards[3]
    assert history.validation_score[-1] == pytest.approx(
        -np.mean((est.predict(X_val) - y_val) ** 2), rel=1e-6)


def test_fresh_start_unless_warm_start(small):
    X, y = small
    pairs = _pairs(X, y, 3)
    kw = dict(n_epochs=2, early_stopping=False)
    est = fit_stream(_reg(), pairs, **kw)
    first = [w.copy() for w in _weights(est)]
    fit_stream(est, pairs, **kw)  # like fit: from scratch, same result
    assert est.n_iter_ == 6
    for a, b in zip(first, _weights(est)):
        assert_array_equal(a, b)
    warm = fit_stream(_reg(warm_start=True), pairs, **kw)
    fit_stream(warm, pairs, **kw)  # continues
    assert warm.n_iter_ == 12 and warm.t_ == 4 * X.shape[0]


def test_any_estimator_with_partial_fit(small):
    X, y = small
    est, history = fit_stream(SGDRegressor(random_state=0), _pairs(X, y[:, 0], 3),
                              validation=(X[:100], y[:100, 0]), n_epochs=3,
                              return_history=True)
    assert history.loss is None  # SGDRegressor has no loss_
    assert len(history.validation_score) == history.n_epochs
    assert est.coef_.shape == (X.shape[1],)


def test_autoencoder_shards_without_y(small, tmp_path):
    X, y = small
    files = save_npz_shards(X, None, tmp_path, n_shards=3)
    assert files.y_paths is None and files[0][1] is None
    est = SparseMLPTransformer(hidden_layer_sizes=(4,), random_state=0)
    est, history = fit_stream(est, files, n_epochs=2, early_stopping=False,
                              return_history=True)
    assert est.transform(X[:5]).shape == (5, 4)
    assert len(history.loss) == 2 and np.isfinite(history.loss).all()


# --------------------------------------------------------------------------- #
# Memory: one shard at a time
# --------------------------------------------------------------------------- #
def test_shards_are_loaded_lazily_and_freed(small):
    X, y = small
    loaded = []

    def loader(a, b):
        def load():
            # every shard loaded before this one is already gone
            assert all(ref() is None for ref in loaded)
            X_shard = sp.csr_matrix(X[a:b], copy=True)
            loaded.append(weakref.ref(X_shard))
            return X_shard, y[a:b].copy()
        return load

    bounds = [0, 200, 400, 600]
    shards = [loader(a, b) for a, b in zip(bounds[:-1], bounds[1:])]
    fit_stream(_reg(), shards, n_epochs=2, early_stopping=False)
    assert len(loaded) == 6


# --------------------------------------------------------------------------- #
# Bad input
# --------------------------------------------------------------------------- #
def test_clear_errors(small, tmp_path):
    X, y = small
    pairs = _pairs(X, y, 3)
    with pytest.raises(ValueError, match="shards is empty"):
        fit_stream(_reg(), [])
    with pytest.raises(ValueError, match="shards is empty"):
        fit_stream(_reg(), NpzShards([]))
    with pytest.raises(ValueError, match="shards is empty"):
        fit_stream(_reg(), (), shuffle=False)
    with pytest.raises(ValueError, match=r"shard 2 has 100 features, but the shards before"):
        fit_stream(_reg(), pairs[:2] + [(X[:50, :100], y[:50])], shuffle=False, n_epochs=1)
    files = save_npz_shards(X, y, tmp_path, n_shards=2)
    narrow = save_npz_shards(X[:, :100], y, tmp_path / "narrow", n_shards=1)
    mixed = NpzShards(files.X_paths + narrow.X_paths, files.y_paths + narrow.y_paths)
    with pytest.raises(ValueError, match=r"shard 2 \(.*narrow.*\) has 100 features"):
        fit_stream(_reg(), mixed, shuffle=False, n_epochs=1)
    est = _reg(max_iter=2, warm_start=True).fit(X, y)
    with pytest.raises(ValueError, match="the model was fitted with 4096"):
        fit_stream(est, [(X[:50, :100], y[:50])])
    with pytest.raises(ValueError, match="X has 200 rows but y has 199"):
        fit_stream(_reg(), [(X[:200], y[:199])])
    with pytest.raises(TypeError, match="not a pair"):
        fit_stream(_reg(), [X[:200]])
    with pytest.raises(TypeError, match="not a pair"):
        fit_stream(_reg(), (X, y))  # one data set, not a sequence of shards
    with pytest.raises(TypeError, match="iterator"):
        fit_stream(_reg(), iter(pairs))
    with pytest.raises(TypeError, match="not a single"):
        fit_stream(_reg(), X)
    with pytest.raises(TypeError, match="NpzShards"):
        fit_stream(_reg(), str(tmp_path))
    with pytest.raises(ValueError, match="shuffle=True needs"):
        fit_stream(_reg(), {"a": 1}.keys())
    with pytest.raises(ValueError, match="early_stopping=True"):
        fit_stream(_reg(early_stopping=True), pairs)
    with pytest.raises(TypeError, match="no partial_fit"):
        fit_stream(object(), pairs, n_epochs=1)
    with pytest.raises(ValueError, match="cannot load"):
        fit_stream(_reg(), [(tmp_path / "X.csv", None)])
    with pytest.raises(ValueError, match=r"validation has 100 features, but shard \d has 4096"):
        fit_stream(_reg(), pairs, validation=(X[:50, :100], y[:50]))
    with pytest.raises(ValueError, match="scoring is used only with validation"):
        fit_stream(_reg(), pairs, scoring="r2")
    with pytest.raises(ValueError, match="shard 1: .*NaN"):
        bad = X[200:400].copy()
        bad.data[0] = np.nan
        fit_stream(_reg(), [pairs[0], (bad, y[200:400])], shuffle=False, n_epochs=1)
    with pytest.raises(ValueError, match="same length"):
        NpzShards(files.X_paths, files.y_paths[:1])
    with pytest.raises(TypeError, match="sequence of file paths"):
        NpzShards(str(files.X_paths[0]))
    with pytest.raises(ValueError, match="larger than the number of rows"):
        save_npz_shards(X[:3], y[:3], tmp_path, n_shards=4)


# --------------------------------------------------------------------------- #
# Progress, interruption, documentation
# --------------------------------------------------------------------------- #
def test_verbose_prints_one_line_per_epoch(small, capsys):
    X, y = small
    train, val = _pairs(X[:450], y[:450], 3), (X[450:], y[450:])
    fit_stream(_reg(), train, validation=val, n_epochs=3, n_iter_no_change=5, verbose=1)
    lines = capsys.readouterr().out.strip().splitlines()
    epochs = [line for line in lines if line.startswith("Epoch ")]
    assert len(epochs) == 3
    assert epochs[0].startswith("Epoch 1/3: 450 rows, loss = ")
    assert "validation score = " in epochs[0] and "rows/s" in epochs[0]
    assert lines[-1].startswith("Restored the weights of epoch ")
    fit_stream(_reg(), train, n_epochs=2)  # verbose=0: silent
    assert capsys.readouterr().out == ""


@pytest.mark.skipif(threading.current_thread() is not threading.main_thread(),
                    reason="SIGINT handlers can only be set in the main thread")
def test_sigint_stops_after_the_current_minibatch(small, monkeypatch):
    # The signal arrives inside partial_fit's training loop (whose handler
    # finishes the step) and must stop fit_stream too, not only that shard.
    X, y = small
    original = _network.SparseNetwork.step
    calls = {"n": 0}

    def step(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 5:
            signal.raise_signal(signal.SIGINT)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(_network.SparseNetwork, "step", step)
    before = signal.getsignal(signal.SIGINT)
    with pytest.warns(UserWarning, match="interrupted"):
        est, history = fit_stream(_reg(batch_size=50), _pairs(X, y, 6), n_epochs=5,
                                  return_history=True)
    assert calls["n"] == 5  # no step after the interrupted one
    assert history.n_epochs == 0
    assert np.isfinite(est.predict(X[:10])).all()
    assert signal.getsignal(signal.SIGINT) is before


def test_docstring_examples_run():
    result = doctest.testmod(sksparsenn.stream, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_example_script_runs(capsys, tmp_path):
    spec = importlib.util.spec_from_file_location("stream_shards",
                                                  EXAMPLES / "stream_shards.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    out = module.main(["--n-shards", "3", "--rows-per-shard", "500", "--n-features",
                       str(2**14), "--hidden", "16", "--n-epochs", "2",
                       "--out-dir", str(tmp_path)])
    printed = capsys.readouterr().out
    assert "peak RSS:" in printed and "test R^2" in printed and "in memory (fit)" in printed
    assert np.isfinite(out["r2"]) and out["peak_rss_mib"] > 0
    assert np.isfinite(out["in_memory"]["r2"]) and out["in_memory"]["peak_rss_mib"] > 0
    assert list(tmp_path.iterdir()) == []  # the shards were removed
