"""Serializer fields that take what the OpenAPI schema says they take, no more.

DRF's CharField also takes numbers (`"guidelines": 0` is stored as "0") and its FloatField takes
true and false (as 1.0 and 0.0), while the schema says string and number: a client that trusts
the schema and one that does not get different answers. These refuse them with a 400. A text
that may not be blank also carries, in the schema, the pattern its trimming applies: Python
strips more characters than JSON Schema's \\s (the separators U+001C-U+001F and U+0085), so
"\\x1f" is blank to the API and must not look valid in the schema.
"""

from __future__ import annotations

from django.core.validators import RegexValidator
from rest_framework import serializers

# A character Python's str.strip() keeps, as a regex both Python and ECMA 262 (JSON Schema's
# dialect) read alike: ECMA's \s lacks U+001C-U+001F and U+0085 but has U+FEFF.
NOT_BLANK = r"[^\s\x1c-\x1f\x85]|\ufeff"


class TextField(serializers.CharField):
    """DRF's CharField, refusing anything but text; when blank is not allowed, the schema has
    a pattern that says what blank is."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        if not self.allow_blank and self.trim_whitespace:
            message = self.error_messages["blank"]
            self.validators.append(RegexValidator(NOT_BLANK, message=message))

    def to_internal_value(self, data):
        if not isinstance(data, str):
            self.fail("invalid")
        return super().to_internal_value(data)


class NumberField(serializers.FloatField):
    """DRF's FloatField, refusing true and false."""

    def to_internal_value(self, data):
        if isinstance(data, bool):
            self.fail("invalid")
        return super().to_internal_value(data)
