"""The network: weights, optimizer state, and one minibatch forward/backward.

A ``SparseNetwork`` holds plain numpy arrays only, so it pickles as it is.
The first layer (``coefs[0]``, shape (n_features, H1)) is driven by the Cython
kernels in ``_sparse_kernels`` (or their AVX2 build, see ``select_kernels``);
the dense layers after it use BLAS through numpy. It knows nothing of epochs
or of scikit-learn.

Optimizer semantics (all layers):

* ``sgd``: ``v <- momentum * v - lr * g``; ``w <- w + v`` (or the Nesterov
  form ``w <- w + momentum * v - lr * g``), as scikit-learn's SGDOptimizer.
* ``adam``: as scikit-learn's AdamOptimizer, with the global step count ``t``
  driving the bias correction.
* ``adagrad``: ``G <- G + g^2``; ``w <- w - lr * g / (sqrt(G) + epsilon)``
  (Duchi, Hazan and Singer, 2011).
* ``rowwise_adagrad``: Adagrad with one accumulator per first-layer row,
  ``G_j <- G_j + mean_h(g_jh^2)`` (the EXACT_ROWWISE_ADAGRAD of FBGEMM, used
  for the embedding tables of large recommendation models): the state of
  the first layer is one number per feature instead of H, and a step moves
  a third of Adam's bytes. The dense layers use plain Adagrad.

On the first layer these are lazy: the state of a feature's row is read and
written only in steps whose batch contains that feature.

Regularisation is applied as a decay after each step's update:
``w <- soft(w * (1 - lr * alpha / sw_sum), lr * alpha_l1 / sw_sum)``, with
``sw_sum`` the batch's total sample weight (its size without weights);
``soft`` is soft-thresholding, ``alpha_l1`` acts on the first layer only and
intercepts are not penalised. For plain SGD this is the gradient step of
scikit-learn's L2 term ``alpha / (2 * sw_sum) * ||W||^2`` up to a term of
order ``lr**2 * alpha / sw_sum`` (the decay also scales this step's update);
for the other solvers it is the decoupled form of Loshchilov and Hutter
(2019). On the first layer it is lazy: a row catches up with the decay it
missed when its feature is next in a batch. The forward pass reads the row
as if caught up and the update kernel writes the catch-up in the same pass
as the step (``catch_up_rows``' arithmetic inside ``sparse_forward`` and
``sparse_update``), so the catch-up costs no pass over the rows of its own.
The autoencoder's decoder rows are lazy the same way (``sampled_backward``
reads them as if caught up). ``flush_regularization`` brings every row up to
date before the weights are read from outside.
"""

import contextlib
import math
import os
import threading
import types
import warnings

import numpy as np
from scipy.special import expit
from threadpoolctl import ThreadpoolController

from . import _sparse_kernels

KERNELS_ENV = "SKSPARSENN_KERNELS"


def select_kernels(choice=None):
    """The build of the first-layer kernels to run on this processor.

    The kernels are compiled twice (see ``sksparsenn/meson.build``): for any
    processor (``"baseline"``, SSE2 on x86-64) and, on x86-64, for AVX2
    (``"avx2"``, 256-bit vectors). Both give bit-identical results; the
    AVX2 build is faster. ``choice`` (default: the ``SKSPARSENN_KERNELS``
    environment variable, else ``"auto"``) is ``"auto"`` (AVX2 when the
    processor has it), ``"baseline"`` or ``"avx2"``. Any other value warns
    and counts as ``"auto"``; ``"avx2"`` where the AVX2 build cannot run
    warns and falls back to the baseline build. No setting runs
    instructions the processor lacks: the AVX2 build is not even imported
    (its module initialisation is AVX2 code too) unless the processor has
    AVX2.
    """
    if choice is None:
        choice = os.environ.get(KERNELS_ENV, "").strip().lower() or "auto"
    if choice not in ("auto", "baseline", "avx2"):
        warnings.warn(f"{KERNELS_ENV}={choice!r} is not one of 'auto', 'baseline', "
                      "'avx2'; using 'auto'", RuntimeWarning, stacklevel=2)
        choice = "auto"
    if choice == "baseline":
        return _sparse_kernels
    reason = "this processor has no AVX2"
    if _sparse_kernels.cpu_has_avx2():
        try:
            from . import _sparse_kernels_avx2
        except ImportError:  # built without it: not x86-64, or not gcc/clang
            reason = "this installation has no AVX2 build of the kernels"
        else:
            return _sparse_kernels_avx2
    if choice == "avx2":
        warnings.warn(f"{KERNELS_ENV}=avx2, but {reason}; using the baseline kernels",
                      RuntimeWarning, stacklevel=2)
    return _sparse_kernels


# The module every kernel call goes through (benchmarks swap it for another build).
_k = select_kernels()

SOLVERS = {"sgd": 0, "adam": 1, "adagrad": 2, "rowwise_adagrad": 3}
# Optimizer state arrays per parameter.
N_STATE = {"sgd": 1, "adam": 2, "adagrad": 1, "rowwise_adagrad": 1}
ROW_SCALINGS = {"none": 0, "mean": 1, "sqrt": 2, "l2": 3}

