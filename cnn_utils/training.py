"""Training recipes and the trained-model cache: train a model once, reuse the ``.keras`` file.

:func:`cached_model` is the generic cache: it builds a model, derives a key from the model's
own architecture (``keras.saving.serialize_keras_object``, nested blocks included) and the
training settings, and either loads the cached ``.keras`` file or trains the model and saves
it. Any change to an architecture or a recipe changes the key, so a stale model is never
loaded; there is no version number to remember.

The cache survives ordinary accidents. Files are written to temporary names in the cache
folder and renamed into place; the JSON sidecar records the SHA-256 of the ``.keras`` file, so
a truncated, emptied or overwritten model or sidecar (or a process killed between the two
renames) is detected on load and the model is trained again with a one-line warning. A lock
file beside the model (``filelock``: Linux, macOS and Windows) makes a second process wait for
the first one's training and then load its result; a cache folder that cannot be written is
reported before any training starts.

The course's own models also ship with the package (:mod:`cnn_utils.shipped`: weights only,
a manifest with each file's SHA-256 and cache key; ``make weights`` rewrites them). On a cache
miss, :func:`cached_model` looks there first: when the manifest holds the same key (the same
architecture and settings) and the file's hash matches, the weights are loaded into the freshly
built model and written to the cache, so nothing trains. ``CNN_UTILS_SHIPPED=0`` turns this off.
"""

from __future__ import annotations

import errno
import hashlib
import json
import math
import os
import re
import secrets
import shutil
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import filelock
import keras

from cnn_utils import _checks, config, data, models, shipped

__all__ = [
    "TRAINED_MODELS",
    "CacheWarning",
    "NonFiniteError",
    "StopOnNonFinite",
    "TrainingProbe",
    "architecture",
    "cache_key",
    "cached_model",
    "compile_classifier",
    "cosine_schedule",
    "gradient_norms",
    "ship_cached_models",
    "train_classifier",
    "trained",
    "trained_settings",
]

_FORMAT = shipped.MANIFEST_FORMAT  # layout of the JSON sidecar
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
_TEMPORARY = re.compile(r"^(?P<stem>.+)\.tmp-(?P<pid>\d+)-[0-9a-f]+\.(?:keras|json)$")
_STALE_SECONDS = 3600.0  # a temporary file this old belongs to no running save
_MAX_NAME = 100  # characters of a cache name: the file name adds about 60 more
_FULL = (errno.ENOSPC, errno.EDQUOT)  # the disk (or the quota) is full
# Models trained (or loaded from the shipped weights) that the cache could not store, by file:
# a second call in the same session returns them instead of training again.
_UNSAVED: dict[str, tuple[keras.Model, dict]] = {}


class CacheWarning(UserWarning):
    """A cached model file was unusable (truncated, corrupt, incomplete) and is rebuilt."""


class NonFiniteError(FloatingPointError):
    """Training produced a non-finite (NaN or Inf) loss or weight; the model is not cached."""


# ---------------------------------------------------------------------------------------------
# The cache key: the model's own architecture and the training settings
# ---------------------------------------------------------------------------------------------


def _snake_case(name: str) -> str:
    """Keras' rule for default layer names (``Conv2D`` -> ``conv2d``, ``ReLU`` -> ``re_lu``)."""
    name = re.sub(r"\W+", "", name)
    name = re.sub("(.)([A-Z][a-z]+)", r"\1_\2", name)
    name = re.sub("([a-z])([A-Z])", r"\1_\2", name)
    return name.lower()


def _auto_names(tree, found: dict[str, str]) -> None:
    """Collect the default names Keras gave (``dense_3``), in order, as canonical ``dense~k``."""
    if isinstance(tree, dict):
        inner = tree.get("config")
        if isinstance(tree.get("class_name"), str) and isinstance(inner, dict):
            name = inner.get("name")
            base = _snake_case(tree["class_name"])
            if isinstance(name, str) and re.fullmatch(rf"{re.escape(base)}(_\d+)?", name):
                if name not in found:
                    count = sum(1 for value in found.values() if value.startswith(f"{base}~"))
                    found[name] = f"{base}~{count}"
        for value in tree.values():
            _auto_names(value, found)
    elif isinstance(tree, list):
        for value in tree:
            _auto_names(value, found)


def _rename(tree, names: dict[str, str]):
    if isinstance(tree, dict):
        return {key: _rename(value, names) for key, value in tree.items()}
    if isinstance(tree, list):
        return [_rename(value, names) for value in tree]
    if isinstance(tree, str):
        return names.get(tree, tree)
    return tree


def _without_default_names(tree):
    """Replace Keras' generated names (``dense_3``, ``adam_2``) by canonical ones (``dense~0``).

    Generated names depend on how many objects of the class the session made before, not on
    the architecture; names a builder chose (``"conv1"``) are kept.
    """
    names: dict[str, str] = {}
    _auto_names(tree, names)
    return _rename(tree, names)


def architecture(model: keras.Model) -> dict:
    """The model's architecture as a JSON-able dict, independent of Keras' name counters.

    This is ``keras.saving.serialize_keras_object(model)`` (what a ``.keras`` file stores as
    its ``config.json``: every layer's configuration, nested blocks included, and the compile
    configuration if the model is compiled), with the names Keras generates (``dense_3``,
    ``sequential_7``, which depend on how many layers the session made before) replaced by
    canonical ones (``dense~0``), so that the same code gives the same architecture in any
    session.

    Args:
        model: A Keras model.

    Returns:
        A dict of plain JSON values.
    """
    return _without_default_names(
        json.loads(json.dumps(keras.saving.serialize_keras_object(model)))
    )


