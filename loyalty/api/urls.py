from django.urls import path

from loyalty.api import views

urlpatterns = [
    path("contacts", views.ContactCollectionView.as_view(), name="contact-list"),
    # Before contacts/<pk>: these words are not contact ids.
    path("contacts/changes", views.ContactChangesView.as_view(), name="contact-changes"),
    path("contacts/bulk", views.ContactBulkView.as_view(), name="contact-bulk"),
    path("contacts/<str:pk>", views.ContactDetailView.as_view(), name="contact-detail"),
    path("contacts/<str:pk>/wallet", views.ContactWalletView.as_view(), name="contact-wallet"),
    path("contacts/<str:pk>/ledger", views.ContactLedgerView.as_view(), name="contact-ledger"),
    path("contacts/<str:pk>/spend-tokens", views.SpendTokenView.as_view(), name="contact-spend-tokens"),
    path("tiers", views.TierCollectionView.as_view(), name="tier-list"),
    path("tiers/<str:pk>", views.TierDetailView.as_view(), name="tier-detail"),
    path("earning-rules", views.EarningRuleCollectionView.as_view(), name="earning-rule-list"),
    path("earning-rules/<str:pk>", views.EarningRuleDetailView.as_view(), name="earning-rule-detail"),
]
