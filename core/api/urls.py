from django.urls import path

from core.api import message_variant_views, webhook_views

urlpatterns = [
    path("webhook-endpoints", webhook_views.WebhookEndpointCollectionView.as_view(), name="webhook-endpoint-list"),
    path(
        "webhook-endpoints/<str:pk>", webhook_views.WebhookEndpointDetailView.as_view(), name="webhook-endpoint-detail"
    ),
    path("message-variants", message_variant_views.MessageVariantCollectionView.as_view(), name="message-variant-list"),
    path(
        "message-variants/<str:pk>",
        message_variant_views.MessageVariantDetailView.as_view(),
        name="message-variant-detail",
    ),
]