def _canonical_json(value, what: str, allow_nan: bool = False) -> str:
    try:
        return json.dumps(value, sort_keys=True, separators=(",", ":"), allow_nan=allow_nan)
    except (TypeError, ValueError) as error:
        raise ValueError(
            f"{what} must hold only JSON values (str, int, float, bool, None, lists and dicts "
            f"with string keys). Received: {what}={value!r} ({error})"
        ) from None


def cache_key(model: keras.Model, settings: dict) -> str:
    """The cache key of a model and its training settings: a SHA-256 hex digest.

    Args:
        model: The (untrained) model, as the recipe builds it.
        settings: A JSON-able dict of every training setting.

    Returns:
        The 64-character SHA-256 of the canonical JSON (sorted keys) of :func:`architecture`
        and ``settings``, Keras' generated names (an optimizer's ``adam_2``) made canonical.
    """
    text = _canonical_json(settings, "settings")  # checks that settings are JSON-able
    payload = {"architecture": architecture(model), "settings": json.loads(text)}
    text = _canonical_json(_without_default_names(payload), "settings")
    return hashlib.sha256(text.encode()).hexdigest()


# ---------------------------------------------------------------------------------------------
# Files: the folder, temporaries, the lock, loading and saving
# ---------------------------------------------------------------------------------------------


def _not_writable(folder: Path, name: str, error: OSError) -> PermissionError:
    return PermissionError(
        f"The model cache folder {folder} is not writable ({error.strerror or error}), so "
        f"{name!r} cannot be trained and cached there. Set the environment variable "
        "CNN_UTILS_CACHE to a writable folder, e.g. os.environ['CNN_UTILS_CACHE'] = "
        "'/tmp/cnn_utils' (read on every call), or make the folder writable."
    )


def _cache_folder(name: str) -> Path:
    try:
        return config.cache_dir(create=True)
    except OSError as error:
        raise _not_writable(config.cache_dir(create=False), name, error) from error


def _writable(folder: Path) -> OSError | None:
    """Create and delete a file in ``folder``; return the error if that is impossible."""
    try:
        handle, probe = tempfile.mkstemp(dir=folder, prefix=".write-test-")
    except OSError as error:
        if error.errno in (errno.EACCES, errno.EPERM, errno.EROFS, *_FULL):
            return error
        raise
    os.close(handle)
    os.unlink(probe)
    return None


def _pid_alive(pid: int) -> bool:
    if os.name == "nt":  # os.kill(pid, 0) would send CTRL_C_EVENT there: rely on the age
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def _clean_temporaries(folder: Path, stem: str) -> None:
    """Delete temporary files of interrupted saves.

    Every temporary of ``stem`` is stale while the caller holds its lock (only the lock holder
    writes them); other temporaries are stale when their process is gone or after an hour.
    """
    now = time.time()
    for path in folder.glob("*.tmp-*"):
        match = _TEMPORARY.match(path.name)
        if match is None:
            continue
        pid = int(match["pid"])
        try:
            if match["stem"] == stem:
                stale = True
            elif pid == os.getpid():
                stale = False  # a save of this process (another thread, another model)
            else:
                stale = not _pid_alive(pid) or now - path.stat().st_mtime > _STALE_SECONDS
            if stale:
                path.unlink()
        except FileNotFoundError:
            pass


def _lock(lock_path: Path, verbose: int, name: str) -> filelock.FileLock:
    """An exclusive lock on ``lock_path`` (Linux, macOS and Windows), acquired when returned.

    A second process asking for the same model waits here (saying so once) until the first
    one has trained and saved it, then loads its file.
    """
    lock = filelock.FileLock(lock_path)
    try:
        lock.acquire(blocking=False)
    except filelock.Timeout:
        if verbose:
            print(f"Waiting for another process that is training {name!r}...")
        lock.acquire()
    return lock


def _fsync(path: Path) -> None:
    with open(path, "rb+") as stream:
        os.fsync(stream.fileno())


