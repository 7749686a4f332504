from django.apps import AppConfig


class ProvidersConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "providers"
    verbose_name = "Providers and fallback chains"

    def ready(self) -> None:
        from providers.services import chains  # noqa: F401  (connects the config-change signals)
