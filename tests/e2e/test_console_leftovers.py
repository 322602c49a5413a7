"""The console's nested highlights, UTC usage days and chart labels at phone width."""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Any

import pytest

from tests.e2e.conftest import Console, Server, serve_console

pytestmark = pytest.mark.slow

Make = Callable[..., Console]

# ---------------------------------------------------------------------------------------------
# A server for the nested `medical` model (browser time zones and clocks: console_factory).


@pytest.fixture(scope="module")
def medical_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with serve_console(tmp_path_factory.mktemp("e2e-medical"), "medical") as running:
        yield running


# ---------------------------------------------------------------------------------------------
# 1. Nested and overlapping entities: every one is highlighted, the text is unchanged.

HIGHLIGHTS_JS = """() => [...document.querySelectorAll('#pg-output .result')].map((result) => {
  const hl = result.querySelector('.hl');
  const key = (m) => `${m.dataset.start}:${m.dataset.end}:${m.dataset.label}`;
  return {
    text: hl.textContent,
    marks: [...hl.querySelectorAll('mark')].map((m) => {
      const box = m.getBoundingClientRect();
      const outer = [];
      for (let up = m.parentElement.closest('mark'); up; up = up.parentElement.closest('mark')) {
        outer.push(key(up));
      }
      return {
        key: key(m), text: m.textContent, part: m.dataset.part ?? null, outer,
        visible: box.width > 0 && box.height > 0,
      };
    }),
  };
})"""


def _key(entity: dict[str, Any]) -> str:
    return f"{entity['start']}:{entity['end']}:{entity['label']}"


def _check_highlights(page: Any, texts: list[str], answer: dict[str, Any]) -> None:
    """Every entity of the answer is highlighted (whole, or in parts that join up to it), the
    highlighted text is the input exactly, and a span inside another is a mark inside its mark."""
    shown = page.evaluate(HIGHLIGHTS_JS)
    assert len(shown) == len(texts) == len(answer["results"])
    for text, result, drawn in zip(texts, answer["results"], shown, strict=True):
        assert drawn["text"] == text  # no character dropped, repeated or moved
        entities = result["entities"]
        marks: dict[str, list[dict[str, Any]]] = {}
        for mark in drawn["marks"]:
            assert mark["visible"], mark
            marks.setdefault(mark["key"], []).append(mark)
        assert set(marks) == {_key(e) for e in entities}, (marks, entities)
        for entity in entities:
            parts = marks[_key(entity)]
            # Offsets are Python (code point) indices: text[start:end] is the entity's text.
            assert "".join(p["text"] for p in parts) == text[entity["start"] : entity["end"]]
            if len(parts) > 1:
                assert [p["part"] for p in parts] == [
                    f"{k}/{len(parts)}" for k in range(1, 1 + len(parts))
                ]
        for inner in entities:
            for outer in entities:
                if inner is outer or len(marks[_key(inner)]) + len(marks[_key(outer)]) > 2:
                    continue
                if outer["start"] <= inner["start"] and inner["end"] <= outer["end"]:
                    (a,) = marks[_key(inner)]
                    (b,) = marks[_key(outer)]
                    assert _key(outer) in a["outer"] or _key(inner) in b["outer"], (inner, outer)
    rows = page.locator("#pg-entities tbody tr").count()
    assert rows == sum(len(r["entities"]) for r in answer["results"])


def _entity(text: str, start: int, end: int, label: str, name: str) -> dict[str, Any]:
    return {
        "text": text[start:end],
        "label": label,
        "label_name": name,
        "start": start,
        "end": end,
        "score": 0.9,
    }


def test_nested_and_overlapping_entities_are_all_highlighted(
    server: Server, console_factory: Make, shoot: Callable[..., Any]
) -> None:
    # The served `general` model never overlaps its entities, so its answer is given the kinds
    # of overlap a nested model (`medical`) can return, one per line, starting after a character
    # outside the BMP (two UTF-16 units, one Python index).
    texts = ["𠮷患者腹部疼痛伴恶心呕吐，头痛。", "右下腹压痛明显。"]
    first, second = texts
    overlapping = [
        [
            _entity(first, 3, 7, "sym", "临床表现"),  # 腹部疼痛
            _entity(first, 3, 5, "bod", "身体部位"),  # 腹部: inside it, same start
            _entity(first, 6, 7, "bod", "身体部位"),  # 痛: inside it, same end
            _entity(first, 8, 12, "sym", "临床表现"),  # 恶心呕吐
            _entity(first, 8, 10, "sym", "临床表现"),  # 恶心: inside it
            _entity(first, 9, 11, "dis", "疾病"),  # 心呕: crosses the end of 恶心
            _entity(first, 13, 15, "sym", "临床表现"),  # 头痛
            _entity(first, 13, 15, "dis", "疾病"),  # 头痛 again, another type
        ],
        [
            _entity(second, 0, 5, "sym", "临床表现"),  # 右下腹压痛
            _entity(second, 0, 3, "bod", "身体部位"),  # 右下腹
            _entity(second, 2, 4, "dis", "疾病"),  # 腹压: crosses the end of 右下腹
        ],
    ]

    def nested(route: Any) -> None:
        response = route.fetch()
        answer = response.json()
        for result, entities in zip(answer["results"], overlapping, strict=True):
            result["entities"] = entities
        route.fulfill(response=response, json=answer)

    key = server.tenant("nested-e2e")
    console = console_factory()
    page = console.page
    console.login(key)
    page.route("**/v1/models/general/predict", nested)
    page.select_option("#pg-model", "general")
    page.fill("#pg-text", "\n".join(texts))
    page.click("#pg-run")
    page.wait_for_selector("#pg-run:not([disabled])")
    page.wait_for_selector("#pg-summary")
    answer = {"results": [{"entities": entities} for entities in overlapping]}
    _check_highlights(page, texts, answer)
    # The partial overlaps are drawn in parts; the nestings are not.
    assert page.locator("#pg-output mark[data-part]").count() >= 2
    assert page.locator("#pg-output mark[data-start='3'][data-end='5'] mark").count() == 0
    assert page.locator("#pg-output mark[data-start='3'][data-end='7'] mark").count() == 2
    shoot(page, "playground-nested")


