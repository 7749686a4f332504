"""In real Chromium: build a chain in the admin, reorder its steps by drag and drop."""

from __future__ import annotations

import pytest
from playwright.sync_api import Page, expect

from providers.models import FallbackChain
from tests.providers import conftest_admin

sim_providers = conftest_admin.sim_providers  # sim-a, sim-b, sim-c

# Sortable.js animates a drop with a CSS transform on the moved rows; done when none is left.
SORTABLE_SETTLED = "() => ![...document.querySelectorAll('#steps-group tr')].some(r => r.style.transform)"

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def log_in(page: Page, base_url: str) -> None:
    page.goto(f"{base_url}/admin/login/?next=/admin/")
    page.fill("#id_username", "admin")
    page.fill("#id_password", "correct-horse-9")  # tests/conftest.py's admin_user
    page.click("input[type=submit]")
    expect(page.locator("#site-name")).to_contain_text("RANA administration")


def step_order_on_page(page: Page) -> list[str]:
    selects = page.locator("#steps-group tr.has_original td.field-provider select")
    return [s.locator("option:checked").inner_text() for s in selects.all()]


def step_order_in_db(chain: FallbackChain) -> list[str]:
    return list(chain.steps.order_by("position").values_list("provider__name", flat=True))


def test_steps_reordered_by_drag_and_drop_are_saved(
    page, live_server, admin_user, sim_providers, screenshot_path
):
    log_in(page, live_server.url)

    page.goto(f"{live_server.url}/admin/providers/fallbackchain/add/")
    page.locator("#id_name").press_sequentially("Browser chain")
    expect(page.locator("#id_slug")).to_have_value("browser-chain")  # prepopulated by the admin's script
    for index, name in enumerate(["sim-a", "sim-b", "sim-c"]):
        page.select_option(f"#id_steps-{index}-provider", label=name)
        page.fill(f"#id_steps-{index}-model", "sim-small")
    page.click("input[name=_continue]")
    expect(page.locator(".messagelist .success")).to_be_visible()
    chain = FallbackChain.objects.get(slug="browser-chain")
    assert step_order_in_db(chain) == ["sim-a", "sim-b", "sim-c"]
    assert step_order_on_page(page) == ["sim-a", "sim-b", "sim-c"]

    # Drag the last step (sim-c) by its handle onto the first row.
    handles = page.locator("#steps-group tr.has_original td.original p")
    handles.nth(2).drag_to(handles.nth(0))
    assert step_order_on_page(page) == ["sim-c", "sim-a", "sim-b"]
    page.wait_for_function(SORTABLE_SETTLED)
    page.screenshot(path=screenshot_path("admin-chain-order-dragged"), full_page=True)
    page.click("input[name=_continue]")
    expect(page.locator(".messagelist .success")).to_be_visible()

    assert step_order_in_db(chain) == ["sim-c", "sim-a", "sim-b"]
    assert list(chain.steps.order_by("position").values_list("position", flat=True)) == [0, 1, 2]
    page.reload()
    assert step_order_on_page(page) == ["sim-c", "sim-a", "sim-b"]
    page.screenshot(path=screenshot_path("admin-chain-order-saved"), full_page=True)
