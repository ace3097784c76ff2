//! Text hygiene at ingest: characters XML cannot carry, HTML sanitising, plain-text extraction, summaries.

use std::sync::LazyLock;
use unicode_segmentation::UnicodeSegmentation;

/// True for characters that must never reach a feed: C0 controls other than tab, LF and CR,
/// DEL, and Unicode non-characters (U+FDD0–U+FDEF and every U+xxFFFE/U+xxFFFF).
fn is_forbidden(c: char) -> bool {
    let cp = c as u32;
    (cp < 0x20 && !matches!(c, '\t' | '\n' | '\r'))
        || cp == 0x7f
        || (0xfdd0..=0xfdef).contains(&cp)
        || (cp & 0xfffe) == 0xfffe
}

/// Text cleaned of forbidden characters, with how many were removed.
pub(crate) struct Cleaned {
    pub text: String,
    pub removed: usize,
}

/// Removes forbidden characters; `single_line` also folds every run of white space
/// (newlines included) into one space, for titles and names.
pub(crate) fn clean(raw: &str, single_line: bool) -> Cleaned {
    let mut text = String::with_capacity(raw.len());
    let mut removed = 0;
    let mut pending_space = false;
    let mut after_cr = false;
    for c in raw.chars() {
        let was_after_cr = std::mem::replace(&mut after_cr, c == '\r');
        if is_forbidden(c) {
            removed += 1;
        } else if single_line && c.is_whitespace() {
            pending_space = !text.is_empty();
        } else if c == '\r' {
            // CRLF and lone CR both become LF.
            text.push('\n');
        } else if c == '\n' && was_after_cr {
            // The LF of a CRLF pair, already written.
        } else {
            if pending_space {
                text.push(' ');
                pending_space = false;
            }
            text.push(c);
        }
    }
    let text = if single_line {
        text
    } else {
        text.trim().to_owned()
    };
    Cleaned { text, removed }
}

static SANITIZER: LazyLock<ammonia::Builder<'static>> = LazyLock::new(|| {
    let mut builder = ammonia::Builder::empty();
    builder
        .add_tags([
            "p",
            "br",
            "h2",
            "h3",
            "h4",
            "h5",
            "h6",
            "ul",
            "ol",
            "li",
            "blockquote",
            "figure",
            "figcaption",
            "img",
            "a",
            "table",
            "caption",
            "thead",
            "tbody",
            "tfoot",
            "tr",
            "th",
            "td",
            "em",
            "strong",
            "b",
            "i",
            "sub",
            "sup",
            "hr",
        ])
        .add_tag_attributes("img", ["src", "srcset", "alt", "width", "height"])
        .add_tag_attributes("a", ["href"])
        .add_tag_attributes("th", ["colspan", "rowspan", "scope"])
        .add_tag_attributes("td", ["colspan", "rowspan"])
        .url_schemes(["http", "https", "mailto"].into())
        .link_rel(Some("noopener noreferrer"))
        .strip_comments(true);
    builder
});

/// Sanitises partner HTML by a news allowlist: no script, style, event handlers,
/// `javascript:` or `data:` URLs; links get `rel="noopener noreferrer"`.
pub fn sanitize_html(html: &str) -> String {
    SANITIZER.clean(html).to_string()
}

/// Tags after which text continues on a new line.
const BLOCK_TAGS: &[&str] = &[
    "p",
    "br",
    "li",
    "div",
    "h1",
    "h2",
    "h3",
    "h4",
    "h5",
    "h6",
    "blockquote",
    "tr",
    "figcaption",
    "table",
    "hr",
];

