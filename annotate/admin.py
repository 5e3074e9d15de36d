from django import forms
from django.contrib import admin

from .assignment import clean_label
from .models import Annotation, Assignment, ImportJob, Item, Judge, Membership, Project
from .services import ServiceError


class MembershipInline(admin.TabularInline):
    model = Membership
    extra = 1
    autocomplete_fields = ["user"]


@admin.register(Project)
class ProjectAdmin(admin.ModelAdmin):
    list_display = ["name", "kind", "overlap", "created_at"]
    list_filter = ["kind"]
    search_fields = ["name", "slug"]
    prepopulated_fields = {"slug": ["name"]}
    inlines = [MembershipInline]


@admin.register(Membership)
class MembershipAdmin(admin.ModelAdmin):
    list_display = ["project", "user", "role", "created_at"]
    list_filter = ["role", "project"]
    search_fields = ["user__username", "project__name"]
    autocomplete_fields = ["user", "project"]


@admin.register(Item)
class ItemAdmin(admin.ModelAdmin):
    list_display = ["external_id", "project", "route", "priority", "created_at"]
    list_filter = ["project", "route"]
    search_fields = ["external_id"]
    list_select_related = ["project"]
    raw_id_fields = ["project"]
    # Set by the router under the budget's lock (routing/services.py), never by hand.
    readonly_fields = ["route"]
    show_full_result_count = False


@admin.register(Judge)
class JudgeAdmin(admin.ModelAdmin):
    list_display = ["name", "project", "backend", "model_name", "active"]
    list_filter = ["backend", "active"]


@admin.register(Assignment)
class AssignmentAdmin(admin.ModelAdmin):
    list_display = ["item", "annotator", "status", "expires_at", "completed_at"]
    list_filter = ["status"]
    raw_id_fields = ["item", "annotator"]
    list_select_related = ["item", "annotator"]


class AnnotationAdminForm(forms.ModelForm):
    """A label edited here is checked by its item's kind, as a submitted one is: the database
    derives the pairwise choice and strength columns from it and would refuse a strength that
    is not a number."""

    class Meta:
        model = Annotation
        fields = "__all__"  # noqa: DJ007 (ModelAdmin picks the fields it shows)

    def clean(self):
        data = super().clean()
        item, label = data.get("item"), data.get("label")
        if item is not None and "label" not in self.errors:
            if data.get("kind") and data["kind"] != item.project.kind:
                self.add_error("kind", f"The item's project labels {item.project.kind} items.")
            try:
                data["label"] = clean_label(item=item, label=label)
            except ServiceError as exc:
                self.add_error("label", f"{exc.field or 'label'}: {exc}")
        return data


@admin.register(Annotation)
class AnnotationAdmin(admin.ModelAdmin):
    form = AnnotationAdminForm
    list_display = ["item", "source", "annotator", "judge", "kind", "created_at"]
    list_filter = ["source", "kind"]
    raw_id_fields = ["item", "annotator", "judge", "assignment"]
    list_select_related = ["item", "annotator", "judge"]
    show_full_result_count = False


@admin.register(ImportJob)
class ImportJobAdmin(admin.ModelAdmin):
    list_display = ["filename", "project", "status", "size_bytes", "created_at", "finished_at"]
    list_filter = ["status"]
    readonly_fields = ["report"]
