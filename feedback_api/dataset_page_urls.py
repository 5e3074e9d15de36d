"""The dataset versions page."""

from django.urls import path

from . import dataset_views

app_name = "dataset-pages"

urlpatterns = [
    path("projects/<slug:slug>/datasets/", dataset_views.dataset_page, name="datasets"),
]