/// The readable text of an HTML fragment: tags dropped, entities decoded, blocks on their own lines.
pub fn html_to_text(html: &str) -> String {
    let mut marked = String::with_capacity(html.len() + 16);
    let mut rest = html;
    while let Some(pos) = rest.find('<') {
        marked.push_str(&rest[..pos]);
        let tag = rest[pos + 1..].trim_start_matches('/');
        let name_len = tag
            .find(|c: char| !c.is_ascii_alphanumeric())
            .unwrap_or(tag.len());
        if BLOCK_TAGS
            .iter()
            .any(|b| b.eq_ignore_ascii_case(&tag[..name_len]))
        {
            marked.push('\n');
        }
        marked.push('<');
        rest = &rest[pos + 1..];
    }
    marked.push_str(rest);
    let stripped = ammonia::Builder::empty().clean(&marked).to_string();
    let decoded = html_escape::decode_html_entities(&stripped);
    decoded
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty())
        .collect::<Vec<_>>()
        .join("\n\n")
}

/// Plain text as HTML: paragraphs (split on blank lines) in `<p>`, line breaks as `<br>`.
pub fn text_to_html(text: &str) -> String {
    let mut html = String::with_capacity(text.len() + 64);
    for paragraph in text.split("\n\n").map(str::trim).filter(|p| !p.is_empty()) {
        if !html.is_empty() {
            html.push('\n');
        }
        html.push_str("<p>");
        for (i, line) in paragraph.lines().enumerate() {
            if i > 0 {
                html.push_str("<br>");
            }
            html.push_str(&html_escape::encode_text(line));
        }
        html.push_str("</p>");
    }
    html
}

/// The first `max_graphemes` user-perceived characters of `text`, white space folded,
/// cut on a grapheme boundary and marked with `…` when cut.
pub fn summarize(text: &str, max_graphemes: usize) -> String {
    let folded = text.split_whitespace().collect::<Vec<_>>().join(" ");
    match folded.grapheme_indices(true).nth(max_graphemes) {
        None => folded,
        Some((cut, _)) => format!("{}…", folded[..cut].trim_end()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clean_removes_controls_and_noncharacters_but_keeps_text() {
        let cleaned = clean("a\u{0}b\u{1b}c\u{fffe}d\u{ffff}e\u{fdd0}𠮷\t]]>&<", false);
        assert_eq!(cleaned.text, "abcde𠮷\t]]>&<");
        assert_eq!(cleaned.removed, 5);
    }

    #[test]
    fn multi_line_clean_normalises_line_endings() {
        assert_eq!(
            clean(" 甲\r\n乙\r丙\n\n丁 ", false).text,
            "甲\n乙\n丙\n\n丁"
        );
    }

    #[test]
    fn single_line_clean_folds_white_space() {
        assert_eq!(
            clean("  传承红色基因 \n 培育时代新人 ", true).text,
            "传承红色基因 培育时代新人"
        );
    }

    #[test]
    fn sanitizing_drops_script_and_event_handlers_and_marks_links() {
        let html = sanitize_html(
            r#"<p onclick="x()">正文<script>alert(1)</script><a href="javascript:alert(1)">a</a><a href="https://example.com/">b</a></p>"#,
        );
        assert!(
            !html.contains("script") && !html.contains("onclick") && !html.contains("javascript")
        );
        assert!(html.contains(r#"<a href="https://example.com/" rel="noopener noreferrer">b</a>"#));
    }

    #[test]
    fn sanitizing_twice_changes_nothing() {
        let once = sanitize_html("<p>a &amp; b <b>c<i>d</p><img src=x onerror=y>");
        assert_eq!(sanitize_html(&once), once);
    }

    #[test]
    fn html_to_text_keeps_paragraphs_apart_and_decodes_entities() {
        assert_eq!(
            html_to_text("<p>甲&amp;乙</p><p>丙<br>丁</p>"),
            "甲&乙\n\n丙\n\n丁"
        );
    }

    #[test]
    fn text_to_html_escapes_and_makes_paragraphs() {
        assert_eq!(
            text_to_html("a < b & c\n\n来信地址\n联系电话"),
            "<p>a &lt; b &amp; c</p>\n<p>来信地址<br>联系电话</p>"
        );
    }

    #[test]
    fn summaries_cut_on_grapheme_boundaries() {
        assert_eq!(summarize("👩‍👩‍👧家庭", 1), "👩‍👩‍👧…");
        assert_eq!(summarize("短文", 10), "短文");
        assert_eq!(summarize("一二三四", 2), "一二…");
    }
}