def _read_record(sidecar: Path, key: str | None) -> tuple[dict | None, str]:
    """The sidecar's record if it is complete and belongs to ``key``; else ``None`` and why."""
    try:
        record = json.loads(sidecar.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None, f"its sidecar {sidecar.name} is missing"
    except (ValueError, UnicodeDecodeError):
        return None, f"its sidecar {sidecar.name} is empty, truncated or not JSON"
    if (
        not isinstance(record, dict)
        or record.get("format") != _FORMAT
        or not isinstance(record.get("info"), dict)
        or not isinstance(record.get("sha256"), str)
    ):
        return None, f"its sidecar {sidecar.name} is not a cache record"
    if key is not None and record.get("key") != key:
        return None, f"its sidecar {sidecar.name} belongs to another model"
    return record, ""


def _load(path: Path, sidecar: Path, key: str) -> tuple[keras.Model, dict] | None:
    """Load a cached model and its info, or return ``None`` (with a warning if files exist)."""
    if not path.exists() and not sidecar.exists():
        return None
    record, problem = _read_record(sidecar, key)
    model = None
    if record is not None:
        if not path.exists():
            problem = "the .keras file is missing"
        elif shipped.sha256(path) != record["sha256"]:
            problem = "the .keras file is truncated or was overwritten (checksum mismatch)"
        else:
            try:
                model = keras.models.load_model(path)
            except Exception as error:  # noqa: BLE001 - any failure means "rebuild"
                first_line = str(error).strip().splitlines()[0][:160] if str(error) else ""
                problem = f"Keras could not load it: {type(error).__name__}: {first_line}"
            if model is not None and _non_finite_weight(model) is not None:
                model, problem = None, f"its weight {_non_finite_weight(model)} is NaN or Inf"
    if model is None:
        warnings.warn(
            f"Cached model {path} is unusable ({problem}); training it again.",
            CacheWarning,
            stacklevel=3,
        )
        return None
    info = dict(record["info"])
    info["path"] = str(path)  # the folder may have moved since the model was saved
    return model, info


def _save(model: keras.Model, info: dict, key: str, path: Path, sidecar: Path) -> None:
    """Write the model and its sidecar to temporaries, then rename them into place."""
    token = f"{os.getpid()}-{secrets.token_hex(4)}"
    tmp_model = path.with_name(f"{path.stem}.tmp-{token}.keras")
    tmp_sidecar = path.with_name(f"{path.stem}.tmp-{token}.json")
    try:
        model.save(tmp_model)
        _fsync(tmp_model)
        record = {"format": _FORMAT, "key": key, "sha256": shipped.sha256(tmp_model), "info": info}
        with open(tmp_sidecar, "w", encoding="utf-8") as stream:
            json.dump(record, stream, indent=1)
            stream.flush()
            os.fsync(stream.fileno())
        # The sidecar is renamed last: until then no complete (record, model) pair exists.
        os.replace(tmp_model, path)
        os.replace(tmp_sidecar, sidecar)
    finally:
        for leftover in (tmp_model, tmp_sidecar):
            leftover.unlink(missing_ok=True)


def _file_stem(name: str, settings: dict, key: str) -> str:
    dataset = settings.get("dataset")
    parts = [name]
    if isinstance(dataset, str) and _NAME.match(dataset):
        parts.append(dataset)
    parts.append(key[:16])
    return "-".join(parts)


# ---------------------------------------------------------------------------------------------
# Shipped weights: the course's trained models, hash-pinned, in the package
# ---------------------------------------------------------------------------------------------


def _shipped_warning(message: str) -> None:
    warnings.warn(f"{message}; {shipped.FIX}.", CacheWarning, stacklevel=4)


def _from_shipped(model: keras.Model, stem: str, key: str) -> dict | None:
    """Load the shipped weights of ``stem`` into ``model`` if they match ``key``; their info.

    ``None`` when shipping is off (``CNN_UTILS_SHIPPED=0``), nothing is shipped for this stem,
    or the shipped file belongs to other settings (another key: the recipe changed since
    ``make weights``). The manifest is read once; a broken manifest, a bad entry for ``stem``,
    a file whose hash differs from the manifest's, or weights that Keras cannot load into the
    model give one :class:`CacheWarning` naming the problem and the fix, and ``None`` (the
    model then trains, from its own initial weights).
    """
    if not config.use_shipped():
        return None
    manifest = shipped.load()
    entry = manifest.entries.get(stem)
    if entry is None:
        if manifest.error is not None:
            _shipped_warning(f"No shipped weights are used: {manifest.error}")
        elif stem in manifest.bad:
            _shipped_warning(f"Skipped {manifest.bad[stem]}; training the model instead")
        return None
    if entry["key"] != key:
        return None
    weights = shipped.SHIPPED_DIR / entry["file"]
    if not shipped.verified(entry):
        _shipped_warning(
            f"Shipped weights {weights} are missing or do not match their manifest (sha256); "
            "training the model instead"
        )
        return None
    initial = model.get_weights()
    try:
        model.load_weights(weights)
        if entry.get("compile_config"):
            model.compile_from_config(entry["compile_config"])
    except Exception as error:  # noqa: BLE001 - any failure: train from the initial weights
        model.set_weights(initial)
        first_line = (str(error).strip().splitlines() or [""])[0][:160]
        _shipped_warning(
            f"Shipped weights {weights} do not fit the model {stem!r} ({type(error).__name__}: "
            f"{first_line}); training the model instead"
        )
        return None
    return {**entry["info"], "shipped": True}


def _valid_cached_models(cache_folder: Path) -> dict:
    """Stem -> (training record, loaded model) of every cache entry whose hash matches."""
    found = {}
    for sidecar in sorted(cache_folder.glob("*.json")):
        record, _ = _read_record(sidecar, key=None)
        model_path = sidecar.with_suffix(".keras")
        if (
            record is None
            or not model_path.exists()
            or shipped.sha256(model_path) != record["sha256"]
        ):
            continue
        found[sidecar.stem] = (record, keras.models.load_model(model_path))
    return found


def ship_cached_models(
    cache_folder,
    mode: str,
    folder: Path | None = None,
    *,
    keep: bool = False,
    source: str = "notebooks",
) -> dict:
    """Ship every valid model of a cache folder: weights, hash and key in the manifest.

    Used by ``make weights`` (``tools/weights.py``) after the notebooks have trained their
    models into an empty cache. Entries of the same ``mode`` and ``source`` that the cache
    folder does not hold are removed, so the manifest lists exactly what the notebooks load
    (and, separately, what the benchmarks load); with ``keep`` they stay (to ship one model
    more, trained alone).

    Args:
        cache_folder: A cache folder written by :func:`cached_model`.
        mode: ``"fast"`` or ``"full"``: which notebook mode trained these models.
        folder: Where to write (default :data:`cnn_utils.shipped.SHIPPED_DIR`).
        keep: Keep the shipped entries of ``mode`` that ``cache_folder`` does not hold.
        source: Who loads these models: ``"notebooks"`` (``make weights``) or
            ``"benchmarks"`` (``benchmarks/adversarial_training.py``). Shipping one source
            never removes the other's entries.

    Returns:
        The manifest's ``models`` table after the update.

    Raises:
        ValueError: A bad mode, a cache folder without models, or shipped weights over
            :data:`cnn_utils.shipped.SHIPPED_BUDGET_BYTES` in all.
    """
    mode = _checks.one_of("mode", mode, ("fast", "full"))
    source = _checks.one_of("source", source, ("notebooks", "benchmarks"))
    cache_folder = Path(cache_folder)
    folder = shipped.SHIPPED_DIR if folder is None else Path(folder)
    found = _valid_cached_models(cache_folder)
    if not found:
        raise ValueError(f"cache_folder holds no cached models. Received: {cache_folder}")
    folder.mkdir(parents=True, exist_ok=True)
    table = {
        k: v
        for k, v in shipped.read_manifest(folder).items()
        if keep or v.get("mode") != mode or v.get("source", "notebooks") != source
    }
    for old in folder.glob("*.weights.h5"):
        if old.name not in {entry["file"] for entry in table.values()}:
            old.unlink()
    for stem, (record, model) in found.items():
        target = folder / f"{stem}.weights.h5"
        # The weights without the optimiser's state (an uncompiled copy saves none).
        bare = keras.models.load_model(cache_folder / f"{stem}.keras", compile=False)
        bare.save_weights(target)
        info = {k: v for k, v in record["info"].items() if k not in ("path", "from_cache")}
        table[stem] = {
            "file": target.name,
            "mode": mode,
            "source": source,
            "key": record["key"],
            "sha256": shipped.sha256(target),
            "bytes": target.stat().st_size,
            "compile_config": model.get_compile_config() if model.compiled else None,
            "info": info,
        }
    total = sum(entry["bytes"] for entry in table.values())
    if total > shipped.SHIPPED_BUDGET_BYTES:
        raise ValueError(
            f"The shipped weights would weigh {total / 1e6:.1f} MB, over the budget of "
            f"{shipped.SHIPPED_BUDGET_BYTES / 1e6:.0f} MB. Received: cache_folder={cache_folder}"
        )
    shipped.write_manifest(table, folder)
    return dict(sorted(table.items()))


# ---------------------------------------------------------------------------------------------
# The generic cache
# ---------------------------------------------------------------------------------------------


def cached_model(
    name: str,
    build: Callable[[], keras.Model],
    fit: Callable[[keras.Model], dict],
    settings: dict,
    *,
    verbose: int = 1,
    return_info: bool = False,
):
    """Return a trained model, training it on first use and caching it as a ``.keras`` file.

    The model is seeded (``settings["seed"]``, default :data:`cnn_utils.config.DEFAULT_SEED`)
    and built (cheap); the key is :func:`cache_key` of its architecture and ``settings``, the
    file ``<name>-<dataset>-<digest>.keras`` in :func:`cnn_utils.config.cache_dir`, with a JSON
    sidecar holding the info. When both files are present and valid (the sidecar's checksum
    matches the model file) the model is loaded; otherwise ``fit(model)`` trains it in place
    and the files are written atomically. A damaged cache entry is rebuilt with a
    :class:`CacheWarning`; a second process asking for the same model waits for the first one
    and loads its file.

    Args:
        name: Readable start of the file name (letters, digits, ``_``, ``.``, ``-``).
        build: Returns the untrained model (called once per call, so keep it cheap).
        fit: Trains the model in place and returns a JSON-able dict of information (history,
            training time, test accuracy...).
        settings: A JSON-able dict of every training setting (dataset, epochs, subset, seed,
            optimiser settings...): anything that changes the trained weights.
        verbose: 1 prints whether the model was loaded or trained and where it is cached;
            0 is silent (``fit`` has its own verbosity).
        return_info: Also return the info dict.

    Returns:
        The trained model; with ``return_info`` a pair ``(model, info)`` where ``info`` holds
        ``name``, the settings, what ``fit`` returned, ``params``, ``key``, ``path`` and
        ``from_cache``.

    Raises:
        ValueError: A bad name, a non-callable ``build`` or ``fit``, settings or a ``fit``
            result that are not JSON-able, or ``build`` not returning a Keras model.
        PermissionError: The cache folder cannot be written and holds no valid copy (raised
            before training; the message names the folder and ``CNN_UTILS_CACHE``).
        NonFiniteError: Training left a NaN or Inf weight (the model is not cached).

    Warns:
        CacheWarning: A damaged cache entry or shipped file (rebuilt), or a model that could
            not be saved (a full disk: the model is returned all the same, and kept for the
            session; the warning names the folder, its free space and ``CNN_UTILS_CACHE``).
    """
    settings, seed = _checked_cache_arguments(name, build, fit, settings)
    verbose = _checks.integer("verbose", verbose, minimum=0)
    return_info = _checks.flag("return_info", return_info)
    folder = _cache_folder(name)
    config.set_seed(seed)
    model = build()
    if not isinstance(model, keras.Model):
        raise ValueError(f"build must return a keras.Model. Received: {model!r}")
    key = cache_key(model, settings)
    path = folder / f"{_file_stem(name, settings, key)}.keras"
    problem = _writable(folder)
    if problem is not None and problem.errno not in _FULL:  # read-only: serve what it holds
        loaded = _load_read_only(model, key, path, name, problem)
        return _finish(*loaded, from_cache=True, verbose=verbose, return_info=return_info)
    # A full disk cannot even hold the lock file: train (and warn when saving fails).
    lock = _lock(path.with_suffix(".lock"), verbose, name) if problem is None else None
    try:
        model, info, from_cache = _load_or_train(model, fit, settings, key, path, name)
    finally:
        if lock is not None:
            lock.release()
    return _finish(model, info, from_cache=from_cache, verbose=verbose, return_info=return_info)


def _checked_cache_arguments(name, build, fit, settings) -> tuple[dict, int]:
    """:func:`cached_model`'s arguments checked: the canonical settings and the seed."""
    if not isinstance(name, str) or not _NAME.match(name) or len(name) > _MAX_NAME:
        raise ValueError(
            "name must be a non-empty string of letters, digits, '_', '.' and '-', at most "
            f"{_MAX_NAME} characters (it starts the file name). Received: name={name!r}"
        )
    for argname, value in (("build", build), ("fit", fit)):
        if not callable(value):
            raise ValueError(f"{argname} must be callable. Received: {argname}={value!r}")
    if not isinstance(settings, dict):
        raise ValueError(f"settings must be a dict. Received: settings={settings!r}")
    settings = json.loads(_canonical_json(settings, "settings"))
    seed = _checks.integer("settings['seed']", settings.get("seed", config.DEFAULT_SEED), minimum=0)
    return settings, seed


def _load_read_only(model, key: str, path: Path, name: str, problem: OSError):
    """From a cache folder that cannot be written: the cached file, else the shipped weights."""
    loaded = _load(path, path.with_suffix(".json"), key)
    if loaded is not None:
        return loaded
    info = _from_shipped(model, path.stem, key)
    if info is None:
        raise _not_writable(path.parent, name, problem)
    return model, {**info, "path": str(shipped.SHIPPED_DIR / f"{path.stem}.weights.h5")}


def _load_or_train(model, fit, settings: dict, key: str, path: Path, name: str):
    """Under the model's lock: the cached file, else the shipped weights, else ``fit``.

    Returns ``(model, info, from_cache)``; whatever was not in the cache is saved there. A
    model that loaded or trained is returned even when the cache cannot store it (a full disk:
    one :class:`CacheWarning`), and kept for the rest of the session, so it never trains twice.
    """
    sidecar = path.with_suffix(".json")
    if str(path) in _UNSAVED:  # trained earlier in this session; try to store it again
        model, info = _UNSAVED[str(path)]
        if _save_quietly(model, {**info, "path": str(path)}, key, path, sidecar):
            del _UNSAVED[str(path)]
            info = {**info, "path": str(path)}
        return model, info, True
    _clean_temporaries(path.parent, path.stem)
    loaded = _load(path, sidecar, key)
    if loaded is not None:
        return *loaded, True
    info = _from_shipped(model, path.stem, key)
    from_cache = info is not None  # the course's weights: into the cache, nothing trains
    if info is None:
        result = fit(model)
        if not isinstance(result, dict):
            raise ValueError(f"fit must return a dict of information. Received: {result!r}")
        _refuse_non_finite(model, name)
        info = {"name": name, **settings, **result}
        info.update(params=int(model.count_params()), key=key)
        info = json.loads(_canonical_json(info, "fit's result", allow_nan=True))
    info = {**info, "path": str(path)}
    if not _save_or_warn(model, info, key, path, name):
        info["path"] = None
        _UNSAVED[str(path)] = (model, info)
    return model, info, from_cache


def _save_quietly(model, info: dict, key: str, path: Path, sidecar: Path) -> bool:
    try:
        _save(model, info, key, path, sidecar)
    except OSError:
        return False
    return True


def _save_or_warn(model, info: dict, key: str, path: Path, name: str) -> bool:
    """Save; when that fails, warn once (the folder, its free space, ``CNN_UTILS_CACHE``)."""
    try:
        _save(model, info, key, path, path.with_suffix(".json"))
    except OSError as error:
        try:
            free = f"{shutil.disk_usage(path.parent).free / 1e6:,.1f} MB free"
        except OSError:
            free = "free space unknown"
        warnings.warn(
            f"The model {name!r} could not be saved in the cache folder {path.parent} "
            f"({error.strerror or error}; {free} there). It is returned, and kept for this "
            "session, but a new session will train it again: free some space there, or set "
            "the environment variable CNN_UTILS_CACHE to a folder with room, e.g. "
            "os.environ['CNN_UTILS_CACHE'] = '/tmp/cnn_utils' (read on every call).",
            CacheWarning,
            stacklevel=5,
        )
        return False
    return True


def _finish(model, info: dict, *, from_cache: bool, verbose: int, return_info: bool):
    info = {**info, "from_cache": from_cache}
    if verbose:
        verb = "Loaded" if from_cache else "Cached"
        where = "from the cache" if from_cache else "in"
        if info.get("shipped"):
            where = "(weights shipped with the course) from the cache"
        if info["path"] is None:
            print(f"Using {info['name']!r}, not cached (see the warning above).")
        else:
            print(f"{verb} {info['name']!r} {where}: {info['path']}")
    return (model, info) if return_info else model


# ---------------------------------------------------------------------------------------------
# Non-finite training: stop at the first NaN or Inf, never cache it
# ---------------------------------------------------------------------------------------------


def _float_weights(model: keras.Model) -> list:
    return [w for w in model.weights if "float" in str(w.dtype)]


def _non_finite_weight(model: keras.Model) -> str | None:
    """The path of the first weight of ``model`` holding a NaN or an Inf, or ``None``."""
    import numpy as np

    for weight in _float_weights(model):
        if not np.all(np.isfinite(keras.ops.convert_to_numpy(weight))):
            return weight.path
    return None


def _refuse_non_finite(model: keras.Model, name: str) -> None:
    weight = _non_finite_weight(model)
    if weight is not None:
        raise NonFiniteError(
            f"Training {name!r} left the weight {weight} NaN or Inf, so the model was not "
            "cached. Lower the learning rate, or check the data for NaN or Inf values."
        )


class StopOnNonFinite(keras.callbacks.Callback):
    """Stop ``fit`` at the first non-finite loss or weight, naming the epoch and the batch.

    After every training batch the reported loss and every float weight of the model are
    checked (one compiled reduction); a NaN or an Inf raises :class:`NonFiniteError`, instead
    of training on (Keras' ``TerminateOnNaN`` stops silently and watches the loss alone).
    :func:`train_classifier` and :mod:`cnn_utils.defense`'s adversarial training add it.

    Raises:
        NonFiniteError: During ``fit``, at the first non-finite loss or weight.
    """

    def __init__(self):
        super().__init__()
        self._epoch = 0
        self._all_finite = None

    def on_train_begin(self, logs=None):
        """Compile the check over the model's float weights."""
        import tensorflow as tf

        weights = _float_weights(self.model)

        def all_finite():
            return tf.reduce_all([tf.reduce_all(tf.math.is_finite(w)) for w in weights])

        self._all_finite = tf.function(all_finite) if weights else (lambda: True)

    def on_epoch_begin(self, epoch, logs=None):
        """Remember the epoch for the message."""
        self._epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        """Check the loss and the weights after this batch."""
        loss = (logs or {}).get("loss")
        loss = None if loss is None else float(loss)
        if (loss is None or math.isfinite(loss)) and bool(self._all_finite()):
            return
        self.model.stop_training = True
        weight = _non_finite_weight(self.model)
        what = f"the loss is {loss}" if loss is not None and not math.isfinite(loss) else ""
        if weight is not None:
            what += (", and " if what else "") + f"the weight {weight} holds NaN or Inf"
        raise NonFiniteError(
            f"Training stopped at epoch {self._epoch + 1}, batch {batch + 1}: {what}. Usual "
            "causes: a learning rate too large (the loss diverged) or a batch with NaN or Inf "
            "values; the weights are now unusable, so build the model again before retrying."
        )


# ---------------------------------------------------------------------------------------------
# Compiling and training a classifier
# ---------------------------------------------------------------------------------------------


def compile_classifier(
    model: keras.Model,
    learning_rate: float | keras.optimizers.schedules.LearningRateSchedule = 1e-3,
) -> keras.Model:
    """Compile a logits classifier with Adam, cross-entropy from logits and accuracy.

    Args:
        model: A model that outputs logits.
        learning_rate: Adam's learning rate, a positive float or a Keras schedule.

    Returns:
        The same model, compiled.

    Raises:
        ValueError: ``model`` is not a Keras model, or a bad learning rate.
    """
    if not isinstance(model, keras.Model):
        raise ValueError(f"model must be a keras.Model. Received: model={model!r}")
    if not isinstance(learning_rate, keras.optimizers.schedules.LearningRateSchedule):
        learning_rate = _checks.number("learning_rate", learning_rate, positive=True)
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy")],
    )
    return model


