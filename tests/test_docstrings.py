"""The examples in the docstrings run, and the public docstrings are complete.

Every ``>>>`` example of every Python module of the installed package is run
as a doctest, one test per docstring, so that the examples shown in the API
reference stay true. Outputs are compared with ELLIPSIS and
NORMALIZE_WHITESPACE; the examples print shapes, dtypes and exact integers,
never floats whose last digits depend on the platform.

The public classes and functions must also have the numpydoc sections the
API reference is built from: Parameters, Attributes (classes), See Also and
Examples.
"""

import doctest
import importlib
import inspect
import pkgutil
import re

import pytest

import sksparsenn

OPTIONFLAGS = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE

# Modules that must not be imported for their doctests: importing
# ``sksparsenn.__main__`` is harmless, but it is a command, not a library.
SKIP_MODULES = {"sksparsenn.__main__"}


def _package_modules():
    """The installed package and all its pure-Python submodules."""
    names = ["sksparsenn"]
    for info in pkgutil.walk_packages(sksparsenn.__path__, prefix="sksparsenn."):
        if info.name not in SKIP_MODULES:
            names.append(info.name)
    modules = [importlib.import_module(name) for name in sorted(names)]
    # Compiled modules have no doctests and no Python source to search.
    return [m for m in modules if getattr(m, "__file__", "").endswith(".py")]


def _doctests():
    finder = doctest.DocTestFinder(exclude_empty=True)
    tests = {}
    for module in _package_modules():
        for test in finder.find(module):
            if test.examples:
                # The same docstring can be reached twice (e.g. through a
                # re-export); one test per docstring.
                tests.setdefault(test.name, test)
    return [tests[name] for name in sorted(tests)]


DOCTESTS = _doctests()


def test_doctests_were_found():
    names = {test.name for test in DOCTESTS}
    for expected in (
        "sksparsenn._regressor.SparseMLPRegressor",
        "sksparsenn._transformer.SparseMLPTransformer",
        "sksparsenn.datasets.make_sparse_regression",
    ):
        assert expected in names, sorted(names)


@pytest.mark.parametrize("test", DOCTESTS, ids=[test.name for test in DOCTESTS])
def test_docstring_examples(test):
    report = []
    runner = doctest.DocTestRunner(optionflags=OPTIONFLAGS, verbose=False)
    result = runner.run(test, out=report.append, clear_globs=True)
    if result.failed:
        pytest.fail(
            f"{result.failed} of {result.attempted} examples failed in {test.name} "
            f"({test.filename}, line {test.lineno}):\n" + "".join(report),
            pytrace=False,
        )
    assert result.attempted > 0


# --------------------------------------------------------------------------- #
# Completeness of the public docstrings
# --------------------------------------------------------------------------- #
def _public_modules():
    """The package and its submodules whose names do not start with '_'."""
    names = ["sksparsenn"] + [
        info.name for info in pkgutil.iter_modules(sksparsenn.__path__, "sksparsenn.")
        if not info.name.rsplit(".", 1)[1].startswith("_")
    ]
    return [importlib.import_module(name) for name in names]


def _public_objects():
    """Classes and functions of the public API: the names in each public
    module's ``__all__`` or, without one, the public classes and functions
    it defines."""
    objects = {}
    for module in _public_modules():
        names = getattr(module, "__all__", None)
        if names is None:
            names = [name for name, obj in vars(module).items()
                     if not name.startswith("_")
                     and (inspect.isfunction(obj) or inspect.isclass(obj))
                     and obj.__module__ == module.__name__]
        for name in names:
            obj = getattr(module, name)
            if inspect.isfunction(obj) or inspect.isclass(obj):
                objects.setdefault(f"{obj.__module__}.{obj.__qualname__}", obj)
    return [objects[name] for name in sorted(objects)]


PUBLIC = _public_objects()

# Sections known to be missing, as {qualified name: reason}. strict=True: once
# the docstring is complete, the test fails until its entry is removed here.
KNOWN_GAPS = {}


def _sections(obj):
    """Titles of the numpydoc sections of obj's docstring."""
    doc = inspect.cleandoc(obj.__doc__ or "")
    return set(re.findall(r"^([A-Z][A-Za-z ]+)\n-{3,}$", doc, flags=re.MULTILINE))


def _public_param(obj):
    name = f"{obj.__module__}.{obj.__qualname__}"
    marks = []
    if name in KNOWN_GAPS:
        marks.append(pytest.mark.xfail(reason=KNOWN_GAPS[name], strict=True))
    return pytest.param(obj, id=name, marks=marks)


def test_public_api_is_known():
    names = {f"{obj.__module__}.{obj.__qualname__}" for obj in PUBLIC}
    assert {"sksparsenn._regressor.SparseMLPRegressor",
            "sksparsenn._transformer.SparseMLPTransformer",
            "sksparsenn.datasets.make_sparse_regression"} <= names
    assert set(KNOWN_GAPS) <= names  # no stale entries


@pytest.mark.parametrize("obj", [_public_param(obj) for obj in PUBLIC])
def test_public_docstring_sections(obj):
    required = {"Parameters", "See Also", "Examples"}
    if inspect.isclass(obj):
        required.add("Attributes")
    elif inspect.isgeneratorfunction(inspect.unwrap(obj)):
        required.add("Yields")
    else:
        required.add("Returns")
    missing = required - _sections(obj)
    assert not missing, f"{obj.__qualname__} docstring lacks {sorted(missing)}"
    # Its examples are among the doctests that run above.
    name = f"{obj.__module__}.{obj.__qualname__}"
    assert name in {test.name for test in DOCTESTS}


ESTIMATORS = [o for o in PUBLIC if inspect.isclass(o) and hasattr(o, "get_params")]


@pytest.mark.parametrize("cls", ESTIMATORS, ids=[cls.__name__ for cls in ESTIMATORS])
def test_every_parameter_is_documented(cls):
    doc = inspect.cleandoc(cls.__doc__)
    params = doc.split("Parameters\n----------\n", 1)[1].split("\nAttributes\n", 1)[0]
    documented = re.findall(r"^(\w+) :", params, flags=re.MULTILINE)
    # all of them, in the order of the signature (numpydoc checks the order too)
    assert documented == list(inspect.signature(cls).parameters)
