import factory

from catalogue.models import Brand, Merchant, Product, ProductFamily, Venue


class MerchantFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Merchant

    livemode = False
    number = factory.Sequence(lambda n: f"M{n:04d}")
    name = factory.Faker("company")


class VenueFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Venue

    merchant = factory.SubFactory(MerchantFactory)
    livemode = factory.SelfAttribute("merchant.livemode")
    number = factory.Sequence(lambda n: f"V{n:04d}")
    name = factory.Faker("city")
    time_zone = "Europe/Stockholm"


class ProductFamilyFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = ProductFamily

    livemode = False
    code = factory.Sequence(lambda n: f"family-{n}")


class BrandFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Brand

    livemode = False
    code = factory.Sequence(lambda n: f"brand-{n}")


class ProductFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Product

    livemode = False
    sku = factory.Sequence(lambda n: f"SKU{n:05d}")
    name = factory.Faker("word")
    family = factory.SubFactory(ProductFamilyFactory, livemode=factory.SelfAttribute("..livemode"))
    brand = factory.SubFactory(BrandFactory, livemode=factory.SelfAttribute("..livemode"))