def cosine_schedule(
    learning_rate: float, decay_steps: int
) -> keras.optimizers.schedules.CosineDecay:
    """The course's learning-rate schedule: cosine decay to 5 % of ``learning_rate``.

    Args:
        learning_rate: Initial learning rate (> 0).
        decay_steps: Training steps over which it decays.

    Returns:
        A ``keras.optimizers.schedules.CosineDecay``.
    """
    learning_rate = _checks.number("learning_rate", learning_rate, positive=True)
    decay_steps = _checks.positive_int("decay_steps", decay_steps)
    return keras.optimizers.schedules.CosineDecay(learning_rate, decay_steps, alpha=0.05)


def train_classifier(
    model: keras.Model,
    dataset: data.Dataset,
    *,
    epochs: int,
    batch_size: int = 64,
    learning_rate: float = 1e-3,
    verbose: int = 1,
) -> tuple[dict[str, list[float]], float, float]:
    """Compile and fit a logits classifier on a :class:`~cnn_utils.data.Dataset`, then test it.

    Adam with a cosine-decayed learning rate (:func:`cosine_schedule`, to 5 % of
    ``learning_rate``), cross-entropy from logits, the dataset's validation split (if any) for
    validation curves. Training stops at the first NaN or Inf loss or weight
    (:class:`StopOnNonFinite`).

    Args:
        model: A model that outputs logits.
        dataset: The data; ``dataset.validation_data`` is used when present.
        epochs: Training epochs.
        batch_size: Mini-batch size.
        learning_rate: Initial learning rate.
        verbose: Keras' progress bar (1), one line per epoch (2) or silent (0).

    Returns:
        ``(history, seconds, test_accuracy)``: the per-epoch metrics as a dict of float lists,
        the training time in seconds and the accuracy on ``dataset.x_test``.

    Raises:
        ValueError: A non-positive number of epochs, batch size or learning rate, a dataset
            that is not a :class:`~cnn_utils.data.Dataset`, or a bad ``verbose``.
        NonFiniteError: The loss or a weight became NaN or Inf (naming the epoch and batch).
    """
    epochs = _checks.positive_int("epochs", epochs)
    batch_size = _checks.batch_size(batch_size)
    verbose = _checks.one_of("verbose", verbose, (0, 1, 2))
    if not isinstance(dataset, data.Dataset):
        raise ValueError(
            f"dataset must be a cnn_utils.data.Dataset (data.load_dataset). Received: {dataset!r}"
        )
    steps = -(-len(dataset.x_train) // batch_size) * epochs
    compile_classifier(model, learning_rate=cosine_schedule(learning_rate, steps))
    start = time.perf_counter()
    history = model.fit(
        dataset.x_train,
        dataset.y_train,
        batch_size=batch_size,
        epochs=epochs,
        validation_data=dataset.validation_data,
        verbose=verbose,
        callbacks=[StopOnNonFinite()],
    )
    seconds = time.perf_counter() - start
    _, accuracy = model.evaluate(dataset.x_test, dataset.y_test, batch_size=256, verbose=0)
    metrics = {key: [float(v) for v in values] for key, values in history.history.items()}
    return metrics, seconds, float(accuracy)


# ---------------------------------------------------------------------------------------------
# Gradient norms during training: the degradation experiment (He et al. 2015, Section 4.1)
# ---------------------------------------------------------------------------------------------


def _loss_and_gradients(model: keras.Model, x, y, variables, training: bool):
    import tensorflow as tf

    with tf.GradientTape() as tape:
        logits = model(x, training=training)
        loss = keras.ops.mean(
            keras.losses.sparse_categorical_crossentropy(y, logits, from_logits=True)
        )
    return float(loss), tape.gradient(loss, variables)


def gradient_norms(model: keras.Model, x, y, *, training: bool = True) -> dict[str, float]:
    """L2 norm of the loss gradient with respect to each kernel (Conv2D and Dense weights).

    Kernels come in the model's weight order (input side first, blocks included), so plotting
    the values against their index shows how the gradient signal fades (or not) with depth.

    Args:
        model: A model that outputs logits.
        x: A batch of images.
        y: Their integer labels.
        training: Run the forward pass in training mode (batch statistics in BN).

    Returns:
        A dict from the kernel's path (``"res2/res2_block1/res2_block1_conv1/kernel"``) to the
        norm of its gradient of the mean cross-entropy.

    Raises:
        ValueError: Non-finite images, labels that are not integer class labels of the model,
            a model that returns probabilities, or a non-boolean ``training``.
    """
    training = _checks.flag("training", training)
    x = _checks.images(x)
    num_classes = _checks.logits_model(model, x)
    y = _checks.labels(y, int(x.shape[0]), num_classes)
    kernels = [w for w in model.trainable_weights if w.path.endswith("/kernel")]
    _, grads = _loss_and_gradients(model, x, y, kernels, training)
    return {
        w.path: float(keras.ops.norm(keras.ops.reshape(g, (-1,))))
        for w, g in zip(kernels, grads, strict=True)
    }


class TrainingProbe(keras.callbacks.Callback):
    """Record the loss and one layer's gradient norm on a fixed batch every few steps.

    Used to compare a plain network with its residual twin (He et al. 2015, Section 4.1):
    ``steps``, ``losses`` and ``grad_norms`` are filled during ``fit`` (and once before it
    starts), measured in training mode on the same probe batch.

    Args:
        x: Probe images.
        y: Probe labels (integers, one per image).
        layer_name: The layer whose kernel gradient is measured (default ``"conv1"``).
        every: Measure every this many training steps.

    Raises:
        ValueError: Non-finite images, labels that do not match them, a non-positive
            ``every``; at the start of training, a layer name the model does not have.
    """

    def __init__(self, x, y, layer_name: str = "conv1", every: int = 10):
        super().__init__()
        self.every = _checks.positive_int("every", every)
        if not isinstance(layer_name, str):
            raise ValueError(f"layer_name must be a string. Received: layer_name={layer_name!r}")
        self.x = _checks.images(x)
        self.y = _checks.labels(y, int(self.x.shape[0]))
        self.layer_name = layer_name
        self.steps: list[int] = []
        self.losses: list[float] = []
        self.grad_norms: list[float] = []
        self._step = 0

    def _measure(self) -> None:
        kernel = self.model.get_layer(self.layer_name).kernel
        loss, (grad,) = _loss_and_gradients(self.model, self.x, self.y, [kernel], True)
        self.steps.append(self._step)
        self.losses.append(loss)
        self.grad_norms.append(float(keras.ops.norm(keras.ops.reshape(grad, (-1,)))))

    def on_train_begin(self, logs=None):
        """Measure once before training."""
        if not self.steps:
            self._measure()

    def on_train_batch_end(self, batch, logs=None):
        """Measure every ``every`` steps."""
        self._step += 1
        if self._step % self.every == 0:
            self._measure()


# ---------------------------------------------------------------------------------------------
# The trained course models
# ---------------------------------------------------------------------------------------------


def _recipes() -> dict[str, dict]:
    """The course models that :func:`trained` knows: builder, data sizes and schedule.

    ``build(input_shape, num_classes)`` makes the model; its architecture enters the cache key
    through :func:`cache_key`, so editing a builder here (or in :mod:`cnn_utils.models`)
    retrains the model on its next use.
    """

    def small_cnn(head: str, name: str) -> dict:
        """Notebook 01's small CNN with a Flatten + Dense or a GAP head, one recipe for both."""
        return {
            "build": lambda shape, n: models.small_cnn(
                shape,
                n,
                filters=(32, 64, 128),
                convs_per_stage=1,
                head=head,
                dropout=0.2,
                name=name,
            ),  # fmt: skip
            "fast": (30_000, 2),
            "full": (None, 15),
            "batch_size": 64,
            "learning_rate": 1e-3,
            "validation_split": 0.1,
        }

    return {
        "small_cnn": small_cnn("flatten", "small_cnn"),
        "small_cnn_gap": small_cnn("gap", "small_cnn_gap"),  # notebook 01's comparison of heads
        "resnet": {
            "build": lambda shape, n: models.resnet(
                shape, n, widths=(16, 32, 64), num_residuals=2, stem="small", name="resnet14"
            ),
            "fast": (16_000, 3),
            "full": (None, 15),
            "batch_size": 64,
            "learning_rate": 2e-3,
            "validation_split": 0.0,
        },
        "googlenet": {
            "build": lambda shape, n: models.googlenet(
                shape,
                n,
                width=0.25,
                stem="small",
                batch_norm=True,
                dropout=0.2,
                name="googlenet_small",
            ),  # fmt: skip
            "fast": (6_000, 2),
            "full": (None, 6),
            "batch_size": 64,
            "learning_rate": 2e-3,
            "validation_split": 0.0,
        },
    }


TRAINED_MODELS = tuple(_recipes())
"""Names that :func:`trained` accepts."""


def _plan(name, dataset, epochs, subset, test_subset, seed) -> tuple[dict, Callable]:
    """The training settings of a course model and the function that builds it."""
    recipes = _recipes()
    _checks.one_of("name", name, TRAINED_MODELS)
    _checks.one_of("dataset", dataset, tuple(data.DATASETS))
    recipe = recipes[name]
    default_subset, default_epochs = config.by_mode(fast=recipe["fast"], full=recipe["full"])
    epochs = _checks.positive_int("epochs", default_epochs if epochs is None else epochs)
    subset = default_subset if subset is None else _checks.positive_int("subset", subset)
    if test_subset is not None:
        test_subset = _checks.positive_int("test_subset", test_subset)
    seed = _checks.integer("seed", seed, minimum=0)
    settings = {
        "dataset": dataset,
        "epochs": epochs,
        "subset": subset,
        "test_subset": test_subset,
        "validation_split": recipe["validation_split"],
        "seed": seed,
        "batch_size": recipe["batch_size"],
        "learning_rate": recipe["learning_rate"],
        # The optimiser as train_classifier builds it (decay_steps follows from the sizes).
        "optimizer": keras.saving.serialize_keras_object(
            keras.optimizers.Adam(cosine_schedule(recipe["learning_rate"], 1))
        ),
    }
    spec = data.DATASETS[dataset]
    return settings, lambda: recipe["build"](spec.image_shape, len(spec.class_names))


def trained_settings(
    name: str,
    dataset: str = "fashion_mnist",
    *,
    epochs: int | None = None,
    subset: int | None = None,
    test_subset: int | None = None,
    seed: int = config.DEFAULT_SEED,
) -> dict:
    """The settings that :func:`trained` trains ``name`` with, and the file it caches it in.

    Args:
        name: One of :data:`TRAINED_MODELS`.
        dataset: A dataset name of :mod:`cnn_utils.data`.
        epochs: Training epochs; ``None`` takes the recipe's (fewer in FAST mode).
        subset: Training examples; ``None`` takes the recipe's (a subset in FAST mode, all
            otherwise).
        test_subset: Test examples for the reported accuracy; ``None`` uses the whole test set.
        seed: Seed of the weights, the subset and the shuffling.

    Returns:
        A dict with ``name``, ``dataset``, ``epochs``, ``subset``, ``test_subset``,
        ``validation_split``, ``seed``, ``batch_size``, ``learning_rate``, ``optimizer``,
        ``key`` and ``path`` (the ``.keras`` file in :func:`cnn_utils.config.cache_dir`).

    Raises:
        ValueError: An unknown name or dataset, or non-positive sizes.
    """
    settings, build = _plan(name, dataset, epochs, subset, test_subset, seed)
    key = cache_key(build(), settings)
    path = config.cache_dir(create=False) / f"{_file_stem(name, settings, key)}.keras"
    return {"name": name, **settings, "key": key, "path": str(path)}


def trained(
    name: str,
    dataset: str = "fashion_mnist",
    *,
    epochs: int | None = None,
    subset: int | None = None,
    test_subset: int | None = None,
    seed: int = config.DEFAULT_SEED,
    verbose: int = 1,
    return_info: bool = False,
):
    """Return a trained course model, training it on first use and caching it as ``.keras``.

    The cache is :func:`cached_model`: the key covers the model's architecture and every
    training setting (:func:`trained_settings`), so a second call with the same settings loads
    the file in seconds, FAST and full mode never share a file, and any change to a recipe
    trains the model again. Training is :func:`train_classifier` (Adam with a cosine-decayed
    learning rate, cross-entropy from logits); the JSON file beside the model keeps the
    history, the training time and the test accuracy.

    Models: ``"small_cnn"`` (notebook 01's :func:`~cnn_utils.models.small_cnn`: three
    one-convolution stages, Flatten + Dense head, 10 % of the training set held out for
    validation curves), ``"small_cnn_gap"`` (the same body and recipe with a global-average-
    pooling head, notebook 01's comparison of heads), ``"resnet"`` (a narrow 14-layer
    :func:`~cnn_utils.models.resnet` for 28x28 images), ``"googlenet"``
    (:func:`~cnn_utils.models.googlenet` with the small stem, a quarter of the width and batch
    norm).

    Args:
        name: One of :data:`TRAINED_MODELS`.
        dataset: A dataset name of :mod:`cnn_utils.data` (default Fashion-MNIST).
        epochs: Training epochs; ``None`` takes the recipe's (fewer in FAST mode).
        subset: Training examples; ``None`` takes the recipe's (a subset in FAST mode).
        test_subset: Test examples for the reported accuracy; ``None`` uses all.
        seed: Seed of the weights, the subset and the shuffling.
        verbose: 1 prints what happens and Keras' progress bar; 0 is silent.
        return_info: Also return the info dict.

    Returns:
        The trained, compiled model (outputs logits); with ``return_info`` a pair
        ``(model, info)`` where ``info`` holds the settings, ``key``, ``path``, ``history``,
        ``train_seconds``, ``test_accuracy``, ``params`` and ``from_cache``.

    Raises:
        ValueError: An unknown name or dataset, or bad sizes.
        PermissionError: The cache folder is not writable (before any training).
    """
    settings, build = _plan(name, dataset, epochs, subset, test_subset, seed)
    verbose = _checks.one_of("verbose", verbose, (0, 1, 2))

    def fit(model: keras.Model) -> dict:
        ds = data.load_dataset(
            dataset,
            subset=settings["subset"],
            test_subset=settings["test_subset"],
            validation_split=settings["validation_split"],
            seed=settings["seed"],
        )
        if verbose:
            print(
                f"Training {name!r} on {len(ds.x_train)} {dataset} images for "
                f"{settings['epochs']} epochs ({model.count_params():,} parameters)..."
            )
        history, seconds, accuracy = train_classifier(
            model,
            ds,
            epochs=settings["epochs"],
            batch_size=settings["batch_size"],
            learning_rate=settings["learning_rate"],
            verbose=verbose,
        )
        if verbose:
            print(f"Test accuracy {accuracy:.4f} after {seconds:.1f} s.")
        return {"history": history, "train_seconds": seconds, "test_accuracy": accuracy}

    return cached_model(name, build, fit, settings, verbose=verbose, return_info=return_info)
