"""The upload form: a file of prompts, the chain, concurrency and max_tokens."""

from __future__ import annotations

from django import forms

from batches.parsing import MAX_BYTES, MAX_ROWS
from batches.services.create import DEFAULT_CONCURRENCY, MAX_CONCURRENCY, MAX_TOKENS_LIMIT, MIN_CONCURRENCY
from providers.selectors import chain_list


class BatchUploadForm(forms.Form):
    file = forms.FileField(
        help_text=f"CSV with a 'prompt' column (optional 'system', 'id'), or JSONL objects with "
        f"'prompt' or 'messages' (optional 'id'). At most {MAX_ROWS:,} prompts and "
        f"{MAX_BYTES // (1024 * 1024)} MB."
    )
    chain = forms.ChoiceField(label="Chain")
    concurrency = forms.IntegerField(
        min_value=MIN_CONCURRENCY, max_value=MAX_CONCURRENCY, initial=DEFAULT_CONCURRENCY,
        help_text="Prompts in flight at once.",
    )  # fmt: skip
    max_tokens = forms.IntegerField(min_value=1, max_value=MAX_TOKENS_LIMIT, required=False)

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        chains = chain_list()
        self.fields["chain"].choices = [(c.slug, c.name) for c in chains]
        if chains:
            self.fields["chain"].initial = chains[0].slug

    def clean_file(self):
        upload = self.cleaned_data["file"]
        if upload.size > MAX_BYTES:
            raise forms.ValidationError(f"The file is larger than {MAX_BYTES // (1024 * 1024)} MB.")
        return upload
