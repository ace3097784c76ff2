#!/usr/bin/env python3
"""A feedpub partner in Python: publish, correct, retract and follow an article.

It talks to feedpub's gRPC API through stubs generated from the repository's proto/
folder, and reads the published feeds over plain HTTP, as a partner's own code would.
Each step prints what it did; the first failed check stops the script with a message
and exit code 1.

Generate the stubs (grpcio-tools, see requirements.txt beside this file), then run it
with a partner token from `feedpub partner add`:

    mkdir -p stubs
    python -m grpc_tools.protoc -I proto --python_out=stubs --pyi_out=stubs \\
        --grpc_python_out=stubs proto/feedpub/v1/publisher.proto \\
        proto/google/rpc/status.proto proto/google/rpc/error_details.proto
    FEEDPUB_TOKEN=fp_... PYTHONPATH=stubs python tests/python/partner_scenario.py \\
        --grpc 127.0.0.1:50051 --http http://127.0.0.1:8080

The article is one of the sample edition's (src/demo/sample_edition.toml), published
under an id of its own for each run, so the scenario can run again on the same server.
The token needs the sections of the articles it publishes: rural and politics.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tomllib
import urllib.request
import uuid
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from time import monotonic, sleep
from typing import NoReturn, TypeVar

import grpc
from google.protobuf import message as protobuf_message
from google.protobuf.timestamp_pb2 import Timestamp

try:
    from feedpub.v1 import publisher_pb2 as pb
    from feedpub.v1 import publisher_pb2_grpc as pb_grpc
    from google.rpc import error_details_pb2, status_pb2
except ImportError as missing:
    sys.exit(
        f"{missing}: generate the stubs from proto/ with grpcio-tools and put their "
        "folder on PYTHONPATH (see this file's docstring)"
    )

# Every unary call gets this deadline: a partner never waits forever.
CALL_TIMEOUT_S = 10.0
# How long a feed may take to show a change (feedpub rebuilds within a second).
FEED_TIMEOUT_S = 15.0
# How long a watch stream may stay open before the scenario gives up on an event.
WATCH_TIMEOUT_S = 60.0
# The sample article the scenario publishes, corrects and retracts, and two it
# publishes in a batch.
ARTICLE_ID = "2023-06-07-youyu-nonglv-ronghe"
BATCH_IDS = ("2023-06-07-daji-sicai-lanwa", "2023-06-07-gonglu-guihua-tiaozheng")
DEFAULT_EDITION = Path(__file__).resolve().parents[2] / "src/demo/sample_edition.toml"

# gRPC code names by number, for the google.rpc.Status codes inside batch results.
CODE_NAMES = {code.value[0]: code.name for code in grpc.StatusCode}
Event = pb.ArticleEventType
State = pb.ArticleState
T = TypeVar("T")


class CheckFailed(Exception):
    """A check of the scenario did not hold."""


def check(condition: bool, what: str) -> None:
    """Stops the scenario with `what` unless `condition` holds."""
    if not condition:
        raise CheckFailed(what)


def step(title: str) -> None:
    print(f"==> {title}", flush=True)


def ok(detail: str) -> None:
    print(f"    ok: {detail}", flush=True)


# --- Reading the sample edition


def timestamp(value: str) -> Timestamp:
    """An RFC 3339 string with its offset, as a protobuf Timestamp."""
    stamp = Timestamp()
    stamp.FromDatetime(datetime.fromisoformat(value))
    return stamp


def load_edition(path: Path) -> dict[str, pb.Article]:
    """The edition's articles by id, as API messages: plain-text bodies whose paragraphs
    are separated by blank lines, copy exactly as printed."""
    with path.open("rb") as file:
        edition = tomllib.load(file)
    articles = {}
    for entry in edition["articles"]:
        article = pb.Article(
            id=entry["id"],
            section=entry["section"],
            kicker=entry["kicker"],
            title=entry["title"],
            subtitle=entry["subtitle"],
            authors=entry["authors"],
            tags=entry["tags"],
            content_text="\n\n".join(entry["paragraphs"]),
            publish_time=timestamp(entry["publish_time"]),
        )
        if "expire_time" in entry:
            article.expire_time.CopyFrom(timestamp(entry["expire_time"]))
        articles[entry["id"]] = article
    return articles


# --- Errors: google.rpc.Status in grpc-status-details-bin (AIP-193)


def rich_status(error: grpc.Call) -> status_pb2.Status:
    """The google.rpc.Status a failed call carries in its trailers."""
    for key, value in error.trailing_metadata() or ():
        if key == "grpc-status-details-bin":
            return status_pb2.Status.FromString(value)
    raise CheckFailed(f"{error.code().name} carries no grpc-status-details-bin: {error.details()}")


M = TypeVar("M", bound=protobuf_message.Message)


def detail(status: status_pb2.Status, kind: type[M]) -> M:
    """The first detail of this type in a google.rpc.Status."""
    for packed in status.details:
        if packed.Is(kind.DESCRIPTOR):
            unpacked = kind()
            packed.Unpack(unpacked)
            return unpacked
    raise CheckFailed(f"no {kind.DESCRIPTOR.full_name} in the status: {status}")


def expect_error(code: grpc.StatusCode, call: Callable[[], object]) -> status_pb2.Status:
    """Runs `call`, which must fail with `code`, and returns the error's google.rpc.Status,
    after checking that it names feedpub's error domain."""
    try:
        call()
    except grpc.RpcError as error:
        assert isinstance(error, grpc.Call)
        check(
            error.code() == code,
            f"expected {code.name}, got {error.code().name}: {error.details()}",
        )
        status = rich_status(error)
        check(status.code == code.value[0], f"the detailed status has code {status.code}")
        info = detail(status, error_details_pb2.ErrorInfo)
        check(info.domain == "feedpub", f"ErrorInfo domain is {info.domain!r}")
        return status
    raise CheckFailed(f"expected {code.name}, but the call succeeded")