# Below this running log-decay the lazy-regularisation marks are folded into
# the weights (one O(n_features x H) pass) so that exp(logp) stays far from
# underflow and the L1 accumulator far from overflow.
_LOGP_FLUSH = -20.0


# Below this many multiply-adds, a kernel call runs on one thread: waking the
# others costs more than it saves (much more on a busy machine, where a
# thread waits for a descheduled sibling at every barrier). Results do not
# depend on the thread count, so this changes speed only.
_MIN_WORK_PER_THREAD = 1 << 16


def _zeros_resident(shape, dtype):
    """A zero array whose memory is mapped now, page after page in order.

    ``np.zeros`` maps pages lazily; a first-layer state array then takes one
    page fault per row at its first, random, update, which costs several
    seconds per GiB (about 17 us per fault, measured on a 2-core VM), where
    writing the zeros in order costs about 0.1 s per GiB. Data sets with an
    almost-full row touch nearly every row in the first epoch anyway, so
    the memory ends up mapped in both cases.
    """
    out = np.empty(shape, dtype=dtype)
    out.fill(0)
    return out


def _all_finite(D1, grads):
    """Whether every gradient of a step is finite (O(batch x H), no W1 pass)."""
    if not np.isfinite(D1).all():
        return False
    return all(g is None or np.isfinite(g).all() for pair in grads for g in pair)


def _batch_entries(X, rows):
    """Positions in X's arrays of the stored values of ``rows``, batch order.

    Returns ``(lens, indptr, src)``: each row's number of stored values, the
    batch's own indptr (int64) and, for every stored value of the batch in
    order, its index into ``X.data``/``X.indices``. O(batch nnz).
    """
    starts = X.indptr[rows]
    lens = (X.indptr[rows + 1] - starts).astype(np.int64)
    indptr = np.zeros(rows.shape[0] + 1, dtype=np.int64)
    np.cumsum(lens, out=indptr[1:])
    src = np.arange(indptr[-1], dtype=np.int64) - np.repeat(indptr[:-1] - starts, lens)
    return lens, indptr, src


