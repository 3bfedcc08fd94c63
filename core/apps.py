from django.apps import AppConfig
from django.db.models.signals import post_delete, post_save


class CoreConfig(AppConfig):
    name = "core"
    verbose_name = "Platform"

    def ready(self) -> None:
        from core.models import ApiKey, WebhookEndpoint
        from core.selectors import api_key_cache_forget, config_cache_clear

        # A key edited in this process (admin: name, expiry) is read again at its next use;
        # other processes see the change within core.selectors.API_KEY_CACHE_SECONDS.
        post_save.connect(api_key_cache_forget, sender=ApiKey, dispatch_uid="api-key-cache-save")
        post_delete.connect(api_key_cache_forget, sender=ApiKey, dispatch_uid="api-key-cache-delete")
        # Which endpoints want which events decides whether a commit asks for a dispatch.
        post_save.connect(config_cache_clear, sender=WebhookEndpoint, dispatch_uid="config-cache-webhook")
        post_delete.connect(config_cache_clear, sender=WebhookEndpoint, dispatch_uid="config-cache-del-webhook")
