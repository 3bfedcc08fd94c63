from django.urls import path

from loyalty.api import views

urlpatterns = [
    path("contacts", views.ContactCollectionView.as_view(), name="contact-list"),
    path("contacts/<str:pk>", views.ContactDetailView.as_view(), name="contact-detail"),
]
