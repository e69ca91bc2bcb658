"""Sphinx configuration of the sksparsenn documentation.

Build from outside the repository root, against the installed package:

    cd /tmp && sphinx-build -W --keep-going -b html /path/to/repo/doc /path/to/html

The API reference is generated from the docstrings of the *installed*
package. The repository's ``sksparsenn/`` folder has no compiled kernels, so
it must not be importable from here: this file never adds the repository root
to ``sys.path`` and removes it (or ``''`` standing for it) if Python put it
there, e.g. when ``python -m sphinx`` is started from the repository root.
"""

import os
import re
import sys
from pathlib import Path

_REPO_ROOT = Path(__file__).resolve().parent.parent


def _is_repo_root(entry):
    try:
        return Path(entry or os.getcwd()).resolve() == _REPO_ROOT
    except OSError:  # pragma: no cover - unreadable path entries
        return False


sys.path[:] = [entry for entry in sys.path if not _is_repo_root(entry)]

try:
    import sksparsenn  # noqa: E402
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise RuntimeError(
        "The documentation is built from the installed sksparsenn package: "
        "run `python -m pip install \".[doc]\"` first, and run sphinx-build "
        "from a directory other than the repository root."
    ) from exc

# -- Project -------------------------------------------------------------- #
project = "sksparsenn"
author = "sksparsenn developers"
copyright = "sksparsenn developers"
release = sksparsenn.__version__
version = release

# -- General -------------------------------------------------------------- #
extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.mathjax",
    "sphinx-mathjax-offline",  # ships MathJax with the pages: math renders offline
    "numpydoc",
    "matplotlib.sphinxext.plot_directive",
]
templates_path = ["_templates"]
exclude_patterns = ["_build", "README.md"]
root_doc = "index"
default_role = "literal"  # `x` renders as code, as ``x`` does
smartquotes = False  # keep the straight quotes of parameter values (`'l2'`)

# -- autodoc / autosummary / numpydoc ------------------------------------- #
autosummary_generate = True
autodoc_default_options = {"inherited-members": True, "members": True}
autodoc_typehints = "none"
# The class pages list methods through the autosummary template, as
# scikit-learn's documentation does; numpydoc must not add a second list.
numpydoc_show_class_members = False
numpydoc_class_members_toctree = False
numpydoc_attributes_as_param_list = True
# Docstring checks that turn into build errors under `sphinx-build -W`:
# every parameter documented, no undocumented or misspelt ones, a summary,
# and See Also / Examples sections on the public classes and functions (the
# last two are checked in tests/test_docstrings.py, which knows which
# objects are public).
numpydoc_validation_checks = {"PR01", "PR02", "PR03", "PR10", "GL02", "GL03", "SS01"}
# Methods inherited from scikit-learn are documented there.
numpydoc_validation_exclude = {
    r"\.get_params$",
    r"\.set_params$",
    r"\.get_metadata_routing$",
    r"\.set_.*_request$",
    r"\.set_output$",
    r"\.fit_transform$",
    r"\.score$",
    r"\.get_feature_names_out$",
    r"\.__init__$",
}

# -- plots (examples run while the documentation is built) ---------------- #
plot_include_source = True
plot_html_show_source_link = False
plot_html_show_formats = False
plot_formats = [("png", 100)]
plot_rcparams = {"figure.autolayout": False}

# -- HTML ----------------------------------------------------------------- #
html_theme = "pydata_sphinx_theme"
html_title = f"sksparsenn {release}"
html_theme_options = {
    "navigation_with_keys": False,
    "show_toc_level": 2,
    "secondary_sidebar_items": ["page-toc"],
}
html_static_path = []
html_show_sourcelink = False

# -- Links to other projects' documentation ------------------------------ #
# Intersphinx would need network access at build time. The API pages of
# scikit-learn, NumPy and SciPy follow one URL pattern each, so references to
# their objects that Sphinx cannot resolve locally become links to those
# pages instead. Unresolved references are not warnings (nitpicky is off);
# they render as plain code.
_EXTERNAL_API = {
    "sklearn": "https://scikit-learn.org/stable/modules/generated/",
    "numpy": "https://numpy.org/doc/stable/reference/generated/",
    "scipy": "https://docs.scipy.org/doc/scipy/reference/generated/",
}


def _resolve_object(target):
    import importlib

    parts = target.split(".")
    for i in range(len(parts) - 1, 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:i]))
        except ImportError:
            continue
        try:
            for name in parts[i:]:
                obj = getattr(obj, name)
        except AttributeError:
            return None
        return obj
    return None


