"""SparseMLPTransformer: dense learned features from sparse rows."""

from sklearn.base import ClassNamePrefixFeaturesOutMixin, TransformerMixin, _fit_context
from sklearn.utils.validation import check_is_fitted

from ._base import BaseSparseMLP


class SparseMLPTransformer(ClassNamePrefixFeaturesOutMixin, TransformerMixin, BaseSparseMLP):
    """Turn very wide sparse rows into dense learned features.

    Trains the same network as :class:`SparseMLPRegressor` (same kernels,
    same training loop, same parameters) to predict ``y``, and then
    ``transform`` returns the activations of its last hidden layer: a dense
    array of shape (n_samples, hidden_layer_sizes[-1]) that a linear model,
    a tree ensemble or any other estimator can take, e.g.
    ``make_pipeline(SparseMLPTransformer(), Ridge())``.

    Parameters
    ----------
    hidden_layer_sizes : array-like of shape (n_layers - 2,), default=(100,)
        Sizes of the hidden layers; the last one is the number of output
        features of ``transform``. At least one hidden layer.

    activation : {'identity', 'logistic', 'tanh', 'relu'}, default='relu'
        Activation of the hidden layers (and so of the features).

    solver : {'adam', 'adagrad', 'sgd'}, default='adam'
        Optimizer; see :class:`SparseMLPRegressor`.

    alpha : float, default=0.0001
        L2 penalty, as in :class:`SparseMLPRegressor`.

    alpha_l1 : float, default=0.0
        L1 penalty on the first layer, as in :class:`SparseMLPRegressor`.

    row_scaling : {'none', 'mean', 'sqrt', 'l2'}, default='sqrt'
        Scaling of each input row, on the fly; see :class:`SparseMLPRegressor`.

    batch_size : int or 'auto', default='auto'
        Minibatch size; 'auto' is ``min(200, n_samples)``.

    learning_rate : {'constant', 'invscaling', 'adaptive'}, default='constant'
        Learning-rate schedule of solver='sgd'.

    learning_rate_init : float, default=0.001
        Initial learning rate.

    power_t : float, default=0.5
        Exponent of the 'invscaling' schedule.

    max_iter : int, default=200
        Maximum number of epochs.

    shuffle : bool, default=True
        Whether to shuffle the rows each epoch.

    random_state : int, RandomState instance or None, default=None
        Seed of the initialisation, shuffling and validation split.

    tol : float, default=1e-4
        Tolerance of the stopping rule.

    verbose : bool, default=False
        Print one line per epoch.

    warm_start : bool, default=False
        Continue from the previous fit.

    momentum : float, default=0.9
        Momentum of solver='sgd'.

    nesterovs_momentum : bool, default=True
        Nesterov's momentum with solver='sgd'.

    early_stopping : bool, default=False
        Stop on a held-out validation R^2 and restore the best weights.

    validation_fraction : float, default=0.1
        Proportion of rows held out with ``early_stopping``.

    beta_1 : float, default=0.9
        Adam's first-moment decay.

    beta_2 : float, default=0.999
        Adam's second-moment decay.

    epsilon : float, default=1e-8
        Numerical stability term of Adam and Adagrad.

    n_iter_no_change : int, default=10
        Epochs without improvement before stopping.

    dtype : {'float32', 'float64'} or numpy float type, default='float32'
        Compute dtype, and dtype of the output of ``transform``.

    Attributes
    ----------
    coefs_ : list of ndarray
        Weight matrices; ``coefs_[0]`` has shape (n_features, H1).

    intercepts_ : list of ndarray
        Bias vectors.

    loss_ : float
        Loss of the last epoch.

    loss_curve_ : list
        Loss of each epoch.

    best_loss_ : float or None
        Smallest loss seen; None with ``early_stopping``.

    validation_scores_ : list or None
        Validation R^2 of each epoch with ``early_stopping``.

    best_validation_score_ : float or None
        Best validation R^2 with ``early_stopping``.

    n_iter_ : int
        Number of epochs run.

    t_ : int
        Number of training samples seen.

    n_layers_ : int
        Number of layers.

    n_outputs_ : int
        Number of targets the network was trained on.

    out_activation_ : str
        Output activation of the training network, 'identity'.

    n_features_in_ : int
        Number of input features.

    feature_names_in_ : ndarray of shape (n_features_in_,)
        Names of the input features, when X has string column names.

    See Also
    --------
    SparseMLPRegressor : The same network used as a regressor.
    sklearn.decomposition.TruncatedSVD : Unsupervised linear features of sparse input.

    Examples
    --------
    >>> from sklearn.linear_model import Ridge
    >>> from sklearn.pipeline import make_pipeline
    >>> from sksparsenn import SparseMLPTransformer
    >>> from sksparsenn.datasets import make_sparse_regression
    >>> X, y = make_sparse_regression(n_samples=2000, n_features=2**16,
    ...                               random_state=0)
    >>> features = SparseMLPTransformer(hidden_layer_sizes=(16,), max_iter=5,
    ...                                 random_state=0).fit(X, y)
    >>> features.transform(X[:3]).shape
    (3, 16)
    >>> features.get_feature_names_out()[:2]
    array(['sparsemlptransformer0', 'sparsemlptransformer1'], dtype=object)
    >>> pipe = make_pipeline(SparseMLPTransformer(hidden_layer_sizes=(16,),
    ...                                           max_iter=5, random_state=0),
    ...                      Ridge()).fit(X, y)
    """

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y, sample_weight=None):
        """Train the network to predict y from X.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
            Input; converted once to CSR in the compute dtype.

        y : array-like of shape (n_samples,) or (n_samples, n_outputs)
            Targets the features are learned for.

        sample_weight : array-like of shape (n_samples,), default=None
            Weights of the samples in the loss.

        Returns
        -------
        self : object
            The fitted transformer.
        """
        self._check_has_hidden_layer()
        return self._fit(X, y, sample_weight, incremental=False)

    @_fit_context(prefer_skip_nested_validation=True)
    def partial_fit(self, X, y, sample_weight=None):
        """One epoch of training on the given data (see fit).

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
            The updated transformer.
        """
        self._check_has_hidden_layer()
        return self._fit(X, y, sample_weight, incremental=True)

    def transform(self, X):
        """Activations of the last hidden layer, computed in chunks of rows.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
            Input.

        Returns
        -------
        X_new : ndarray of shape (n_samples, hidden_layer_sizes[-1])
            Dense features, in the compute dtype.
        """
        check_is_fitted(self, "_network")
        return self._forward_output(X, n_layers=len(self.coefs_) - 1)

    def _check_has_hidden_layer(self):
        if len(self._hidden_sizes()) == 0:
            raise ValueError(
                "SparseMLPTransformer needs at least one hidden layer: its output "
                "is the last hidden layer; got hidden_layer_sizes=()."
            )

    @property
    def _n_features_out(self):
        return self.coefs_[-1].shape[0]

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.required = True
        tags.transformer_tags.preserves_dtype = [self._compute_dtype().name]
        return tags
