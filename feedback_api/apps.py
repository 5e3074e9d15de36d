from django.apps import AppConfig


class FeedbackApiConfig(AppConfig):
    name = "feedback_api"
    verbose_name = "Feedback API"
