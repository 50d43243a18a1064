"""The issue's Must-show list, in a real browser (Debian's chromium, headless) against the
real relay, the real gatewayd daemon, the emulated DL-B2 lock and SRB-433 smoke receiver, on a
real mosquitto; once on SQLite with one relay process, once on PostgreSQL with two (the
tenant's phone on one, the landlord's page on the other)."""

from __future__ import annotations

import json
import time

from selenium.webdriver.chromium.webdriver import ChromiumDriver
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver

from tests.harness import Gate
from tests.relay.world import (
    DETECTORS,
    DOOR,
    Browsers,
    World,
    attacker_site,
    bind_phone,
    click,
    login,
    open_staff_page,
    tap,
    until,
    wait_for,
)

PASS_SECONDS = 10


def add_tenant_on_page(page: WebDriver, name: str, handle: str, shown_before: str = "") -> str:
    """Add a tenant with the landlord's form; the invite link the page then shows."""
    form = wait_for(page, "form.add-tenant")
    form.find_element(By.NAME, "name").send_keys(name)
    form.find_element(By.NAME, "handle").send_keys(handle)
    form.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    wait_for(page, f"li[data-handle='{handle}']")

    def new_link() -> str | None:
        link = wait_for(page, ".invite-url").get_attribute("value")
        return link if link and link != shown_before else None

    return str(until(new_link, 10, f"{name}'s invite link"))


def live_state(page: WebDriver) -> str | None:
    """The page's own word for whether it follows live updates ("yes" / "no")."""
    return page.find_element(By.TAG_NAME, "body").get_attribute("data-live")


#: Before the page's own scripts: its requests to a URL containing ``window.__failing`` are
#: answered 503, as a relay restarting behind its proxy answers (the relay itself is real).
FAILING_FETCH = """(() => {
  const real = window.fetch.bind(window);
  window.__failing = %s;
  window.fetch = (url, opts) => (window.__failing && String(url).includes(window.__failing))
    ? Promise.resolve(new Response("{}", { status: 503 })) : real(url, opts);
})();"""


def fail_requests(driver: WebDriver, containing: str) -> None:
    """From the next page on, requests whose URL contains ``containing`` fail (503)."""
    assert isinstance(driver, ChromiumDriver)
    source = FAILING_FETCH % json.dumps(containing)
    driver.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument", {"source": source})


def mend_requests(driver: WebDriver) -> None:
    """This page's requests go through again."""
    driver.execute_script("window.__failing = '';")


def wait_logged(house: World, user: str) -> None:
    """Until the house's unlock log (the landlord's API) holds an unlock by ``user``."""
    until(
        lambda: any(
            r["user"] == user and r["type"] == "door.unlocked"
            for r in house.api("wang").get(f"/api/houses/{house.house_id}/log")
        ),
        10,
        "the unlock in the log",
    )


def phone_relay(house: World) -> str:
    return house.relays[-1].url  # the other process than the landlord's, when there are two


def test_tenant_tap_opens_the_door_in_their_name_and_the_landlord_sees_it(
    house: World, browsers: Browsers
) -> None:
    landlord, phone = browsers("landlord"), browsers("tenant")
    open_staff_page(landlord, house.relays[0].url, "wang")
    # The landlord adds a tenant on the page and gets the invite link (and its QR code).
    invite = add_tenant_on_page(landlord, "李伟", "li.wei")
    assert "/i/" in invite
    assert wait_for(landlord, ".invite img").get_attribute("src")

    bind_phone(phone, invite, phone_relay(house))
    before = len(house.unlocks())
    code, words = tap(phone, house.door_id)
    assert (code, words) == ("ok", "门已打开")
    # The lock itself accepted exactly one unlock (it verified the gateway's MAC).
    assert len(house.unlocks()) == before + 1
    event = house.probe.wait(
        f"{house.site.root}/events/{DOOR}",
        lambda e: e["type"] == "door.unlocked" and e["data"].get("user") == "li.wei",
        timeout=10,
    )
    assert event["data"]["method"] == "remote"
    # The landlord's open page shows it live: who (name and handle) and how.
    row = wait_for(landlord, "tr[data-type='door.unlocked'][data-user='li.wei']")
    assert "李伟" in row.text
    assert "手机" in row.text