def _external_uri(target):
    import inspect

    parts = target.split(".")
    base = _EXTERNAL_API.get(parts[0])
    if base is None or len(parts) < 2:
        return None
    obj = _resolve_object(target)
    if obj is None or inspect.ismodule(obj):
        return None
    if parts[0] == "sklearn":
        if len(parts) >= 4 and parts[-2][:1].isupper():  # a method: the class page
            return f"{base}{'.'.join(parts[:-1])}.html#{target}"
        return f"{base}{target}.html"
    # NumPy and SciPy have a page per function and per class (not per scalar type).
    if callable(obj) and (not isinstance(obj, type) or parts[0] == "scipy"
                          or target == "numpy.ndarray"):
        return f"{base}{target}.html"
    return None


def _external_reference(app, env, node, contnode):
    from docutils import nodes

    if node.get("refdomain") != "py":
        return None
    target = node.get("reftarget", "")
    if target.startswith("sksparsenn."):
        # A public name re-exported by the package (sksparsenn.fit_stream):
        # link to the page of the object under its defining module.
        obj = _resolve_object(target)
        module = getattr(obj, "__module__", "") or ""
        qualname = getattr(obj, "__qualname__", "")
        canonical = f"{module}.{qualname}"
        if obj is None or not qualname or canonical == target:
            return None
        node = node.deepcopy()
        node["reftarget"] = canonical
        return env.get_domain("py").resolve_xref(
            env, node["refdoc"], app.builder, node["reftype"], canonical, node, contnode
        )
    uri = _external_uri(target)
    if uri is None:
        return None
    ref = nodes.reference("", "", internal=False, refuri=uri, reftitle=target)
    ref.append(contnode)
    return ref


# Methods inherited from scikit-learn (score, get_params, set_output, ...)
# are documented with their own docstrings, whose :ref: and :term: roles point
# to labels of scikit-learn's documentation that do not exist here. They are
# rendered as plain text instead of failing the build.
_STD_ROLE = re.compile(r":(?:ref|term|doc):`([^`]*)`")


def _plain_std_role(match):
    text = match.group(1)
    if "<" in text and text.rstrip().endswith(">"):
        text = text[: text.index("<")].rstrip() or text[text.index("<") + 1 : -1]
    return f"*{text}*"


def _neutralise_sklearn_roles(app, what, name, obj, options, lines):
    module = getattr(obj, "__module__", None) or ""
    if not module.startswith("sklearn"):
        func = getattr(obj, "fget", None)  # properties
        module = getattr(func, "__module__", None) or ""
    if module.startswith("sklearn"):
        lines[:] = _STD_ROLE.sub(_plain_std_role, "\n".join(lines)).split("\n")


# Every public object must be in the API reference: the names in the
# ``__all__`` of the package and of its public submodules (or, without
# ``__all__``, their public functions and classes) are checked against the
# autosummary entries of api.rst. A missing one is a warning, hence an error
# under ``sphinx-build -W``.
def _public_api():
    import importlib
    import inspect
    import pkgutil

    objects = {}
    modules = ["sksparsenn"] + [
        info.name for info in pkgutil.iter_modules(sksparsenn.__path__, "sksparsenn.")
        if not info.name.rsplit(".", 1)[1].startswith("_")
    ]
    for modname in modules:
        module = importlib.import_module(modname)
        names = getattr(module, "__all__", None)
        if names is None:
            names = [n for n, o in vars(module).items()
                     if not n.startswith("_") and (inspect.isfunction(o) or inspect.isclass(o))
                     and o.__module__ == modname]
        for name in names:
            if not name.startswith("__"):
                objects.setdefault(id(getattr(module, name)), f"{modname}.{name}")
    return objects


def _documented_api(text):
    import importlib

    documented = set()
    current = None
    in_autosummary = False
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith(".. currentmodule::"):
            current = stripped.split("::", 1)[1].strip()
        elif stripped.startswith(".. autosummary::"):
            in_autosummary = True
        elif in_autosummary and line and not line[0].isspace():
            in_autosummary = False
        elif in_autosummary and stripped and not stripped.startswith(":"):
            module = importlib.import_module(current)
            documented.add(id(getattr(module, stripped)))
    return documented


def _check_api_complete(app):
    from sphinx.util import logging

    logger = logging.getLogger(__name__)
    api = Path(app.srcdir) / "api.rst"
    documented = _documented_api(api.read_text(encoding="utf-8"))
    for key, name in sorted(_public_api().items(), key=lambda kv: kv[1]):
        if key not in documented:
            logger.warning(f"public object {name} is missing from api.rst",
                           location=str(api))


def setup(app):
    app.connect("missing-reference", _external_reference)
    app.connect("builder-inited", _check_api_complete)
    app.connect("autodoc-process-docstring", _neutralise_sklearn_roles)
