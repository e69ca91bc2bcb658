"""sksparsenn: scikit-learn neural networks for very wide, very sparse inputs.

A minibatch costs work proportional to its non-zeros, never to n_features:
the first layer runs in Cython/OpenMP kernels over CSR rows, with lazy
optimizers and lazy regularisation.
"""

try:
    from . import _sparse_kernels  # noqa: F401  (compiled)
except ImportError as exc:  # pragma: no cover - depends on how Python was started
    import os as _os

    _here = _os.path.dirname(_os.path.abspath(__file__))
    if _os.path.exists(_os.path.join(_here, "..", "meson.build")):
        raise ImportError(
            f"sksparsenn is being imported from its source tree ({_here}), which "
            "has no compiled kernels. Install it (python -m pip install .) and run "
            "Python from another directory, or install it in editable mode "
            "(python -m pip install --no-build-isolation -e .)."
        ) from exc
    raise

from ._regressor import SparseMLPRegressor
from ._transformer import SparseMLPTransformer
from ._version import __version__
from .stream import fit_stream

__all__ = ["SparseMLPRegressor", "SparseMLPTransformer", "fit_stream", "__version__"]
