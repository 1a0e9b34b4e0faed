"""SubscriptionBook: target diffing, acks, refusals, replay after reconnect (against a small model server)."""

from __future__ import annotations

from collections import deque

from hypothesis import given, settings
from hypothesis import strategies as st

from core.subscriptions import (
    AckCode,
    Action,
    Command,
    Registration,
    SubscriptionBook,
    SubState,
    is_session_refusal,
)

TRADE = "H0STCNT0"


def regs(*symbols: str) -> list[Registration]:
    return [Registration(TRADE, symbol) for symbol in symbols]


def subscribes(commands: tuple[Command, ...]) -> list[str]:
    return [c.registration.tr_key for c in commands if c.action is Action.SUBSCRIBE]


def unsubscribes(commands: tuple[Command, ...]) -> list[str]:
    return [c.registration.tr_key for c in commands if c.action is Action.UNSUBSCRIBE]


class ModelServer:
    """KIS's registration rules: a capacity per session, ALREADY IN SUBSCRIBE, not-found unsubscribes."""

    def __init__(self, capacity: int = 41) -> None:
        self.capacity = capacity
        self.registered: set[Registration] = set()
        self.inbox: deque[Command] = deque()

    def answer(self, command: Command) -> tuple[str, str, str]:
        reg = command.registration
        if command.action is Action.SUBSCRIBE:
            if reg in self.registered:
                code = AckCode.ALREADY_SUBSCRIBED
            elif len(self.registered) >= self.capacity:
                code = AckCode.MAX_SUBSCRIBE_OVER
            else:
                self.registered.add(reg)
                code = AckCode.SUBSCRIBE_SUCCESS
        elif reg in self.registered:
            self.registered.discard(reg)
            code = AckCode.UNSUBSCRIBE_SUCCESS
        else:
            code = AckCode.UNSUBSCRIBE_NOT_FOUND
        return reg.tr_id, reg.tr_key, code.value


def run_until_quiet(book: SubscriptionBook, server: ModelServer, commands: tuple[Command, ...]) -> list:
    """Deliver commands in order and feed every answer back; returns the refusals seen."""
    refusals = []
    server.inbox.extend(commands)
    while server.inbox:
        result = book.on_ack(*server.answer(server.inbox.popleft()))
        server.inbox.extend(result.commands)
        if result.refusal is not None:
            refusals.append(result.refusal)
    return refusals


def test_nothing_is_sent_while_disconnected_and_everything_on_connect() -> None:
    book = SubscriptionBook()
    assert book.set_target(regs("005930", "000660")) == ()
    commands = book.on_connected()
    assert subscribes(commands) == ["005930", "000660"]
    assert book.state(Registration(TRADE, "005930")) is SubState.PENDING_SUBSCRIBE


def test_acks_confirm_and_target_changes_diff() -> None:
    book, server = SubscriptionBook(), ModelServer()
    book.set_target(regs("A00001", "A00002"))
    run_until_quiet(book, server, book.on_connected())
    assert set(book.confirmed()) == set(regs("A00001", "A00002"))
    commands = book.set_target(regs("A00002", "A00003"))
    assert subscribes(commands) == ["A00003"]
    assert unsubscribes(commands) == ["A00001"]
    assert book.state(Registration(TRADE, "A00001")) is SubState.PENDING_UNSUBSCRIBE
    run_until_quiet(book, server, commands)
    assert set(book.confirmed()) == set(regs("A00002", "A00003"))
    assert server.registered == set(regs("A00002", "A00003"))
    assert book.settled()


def test_no_second_command_while_an_answer_is_outstanding() -> None:
    book = SubscriptionBook()
    book.set_target(regs("A00001"))
    first = book.on_connected()
    assert subscribes(first) == ["A00001"]
    # Removed and re-added before the subscribe answer: nothing new is sent.
    assert book.set_target([]) == ()
    assert book.set_target(regs("A00001")) == ()
    assert book.set_target([]) == ()
    # The answer arrives for a symbol no longer wanted: it is unsubscribed at once.
    result = book.on_ack(TRADE, "A00001", AckCode.SUBSCRIBE_SUCCESS.value)
    assert unsubscribes(result.commands) == ["A00001"]
    # Wanted again while the unsubscribe is pending: re-subscribed once the unsubscribe is answered.
    assert book.set_target(regs("A00001")) == ()
    result = book.on_ack(TRADE, "A00001", AckCode.UNSUBSCRIBE_SUCCESS.value)
    assert subscribes(result.commands) == ["A00001"]


def test_already_in_subscribe_counts_as_success() -> None:
    book = SubscriptionBook()
    book.set_target(regs("A00001"))
    book.on_connected()
    result = book.on_ack(TRADE, "A00001", AckCode.ALREADY_SUBSCRIBED.value, "ALREADY IN SUBSCRIBE")
    assert result.refusal is None and result.matched
    assert book.state(Registration(TRADE, "A00001")) is SubState.CONFIRMED


def test_unsubscribe_not_found_counts_as_done() -> None:
    book = SubscriptionBook()
    book.set_target(regs("A00001"))
    book.on_connected()
    book.on_ack(TRADE, "A00001", AckCode.SUBSCRIBE_SUCCESS.value)
    book.set_target([])
    result = book.on_ack(TRADE, "A00001", AckCode.UNSUBSCRIBE_NOT_FOUND.value)
    assert result.matched and result.commands == ()
    assert book.state(Registration(TRADE, "A00001")) is None
    assert book.settled()


