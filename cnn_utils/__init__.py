"""cnn_utils: the tested package behind the 'Advanced Convolutional Neural Networks' notebooks.

Modules are imported on demand (``from cnn_utils import data, shapes``) so that importing the
package itself stays cheap. Data flows one way: ``config`` -> ``data`` -> ``shapes``/``blocks``
-> ``models`` -> ``shipped`` -> ``training`` -> (``attacks`` -> ``robustness``, ``defense``;
``saliency``, ``maximize``, ``embed`` over ``probe``; ``imagenet``) -> ``plots`` -> ``doctor``,
all checking arguments with ``_checks``; ``exercises`` holds the notebooks' exercise checks.
The README has the map.

Importing the package sets ``TF_CPP_MIN_LOG_LEVEL=2`` unless it is already set, so that
TensorFlow, imported later by the modules, does not print its C++ information and warning
lines (set it to 0 before importing to see them again).
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

__version__ = "0.1.0"
