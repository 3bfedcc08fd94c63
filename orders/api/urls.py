from django.urls import path

from orders.api import views

urlpatterns = [
    path("orders", views.OrderCollectionView.as_view(), name="order-list"),
    path("orders/<str:pk>", views.OrderDetailView.as_view(), name="order-detail"),
    path("orders/<str:pk>/actions", views.OrderActionsView.as_view(), name="order-actions"),
    path("order-cancellation-reasons", views.CancellationReasonsView.as_view(), name="order-cancellation-reasons"),
]
