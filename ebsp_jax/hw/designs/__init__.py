"""The registered accelerators, one module each (see :mod:`ebsp_jax.hw.designs.base`).

Importing this package registers Eyeriss, Bit Fusion, WAX, OLAccel and EBSP (the EBSP paper's
comparison, in its order) and ZeNA (OLAccel's baseline). A new design is a new module here, imported below.
"""

from ebsp_jax.hw.designs.base import DESIGNS, Design, Formats, get, register

# Registration order is the paper's table order.
from ebsp_jax.hw.designs import eyeriss  # noqa: E402,F401  pylint: disable=wrong-import-position
from ebsp_jax.hw.designs import bitfusion  # noqa: E402,F401  pylint: disable=wrong-import-position
from ebsp_jax.hw.designs import wax  # noqa: E402,F401  pylint: disable=wrong-import-position
from ebsp_jax.hw.designs import olaccel  # noqa: E402,F401  pylint: disable=wrong-import-position
from ebsp_jax.hw.designs import ebsp  # noqa: E402,F401  pylint: disable=wrong-import-position
# Baselines of the baselines' papers (not in the EBSP paper's table).
from ebsp_jax.hw.designs import zena  # noqa: E402,F401  pylint: disable=wrong-import-position

__all__ = ["DESIGNS", "Design", "Formats", "get", "register"]
