from django.apps import AppConfig
from django.db.models.signals import post_delete, post_save


class LoyaltyConfig(AppConfig):
    name = "loyalty"
    verbose_name = "Loyalty"

    def ready(self) -> None:
        from core.selectors import config_cache_clear
        from loyalty.models import EarningRule, EarningRuleExclusion, Program, Tier

        # Configuration read through core.selectors.config_cached: a save here is seen at once.
        for model in (Program, Tier, EarningRule, EarningRuleExclusion):
            post_save.connect(config_cache_clear, sender=model, dispatch_uid=f"config-cache-{model.__name__}")
            post_delete.connect(config_cache_clear, sender=model, dispatch_uid=f"config-cache-del-{model.__name__}")