# --- Feeds over HTTP


def feed_items(http: str, section: str) -> dict[str, dict[str, object]]:
    """The items of a section's JSON Feed, by id (the article's guid)."""
    url = f"{http}/feeds/{section}/feed.json"
    with urllib.request.urlopen(url, timeout=CALL_TIMEOUT_S) as response:
        feed = json.load(response)
    return {item["id"]: item for item in feed["items"]}


def wait_until(what: str, condition: Callable[[], T | None]) -> T:
    """Polls `condition` until it returns something, or fails after FEED_TIMEOUT_S."""
    deadline = monotonic() + FEED_TIMEOUT_S
    while True:
        result = condition()
        if result is not None:
            return result
        check(monotonic() < deadline, f"{what} did not happen within {FEED_TIMEOUT_S:.0f} s")
        sleep(0.1)


# --- Following


class Watch:
    """A WatchArticles stream: its first message (no events) gives the cursor it starts from."""

    def __init__(
        self, stub: pb_grpc.PublisherServiceStub, metadata: list[tuple[str, str]], cursor: str = ""
    ):
        request = pb.WatchArticlesRequest(cursor=cursor)
        # The call is an iterator of messages, and can be cancelled.
        self._call = stub.WatchArticles(request, metadata=metadata, timeout=WATCH_TIMEOUT_S)
        first = next(self._call)
        check(not first.events, "the first message of a watch has no events")
        self.start = first.cursor
        self._pending: list[pb.ArticleEvent] = []

    def next_event(self) -> pb.ArticleEvent:
        while not self._pending:
            message = next(self._call)
            check(bool(message.events), "only the first message of a watch is empty")
            check(
                message.cursor == message.events[-1].cursor,
                "a message's cursor is its last event's",
            )
            self._pending.extend(message.events)
        return self._pending.pop(0)

    def events(self, count: int) -> list[pb.ArticleEvent]:
        return [self.next_event() for _ in range(count)]

    def until(self, last: Callable[[pb.ArticleEvent], bool]) -> list[pb.ArticleEvent]:
        """The events up to and including the first one for which `last` holds (other
        partners' events may come in between: a watch follows every partner)."""
        events = [self.next_event()]
        while not last(events[-1]):
            events.append(self.next_event())
        return events

    def close(self) -> None:
        self._call.cancel()


