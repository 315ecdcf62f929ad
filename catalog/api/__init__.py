"""The REST API (/api/v1/, Django REST framework and drf-spectacular).

- ``api_urls``: the routes, the schema at /api/v1/schema/ and the reference page at
  /api/v1/docs/ (Swagger UI from drf-spectacular-sidecar's static files).
- ``product_endpoints``: products by SKU and their similar items; ``search_endpoints``: search
  by photo and the deprecated first endpoints; ``batch_endpoints``: many products in one
  request, as ``import_catalog`` syncs a manifest.
- ``endpoint_base`` (what every view shares), ``serializers``, ``keys_auth`` (API keys and
  scopes), ``throttles`` (per key, per client, behind trusted proxies), ``api_errors`` (the one
  error format) and ``schema_hooks``.
"""
