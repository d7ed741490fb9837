"""Course datasets through the real ``keras.datasets`` loaders, ready for a CNN.

Images come back as float32 in [0, 1], NHWC (a channel axis is added to greyscale images),
labels as flat int64 vectors, with the class names. Optional stratified subsets and a
validation split are drawn with a seeded generator, so every run sees the same examples.

Keras caches downloads under ``$KERAS_HOME/datasets`` (default ``~/.keras/datasets``). Offline,
a loader whose files are not cached fails; :func:`load_dataset` turns that failure into one
:class:`DatasetUnavailableError` that names the files Keras looked for and how to seed them.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from functools import lru_cache

import keras
import numpy as np
from sklearn.model_selection import train_test_split

from cnn_utils import _checks, config

__all__ = [
    "CIFAR10_CLASSES",
    "DATASETS",
    "FASHION_MNIST_CLASSES",
    "MNIST_CLASSES",
    "Dataset",
    "DatasetCorruptedError",
    "DatasetUnavailableError",
    "expected_files",
    "load_dataset",
]

FASHION_MNIST_CLASSES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)  # fmt: skip
CIFAR10_CLASSES = (
    "airplane", "automobile", "bird", "cat", "deer",
    "dog", "frog", "horse", "ship", "truck",
)  # fmt: skip
MNIST_CLASSES = tuple(str(digit) for digit in range(10))


@dataclass(frozen=True)
class _Spec:
    """Where a dataset comes from and what Keras caches for it."""

    module: str  # attribute of keras.datasets
    files: tuple[str, ...]  # paths below $KERAS_HOME that Keras reads
    origin: str
    class_names: tuple[str, ...]
    image_shape: tuple[int, int, int]  # (H, W, C) of one image, as load_dataset returns it
    sha256: tuple[str | None, ...] = ()  # of each file, when known: finds a corrupted copy


_FMNIST_FILES = (
    "train-labels-idx1-ubyte.gz",
    "train-images-idx3-ubyte.gz",
    "t10k-labels-idx1-ubyte.gz",
    "t10k-images-idx3-ubyte.gz",
)

DATASETS: dict[str, _Spec] = {
    "fashion_mnist": _Spec(
        module="fashion_mnist",
        files=tuple(f"datasets/fashion-mnist/{name}" for name in _FMNIST_FILES),
        origin="https://storage.googleapis.com/tensorflow/tf-keras-datasets/",
        class_names=FASHION_MNIST_CLASSES,
        image_shape=(28, 28, 1),
        sha256=(
            "a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845",
            "3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84",
            "67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5",
            "346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073",
        ),
    ),
    "mnist": _Spec(
        module="mnist",
        files=("datasets/mnist.npz",),
        origin="https://storage.googleapis.com/tensorflow/tf-keras-datasets/mnist.npz",
        class_names=MNIST_CLASSES,
        image_shape=(28, 28, 1),
        sha256=("731c5ac602752760c8e48fbffcf8c3b850d9dc2a2aedcf2cc48468fc17b673d1",),
    ),
    "cifar10": _Spec(
        module="cifar10",
        files=("datasets/cifar-10-batches-py-target",),
        origin="https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
        class_names=CIFAR10_CLASSES,
        image_shape=(32, 32, 3),
    ),
}


class DatasetUnavailableError(RuntimeError):
    """A dataset could neither be downloaded nor found in the Keras cache."""


class DatasetCorruptedError(DatasetUnavailableError):
    """A dataset's cached file is damaged (truncated, overwritten): delete it to download again."""


@dataclass(frozen=True, repr=False)
class Dataset:
    """A loaded dataset: float32 NHWC images in [0, 1] and int64 labels.

    Attributes:
        name: Canonical dataset name (``"fashion_mnist"``, ``"mnist"`` or ``"cifar10"``).
        x_train: Training images, shape (n, H, W, C).
        y_train: Training labels, shape (n,), int64.
        x_test: Test images.
        y_test: Test labels.
        class_names: Human-readable name of each class, indexed by label.
        x_val: Validation images (``None`` without a validation split).
        y_val: Validation labels (``None`` without a validation split).
    """

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    class_names: tuple[str, ...]
    x_val: np.ndarray | None = None
    y_val: np.ndarray | None = None

    @property
    def num_classes(self) -> int:
        """Number of classes."""
        return len(self.class_names)

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """Shape of one image, (H, W, C)."""
        return tuple(self.x_train.shape[1:])

    @property
    def validation_data(self) -> tuple[np.ndarray, np.ndarray] | None:
        """``(x_val, y_val)`` for ``model.fit(validation_data=...)``, or ``None``."""
        return None if self.x_val is None else (self.x_val, self.y_val)

    def __repr__(self) -> str:
        val = 0 if self.x_val is None else len(self.x_val)
        return (
            f"Dataset({self.name!r}, train={len(self.x_train)}, val={val}, "
            f"test={len(self.x_test)}, input_shape={self.input_shape}, "
            f"num_classes={self.num_classes})"
        )


