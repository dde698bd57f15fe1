"""Old import path: ``mm_retriever.image_cache`` is :mod:`mm_retriever.ranking.image_cache`.

Moved in the layered layout; importing the old path gives that module itself (the same
objects). Nothing inside the package imports it.
"""

import sys

from mm_retriever.ranking import image_cache as _moved

sys.modules[__name__] = _moved
