"""Old import path: ``mm_retriever.retrievers.base`` is :mod:`mm_retriever.legs.base`.

Moved in the layered layout; importing the old path gives that module itself (the same
objects). Nothing inside the package imports it.
"""

import sys

from mm_retriever.legs import base as _moved

sys.modules[__name__] = _moved
