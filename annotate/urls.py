from django.urls import path

from . import views

app_name = "annotate"

urlpatterns = [
    path("", views.project_list, name="project-list"),
    path("projects/new/", views.project_create, name="project-create"),
    path("projects/<slug:slug>/", views.project_detail, name="project-detail"),
    path("projects/<slug:slug>/import/", views.item_import, name="item-import"),
    path("projects/<slug:slug>/import/<int:pk>/", views.import_job, name="import-job"),
    path("projects/<slug:slug>/annotate/", views.annotate, name="annotate"),
    path(
        "projects/<slug:slug>/annotate/<int:pk>/submit/",
        views.annotate_submit,
        name="annotate-submit",
    ),
    path("projects/<slug:slug>/annotate/<int:pk>/skip/", views.annotate_skip, name="annotate-skip"),
    path(
        "projects/<slug:slug>/annotate/labels/<int:pk>/",
        views.annotation_edit,
        name="annotation-edit",
    ),
    path("projects/<slug:slug>/members/", views.members, name="members"),
    path(
        "projects/<slug:slug>/members/<int:user_id>/role/",
        views.member_role,
        name="member-role",
    ),
    path(
        "projects/<slug:slug>/members/<int:user_id>/remove/",
        views.member_remove,
        name="member-remove",
    ),
]