def test_max_subscribe_over_is_refused_once_and_not_retried() -> None:
    book, server = SubscriptionBook(), ModelServer(capacity=41)
    symbols = [f"{n:06d}" for n in range(1, 43)]
    book.set_target(regs(*symbols))
    refusals = run_until_quiet(book, server, book.on_connected())
    assert [r.registration.tr_key for r in refusals] == [symbols[-1]]
    assert refusals[0].msg_cd == AckCode.MAX_SUBSCRIBE_OVER.value
    assert refusals[0].confirmed_count == 41
    assert book.refused() == (Registration(TRADE, symbols[-1]),)
    # The same target again (SetSubscriptions is idempotent) sends nothing.
    assert book.set_target(regs(*symbols)) == ()
    assert book.settled()
    # Once it leaves the target and a slot is free, it may be tried again.
    book.set_target(regs(*symbols[:-1]))
    assert book.refused() == ()
    # A swap on a full key: the subscribe waits for the unsubscribe's answer instead of being refused.
    commands = book.set_target(regs(*symbols[1:]))
    assert unsubscribes(commands) == [symbols[0]]
    assert subscribes(commands) == []
    result = book.on_ack(TRADE, symbols[0], AckCode.UNSUBSCRIBE_SUCCESS.value)
    assert subscribes(result.commands) == [symbols[-1]]


def test_other_subscribe_errors_are_refusals_and_unknown_acks_are_unmatched() -> None:
    book = SubscriptionBook()
    book.set_target(regs("A00001"))
    book.on_connected()
    result = book.on_ack(TRADE, "A00001", AckCode.INTERNAL_ERROR.value, "internal error")
    assert result.refusal is not None and result.refusal.msg_cd == AckCode.INTERNAL_ERROR.value
    assert not book.on_ack(TRADE, "ZZZZZZ", AckCode.UNSUBSCRIBE_SUCCESS.value).matched
    assert not book.on_ack("", "", AckCode.INTERNAL_ERROR.value).matched
    assert is_session_refusal(AckCode.APPKEY_IN_USE.value)
    assert is_session_refusal(AckCode.INVALID_APPROVAL.value)
    assert not is_session_refusal(AckCode.MAX_SUBSCRIBE_OVER.value)


def test_reconnect_replays_every_target_and_clears_refusals() -> None:
    book, server = SubscriptionBook(), ModelServer(capacity=2)
    book.set_target(regs("A00001", "A00002", "A00003"))
    refusals = run_until_quiet(book, server, book.on_connected())
    assert len(refusals) == 1
    book.set_target(regs("A00001", "A00002", "A00003", "A00004"))  # A00004 pending at the drop
    may_have_streamed = book.on_disconnected()
    assert set(may_have_streamed) == set(regs("A00001", "A00002", "A00004"))  # not the refused A00003
    assert book.confirmed() == () and book.pending() == ()
    assert book.set_target(regs("A00001", "A00002", "A00003")) == ()  # disconnected: nothing goes out
    server = ModelServer(capacity=3)
    commands = book.on_connected()
    assert subscribes(commands) == ["A00001", "A00002", "A00003"]
    assert run_until_quiet(book, server, commands) == []
    assert set(book.confirmed()) == set(regs("A00001", "A00002", "A00003"))


events = st.lists(
    st.one_of(
        st.tuples(st.just("target"), st.lists(st.sampled_from("ABCDEFG"), max_size=7)),
        st.tuples(st.just("deliver"), st.integers(0, 5)),
        st.tuples(st.just("drop"), st.none()),
    ),
    max_size=40,
)


@settings(max_examples=300, deadline=None)
@given(events, st.integers(1, 5))
def test_any_sequence_settles_on_the_target(steps, capacity) -> None:
    """Whatever the order of target changes, partial deliveries and drops: once every answer is in, the
    server holds exactly the confirmed set, every target is confirmed or refused, the capacity holds, and
    a target that never exceeded the capacity was never refused (swaps wait for room)."""
    book, server = SubscriptionBook(capacity), ModelServer(capacity)
    server_inbox: deque[Command] = deque(book.on_connected())
    refusals = []
    largest_target = 0
    for kind, value in steps:
        if kind == "target":
            server_inbox.extend(book.set_target(regs(*value)))
            largest_target = max(largest_target, len(book.target))
        elif kind == "deliver":
            for _ in range(min(value, len(server_inbox))):
                result = book.on_ack(*server.answer(server_inbox.popleft()))
                server_inbox.extend(result.commands)
                refusals += [result.refusal] if result.refusal else []
        else:
            book.on_disconnected()
            server, server_inbox = ModelServer(capacity), deque(book.on_connected())
    refusals += run_until_quiet(book, server, tuple(server_inbox))
    confirmed = set(book.confirmed())
    assert confirmed == server.registered
    assert book.settled()
    assert confirmed | set(book.refused()) == set(book.target)
    assert len(confirmed) <= capacity
    if largest_target <= capacity:
        assert refusals == []
        assert confirmed == set(book.target)


def test_a_symbol_being_unsubscribed_at_a_drop_may_still_have_been_streaming() -> None:
    """The server streams a registration until it processes the unsubscribe: its frames in flight are lost
    with the session, so the drop's gaps must cover it too."""
    book, server = SubscriptionBook(), ModelServer(capacity=5)
    run_until_quiet(book, server, book.on_connected())
    run_until_quiet(book, server, book.set_target(regs("A00001", "A00002")))
    unsubscribing = book.set_target(regs("A00001"))  # sent, not yet answered when the session drops
    assert [command.registration for command in unsubscribing] == list(regs("A00002"))
    assert set(book.on_disconnected()) == set(regs("A00001", "A00002"))
