"""The agent screen: a queue of new and in-progress orders of the agent's venues, newest first,
with one-click start, complete and cancel (cancel asks for the reason)."""

from django import forms
from django.contrib import admin, messages
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils.html import format_html_join
from unfold.admin import ModelAdmin, TabularInline
from unfold.decorators import action, display
from unfold.widgets import UnfoldAdminSelectWidget, UnfoldAdminTextareaWidget

from core.exceptions import DomainError
from core.money import format_minor
from orders import services
from orders.models import Order, OrderAgent, OrderCancellationReason, OrderLine, OrderStatusChange


class OrderLineInline(TabularInline):
    model = OrderLine
    fields = ("sku", "quantity", "unit_price", "amount")
    readonly_fields = fields
    extra = 0
    can_delete = False

    def has_add_permission(self, request, obj=None):
        return False


class OrderStatusChangeInline(TabularInline):
    model = OrderStatusChange
    fields = ("created_at", "from_status", "to_status", "actor", "note")
    readonly_fields = fields
    extra = 0
    can_delete = False
    verbose_name_plural = "status history"

    def has_add_permission(self, request, obj=None):
        return False


class QueueFilter(admin.SimpleListFilter):
    title = "queue"
    parameter_name = "queue"

    def lookups(self, request, model_admin):
        return [("open", "New and in progress"), ("all", "All orders")]

    def queryset(self, request, queryset):
        if self.value() in (None, "open"):
            return queryset.filter(status__in=[Order.Status.NEW, Order.Status.IN_PROGRESS])
        return queryset

    def choices(self, changelist):
        for lookup, title in self.lookup_choices:
            yield {
                "selected": self.value() == lookup or (self.value() is None and lookup == "open"),
                "query_string": changelist.get_query_string({self.parameter_name: lookup}),
                "display": title,
            }


class CancelForm(forms.Form):
    reason = forms.ModelChoiceField(queryset=OrderCancellationReason.objects.none(), widget=UnfoldAdminSelectWidget)
    note = forms.CharField(required=False, widget=UnfoldAdminTextareaWidget)

    def __init__(self, *args, livemode: bool, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["reason"].queryset = OrderCancellationReason.objects.filter(livemode=livemode, is_active=True)


@admin.register(Order)
class OrderAdmin(ModelAdmin):
    list_display = (
        "placed_at",
        "short_id",
        "status_badge",
        "venue",
        "contact",
        "fulfilment",
        "amount_display",
        "items",
    )
    list_filter = (QueueFilter, "status", "venue", "fulfilment", "livemode")
    list_select_related = ("venue", "contact")
    search_fields = ("id", "contact__member_number", "contact__first_name", "contact__last_name")
    ordering = ("-placed_at",)
    inlines = [OrderLineInline, OrderStatusChangeInline]
    readonly_fields = (
        "contact",
        "venue",
        "status",
        "fulfilment",
        "notes",
        "currency",
        "amount",
        "cancellation_reason",
        "transaction",
        "placed_at",
        "started_at",
        "completed_at",
        "cancelled_at",
        "livemode",
    )
    actions_row = ["start_order", "complete_order", "cancel_order"]
    actions_detail = ["start_order", "complete_order", "cancel_order"]

    def has_add_permission(self, request):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    def get_queryset(self, request):
        orders = super().get_queryset(request).prefetch_related("lines")
        agent = OrderAgent.objects.filter(user=request.user).first()
        if agent is not None and not request.user.is_superuser:
            # An agent works on the orders of their own venues.
            orders = orders.filter(venue__in=agent.venues.all())
        return orders

    @display(description="Order")
    def short_id(self, obj):
        return str(obj.pk)[:8]

    @display(
        description="Status",
        label={"new": "info", "in_progress": "warning", "completed": "success", "cancelled": "danger"},
    )
    def status_badge(self, obj):
        return obj.status

    @display(description="Amount")
    def amount_display(self, obj):
        return f"{format_minor(obj.amount, obj.currency)} {obj.currency}"

    @display(description="Items")
    def items(self, obj):
        return format_html_join(", ", "{} × {}", ((line.quantity.normalize(), line.sku) for line in obj.lines.all()))

    def _move(self, request, object_id, action_name, **kwargs):
        order = self.get_queryset(request).filter(pk=object_id).first()
        if order is None:
            self.message_user(request, "No such order in your queue.", level=messages.ERROR)
        else:
            try:
                services.order_transition(
                    order=order, action=action_name, actor=f"staff:{request.user.username}", **kwargs
                )
                self.message_user(request, f"Order {str(order.pk)[:8]}: {order.get_status_display().lower()}.")
            except DomainError as error:
                self.message_user(request, error.message, level=messages.ERROR)
        return redirect(request.META.get("HTTP_REFERER") or reverse("admin:orders_order_changelist"))

    @action(description="Start", url_path="start", icon="play_arrow")
    def start_order(self, request, object_id):
        return self._move(request, object_id, "start")

    @action(description="Complete", url_path="complete", icon="check_circle")
    def complete_order(self, request, object_id):
        return self._move(request, object_id, "complete")

    @action(description="Cancel", url_path="cancel", icon="cancel")
    def cancel_order(self, request, object_id):
        order = self.get_queryset(request).filter(pk=object_id).first()
        if order is None:
            return self._move(request, object_id, "cancel")
        form = CancelForm(request.POST or None, livemode=order.livemode)
        if request.method == "POST" and form.is_valid():
            try:
                services.order_transition(
                    order=order,
                    action="cancel",
                    actor=f"staff:{request.user.username}",
                    cancellation_reason=form.cleaned_data["reason"],
                    note=form.cleaned_data["note"],
                )
            except DomainError as error:
                self.message_user(request, error.message, level=messages.ERROR)
            else:
                self.message_user(request, f"Order {str(order.pk)[:8]} cancelled.")
            return redirect(reverse("admin:orders_order_changelist"))
        return TemplateResponse(
            request,
            "admin/orders/cancel.html",
            {
                **self.admin_site.each_context(request),
                "title": f"Cancel order {str(order.pk)[:8]}",
                "order": order,
                "form": form,
            },
        )


@admin.register(OrderCancellationReason)
class OrderCancellationReasonAdmin(ModelAdmin):
    list_display = ("name", "code", "is_active", "livemode")
    list_filter = ("is_active", "livemode")


@admin.register(OrderAgent)
class OrderAgentAdmin(ModelAdmin):
    list_display = ("user",)
    filter_horizontal = ("venues",)
