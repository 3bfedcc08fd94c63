import json

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
from core.exceptions import DomainError
from core.messages import SAMPLE_FACTS, message_render, message_template_check
from core.models import ApiKey, MessageVariant, WebhookAttempt, WebhookDelivery, WebhookEndpoint


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


class WebhookEndpointForm(forms.ModelForm):
    url = forms.URLField(max_length=500, assume_scheme="https")
    event_types = forms.MultipleChoiceField(
        choices=sorted((name, f"{name}: {description}") for name, description in webhooks.EVENT_TYPES.items()),
        required=False,
        widget=UnfoldAdminCheckboxSelectMultipleWidget,
        help_text="None ticked = every event type.",
    )

    class Meta:
        model = WebhookEndpoint
        fields = ("url", "description", "event_types", "is_active", "livemode")


@admin.register(WebhookEndpoint)
class WebhookEndpointAdmin(ModelAdmin):
    form = WebhookEndpointForm
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


class MessageVariantForm(forms.ModelForm):
    class Meta:
        model = MessageVariant
        fields = ("name", "description", "livemode", "template")

    def clean_template(self):
        template = self.cleaned_data.get("template")
        try:
            message_template_check(template)  # the same rule as the management API
        except DomainError as error:
            where = error.parameters[0]["name"] if error.parameters else "template"
            raise forms.ValidationError(f"{where}: {error.message}") from None
        return template

    def clean(self):
        cleaned = super().clean()
        # The mode is not on the change form (fixed), so the model's unique constraint is not
        # checked there: name the clash here rather than let the service's Conflict escape.
        livemode = cleaned.get("livemode", self.instance.livemode)
        name = (cleaned.get("name") or "").strip()
        taken = MessageVariant.objects.filter(livemode=livemode, name=name).exclude(pk=self.instance.pk)
        if name and taken.exists():
            self.add_error("name", "A message variant with this name already exists in this mode.")
        return cleaned


@admin.register(MessageVariant)
class MessageVariantAdmin(ModelAdmin):
    form = MessageVariantForm
    list_display = ("name", "description", "livemode", "updated_at")
    list_filter = ("livemode",)
    search_fields = ("name", "description")
    readonly_fields = ("preview", "created_at", "updated_at")

    def get_fields(self, request, obj=None):
        if obj is None:
            return ("name", "description", "livemode", "template")
        return ("name", "description", "livemode", "template", "preview", "created_at", "updated_at")

    def get_readonly_fields(self, request, obj=None):
        if obj is not None:
            # Offers and campaigns of its mode name the variant: the mode is fixed once it exists.
            return (*self.readonly_fields, "livemode")
        return self.readonly_fields

    @display(description="Preview (sample facts)")
    def preview(self, obj):
        if obj is None or obj.pk is None:
            return "-"
        rendered = json.dumps(message_render(obj.template, SAMPLE_FACTS), indent=2, ensure_ascii=False)
        return format_html('<pre class="text-xs whitespace-pre-wrap">{}</pre>', rendered)

    def save_model(self, request, obj, form, change):
        data = form.cleaned_data
        if change:
            services.message_variant_update(
                variant=obj, **{name: data[name] for name in services.MESSAGE_VARIANT_FIELDS if name in data}
            )
            return
        created = services.message_variant_create(
            livemode=data["livemode"], name=data["name"], description=data["description"], template=data["template"]
        )
        obj.__dict__.update(created.__dict__)
        obj._state.adding = False
