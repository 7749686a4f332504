from django.db import migrations, models


def _text(content):
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(p.get("text", "") for p in content if isinstance(p, dict) and p.get("type") == "text")
    return ""


def fill_titles(apps, schema_editor):
    """Runs made before titles existed: the text of their last user message."""
    PlaygroundRun = apps.get_model("playground", "PlaygroundRun")
    for run in PlaygroundRun.objects.only("id", "messages").iterator(chunk_size=200):
        user = next((m for m in reversed(run.messages or []) if m.get("role") == "user"), None)
        title = " ".join(_text(user.get("content")).split())[:200] if user else ""
        PlaygroundRun.objects.filter(pk=run.pk).update(title=title)


class Migration(migrations.Migration):
    dependencies = [
        ("playground", "0001_playground_run"),
    ]

    operations = [
        migrations.AddField(
            model_name="playgroundrun",
            name="tool_calls",
            field=models.JSONField(blank=True, default=list),
        ),
        migrations.AddField(
            model_name="playgroundrun",
            name="title",
            field=models.CharField(blank=True, max_length=200),
        ),
        migrations.RunPython(fill_titles, migrations.RunPython.noop),
    ]
