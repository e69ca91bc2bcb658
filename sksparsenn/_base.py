"""The training loop shared by the estimators.

It owns epochs, shuffling, minibatches, the learning-rate schedule, early
stopping, ``partial_fit``/``warm_start``, verbose output and interruption.
It never touches array elements one by one: a step is one call to
``SparseNetwork.step``.
"""

import signal
import threading
import time
import warnings
from numbers import Integral, Real

import numpy as np
import scipy.sparse as sp
from sklearn.base import BaseEstimator
from sklearn.exceptions import ConvergenceWarning
from sklearn.metrics import r2_score
from sklearn.model_selection import train_test_split
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import _check_sample_weight, check_is_fitted, validate_data

from ._network import (
    ROW_SCALINGS,
    SOLVERS,
    SparseAutoencoderNetwork,
    SparseNetwork,
    blas_threads_limit,
    compute_row_scales,
)
from ._openmp_helpers import _openmp_effective_n_threads
from ._validation import as_kernel_csr, check_sparse_structure
from ._version import __version__

_DTYPES = {"float32": np.float32, "float64": np.float64}
# early_stopping='auto' holds out rows only when at least this many would be
# held out: the R^2 of fewer rows is too noisy to pick the best epoch by.
_AUTO_ES_MIN_ROWS = 100


def _resolve_dtype(dtype):
    if isinstance(dtype, str):
        return np.dtype(_DTYPES[dtype])
    return np.dtype(dtype)


class _InterruptFlag:
    """Turn SIGINT into a flag checked between minibatches.

    A KeyboardInterrupt raised in the middle of a step could leave the first
    layer updated and the others not; with the flag, the current step
    finishes and the loop stops cleanly. Only possible in the main thread;
    elsewhere KeyboardInterrupt is caught between steps as a fallback.
    """

    def __init__(self):
        self.raised = False
        self._previous = None

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            try:
                self._previous = signal.signal(signal.SIGINT, self._handler)
            except ValueError:  # pragma: no cover - embedded interpreters
                self._previous = None
        return self

    def _handler(self, signum, frame):
        self.raised = True
        outer = getattr(self._previous, "__self__", None)
        if isinstance(outer, _InterruptFlag):  # an enclosing loop (fit_stream) stops too
            outer._handler(signum, frame)

    def __exit__(self, *exc):
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)
        return False


_CHUNK_ROWS = 65536  # rows per slice when averaging or swapping weight arrays


def _update_average(average, net, decay):
    """``average <- decay * average + (1 - decay) * weights``, in place.

    The first call copies the weights. Works on slices of rows, so that no
    temporary as large as the first layer is made.
    """
    if average is None:
        return net.copy_params()
    for avg, w in _pairs(average, net):
        for start in range(0, avg.shape[0], _CHUNK_ROWS):
            a = avg[start:start + _CHUNK_ROWS]
            a *= decay
            a += (1.0 - decay) * w[start:start + _CHUNK_ROWS]
    return average


def _swap_params(net, other):
    """Exchange the network's weights with ``other`` (same layout), in place."""
    for a, w in _pairs(other, net):
        for start in range(0, a.shape[0], _CHUNK_ROWS):
            tmp = a[start:start + _CHUNK_ROWS].copy()
            a[start:start + _CHUNK_ROWS] = w[start:start + _CHUNK_ROWS]
            w[start:start + _CHUNK_ROWS] = tmp


def _pairs(params, net):
    coefs, intercepts = net.param_arrays()
    return zip(list(params[0]) + list(params[1]), coefs + intercepts)