# CMeEE-style sentences: symptoms that name a body part, diseases that name an organ.
MEDICAL_TEXTS = [
    "患者出现腹部疼痛，伴有恶心呕吐。",
    "右下腹压痛明显，考虑急性阑尾炎。",
    "患儿咳嗽伴发热三天，双肺呼吸音粗。",
    "左膝关节肿胀疼痛，活动受限。",
]


def test_the_medical_models_nested_entities_are_all_highlighted(
    medical_server: Server, console_factory: Make
) -> None:
    key = medical_server.tenant("medical-e2e")
    answer = medical_server.api(
        "POST", "/v1/models/medical/predict", key, json={"texts": MEDICAL_TEXTS}
    ).json()
    nested = [
        (outer["text"], inner["text"])
        for result in answer["results"]
        for outer in result["entities"]
        for inner in result["entities"]
        if inner is not outer and outer["start"] <= inner["start"] and inner["end"] <= outer["end"]
    ]
    assert nested, f"the medical model nested nothing in these texts: {answer['results']}"
    console = console_factory(on=medical_server)
    page = console.page
    console.login(key)
    page.select_option("#pg-model", "medical")
    page.fill("#pg-text", "\n".join(MEDICAL_TEXTS))
    page.click("#pg-run")
    page.wait_for_selector("#pg-run:not([disabled])")
    page.wait_for_selector("#pg-summary")
    _check_highlights(page, MEDICAL_TEXTS, answer)


# ---------------------------------------------------------------------------------------------
# 2. Usage days are the server's UTC days, whatever the browser's time zone or clock.


def _server_today(server: Server, key: str) -> date:
    """The server's UTC day, from the Date header of its usage answer."""
    response = server.api("GET", "/v1/usage?days=1", key)
    assert response.status_code == 200, response.text
    return parsedate_to_datetime(response.headers["date"]).astimezone(UTC).date()


def _usage_with_calls(server: Server, name: str, calls: int) -> str:
    key = server.tenant(name)
    for _ in range(calls):
        done = server.api("POST", "/v1/models/general/predict", key, json={"text": "张三在北京。"})
        assert done.status_code == 200, done.text
    deadline = time.monotonic() + 15
    while True:  # the audit writer flushes every 0.5 s
        usage = server.api("GET", "/v1/usage", key)
        if usage.status_code == 200 and sum(r["calls"] for r in usage.json()["rows"]) >= calls:
            return key
        assert time.monotonic() < deadline, "the audit writer never recorded the calls"
        time.sleep(0.5)


def _shown_days(page: Any) -> dict[str, Any]:
    page.locator("[data-chart=calls] svg").wait_for()
    page.wait_for_selector("#us-refresh:not([disabled])")
    return page.evaluate(
        """() => {
          const chart = document.querySelector('[data-chart=calls]');
          return {
            days: [...chart.querySelectorAll('details tbody tr td:first-child')]
              .map((td) => td.textContent),
            bars: [...new Set([...chart.querySelectorAll('rect.bar')].map((r) => r.dataset.day))],
            total: Number(chart.dataset.total),
            labels: [...chart.querySelectorAll('svg text')]
              .filter((t) => t.getBoundingClientRect().width > 0)
              .map((t) => t.textContent),
            local: new Date().toLocaleDateString('en-CA'),
          };
        }"""
    )


def _window(today: date, days: int) -> list[str]:
    return [(today - timedelta(days=days - 1 - i)).isoformat() for i in range(days)]


def test_usage_days_are_utc_days_in_any_time_zone(server: Server, console_factory: Make) -> None:
    key = _usage_with_calls(server, "utc-days-e2e", 2)
    local_days = set()
    for zone in ("Pacific/Kiritimati", "Pacific/Pago_Pago"):  # UTC+14 and UTC-11
        console = console_factory(timezone_id=zone)
        today = _server_today(server, key)
        console.login(key, "usage")
        shown = _shown_days(console.page)
        if today != _server_today(server, key):
            pytest.skip("the UTC day changed during the test")
        assert shown["days"] == _window(today, 7), zone
        assert shown["bars"] == [today.isoformat()], zone
        assert shown["total"] == 2, zone
        assert today.isoformat()[5:] in shown["labels"], zone
        local_days.add(shown["local"])
    # +14 and -11 hours are 25 hours apart: at any time one of them is on another day than UTC.
    assert local_days != {today.isoformat()}


