"""The JSON Schemas in `schemas/` are the models of `spine.wire`, and what the publisher sends fits them."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

from core.models import Trigger, TriggerKind
from core.schedule import Phase
from core.settings import SessionSettings
from kis.ws_codec import decode
from messages.market import OrderBooksReceived, ProgramTradesReceived
from messages.schedule import PhaseChanged
from runtime.clock import KST
from spine import schemas, wire
from spine.convert import facts_of
from spine.subjects import Subjects, token

AT = datetime(2024, 3, 4, 9, 30, tzinfo=KST)
SESSIONS = SessionSettings()


def test_the_schema_files_equal_the_models() -> None:
    assert schemas.differences() == [], "run `python -m spine.schemas` and commit schemas/"


def test_every_public_type_has_one_schema_naming_its_subject() -> None:
    files = sorted(path.name for path in schemas.SCHEMA_DIR.glob("*.json"))
    controls = [f"control_{model.command}.json" for model in wire.CONTROL_REQUESTS] + ["control_reply.json"]
    assert files == sorted([f"{wire.type_name(model)}.json" for model in wire.FACT_TYPES] + controls)
    tick = json.loads((schemas.SCHEMA_DIR / "tick.json").read_text(encoding="utf-8"))
    assert tick["x-subject"] == "observer.<instance>.tick.<symbol>"
    assert {"type", "version", "symbol", "venue", "exchange_time", "received_at", "price", "volume",
            "cum_volume", "source"} <= set(tick["required"])


def test_a_changed_model_is_caught(tmp_path: Path) -> None:
    schemas.write(tmp_path)
    (tmp_path / "tick.json").write_text("{}", encoding="utf-8")
    (tmp_path / "retired.json").write_text("{}", encoding="utf-8")
    assert schemas.differences(tmp_path) == ["retired.json: no longer a message type",
                                             "tick.json: differs from spine.wire"]


def test_domain_messages_become_typed_messages_on_their_subjects() -> None:
    subjects = Subjects("main")
    trigger = Trigger(symbol="005930", kind=TriggerKind.VOLUME_SURGE, strength=0.5, value=3.2, threshold=3.0,
                      detected_at=AT, expires_at=None)
    phase = PhaseChanged.model_validate({"at": AT, "phase": Phase.FULL_OPERATION,
                                         "previous": Phase.TRACK_A_ONLY})
    (fired,) = facts_of(trigger, SESSIONS)
    (changed,) = facts_of(phase, SESSIONS)
    assert subjects.of(fired.subject_pattern, **fired.subject_keys()) == "observer.main.trigger.005930"
    assert subjects.of(changed.subject_pattern, **changed.subject_keys()) == "observer.main.phase"
    sent = json.loads(changed.model_dump_json())
    assert list(sent)[:2] == ["type", "version"] and sent["phase"] == "full_operation"
    assert wire.parse(changed.model_dump_json()) == changed


def test_a_key_never_addresses_another_subject() -> None:
    assert token("A.B*>C D") == "A_B__C_D"
    assert Subjects("main").ticks("x.>") == "observer.main.tick.x__"


def test_the_spine_page_lists_every_subject() -> None:
    page = (schemas.SCHEMA_DIR.parent / "docs" / "spine.md").read_text(encoding="utf-8")
    missing = [schemas.subject_of(model) for model in wire.FACT_TYPES if f"`{schemas.subject_of(model)}`"
               not in page]
    assert not missing


def test_order_books_and_program_trading_go_out_on_their_symbols_subjects() -> None:
    book_record = "^".join(["005930", "093001", "0", *map(str, range(70_100, 71_100, 100)),
                            *map(str, range(70_000, 69_000, -100)), *["10"] * 20, "100", "100",
                            *["0"] * 8, "5000", *["0"] * 5])
    (book,) = decode(f"0|H0UNASP0|001|{book_record}").books
    program_record = "005930^093001^1200^75240000^1500^94050000^300^18810000^420^610^190"
    (trade,) = decode(f"0|H0UNPGM0|001|{program_record}").trades
    received = AT.replace(second=2)
    (book_fact,) = facts_of(OrderBooksReceived(at=received, account="sim1", tr_id="H0UNASP0", books=(book,)),
                            SESSIONS)
    (program_fact,) = facts_of(ProgramTradesReceived(at=received, account="sim1", tr_id="H0UNPGM0",
                                                     trades=(trade,)), SESSIONS)
    subjects = Subjects("main")
    assert subjects.of(book_fact.subject_pattern, **book_fact.subject_keys()) == "observer.main.book.005930"
    program_subject = subjects.of(program_fact.subject_pattern, **program_fact.subject_keys())
    assert program_subject == "observer.main.program.005930"
    assert book_fact.exchange_time == AT.replace(minute=30, second=1) and book_fact.asks[0] == 70_100
    assert (book_fact.cum_volume, book_fact.total_bid_size) == (5000, 100)
    assert (program_fact.net_volume, program_fact.net_value) == (300, 18_810_000)
    assert wire.parse(book_fact.model_dump_json()) == book_fact
    assert wire.parse(program_fact.model_dump_json()) == program_fact


def test_the_control_requests_are_what_the_api_takes_and_name_their_subjects() -> None:
    pin = json.loads((schemas.SCHEMA_DIR / "control_pin.json").read_text(encoding="utf-8"))
    assert pin["x-subject"] == "observer.<instance>.control.pin" and pin["required"] == ["symbol"]
    bodies = {
        "pin": {"symbol": "005930", "who": "alice"},
        "unpin": {"symbol": "005930"},
        "trigger": {"symbol": "005930", "ttl_seconds": 600},
        "picks": {"picks": ["005930", {"symbol": "000660", "score": 0.8}], "when": "scheduled"},
        "scan": {},
        "trackb": {"paused": True},
    }
    for model in wire.CONTROL_REQUESTS:
        model.model_validate(bodies[model.command])
    reply = wire.ControlReply(ok=False, command="pin", status=422, error="999999 is not in today's universe",
                              at=AT)
    assert list(json.loads(reply.model_dump_json()))[:2] == ["type", "version"]
