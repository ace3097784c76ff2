//! Render (issue 6 item 4): feedpub's RSS and Atom renderers on 100 items of the sample
//! edition's copy, against Python's feedgen and the npm package `feed` building the same
//! documents from the same items in the same run, and against a bare escape-and-copy pass
//! over the same text (what this machine can do at best). Also: rendering all three formats
//! plus gzip and brotli, which is what one regeneration of a feed costs in CPU.
//!
//! Every implementation runs in-process and is timed over a loop only (no interpreter
//! start-up): feedpub's renderers are called by this program, the peers by small scripts in
//! `peers/` that read the items this program writes as JSON.

use crate::Mode;
use crate::fixture::SampleCopy;
use crate::report::{Figure, Target};
use anyhow::Context;
use chrono::{DateTime, SecondsFormat, TimeZone, Utc};
use feedpub::config::{EMBEDDED_CONFIG, Overrides, Settings};
use feedpub::domain::{Article, FeedScope, HtmlPolicy, PartnerId, Revision, SectionSlug};
use feedpub::publication::{FeedFile, Links};
use feedpub::render::{FeedMeta, Format, body_html, categories};
use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

/// Items in every rendered document.
const ITEMS: usize = 100;

/// What renders: feedpub, a peer, or the bare pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Renderer {
    Feedpub,
    Bare,
    Feedgen,
    NpmFeed,
}

impl Renderer {
    fn peer_name(self) -> &'static str {
        match self {
            Self::Feedpub => "feedpub",
            Self::Bare => "escape-and-copy",
            Self::Feedgen => "feedgen",
            Self::NpmFeed => "feed (npm)",
        }
    }
}

/// One renderer's figures for one format: documents per second and document bytes.
#[derive(Debug, Clone, Copy, Default)]
struct Rate {
    per_second: f64,
    bytes: f64,
}

/// The items, written as JSON for the peers, and the peers' commands.
pub struct Render {
    meta: FeedMeta,
    articles: Vec<Article>,
    items_json: PathBuf,
    out_dir: PathBuf,
    python: PathBuf,
    node_module: PathBuf,
    scripts: PathBuf,
    seconds: f64,
    versions: String,
}

