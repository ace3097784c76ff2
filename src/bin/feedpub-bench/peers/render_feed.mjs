// Render peer: the npm package `feed` builds the RSS 2.0 and Atom 1.0 documents of the
// items feedpub-bench wrote, again and again for a while, and prints how many it made per
// second.
//
// Usage: node render_feed.mjs FEED_MODULE_DIR ITEMS_JSON SECONDS OUT_DIR
//
// Only the loop is timed (start-up and the import are not). Each iteration builds the whole
// document from the items, as feedpub does on every regeneration: a Feed with its items
// (authors, the HTML body as content:encoded and Atom content, the summary as description),
// serialised to a string and encoded as UTF-8 bytes. The last document of each format is
// written to OUT_DIR for inspection. Prints one JSON line.

import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { pathToFileURL } from "node:url";

const [moduleDir, path, secondsArg, outDir] = process.argv.slice(2);
const { Feed } = await import(pathToFileURL(join(moduleDir, "lib", "feed.js")).href);
const version = JSON.parse(readFileSync(join(moduleDir, "package.json"), "utf8")).version;
const data = JSON.parse(readFileSync(path, "utf8"));
const seconds = Number(secondsArg);

function build(feed, items, rss) {
  const f = new Feed({
    id: feed.atom_url,
    title: feed.title,
    description: feed.description,
    language: feed.language,
    link: feed.site_url,
    feedLinks: rss ? { rss: feed.rss_url } : { atom: feed.atom_url },
    hub: feed.hub_url,
    copyright: feed.rights,
    image: feed.logo,
    favicon: feed.icon,
    author: { name: feed.publisher },
    updated: new Date(feed.updated),
    generator: "feed",
  });
  for (const item of items) {
    f.addItem({
      title: item.title,
      id: item.guid,
      guid: item.guid,
      link: item.link,
      date: new Date(item.updated),
      published: new Date(item.published),
      description: item.summary,
      content: item.content_html,
      author: item.authors.map((name) => ({ name })),
      category: item.categories.map((name) => ({ name })),
    });
  }
  return Buffer.from(rss ? f.rss2() : f.atom1(), "utf8");
}

function measure(feed, items, rss) {
  let document;
  for (let i = 0; i < 3; i++) document = build(feed, items, rss);
  let iterations = 0;
  const start = process.hrtime.bigint();
  let elapsed;
  for (;;) {
    document = build(feed, items, rss);
    iterations++;
    elapsed = Number(process.hrtime.bigint() - start) / 1e9;
    if (elapsed >= seconds && iterations >= 5) break;
  }
  return [document, { per_second: iterations / elapsed, bytes: document.length, iterations }];
}

const result = { library: `feed ${version}` };
for (const [name, rss, fileName] of [["rss", true, "rss.xml"], ["atom", false, "atom.xml"]]) {
  const [document, figures] = measure(data.feed, data.items, rss);
  result[name] = figures;
  writeFileSync(join(outDir, fileName), document);
}
console.log(JSON.stringify(result));
