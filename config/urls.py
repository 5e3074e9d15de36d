from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path

from . import health

handler400 = "config.errors.bad_request"
handler404 = "config.errors.not_found"
handler500 = "config.errors.server_error"

urlpatterns = [
    path("", include("annotate.urls")),
    path("login/", auth_views.LoginView.as_view(), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("health/", health.health, name="health"),
    path("api/v1/", include("feedback_api.urls")),
    path("api/v1/", include("feedback_api.dataset_urls")),
    path("api/v1/", include("judges.api_urls")),
    path("api/v1/", include("routing.api_urls")),
    path("", include("feedback_api.dataset_page_urls")),
    path("", include("rewards.urls")),
    path("", include("judges.urls")),
    path("", include("routing.urls")),
    path("admin/", admin.site.urls),
]
