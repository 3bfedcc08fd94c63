from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from core.api.views import HealthView

api_v1 = [
    path("", include("loyalty.api.urls")),
    # before catalogue: /products/sync must not be taken for the product with SKU "sync"
    path("", include("transactions.api.urls")),
    path("", include("catalogue.api.urls")),
    path("", include("offers.api.urls")),
    path("", include("orders.api.urls")),
    path("", include("campaigns.api.urls")),
    path("", include("core.api.urls")),
]

urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/v1/", include(api_v1)),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="docs"),
    path("healthz", HealthView.as_view(), name="healthz"),
]
