"""Scaling experiments: quality and cost of each system across nested corpus sizes (``genret scale``)."""
