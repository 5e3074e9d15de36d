"""API routes of dataset versions, under /api/v1/."""

from django.urls import path

from . import dataset_views

app_name = "datasets"

urlpatterns = [
    path(
        "projects/<slug:slug>/datasets/",
        dataset_views.DatasetListView.as_view(),
        name="dataset-list",
    ),
    path(
        "projects/<slug:slug>/datasets/<db_id:number>/",
        dataset_views.dataset_detail,
        name="dataset-detail",
    ),
    path(
        "projects/<slug:slug>/datasets/<db_id:number>/download/",
        dataset_views.dataset_download,
        name="dataset-download",
    ),
]