def _canonical(name: str) -> str:
    key = str(name).strip().lower().replace("-", "_")
    if key not in DATASETS:
        raise ValueError(f"name must be one of {sorted(DATASETS)}. Received: name={name!r}")
    return key


def expected_files(name: str) -> list[str]:
    """Return the absolute paths Keras reads for dataset ``name`` under the Keras cache.

    Args:
        name: A dataset name (see :data:`DATASETS`).

    Returns:
        Absolute paths below ``$KERAS_HOME`` (``~/.keras`` by default).
    """
    home = config.keras_home()
    return [str(home / rel) for rel in DATASETS[_canonical(name)].files]


def _unavailable_message(key: str, error: BaseException) -> str:
    spec = DATASETS[key]
    home = config.keras_home()
    lines = [
        f"Could not load the {key!r} dataset: Keras could not download it and did not find it "
        f"in its cache ({type(error).__name__}: {error}).",
        "Keras looked for:",
    ]
    paths = expected_files(key)
    for path in paths:
        lines.append(f"  {path}  ({'present' if os.path.exists(path) else 'missing'})")
    if all(os.path.exists(path) for path in paths):
        lines.append(
            "All are present, so one may be damaged: delete the dataset's files to download "
            "them again."
        )
    lines.append(f"It downloads them from {spec.origin}")
    if home.exists() and not os.access(home, os.W_OK):
        lines.append(
            f"Note: KERAS_HOME={home} is read-only, and Keras ignores a read-only cache "
            "(it uses /tmp/.keras instead): copy it to a writable folder."
        )
    lines.append(
        "To work offline, seed the cache and point KERAS_HOME at it before Python imports "
        "Keras, e.g.\n"
        "  cp -r ../shared/keras_home /tmp/keras_home && export KERAS_HOME=/tmp/keras_home\n"
        f'or, on a machine with internet, run `python -c "import keras; '
        f'keras.datasets.{spec.module}.load_data()"` and copy ~/.keras/datasets over.'
    )
    return "\n".join(lines)


def _sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _corrupted_files(key: str) -> list[str]:
    """The cached files of ``key`` that are present but differ from the published ones."""
    spec = DATASETS[key]
    return [
        path
        for path, expected in zip(expected_files(key), spec.sha256, strict=False)
        if expected and os.path.isfile(path) and _sha256(path) != expected
    ]


def _corrupted_message(key: str, corrupted: list[str], error: BaseException) -> str:
    first_line = (str(error).strip().splitlines() or [""])[0][:200]
    lines = [
        f"Could not load the {key!r} dataset: a cached file is corrupted (truncated or "
        f"damaged; its SHA-256 differs from the published file), so Keras could not read it "
        f"({type(error).__name__}: {first_line}).",
        "Corrupted:",
    ]
    lines += [
        f"  {path}  "
        + (f"({os.path.getsize(path):,} bytes)" if os.path.isfile(path) else "(deleted by Keras)")
        for path in corrupted
    ]
    present = [path for path in corrupted if os.path.isfile(path)]
    removal = " ".join(f"'{path}'" for path in present)
    first = (
        f"Delete the corrupted file (rm {removal}) so that Keras downloads it again"
        if present
        else "Keras deleted the corrupted file, and fetching a new copy failed; get it again"
    )
    lines.append(
        f"{first} from {DATASETS[key].origin}, or offline copy a good copy into the cache, e.g.\n"
        f"  cp -r <folder with the course's datasets>/datasets {config.keras_home()}/"
    )
    return "\n".join(lines)


def _fetch_verified(key: str) -> None:
    """Fetch (or find) the files of ``key`` through Keras with their published SHA-256.

    Keras' own MNIST loader passes the file's hash; its Fashion-MNIST loader does not, so its
    four files are fetched here first with ``keras.utils.get_file(..., file_hash=...)`` into the
    folder the loader reads (a download that differs from the published file is refused).
    """
    spec = DATASETS[key]
    if key != "fashion_mnist":
        return
    for relative, digest in zip(spec.files, spec.sha256, strict=True):
        folder, name = os.path.split(relative)
        keras.utils.get_file(name, origin=spec.origin + name, cache_subdir=folder, file_hash=digest)


