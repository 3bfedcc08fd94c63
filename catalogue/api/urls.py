from django.urls import path

from catalogue.api import views

urlpatterns = [
    path("merchants", views.MerchantCollectionView.as_view(), name="merchant-list"),
    path("merchants/<str:pk>", views.MerchantDetailView.as_view(), name="merchant-detail"),
    path("venues", views.VenueCollectionView.as_view(), name="venue-list"),
    path("venues/<str:pk>", views.VenueDetailView.as_view(), name="venue-detail"),
    path("products", views.ProductCollectionView.as_view(), name="product-list"),
    path("products/<str:sku>", views.ProductDetailView.as_view(), name="product-detail"),
]
