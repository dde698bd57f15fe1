"""Old import path: ``mm_retriever.filters`` is :mod:`mm_retriever.store.filters`.

Moved in the layered layout; importing the old path gives that module itself (the same
objects). Nothing inside the package imports it.
"""

import sys

from mm_retriever.store import filters as _moved

sys.modules[__name__] = _moved
