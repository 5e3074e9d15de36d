"""The API's JSON parser: DRF's, with bodies nested too deeply refused as a 400."""

from __future__ import annotations

from rest_framework import parsers
from rest_framework.exceptions import ParseError

from annotate.storable import TOO_DEEP, too_deep

MESSAGE = f"JSON parse error - {TOO_DEEP}."


class JSONParser(parsers.JSONParser):
    """The parser of every JSON endpoint (DEFAULT_PARSER_CLASSES, and views that name one).
    A few KB of "[" overflow the stack of Python's json module (a RecursionError, a 500 even
    for anonymous clients); shallower nesting past MAX_JSON_DEPTH is refused too, so no field
    of a body holds what orjson cannot write back."""

    def parse(self, stream, media_type=None, parser_context=None):
        try:
            data = super().parse(stream, media_type, parser_context)
        except RecursionError:
            raise ParseError(MESSAGE) from None
        if too_deep(data):
            raise ParseError(MESSAGE)
        return data
