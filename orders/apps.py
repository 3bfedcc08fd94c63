from django.apps import AppConfig


class OrdersConfig(AppConfig):
    name = "orders"
    verbose_name = "Orders"

    def ready(self) -> None:
        from loyalty.services.erasure import contact_erased_hook
        from orders.services import contact_orders_anonymise

        # An erased contact's orders keep their lines and amounts, not the contact's own words.
        contact_erased_hook(lambda contact_id: contact_orders_anonymise(contact_id=contact_id))
