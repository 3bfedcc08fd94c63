from django.apps import AppConfig


class OffersConfig(AppConfig):
    name = "offers"
    verbose_name = "Offers"

    def ready(self) -> None:
        from loyalty.services.erasure import contact_erased_hook
        from offers.services.issued import contact_offer_locks_release

        # An erased contact's checkout is over: its open offer locks are released with the erasure.
        contact_erased_hook(lambda contact_id: contact_offer_locks_release(contact_id=contact_id))
