from drf_spectacular.utils import extend_schema
from rest_framework import status
from rest_framework.response import Response

from catalogue import selectors, services
from catalogue.api.serializers import (
    MerchantInputSerializer,
    MerchantSerializer,
    ProductInputSerializer,
    ProductSerializer,
    VenueInputSerializer,
    VenueSerializer,
)
from catalogue.models import Merchant, Product, Venue
from core.api.idempotency import idempotent
from core.api.views import ManagementApiView, get_in_mode_or_404


class MerchantCollectionView(ManagementApiView):
    lists_on_get = True
    queryset = Merchant.objects.none()  # for the schema only: data comes from selectors
    serializer_class = MerchantSerializer

    @extend_schema(summary="List merchants", tags=["management: places"])
    def get(self, request):
        return self.paginated(selectors.merchant_list(livemode=self.livemode), MerchantSerializer)

    @extend_schema(
        summary="Create a merchant",
        tags=["management: places"],
        request=MerchantInputSerializer,
        responses={201: MerchantSerializer},
    )
    @idempotent
    def post(self, request):
        data = MerchantInputSerializer.validated(request.data)
        merchant = services.merchant_create(livemode=self.livemode, **data)
        return Response(MerchantSerializer(merchant).data, status=status.HTTP_201_CREATED)


class MerchantDetailView(ManagementApiView):
    serializer_class = MerchantSerializer

    def get_object(self):
        return get_in_mode_or_404(selectors.merchant_list(livemode=self.livemode), pk=self.kwargs["pk"])

    @extend_schema(summary="Get a merchant", tags=["management: places"])
    def get(self, request, pk):
        return Response(MerchantSerializer(self.get_object()).data)

    @extend_schema(summary="Update a merchant", tags=["management: places"], request=MerchantInputSerializer)
    def patch(self, request, pk):
        data = MerchantInputSerializer.validated(request.data, partial=True)
        merchant = services.merchant_update(merchant=self.get_object(), **data)
        return Response(MerchantSerializer(merchant).data)


class VenueUpdateSerializer(VenueInputSerializer):
    merchant = None


class VenueCollectionView(ManagementApiView):
    lists_on_get = True
    queryset = Venue.objects.none()  # for the schema only: data comes from selectors
    serializer_class = VenueSerializer

    @extend_schema(summary="List venues", tags=["management: places"])
    def get(self, request):
        return self.paginated(selectors.venue_list(livemode=self.livemode), VenueSerializer)

    @extend_schema(
        summary="Create a venue",
        tags=["management: places"],
        request=VenueInputSerializer,
        responses={201: VenueSerializer},
    )
    @idempotent
    def post(self, request):
        data = VenueInputSerializer.validated(request.data)
        merchant = get_in_mode_or_404(
            selectors.merchant_list(livemode=self.livemode), name="merchant", pk=data.pop("merchant")
        )
        venue = services.venue_create(merchant=merchant, **data)
        return Response(VenueSerializer(venue).data, status=status.HTTP_201_CREATED)


class VenueDetailView(ManagementApiView):
    serializer_class = VenueSerializer

    def get_object(self):
        return get_in_mode_or_404(selectors.venue_list(livemode=self.livemode), pk=self.kwargs["pk"])

    @extend_schema(summary="Get a venue", tags=["management: places"])
    def get(self, request, pk):
        return Response(VenueSerializer(self.get_object()).data)

    @extend_schema(summary="Update a venue", tags=["management: places"], request=VenueUpdateSerializer)
    def patch(self, request, pk):
        data = VenueUpdateSerializer.validated(request.data, partial=True)
        venue = services.venue_update(venue=self.get_object(), **data)
        return Response(VenueSerializer(venue).data)


class ProductUpdateSerializer(ProductInputSerializer):
    sku = None


class ProductCollectionView(ManagementApiView):
    lists_on_get = True
    queryset = Product.objects.none()  # for the schema only: data comes from selectors
    serializer_class = ProductSerializer

    @extend_schema(summary="List products", tags=["management: catalogue"])
    def get(self, request):
        return self.paginated(selectors.product_list(livemode=self.livemode), ProductSerializer)

    @extend_schema(
        summary="Create a product",
        tags=["management: catalogue"],
        request=ProductInputSerializer,
        responses={201: ProductSerializer},
    )
    @idempotent
    def post(self, request):
        data = ProductInputSerializer.validated(request.data)
        product = services.product_create(livemode=self.livemode, **data)
        return Response(ProductSerializer(product).data, status=status.HTTP_201_CREATED)


class ProductDetailView(ManagementApiView):
    serializer_class = ProductSerializer

    def get_object(self):
        return get_in_mode_or_404(selectors.product_list(livemode=self.livemode), name="sku", sku=self.kwargs["sku"])

    @extend_schema(summary="Get a product by SKU", tags=["management: catalogue"])
    def get(self, request, sku):
        return Response(ProductSerializer(self.get_object()).data)

    @extend_schema(summary="Update a product", tags=["management: catalogue"], request=ProductUpdateSerializer)
    def patch(self, request, sku):
        data = ProductUpdateSerializer.validated(request.data, partial=True)
        product = services.product_update(product=self.get_object(), **data)
        return Response(ProductSerializer(product).data)
