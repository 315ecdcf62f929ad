from django.apps import AppConfig


class CatalogConfig(AppConfig):
    name = "catalog"
    verbose_name = "Catalog"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from django.conf import settings

        from catalog import signals
        from similarity import configure_failpoints

        signals.connect()
        configure_failpoints(settings.LOOKALIKE_FAILPOINT_DIR,
                             max_pause=settings.LOOKALIKE_FAILPOINT_MAX_PAUSE)
