"""Schemathesis hooks of tests/schemathesis.sh (loaded through SCHEMATHESIS_HOOKS).

Two rules of the score request are not expressible in JSON Schema: a ticket of
`activity` may not close before it opened (`closed_at >= opened_at`, the data contract's
rule, which the batch loader enforces too), and `as_of` may be at most 5 minutes ahead of
the server's clock (`MAX_AS_OF_SKEW_SECS`, issue 15 (c): a future score would silence
the customer's alerts). The generator cannot know either, so generated bodies that break
them are dropped here instead of being sent as "valid" requests. Nothing else is
filtered: every other generated body, valid or not, reaches the server and every check.
"""

import datetime
import time

import schemathesis


def _instant(value):
    """A timestamp of the request as the server reads it (UTC when naive), else None."""
    if not isinstance(value, str):
        return None
    text = value.strip()
    if len(text) == 10:
        text += "T00:00:00"
    try:
        t = datetime.datetime.fromisoformat(text.replace("Z", "+00:00").replace(" ", "T", 1))
    except ValueError:
        return None
    if t.tzinfo is None:
        t = t.replace(tzinfo=datetime.timezone.utc)
    try:
        return t.timestamp()
    except (OverflowError, ValueError):
        return None


def _closes_before_opening(activity):
    tickets = activity.get("tickets") if isinstance(activity, dict) else None
    for t in tickets if isinstance(tickets, list) else []:
        if isinstance(t, dict):
            opened, closed = _instant(t.get("opened_at")), _instant(t.get("closed_at"))
            if opened is not None and closed is not None and closed < opened:
                return True
    return False


def _instances(body):
    if not isinstance(body, dict):
        return []
    if isinstance(body.get("instances"), list):
        return [i for i in body["instances"] if isinstance(i, dict)]
    return [body]


MAX_AS_OF_SKEW_SECS = 5 * 60


def _in_the_future(instance):
    as_of = _instant(instance.get("as_of"))
    # A minute of margin for the time the request takes to arrive.
    return as_of is not None and as_of > time.time() + MAX_AS_OF_SKEW_SECS - 60


@schemathesis.hook
def filter_body(context, body):
    return not any(
        _closes_before_opening(i.get("activity")) or _in_the_future(i) for i in _instances(body)
    )
