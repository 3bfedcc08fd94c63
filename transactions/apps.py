from django.apps import AppConfig


class TransactionsConfig(AppConfig):
    name = "transactions"
    verbose_name = "Transactions"

    def ready(self) -> None:
        from loyalty.services.contacts import identifiers_added_hook
        from transactions.services.processing import unmatched_attach

        # A contact who gains an identifier collects the purchases that were waiting for it.
        identifiers_added_hook(lambda contact_id: unmatched_attach(contact_id=contact_id))
