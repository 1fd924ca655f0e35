#!/usr/bin/env python3
"""Drives Sluice's web console in a real browser (Playwright + chromium), as a user would:

log in with the console token, open a sink from the overview, open its Failing tab, find the
failing message with its deliver count and error, open it (JSON value, error history), take a
screenshot, print READY and wait for a line on stdin (the caller brings Kafka back meanwhile),
click "Retry now", wait until the state badge says delivered, take a second screenshot, print
DELIVERED and exit 0. Any failure: a message on stderr and a non-zero exit.

The token comes from the environment (SLUICE_CONSOLE_TOKEN), not the command line, where other
users of the machine could read it.

    SLUICE_CONSOLE_TOKEN=... python console_flow.py --url http://127.0.0.1:7376 --sink orders \
        --message 22277016-0 --error "Message timed out" --failing-screenshot a.png --delivered-screenshot b.png
"""

import argparse
import json
import os
import re
import select
import sys

from playwright.sync_api import Error as PlaywrightError
from playwright.sync_api import expect, sync_playwright


class FlowFailure(Exception):
    """A step of the flow did not show what it should."""


def check(condition, message):
    if not condition:
        raise FlowFailure(message)


def arguments():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", required=True, help="the console, e.g. http://127.0.0.1:7376")
    parser.add_argument("--sink", required=True)
    parser.add_argument("--message", required=True, help="the failing message's id")
    parser.add_argument("--error", required=True, help="text its last error contains")
    parser.add_argument("--min-deliver-count", type=int, default=3)
    parser.add_argument("--failing-screenshot", required=True)
    parser.add_argument("--delivered-screenshot", required=True)
    parser.add_argument("--chromium", default=os.environ.get("SLUICE_CHROMIUM", "/usr/bin/chromium"))
    parser.add_argument("--timeout", type=float, default=30, help="seconds any one step may take")
    parser.add_argument("--wait-for-go", type=float, default=180, help="seconds to wait for the line on stdin")
    return parser.parse_args()


def screenshot_while_failing(page, path, timeout_ms):
    """The page refreshes itself every 2 s; make sure the picture shows the failing state."""
    badge = page.locator("#state")
    for _ in range(5):
        expect(badge).to_have_text("failing", timeout=timeout_ms)
        page.screenshot(path=path, full_page=True)
        if badge.inner_text().strip() == "failing":
            return
    raise FlowFailure("the message kept leaving the failing state while being photographed")


def run(options, token):
    ms = int(options.timeout * 1000)
    base = options.url.rstrip("/")
    sink, message_id = options.sink, options.message
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=options.chromium, args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"])
        try:
            context = browser.new_context(viewport={"width": 1280, "height": 860})
            page = context.new_page()
            page.set_default_timeout(ms)
            script_errors = []
            page.on("pageerror", lambda error: script_errors.append(str(error)))

            # Log in: the console sends a browser without a session to the login form.
            page.goto(base + "/")
            expect(page).to_have_url(base + "/login")
            page.fill("#token", token)
            page.click("form.login button[type=submit]")
            expect(page).to_have_url(base + "/")
            session = [cookie for cookie in context.cookies() if cookie["name"] == "sluice_session"]
            check(session and session[0]["httpOnly"] and session[0]["sameSite"] == "Strict",
                  f"the session cookie is not HttpOnly and SameSite=Strict: {session}")

            # The overview's card of the sink links to its page.
            card = page.locator(f'.card.sink[data-sink="{sink}"]')
            expect(card).to_be_visible()
            card.locator("a.title").click()
            expect(page).to_have_url(base + f"/sinks/{sink}")

            # The Failing tab lists the message with its deliver count and error.
            page.locator("nav.tabs a", has_text="Failing").click()
            expect(page).to_have_url(base + f"/sinks/{sink}?state=failing")
            row = page.locator(f'table.messages tr.row[data-id="{message_id}"]')
            expect(row).to_be_visible()
            count_text = row.locator("td.deliver-count").inner_text().strip()
            check(count_text.isdigit() and int(count_text) >= options.min_deliver_count,
                  f"deliver count in the row is {count_text!r}, expected at least {options.min_deliver_count}")
            expect(row.locator("td.error")).to_contain_text(options.error)

            # Clicking the row (not its link) opens the message.
            row.locator("td.deliver-count").click()
            expect(page).to_have_url(base + f"/sinks/{sink}/messages/{message_id}")
            expect(page.locator("#state")).to_have_text("failing")
            count_text = page.locator("#deliver-count").inner_text().strip()
            check(count_text.isdigit() and int(count_text) >= options.min_deliver_count,
                  f"#deliver-count is {count_text!r}, expected at least {options.min_deliver_count}")
            expect(page.locator("#last-error")).to_contain_text(options.error)
            try:
                value = json.loads(page.locator("#value").inner_text())
            except ValueError as error:
                raise FlowFailure(f"#value is not JSON: {error}")
            check(isinstance(value, dict) and isinstance(value.get("record"), dict),
                  f"#value is not a Sequin-shaped message: {value!r}")
            history = page.locator("ol.errors li")
            expect(history.first).to_contain_text(options.error)
            check(history.count() >= options.min_deliver_count,
                  f"the error history has {history.count()} entries, expected at least {options.min_deliver_count}")
            expect(page.get_by_role("button", name="Retry now")).to_be_visible()
            expect(page.get_by_role("button", name="Cancel message")).to_be_visible()
            screenshot_while_failing(page, options.failing_screenshot, ms)

            print("READY", flush=True)
            ready, _, _ = select.select([sys.stdin], [], [], options.wait_for_go)
            check(ready, f"no line on stdin within {options.wait_for_go:.0f} s")
            check(sys.stdin.readline() != "", "stdin closed before the go-ahead")

            # Retry now: the message is tried at once; the page follows it to delivered.
            page.get_by_role("button", name="Retry now").click()
            expect(page.locator(".notice")).to_contain_text("Retrying now")
            expect(page.locator("#state")).to_have_text("delivered")
            expect(page.locator("#offset")).to_have_text(re.compile(r"^\d+ / \d+$"))
            expect(page.get_by_role("button", name="Retry now")).to_have_count(0)
            page.screenshot(path=options.delivered_screenshot, full_page=True)
            check(not script_errors, f"the page's script failed: {script_errors}")
            print("DELIVERED", flush=True)
        finally:
            browser.close()


def main():
    options = arguments()
    token = os.environ.get("SLUICE_CONSOLE_TOKEN", "")
    if not token:
        print("console_flow: set SLUICE_CONSOLE_TOKEN to the console token", file=sys.stderr)
        return 2
    try:
        run(options, token)
    except FlowFailure as failure:
        print(f"console_flow: {failure}", file=sys.stderr, flush=True)
        return 1
    except (PlaywrightError, AssertionError) as error:
        # expect() raises AssertionError with what it saw; Playwright's own errors say which step timed out.
        print(f"console_flow: {type(error).__name__}: {error}", file=sys.stderr, flush=True)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
