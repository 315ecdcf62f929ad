"""Lookalike's similarity engine: embeddings, preprocessing and the distance matrix.

Nothing in this package imports Django, and nothing at import time imports TensorFlow.
"""
