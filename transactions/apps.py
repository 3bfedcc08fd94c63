from django.apps import AppConfig


class TransactionsConfig(AppConfig):
    name = "transactions"
    verbose_name = "Transactions"

    def ready(self) -> None:
        from loyalty.services.contacts import identifiers_added_batch_hook
        from transactions.services.processing import unmatched_attach_many

        # A contact who gains an identifier collects the purchases that were waiting for it
        # (one call per write, whether it touched one contact or a bulk of a thousand).
        identifiers_added_batch_hook(lambda contact_ids: unmatched_attach_many(contact_ids=contact_ids))

        from loyalty.services.erasure import contact_erased_hook
        from transactions.services.erasure import contact_transactions_anonymise

        # An erased contact's purchases keep their amounts but not the identifier they named.
        contact_erased_hook(lambda contact_id: contact_transactions_anonymise(contact_id=contact_id))