def _threads_for(work, n_threads):
    return int(max(1, min(n_threads, work // _MIN_WORK_PER_THREAD)))


# Below this many multiply-adds per dense-layer product, BLAS runs on one
# thread during fit and predict. A product of a 256-row batch with a
# 256 x 8 layer is far too small to share, and BLAS threads that wake
# between the OpenMP kernels' parallel regions compete with the kernels'
# own threads for the same cores (DESIGN.md, "Threads").
BLAS_MIN_PARALLEL_WORK = 1 << 24


class _SingleThreadBlas:
    """Keep BLAS on one thread while at least one caller is inside.

    Counted, so that fits running at once in several Python threads restore
    the original BLAS thread count only when the last one leaves (nested
    ``threadpool_limits`` calls from threads would restore out of order).
    The controller is made once: entering costs about 20 us, against 3 ms
    for ``threadpool_limits``, which inspects the loaded libraries each time.
    """

    def __init__(self):
        self._lock = threading.Lock()
        self._depth = 0
        self._limiter = None
        self._controller = None

    def __enter__(self):
        with self._lock:
            if self._depth == 0:
                if self._controller is None:
                    self._controller = ThreadpoolController()
                self._limiter = self._controller.limit(limits=1, user_api="blas")
            self._depth += 1
        return self

    def __exit__(self, *exc):
        with self._lock:
            self._depth -= 1
            if self._depth == 0:
                self._limiter.restore_original_limits()
                self._limiter = None
        return False


_SINGLE_THREAD_BLAS = _SingleThreadBlas()


def blas_threads_limit(layer_units, n_rows):
    """Context that keeps BLAS on one thread when the dense layers are small.

    ``n_rows`` is the number of rows of one dense product (a minibatch or a
    prediction chunk).
    """
    widest = max((a * b for a, b in zip(layer_units[1:-1], layer_units[2:])), default=0)
    if n_rows * widest >= BLAS_MIN_PARALLEL_WORK:
        return contextlib.nullcontext()
    return _SINGLE_THREAD_BLAS


def _relu(Z):
    np.maximum(Z, 0, out=Z)


def _tanh(Z):
    np.tanh(Z, out=Z)


def _logistic(Z):
    expit(Z, out=Z)


def _identity(Z):
    pass


def _relu_deriv(A, delta):
    if (A.dtype == delta.dtype and A.dtype in (np.float32, np.float64)
            and A.flags.c_contiguous and delta.flags.c_contiguous and delta.flags.writeable):
        _k.relu_backward(A, delta)  # delta[A <= 0] = 0 in one pass
    else:
        delta[A <= 0] = 0


def _tanh_deriv(A, delta):
    delta *= 1 - A * A


def _logistic_deriv(A, delta):
    delta *= A * (1 - A)


def _identity_deriv(A, delta):
    pass


# In-place activation, and in-place multiplication of a delta by the
# activation's derivative expressed through the activation's output.
ACTIVATIONS = {"relu": _relu, "tanh": _tanh, "logistic": _logistic, "identity": _identity}
DERIVATIVES = {
    "relu": _relu_deriv,
    "tanh": _tanh_deriv,
    "logistic": _logistic_deriv,
    "identity": _identity_deriv,
}


def compute_row_scales(X, row_scaling, n_threads):
    """Scale factor of each row of CSR X for ``row_scaling`` (see ROW_SCALINGS)."""
    out = np.empty(X.shape[0], dtype=X.dtype)
    _k.row_scales(X.data, X.indptr, ROW_SCALINGS[row_scaling], out, n_threads)
    return out


class SparseNetwork:
    """Weights and optimizer state of a sparse-input MLP.

    Parameters
    ----------
    layer_units : list of int
        ``[n_features, H1, ..., n_outputs]``.
    activation : str
        Hidden activation, a key of ``ACTIVATIONS``. The output is identity.
    solver : {'sgd', 'adam', 'adagrad'}
    dtype : numpy dtype
        float32 or float64; every array of the network has it.
    rng : numpy.random.RandomState
        Used for the initial weights only.
    fan_in : float
        Typical number of non-zeros per input row; the first layer's Glorot
        bound uses it in place of n_features, since only that many inputs feed
        a hidden unit in one row.
    """

    def __init__(self, layer_units, activation, solver, dtype, rng, fan_in, linear_term=False,
                 initial_accumulator=0.0):
        self.layer_units = list(layer_units)
        self.activation = activation
        self.solver = solver
        # Adagrad's G starts here (TensorFlow's initial_accumulator_value):
        # a feature's first steps are then SGD steps of lr / sqrt(G0) * g
        # until its own squared gradients outweigh G0.
        self.initial_accumulator = float(initial_accumulator)
        self.dtype = np.dtype(dtype)
        self.t = 0  # optimizer steps taken
        self.coefs = []
        self.intercepts = []
        gen = np.random.default_rng(rng.randint(np.iinfo(np.int32).max))
        # Glorot uniform, as scikit-learn's MLP (factor 2 for logistic).
        factor = 2.0 if activation == "logistic" else 6.0
        for i, (n_in, n_out) in enumerate(zip(self.layer_units[:-1], self.layer_units[1:])):
            fan = max(1.0, min(float(n_in), fan_in)) if i == 0 else n_in
            bound = math.sqrt(factor / (fan + n_out))
            W = gen.random((n_in, n_out), dtype=self.dtype)  # filled in place: no float64 temp
            W *= 2 * bound
            W -= bound
            b = gen.random(n_out, dtype=self.dtype)
            b *= 2 * bound
            b -= bound
            self.coefs.append(W)
            self.intercepts.append(b)
        self._init_state()
        n_features = self.layer_units[0]
        self.reg_logp_feat = np.zeros(n_features, dtype=np.float64)
        self.reg_acc_feat = np.zeros(n_features, dtype=np.float64)
        self.reg_logp = 0.0
        self.reg_acc = 0.0
        self._slot = None
        self.linear_output = True  # the last layer has no activation
        # Input dropout masks; seeded from the initialisation generator, so
        # that the draws of ``rng`` (and what subclasses seed from it) do not
        # depend on whether dropout is used.
        self.dropout_rng = np.random.default_rng(gen.integers(np.iinfo(np.int64).max))
        # Wide-and-deep: a linear map from the input straight to the outputs,
        # stored row per feature like the first layer (Cheng et al., 2016).
        self.linear_coef = None
        if linear_term:
            shape = (n_features, self.layer_units[-1])
            self.linear_coef = _zeros_resident(shape, self.dtype)
            self.linear_state = [_zeros_resident(self._state_shape(shape), self.dtype)
                                 for _ in range(N_STATE[self.solver])]
            self._fill_accumulators(self.linear_state)
            self.lin_logp_feat = np.zeros(n_features, dtype=np.float64)
            self.lin_acc_feat = np.zeros(n_features, dtype=np.float64)

    def _state_shape(self, shape):
        """Shape of the optimizer state of a row-sparse (lazily updated) array."""
        return (shape[0], 1) if self.solver == "rowwise_adagrad" else shape

    def _init_state(self):
        params = self.coefs + self.intercepts
        shapes = [self._state_shape(p.shape) if i == 0 else p.shape for i, p in enumerate(params)]
        # The first layer's SGD velocity is only used with momentum, which the
        # network learns at its first step: until then its pages stay
        # unmapped (plain SGD never maps them; see _update).
        first = np.zeros if self.solver == "sgd" else _zeros_resident
        self.state = [[(first if i == 0 else _zeros_resident)(shape, p.dtype)
                       for i, (shape, p) in enumerate(zip(shapes, params))]
                      for _ in range(N_STATE[self.solver])]
        for layer_state in self.state:
            self._fill_accumulators(layer_state)

    def _fill_accumulators(self, arrays):
        """Start Adagrad's accumulators (the only state of its solvers) at G0."""
        if self.solver in ("adagrad", "rowwise_adagrad") and self.initial_accumulator > 0:
            for a in arrays:
                a.fill(self.initial_accumulator)

    def __getstate__(self):
        state = self.__dict__.copy()
        state["_slot"] = None  # scratch, rebuilt on demand
        state.pop("_delta_out", None)  # scratch of the last step
        return state

    # ------------------------------------------------------------------ #
    def _lazy_marks(self, linear=False):
        """Keyword arguments that make a first-layer kernel catch rows up on
        the way (the rows' marks and the current step's), or {} when no
        regularisation is pending.

        The L1 marks are left out while ``reg_acc`` is 0: the running L1
        total only grows until a flush sets it and every mark to 0, so all
        marks are 0 then, and the kernels skip them.
        """
        if self.reg_logp == 0.0 and self.reg_acc == 0.0:
            return {}
        marks = dict(lazy_logp=self.lin_logp_feat if linear else self.reg_logp_feat,
                     logp_now=self.reg_logp, acc_now=self.reg_acc)
        if self.reg_acc != 0.0:
            marks["lazy_acc"] = self.lin_acc_feat if linear else self.reg_acc_feat
        return marks

    def forward(self, X, rows, scale, n_threads, n_layers=None, lazy=True, group=False):
        """Activations of every layer for the given rows of CSR X.

        Returns a list ``[A1, ..., A_out]``; hidden activations are already
        passed through the activation function, the output is linear. With
        ``n_layers``, only the first ``n_layers`` layers are computed.
        First-layer rows with lazy regularisation pending are read as if
        caught up (see ``_sparse_kernels.sparse_forward``); the training
        step's update then writes the catch-up. ``lazy=False`` reads them
        as stored (for rows known to be up to date). With ``group``, also
        groups the batch by feature while the first layer is computed and
        returns ``(activations, plan)`` (see ``_forward_and_plan``).
        """
        W1, b1 = self.coefs[0], self.intercepts[0]
        Z = np.empty((rows.shape[0], W1.shape[1]), dtype=self.dtype)
        batch_nnz = int((X.indptr[rows + 1] - X.indptr[rows]).sum())
        n_threads = _threads_for(batch_nnz * W1.shape[1], n_threads)
        plan = _k.sparse_forward(X.data, X.indices, X.indptr, rows, scale, W1, b1, Z, n_threads,
                                 slot=self._slot_map() if group else None,
                                 **(self._lazy_marks() if lazy else {}))
        activations = [Z]
        n_total = len(self.coefs)
        n_layers = n_total if n_layers is None else n_layers
        act = ACTIVATIONS[self.activation]
        if n_total > 1 or not self.linear_output:
            act(Z)
        for i in range(1, n_layers):
            Z = activations[-1] @ self.coefs[i]
            Z += self.intercepts[i]
            if i < n_total - 1 or not self.linear_output:
                act(Z)
            activations.append(Z)
        if self.linear_coef is not None and n_layers == n_total:
            K = self.linear_coef.shape[1]
            wide = np.empty((rows.shape[0], K), dtype=self.dtype)
            _k.sparse_forward(X.data, X.indices, X.indptr, rows, scale, self.linear_coef,
                              np.zeros(K, self.dtype), wide, _threads_for(batch_nnz * K, n_threads),
                              **(self._lazy_marks(linear=True) if lazy else {}))
            activations[-1] += wide
        return (activations, plan) if group else activations

    def predict_rows(self, X, rows, scale, n_threads, n_layers=None, chunk_size=4096):
        """Output of layer ``n_layers`` (default: the last) for the given rows.

        Computed in chunks of rows, so that memory beyond the result does not
        grow with the number of rows.
        """
        n_layers = len(self.coefs) if n_layers is None else n_layers
        out = np.empty((rows.shape[0], self.layer_units[n_layers]), dtype=self.dtype)
        for start in range(0, rows.shape[0], chunk_size):
            stop = min(start + chunk_size, rows.shape[0])
            out[start:stop] = self.forward(
                X, rows[start:stop], scale[start:stop], n_threads, n_layers
            )[-1]
        return out

    def backward(self, activations, y, sample_weight):
        """Loss and gradients of the batch.

        Returns ``(loss, D1, grads)`` where ``D1`` is the gradient w.r.t. the
        first layer's pre-activation (the kernels turn it into the row-sparse
        gradient of ``coefs[0]``) and ``grads`` is a list of
        ``(coef_grad or None, intercept_grad)`` per layer, ``coef_grad`` None
        for the sparse first layer. Loss and gradient follow scikit-learn's
        MLPRegressor: loss is half the (weighted) mean squared error over
        samples and outputs; gradients are of half the squared error summed
        over outputs, averaged over samples.
        """
        out = activations[-1]
        diff = out - y
        if sample_weight is None:
            loss = 0.5 * float(np.mean(diff * diff))
            delta = diff
            delta *= 1.0 / y.shape[0]
        else:
            sw_sum = float(sample_weight.sum())
            loss = 0.5 * float(np.average(diff * diff, weights=sample_weight, axis=0).mean())
            delta = diff
            delta *= (sample_weight / sw_sum)[:, None]
        # the linear term's gradient rows come from the output's delta
        self._delta_out = delta if self.linear_coef is not None else None
        D1, grads = self.backprop(activations, delta)
        return loss, D1, grads

    def backprop(self, activations, delta):
        """Gradients of every layer from ``delta``, the gradient w.r.t. the
        last layer's pre-activation. Returns ``(D1, grads)`` (see backward)."""
        n_layers = len(self.coefs)
        grads = [None] * n_layers
        deriv = DERIVATIVES[self.activation]
        for i in range(n_layers - 1, 0, -1):
            grads[i] = (activations[i - 1].T @ delta, delta.sum(axis=0))
            delta = delta @ self.coefs[i].T
            deriv(activations[i - 1], delta)
        grads[0] = (None, delta.sum(axis=0))
        return delta, grads

    # ------------------------------------------------------------------ #
    def step(self, X, rows, scale, y, sample_weight, hp, n_threads):
        """One minibatch step: forward, backward, update of every layer.

        ``hp`` is a dict with keys lr, alpha, alpha_l1, beta_1, beta_2,
        epsilon, momentum, nesterov. Returns the batch loss; a non-finite loss
        is returned before any update, and None (before any update) when the
        step's L2 decay would zero every weight.
        """
        penalties = self._penalties(rows, sample_weight, hp)
        if penalties is None:
            return None
        X, rows = self._input_dropout(X, rows, hp.get("input_dropout", 0.0))
        activations, plan, n_threads = self._forward_and_plan(X, rows, scale, n_threads)
        loss, D1, grads = self.backward(activations, y, sample_weight)
        if not (np.isfinite(loss) and _all_finite(D1, grads)):
            return float("nan")  # before any update: the weights stay finite
        step_lr = self._next_step_lr(hp)
        self._update(plan, D1, grads, step_lr, penalties, hp, n_threads)
        return loss

    def _penalties(self, rows, sample_weight, hp):
        """This step's (decay, threshold), or None if the decay would zero all weights.

        The penalties are scaled by the batch's total sample weight, as
        scikit-learn's L2 term alpha / (2 * sw_sum) * ||W||^2.
        """
        sw_sum = float(rows.shape[0]) if sample_weight is None else float(sample_weight.sum())
        decay = 1.0 - hp["lr"] * hp["alpha"] / sw_sum
        threshold = hp["lr"] * hp["alpha_l1"] / sw_sum
        return (decay, threshold) if decay > 0.0 else None

    def _input_dropout(self, X, rows, p):
        """The batch's rows with each stored value dropped with probability p.

        Kept values are scaled by 1 / (1 - p) ("inverted" dropout, so that
        nothing changes at prediction time); dropped ones become stored
        zeros, which the kernels skip: for the step, a dropped feature is
        absent (its weights and optimizer state are not touched). Costs one
        copy of the batch's non-zeros. Returns ``(X, rows)`` unchanged when
        ``p`` is 0, else a CSR-like view of the batch and ``arange(n_rows)``.
        Row scale factors stay those of the full rows.
        """
        if p <= 0.0:
            return X, rows
        _, indptr, src = _batch_entries(X, rows)
        keep = self.dropout_rng.random(src.shape[0]) >= p
        data = np.where(keep, X.data[src] * self.dtype.type(1.0 / (1.0 - p)), 0)
        batch = types.SimpleNamespace(data=data.astype(self.dtype, copy=False),
                                      indices=X.indices[src],
                                      indptr=indptr.astype(X.indptr.dtype, copy=False))
        return batch, np.arange(rows.shape[0], dtype=np.int64)

    def _slot_map(self):
        if self._slot is None:
            self._slot = np.full(self.layer_units[0], -1, dtype=np.int64)
        return self._slot

    def _forward_and_plan(self, X, rows, scale, n_threads):
        """The forward pass and the first layer's plan (the batch grouped by feature).

        Returns the activations, the plan and the number of threads worth
        using for the update. One thread groups the batch while the others
        start the forward pass. The regularisation the batch's first-layer
        rows have pending is not applied here: the forward pass reads them
        as if caught up and the update writes the catch-up.
        """
        activations, plan = self.forward(X, rows, scale, n_threads, group=True)
        return activations, plan, self._plan_threads(plan, n_threads)

    def _plan_threads(self, plan, n_threads):
        """Threads worth using for the per-feature kernels of ``plan``."""
        return _threads_for(int(plan[1][-1]) * self.coefs[0].shape[1], n_threads)

    def _next_step_lr(self, hp):
        self.t += 1
        if self.solver == "adam":
            return hp["lr"] * math.sqrt(1 - hp["beta_2"] ** self.t) / (1 - hp["beta_1"] ** self.t)
        return hp["lr"]

    def _lazy_update(self, plan, D, W, states, step_lr, hp, n_threads, max_norm=0.0,
                     marks=None, bias=None, bias_states=None):
        """Fused gradient and optimizer update of the plan's rows of W.

        ``states`` are W's optimizer state arrays (two for Adam, one otherwise).
        ``marks``: keyword arguments of ``_lazy_marks``, to apply the rows'
        pending regularisation first, in the same pass. ``bias``: an
        (n_features, 1) array of one bias per row of W, with its state arrays
        ``bias_states``, updated in the same pass (see ``sparse_update``).
        """
        s1 = states[0]
        s2 = states[1] if self.solver == "adam" else s1
        extra = dict(marks or {})
        if bias is not None:
            extra.update(bias=bias[:, 0], bias_state1=bias_states[0][:, 0],
                         bias_state2=bias_states[-1][:, 0])
        _k.sparse_update(
            *plan, D, W, s1, s2,
            SOLVERS[self.solver], step_lr, hp["beta_1"], hp["beta_2"], hp["epsilon"],
            hp["momentum"], hp["nesterov"], n_threads, max_norm, **extra,
        )

    def _update_dense_layers(self, grads, step_lr, decay, hp):
        """Optimizer step (and L2 decay) of every parameter but the first layer's weights."""
        n_layers = len(self.coefs)
        for i in range(n_layers):
            coef_grad, intercept_grad = grads[i]
            self._dense_update(n_layers + i, self.intercepts[i], intercept_grad, step_lr, hp)
            if coef_grad is not None:
                self._dense_update(i, self.coefs[i], coef_grad, step_lr, hp)
                if decay != 1.0:
                    self.coefs[i] *= decay

    def _update(self, plan, D1, grads, step_lr, penalties, hp, n_threads):
        """Apply the step to every parameter; the first layer lazily."""
        decay, threshold = penalties
        self._update_dense_layers(grads, step_lr, decay, hp)
        first_layer_state = [s[0] for s in self.state]
        if self.t == 1 and self.solver == "sgd" and hp["momentum"] > 0:
            # still all zero: map its pages in order now (see _zeros_resident)
            first_layer_state[0].fill(0)
        self._lazy_update(plan, D1, self.coefs[0], first_layer_state, step_lr, hp, n_threads,
                          hp.get("max_norm") or 0.0, marks=self._lazy_marks())
        if self.linear_coef is not None:
            self._lazy_update(plan, self._delta_out, self.linear_coef, self.linear_state,
                              step_lr, hp, n_threads, marks=self._lazy_marks(linear=True))
        self._advance_regularization(decay, threshold, n_threads)

    def _advance_regularization(self, decay, threshold, n_threads):
        """Record the step's decay and L1 threshold as pending on every lazily
        regularised row: each row receives it at its next catch-up."""
        if decay != 1.0 or threshold != 0.0:
            self.reg_logp += math.log(decay)
            self.reg_acc += threshold / math.exp(self.reg_logp)
            if self.reg_logp < _LOGP_FLUSH:
                self.flush_regularization(n_threads)

    def _dense_update(self, k, param, grad, step_lr, hp):
        """Optimizer update of dense parameter number ``k`` (same rules as the kernel)."""
        if self.solver == "adam":
            m, v = self.state[0][k], self.state[1][k]
            b1, b2 = hp["beta_1"], hp["beta_2"]
            m *= b1
            m += (1 - b1) * grad
            v *= b2
            v += (1 - b2) * (grad * grad)
            param -= step_lr * m / (np.sqrt(v) + hp["epsilon"])
        elif self.solver in ("adagrad", "rowwise_adagrad"):
            G = self.state[0][k]
            G += grad * grad
            param -= step_lr * grad / (np.sqrt(G) + hp["epsilon"])
        elif hp["momentum"] > 0:
            vel = self.state[0][k]
            mom = hp["momentum"]
            vel *= mom
            vel -= step_lr * grad
            if hp["nesterov"]:
                param += mom * vel - step_lr * grad
            else:
                param += vel
        else:
            param -= step_lr * grad

    def flush_regularization(self, n_threads):
        """Bring every first-layer row up to date with the lazy regularisation."""
        if self.reg_logp != 0.0 or self.reg_acc != 0.0:
            _k.catch_up_all(
                self.coefs[0], self.reg_logp_feat, self.reg_acc_feat,
                self.reg_logp, self.reg_acc, n_threads,
            )
            if self.linear_coef is not None:
                _k.catch_up_all(self.linear_coef, self.lin_logp_feat, self.lin_acc_feat,
                                self.reg_logp, self.reg_acc, n_threads)
            self.reg_logp = 0.0
            self.reg_acc = 0.0

    def param_arrays(self):
        """The live weight arrays, in :meth:`copy_params`' order: (coefs, intercepts)."""
        coefs = list(self.coefs)
        if self.linear_coef is not None:
            coefs.append(self.linear_coef)
        return coefs, list(self.intercepts)

    def copy_params(self, out=None):
        """Copies of the weights: (coefs, intercepts), as :meth:`param_arrays`.

        With ``out`` (an earlier result of this method), the weights are
        copied into its arrays and ``out`` is returned: keeping a best
        epoch's weights then never holds two copies at once.
        """
        coefs, intercepts = self.param_arrays()
        if out is None:
            return [c.copy() for c in coefs], [b.copy() for b in intercepts]
        for dst, src in zip(out[0] + out[1], coefs + intercepts):
            np.copyto(dst, src)
        return out

    def set_params_from(self, coefs, intercepts):
        """Copy weights into the existing arrays (references stay valid)."""
        dst_coefs, dst_intercepts = self.param_arrays()
        if len(coefs) != len(dst_coefs) or len(intercepts) != len(dst_intercepts):
            raise ValueError("the weights do not match the network's layers")
        for dst, src in zip(dst_coefs + dst_intercepts, list(coefs) + list(intercepts)):
            dst[...] = src


class SparseAutoencoderNetwork(SparseNetwork):
    """A sparse denoising-free autoencoder trained with reconstruction sampling.

    The encoder is the network's layers (``layer_units = [n_features, H1, ...,
    H_code]``), all passed through the activation; the last one is the code.
    The decoder is a linear layer back to the ``n_features`` inputs, stored
    row per feature (``decoder_coef``, shape (n_features, H_code)) like the
    first layer, so that it too is read and updated only at the columns a
    step uses.

    Reconstruction sampling (Dauphin, Glorot and Bengio, ICML 2011): the
    squared reconstruction error of a row is summed over its non-zero
    columns and over a uniform sample of ``ceil(zero_sampling * nnz)`` (at
    least one) of its zero columns, each sampled zero weighted by
    ``(n_features - nnz) / n_sampled`` so that the sum estimates the error
    over all ``n_features`` columns without bias. A step costs
    O(nnz x H_code), never O(n_features x H_code). The targets are the
    inputs after row scaling. The sampling draws from a generator seeded at
    initialisation, so a fit is reproducible.
    """

    def __init__(self, layer_units, activation, solver, dtype, rng, fan_in, zero_sampling,
                 initial_accumulator=0.0):
        super().__init__(layer_units, activation, solver, dtype, rng, fan_in,
                         initial_accumulator=initial_accumulator)
        self.linear_output = False
        self.zero_sampling = float(zero_sampling)
        n_features, code = self.layer_units[0], self.layer_units[-1]
        gen = np.random.default_rng(rng.randint(np.iinfo(np.int32).max))
        bound = math.sqrt(6.0 / (code + max(1.0, min(float(n_features), fan_in))))
        self.decoder_coef = gen.random((n_features, code), dtype=self.dtype)
        self.decoder_coef *= 2 * bound
        self.decoder_coef -= bound
        # (n_features, 1): updated by the same row-sparse kernel as the weights.
        self.decoder_intercept = np.zeros((n_features, 1), dtype=self.dtype)
        self.decoder_state = [
            [_zeros_resident(self._state_shape(self.decoder_coef.shape), self.dtype),
             _zeros_resident(self.decoder_intercept.shape, self.dtype)]
            for _ in range(N_STATE[self.solver])
        ]
        for layer_state in self.decoder_state:
            self._fill_accumulators(layer_state)
        self.dec_logp_feat = np.zeros(n_features, dtype=np.float64)
        self.dec_acc_feat = np.zeros(n_features, dtype=np.float64)  # L2 only: stays 0
        self.sample_rng = np.random.default_rng(rng.randint(np.iinfo(np.int32).max))

    def sample_pairs(self, X, rows, scale):
        """The (batch position, column) pairs of this step's reconstruction loss.

        Returns ``(pair_row, pair_col, target, weight, indptr)``, grouped by
        batch position (``indptr`` delimits each row's pairs): first the row's
        non-zero columns (target: the scaled value, weight 1), then its
        sampled zero columns (target 0, importance weight). X must be
        canonical: sorted indices without duplicates (as the estimators
        ensure).
        """
        n_features = self.layer_units[0]
        n_rows = rows.shape[0]
        nnz = np.empty(n_rows, dtype=np.int64)
        _k.row_nonzeros(X.data, X.indptr, rows, nnz)
        n_zero = n_features - nnz
        n_draw = np.where(n_zero > 0, np.maximum(1, np.ceil(self.zero_sampling * nnz)), 0)
        n_draw = n_draw.astype(np.int64)
        draws = self.sample_rng.integers(0, n_features, size=int(n_draw.sum()))
        room = max(int((X.indptr[rows + 1] - X.indptr[rows]).sum() + n_draw.sum()), 1)
        pair_row = np.empty(room, dtype=np.int64)
        pair_col = np.empty(room, dtype=np.int64)
        target = np.empty(room)
        weight = np.empty(room)
        indptr = np.empty(n_rows + 1, dtype=np.int64)
        # Draws that hit a non-zero of their row are rejected, and the kept
        # ones weighted so that they stand for all of the row's zeros.
        # Targets: scale * value in the dtype numpy's product would have.
        single = np.result_type(X.data.dtype, scale.dtype) == np.float32
        n_pairs = _k.reconstruction_pairs(X.data, X.indices, X.indptr, rows,
                                          scale.astype(np.float64), single, nnz, n_draw,
                                          draws, n_features, pair_row, pair_col, target,
                                          weight, indptr)
        return (pair_row[:n_pairs], pair_col[:n_pairs],
                target[:n_pairs].astype(self.dtype, copy=False), weight[:n_pairs], indptr)

    def step(self, X, rows, scale, y, sample_weight, hp, n_threads):
        """One step on the sampled reconstruction loss (``y`` is ignored)."""
        penalties = self._penalties(rows, sample_weight, hp)
        if penalties is None:
            return None
        # With input dropout the encoder sees the corrupted rows and the loss
        # targets the clean ones: a denoising autoencoder (Vincent et al., 2008).
        Xin, rows_in = self._input_dropout(X, rows, hp.get("input_dropout", 0.0))
        activations, plan, n_threads = self._forward_and_plan(Xin, rows_in, scale, n_threads)
        n_rows = rows.shape[0]
        pair_row, pair_col, target, weight, indptr = self.sample_pairs(X, rows, scale)
        Wd, bd = self.decoder_coef, self.decoder_intercept
        marks = self._decoder_marks(pair_col, indptr, n_threads)

        code = activations[-1]
        if sample_weight is None:
            row_coef = np.full(n_rows, 1.0 / n_rows)
        else:
            row_coef = sample_weight / float(sample_weight.sum())
        coef = (row_coef[pair_row] * weight).astype(self.dtype)
        # The pairs' outputs, their deltas and the gradient w.r.t. the code,
        # dA[b] = sum over b's pairs of delta * Wd[col], in one read of the
        # decoder's rows; meanwhile one thread groups the pairs by column:
        # the decoder's plan.
        diff = np.empty(pair_col.shape[0], dtype=self.dtype)
        delta = np.empty_like(diff)
        dA = np.empty_like(code)
        dec_plan = _k.sampled_backward(code, Wd, bd[:, 0], indptr, pair_col, target, coef,
                                       diff, delta, dA, n_threads, slot=self._slot_map(),
                                       **marks)
        objective = 0.5 * float(np.dot(coef * diff, diff))
        loss = objective / self.layer_units[0]  # per output column, as the regressor's
        if not np.isfinite(loss):
            return loss
        if not self._backprop_and_update(activations, dA, plan, dec_plan, marks, penalties, hp,
                                         n_threads):
            return float("nan")  # before any update: the weights stay finite
        return loss

    def _backprop_and_update(self, activations, dA, plan, dec_plan, marks, penalties, hp,
                             n_threads):
        """The step from the gradient w.r.t. the code ``dA`` on: the encoder's
        backward pass, then the decoder's update (``dec_plan``, with its
        ``marks``) and every other one. Returns False, before any update, when
        a gradient is not finite."""
        code = activations[-1]
        DERIVATIVES[self.activation](code, dA)
        D1, grads = self.backprop(activations, dA)
        if not _all_finite(D1, grads):
            return False
        step_lr = self._next_step_lr(hp)
        self._lazy_update(dec_plan, code, self.decoder_coef, [s[0] for s in self.decoder_state],
                          step_lr, hp, n_threads, marks=marks, bias=self.decoder_intercept,
                          bias_states=[s[1] for s in self.decoder_state])
        self._update(plan, D1, grads, step_lr, penalties, hp, n_threads)
        return True

    def _decoder_marks(self, pair_col, indptr, n_threads):
        """Keyword arguments that make the decoder's kernels catch its rows up
        on the way (as ``_lazy_marks`` does for the first layer), or {} when
        no decay is pending. The decoder has L2 decay only: its L1 marks
        stay 0 and are left out. (The step's pairs are arguments for a
        subclass that catches the rows up in a pass of its own.)

        Rows are caught up when the update writes them, and the update takes
        every row the step reads, except those whose pairs all have a zero
        weight in the loss (rows of zero sample weight): such a row keeps
        its decay pending until its next update.
        """
        if self.reg_logp == 0.0:
            return {}
        return dict(lazy_logp=self.dec_logp_feat, logp_now=self.reg_logp)

    def flush_regularization(self, n_threads):
        if self.reg_logp != 0.0 or self.reg_acc != 0.0:
            _k.catch_up_all(self.decoder_coef, self.dec_logp_feat, self.dec_acc_feat,
                            self.reg_logp, 0.0, n_threads)
        super().flush_regularization(n_threads)

    def param_arrays(self):
        coefs, intercepts = super().param_arrays()
        return coefs + [self.decoder_coef], intercepts + [self.decoder_intercept]