def describe(event: pb.ArticleEvent) -> str:
    return f"{Event.Name(event.type)} {event.article.id} v{event.article.version}"


def later(a: Timestamp, b: Timestamp) -> bool:
    return (a.seconds, a.nanos) > (b.seconds, b.nanos)


# --- The scenario


def run(
    stub: pb_grpc.PublisherServiceStub, token: str, http: str, edition: dict[str, pb.Article]
) -> None:
    metadata = [("authorization", f"Bearer {token}")]
    run_id = uuid.uuid4().hex[:8]

    def publish(article: pb.Article, request_id: str = "") -> pb.PublishArticleResponse:
        request = pb.PublishArticleRequest(article=article, request_id=request_id)
        return stub.PublishArticle(request, metadata=metadata, timeout=CALL_TIMEOUT_S)

    def get(article_id: str, version: int = 0) -> pb.Article:
        request = pb.GetArticleRequest(id=article_id, version=version)
        return stub.GetArticle(request, metadata=metadata, timeout=CALL_TIMEOUT_S)

    step("list the sections this server has")
    sections = stub.ListSections(
        pb.ListSectionsRequest(), metadata=metadata, timeout=CALL_TIMEOUT_S
    )
    slugs = [s.slug for s in sections.sections]
    check(
        edition[ARTICLE_ID].section in slugs,
        f"no section {edition[ARTICLE_ID].section!r} in {slugs}",
    )
    ok(", ".join(f"{s.slug} ({s.title})" for s in sections.sections))

    step("start watching before anything is published")
    watch = Watch(stub, metadata)
    ok(f"the stream starts at cursor {watch.start!r}")

    step("publish an article of the sample edition")
    original = pb.Article()
    original.CopyFrom(edition[ARTICLE_ID])
    original.id = f"{ARTICLE_ID}.{run_id}"
    first_request_id = str(uuid.uuid4())
    v1 = publish(original, first_request_id).article
    check(v1.version == 1, f"a new article is version 1, not {v1.version}")
    check(v1.state == State.ARTICLE_STATE_PUBLISHED, f"state {State.Name(v1.state)}")
    check(bool(v1.guid) and bool(v1.etag), "the stored article has a guid and an etag")
    ok(f"{v1.id}: version 1, guid {v1.guid}, etag {v1.etag}")

    step("read it back: the copy is intact")
    stored = get(original.id)
    for field in ("title", "subtitle", "kicker", "content_text", "section"):
        check(getattr(stored, field) == getattr(original, field), f"{field} came back changed")
    check(
        list(stored.authors) == list(original.authors),
        f"authors came back as {list(stored.authors)}",
    )
    check(stored.publish_time == original.publish_time, "publish_time came back changed")
    ok(f"“{stored.title}” by {'、'.join(stored.authors)}, {len(stored.content_text)} characters")

    step(f"the {original.section} feed shows it")
    item = wait_until(
        "the article's appearance in the feed",
        lambda: feed_items(http, original.section).get(v1.guid),
    )
    check(item["title"] == original.title, f"the feed's title is {item['title']!r}")
    ok(f"/feeds/{original.section}/feed.json has item {v1.guid}")

    step("correct it: changed content, based on the version just read")
    corrected = pb.Article()
    corrected.CopyFrom(original)
    corrected.content_text += "\n\n（更正：本文首发时有误，现已更正。）"
    corrected.etag = v1.etag
    v2 = publish(corrected, str(uuid.uuid4())).article
    check(v2.version == 2, f"the correction is version 2, not {v2.version}")
    check((v2.id, v2.guid) == (v1.id, v1.guid), "a correction keeps the id and the guid")
    check(v2.etag != v1.etag, "a correction changes the etag")
    check(later(v2.update_time, v1.update_time), "a correction moves update_time forward")
    ok(f"version 2, same guid, update_time {v2.update_time.ToJsonString()}")

    step("past versions stay readable")
    past = get(original.id, version=1)
    check(past.content_text == original.content_text, "version 1 has the original copy")
    check((past.version, past.etag) == (1, v1.etag), "version 1 keeps its number and etag")
    listed = stub.ListArticleVersions(
        pb.ListArticleVersionsRequest(id=original.id), metadata=metadata, timeout=CALL_TIMEOUT_S
    )
    numbers = [v.version for v in listed.versions]
    check(numbers == [2, 1], f"ListArticleVersions lists {numbers}, not [2, 1]")
    ok("GetArticle(version=1) returns the original; ListArticleVersions lists 2, 1")

    step("retry the first publish with its request_id")
    retried = publish(original, first_request_id).article
    check(retried == v1, "the retry returns the first call's result")
    check(get(original.id).version == 2, "the retry did not undo the correction")
    ok("the first result again, and the article is still version 2")

    step("an edit based on a stale etag is refused")
    stale = pb.Article()
    stale.CopyFrom(corrected)
    stale.title += "（旧稿修改）"
    stale.etag = v1.etag
    status = expect_error(grpc.StatusCode.ABORTED, lambda: publish(stale))
    reason = detail(status, error_details_pb2.ErrorInfo).reason
    check(reason == "ETAG_MISMATCH", f"ErrorInfo reason {reason!r}")
    check(get(original.id).etag == v2.etag, "the refused edit changed nothing")
    ok(f"ABORTED, ErrorInfo reason {reason}")

    step("a bad field is named")
    bad = pb.Article()
    bad.CopyFrom(corrected)
    bad.etag = ""
    bad.canonical_url = "ftp://example.com/article"
    status = expect_error(grpc.StatusCode.INVALID_ARGUMENT, lambda: publish(bad))
    fields = [v.field for v in detail(status, error_details_pb2.BadRequest).field_violations]
    check("article.canonical_url" in fields, f"BadRequest names {fields}")
    ok(f"INVALID_ARGUMENT, BadRequest field {', '.join(fields)}")

    step("retract it")
    retracted = stub.RetractArticle(
        pb.RetractArticleRequest(
            id=original.id, reason="稿件撤回", etag=v2.etag, request_id=str(uuid.uuid4())
        ),
        metadata=metadata,
        timeout=CALL_TIMEOUT_S,
    )
    check(retracted.state == State.ARTICLE_STATE_RETRACTED, f"state {State.Name(retracted.state)}")
    check(get(original.id).state == State.ARTICLE_STATE_RETRACTED, "GetArticle shows it retracted")
    ok(f"RETRACTED at {retracted.retract_time.ToJsonString()}")

    step(f"the {original.section} feed drops it")
    wait_until(
        "the article's removal from the feed",
        lambda: True if v1.guid not in feed_items(http, original.section) else None,
    )
    ok(f"/feeds/{original.section}/feed.json no longer has item {v1.guid}")

    step("the watch saw publish, update and retract, in order")
    seen = watch.until(
        lambda e: e.article.id == original.id and e.type == Event.ARTICLE_EVENT_TYPE_RETRACTED
    )
    watch.close()
    ours = [e for e in seen if e.article.id == original.id]
    kinds = [(Event.Name(e.type), e.article.version) for e in ours]
    expected = [
        ("ARTICLE_EVENT_TYPE_PUBLISHED", 1),
        ("ARTICLE_EVENT_TYPE_UPDATED", 2),
        ("ARTICLE_EVENT_TYPE_RETRACTED", 2),
    ]
    check(kinds == expected, f"the watch saw {kinds} for the article")
    check(
        ours[1].article.content_text == corrected.content_text,
        "the update event carries the correction",
    )
    for event in ours:
        ok(describe(event))

    step("resume from the cursor saved after the publish event")
    saved = ours[0].cursor
    since = seen[seen.index(ours[0]) + 1 :]
    resumed = Watch(stub, metadata, cursor=saved)
    check(resumed.start == saved, "the resumed stream starts at the cursor given")
    replayed = resumed.events(len(since))
    check(
        [e.cursor for e in replayed] == [e.cursor for e in since],
        f"the replay is {[describe(e) for e in replayed]}, not {[describe(e) for e in since]}",
    )
    for event in replayed:
        ok(f"replayed {describe(event)}")

    step("publish a batch while following it")
    batch = []
    for index, article_id in enumerate(BATCH_IDS):
        article = pb.Article()
        article.CopyFrom(edition[article_id])
        article.id = f"{article_id}.{run_id}"
        batch.append(
            pb.PublishArticleRequest(article=article, request_id=f"{run_id}-batch-{index}")
        )
    refused = pb.Article()
    refused.CopyFrom(batch[0].article)
    refused.id = f"unknown-section.{run_id}"
    refused.section = "no-such-section"
    batch.append(pb.PublishArticleRequest(article=refused))
    # One stream message per article here; a large batch puts many in each message.
    messages = (pb.PublishArticlesRequest(requests=[request]) for request in batch)
    results = stub.PublishArticles(messages, metadata=metadata, timeout=CALL_TIMEOUT_S).results
    codes = [CODE_NAMES[r.status.code] for r in results]
    check([r.index for r in results] == list(range(len(batch))), "one result per article, in order")
    check(codes == ["OK", "OK", "INVALID_ARGUMENT"], f"per-article codes {codes}")
    check(
        all(r.version == 1 and r.changed for r in results[:-1]),
        "the good articles are stored as version 1",
    )
    fields = [
        v.field for v in detail(results[-1].status, error_details_pb2.BadRequest).field_violations
    ]
    check(fields == ["article.section"], f"the refused article's BadRequest names {fields}")
    for result in results:
        ok(f"#{result.index} {result.id}: {CODE_NAMES[result.status.code]}")

    step("the resumed watch follows on with the batch, nothing repeated")
    batch_ids = [request.article.id for request in batch[:-1]]
    after = resumed.until(lambda e: e.article.id == batch_ids[-1])
    resumed.close()
    published = [(Event.Name(e.type), e.article.id) for e in after if e.article.id in batch_ids]
    check(
        published == [("ARTICLE_EVENT_TYPE_PUBLISHED", article_id) for article_id in batch_ids],
        f"after the replay came {[describe(e) for e in after]}",
    )
    check(not {e.cursor for e in seen} & {e.cursor for e in after}, "no event is delivered twice")
    for event in after:
        ok(describe(event))