impl Render {
    /// Builds the 100 articles, writes them as JSON and checks that both peers are
    /// installed and render every item.
    pub fn setup(work: &Path, mode: &Mode) -> anyhow::Result<Self> {
        let settings = Settings::parse("sample", EMBEDDED_CONFIG, Overrides::default())
            .context("the embedded configuration")?;
        let meta = feed_meta(&settings);
        let articles = articles(&settings)?;
        let dir = work.join("render");
        let out_dir = dir.join("peer-output");
        std::fs::create_dir_all(&out_dir)?;
        let items_json = dir.join("items.json");
        std::fs::write(&items_json, items_json_text(&meta, &articles)?)?;

        let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
        let peers = std::env::var_os("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| manifest.join("target"))
            .join("bench-peers");
        let mut render = Self {
            meta,
            articles,
            items_json,
            out_dir,
            python: peers.join("venv/bin/python"),
            node_module: peers.join("node/node_modules/feed"),
            scripts: manifest.join("src/bin/feedpub-bench/peers"),
            seconds: mode.render_seconds,
            versions: String::new(),
        };
        let mut versions = Vec::new();
        for peer in [Renderer::Feedgen, Renderer::NpmFeed] {
            let (library, _) = render.peer(peer, 0.01)?;
            for (format, file) in [("rss", "rss.xml"), ("atom", "atom.xml")] {
                let text = std::fs::read_to_string(render.out_dir.join(file))?;
                let count = text.matches("<item>").count() + text.matches("<entry>").count();
                anyhow::ensure!(
                    count == ITEMS,
                    "{library} wrote {count} {format} items, not {ITEMS}"
                );
            }
            versions.push(library);
        }
        render.versions = versions.join(", ");
        Ok(render)
    }

    /// What the render figures were measured with, for the report header.
    pub fn peer_versions(&self) -> String {
        let bytes = |format: Format| format.render(&self.meta, &self.articles).len();
        format!(
            "render: {ITEMS} items of about 3 KB each; feedpub's renderers in-process against {} \
             (each timed in-process over {:.1} s per format); feedpub's RSS {} bytes, Atom {} bytes",
            self.versions,
            self.seconds,
            bytes(Format::Rss),
            bytes(Format::Atom)
        )
    }

    /// One run: every renderer on both formats, in an order that alternates between runs.
    pub fn run(&self, run: usize) -> anyhow::Result<Vec<Figure>> {
        let mut order = [
            Renderer::Feedpub,
            Renderer::Bare,
            Renderer::Feedgen,
            Renderer::NpmFeed,
        ];
        if run % 2 == 1 {
            order.reverse();
        }
        let mut rates = Vec::new();
        for renderer in order {
            let (rss, atom) = match renderer {
                Renderer::Feedpub => (
                    self.time(|| Format::Rss.render(&self.meta, &self.articles).len()),
                    self.time(|| Format::Atom.render(&self.meta, &self.articles).len()),
                ),
                Renderer::Bare => (
                    self.time(|| bare_pass(&self.meta, &self.articles).len()),
                    self.time(|| bare_pass(&self.meta, &self.articles).len()),
                ),
                peer => self.peer(peer, self.seconds)?.1,
            };
            rates.push((renderer, rss, atom));
        }
        let of = |r: Renderer| {
            rates
                .iter()
                .find(|(renderer, ..)| *renderer == r)
                .map(|&(_, rss, atom)| (rss, atom))
                .expect("every renderer ran")
        };
        let ours = of(Renderer::Feedpub);
        let mut figures = Vec::new();
        let mut sizes = Vec::new();
        for (label, pick) in [
            ("RSS", (|r: (Rate, Rate)| r.0) as fn((Rate, Rate)) -> Rate),
            ("Atom", |r: (Rate, Rate)| r.1),
        ] {
            let feedpub = pick(ours);
            for peer in [Renderer::Feedgen, Renderer::NpmFeed, Renderer::Bare] {
                let theirs = pick(of(peer));
                figures.push(Figure {
                    name: format!("Render {label}, {ITEMS} items, vs {}", peer.peer_name()),
                    unit: "documents/s",
                    feedpub: feedpub.per_second,
                    peer: Some((peer.peer_name(), theirs.per_second)),
                    // ≥ 5× the faster peer is ≥ 5× both; within 2× of the bare pass.
                    target: Target::RatioAtLeast(if peer == Renderer::Bare { 0.5 } else { 5.0 }),
                });
                sizes.push(Figure {
                    name: format!("Render {label}: bytes made, vs {}", peer.peer_name()),
                    unit: "bytes",
                    feedpub: feedpub.bytes,
                    peer: Some((peer.peer_name(), theirs.bytes)),
                    target: Target::Info,
                });
            }
        }
        figures.extend(sizes);
        figures.push(Figure {
            name: format!(
                "Render: one regeneration's CPU, 3 formats + gzip + brotli, {ITEMS} items"
            ),
            unit: "ms",
            feedpub: 1000.0 / self.time(|| self.regenerate()).per_second,
            peer: None,
            target: Target::Info,
        });
        // Validating an HTML body: the parse-cost measure of the body, and sanitising it
        // (which measures the input of each of its passes, the body's first), over the
        // same bodies (the items' HTML).
        let bodies: Vec<&str> = self
            .articles
            .iter()
            .map(|a| a.content.content_html.as_str())
            .collect();
        let per_body = |rate: Rate| 1e6 / (rate.per_second * bodies.len() as f64);
        let measure = self.time(|| {
            bodies
                .iter()
                .map(|html| feedpub::domain::nesting::measure(html).steps as usize)
                .sum()
        });
        let policy = HtmlPolicy::default();
        let sanitise = self.time(|| {
            bodies
                .iter()
                .map(|html| policy.sanitize(html).map_or(0, |clean| clean.len()))
                .sum()
        });
        figures.push(Figure {
            name: format!(
                "Validate an HTML body ({:.0} bytes on average): parse-cost measure, vs sanitising (its passes measured)",
                bodies.iter().map(|b| b.len()).sum::<usize>() as f64 / bodies.len() as f64
            ),
            unit: "µs",
            feedpub: per_body(measure),
            peer: Some(("sanitising", per_body(sanitise))),
            target: Target::Info,
        });
        let line: Vec<String> = figures
            .iter()
            .filter(|f| f.unit == "documents/s")
            .map(|f| {
                let (_, theirs) = f.peer.expect("a peer");
                format!("{}: {:.0} / {theirs:.0}", f.name, f.feedpub)
            })
            .collect();
        eprintln!("render run {}: {}", run + 1, line.join("; "));
        Ok(figures)
    }

    /// Renders in a loop for the run's time after a short warm-up; `render` returns the
    /// bytes it made.
    fn time(&self, mut render: impl FnMut() -> usize) -> Rate {
        for _ in 0..3 {
            black_box(render());
        }
        let start = Instant::now();
        let mut iterations = 0u64;
        let bytes = loop {
            let bytes = black_box(render());
            iterations += 1;
            if start.elapsed().as_secs_f64() >= self.seconds && iterations >= 5 {
                break bytes;
            }
        };
        Rate {
            per_second: iterations as f64 / start.elapsed().as_secs_f64(),
            bytes: bytes as f64,
        }
    }

    /// What one regeneration of a feed does in CPU once the store has answered: every
    /// format rendered, then compressed with gzip and brotli, with validators and headers.
    fn regenerate(&self) -> usize {
        Format::ALL
            .into_iter()
            .map(|format| {
                let links = Links {
                    self_url: self.meta.url(format).to_owned(),
                    hub_url: Some(self.meta.hub_url.clone()),
                };
                let file = FeedFile::new(
                    format.render(&self.meta, &self.articles),
                    format.content_type(),
                    self.meta.updated,
                    60,
                    &links,
                );
                file.held_bytes()
            })
            .sum()
    }

    /// Runs a peer's script for `seconds` per format: its library's name and version, and
    /// its RSS and Atom figures.
    fn peer(&self, peer: Renderer, seconds: f64) -> anyhow::Result<(String, (Rate, Rate))> {
        let seconds = format!("{seconds}");
        let mut cmd = match peer {
            Renderer::Feedgen => {
                let mut cmd = Command::new(&self.python);
                cmd.arg(self.scripts.join("render_feedgen.py"));
                cmd
            }
            Renderer::NpmFeed => {
                let mut cmd = Command::new("node");
                cmd.arg(self.scripts.join("render_feed.mjs"))
                    .arg(&self.node_module);
                cmd
            }
            Renderer::Feedpub | Renderer::Bare => unreachable!("not a peer"),
        };
        let output = cmd
            .arg(&self.items_json)
            .arg(&seconds)
            .arg(&self.out_dir)
            .stdin(Stdio::null())
            .output()
            .with_context(|| {
                format!(
                    "cannot run the {} peer: run `bash .ci/bench-peers`",
                    peer.peer_name()
                )
            })?;
        anyhow::ensure!(
            output.status.success(),
            "the {} peer failed (run `bash .ci/bench-peers`): {}",
            peer.peer_name(),
            String::from_utf8_lossy(&output.stderr)
        );
        let answer: serde_json::Value = serde_json::from_slice(&output.stdout)
            .with_context(|| format!("the {} peer printed no JSON", peer.peer_name()))?;
        let rate = |format: &str| -> anyhow::Result<Rate> {
            let figures = &answer[format];
            Ok(Rate {
                per_second: figures["per_second"].as_f64().context("per_second")?,
                bytes: figures["bytes"].as_f64().context("bytes")?,
            })
        };
        let library = answer["library"].as_str().unwrap_or("?").to_owned();
        Ok((library, (rate("rss")?, rate("atom")?)))
    }
}

/// The metadata of the politics feed, made by feedpub's own function from the sample
/// configuration.
fn feed_meta(settings: &Settings) -> FeedMeta {
    let politics = FeedScope::Section(SectionSlug::parse("politics").expect("a valid slug"));
    feedpub::publication::feed_meta(settings, &politics, page_time(), Vec::new())
}

/// 2023-06-07T07:00:00+08:00, the sample edition's morning.
fn page_time() -> DateTime<Utc> {
    Utc.timestamp_opt(1_686_092_400, 0)
        .single()
        .expect("a valid time")
}

/// The 100 articles as feedpub stores them: validated (HTML made from the text) as a
/// publish would, one minute apart, each with a page URL.
fn articles(settings: &Settings) -> anyhow::Result<Vec<Article>> {
    let copy = SampleCopy::load();
    let policy = HtmlPolicy::default();
    (0..ITEMS)
        .map(|n| {
            let mut article = copy.article(format!("render-{n:03}"), &format!("（{}）", n + 1), n);
            article.publish_time = Some(prost_types::Timestamp {
                seconds: page_time().timestamp() - 60 * n as i64,
                nanos: 0,
            });
            article.canonical_url = settings.site.url(&format!("articles/{}.html", article.id));
            let draft = feedpub::grpc::convert::draft_from_proto(Some(article))
                .map_err(|v| anyhow::anyhow!("{v}"))?;
            let valid = draft
                .validate("article.", &policy)
                .map_err(|v| anyhow::anyhow!("{v}"))?;
            let guid = format!("tag:127.0.0.1,2023-06-07:bench/{}", valid.id);
            match Article::revise(
                None,
                PartnerId(1),
                valid.id,
                valid.content,
                page_time(),
                |_| guid,
            ) {
                Revision::Created(article) => Ok(article),
                other => anyhow::bail!("a new article was not created: {other:?}"),
            }
        })
        .collect()
}

/// The feed and its items as the peers read them: exactly the fields feedpub's documents
/// carry, as feedpub shows them (the HTML body with its subtitle, the kicker and tags as
/// categories, dates in the site's offset).
fn items_json_text(meta: &FeedMeta, articles: &[Article]) -> anyhow::Result<String> {
    let date = |t: DateTime<Utc>| meta.local(t).to_rfc3339_opts(SecondsFormat::Secs, false);
    let items: Vec<serde_json::Value> = articles
        .iter()
        .map(|a| {
            serde_json::json!({
                "guid": a.guid,
                "title": a.content.title,
                "link": a.content.canonical_url,
                "published": date(a.content.publish_time),
                "updated": date(a.updated),
                "authors": a.content.authors,
                "categories": categories(a).collect::<Vec<_>>(),
                "summary": a.content.summary,
                "content_html": body_html(a),
            })
        })
        .collect();
    Ok(serde_json::to_string(&serde_json::json!({
        "feed": {
            "title": meta.title,
            "description": meta.description,
            "language": meta.language,
            "site_url": meta.site_url,
            "rss_url": meta.rss_url,
            "atom_url": meta.atom_url,
            "hub_url": meta.hub_url,
            "publisher": meta.publisher,
            "rights": meta.rights,
            "logo": meta.logo,
            "icon": meta.icon,
            "updated": date(meta.updated),
        },
        "items": items,
    }))?)
}

/// The least any renderer must do: copy every text field the document carries, escaped
/// for XML text, into one buffer (no structure, no dates, no validation).
fn bare_pass(meta: &FeedMeta, articles: &[Article]) -> Vec<u8> {
    let mut out = Vec::with_capacity(articles.len() * 8 * 1024);
    for text in [
        &meta.title,
        &meta.description,
        &meta.site_url,
        &meta.rss_url,
    ] {
        escape_into(&mut out, text);
    }
    for a in articles {
        let c = &a.content;
        for text in [&a.guid, &c.title, &c.summary] {
            escape_into(&mut out, text);
        }
        if let Some(link) = &c.canonical_url {
            escape_into(&mut out, link);
        }
        for name in categories(a).chain(c.authors.iter().map(String::as_str)) {
            escape_into(&mut out, name);
        }
        escape_into(&mut out, &body_html(a));
    }
    out
}

/// Appends `text` with `&`, `<` and `>` escaped, copying the runs between them whole.
fn escape_into(out: &mut Vec<u8>, text: &str) {
    let mut rest = text.as_bytes();
    while let Some(at) = memchr::memchr3(b'&', b'<', b'>', rest) {
        out.extend_from_slice(&rest[..at]);
        out.extend_from_slice(match rest[at] {
            b'&' => b"&amp;",
            b'<' => b"&lt;",
            _ => b"&gt;",
        });
        rest = &rest[at + 1..];
    }
    out.extend_from_slice(rest);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bare_pass_escapes_exactly_what_xml_text_needs() {
        let mut out = Vec::new();
        escape_into(&mut out, "a<b>&c \"引号\" ]]> 𠮷");
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "a&lt;b&gt;&amp;c \"引号\" ]]&gt; 𠮷"
        );
    }

    #[test]
    fn the_items_the_peers_read_are_those_feedpub_renders() {
        let settings = Settings::parse("sample", EMBEDDED_CONFIG, Overrides::default()).unwrap();
        let meta = feed_meta(&settings);
        let articles = articles(&settings).unwrap();
        assert_eq!(articles.len(), ITEMS);
        let json: serde_json::Value =
            serde_json::from_str(&items_json_text(&meta, &articles).unwrap()).unwrap();
        let items = json["items"].as_array().unwrap();
        assert_eq!(items.len(), ITEMS);
        let rss = String::from_utf8(Format::Rss.render(&meta, &articles)).unwrap();
        assert_eq!(rss.matches("<item>").count(), ITEMS);
        for item in items {
            assert!(rss.contains(item["guid"].as_str().unwrap()));
            assert!(rss.contains(item["title"].as_str().unwrap()));
        }
        assert_eq!(items[0]["published"], "2023-06-07T07:00:00+08:00");
        assert!(
            items[0]["content_html"]
                .as_str()
                .unwrap()
                .starts_with("<p>")
        );
    }
}