def test_usage_window_follows_the_servers_clock_not_the_browsers(
    server: Server, console_factory: Make
) -> None:
    key = _usage_with_calls(server, "skewed-clock-e2e", 1)
    now = datetime.now(UTC)
    for skew in (timedelta(days=2, hours=3), timedelta(days=-8)):
        console = console_factory(timezone_id="Asia/Shanghai", clock=now + skew)
        today = _server_today(server, key)
        console.login(key, "usage")
        shown = _shown_days(console.page)
        assert shown["local"] != today.isoformat()  # the browser's clock is days off
        assert shown["days"] == _window(today, 7), skew
        assert shown["bars"] == [today.isoformat()], skew
        assert shown["total"] == 1, skew


# ---------------------------------------------------------------------------------------------
# 3. Chart labels at phone width: none overlaps another or leaves the chart, all readable.

# One evaluation finds and measures the charts: a redraw between the two would detach them.
LABELS_JS = """(selector) => [...document.querySelectorAll(selector)].map((figure) => {
  const box = (el) => {
    const r = el.getBoundingClientRect();
    return { left: r.left, right: r.right, top: r.top, bottom: r.bottom };
  };
  return {
    chart: figure.dataset.chart,
    svg: box(figure.querySelector('svg')),
    // The labels drawn: a label of the set the container query hides has no box.
    labels: [...figure.querySelectorAll('svg text')]
      .map((t) => ({ text: t.textContent, ...box(t) }))
      .filter((b) => b.right > b.left && b.bottom > b.top),
  };
})"""


def _check_labels(page: Any, selector: str, width: int) -> list[dict[str, Any]]:
    charts = page.evaluate(LABELS_JS, selector)
    assert charts
    slack = 0.5
    for chart in charts:
        svg, labels = chart["svg"], chart["labels"]
        assert len(labels) >= 4, chart
        for label in labels:
            where = (chart["chart"], label)
            assert (
                label["left"] >= svg["left"] - slack and label["right"] <= svg["right"] + slack
            ), where
            assert (
                label["top"] >= svg["top"] - slack and label["bottom"] <= svg["bottom"] + slack
            ), where
            assert label["left"] >= 0 and label["right"] <= width, where
            # A line box of 15 px or more: text of about 11 px or more.
            assert label["bottom"] - label["top"] >= 15, where
        for i, a in enumerate(labels):
            for b in labels[i + 1 :]:
                apart = (
                    a["right"] <= b["left"] + slack
                    or b["right"] <= a["left"] + slack
                    or a["bottom"] <= b["top"] + slack
                    or b["bottom"] <= a["top"] + slack
                )
                assert apart, (chart["chart"], a, b)
    return charts


def test_chart_labels_fit_a_phone_screen(
    server: Server, console_factory: Make, shoot: Callable[..., Any]
) -> None:
    def busy(route: Any) -> None:
        # Every day of the window has calls, with counts large enough for wide value labels.
        response = route.fetch()
        usage = response.json()
        today = parsedate_to_datetime(response.headers["date"]).astimezone(UTC).date()
        usage["rows"] = [
            {
                "day": day,
                "tenant_id": "t",
                "model": model,
                "calls": 900 + 37 * i + 11 * m,
                "texts": 1000 + 37 * i,
                "chars": 60_000 + 1_500 * i + 700 * m,
                "errors": 0,
                "error_statuses": {},
            }
            for i, day in enumerate(_window(today, usage["days"]))
            for m, model in enumerate(("general", "medical"))
        ]
        route.fulfill(response=response, json=usage)

    key = server.tenant("phone-chart-e2e")
    for locale in ("en-US", "zh-CN"):
        console = console_factory(locale=locale, width=360, height=740)
        page = console.page
        page.route(re.compile(r"/v1/usage\?"), busy)
        console.login(key, "usage")
        for days in ("7", "14", "30"):
            page.select_option("#us-days", days)  # Refresh is disabled until it is drawn
            page.wait_for_selector("#us-refresh:not([disabled])")
            page.wait_for_function(
                "(n) => document.querySelectorAll('[data-chart=chars] details tbody tr').length"
                " === n && document.querySelector('[data-chart=chars]').dataset.total > 0",
                arg=int(days),
            )
            _check_labels(page, "[data-chart]", 360)
        overflow = page.evaluate(
            "document.documentElement.scrollWidth - document.documentElement.clientWidth"
        )
        assert overflow <= 0
        if locale == "en-US":
            shoot(page, "usage-phone")

    console = console_factory(width=360, height=740)
    console.login(server.admin_key, "admin")
    console.page.locator("[data-chart=tenants] svg").wait_for()
    _check_labels(console.page, "[data-chart=tenants]", 360)
