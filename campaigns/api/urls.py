from django.urls import path

from campaigns.api import views

urlpatterns = [
    path("campaigns", views.CampaignCollectionView.as_view(), name="campaign-list"),
    path("campaigns/<str:pk>", views.CampaignDetailView.as_view(), name="campaign-detail"),
    path("campaigns/<str:pk>/simulate", views.CampaignSimulateView.as_view(), name="campaign-simulate"),
    path("campaigns/<str:pk>/audience", views.CampaignAudienceView.as_view(), name="campaign-audience"),
    path("campaigns/<str:pk>/progress", views.CampaignProgressView.as_view(), name="campaign-progress"),
    path("events", views.EventCollectionView.as_view(), name="event-list"),
    path("events/<str:event_id>", views.EventDetailView.as_view(), name="event-detail"),
    path(
        "contacts/<str:pk>/campaign-progress",
        views.ContactCampaignProgressView.as_view(),
        name="contact-campaign-progress",
    ),
]
