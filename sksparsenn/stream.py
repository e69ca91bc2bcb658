"""Training on data larger than memory: epochs over shards with ``partial_fit``.

The data lives in shards, e.g. files on disk written with
:func:`scipy.sparse.save_npz` (X) and :func:`numpy.save` (y).
:func:`fit_stream` runs epochs over them: it loads one shard, calls the
estimator's ``partial_fit`` on it, frees it and loads the next, in a new
seeded order at every epoch. Memory stays bounded by one shard plus the model
(and the held-out set, if one is given), whatever the number of shards.
After each epoch it can score a held-out set, stop when the score no longer
improves and restore the weights of the best epoch, as ``fit`` does with
``early_stopping=True``.

:class:`NpzShards` is a lazy sequence of shards on disk: indexing it loads
one shard. :func:`save_npz_shards` writes an in-memory data set in that
layout.

Over one shard, ``fit_stream`` computes what ``fit`` does (bit for bit
without the L2 penalty, whose lazy catch-up ``partial_fit`` applies at the
end of each call). Over several, each epoch still
sees every row once, in minibatches of ``batch_size`` rows (when the shards'
sizes are multiples of it) with the same learning-rate schedule; only rows of
different shards never share a minibatch. On the built-in data, the test R^2
after the same number of epochs is within 0.01 of an in-memory ``fit``'s.
"""

import copy
import os
import time
import warnings
from collections.abc import Iterator
from numbers import Integral, Real
from pathlib import Path

import numpy as np
import scipy.sparse as sp
from sklearn.base import clone
from sklearn.exceptions import ConvergenceWarning, NotFittedError
from sklearn.metrics import check_scoring
from sklearn.utils import Bunch, check_random_state
from sklearn.utils._param_validation import Interval, validate_params
from sklearn.utils.validation import check_is_fitted

from ._base import _InterruptFlag

__all__ = ["NpzShards", "fit_stream", "save_npz_shards"]


class NpzShards:
    """A sequence of (X, y) shards on disk, loaded one at a time.

    ``shards[i]`` reads shard ``i`` from its files and returns ``(X, y)``:
    X with :func:`scipy.sparse.load_npz`, y with :func:`numpy.load` (None
    without ``y_paths``). Nothing is cached, so a shard's memory is freed as
    soon as the caller drops it. Slicing returns the sub-sequence, still
    lazy, e.g. to keep one shard out for validation.

    Parameters
    ----------
    X_paths : sequence of str or path-like
        Files of the shards' X, written by :func:`scipy.sparse.save_npz`.

    y_paths : sequence of str or path-like, default=None
        Files of the shards' y, written by :func:`numpy.save`, one per X file
        and in the same order. None: shards without targets, for
        ``partial_fit(X)`` (e.g. :class:`~sksparsenn.SparseMLPTransformer`
        trained as an autoencoder).

    Attributes
    ----------
    X_paths : list of pathlib.Path
        Files of the shards' X.

    y_paths : list of pathlib.Path or None
        Files of the shards' y.

    See Also
    --------
    save_npz_shards : Write a data set as shards in this layout.
    fit_stream : Train an estimator through the shards.

    Examples
    --------
    >>> import tempfile
    >>> from sksparsenn.datasets import make_sparse_regression
    >>> from sksparsenn.stream import NpzShards, save_npz_shards
    >>> X, y = make_sparse_regression(n_samples=300, n_features=2**12,
    ...                               random_state=0)
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     shards = save_npz_shards(X, y, tmp, n_shards=3)
    ...     same = NpzShards(shards.X_paths, shards.y_paths)
    ...     X1, y1 = same[1]
    ...     print(len(same), X1.shape, y1.shape)
    3 (100, 4096) (100, 8)
    """

    def __init__(self, X_paths, y_paths=None):
        if isinstance(X_paths, (str, os.PathLike)):
            raise TypeError(
                "X_paths must be a sequence of file paths, one per shard, not a "
                f"single path ({X_paths!r})."
            )
        self.X_paths = [Path(p) for p in X_paths]
        if y_paths is None:
            self.y_paths = None
        else:
            if isinstance(y_paths, (str, os.PathLike)):
                raise TypeError(
                    "y_paths must be a sequence of file paths, one per shard, not a "
                    f"single path ({y_paths!r})."
                )
            self.y_paths = [Path(p) for p in y_paths]
            if len(self.y_paths) != len(self.X_paths):
                raise ValueError(
                    f"X_paths and y_paths must have the same length, got "
                    f"{len(self.X_paths)} and {len(self.y_paths)}."
                )

    def __len__(self):
        return len(self.X_paths)

    def __getitem__(self, index):
        if isinstance(index, slice):
            y_paths = None if self.y_paths is None else self.y_paths[index]
            return NpzShards(self.X_paths[index], y_paths)
        X = sp.load_npz(self.X_paths[index])
        y = None if self.y_paths is None else np.load(self.y_paths[index])
        return X, y

    def describe(self, index):
        """Name shard ``index`` in messages: the path of its X file.

        Parameters
        ----------
        index : int
            Position of the shard.

        Returns
        -------
        description : str
            The path of the shard's X file.
        """
        return str(self.X_paths[index])

    def __repr__(self):
        if not self.X_paths:
            return "NpzShards([])"
        return (f"NpzShards({len(self)} shards: {self.X_paths[0]} ... "
                f"{self.X_paths[-1]}, y={'no' if self.y_paths is None else 'yes'})")


