"""From a photo to the vector distances are measured on.

- ``images``: decode and check an upload under limits (size, pixels, format), EXIF rotation,
  any mode to RGB; a cheap structural check for imports.
- ``framing``: find the garment on its background (mask, bounding box, matte to white).
- ``preprocess``: the named preprocessing policies (torchvision's resize and crop,
  frame-margin, ...) that turn a picture into the network's input.
- ``colour``: the garment's colour descriptor and its blend with the image vector.
- ``runtime``: LiteRT inference from the cached model (``similarity.model.cache``).
- ``embedder``: ``ImageEmbedder``, all of the above for one photo or a batch.
- ``projection``: the category-aware projection fitted on a catalog, saved and loaded.
"""
