"""asgi-start's test view: what Django made of the request the server handed it."""

from django.http import JsonResponse
from django.urls import reverse


def whoami(request):
    return JsonResponse(
        {
            "framework": "django",
            "scheme": request.scheme,
            "remote_addr": request.META.get("REMOTE_ADDR"),
            "script_name": request.META.get("SCRIPT_NAME"),
            "path_info": request.path_info,
            "path": request.path,
            "reverse": reverse("whoami"),
        }
    )