def test_revoked_tenant_is_refused_and_nothing_reaches_the_lock(
    house: World, browsers: Browsers
) -> None:
    landlord, phone = browsers("landlord"), browsers("tenant")
    person, invite = house.tenant("赵敏", "zhao.min")
    open_staff_page(landlord, house.relays[0].url, "wang")
    bind_phone(phone, invite, phone_relay(house))
    assert tap(phone, house.door_id)[0] == "ok"
    unlocks = len(house.unlocks())
    sent = len(house.commands_from("zhao.min"))

    click(landlord, f"#person-{person} button.revoke")
    wait_for(landlord, f"#person-{person}.revoked")
    code, words = tap(phone, house.door_id)
    assert (code, words) == ("revoked", "您的开门权限已被收回")
    time.sleep(0.5)
    assert len(house.unlocks()) == unlocks
    assert len(house.commands_from("zhao.min")) == sent  # never even signed and sent
    # The landlord sees the attempt, live.
    row = wait_for(landlord, "tr[data-type='relay.refused'][data-user='zhao.min']")
    assert "已被收回" in row.text or "revoked" in row.text


def test_expired_visitor_pass_is_refused(house: World, browsers: Browsers) -> None:
    phone = browsers("visitor")
    # Ten seconds: binding a phone and one tap take several on a loaded machine (with two,
    # the pass expired before the phone page listed its door).
    out = house.api("wang").post(
        f"/api/houses/{house.house_id}/passes",
        {
            "name": "快递员",
            "door": house.door_id,
            "hours_valid": PASS_SECONDS / 3600,
            "max_opens": 3,
        },
    )
    bind_phone(phone, out["invite_url"], phone_relay(house))
    handle = out["person"]["handle"]
    assert tap(phone, house.door_id)[0] == "ok"  # within its ten seconds
    until(
        lambda: time.time() > out["person"]["grants"][0]["valid_until"] + 0.2,
        PASS_SECONDS + 1,
        "the pass to expire",
    )
    unlocks = len(house.unlocks())
    code, words = tap(phone, house.door_id)
    assert (code, words) == ("expired", "您的开门权限已过期")
    assert len(house.unlocks()) == unlocks
    assert len(house.commands_from(handle)) == 1


def test_fire_alarm_reaches_landlord_and_grid_worker_ack_recorded_unacked_escalates(
    house: World, browsers: Browsers
) -> None:
    landlord, grid = browsers("landlord"), browsers("grid")
    open_staff_page(landlord, house.relays[0].url, "wang")
    open_staff_page(grid, phone_relay(house), "li")
    det = house.receiver.rx.detector(DETECTORS["smoke-301"])
    house.receiver.call(det.alarm(150))
    smoke = "article.incident[data-type='smoke.alarm']"
    fire = "article.incident[data-type='gateway.fire_mode']"
    for page in (landlord, grid):
        wait_for(page, smoke, timeout=10)
        wait_for(page, fire, timeout=10)
    # Both were pushed at once (level 0) to the landlord and the village's grid worker.
    first = until(
        lambda: (
            {(n["username"], n["type"]) for n in house.notifications() if n["level"] == 0}
            >= {("wang", "smoke.alarm"), ("li", "smoke.alarm")}
        ),
        10,
        "the first pushes",
    )
    assert first
    # The landlord says "I'm on it" for the smoke alarm; the grid worker's page shows it.
    click(landlord, f"{smoke} button.ack")
    wait_for(grid, f"{smoke}[data-acked-by='wang']")
    acked = house.probe.wait(
        f"{house.site.root}/alarms",
        lambda b: any(
            a["type"] == "smoke.alarm" and a.get("acked_by") == "wang" for a in b["active"]
        ),
        timeout=10,
    )
    assert acked  # the gateway was told too, signed as the landlord
    # Nobody acknowledged fire mode: after 3 s it goes to the village head (rank 1), once.
    until(
        lambda: any(
            n["username"] == "zhang" and n["type"] == "gateway.fire_mode"
            for n in house.notifications()
        ),
        15,
        "the escalation",
    )
    wait_for(grid, f"{fire}[data-level='1']")
    escalations = [n for n in house.notifications() if n["level"] == 1]
    assert {(n["username"], n["type"]) for n in escalations} == {("zhang", "gateway.fire_mode")}
    assert len(escalations) == 1  # exactly once, however many relay processes
    # Closing it records who, when and a note.
    note = wait_for(landlord, f"{smoke} input.note")
    note.send_keys("误报：厨房油烟，已通风")
    click(landlord, f"{smoke} button.close")
    closed = wait_for(grid, f"{smoke}.closed")
    assert "误报" in closed.text
    house.receiver.call(det.clear())


