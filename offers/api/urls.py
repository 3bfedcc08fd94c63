from django.urls import path

from offers.api import views

urlpatterns = [
    path("contacts/<str:pk>/offers", views.ContactOffersView.as_view(), name="contact-offers"),
    path("offers/lookup", views.LookupView.as_view(), name="offer-lookup"),
    path("offers", views.OfferCollectionView.as_view(), name="offer-list"),
    path("offers/<str:offer_id>/issue", views.IssueView.as_view(), name="offer-issue"),
    path("offers/<str:pk>", views.OfferDetailView.as_view(), name="offer-detail"),
    path("issued-offers/<str:pk>/lock", views.LockView.as_view(), name="issued-offer-lock"),
    path("issued-offers/<str:pk>/unlock", views.UnlockView.as_view(), name="issued-offer-unlock"),
    path("issued-offers/<str:pk>/redeem", views.RedeemView.as_view(), name="issued-offer-redeem"),
    path("issued-offers/<str:pk>/reinstate", views.ReinstateView.as_view(), name="issued-offer-reinstate"),
    path("external-redemptions", views.ExternalRedemptionView.as_view(), name="external-redemptions"),
]
