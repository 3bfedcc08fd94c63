from django import forms
from django.contrib import admin, messages
from django.contrib.auth.admin import GroupAdmin as BaseGroupAdmin
from django.contrib.auth.admin import UserAdmin as BaseUserAdmin
from django.contrib.auth.models import Group, User
from django.utils.html import format_html
from rest_framework_api_key.models import APIKey as LibraryApiKey
from unfold.admin import ModelAdmin, TabularInline
from unfold.decorators import action, display
from unfold.forms import AdminPasswordChangeForm, UserChangeForm, UserCreationForm
from unfold.widgets import UnfoldAdminCheckboxSelectMultipleWidget

from core import services, webhooks
from core.models import ApiKey, WebhookAttempt, WebhookDelivery, WebhookEndpoint


def environment_badge(request):
    """The coloured badge unfold shows in the header: which database this admin writes to."""
    from django.conf import settings

    engine = settings.DATABASES["default"]["ENGINE"].rsplit(".", 1)[-1]
    if settings.DEBUG:
        return [f"development · {engine}", "warning"]
    return [f"production · {engine}", "danger"]


admin.site.unregister(User)
admin.site.unregister(Group)
# The library's own concrete APIKey model is unused: keys live in core.ApiKey.
admin.site.unregister(LibraryApiKey)


@admin.register(User)
class UserAdmin(BaseUserAdmin, ModelAdmin):
    form = UserChangeForm
    add_form = UserCreationForm
    change_password_form = AdminPasswordChangeForm


@admin.register(Group)
class GroupAdmin(BaseGroupAdmin, ModelAdmin):
    pass


class ApiKeyForm(forms.ModelForm):
    scopes = forms.MultipleChoiceField(
        choices=ApiKey.Scope.choices,
        initial=[ApiKey.Scope.INTEGRATION],
        widget=UnfoldAdminCheckboxSelectMultipleWidget,
        help_text="Integration: checkout endpoints. Management: program configuration endpoints.",
    )

    class Meta:
        model = ApiKey
        fields = ("name", "livemode", "scopes", "expiry_date")


@admin.register(ApiKey)
class ApiKeyAdmin(ModelAdmin):
    form = ApiKeyForm
    list_display = ("name", "prefix", "mode_badge", "scopes", "created", "last_used_at", "expiry_date", "revoked")
    list_filter = ("livemode", "revoked")
    search_fields = ("name", "prefix")
    readonly_fields = ("prefix", "created", "last_used_at", "created_by")
    actions = ["revoke_keys"]

    @display(description="Mode", label={"live": "success", "test": "warning"})
    def mode_badge(self, obj):
        return obj.mode

    def get_readonly_fields(self, request, obj=None):
        if obj is not None:
            # A key's mode and scopes are fixed once it exists: issue a new key instead.
            return (*self.readonly_fields, "livemode", "scopes", "revoked")
        return self.readonly_fields

    def get_fields(self, request, obj=None):
        if obj is None:
            return ("name", "livemode", "scopes", "expiry_date")
        return (
            "name",
            "prefix",
            "livemode",
            "scopes",
            "expiry_date",
            "revoked",
            "created",
            "last_used_at",
            "created_by",
        )

    def save_model(self, request, obj, form, change):
        if change:
            obj.save(update_fields=["name", "expiry_date"])
            return
        created, key = services.api_key_create(
            name=form.cleaned_data["name"],
            livemode=form.cleaned_data["livemode"],
            scopes=form.cleaned_data["scopes"],
            expiry_date=form.cleaned_data.get("expiry_date"),
            created_by=request.user,
        )
        obj.__dict__.update(created.__dict__)
        obj._state.adding = False
        self.message_user(
            request,
            format_html(
                "The API key is <code>{}</code>. Copy it now: it is stored only as a hash and will not be shown again.",
                key,
            ),
            level=messages.WARNING,
        )

    @action(description="Revoke selected keys (cannot be undone)")
    def revoke_keys(self, request, queryset):
        for api_key in queryset:
            services.api_key_revoke(api_key=api_key)
        self.message_user(request, f"Revoked {queryset.count()} key(s).")


class WebhookAttemptInline(TabularInline):
    model = WebhookAttempt
    fields = ("attempted_at", "status_code", "duration_ms", "error", "response_excerpt")
    readonly_fields = fields
    extra = 0
    can_delete = False

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(WebhookEndpoint)
class WebhookEndpointAdmin(ModelAdmin):
    list_display = ("url", "event_types", "is_active", "consecutive_failures", "disabled_reason", "livemode")
    list_filter = ("is_active", "livemode")
    readonly_fields = ("consecutive_failures", "disabled_reason", "created_at")
    fields = (
        "url",
        "description",
        "event_types",
        "is_active",
        "livemode",
        "consecutive_failures",
        "disabled_reason",
        "created_at",
    )

    def save_model(self, request, obj, form, change):
        if change:
            webhooks.webhook_endpoint_update(
                endpoint=obj,
                **{name: form.cleaned_data[name] for name in ("url", "description", "event_types", "is_active")},
            )
            return
        created = webhooks.webhook_endpoint_create(
            livemode=obj.livemode, url=obj.url, event_types=obj.event_types, description=obj.description
        )
        obj.__dict__.update(created.__dict__)
        obj._state.adding = False
        self.message_user(
            request,
            format_html("The signing secret is <code>{}</code>. Copy it now: it is not shown again.", created.secret),
            level=messages.WARNING,
        )


@admin.register(WebhookDelivery)
class WebhookDeliveryAdmin(ModelAdmin):
    list_display = (
        "id",
        "event",
        "endpoint",
        "status",
        "attempts",
        "last_status_code",
        "next_attempt_at",
        "delivered_at",
    )
    list_filter = ("status", "endpoint")
    list_select_related = ("event", "endpoint")
    readonly_fields = (
        "endpoint",
        "event",
        "status",
        "attempts",
        "last_status_code",
        "next_attempt_at",
        "created_at",
        "delivered_at",
    )
    inlines = [WebhookAttemptInline]
    actions = ["resend"]

    def has_add_permission(self, request):
        return False

    @action(description="Resend selected deliveries now")
    def resend(self, request, queryset):
        for delivery in queryset:
            webhooks.delivery_resend(delivery=delivery)
        self.message_user(request, f"{queryset.count()} delivery(ies) queued again.")
