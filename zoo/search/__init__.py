"""Classic AI that is not trained: search, local search (``python solve.py``)."""
