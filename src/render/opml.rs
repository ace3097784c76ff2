//! OPML 2.0 subscription list of every feed, for importing into feed readers.

use html_escape::encode_double_quoted_attribute as attr;
use std::fmt::Write;

/// A group of feeds (one section) in the list.
#[derive(Debug, Clone)]
pub struct OpmlGroup {
    /// Section title, plain text.
    pub title: String,
    /// `(label, absolute feed URL)` for each format.
    pub feeds: Vec<(String, String)>,
}

/// Renders an OPML 2.0 document listing `groups`.
pub fn render(title: &str, site_url: &str, groups: &[OpmlGroup]) -> String {
    let mut opml = String::with_capacity(1024 + groups.len() * 512);
    let _ = write!(
        opml,
        "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<opml version=\"2.0\">\n<head>\n<title>{}</title>\n</head>\n<body>\n",
        html_escape::encode_text(title)
    );
    for group in groups {
        let _ = writeln!(
            opml,
            "<outline text=\"{0}\" title=\"{0}\">",
            attr(&group.title)
        );
        for (label, url) in &group.feeds {
            let _ = writeln!(
                opml,
                "<outline type=\"rss\" text=\"{0}\" title=\"{0}\" xmlUrl=\"{1}\" htmlUrl=\"{2}\"/>",
                attr(label),
                attr(url),
                attr(site_url)
            );
        }
        opml.push_str("</outline>\n");
    }
    opml.push_str("</body>\n</opml>\n");
    opml
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_feed_is_an_outline_and_text_is_escaped() {
        let groups = [OpmlGroup {
            title: "时政 & \"快讯\"".into(),
            feeds: vec![(
                "时政 · RSS 2.0".into(),
                "https://x.cn/feeds/politics/rss.xml?a=1&b=2".into(),
            )],
        }];
        let opml = render("朔州日报 <测试>", "https://x.cn/", &groups);
        assert!(
            opml.contains("<title>朔州日报 &lt;测试&gt;</title>"),
            "{opml}"
        );
        assert!(
            opml.contains(r#"text="时政 &amp; &quot;快讯&quot;""#),
            "{opml}"
        );
        assert!(
            opml.contains(r#"xmlUrl="https://x.cn/feeds/politics/rss.xml?a=1&amp;b=2""#),
            "{opml}"
        );
    }
}