class BaseSparseMLP(BaseEstimator):
    """Base class of the sparse-input MLP estimators. Not for direct use."""

    _parameter_constraints: dict = {
        "hidden_layer_sizes": ["array-like", Interval(Integral, 1, None, closed="left")],
        "activation": [StrOptions({"identity", "logistic", "tanh", "relu"})],
        "solver": [StrOptions(set(SOLVERS))],
        "alpha": [Interval(Real, 0, None, closed="left")],
        "alpha_l1": [Interval(Real, 0, None, closed="left")],
        "row_scaling": [StrOptions(set(ROW_SCALINGS))],
        "batch_size": [StrOptions({"auto"}), Interval(Integral, 1, None, closed="left")],
        "learning_rate": [StrOptions({"constant", "invscaling", "adaptive"})],
        "learning_rate_init": [StrOptions({"auto"}), Interval(Real, 0, None, closed="neither")],
        "power_t": [Interval(Real, 0, None, closed="left")],
        "max_iter": [Interval(Integral, 1, None, closed="left")],
        "shuffle": ["boolean"],
        "random_state": ["random_state"],
        "tol": [Interval(Real, 0, None, closed="left")],
        "verbose": ["verbose"],
        "warm_start": ["boolean"],
        "momentum": [Interval(Real, 0, 1, closed="both")],
        "nesterovs_momentum": ["boolean"],
        "early_stopping": ["boolean", StrOptions({"auto"})],
        "validation_fraction": [Interval(Real, 0, 1, closed="left")],
        "beta_1": [Interval(Real, 0, 1, closed="left")],
        "beta_2": [Interval(Real, 0, 1, closed="left")],
        "epsilon": [Interval(Real, 0, None, closed="neither")],
        "n_iter_no_change": [Interval(Integral, 1, None, closed="left")],
        "dtype": [StrOptions(set(_DTYPES)), type, np.dtype],
        "input_dropout": [Interval(Real, 0, 1, closed="left")],
        "max_norm": [None, Interval(Real, 0, None, closed="neither")],
        "initial_accumulator_value": [Interval(Real, 0, None, closed="left")],
        "average_decay": [Interval(Real, 0, 1, closed="left")],
    }

    def __init__(
        self,
        hidden_layer_sizes=(100,),
        activation="relu",
        *,
        solver="adam",
        alpha=0.0001,
        alpha_l1=0.0,
        row_scaling="sqrt",
        batch_size="auto",
        learning_rate="constant",
        learning_rate_init=0.001,
        power_t=0.5,
        max_iter=200,
        shuffle=True,
        random_state=None,
        tol=1e-4,
        verbose=False,
        warm_start=False,
        momentum=0.9,
        nesterovs_momentum=True,
        early_stopping=False,
        validation_fraction=0.1,
        beta_1=0.9,
        beta_2=0.999,
        epsilon=1e-8,
        n_iter_no_change=10,
        dtype="float32",
        input_dropout=0.0,
        max_norm=None,
        initial_accumulator_value=0.0,
        average_decay=0.0,
    ):
        self.hidden_layer_sizes = hidden_layer_sizes
        self.activation = activation
        self.solver = solver
        self.alpha = alpha
        self.alpha_l1 = alpha_l1
        self.row_scaling = row_scaling
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.learning_rate_init = learning_rate_init
        self.power_t = power_t
        self.max_iter = max_iter
        self.shuffle = shuffle
        self.random_state = random_state
        self.tol = tol
        self.verbose = verbose
        self.warm_start = warm_start
        self.momentum = momentum
        self.nesterovs_momentum = nesterovs_momentum
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.beta_1 = beta_1
        self.beta_2 = beta_2
        self.epsilon = epsilon
        self.n_iter_no_change = n_iter_no_change
        self.dtype = dtype
        self.input_dropout = input_dropout
        self.max_norm = max_norm
        self.initial_accumulator_value = initial_accumulator_value
        self.average_decay = average_decay

    # ------------------------------------------------------------------ #
    # Validation helpers
    def _compute_dtype(self):
        dtype = _resolve_dtype(self.dtype)
        if dtype not in (np.float32, np.float64):
            raise ValueError(f"dtype must be float32 or float64, got {self.dtype!r}.")
        return dtype

    def _learning_rate_init(self):
        """learning_rate_init, with 'auto' resolved for the solver."""
        if isinstance(self.learning_rate_init, str):  # 'auto'
            return 0.001 if self.solver == "adam" else 0.05
        return float(self.learning_rate_init)

    def _early_stopping_on(self, n_samples, incremental, unsupervised=False):
        """Whether this fit holds out rows and stops on their R^2.

        'auto' turns it on in ``fit`` when the held-out rows would be at least
        ``_AUTO_ES_MIN_ROWS`` (an R^2 on fewer rows is too noisy to stop on);
        never in ``partial_fit`` or for the autoencoder.
        """
        if self.early_stopping == "auto":
            return (not incremental and not unsupervised
                    and self.validation_fraction * n_samples >= _AUTO_ES_MIN_ROWS)
        return bool(self.early_stopping)

    def _hidden_sizes(self):
        sizes = self.hidden_layer_sizes
        if not hasattr(sizes, "__iter__"):
            sizes = [sizes]
        sizes = list(sizes)
        if any(not isinstance(s, Integral) or s <= 0 for s in sizes):
            raise ValueError(
                f"hidden_layer_sizes must be positive integers, got {self.hidden_layer_sizes}."
            )
        return [int(s) for s in sizes]

    def _validate_X(self, X, reset, y="no_validation"):
        """Validate X (and y), return (X as kernel-ready CSR, y as 2-D or None)."""
        dtype = self._compute_dtype()
        check_sparse_structure(X)  # before any scipy conversion reads it
        X_in = X
        common = dict(
            accept_sparse="csr",
            accept_large_sparse=True,
            dtype=dtype,
            reset=reset,
        )
        if isinstance(y, str) and y == "no_validation":
            X = validate_data(self, X, **common)
            y = None
        else:
            X, y = validate_data(self, X, y, multi_output=True, y_numeric=True, **common)
            y = np.asarray(y, dtype=dtype)
            if y.ndim == 1:
                y = y.reshape(-1, 1)
            if not np.isfinite(y).all():
                raise ValueError(
                    f"y has values too large for the compute dtype {dtype.name}; "
                    "rescale y or use dtype='float64'."
                )
        in_data = getattr(X_in, "data", None) if sp.issparse(X_in) else None
        owned = (
            isinstance(in_data, np.ndarray) and X is not X_in
            and not np.shares_memory(X.data, in_data)
        )
        return as_kernel_csr(X, dtype, owned=owned), y

    # ------------------------------------------------------------------ #
    def _initialize(self, n_features, n_outputs, X, sample_weight, early_stopping):
        """Create the network; ``n_outputs`` None makes an autoencoder."""
        dtype = self._compute_dtype()
        self._random_state = check_random_state(self.random_state)
        self._unsupervised = n_outputs is None
        self.n_outputs_ = n_features if self._unsupervised else n_outputs
        layer_units = [n_features] + self._hidden_sizes()
        if not self._unsupervised:
            layer_units.append(n_outputs)
        self.n_layers_ = len(layer_units) + self._unsupervised
        self.out_activation_ = "identity"
        # Typical number of non-zero inputs of a row (stored zeros do not
        # count; weighted like the loss, so that weights equal repetitions).
        # (Explicit zeros are rare: count them by position, without a
        # cumulative sum over all nnz, which would take 8 bytes per value.)
        row_nnz = np.diff(X.indptr)
        zeros = np.flatnonzero(X.data == 0)
        if zeros.size:
            zero_rows = np.searchsorted(X.indptr, zeros, side="right") - 1
            row_nnz = row_nnz - np.bincount(zero_rows, minlength=X.shape[0])
        fan_in = float(np.average(row_nnz, weights=sample_weight)) if X.shape[0] else 1.0
        if self._unsupervised:
            self._network = SparseAutoencoderNetwork(
                layer_units, self.activation, self.solver, dtype, self._random_state, fan_in,
                self.zero_sampling, initial_accumulator=self.initial_accumulator_value,
            )
        else:
            self._network = SparseNetwork(
                layer_units, self.activation, self.solver, dtype, self._random_state, fan_in,
                linear_term=getattr(self, "linear_term", False),
                initial_accumulator=self.initial_accumulator_value,
            )
        self.coefs_ = self._network.coefs
        if self._network.linear_coef is not None:
            self.linear_coef_ = self._network.linear_coef
        self.intercepts_ = self._network.intercepts
        self.n_iter_ = 0
        self.t_ = 0
        self._no_improvement_count = 0
        self._lr = self._learning_rate_init()
        self.loss_curve_ = []
        self._init_early_stopping(early_stopping)

    def _init_early_stopping(self, early_stopping):
        if early_stopping:
            self.validation_scores_ = []
            self.best_validation_score_ = -np.inf
            self.best_loss_ = None
        else:
            self.validation_scores_ = None
            self.best_validation_score_ = None
            self.best_loss_ = np.inf

    def _is_unsupervised(self, y):
        """Whether this fit trains without targets (an estimator that can)."""
        return False

    def _check_network_compatible(self, unsupervised):
        """A warm start or partial_fit must continue the same network."""
        net = self._network
        if unsupervised != self._unsupervised:
            raise ValueError(
                "The model was fitted "
                + ("without y (autoencoder)" if self._unsupervised else "with y")
                + "; a warm start or partial_fit must continue the same way."
            )
        expected = [net.layer_units[0]] + self._hidden_sizes()
        if not unsupervised:
            expected.append(net.layer_units[-1])
        if expected != net.layer_units:
            raise ValueError(
                "hidden_layer_sizes changed since the last fit "
                f"({net.layer_units[1:-1]} -> {expected[1:-1]}); "
                "fit from scratch or set warm_start=False."
            )
        if net.solver != self.solver:
            raise ValueError(
                f"solver changed since the last fit ({net.solver!r} -> {self.solver!r}); "
                "its state cannot be carried over."
            )
        if net.activation != self.activation or net.dtype != self._compute_dtype():
            raise ValueError(
                "activation or dtype changed since the last fit; fit from scratch "
                "or set warm_start=False."
            )
        if (getattr(net, "linear_coef", None) is not None) != bool(
            getattr(self, "linear_term", False)
        ):
            raise ValueError(
                "linear_term changed since the last fit; fit from scratch or set "
                "warm_start=False."
            )

    def _fit(self, X, y, sample_weight, incremental):
        first_pass = not hasattr(self, "_network") or (not self.warm_start and not incremental)
        self._hidden_sizes()
        # True, not 'auto' (which is off in partial_fit and without y)
        early_stopping_forced = not isinstance(self.early_stopping, str) and self.early_stopping
        if incremental and early_stopping_forced:
            raise ValueError("partial_fit does not support early_stopping=True")
        if incremental and self.average_decay > 0:
            raise ValueError(
                "partial_fit does not support average_decay > 0: the average is taken "
                "over the epochs of one fit. Use fit, or set average_decay=0."
            )
        unsupervised = self._is_unsupervised(y)
        if unsupervised:
            if early_stopping_forced:
                raise ValueError(
                    "early_stopping needs y (a validation R^2); it is not available "
                    "for the autoencoder fitted without y."
                )
            X, _ = self._validate_X(X, reset=first_pass)
            y = None  # not used: the network reconstructs X
        else:
            X, y = self._validate_X(X, reset=first_pass, y=y)
        if sample_weight is not None:
            sample_weight = _check_sample_weight(sample_weight, X, dtype=X.dtype)
        early_stopping = self._early_stopping_on(X.shape[0], incremental, unsupervised)
        if first_pass:
            self._initialize(X.shape[1], None if unsupervised else y.shape[1], X, sample_weight,
                             early_stopping)
        else:
            self._check_network_compatible(unsupervised)
            if not unsupervised and y.shape[1] != self.n_outputs_:
                raise ValueError(
                    f"y has {y.shape[1]} outputs, but the model was fitted with "
                    f"{self.n_outputs_}."
                )
        batch = self._batch_size(X.shape[0], warn=False)
        with blas_threads_limit(self._network.layer_units, batch):
            self._fit_stochastic(X, y, sample_weight, incremental, early_stopping)
        return self

    def _batch_size(self, n_samples, warn=True):
        if self.batch_size == "auto":
            return min(200, n_samples)
        if warn and self.batch_size > n_samples:
            warnings.warn(
                "Got `batch_size` less than 1 or larger than sample size. "
                "It is going to be clipped"
            )
        return int(np.clip(self.batch_size, 1, n_samples))

    def _fit_stochastic(self, X, y, sample_weight, incremental, early_stopping):
        n_threads = _openmp_effective_n_threads()
        net = self._network
        rng = self._random_state
        scales = compute_row_scales(X, self.row_scaling, n_threads)
        all_rows = np.arange(X.shape[0], dtype=np.int64)
        self._best_params = None
        if early_stopping and self.validation_scores_ is None:
            self._init_early_stopping(True)  # warm start after a fit without it
        if not early_stopping and self.best_loss_ is None:
            self.best_loss_ = np.inf
        if early_stopping:
            train_rows, val_rows = train_test_split(
                all_rows, random_state=rng, test_size=self.validation_fraction
            )
            if val_rows.shape[0] < 2:
                raise ValueError(
                    "The validation set is too small. Increase 'validation_fraction' "
                    "or the size of your dataset."
                )
            train_rows = np.ascontiguousarray(train_rows, dtype=np.int64)
            val_rows = np.ascontiguousarray(np.sort(val_rows), dtype=np.int64)
        else:
            train_rows, val_rows = all_rows, None
        n_samples = train_rows.shape[0]
        batch_size = self._batch_size(n_samples)
        hp = dict(
            lr=self._lr,
            alpha=float(self.alpha),
            alpha_l1=float(self.alpha_l1),
            beta_1=float(self.beta_1),
            beta_2=float(self.beta_2),
            epsilon=float(self.epsilon),
            momentum=float(self.momentum) if self.solver == "sgd" else 0.0,
            nesterov=bool(self.nesterovs_momentum),
            input_dropout=float(self.input_dropout),
            max_norm=None if self.max_norm is None else float(self.max_norm),
        )

        decay = float(self.average_decay)
        average = None  # the weights' moving average over epochs (fit only)
        interrupted = False
        with _InterruptFlag() as flag:
            try:
                for _ in range(1 if incremental else self.max_iter):
                    tic = time.perf_counter()
                    order = rng.permutation(train_rows) if self.shuffle else train_rows
                    accumulated_loss = 0.0
                    for start in range(0, n_samples, batch_size):
                        rows = order[start:start + batch_size]
                        sw = None if sample_weight is None else sample_weight[rows]
                        hp["lr"] = self._lr
                        if sw is not None and not sw.any():
                            continue  # a batch with no weight carries no information
                        y_batch = None if y is None else y[rows]
                        loss = net.step(X, rows, scales[rows], y_batch, sw, hp, n_threads)
                        if loss is None:
                            raise ValueError(
                                "The L2 decay of one step, learning_rate * alpha / "
                                "(sum of the batch's sample weights), reached 1: every "
                                "weight would be zeroed. Lower alpha or learning_rate_init, "
                                "or scale sample_weight up."
                            )
                        if not np.isfinite(loss):
                            net.flush_regularization(n_threads)
                            raise ValueError(
                                "The training loss or its gradient became non-finite "
                                "(diverged); the model keeps the weights of the last "
                                "finite step. Lower learning_rate_init or use row_scaling."
                            )
                        accumulated_loss += loss * rows.shape[0]
                        if flag.raised:
                            interrupted = True
                            break
                    if interrupted:
                        break
                    self.n_iter_ += 1
                    self.t_ += n_samples
                    self.loss_ = accumulated_loss / n_samples
                    self.loss_curve_.append(self.loss_)
                    if decay > 0:
                        net.flush_regularization(n_threads)
                        average = _update_average(average, net, decay)
                    stop = self._end_epoch(X, y, sample_weight, scales, val_rows,
                                           early_stopping, n_threads,
                                           time.perf_counter() - tic, n_samples, average)
                    if stop:
                        break
                    if incremental:
                        break
                    if self.n_iter_ == self.max_iter:
                        warnings.warn(
                            f"Stochastic Optimizer: Maximum iterations ({self.max_iter}) "
                            "reached and the optimization hasn't converged yet.",
                            ConvergenceWarning,
                        )
            except KeyboardInterrupt:
                interrupted = True
        if interrupted:
            warnings.warn("Training interrupted by user; the model keeps the weights "
                          "of the last completed minibatch.")
        net.flush_regularization(n_threads)
        if early_stopping and self._best_params is not None:
            net.set_params_from(*self._best_params)
        elif average is not None:
            net.set_params_from(*average)
        self._best_params = None

    def _end_epoch(self, X, y, sample_weight, scales, val_rows, early_stopping,
                   n_threads, seconds, n_samples, average=None):
        """Scores, verbose line, schedule and stopping at the end of an epoch.

        With ``average`` (the weights' moving average), the validation score
        and the best epoch's copy are those of the averaged weights.
        """
        net = self._network
        msg = f"Iteration {self.n_iter_}, loss = {self.loss_:.8f}"
        if early_stopping:
            net.flush_regularization(n_threads)
            if average is not None:  # score (and keep) the averaged weights
                _swap_params(net, average)
            pred = net.predict_rows(X, val_rows, scales[val_rows], n_threads)
            sw = None if sample_weight is None else sample_weight[val_rows]
            score = r2_score(y[val_rows], pred, sample_weight=sw)
            self.validation_scores_.append(score)
            msg += f", validation score = {score:.6f}"
            if score < self.best_validation_score_ + self.tol:
                self._no_improvement_count += 1
            else:
                self._no_improvement_count = 0
            if score > self.best_validation_score_:
                self.best_validation_score_ = score
                # into the previous best's arrays: one copy of the weights, not two
                self._best_params = net.copy_params(out=self._best_params)
            if average is not None:
                _swap_params(net, average)
        else:
            if self.loss_curve_[-1] > self.best_loss_ - self.tol:
                self._no_improvement_count += 1
            else:
                self._no_improvement_count = 0
            if self.loss_curve_[-1] < self.best_loss_:
                self.best_loss_ = self.loss_curve_[-1]
        if self.verbose:
            rate = n_samples / seconds if seconds > 0 else float("inf")
            print(f"{msg}, time = {seconds:.2f}s, {rate:,.0f} samples/s", flush=True)

        if self.solver == "sgd" and self.learning_rate == "invscaling":
            self._lr = self._learning_rate_init() / (self.t_ + 1) ** self.power_t
        if self._no_improvement_count > self.n_iter_no_change:
            what = "Validation score" if early_stopping else "Training loss"
            reason = (f"{what} did not improve more than tol={self.tol:f} for "
                      f"{self.n_iter_no_change} consecutive epochs.")
            if self.solver == "sgd" and self.learning_rate == "adaptive" and self._lr > 1e-6:
                self._lr /= 5.0
                self._no_improvement_count = 0
                if self.verbose:
                    print(f"{reason} Setting learning rate to {self._lr:f}", flush=True)
                return False
            if self.verbose:
                print(f"{reason} Stopping.", flush=True)
            return True
        return False

    # ------------------------------------------------------------------ #
    def _forward_output(self, X, n_layers=None):
        """Output of layer ``n_layers`` (default: the last) for every row of X."""
        check_is_fitted(self, "_network")
        X, _ = self._validate_X(X, reset=False)
        n_threads = _openmp_effective_n_threads()
        scales = compute_row_scales(X, self.row_scaling, n_threads)
        rows = np.arange(X.shape[0], dtype=np.int64)
        with blas_threads_limit(self._network.layer_units, min(X.shape[0], 4096)):
            out = self._network.predict_rows(X, rows, scales, n_threads, n_layers)
        if not np.isfinite(out).all():
            # Finite weights and finite input can still overflow the compute
            # dtype (values near its limit); never return NaN or inf silently.
            raise ValueError(
                f"The input has values too large for the compute dtype "
                f"{self._network.dtype.name}: the network's output overflows. Rescale "
                "X, use row_scaling='l2', or fit with dtype='float64'."
            )
        return out

    @property
    def feature_importances_(self):
        """Importance of each input feature: the L2 norm of its first-layer row.

        A feature whose first-layer weights are all zero (as the L1 penalty
        ``alpha_l1`` makes them for useless features) has importance 0, so
        :class:`~sklearn.feature_selection.SelectFromModel` can use it.
        Computed on access, in O(n_features x H).
        """
        check_is_fitted(self, "_network")
        W1 = self.coefs_[0]
        return np.sqrt(np.einsum("ij,ij->i", W1, W1, dtype=np.float64))

    def __getstate__(self):
        state = super().__getstate__()
        state["_sksparsenn_version"] = __version__
        return state

    def __setstate__(self, state):
        version = state.pop("_sksparsenn_version", "unknown")
        if version != __version__:
            warnings.warn(
                f"Trying to unpickle estimator {type(self).__name__} from sksparsenn "
                f"version {version} when using version {__version__}. This might lead "
                "to breaking code or invalid results. Use at your own risk.",
                UserWarning,
            )
        super().__setstate__(state)

    def __sklearn_is_fitted__(self):
        return hasattr(self, "_network")

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = True
        return tags
