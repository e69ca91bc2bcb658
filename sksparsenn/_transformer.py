"""SparseMLPTransformer: dense learned features from sparse rows."""

from numbers import Real

from sklearn.base import ClassNamePrefixFeaturesOutMixin, TransformerMixin, _fit_context
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import check_is_fitted

from ._base import BaseSparseMLP


class SparseMLPTransformer(ClassNamePrefixFeaturesOutMixin, TransformerMixin, BaseSparseMLP):
    """Turn very wide sparse rows into dense learned features.

    Supervised, ``fit(X, y)`` trains the same network as
    :class:`SparseMLPRegressor` (same kernels, same training loop, same
    parameters) to predict ``y``; ``transform`` then returns the activations
    of its last hidden layer: a dense array of shape
    (n_samples, hidden_layer_sizes[-1]) that a linear model, a tree ensemble
    or any other estimator can take, e.g.
    ``make_pipeline(SparseMLPTransformer(), Ridge())``.

    Unsupervised, ``fit(X)`` trains an autoencoder: the hidden layers encode
    the row, and a linear decoder reconstructs the (row-scaled) input from
    the last hidden layer, the code that ``transform`` returns. Its loss uses
    reconstruction sampling (Dauphin, Glorot and Bengio, 2011): the squared
    error is taken on the row's non-zeros and on a random sample of its zeros
    (``zero_sampling`` per non-zero), each sampled zero weighted so that the
    loss estimates the error over all n_features columns without bias. A step
    costs O(nnz x H), never O(n_features x H).

    Parameters
    ----------
    hidden_layer_sizes : array-like of shape (n_layers - 2,), default=(100,)
        Sizes of the hidden layers; the last one is the number of output
        features of ``transform``. At least one hidden layer.

    activation : {'identity', 'logistic', 'tanh', 'relu'}, default='relu'
        Activation of the hidden layers (and so of the features).

    solver : {'adam', 'adagrad', 'rowwise_adagrad', 'sgd'}, default='adam'
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

    learning_rate_init : float or 'auto', default=0.001
        Initial learning rate; 'auto' is 0.001 for solver='adam' and 0.05 for
        the other solvers.

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

    early_stopping : bool or 'auto', default=False
        Stop on a held-out validation R^2 and restore the best weights
        (supervised fit only). 'auto': on in a supervised ``fit`` when at
        least 100 rows would be held out, as in :class:`SparseMLPRegressor`.

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

    input_dropout : float, default=0.0
        Input dropout on the stored non-zeros, as in
        :class:`SparseMLPRegressor`. With the reconstruction objective the
        encoder sees the corrupted rows and the loss targets the clean ones
        (a denoising autoencoder, Vincent et al., 2008).

    max_norm : float or None, default=None
        Max-norm constraint on the first-layer rows, as in
        :class:`SparseMLPRegressor`.

    initial_accumulator_value : float, default=0.001
        Starting value of Adagrad's accumulators (solvers 'adagrad' and
        'rowwise_adagrad'), as in :class:`SparseMLPRegressor`.

    average_decay : float in [0, 1), default=0.0
        Moving average of the weights over the epochs of ``fit``, as in
        :class:`SparseMLPRegressor`.

    zero_sampling : float, default=1.0
        Unsupervised fit only: how many zero columns of a row are sampled for
        its reconstruction loss, per non-zero of the row (at least one). More
        samples give a less noisy loss at a proportional cost; 1.0 samples as
        many zeros as the row has non-zeros.

    objective : {'auto', 'targets', 'reconstruction'}, default='auto'
        What the network is trained for: 'targets' predicts y, 'reconstruction'
        trains the autoencoder and ignores y (use it inside a Pipeline, which
        always passes y), 'auto' predicts y when it is given and reconstructs
        X otherwise.

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
        Number of targets the network was trained on (n_features when fitted
        without y: the reconstruction).

    out_activation_ : str
        Output activation of the training network, 'identity'.

    feature_importances_ : ndarray of shape (`n_features_in_`,)
        L2 norm of each feature's row of ``coefs_[0]``; exactly 0 for the
        features that ``alpha_l1`` has removed. Computed on access.

    n_features_in_ : int
        Number of input features.

    feature_names_in_ : ndarray of shape (`n_features_in_`,)
        Names of the input features, when X has string column names.

    See Also
    --------
    SparseMLPRegressor : The same network used as a regressor.
    sklearn.decomposition.TruncatedSVD : Unsupervised linear features of sparse input.

    Notes
    -----
    Trained without y, the network has a linear decoder with one weight row
    per input feature, like the first layer: it adds n_features x H_code
    weights (H_code is ``hidden_layer_sizes[-1]``) and their optimizer state,
    about twice the memory of the regressor when there is one hidden layer.
    A step reads and updates only the decoder rows of the columns in its
    loss: the row's non-zeros and the sampled zeros.

    Examples
    --------
    >>> from sklearn.linear_model import Ridge
    >>> from sklearn.pipeline import make_pipeline
    >>> from sksparsenn import SparseMLPTransformer
    >>> from sksparsenn.datasets import make_sparse_regression
    >>> X, y = make_sparse_regression(n_samples=200, n_features=1000,
    ...                               random_state=0)

    Features learned for the targets y:

    >>> features = SparseMLPTransformer(hidden_layer_sizes=(16,),
    ...                                 learning_rate_init=0.01,
    ...                                 random_state=0).fit(X, y)
    >>> features.transform(X[:3]).shape
    (3, 16)
    >>> features.get_feature_names_out()[:2]
    array(['sparsemlptransformer0', 'sparsemlptransformer1'], dtype=object)

    The same inside a Pipeline, feeding a linear model:

    >>> pipe = make_pipeline(
    ...     SparseMLPTransformer(hidden_layer_sizes=(16,),
    ...                          learning_rate_init=0.01, random_state=0),
    ...     Ridge(),
    ... ).fit(X, y)
    >>> pipe.predict(X[:3]).shape
    (3, 8)

    Without y, an autoencoder trained with reconstruction sampling:

    >>> autoencoder = SparseMLPTransformer(hidden_layer_sizes=(16,),
    ...                                    objective="reconstruction",
    ...                                    random_state=0).fit(X)
    >>> autoencoder.transform(X[:3]).shape
    (3, 16)
    >>> autoencoder.n_outputs_  # the network reconstructs every input column
    1000
    """

    _parameter_constraints: dict = {
        **BaseSparseMLP._parameter_constraints,
        "zero_sampling": [Interval(Real, 0, None, closed="neither")],
        "objective": [StrOptions({"auto", "targets", "reconstruction"})],
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
        initial_accumulator_value=0.001,
        average_decay=0.0,
        zero_sampling=1.0,
        objective="auto",
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
        self.zero_sampling = zero_sampling
        self.objective = objective

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y=None, sample_weight=None):
        """Train the network to predict y from X, or to reconstruct X.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
            Input; converted once to CSR in the compute dtype.

        y : array-like of shape (n_samples,) or (n_samples, n_outputs), default=None
            Targets the features are learned for; None trains the
            autoencoder with reconstruction sampling.

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
    def partial_fit(self, X, y=None, sample_weight=None):
        """One epoch of training on the given data (see fit).

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
            Input.

        y : array-like of shape (n_samples,) or (n_samples, n_outputs), default=None
            Targets; None for the autoencoder.

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
        """Activations of the last hidden layer (the code), in chunks of rows.

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
        return self._forward_output(X, n_layers=self._feature_layer())

    def _is_unsupervised(self, y):
        if self.objective == "targets" and y is None:
            raise ValueError("objective='targets' needs y.")
        return self.objective == "reconstruction" or (self.objective == "auto" and y is None)

    def _feature_layer(self):
        """Number of layers up to the one transform returns."""
        return len(self.coefs_) - (0 if self._unsupervised else 1)

    def _check_has_hidden_layer(self):
        if len(self._hidden_sizes()) == 0:
            raise ValueError(
                "SparseMLPTransformer needs at least one hidden layer: its output "
                "is the last hidden layer; got hidden_layer_sizes=()."
            )

    @property
    def _n_features_out(self):
        return self._network.layer_units[self._feature_layer()]

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.required = False
        tags.transformer_tags.preserves_dtype = [self._compute_dtype().name]
        return tags