@validate_params(
    {
        "X": ["array-like", "sparse matrix"],
        "y": ["array-like", None],
        "directory": [str, os.PathLike],
        "n_shards": [Interval(Integral, 1, None, closed="left")],
        "prefix": [str],
        "compressed": ["boolean"],
    },
    prefer_skip_nested_validation=True,
)
def save_npz_shards(X, y, directory, n_shards, *, prefix="shard", compressed=False):
    """Split a data set into shards of consecutive rows and save them to disk.

    Shard ``i`` is written as ``{prefix}-{i:05d}.X.npz``
    (:func:`scipy.sparse.save_npz`, CSR) and, with y, ``{prefix}-{i:05d}.y.npy``
    (:func:`numpy.save`). Rows are not shuffled: shuffle them first if the
    data are ordered (e.g. by time or by label), since :func:`fit_stream`
    shuffles the order of the shards and the rows within a shard, but never
    mixes rows of different shards in one minibatch.

    Parameters
    ----------
    X : {array-like, sparse matrix} of shape (n_samples, n_features)
        Input; each shard is stored as CSR.

    y : array-like of shape (n_samples,) or (n_samples, n_outputs) or None
        Targets; None writes no y files.

    directory : str or path-like
        Where to write the files; created if missing.

    n_shards : int
        Number of shards; their sizes differ by at most one row.

    prefix : str, default='shard'
        Start of the file names.

    compressed : bool, default=False
        Whether to compress X's files (smaller on disk, slower to load at
        every epoch).

    Returns
    -------
    shards : NpzShards
        The shards just written, loaded lazily.

    See Also
    --------
    NpzShards : The lazy sequence of shards returned.
    fit_stream : Train an estimator through the shards.

    Examples
    --------
    >>> import tempfile
    >>> from sksparsenn.datasets import make_sparse_regression
    >>> from sksparsenn.stream import save_npz_shards
    >>> X, y = make_sparse_regression(n_samples=1000, n_features=2**12,
    ...                               random_state=0)
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     shards = save_npz_shards(X, y, tmp, n_shards=4)
    ...     print(len(shards), shards.X_paths[0].name, shards[0][0].shape)
    4 shard-00000.X.npz (250, 4096)
    """
    n_samples = X.shape[0]
    if y is not None:
        y = np.asarray(y)
        if y.shape[0] != n_samples:
            raise ValueError(
                f"X and y have different numbers of rows: {n_samples} and {y.shape[0]}."
            )
    if n_shards > n_samples:
        raise ValueError(f"n_shards={n_shards} is larger than the number of rows, {n_samples}.")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    bounds = np.linspace(0, n_samples, n_shards + 1).round().astype(np.int64)
    X_paths, y_paths = [], []
    for i, (start, stop) in enumerate(zip(bounds[:-1], bounds[1:])):
        X_path = directory / f"{prefix}-{i:05d}.X.npz"
        sp.save_npz(X_path, sp.csr_matrix(X[start:stop]), compressed=compressed)
        X_paths.append(X_path)
        if y is not None:
            y_path = directory / f"{prefix}-{i:05d}.y.npy"
            np.save(y_path, y[start:stop])
            y_paths.append(y_path)
    return NpzShards(X_paths, y_paths if y is not None else None)


