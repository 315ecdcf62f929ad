"""Retrieval-quality experiments (``make quality``): ``clean_quality`` on clean Fashion-MNIST
(``clean_*`` modules) and ``shop_quality`` on dyed garments in shop- and shopper-style photos
(``shop_*`` modules)."""
