from rest_framework import permissions

from core.models import ApiKey


class HasApiKeyScope(permissions.BasePermission):
    """A valid key carrying the view's `required_scope` (default: integration)."""

    message = "This API key lacks the scope this endpoint needs."

    def has_permission(self, request, view) -> bool:
        api_key = request.auth
        if not isinstance(api_key, ApiKey):
            # Lets DRF raise NotAuthenticated (401), not PermissionDenied.
            return False
        scope = getattr(view, "required_scope", ApiKey.Scope.INTEGRATION)
        if not api_key.has_scope(scope):
            self.message = f"This API key lacks the '{scope}' scope."
            return False
        return True
