"""Cursor pagination by id, for lists that can hold millions of rows (items, annotations)."""

from __future__ import annotations

from rest_framework.exceptions import NotFound, ValidationError
from rest_framework.pagination import CursorPagination

MAX_DB_INT = 2**63 - 1


class IdCursorPagination(CursorPagination):
    """Pages walk the rows by id (`ordering=id`, the default, or `-id`); each row once.

    Bad input is a 400 naming the parameter: an unknown ordering, a page_size that is not a
    positive whole number, or a cursor this API did not hand out. A page_size over the
    maximum is cut to the maximum.
    """

    page_size = 100
    page_size_query_param = "page_size"
    max_page_size = 1000
    ordering_param = "ordering"
    orderings = ("id", "-id")

    def get_ordering(self, request, queryset, view):
        value = request.query_params.get(self.ordering_param, "id")
        if value not in self.orderings:
            raise ValidationError(
                {self.ordering_param: [f"Expected one of: {', '.join(self.orderings)}."]}
            )
        return (value,)

    def get_page_size(self, request):
        raw = request.query_params.get(self.page_size_query_param)
        if raw is None:
            return self.page_size
        try:
            size = int(raw)
        except ValueError:
            size = 0
        if size < 1:
            raise ValidationError(
                {self.page_size_query_param: ["Expected a whole number of at least 1."]}
            )
        return min(size, self.max_page_size)

    def decode_cursor(self, request):
        try:
            cursor = super().decode_cursor(request)
        except NotFound:
            cursor = False
        # DRF checks the offset but not the position: a forged position would reach the query.
        if cursor is False or (cursor and not _is_db_int(cursor.position)):
            raise ValidationError({self.cursor_query_param: ["Invalid cursor."]})
        return cursor

    def get_schema_operation_parameters(self, view):
        parameters = super().get_schema_operation_parameters(view)
        for parameter in parameters:
            if parameter["name"] == self.page_size_query_param:
                parameter["schema"] = {
                    "type": "integer",
                    "minimum": 1,
                    "description": f"default {self.page_size}; more than {self.max_page_size} "
                    f"is cut to {self.max_page_size}",
                }
        parameters.append(
            {
                "name": self.ordering_param,
                "required": False,
                "in": "query",
                "description": "id (oldest first, the default) or -id (newest first)",
                "schema": {"type": "string", "enum": list(self.orderings)},
            }
        )
        return parameters


def _is_db_int(position) -> bool:
    if position is None:
        return True
    try:
        return abs(int(position)) <= MAX_DB_INT
    except (TypeError, ValueError):
        return False
