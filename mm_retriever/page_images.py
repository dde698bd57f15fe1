"""Old import path: ``mm_retriever.page_images`` is :mod:`mm_retriever.ranking.page_images`.

Moved in the layered layout; importing the old path gives that module itself (the same
objects). Nothing inside the package imports it.
"""

import sys

from mm_retriever.ranking import page_images as _moved

sys.modules[__name__] = _moved
