from tests.catalog.readside import (  # noqa: F401 - fixtures, found by name
    catalog_of_garments,
    fresh_caches,
    garments,
    media_root,
    query_photos,
    read_side_defaults,
    stored_vote,
)
