//! Atom 1.0 (RFC 4287).

use super::{FeedMeta, Format, body_html, categories};
use crate::domain::Article;
use atom_syndication::{Category, Content, Entry, Feed, Generator, Link, Person, Text};

/// Renders an Atom document: permanent ids, `updated` from real edits, the publisher as
/// feed-level author for entries without a byline, `xml:lang` on the feed.
pub fn render(meta: &FeedMeta, articles: &[Article]) -> Vec<u8> {
    let feed = Feed {
        title: Text::plain(meta.title.clone()),
        id: meta.atom_url.clone(),
        updated: meta.local(meta.updated),
        authors: vec![person(&meta.publisher)],
        generator: Some(Generator {
            value: "feedpub".into(),
            ..Generator::default()
        }),
        links: vec![
            link(&meta.atom_url, "self", Format::Atom.media_type()),
            link(&meta.site_url, "alternate", "text/html"),
            Link {
                href: meta.hub_url.clone(),
                rel: "hub".into(),
                ..Link::default()
            },
        ],
        subtitle: Some(Text::plain(meta.description.clone())),
        rights: (!meta.rights.is_empty()).then(|| Text::plain(meta.rights.clone())),
        icon: meta.icon.clone(),
        logo: meta.logo.clone(),
        entries: articles.iter().map(|a| entry(meta, a)).collect(),
        lang: Some(meta.language.clone()),
        ..Feed::default()
    };
    feed.write_to(Vec::with_capacity(4096 + articles.len() * 4096))
        .expect("writing XML into memory cannot fail")
}

fn person(name: &str) -> Person {
    Person {
        name: name.to_owned(),
        ..Person::default()
    }
}

fn link(href: &str, rel: &str, mime_type: &str) -> Link {
    Link {
        href: href.to_owned(),
        rel: rel.to_owned(),
        mime_type: Some(mime_type.to_owned()),
        ..Link::default()
    }
}

fn entry(meta: &FeedMeta, article: &Article) -> Entry {
    let content = &article.content;
    Entry {
        title: Text::plain(content.title.clone()),
        id: article.guid.clone(),
        updated: meta.local(article.updated),
        published: Some(meta.local(content.publish_time)),
        authors: content.authors.iter().map(|name| person(name)).collect(),
        categories: categories(article)
            .map(|term| Category {
                term: term.to_owned(),
                ..Category::default()
            })
            .collect(),
        links: content
            .canonical_url
            .iter()
            .map(|url| link(url, "alternate", "text/html"))
            .collect(),
        summary: Some(Text::plain(content.summary.clone())),
        content: Some(Content {
            value: Some(body_html(article).into_owned()),
            content_type: Some("html".into()),
            ..Content::default()
        }),
        ..Entry::default()
    }
}

#[cfg(test)]
mod tests {
    use super::super::fixtures;
    use super::*;

    #[test]
    fn atom_round_trips_through_an_independent_parser() {
        let articles = fixtures::articles();
        let bytes = render(&fixtures::meta(), &articles);
        let feed = feed_rs::parser::parse(&bytes[..]).unwrap();
        assert_eq!(feed.id, "http://127.0.0.1:8080/feeds/politics/atom.xml");
        assert_eq!(feed.language.as_deref(), Some("zh-CN"));
        assert_eq!(feed.rights.as_ref().unwrap().content, "© 朔州日报社");
        assert_eq!(
            feed.icon.as_ref().unwrap().uri,
            "http://127.0.0.1:8080/icon.png"
        );
        assert_eq!(
            feed.logo.as_ref().unwrap().uri,
            "http://127.0.0.1:8080/logo.png"
        );
        let first = &feed.entries[0];
        assert_eq!(
            first.title.as_ref().unwrap().content,
            "何向荣主持召开 <推进会> & ]]> 会议"
        );
        assert_eq!(first.updated.unwrap(), articles[0].updated);
        let body = first.content.as_ref().unwrap().body.as_ref().unwrap();
        assert_eq!(
            body,
            "<p><strong>副题 &lt;i&gt; &amp; ]]&gt;</strong></p>\n<p>本报讯 a &amp; b ]]&gt; <b>粗</b></p>"
        );
        let categories: Vec<_> = first.categories.iter().map(|c| c.term.as_str()).collect();
        assert_eq!(categories, ["时政 快讯", "私挖滥采"]);
        assert_eq!(first.authors[0].name, "赵福胜");
        let second = &feed.entries[1];
        assert!(second.summary.as_ref().unwrap().content.contains("𠮷"));
    }

    #[test]
    fn atom_dates_carry_the_real_offset() {
        let text = String::from_utf8(render(&fixtures::meta(), &fixtures::articles())).unwrap();
        assert!(
            text.contains("<published>2023-06-07T07:00:00+08:00</published>"),
            "{text}"
        );
        assert!(text.contains(r#"xml:lang="zh-CN""#));
        assert!(text.contains(r#"<link href="http://127.0.0.1:8080/websub" rel="hub"/>"#));
    }
}
