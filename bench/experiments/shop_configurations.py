"""The configurations the shop-photo experiment measures: the engine's steps one at a time and
combined, and the product's own configuration, read from its settings and catalog/space.py so
the two cannot drift apart."""

from __future__ import annotations

from bench.common import product_blend, product_robust_blend, product_settings
from bench.experiments.shop_spaces import Config
from similarity.embedding.preprocess import get_policy

PRODUCT_NAME = "product: the catalog's code path (views re-shot from the catalog photos)"


def product_configuration() -> Config:
    """The catalog's configuration (config/settings/base.py, catalog/space.py): fixed, not chosen
    here, but for a colour weight of "auto", which the catalog's own chooser picks. With
    projection views the rebuild fits the robust blend, else the plain one."""
    settings = product_settings()
    policy = get_policy(settings.LOOKALIKE_PREPROCESS_POLICY).key
    if settings.LOOKALIKE_SPACE == "raw":  # the reference: no projection, no colour
        return Config(PRODUCT_NAME, policy, "raw", {"colour_weight": 0.0})
    space, params = settings.LOOKALIKE_SPACE, product_blend()
    if settings.LOOKALIKE_PROJECTION_VIEWS:
        space, params = f"robust {space}", product_robust_blend()
    weight = settings.LOOKALIKE_COLOUR_WEIGHT
    if str(weight).strip().lower() == "auto":  # chosen by the catalog's own CV (catalog/space.py)
        return Config(PRODUCT_NAME, policy, space, params, auto_colour=True)
    return Config(PRODUCT_NAME, policy, space, {**params, "colour_weight": float(weight)})


def product_configurations() -> list[Config]:
    """``--product``: the catalog's own configuration (its parameters, its colour weight, its
    views), alone (the engine's rows are the full run's)."""
    return [product_configuration()]


def configurations() -> list[Config]:
    deployed = product_blend()  # today's lda-blend default
    return [
        Config("reference", "torchvision@1", "raw"),
        Config("default", "pad-margin@1", "lda-blend", dict(deployed)),
        Config("+ framing", "frame-margin@1", "lda-blend"),
        Config("+ colour", "pad-margin@1", "lda-blend", dict(deployed), colour=True),
        Config("+ robust projection", "pad-margin@1", "robust lda-blend"),
        Config("framing + robust projection", "frame-margin@1", "robust lda-blend"),
        Config("combined: framing + robust projection + colour", "frame-margin@1", "robust lda-blend",
               colour=True),
    ]
