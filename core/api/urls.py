from django.urls import path

from core.api import webhook_views

urlpatterns = [
    path("webhook-endpoints", webhook_views.WebhookEndpointCollectionView.as_view(), name="webhook-endpoint-list"),
    path(
        "webhook-endpoints/<str:pk>", webhook_views.WebhookEndpointDetailView.as_view(), name="webhook-endpoint-detail"
    ),
]
