"""sksparsenn: scikit-learn neural networks for very wide, very sparse inputs.

A minibatch costs work proportional to its non-zeros, never to n_features:
the first layer runs in Cython/OpenMP kernels over CSR rows, with lazy
optimizers and lazy regularisation.
"""

from ._regressor import SparseMLPRegressor

__version__ = "0.1.0.dev0"

__all__ = ["SparseMLPRegressor", "__version__"]
