"""Render peer: Python's feedgen builds the RSS 2.0 and Atom 1.0 documents of the items
feedpub-bench wrote, again and again for a while, and prints how many it made per second.

Usage: render_feedgen.py ITEMS_JSON SECONDS OUT_DIR

Only the loop is timed (interpreter start-up and imports are not). Each iteration builds the
whole document from the items, as feedpub does on every regeneration: a FeedGenerator with
its entries (authors as dc:creator in RSS, the HTML body as content:encoded and Atom
content, the summary as description and Atom summary), serialised to UTF-8 bytes. The last
document of each format is written to OUT_DIR for inspection. Prints one JSON line.
"""

import json
import sys
import time
from datetime import datetime
from importlib.metadata import version

from feedgen.feed import FeedGenerator


def build(feed, items, rss):
    fg = FeedGenerator()
    fg.load_extension("dc", atom=False, rss=True)
    fg.id(feed["atom_url"])
    fg.title(feed["title"])
    fg.description(feed["description"])
    fg.language(feed["language"])
    fg.link(href=feed["site_url"], rel="alternate")
    fg.link(href=feed["rss_url"] if rss else feed["atom_url"], rel="self")
    fg.link(href=feed["hub_url"], rel="hub")
    fg.rights(feed["rights"])
    fg.logo(feed["logo"])
    fg.icon(feed["icon"])
    fg.author({"name": feed["publisher"]})
    fg.updated(datetime.fromisoformat(feed["updated"]))
    fg.lastBuildDate(datetime.fromisoformat(feed["updated"]))
    fg.generator("feedgen")
    for item in items:
        fe = fg.add_entry(order="append")
        fe.id(item["guid"])
        fe.guid(item["guid"], permalink=False)
        fe.title(item["title"])
        fe.link(href=item["link"])
        fe.published(datetime.fromisoformat(item["published"]))
        fe.updated(datetime.fromisoformat(item["updated"]))
        for name in item["authors"]:
            if rss:
                fe.dc.dc_creator(name)
            else:
                fe.author({"name": name})
        for category in item["categories"]:
            fe.category(term=category)
        fe.summary(item["summary"])
        # RSS: content:encoded as CDATA, like feedpub; Atom: escaped type="html".
        fe.content(item["content_html"], type="CDATA" if rss else "html")
        if rss:
            fe.description(item["summary"])
    return fg.rss_str() if rss else fg.atom_str()


def measure(feed, items, rss, seconds):
    for _ in range(3):
        document = build(feed, items, rss)
    iterations = 0
    start = time.perf_counter()
    while True:
        document = build(feed, items, rss)
        iterations += 1
        elapsed = time.perf_counter() - start
        if elapsed >= seconds and iterations >= 5:
            break
    return document, {"per_second": iterations / elapsed, "bytes": len(document),
                      "iterations": iterations}


def main():
    path, seconds, out_dir = sys.argv[1], float(sys.argv[2]), sys.argv[3]
    with open(path, encoding="utf-8") as f:
        data = json.load(f)
    result = {"library": "feedgen " + version("feedgen")}
    for name, rss, file_name in (("rss", True, "rss.xml"), ("atom", False, "atom.xml")):
        document, result[name] = measure(data["feed"], data["items"], rss, seconds)
        with open(f"{out_dir}/{file_name}", "wb") as f:
            f.write(document)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