@lru_cache(maxsize=4)
def _load_raw(key: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    loader = getattr(keras.datasets, DATASETS[key].module).load_data
    # Found before Keras sees them: Keras deletes a cached file whose hash differs, and then
    # only the failed download would be reported.
    damaged = _corrupted_files(key)
    try:
        _fetch_verified(key)
        (x_train, y_train), (x_test, y_test) = loader()
    except Exception as error:  # Keras raises a bare Exception on a failed download.
        corrupted = damaged or _corrupted_files(key)
        if corrupted:
            raise DatasetCorruptedError(_corrupted_message(key, corrupted, error)) from error
        raise DatasetUnavailableError(_unavailable_message(key, error)) from error
    return x_train, y_train, x_test, y_test


def _to_images(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x)
    if x.ndim == 3:  # greyscale: add the channel axis (NHWC)
        x = x[..., np.newaxis]
    return (x.astype(np.float32) / 255.0).astype(np.float32)


def _to_labels(y: np.ndarray) -> np.ndarray:
    return np.asarray(y).reshape(-1).astype(np.int64)


def _check_count(argname: str, value: int | None, available: int) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"{argname} must be an integer or None. Received: {argname}={value!r}")
    if not 0 < value <= available:
        raise ValueError(
            f"{argname} must be between 1 and {available}. Received: {argname}={value}"
        )


def _split(x: np.ndarray, y: np.ndarray, size: int, seed: int) -> tuple[np.ndarray, ...]:
    """Split off ``size`` examples, stratified by class whenever both parts can hold each class.

    Returns ``(x_kept, x_rest, y_kept, y_rest)`` as ``train_test_split`` does.
    """
    n_classes = len(np.unique(y))
    stratify = y if min(size, len(y) - size) >= n_classes else None
    return train_test_split(x, y, train_size=size, stratify=stratify, random_state=seed)


def _take(x: np.ndarray, y: np.ndarray, size: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    if size == len(y):
        return x, y
    x_kept, _, y_kept, _ = _split(x, y, size, seed)
    return x_kept, y_kept


def load_dataset(
    name: str = "fashion_mnist",
    *,
    subset: int | None = None,
    test_subset: int | None = None,
    validation_split: float = 0.0,
    seed: int = config.DEFAULT_SEED,
) -> Dataset:
    """Load a course dataset through ``keras.datasets``, scaled and shaped for a CNN.

    Args:
        name: ``"fashion_mnist"`` (the default course dataset), ``"mnist"`` or ``"cifar10"``.
        subset: Keep this many training examples (seeded; stratified by class whenever the
            subset can hold every class) before the validation split; ``None`` keeps all.
        test_subset: Keep this many test examples (stratified, seeded); ``None`` keeps all.
        validation_split: Fraction of the (subset of the) training set held out, stratified,
            as ``x_val``/``y_val``; in [0, 1).
        seed: Seed of the subset and split draws.

    Returns:
        A :class:`Dataset` with float32 images in [0, 1], shape (n, H, W, C), int64 labels.

    Raises:
        ValueError: Unknown ``name`` (the message lists the choices), a subset size or
            validation split out of range, or a seed that is not a non-negative integer.
        DatasetUnavailableError: The files are neither downloadable nor cached; the message
            names the files Keras looked for under ``KERAS_HOME`` and how to seed them.
        DatasetCorruptedError: A cached file is damaged (a subclass of
            ``DatasetUnavailableError``); the message names the file to delete.
    """
    key = _canonical(name)
    validation_split = _checks.number("validation_split", validation_split, minimum=0.0, below=1.0)
    seed = _checks.integer("seed", seed, minimum=0)
    x_train, y_train, x_test, y_test = _load_raw(key)
    y_train, y_test = _to_labels(y_train), _to_labels(y_test)
    _check_count("subset", subset, len(y_train))
    _check_count("test_subset", test_subset, len(y_test))

    if subset is not None:
        x_train, y_train = _take(x_train, y_train, subset, seed)
    if test_subset is not None:
        x_test, y_test = _take(x_test, y_test, test_subset, seed)
    x_val = y_val = None
    if validation_split > 0:
        n_val = round(validation_split * len(y_train))
        if not 0 < n_val < len(y_train):
            raise ValueError(
                f"validation_split={validation_split} leaves no validation or no training "
                f"examples out of {len(y_train)}."
            )
        x_train, x_val, y_train, y_val = _split(x_train, y_train, len(y_train) - n_val, seed)
        x_val, y_val = _to_images(x_val), y_val
    return Dataset(
        name=key,
        x_train=_to_images(x_train),
        y_train=y_train,
        x_test=_to_images(x_test),
        y_test=y_test,
        class_names=DATASETS[key].class_names,
        x_val=x_val,
        y_val=y_val,
    )
