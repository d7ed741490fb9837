"""cnn_utils: the tested package behind the 'Advanced Convolutional Neural Networks' notebooks.

Modules are imported on demand (``from cnn_utils import data, shapes``) so that importing the
package itself stays cheap. Data flows one way: ``config`` -> ``data`` -> ``shapes``/``blocks``
-> ``models`` -> ``training`` -> (``attacks`` -> ``robustness``, ``defense``; ``saliency``,
``maximize``, ``embed`` over ``probe``; ``imagenet``) -> ``plots``, all checking arguments with
``_checks``; ``exercises`` holds the notebooks' exercise checks. The README has the map.
"""

__version__ = "0.1.0"