def test_cross_site_request_is_refused(house: World, browsers: Browsers) -> None:
    phone = browsers("victim")
    relay = house.relays[0].url  # http://127.0.0.1:<port>
    _, invite = house.tenant("钱多", "qian.duo")
    bind_phone(phone, invite, relay)
    unlocks = len(house.unlocks())
    form = (
        f'<form method="post" action="{relay}/api/phone/doors/{house.door_id}/open"></form>'
        "<script>document.forms[0].submit()</script>"
    )
    # localhost: another site (the SameSite cookie is not even sent); 127.0.0.1 on another
    # port: the same site but another origin (the cookie is sent; the relay refuses).
    for host, status in (("localhost", "login"), ("127.0.0.1", "forbidden_page")):
        with attacker_site(host, form) as evil:
            phone.get(evil)
            until(lambda: phone.current_url.startswith(relay), 10, "the forged post")
            answer = phone.find_element(By.TAG_NAME, "body").text
            assert f'"error":"{status}"' in answer.replace(" ", "")
    # A script on the other origin cannot read the CSRF token either: fetch with the cookie.
    with attacker_site("127.0.0.1", "<p>hi</p>") as evil:
        phone.get(evil)
        status = phone.execute_async_script(
            "const done = arguments[0];"
            f"fetch('{relay}/api/phone/doors/{house.door_id}/open', "
            "{method: 'POST', mode: 'no-cors', credentials: 'include'}).then(() => done('sent'), e => done(String(e)));"
        )
        assert status == "sent"
    time.sleep(0.5)
    assert len(house.unlocks()) == unlocks
    assert house.commands_from("qian.duo") == []
    # The phone itself, on the relay's own page, still opens the door.
    phone.get(f"{relay}/phone")
    assert tap(phone, house.door_id)[0] == "ok"


def test_each_tenant_added_on_the_page_gets_their_own_invite_link(
    house: World, browsers: Browsers
) -> None:
    """The page re-renders the house after each new tenant: the next tenant's link must be
    the one shown, never the previous tenant's (a phone bound with it would be theirs)."""
    landlord, newcomer = browsers("landlord"), browsers("newcomer")
    open_staff_page(landlord, house.relays[0].url, "wang")
    first = add_tenant_on_page(landlord, "周杰", "zhou.jie")
    second = add_tenant_on_page(landlord, "吴芳", "wu.fang", shown_before=first)
    newcomer.get(second)
    assert wait_for(newcomer, ".card .who").text == "吴芳"


