"""What a request said and what it got back, kept only for chains whose body logging is on.

One row per completion, written by the ledger's recorder with the completion's final row
(journal kind "b"), with provider keys and key-shaped text masked (providers.services.bodies).
`messages` is the conversation as JSON text (UTF-8, not ASCII-escaped); `prompt` is the text of
its turns alone, one after another, which the request log's prompt search reads (one LIKE that
never matches the JSON's keys or escapes). Deleted with its completion, or earlier by the
retention task (RANA_BODY_RETENTION_DAYS).
"""

from __future__ import annotations

from django.db import models

from .ledger import Completion


class CompletionBody(models.Model):
    completion = models.OneToOneField(
        Completion,
        primary_key=True,
        on_delete=models.CASCADE,
        related_name="body",
        db_constraint=False,  # written behind the completion, in any order (the ledger's way)
    )
    created_at = models.DateTimeField(db_index=True)  # the completion's: what retention reads
    # [{"role", "content", "tool_calls"?, "tool_call_id"?, "images"?}], as JSON text.
    messages = models.TextField()
    prompt = models.TextField(blank=True)  # the turns' text, joined by blank lines: what search reads
    answer = models.TextField(blank=True)
    answer_tool_calls = models.JSONField(null=True, blank=True)  # [{"name", "arguments"}]
    truncated = models.BooleanField(default=False)  # some text was cut at the chain's N characters

    class Meta:
        verbose_name = "completion body"

    def __str__(self) -> str:
        return f"body of {self.completion_id}"