def fail(message: str) -> NoReturn:
    print(f"FAILED: {message}", file=sys.stderr, flush=True)
    sys.exit(1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--grpc", default="127.0.0.1:50051", help="the gRPC API's host:port")
    parser.add_argument(
        "--http", default="http://127.0.0.1:8080", help="the feed server's base URL"
    )
    parser.add_argument(
        "--edition", type=Path, default=DEFAULT_EDITION, help="the sample edition (TOML)"
    )
    args = parser.parse_args()
    token = os.environ.get("FEEDPUB_TOKEN", "")
    if not token:
        fail(
            "set FEEDPUB_TOKEN to a partner token "
            "(feedpub partner add NAME --section rural --section politics)"
        )

    edition = load_edition(args.edition)
    with grpc.insecure_channel(args.grpc) as channel:
        stub = pb_grpc.PublisherServiceStub(channel)
        try:
            run(stub, token, args.http.rstrip("/"), edition)
        except CheckFailed as failure:
            fail(str(failure))
        except grpc.RpcError as error:
            assert isinstance(error, grpc.Call)
            fail(f"unexpected {error.code().name}: {error.details()}")
        except StopIteration:
            fail("a watch stream ended early")
    print("scenario passed: publish, correct, retract and watch", flush=True)


if __name__ == "__main__":
    main()
