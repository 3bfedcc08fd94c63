from django.urls import path

from transactions.api import views

urlpatterns = [
    path("transactions", views.TransactionCollectionView.as_view(), name="transaction-list"),
    path(
        "transactions/<str:external_id>/receipt-code.<str:extension>",
        views.TransactionReceiptCodeView.as_view(),
        name="transaction-receipt-code",
    ),
    path("transactions/<str:external_id>", views.TransactionDetailView.as_view(), name="transaction-detail"),
    path("transactions/<str:external_id>/void", views.TransactionVoidView.as_view(), name="transaction-void"),
    path("returns", views.ReturnView.as_view(), name="returns"),
    path("claims", views.ClaimView.as_view(), name="claims"),
    path("products/sync", views.ProductSyncView.as_view(), name="product-sync"),
    path("products/sync/<str:process_id>", views.ProductSyncDetailView.as_view(), name="product-sync-detail"),
]
