from django.contrib import admin

from .models import Annotation, Assignment, ImportJob, Item, Judge, Membership, Project


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
    list_display = ["external_id", "project", "priority", "created_at"]
    list_filter = ["project"]
    search_fields = ["external_id"]
    list_select_related = ["project"]
    raw_id_fields = ["project"]
    show_full_result_count = False


@admin.register(Judge)
class JudgeAdmin(admin.ModelAdmin):
    list_display = ["name", "project", "provider", "model_name", "active"]
    list_filter = ["provider", "active"]


@admin.register(Assignment)
class AssignmentAdmin(admin.ModelAdmin):
    list_display = ["item", "annotator", "status", "expires_at", "completed_at"]
    list_filter = ["status"]
    raw_id_fields = ["item", "annotator"]
    list_select_related = ["item", "annotator"]


@admin.register(Annotation)
class AnnotationAdmin(admin.ModelAdmin):
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