def test_the_landlords_page_catches_up_with_an_unlock_made_while_it_was_cut_off(
    house: World, browsers: Browsers
) -> None:
    """The landlord's phone loses its connection (wifi to 4G) while the tenant comes home:
    the page, back online, shows the unlock it could not be sent live."""
    landlord, phone = browsers("landlord-roaming"), browsers("tenant-late")
    _, invite = house.tenant("孙丽", "sun.li")
    network = Gate(house.relays[0].port)  # the landlord's way to the relay
    network.open()
    try:
        open_staff_page(landlord, f"http://127.0.0.1:{network.port}", "wang")
        bind_phone(phone, invite, phone_relay(house))
        network.cut()
        until(lambda: live_state(landlord) == "no", 10, "the page to lose its stream")
        assert tap(phone, house.door_id)[0] == "ok"
        wait_logged(house, "sun.li")
        assert not landlord.find_elements(By.CSS_SELECTOR, "tr[data-user='sun.li']")
        network.mend()
        row = wait_for(landlord, "tr[data-type='door.unlocked'][data-user='sun.li']", 15)
        assert "孙丽" in row.text
        until(lambda: live_state(landlord) == "yes", 10, "the page to be live again")
    finally:
        network.close()


def test_a_phone_whose_door_list_failed_says_so_and_loads_it_again(
    house: World, browsers: Browsers
) -> None:
    """The phone's list of doors meets a failed request: the tenant must not read "no doors"
    (someone is at the door), and the doors come without reloading the page."""
    phone = browsers("tenant-blip")
    _, invite = house.tenant("郑洁", "zheng.jie")
    fail_requests(phone, "/api/phone/doors")
    phone.get(phone_relay(house) + invite[invite.index("/i/") :])
    wait_for(phone, "#bind").click()
    wait_for(phone, "#doors .load-failed")
    assert not phone.find_elements(By.CSS_SELECTOR, "#doors .empty")
    mend_requests(phone)
    assert tap(phone, house.door_id)[0] == "ok"


def test_the_landlords_page_is_live_only_once_its_unlock_log_has_loaded(
    house: World, browsers: Browsers
) -> None:
    """The page's unlock log meets a failed request while the rest loads: the page must not
    say it is live over an empty log; it loads the log again by itself."""
    landlord, phone = browsers("landlord-blip"), browsers("tenant-blip2")
    _, invite = house.tenant("冯刚", "feng.gang")
    bind_phone(phone, invite, phone_relay(house))
    assert tap(phone, house.door_id)[0] == "ok"
    wait_logged(house, "feng.gang")
    fail_requests(landlord, "/log?")
    login(landlord, house.relays[0].url, "wang")
    wait_for(landlord, "section.house")  # the house is shown; its log could not be loaded
    assert live_state(landlord) != "yes"
    mend_requests(landlord)
    row = wait_for(landlord, "tr[data-type='door.unlocked'][data-user='feng.gang']", 15)
    assert "冯刚" in row.text
    until(lambda: live_state(landlord) == "yes", 10, "the page to be live")


# Last in this module: it leaves 127.0.0.1 locked out of logging in for 15 minutes.
def test_login_brute_force_is_rate_limited(house: World, browsers: Browsers) -> None:
    page = browsers("attacker")
    page.get(f"{house.relays[0].url}/login")
    for i in range(6):
        page.delete_all_cookies()
        page.get(f"{house.relays[-1 if i % 2 else 0].url}/login")
        wait_for(page, "#login input[name=username]").send_keys("li")
        page.find_element(By.CSS_SELECTOR, "#login input[name=password]").send_keys(f"guess-{i}")
        page.find_element(By.CSS_SELECTOR, "#login button[type=submit]").click()
        wait_for(page, "#login-error", text="")
        until(lambda: page.find_element(By.ID, "login-error").text, 5, "the answer")
    assert page.find_element(By.ID, "login-error").text == "尝试次数过多，请稍后再试"
    # Even the right password is refused for now, from any process.
    page.delete_all_cookies()
    page.get(f"{house.relays[0].url}/login")
    wait_for(page, "#login input[name=username]").send_keys("li")
    page.find_element(By.CSS_SELECTOR, "#login input[name=password]").send_keys("correct-horse-9")
    page.find_element(By.CSS_SELECTOR, "#login button[type=submit]").click()
    until(
        lambda: page.find_element(By.ID, "login-error").text == "尝试次数过多，请稍后再试",
        5,
        "the refusal",
    )
    assert page.current_url.endswith("/login")
