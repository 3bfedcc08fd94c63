from django.urls import path

from orders.api import views

urlpatterns = [
    path("orders", views.OrderCollectionView.as_view(), name="order-list"),
    path("orders/<str:pk>", views.OrderDetailView.as_view(), name="order-detail"),
    path("orders/<str:pk>/actions", views.OrderActionsView.as_view(), name="order-actions"),
    # After loyalty's urls: its `contacts/<str:pk>` never matches a path with a further segment.
    path("contacts/<str:pk>/export", views.ContactExportView.as_view(), name="contact-export"),
    path("order-cancellation-reasons", views.CancellationReasonsView.as_view(), name="order-cancellation-reasons"),
]
