"""genret's corpus side: corpus I/O, docid schemes, docid tries, n-gram stores and artifacts.

Imports no torch: everything here is numpy (and numba) so that indexes build on any machine.
"""
