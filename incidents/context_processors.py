from django.conf import settings

from incidents.roles import role_of


def amends(request):
    return {
        "company_name": settings.COMPANY_NAME,
        "current_role": role_of(request.user) if hasattr(request, "user") else None,
    }
