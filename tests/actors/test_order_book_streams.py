"""A held position streams its order book and program trading beside its ticks, recorded in its day folder,
while the key's registrations stay within 41: the slot manager, the connection and the recorder against the
simulator, with the default choices (held positions and the top 3 slots get both)."""

from __future__ import annotations

from actors.slot_manager import SlotManagerActor
from core.models import Candidate, TriggerKind
from kis.models import Holding
from messages.market import HoldingsLoaded
from messages.selection import CandidatesRanked, ContextSynced
from runtime.jsonl import read_jsonl
from tests.actors.data_plane_support import WAIT, DataPlane, wait_until

STREAMS_WAIT = 2 * WAIT


def holding(symbol: str) -> Holding:
    return Holding(symbol=symbol, name="held", quantity=10, orderable_quantity=10, avg_price=50_000.0,
                   purchase_amount=500_000, price=50_000, eval_amount=500_000, profit_loss=0,
                   profit_loss_rate=0.0)


def test_a_held_symbol_streams_its_book_and_program_within_41_registrations(tmp_path, kis_sim) -> None:
    plane = DataPlane(tmp_path, kis_sim)
    plane.peers("triggers", "gaps", "notifier", "minute_jobs")
    plane.start_recorder()
    plane.directory.register("slots", SlotManagerActor.start("slots", plane.directory, plane.context))
    plane.barrier("slots")
    plane.start_ws()
    now = kis_sim.clock.now()
    held, *others = plane.symbols(46)
    plane.tell("slots", HoldingsLoaded(at=now, account="acct1", holdings=(holding(held),)))
    plane.tell("slots", ContextSynced(at=now, movers=()))
    ranked = tuple(Candidate(symbol=symbol, score=100.0 - rank, market_cap=1e11,
                             trigger=TriggerKind.VOLUME_SURGE, strength=0.5, detected_at=now)
                   for rank, symbol in enumerate(others))
    plane.tell("slots", CandidatesRanked(at=now, candidates=ranked))

    seen: list[int] = []

    def settled() -> bool:
        """Every registration confirmed, the extras on the held symbol and the top 3 (the slot manager may
        pass through other targets while the candidates arrive)."""
        status = plane.status()
        seen.append(status.registrations)
        extras = {held, *others[:3]}
        return (not status.pending and len(status.confirmed) == 33
                and set(status.order_books) == set(status.program_trading) == extras)

    assert wait_until(settled, STREAMS_WAIT), plane.status()
    status = plane.status()
    # 41 = 33 trade slots + books and program trading for the held symbol and the top 3 candidates.
    assert max(seen) <= 41 and status.registrations == 41 and status.refused == ()
    assert set(status.order_books) == set(status.program_trading) == {held, *others[:3]}
    assert held in status.confirmed and set(others[:32]) == set(status.confirmed) - {held}
    gauges = plane.metrics.snapshot()
    assert [gauges[f"registrations_{kind}.acct1"] for kind in ("trades", "books", "program")] == [33, 4, 4]

    day = kis_sim.clock.now().date()
    book_file = plane.context.paths.book_file("acct1", "KRX", day, held)
    program_file = plane.context.paths.program_file("acct1", "KRX", day, held)
    assert book_file.parent == plane.context.paths.tick_file("acct1", "KRX", day, held).parent
    files = (book_file, program_file)
    assert wait_until(lambda: all(path.is_file() and read_jsonl(path).records for path in files),
                      STREAMS_WAIT)
    (book, *_) = read_jsonl(book_file).records
    assert book["symbol"] == held and book["tr_id"] == "H0UNASP0" and len(book["asks"]) == 10
    assert book["bids"][0] < book["asks"][0] and book["total_ask_size"] == sum(book["ask_sizes"])
    (program, *_) = read_jsonl(program_file).records
    assert program["symbol"] == held and program["tr_id"] == "H0UNPGM0"
    assert program["net_volume"] == program["buy_volume"] - program["sell_volume"]
