"""Signals of the annotation domain, for the apps that come after it (routing) to hear of
changes without annotate importing them."""

from django.dispatch import Signal

# Sent after an import created items in a project whose new items wait for the router
# (Project.new_item_route "pending"), with `project` and `created` (how many).
items_waiting = Signal()
