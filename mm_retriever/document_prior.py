"""Old import path: ``mm_retriever.document_prior`` is :mod:`mm_retriever.ranking.document_prior`.

Moved in the layered layout; importing the old path gives that module itself (the same
objects). Nothing inside the package imports it.
"""

import sys

from mm_retriever.ranking import document_prior as _moved

sys.modules[__name__] = _moved
