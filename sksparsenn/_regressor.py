"""SparseMLPRegressor: the public regression estimator."""

import numpy as np
from sklearn.base import RegressorMixin, _fit_context

from ._base import BaseSparseMLP


class SparseMLPRegressor(RegressorMixin, BaseSparseMLP):
    """Multi-layer perceptron regressor for very wide, very sparse inputs.

    A drop-in for :class:`sklearn.neural_network.MLPRegressor` on CSR input
    with up to millions of features: the first layer is computed by OpenMP
    kernels that touch only the non-zeros of each minibatch, so a training
    step costs time proportional to the batch's non-zeros, never to
    ``n_features``. The optimizers ('adam', 'adagrad', 'rowwise_adagrad', 'sgd') and the
    regularisation of the first layer are lazy: they read and write only the
    weight rows of the features present in the batch.

    Parameters
    ----------
    hidden_layer_sizes : array-like of shape (n_layers - 2,), default=(100,)
        The ith element is the number of neurons in the ith hidden layer. The
        first hidden layer is the sparse one; its weight matrix has shape
        (n_features, hidden_layer_sizes[0]) and dominates the memory use.

    activation : {'identity', 'logistic', 'tanh', 'relu'}, default='relu'
        Activation function of the hidden layers.

    solver : {'rowwise_adagrad', 'adam', 'adagrad', 'sgd'}, default='rowwise_adagrad'
        Optimizer. 'rowwise_adagrad' is Adagrad with one accumulator per
        first-layer row (the mean of the row's squared gradients, as FBGEMM's
        row-wise Adagrad for embedding tables): its first-layer state is one
        number per feature instead of H1, and a step moves a third of Adam's
        bytes; it is the default because, with ``initial_accumulator_value``,
        it beat a cross-validated Ridge on every data set of
        ``benchmarks/bench_quality.py`` and its epochs are the fastest (see
        the user guide). 'adam' is scikit-learn's Adam with lazy updates of the
        first layer (the moments of a feature's row move only when the feature
        is in the batch, as in PyTorch's SparseAdam); 'adagrad' gives rare
        features larger steps (Duchi et al., 2011); 'sgd' is stochastic
        gradient descent with (Nesterov) momentum and the learning-rate
        schedules of ``learning_rate``.

    alpha : float, default=1.0
        Strength of the L2 penalty on the weights (not the intercepts), with
        the meaning of MLPRegressor's: each step multiplies the weights by
        ``1 - lr * alpha / n_batch``, ``n_batch`` being the batch size
        (its total sample weight with ``sample_weight``). For the first layer
        this decay is applied lazily and exactly. The default is larger than
        MLPRegressor's 0.0001: with millions of first-layer weights, most of
        them seen in a few rows, the network overfits without it. With the
        Adagrad solvers the decay keeps its size while the gradient steps
        shrink, so its weight grows with the number of steps: on 2,000,000
        rows the validation score fell after the first epoch. Early stopping
        (on by default) keeps the best epoch; for long training without it,
        lower ``alpha``.

    alpha_l1 : float, default=0.0
        Strength of an L1 penalty on the first layer's weights. Each step
        soft-thresholds them by ``lr * alpha_l1 / n_batch`` (cumulative,
        lazy), so the weights of useless features become exactly zero.

    row_scaling : {'l2', 'sqrt', 'mean', 'none'}, default='l2'
        How each input row is scaled before the first layer, on the fly (X is
        never copied): 'none' uses the row as it is; 'mean' divides by its
        number of non-zeros, 'sqrt' by the square root of that number, 'l2'
        by its Euclidean norm. The scale multiplies the row's contribution to
        the first layer and to its gradient. These are TensorFlow's embedding
        combiners: 'none' is 'sum'; 'l2' is 'sqrtn' (the weighted sum divided
        by the square root of the sum of the squared weights); on rows whose
        stored values are all 1, 'mean' is 'mean' and 'sqrt' is 'sqrtn'. With
        rows whose number of non-zeros differs by orders of magnitude,
        scaling keeps an almost-full row from producing a first-layer output
        orders of magnitude larger than a typical row's.

    batch_size : int or 'auto', default='auto'
        Size of the minibatches; 'auto' is ``min(200, n_samples)``.

    learning_rate : {'constant', 'invscaling', 'adaptive'}, default='constant'
        Learning-rate schedule, used by solver='sgd' only (see MLPRegressor).

    learning_rate_init : float or 'auto', default='auto'
        Initial learning rate. 'auto' is 0.001 for solver='adam' (as
        MLPRegressor's) and 0.05 for the other solvers.

    power_t : float, default=0.5
        Exponent of the 'invscaling' schedule.

    max_iter : int, default=200
        Maximum number of epochs.

    shuffle : bool, default=True
        Whether to shuffle the samples in each epoch (only the row order is
        shuffled; X is not copied).

    random_state : int, RandomState instance or None, default=None
        Seeds the weight initialisation, the shuffling and the validation
        split. With the same seed, results are identical for any number of
        threads.

    tol : float, default=1e-4
        Tolerance of the stopping rule: training stops when the loss (or the
        validation score with ``early_stopping``) does not improve by at least
        ``tol`` for ``n_iter_no_change`` consecutive epochs.

    verbose : bool, default=False
        Print one line per epoch: loss, validation score (with early
        stopping), seconds and samples per second.

    warm_start : bool, default=False
        Reuse the weights and optimizer state of the previous call to fit.

    momentum : float, default=0.9
        Momentum of solver='sgd'.

    nesterovs_momentum : bool, default=True
        Whether to use Nesterov's momentum with solver='sgd'.

    early_stopping : bool or 'auto', default='auto'
        Hold out ``validation_fraction`` of the rows, stop when their R^2
        does not improve, and restore the weights of the best epoch. The
        split uses row numbers only: X is not copied. 'auto' turns it on in
        ``fit`` when at least 100 rows would be held out (1,000 rows at the
        default ``validation_fraction``), as HistGradientBoostingRegressor's
        'auto' does for large data; ``partial_fit`` never holds out rows
        ('auto' is off there; True raises).

    validation_fraction : float, default=0.1
        Proportion of rows held out with ``early_stopping``.

    beta_1 : float, default=0.9
        Adam's decay rate of the first moment.

    beta_2 : float, default=0.999
        Adam's decay rate of the second moment.

    epsilon : float, default=1e-8
        Numerical stability term of Adam and Adagrad.

    n_iter_no_change : int, default=10
        Number of epochs without improvement by ``tol`` before stopping.

    dtype : {'float32', 'float64'} or numpy float type, default='float32'
        Compute dtype of the weights, the optimizer state and X (X is
        converted to it once, without a copy when it already has it).
        float32 halves the memory of the (n_features, H) arrays.

    input_dropout : float, default=0.0
        Probability of dropping each stored non-zero of a training row at
        each step (Srivastava et al., 2014); kept values are scaled by
        ``1 / (1 - input_dropout)``, so prediction uses the plain rows. It
        costs one copy of the batch's non-zeros per step. For a linear model
        it acts as an L2 penalty adapted to each feature's frequency (Wager,
        Wang and Liang, 2013): rare features are held back more. A dropped
        feature is absent from that step (its weights and optimizer state
        are not touched). Row scale factors are those of the full rows.

    max_norm : float or None, default=None
        If set, after each update every updated first-layer row (the weights
        of one input feature) whose L2 norm exceeds ``max_norm`` is scaled
        back to it (Srebro and Shraibman, 2005; used with dropout by
        Srivastava et al., 2014). It bounds how far a rare feature's weights
        can move. The lazy L2/L1 penalties only shrink rows further.

    initial_accumulator_value : float, default=0.001
        Starting value of Adagrad's accumulated squared gradients (solvers
        'adagrad' and 'rowwise_adagrad'; TensorFlow's parameter of the same
        name). A feature's first steps are plain gradient steps of size
        ``lr / sqrt(initial_accumulator_value)`` times its gradient, until its
        own squared gradients outweigh this value: a feature seen in a few
        rows moves little, one seen in many rows gets Adagrad's adaptive
        steps. With 0, a feature's very first step has the full size ``lr``
        in every weight, however little evidence it has; on data where most
        features are noise this overfits.

    average_decay : float in [0, 1), default=0.0
        Average the weights over the epochs of ``fit`` (Polyak averaging,
        Polyak and Juditsky, 1992; taken once per epoch as in stochastic
        weight averaging, Izmailov et al., 2018): after each epoch,
        ``average <- average_decay * average + (1 - average_decay) *
        weights``, an exponential moving average that forgets an epoch's
        weights by the factor ``average_decay`` per epoch (0.8: about the
        last five epochs count). Training continues from the raw weights;
        the validation score of ``early_stopping`` is that of the averaged
        weights, and the fitted model keeps the averaged weights (of the
        best epoch with ``early_stopping``). It smooths out the
        epoch-to-epoch noise of a large learning rate, at the cost of one
        more copy of all weights in memory and one pass over them per
        epoch. 0 turns it off. ``partial_fit`` does not average (a value
        above 0 raises there).

    linear_term : bool, default=False
        Wide-and-deep (Cheng et al., 2016): add a linear map from the
        (row-scaled) input straight to the outputs, ``X @ linear_coef_``,
        trained jointly with the network by the same solver and penalties
        (``alpha``, ``alpha_l1``), so that the network only has to learn
        what a linear model cannot. It is stored row per feature and updated
        lazily like the first layer: a step costs O(nnz x n_outputs) more,
        and memory grows by ``n_features * n_outputs`` values times the
        solver's state. It starts at zero.

    Attributes
    ----------
    loss_ : float
        Loss of the last epoch (half the mean squared error, averaged over
        samples and outputs; the penalties are not included).

    linear_coef_ : ndarray of shape (n_features, n_outputs)
        Weights of the linear term; only with ``linear_term=True``.

    best_loss_ : float or None
        Smallest loss seen; None with ``early_stopping``.

    loss_curve_ : list of shape (`n_iter_`,)
        Loss of each epoch.

    validation_scores_ : list of shape (`n_iter_`,) or None
        R^2 on the held-out rows after each epoch with ``early_stopping``.

    best_validation_score_ : float or None
        Best of ``validation_scores_``; None without ``early_stopping``.

    t_ : int
        Number of training samples seen.

    coefs_ : list of shape (n_layers - 1,)
        Weight matrices; ``coefs_[0]`` has shape (n_features, H1).

    intercepts_ : list of shape (n_layers - 1,)
        Bias vectors.

    feature_importances_ : ndarray of shape (`n_features_in_`,)
        L2 norm of each feature's row of ``coefs_[0]``; exactly 0 for the
        features that ``alpha_l1`` has removed. Computed on access.

    n_features_in_ : int
        Number of features seen during fit.

    feature_names_in_ : ndarray of shape (`n_features_in_`,)
        Names of features seen during fit, when X has string column names.

    n_iter_ : int
        Number of epochs run.

    n_layers_ : int
        Number of layers.

    n_outputs_ : int
        Number of outputs.

    out_activation_ : str
        Output activation, always 'identity'.

    See Also
    --------
    SparseMLPTransformer : The same network as a feature extractor, or an
        autoencoder trained without y.
    sklearn.neural_network.MLPRegressor : The dense equivalent.
    sklearn.linear_model.Ridge : The linear baseline on the same sparse input.

    Notes
    -----
    A training step on a minibatch with ``nnz`` stored non-zeros costs
    O(nnz x H1) for the first layer (forward pass, gradient and optimizer
    update together) plus the cost of the dense layers, which does not depend
    on ``n_features`` either. Passes over the whole (n_features, H1) matrix
    happen only at initialisation, at the end of each call to ``fit`` or
    ``partial_fit`` (to bring the lazy penalties up to date), at the end of
    each epoch with ``early_stopping``, when ``feature_importances_`` is
    read, and, rarely, when the accumulated L2 decay gets very small.

    Memory: ``coefs_[0]`` and the optimizer state of the first layer
    dominate. With b bytes per value of ``dtype``, they take
    ``n_features * H1 * b`` bytes times 2 for 'sgd' with momentum (the
    velocity; with ``momentum=0`` its memory is reserved but never mapped)
    and 'adagrad' (sum of squared gradients), times 3 for 'adam' (two
    moments), and times 1 (plus ``n_features * b``) for 'rowwise_adagrad';
    plus 24 bytes per feature of bookkeeping. ``early_stopping`` adds a
    copy of the best weights.

    The kernels use the number of OpenMP threads allowed when a method is
    called (``OMP_NUM_THREADS``, ``threadpoolctl.threadpool_limits``); the
    results do not depend on it. While a method runs, BLAS is held to one
    thread when the dense layers are small (fewer than 2**24 multiply-adds
    per product), so that its threads do not compete with the kernels'.

    Examples
    --------
    >>> import numpy as np
    >>> from sksparsenn import SparseMLPRegressor
    >>> from sksparsenn.datasets import make_sparse_regression
    >>> X, y = make_sparse_regression(n_samples=200, n_features=1000,
    ...                               random_state=0)
    >>> X.format, X.shape, y.shape
    ('csr', (200, 1000), (200, 8))
    >>> reg = SparseMLPRegressor(hidden_layer_sizes=(16,),
    ...                          learning_rate_init=0.01,
    ...                          random_state=0).fit(X[:150], y[:150])
    >>> reg.predict(X[150:]).shape
    (50, 8)
    >>> reg.coefs_[0].shape  # the sparse first layer: one row per feature
    (1000, 16)
    >>> reg.feature_importances_.shape
    (1000,)

    One target and per-sample weights:

    >>> weights = np.ones(150)
    >>> weights[:10] = 2.0
    >>> reg_one = SparseMLPRegressor(hidden_layer_sizes=(16,),
    ...                              learning_rate_init=0.01, random_state=0)
    >>> reg_one.fit(X[:150], y[:150, 0], sample_weight=weights).predict(X[150:]).shape
    (50,)
    """

    _parameter_constraints: dict = {
        **BaseSparseMLP._parameter_constraints,
        "linear_term": ["boolean"],
    }

    def __init__(
        self,
        hidden_layer_sizes=(100,),
        activation="relu",
        *,
        solver="rowwise_adagrad",
        alpha=1.0,
        alpha_l1=0.0,
        row_scaling="l2",
        batch_size="auto",
        learning_rate="constant",
        learning_rate_init="auto",
        power_t=0.5,
        max_iter=200,
        shuffle=True,
        random_state=None,
        tol=1e-4,
        verbose=False,
        warm_start=False,
        momentum=0.9,
        nesterovs_momentum=True,
        early_stopping="auto",
        validation_fraction=0.1,
        beta_1=0.9,
        beta_2=0.999,
        epsilon=1e-8,
        n_iter_no_change=10,
        dtype="float32",
        input_dropout=0.0,
        max_norm=None,
        initial_accumulator_value=0.001,
        average_decay=0.0,
        linear_term=False,
    ):
        super().__init__(
            hidden_layer_sizes=hidden_layer_sizes,
            activation=activation,
            solver=solver,
            alpha=alpha,
            alpha_l1=alpha_l1,
            row_scaling=row_scaling,
            batch_size=batch_size,
            learning_rate=learning_rate,
            learning_rate_init=learning_rate_init,
            power_t=power_t,
            max_iter=max_iter,
            shuffle=shuffle,
            random_state=random_state,
            tol=tol,
            verbose=verbose,
            warm_start=warm_start,
            momentum=momentum,
            nesterovs_momentum=nesterovs_momentum,
            early_stopping=early_stopping,
            validation_fraction=validation_fraction,
            beta_1=beta_1,
            beta_2=beta_2,
            epsilon=epsilon,
            n_iter_no_change=n_iter_no_change,
            dtype=dtype,
            input_dropout=input_dropout,
            max_norm=max_norm,
            initial_accumulator_value=initial_accumulator_value,
            average_decay=average_decay,
        )
        self.linear_term = linear_term

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y, sample_weight=None):
        """Fit the model to data X and targets y.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
            Input. Any scipy sparse format or dense array; converted once to
            CSR in the compute dtype (no copy when it already is).

        y : array-like of shape (n_samples,) or (n_samples, n_outputs)
            Targets.

        sample_weight : array-like of shape (n_samples,), default=None
            Weights of the samples in the loss.

        Returns
        -------
        self : object
            The fitted estimator.
        """
        return self._fit(X, y, sample_weight, incremental=False)

    @_fit_context(prefer_skip_nested_validation=True)
    def partial_fit(self, X, y, sample_weight=None):
        """Update the model with one epoch over the given data.

        The first call initialises the network; later calls continue it
        (weights, optimizer state, step count).

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
            Input.

        y : array-like of shape (n_samples,) or (n_samples, n_outputs)
            Targets.

        sample_weight : array-like of shape (n_samples,), default=None
            Weights of the samples in the loss.

        Returns
        -------
        self : object
            The updated estimator.
        """
        return self._fit(X, y, sample_weight, incremental=True)

    def predict(self, X):
        """Predict with the fitted network.

        Rows are processed in chunks, in parallel, so memory beyond the output
        does not grow with n_samples.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
            Input.

        Returns
        -------
        y : ndarray of shape (n_samples,) or (n_samples, n_outputs)
            Predictions (float64, computed in the compute dtype); 1-D when the
            model has one output.
        """
        y_pred = self._forward_output(X).astype(np.float64)
        if y_pred.shape[1] == 1:
            return y_pred.ravel()
        return y_pred

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        tags.target_tags.single_output = True
        return tags
