"""Acting from the IOC page in a real Chromium: a user who may act clicks, a viewer cannot.

The real api-server with a user of each role (``tests/role_server.py``); each logs in through
Airflow's own login form. The page runs under its Content Security Policy, which must leave
its styles alone and raise no violation.
"""

from __future__ import annotations

import pytest

from tests.role_server import RoleServer, dead_again, ledger_snapshot, linked_reports

pytestmark = [pytest.mark.browser]

DEAD = "PAHT-quangtri_ioc-QT-3"
HEADER_BLUE = "rgb(15, 61, 110)"  # base.html's header: the style block ran under the policy


def logged_in(chromium: object, server: RoleServer, role: str) -> tuple[object, list[str]]:
    """A fresh browser context logged in as ``role`` on the IOC page, and the policy violations it reports."""
    page = chromium.new_context(viewport={"width": 1400, "height": 900}, locale="vi-VN").new_page()
    violations: list[str] = []
    page.on("console", lambda message: violations.append(message.text) if "Content Security Policy" in message.text else None)
    assert page.goto(f"{server.base}/paht/").status == 401
    page.get_by_role("link", name="Đăng nhập").click()
    page.get_by_label("Username").fill(server.user(role))
    page.get_by_label("Password").fill(server.passwords[server.user(role)])
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(f"{server.base}/paht/")
    return page, violations


def test_a_user_replays_and_unlinks_with_a_click(chromium: object, role_server: RoleServer) -> None:
    from playwright.sync_api import expect

    dead_again(role_server.ledger_url)
    page, violations = logged_in(chromium, role_server, "user")
    assert page.locator("header").evaluate("e => getComputedStyle(e).backgroundColor") == HEADER_BLUE
    page.locator(f'[data-testid="dead-letters"] tr[data-ref="{DEAD}"]').get_by_role("button", name="Gửi lại").click()
    expect(page.get_by_test_id("replayed")).to_contain_text("Đã đưa 1 văn bản")

    source, source_id = linked_reports(role_server.ledger_url)[0]
    page.get_by_label("Mã phản ánh").fill(source_id)
    page.get_by_label("Mã phản ánh").press("Enter")
    page.get_by_label("lý do tách").fill("Hai ổ gà khác nhau, cách nhau một đoạn")
    page.get_by_role("button", name="Tách, xử lý riêng").click()
    expect(page.get_by_test_id("unlinked")).to_be_visible()
    assert (source, source_id) not in linked_reports(role_server.ledger_url)
    expect(page.get_by_test_id("trace")).to_contain_text("ioc-page:ioc-user")
    assert violations == []


def test_a_viewer_sees_no_action_and_a_forced_one_is_refused(chromium: object, role_server: RoleServer) -> None:
    from playwright.sync_api import expect

    dead_again(role_server.ledger_url)
    page, violations = logged_in(chromium, role_server, "viewer")
    row = page.locator(f'[data-testid="dead-letters"] tr[data-ref="{DEAD}"]')
    expect(row).to_be_visible()
    expect(row.get_by_role("button")).to_have_count(0)
    expect(page.get_by_test_id("read-only")).to_contain_text("chỉ có quyền xem")

    # What a curious viewer could do from the developer tools: post the form the page did not offer.
    before = ledger_snapshot(role_server.ledger_url)
    page.evaluate("""() => {
        const form = Object.assign(document.createElement('form'), {method: 'post', action: '/paht/dead-letters/replay'});
        form.appendChild(Object.assign(document.createElement('input'), {name: 'all', value: 'true'}));
        document.body.appendChild(form);
        form.submit();
    }""")
    expect(page.get_by_test_id("refused")).to_contain_text("chỉ có quyền xem")
    assert ledger_snapshot(role_server.ledger_url) == before
    assert violations == []
