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
    ``n_features``. The optimizers ('adam', 'adagrad', 'sgd') and the
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

    solver : {'adam', 'adagrad', 'sgd'}, default='adam'
        Optimizer. 'adam' is scikit-learn's Adam with lazy updates of the
        first layer (the moments of a feature's row move only when the feature
        is in the batch, as in PyTorch's SparseAdam); 'adagrad' gives rare
        features larger steps (Duchi et al., 2011); 'sgd' is stochastic
        gradient descent with (Nesterov) momentum and the learning-rate
        schedules of ``learning_rate``.

    alpha : float, default=0.0001
        Strength of the L2 penalty on the weights (not the intercepts), with
        the meaning of MLPRegressor's: each step multiplies the weights by
        ``1 - lr * alpha / n_batch``, ``n_batch`` being the batch size
        (its total sample weight with ``sample_weight``). For the first layer this decay is
        applied lazily and exactly.

    alpha_l1 : float, default=0.0
        Strength of an L1 penalty on the first layer's weights. Each step
        soft-thresholds them by ``lr * alpha_l1 / n_batch`` (cumulative,
        lazy), so the weights of useless features become exactly zero.

    row_scaling : {'none', 'mean', 'sqrt', 'l2'}, default='sqrt'
        How each input row is scaled before the first layer, on the fly (X is
        never copied): 'none' uses the row as it is; 'mean' divides by its
        number of non-zeros, 'sqrt' by the square root of that number, 'l2'
        by its Euclidean norm (TensorFlow's embedding combiners 'sum', 'mean'
        and 'sqrtn' are the first three). With rows whose number of non-zeros
        differs by orders of magnitude, scaling keeps an almost-full row from
        producing a first-layer output thousands of times larger than a
        typical row's.

    batch_size : int or 'auto', default='auto'
        Size of the minibatches; 'auto' is ``min(200, n_samples)``.

    learning_rate : {'constant', 'invscaling', 'adaptive'}, default='constant'
        Learning-rate schedule, used by solver='sgd' only (see MLPRegressor).

    learning_rate_init : float, default=0.001
        Initial learning rate.

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

    early_stopping : bool, default=False
        Hold out ``validation_fraction`` of the rows, stop when their R^2
        does not improve, and restore the weights of the best epoch. The
        split uses row numbers only: X is not copied.

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

    Attributes
    ----------
    loss_ : float
        Loss of the last epoch (half the mean squared error, averaged over
        samples and outputs; the penalties are not included).

    best_loss_ : float or None
        Smallest loss seen; None with ``early_stopping``.

    loss_curve_ : list of shape (n_iter_,)
        Loss of each epoch.

    validation_scores_ : list of shape (n_iter_,) or None
        R^2 on the held-out rows after each epoch with ``early_stopping``.

    best_validation_score_ : float or None
        Best of ``validation_scores_``; None without ``early_stopping``.

    t_ : int
        Number of training samples seen.

    coefs_ : list of shape (n_layers - 1,)
        Weight matrices; ``coefs_[0]`` has shape (n_features, H1).

    intercepts_ : list of shape (n_layers - 1,)
        Bias vectors.

    n_features_in_ : int
        Number of features seen during fit.

    feature_names_in_ : ndarray of shape (n_features_in_,)
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
    sklearn.neural_network.MLPRegressor : The dense equivalent.
    sklearn.linear_model.Ridge : The linear baseline on the same sparse input.

    Notes
    -----
    The kernels use the number of OpenMP threads allowed at each call
    (``OMP_NUM_THREADS``, ``threadpoolctl.threadpool_limits``).

    Examples
    --------
    >>> from sksparsenn import SparseMLPRegressor
    >>> from sksparsenn.datasets import make_sparse_regression
    >>> X, y = make_sparse_regression(n_samples=2000, n_features=2**16,
    ...                               random_state=0)
    >>> X.shape, X.format
    ((2000, 65536), 'csr')
    >>> reg = SparseMLPRegressor(hidden_layer_sizes=(32,), max_iter=5,
    ...                          random_state=0).fit(X[:1500], y[:1500])
    >>> reg.predict(X[1500:]).shape
    (500, 8)
    """

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