# --------------------------------------------------------------------------- #
def _load_array(obj, what):
    """Load ``obj`` if it is a path (.npz: sparse, .npy: dense), else return it."""
    if not isinstance(obj, (str, os.PathLike)):
        return obj
    path = Path(obj)
    if path.suffix == ".npz":
        return sp.load_npz(path)
    if path.suffix == ".npy":
        return np.load(path)
    raise ValueError(
        f"{what}: cannot load {str(path)!r}; expected a .npz file written by "
        "scipy.sparse.save_npz or a .npy file written by numpy.save."
    )


def _load_shard(item, what):
    """Turn one element of ``shards`` (or ``validation``) into (X, y)."""
    if callable(item):
        item = item()
    if not isinstance(item, (tuple, list)) or len(item) != 2:
        raise TypeError(
            f"{what} is {_type_name(item)}, not a pair (X, y). Each shard must be a "
            "pair (X, y) (arrays or .npz/.npy paths; y may be None) or a callable "
            "without arguments returning one, e.g. [(X0, y0), (X1, y1)] or "
            "NpzShards(X_paths, y_paths)."
        )
    X = _load_array(item[0], what)
    y = _load_array(item[1], what)
    if not hasattr(X, "shape") or len(X.shape) != 2:
        raise ValueError(
            f"{what}: X must be a 2-D array or sparse matrix, got {_type_name(X)}."
        )
    if y is not None:
        n_y = len(y) if not hasattr(y, "shape") else y.shape[0]
        if n_y != X.shape[0]:
            raise ValueError(
                f"{what}: X has {X.shape[0]} rows but y has {n_y}."
            )
    return X, y


def _type_name(obj):
    if isinstance(obj, (tuple, list)):
        return f"a {type(obj).__name__} of length {len(obj)}"
    return f"a {type(obj).__module__}.{type(obj).__qualname__}"


def _check_shards(shards):
    """Number of shards (None for an iterable without len and indexing).

    Rejects what cannot be passed over several times, or is not shards at all.
    """
    if isinstance(shards, (str, bytes, os.PathLike)):
        raise TypeError(
            "shards must be a sequence of (X, y) pairs, not a path; for files on "
            "disk use NpzShards(X_paths, y_paths)."
        )
    if sp.issparse(shards) or isinstance(shards, np.ndarray):
        raise TypeError(
            "shards must be a sequence of (X, y) pairs, not a single "
            f"{_type_name(shards)}; to train on one in-memory data set, call "
            "estimator.fit(X, y)."
        )
    if isinstance(shards, Iterator):
        raise TypeError(
            "shards is an iterator, which can be traversed only once; fit_stream "
            "makes several passes. Pass a sequence (a list of (X, y) pairs or of "
            "callables returning them, or NpzShards) or an iterable whose iter() "
            "starts a new pass."
        )
    if not hasattr(shards, "__iter__") and not hasattr(shards, "__getitem__"):
        raise TypeError(
            f"shards must be a sequence of (X, y) pairs, got {_type_name(shards)}."
        )
    if hasattr(shards, "__len__") and hasattr(shards, "__getitem__"):
        n = len(shards)
        if n == 0:
            raise ValueError("shards is empty: there is nothing to train on.")
        return n
    return None


def _describe(shards, index):
    if hasattr(shards, "describe"):
        return f"shard {index} ({shards.describe(index)})"
    return f"shard {index}"


