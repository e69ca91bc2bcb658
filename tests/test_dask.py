"""Model selection on a Dask cluster, and the OpenMP threads of its workers.

GridSearchCV and RandomizedSearchCV run their fits through joblib; inside
``joblib.parallel_config(backend="dask")`` with a ``distributed.Client``,
those fits run on the cluster's workers. The results must equal those of
``n_jobs=1``: same splits, same seeds, and kernels whose sums do not depend
on the number of threads.

The workers are separate processes started by nannies, on the loopback
interface only, with ports chosen by the OS. A nanny sets the variables of
the config ``distributed.nanny.pre-spawn-environ`` (``OMP_NUM_THREADS=1`` by
default) in the environment of the worker process it starts, so the kernels
there run on one thread unless the user configures otherwise
(doc/scaling_out.rst). The nanny also writes those variables into the
environment of the process that starts it, so each cluster here is started
inside a monkeypatch context that restores this process's environment.
"""

import contextlib
import logging
import os

import numpy as np
import pytest

distributed = pytest.importorskip("distributed")

import dask  # noqa: E402
import joblib  # noqa: E402
from numpy.testing import assert_array_equal  # noqa: E402
from scipy.stats import loguniform  # noqa: E402
from sklearn.linear_model import Ridge  # noqa: E402
from sklearn.model_selection import GridSearchCV, KFold, RandomizedSearchCV  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402

from sksparsenn import SparseMLPRegressor, SparseMLPTransformer  # noqa: E402
from sksparsenn._openmp_helpers import _openmp_enabled  # noqa: E402
from sksparsenn.datasets import make_sparse_regression  # noqa: E402

TIMEOUT = 60  # seconds, for connecting and for single results

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")

needs_openmp = pytest.mark.skipif(
    not _openmp_enabled(), reason="kernels built without OpenMP run on one thread"
)


@contextlib.contextmanager
def _local_cluster(omp_num_threads=None):
    """Client of a 2-worker LocalCluster (processes, 1 thread each, loopback).

    ``omp_num_threads``: the value of ``OMP_NUM_THREADS`` the nannies set in
    their workers, through ``distributed.nanny.pre-spawn-environ``; None
    keeps distributed's default.
    """
    config = {}
    if omp_num_threads is not None:
        config["distributed.nanny.pre-spawn-environ.OMP_NUM_THREADS"] = omp_num_threads
    with pytest.MonkeyPatch.context() as mp:
        # Variables of this process's environment override the config's (see
        # distributed.nanny._get_env_variables); remove them, and let the
        # monkeypatch restore them and undo what the nannies write.
        spawn_env = dict(dask.config.get("distributed.nanny.pre-spawn-environ"))
        for name in list(spawn_env) + ["PYTHONHASHSEED"]:
            mp.delenv(name, raising=False)
        with dask.config.set(config):  # read when the nannies are created
            cluster = distributed.LocalCluster(
                n_workers=2, processes=True, threads_per_worker=1, host="127.0.0.1",
                scheduler_port=0, dashboard_address=None, silence_logs=logging.ERROR,
                # the scheduler's HTTP routes (no dashboard): a free port, not 8787
                scheduler_kwargs={"dashboard_address": "127.0.0.1:0"},
            )
        try:
            with distributed.Client(cluster, timeout=f"{TIMEOUT}s") as client:
                client.wait_for_workers(2, timeout=TIMEOUT)
                yield client
        finally:
            cluster.close(timeout=TIMEOUT)


@pytest.fixture(scope="module")
def client():
    """A cluster whose workers each give the kernels 2 OpenMP threads."""
    with _local_cluster(omp_num_threads=2) as c:
        yield c


@pytest.fixture(scope="module")
def data():
    X, y = make_sparse_regression(n_samples=400, n_features=2**12, random_state=0)
    return X, y


def _split_scores(search):
    keys = sorted(k for k in search.cv_results_ if k.startswith("split") and "test" in k)
    return np.array([search.cv_results_[k] for k in keys])


def _threads_in_worker():
    # Imported inside the worker, as a user's task would.
    from sksparsenn._openmp_helpers import _openmp_effective_n_threads

    return _openmp_effective_n_threads()


@needs_openmp
def test_workers_use_the_configured_openmp_threads(client):
    per_worker = client.run(_threads_in_worker)
    assert len(per_worker) == 2
    assert set(per_worker.values()) == {2}
    # ... and so does a task running in the worker's thread pool.
    assert client.submit(_threads_in_worker, pure=False).result(timeout=TIMEOUT) == 2


@needs_openmp
def test_default_cluster_runs_kernels_on_one_thread():
    # The pitfall: distributed's default pre-spawn environment has
    # OMP_NUM_THREADS=1, so without configuration the kernels in every worker
    # run single-threaded, without any warning.
    assert dask.config.get("distributed.nanny.pre-spawn-environ.OMP_NUM_THREADS") == 1
    before = os.environ.get("OMP_NUM_THREADS")
    with _local_cluster() as c:
        assert os.environ.get("OMP_NUM_THREADS") == "1"  # written by the nannies
        assert set(c.run(_threads_in_worker).values()) == {1}
        assert c.submit(_threads_in_worker, pure=False).result(timeout=TIMEOUT) == 1
    assert os.environ.get("OMP_NUM_THREADS") == before


def test_grid_search_on_dask_equals_n_jobs_1(client, data):
    X, y = data
    estimator = SparseMLPRegressor(hidden_layer_sizes=(8,), solver="sgd",
                                   learning_rate_init=0.05, row_scaling="l2",
                                   max_iter=5, random_state=0)
    grid = {"alpha": [1e-4, 1e-2], "hidden_layer_sizes": [(8,), (16,)]}
    cv = KFold(3, shuffle=True, random_state=0)

    local = GridSearchCV(estimator, grid, cv=cv, n_jobs=1).fit(X, y)
    with distributed.get_task_stream(client) as tasks:
        with joblib.parallel_config(backend="dask"):
            remote = GridSearchCV(estimator, grid, cv=cv, n_jobs=-1).fit(X, y)

    assert len(tasks.data) > 0  # the fits ran on the cluster
    assert_array_equal(_split_scores(remote), _split_scores(local))
    assert remote.best_params_ == local.best_params_
    assert_array_equal(remote.predict(X[:50]), local.predict(X[:50]))


def test_randomized_search_of_pipeline_on_dask_equals_n_jobs_1(client, data):
    X, y = data
    pipe = make_pipeline(
        SparseMLPTransformer(hidden_layer_sizes=(8,), solver="sgd", learning_rate_init=0.05,
                             row_scaling="l2", max_iter=5, random_state=0),
        Ridge(),
    )
    space = {"sparsemlptransformer__alpha": loguniform(1e-5, 1e-1),
             "ridge__alpha": [0.1, 1.0, 10.0]}
    kwargs = dict(n_iter=3, cv=2, random_state=0)

    local = RandomizedSearchCV(pipe, space, n_jobs=1, **kwargs).fit(X, y)
    with joblib.parallel_config(backend="dask"):
        remote = RandomizedSearchCV(pipe, space, n_jobs=-1, **kwargs).fit(X, y)

    assert_array_equal(_split_scores(remote), _split_scores(local))
    assert remote.cv_results_["params"] == local.cv_results_["params"]

