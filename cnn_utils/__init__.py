"""cnn_utils: the tested package behind the 'Advanced Convolutional Neural Networks' notebooks.

Modules are imported on demand (``from cnn_utils import data, shapes``) so that importing the
package itself stays cheap. Data flows one way: ``data`` -> ``models``/``blocks`` ->
(``attacks``, ``defense``, ``saliency``, ``maximize``, ``embed``) -> ``plots``.
"""

__version__ = "0.1.0"