def _weights_copy(estimator):
    """Copy of the estimator's fitted weights, to restore the best epoch.

    For sksparsenn's estimators only the weight arrays are copied (as ``fit``
    does with ``early_stopping``), not the optimizer state; other estimators
    are deep-copied whole.
    """
    net = getattr(estimator, "_network", None)
    if net is not None and hasattr(net, "copy_params"):
        return net.copy_params()  # partial_fit has caught up lazy regularisation
    return copy.deepcopy(estimator)


def _restore_weights(estimator, saved):
    net = getattr(estimator, "_network", None)
    if net is not None and isinstance(saved, tuple):
        net.set_params_from(*saved)
    else:
        vars(estimator).clear()
        vars(estimator).update(vars(saved))


def _unfit(estimator):
    """Bring the estimator back to its unfitted state, parameters unchanged."""
    fresh = clone(estimator)
    vars(estimator).clear()
    vars(estimator).update(vars(fresh))


@validate_params(
    {
        "estimator": "no_validation",  # checked below: needs partial_fit
        "shards": "no_validation",
        "n_epochs": [Interval(Integral, 1, None, closed="left"), None],
        "validation": [tuple, list, callable, None],
        "scoring": [str, callable, None],
        "early_stopping": ["boolean"],
        "n_iter_no_change": [Interval(Integral, 1, None, closed="left"), None],
        "tol": [Interval(Real, 0, None, closed="left"), None],
        "shuffle": ["boolean"],
        "random_state": ["random_state"],
        "verbose": ["verbose"],
        "return_history": ["boolean"],
    },
    prefer_skip_nested_validation=True,
)
def fit_stream(
    estimator,
    shards,
    *,
    n_epochs=None,
    validation=None,
    scoring=None,
    early_stopping=True,
    n_iter_no_change=None,
    tol=None,
    shuffle=True,
    random_state=None,
    verbose=0,
    return_history=False,
):
    """Fit an estimator on shards that do not fit in memory together.

    Each epoch visits every shard once, in a new random order: it loads the
    shard, calls ``estimator.partial_fit(X, y)`` on it (``partial_fit(X)``
    when y is None), frees it and loads the next. Only one shard is in memory
    at a time, so memory is bounded by the largest shard plus the model (plus
    ``validation`` and, with early stopping, one copy of the weights),
    whatever the number of shards.

    Like ``fit``, it trains from scratch, unless the estimator has
    ``warm_start=True``, in which case it continues from the current weights
    and optimizer state. After each epoch the stopping rule of ``fit`` is
    applied: with ``validation``, its score (R^2 for a regressor) is computed,
    training stops when it has not improved by ``tol`` for
    ``n_iter_no_change`` consecutive epochs, and the weights of the best
    epoch are restored, as ``fit(early_stopping=True)`` does with its
    held-out rows; without ``validation``, training stops when the mean
    training loss of the epoch stops decreasing by ``tol``, as ``fit`` does
    without early stopping.

    Parameters
    ----------
    estimator : estimator instance
        An estimator with ``partial_fit``, e.g.
        :class:`~sksparsenn.SparseMLPRegressor` or
        :class:`~sksparsenn.SparseMLPTransformer`. It is fitted in place. Its
        own ``early_stopping`` must not be True (``partial_fit`` cannot hold
        out rows; 'auto' is off in ``partial_fit``); pass ``validation``
        instead. Each shard is one call to
        ``partial_fit``, which shuffles the shard's rows (``shuffle``) and
        splits them into minibatches of ``batch_size``.

    shards : sequence
        The training data. Each element is a pair ``(X, y)`` or a callable
        without arguments returning one, so that it is loaded only when
        needed. X is any input ``partial_fit`` accepts (a CSR matrix) or the
        path of a ``.npz`` file written by :func:`scipy.sparse.save_npz`; y is
        an array, the path of a ``.npy`` file, or None (``partial_fit(X)``).
        :class:`NpzShards` is such a sequence for files on disk. An iterable
        without ``len`` and indexing (whose ``iter()`` starts a new pass) is
        accepted with ``shuffle=False``; a one-shot iterator (a generator) is
        not, since there are several epochs. Empty shards are skipped.

    n_epochs : int, default=None
        Maximum number of passes over the shards. None: the estimator's
        ``max_iter``.

    validation : pair (X_val, y_val) or callable, default=None
        Held-out data, in the same forms as an element of ``shards``; loaded
        once and kept in memory. Scored after every epoch with ``scoring``.

    scoring : str or callable, default=None
        How to score ``validation``: a scikit-learn scorer name or a callable
        ``scorer(estimator, X, y)``, greater is better. None: the
        estimator's ``score`` method (R^2 for a regressor).

    early_stopping : bool, default=True
        Whether to stop when the monitored value (the validation score with
        ``validation``, else the epoch's mean training loss ``loss_``) stops
        improving, and, with ``validation``, to restore the weights of the
        best epoch. False: run ``n_epochs`` epochs and keep the last weights
        (validation scores are still recorded).

    n_iter_no_change : int, default=None
        Number of epochs without improvement by ``tol`` before stopping.
        None: the estimator's ``n_iter_no_change`` (10 if it has none).

    tol : float, default=None
        Minimum improvement of the monitored value. None: the estimator's
        ``tol`` (1e-4 if it has none).

    shuffle : bool, default=True
        Whether to visit the shards in a new random order at every epoch.

    random_state : int, RandomState instance or None, default=None
        Seeds the order of the shards. None: the estimator's
        ``random_state`` when it has one (so a seeded estimator trains
        reproducibly), else a fresh seed.

    verbose : int, default=0
        Print one line per epoch (rows, mean training loss, validation
        score, time) and the reason for stopping.

    return_history : bool, default=False
        Whether to also return the history of the training.

    Returns
    -------
    estimator : estimator instance
        The fitted estimator (the same object). Its attributes are those
        ``partial_fit`` sets: e.g. ``n_iter_`` counts its calls (one per shard
        and epoch) and ``loss_curve_`` has one loss per call.

    history : sklearn.utils.Bunch
        Only with ``return_history=True``. Keys: ``n_epochs`` (epochs run),
        ``loss`` (mean training loss of each epoch, when the estimator
        reports ``loss_``, else None), ``validation_score`` (score of each
        epoch, or None), ``best_epoch`` (1-based, the epoch whose weights the
        estimator has, with validation and early stopping, else None),
        ``best_validation_score``, ``shard_order`` (the shards' indices in
        the order of each epoch; None for an iterable without indexing),
        ``n_rows`` (rows per epoch) and ``stopped_early``.

    See Also
    --------
    NpzShards : A lazy sequence of shards on disk.
    save_npz_shards : Write a data set as shards on disk.

    Notes
    -----
    Rows of different shards never meet in a minibatch, so shards should not
    be ordered by anything the model should not follow (time, target): shuffle
    the rows before writing the shards. Each call to ``partial_fit`` splits
    its shard into minibatches of ``batch_size`` rows; when a shard's rows are
    not a multiple of ``batch_size``, its last minibatch is smaller, so an
    epoch takes more, smaller steps than ``fit`` does (with 'sgd', a larger
    effective learning rate). Shards of a multiple of ``batch_size`` rows
    give the steps of ``fit``. The learning-rate schedules of
    ``partial_fit`` run per call: 'invscaling' follows the number of rows seen
    (``t_``), so it takes the same course as in ``fit``; solver='sgd' with
    learning_rate='adaptive' divides the rate when the loss of successive
    shards (not epochs) stops decreasing, so prefer 'constant' or
    'invscaling' here.

    A KeyboardInterrupt (Ctrl-C) finishes the current minibatch, skips the
    remaining shards, restores the best weights with early stopping, and
    returns with a warning.

    Examples
    --------
    >>> import tempfile
    >>> from sksparsenn import SparseMLPRegressor
    >>> from sksparsenn.datasets import make_sparse_regression
    >>> from sksparsenn.stream import fit_stream, save_npz_shards
    >>> X, y = make_sparse_regression(n_samples=3000, n_features=2**14,
    ...                               random_state=0)
    >>> model = SparseMLPRegressor(hidden_layer_sizes=(32,), solver="sgd",
    ...                            learning_rate_init=0.05, row_scaling="l2",
    ...                            random_state=0)
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     shards = save_npz_shards(X[:2000], y[:2000], tmp, n_shards=4)
    ...     model, history = fit_stream(model, shards, n_epochs=5,
    ...                                 early_stopping=False,
    ...                                 validation=(X[2000:2500], y[2000:2500]),
    ...                                 return_history=True)
    >>> history.n_epochs, len(history.validation_score), model.n_iter_
    (5, 5, 20)
    >>> model.predict(X[2500:]).shape
    (500, 8)
    """
    if not hasattr(estimator, "partial_fit"):
        raise TypeError(
            f"{type(estimator).__name__} has no partial_fit method; fit_stream "
            "trains estimators that can learn one shard at a time."
        )
    params = estimator.get_params(deep=False) if hasattr(estimator, "get_params") else {}
    early_stopping_param = params.get("early_stopping", False)
    if not isinstance(early_stopping_param, str) and early_stopping_param:  # 'auto' is off
        raise ValueError(
            f"{type(estimator).__name__} has early_stopping=True, which "
            "partial_fit cannot use (it would have to hold out rows of every "
            "shard). Set early_stopping=False on the estimator and pass a "
            "held-out set to fit_stream(validation=(X_val, y_val))."
        )
    n_shards = _check_shards(shards)
    if n_shards is None and shuffle:
        raise ValueError(
            "shuffle=True needs shards with len() and indexing (a list or "
            "NpzShards) to draw an order; pass such a sequence or shuffle=False."
        )
    if n_epochs is None:
        if "max_iter" not in params:
            raise ValueError(
                f"{type(estimator).__name__} has no max_iter; pass n_epochs."
            )
        n_epochs = int(params["max_iter"])
    if n_iter_no_change is None:
        n_iter_no_change = int(params.get("n_iter_no_change", 10))
    if tol is None:
        tol = float(params.get("tol", 1e-4) or 0.0)
    if random_state is None:
        random_state = params.get("random_state")
    rng = check_random_state(random_state)

    X_val = y_val = scorer = None
    if validation is not None:
        X_val, y_val = _load_shard(validation, "validation")
        scorer = check_scoring(estimator, scoring=scoring)
    elif scoring is not None:
        raise ValueError("scoring is used only with validation; pass validation=(X_val, y_val).")

    if not (params.get("warm_start", False) and _is_fitted(estimator)):
        _unfit(estimator)
    n_features = getattr(estimator, "n_features_in_", None) if _is_fitted(estimator) else None
    where_features = "the model was fitted with"
    if n_features is not None:
        _check_validation_features(X_val, n_features, "the model")

    history = Bunch(n_epochs=0, loss=[], validation_score=[] if scorer else None,
                    best_epoch=None, best_validation_score=None,
                    shard_order=[] if n_shards is not None else None, n_rows=[],
                    stopped_early=False)
    best_score = -np.inf
    best_loss = np.inf
    no_improvement = 0
    saved = None
    interrupted = False
    reports_loss = True
    with _InterruptFlag() as flag:
        try:
            for epoch in range(1, n_epochs + 1):
                tic = time.perf_counter()
                if n_shards is None:
                    items = enumerate(shards)
                else:
                    order = rng.permutation(n_shards) if shuffle else np.arange(n_shards)
                    history.shard_order.append(order)
                    items = ((int(i), shards[int(i)]) for i in order)  # loaded lazily
                rows = 0
                loss_sum = 0.0
                n_seen = 0
                for index, item in items:
                    what = _describe(shards, index)
                    X, y = _load_shard(item, what)
                    del item  # X and y are the only references to the shard
                    n_seen += 1
                    if X.shape[0] == 0:
                        del X, y
                        continue
                    if n_features is None:
                        n_features, where_features = X.shape[1], "the shards before it have"
                        _check_validation_features(X_val, n_features, what)
                    elif X.shape[1] != n_features:
                        raise ValueError(
                            f"{what} has {X.shape[1]} features, but {where_features} "
                            f"{n_features}."
                        )
                    try:
                        if y is None:
                            estimator.partial_fit(X)
                        else:
                            estimator.partial_fit(X, y)
                    except (ValueError, TypeError) as exc:
                        raise _with_context(exc, what) from exc
                    n_rows = X.shape[0]
                    del X, y  # free the shard before the next one is loaded
                    rows += n_rows
                    loss = getattr(estimator, "loss_", None)
                    if loss is None:
                        reports_loss = False
                    else:
                        loss_sum += float(loss) * n_rows
                    if flag.raised:
                        interrupted = True
                        break
                if n_seen == 0:
                    raise ValueError("shards is empty: there is nothing to train on.")
                if rows == 0:
                    raise ValueError("every shard is empty: there is nothing to train on.")
                if interrupted:
                    break
                history.n_epochs = epoch
                history.n_rows.append(rows)
                epoch_loss = loss_sum / rows if reports_loss else None
                history.loss.append(epoch_loss)
                msg = f"Epoch {epoch}/{n_epochs}: {rows:,} rows"
                if epoch_loss is not None:
                    msg += f", loss = {epoch_loss:.6f}"
                if scorer is not None:
                    score = float(scorer(estimator, X_val, y_val))
                    history.validation_score.append(score)
                    msg += f", validation score = {score:.6f}"
                    improved = score >= best_score + tol
                    if score > best_score:
                        best_score = score
                        history.best_epoch = epoch
                        history.best_validation_score = score
                        if early_stopping:
                            saved = None  # free the previous copy first
                            saved = _weights_copy(estimator)
                    monitored = True
                elif epoch_loss is not None:
                    improved = epoch_loss <= best_loss - tol
                    best_loss = min(best_loss, epoch_loss)
                    monitored = True
                else:
                    improved, monitored = True, False
                no_improvement = 0 if improved else no_improvement + 1
                if verbose:
                    seconds = time.perf_counter() - tic
                    rate = rows / seconds if seconds > 0 else float("inf")
                    print(f"{msg}, time = {seconds:.1f}s, {rate:,.0f} rows/s", flush=True)
                if early_stopping and monitored and no_improvement > n_iter_no_change:
                    history.stopped_early = True
                    if verbose:
                        what = "Validation score" if scorer is not None else "Training loss"
                        print(f"{what} did not improve more than tol={tol:f} for "
                              f"{n_iter_no_change} consecutive epochs. Stopping.", flush=True)
                    break
            else:
                if early_stopping and monitored:
                    warnings.warn(
                        f"fit_stream: maximum number of epochs ({n_epochs}) reached and "
                        "the optimization hasn't converged yet.",
                        ConvergenceWarning,
                    )
        except KeyboardInterrupt:
            interrupted = True
    if interrupted:
        warnings.warn("Training interrupted by user; the model keeps the weights of "
                      + ("the best epoch." if saved is not None
                         else "the last completed minibatch."))
    if saved is not None:
        _restore_weights(estimator, saved)
        if verbose:
            print(f"Restored the weights of epoch {history.best_epoch} "
                  f"(validation score = {history.best_validation_score:.6f}).", flush=True)
    if not reports_loss:
        history.loss = None
    if return_history:
        return estimator, history
    return estimator


def _check_validation_features(X_val, n_features, what):
    if X_val is not None and X_val.shape[1] != n_features:
        raise ValueError(
            f"validation has {X_val.shape[1]} features, but {what} has {n_features}."
        )


def _with_context(exc, what):
    """The same exception, its message prefixed with the shard it concerns."""
    try:
        return type(exc)(f"{what}: {exc}")
    except Exception:  # an exception type with another signature: as it is
        return exc


def _is_fitted(estimator):
    try:
        check_is_fitted(estimator)
    except NotFittedError:
        return False
    return True
