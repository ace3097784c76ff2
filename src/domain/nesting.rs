//! How deep an HTML body makes the parser nest elements, measured in one linear pass
//! before the sanitiser parses it. The HTML parser's work grows with the square of the
//! depth (each start tag looks through the open elements), and formatting elements left
//! open are opened again in every later block, so a few kilobytes can cost seconds and
//! expand to megabytes. Bodies past the limits below are refused instead.

use std::collections::HashMap;

/// Most elements open inside one another (real articles stay under 20).
pub const MAX_DEPTH: usize = 256;
/// Most formatting elements (`<b>`, `<font>`, …) left open by an end tag of an element
/// around them, which the parser reopens in each later block (real copy leaves a few).
pub const MAX_LEFT_OPEN: usize = 16;

/// What the pass found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Nesting {
    /// The most elements open at once.
    pub depth: usize,
    /// The most formatting elements left open at once, counting each distinct start tag
    /// at most three times, as the parser does.
    pub left_open: usize,
}

impl Nesting {
    /// Why the body is refused, if it is.
    pub fn fault(&self) -> Option<String> {
        if self.depth > MAX_DEPTH {
            Some(format!(
                "nests elements {} deep; at most {MAX_DEPTH} are allowed",
                self.depth
            ))
        } else if self.left_open > MAX_LEFT_OPEN {
            Some(format!(
                "leaves {} formatting elements (such as <b> or <font>) unclosed; at most \
                 {MAX_LEFT_OPEN} are allowed",
                self.left_open
            ))
        } else {
            None
        }
    }
}

/// Elements that hold nothing.
const VOID: &[&str] = &[
    "area", "base", "basefont", "bgsound", "br", "col", "embed", "frame", "hr", "img", "input",
    "keygen", "link", "meta", "param", "source", "track", "wbr",
];
/// Elements a sibling closes (their end tags are optional) or that never nest by
/// themselves: counted through the element around them.
const SELF_CLOSING_BY_SIBLINGS: &[&str] = &[
    "p", "li", "dt", "dd", "option", "optgroup", "tr", "td", "th", "tbody", "thead", "tfoot", "rb",
    "rt", "rtc", "rp", "colgroup", "caption", "html", "head", "body",
];
/// The formatting elements the parser reopens.
const FORMATTING: &[&str] = &[
    "a", "b", "big", "code", "em", "font", "i", "nobr", "s", "small", "strike", "strong", "tt", "u",
];
/// Elements whose content is text up to their end tag.
const RAW_TEXT: &[&str] = &[
    "script", "style", "textarea", "title", "xmp", "iframe", "noembed", "noframes", "noscript",
];

fn is(list: &[&str], name: &str) -> bool {
    list.iter().any(|n| n.eq_ignore_ascii_case(name))
}

/// Measures `html` in one pass over its tags. The estimate errs high: an end tag that
/// does not match an open element is ignored, formatting elements closed by an outer end
/// tag stay counted, and comments and raw text are skipped as the parser skips them.
pub fn measure(html: &str) -> Nesting {
    let bytes = html.as_bytes();
    // Open elements: (name, whole start tag).
    let mut open: Vec<(&str, &str)> = Vec::new();
    let mut left_open: HashMap<&str, usize> = HashMap::new();
    let mut left_open_total = 0;
    let mut found = Nesting::default();
    let mut at = 0;
    while let Some(offset) = memchr::memchr(b'<', &bytes[at..]) {
        let start = at + offset;
        let rest = &html[start..];
        if let Some(comment) = rest.strip_prefix("<!--") {
            at = comment
                .find("-->")
                .map_or(bytes.len(), |end| start + 4 + end + 3);
            continue;
        }
        let end_tag = rest.starts_with("</");
        let name_from = start + if end_tag { 2 } else { 1 };
        let name_len = bytes[name_from..]
            .iter()
            .take_while(|b| b.is_ascii_alphanumeric())
            .count();
        if name_len == 0 || !bytes[name_from].is_ascii_alphabetic() {
            // `<!doctype>`, `<?…>`, a lone `<`: no element.
            at = start + 1;
            continue;
        }
        let name = &html[name_from..name_from + name_len];
        let tag_end = tag_end(bytes, name_from + name_len);
        let tag = &html[start..tag_end];
        at = tag_end;
        if end_tag {
            if let Some(index) = open.iter().rposition(|(n, _)| n.eq_ignore_ascii_case(name)) {
                for (inner, inner_tag) in open.drain(index..).skip(1) {
                    if is(FORMATTING, inner) {
                        let count = left_open.entry(inner_tag).or_insert(0);
                        if *count < 3 {
                            *count += 1;
                            left_open_total += 1;
                        }
                    }
                }
            }
            continue;
        }
        if is(VOID, name) || is(SELF_CLOSING_BY_SIBLINGS, name) {
            continue;
        }
        if name.eq_ignore_ascii_case("plaintext") {
            break;
        }
        if is(RAW_TEXT, name) {
            at = raw_text_end(html, at, name);
            continue;
        }
        open.push((name, tag));
        found.depth = found.depth.max(open.len() + left_open_total);
        found.left_open = found.left_open.max(left_open_total);
    }
    found.left_open = found.left_open.max(left_open_total);
    found
}

/// Where a tag whose name ends at `from` ends: after its `>`, quoted attribute values
/// skipped; the end of the text if it has none.
fn tag_end(bytes: &[u8], from: usize) -> usize {
    let mut quote = None;
    for (i, &b) in bytes.iter().enumerate().skip(from) {
        match (quote, b) {
            (None, b'"' | b'\'') => quote = Some(b),
            (Some(q), _) if b == q => quote = None,
            (None, b'>') => return i + 1,
            _ => {}
        }
    }
    bytes.len()
}

/// Where the raw text of element `name` that starts at `from` ends: after its end tag,
/// or at the end of the text.
fn raw_text_end(html: &str, from: usize, name: &str) -> usize {
    let bytes = html.as_bytes();
    let mut at = from;
    while let Some(offset) = memchr::memmem::find(&bytes[at..], b"</") {
        let start = at + offset + 2;
        let candidate = &bytes[start..];
        if candidate.len() >= name.len()
            && candidate[..name.len()].eq_ignore_ascii_case(name.as_bytes())
        {
            return tag_end(bytes, start + name.len());
        }
        at = start;
    }
    bytes.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ordinary_copy_is_shallow() {
        let article = "<p>第一段<b>加粗</b><a href=\"https://x/\">链接</a></p>\
            <blockquote><p>引文<p>续</blockquote><ul><li>一<li>二</ul>\
            <table><tr><td>格<td>格</table><img src=\"https://x/1.jpg\"><br>";
        let found = measure(&article.repeat(1000));
        assert!(found.depth <= 3, "{found:?}");
        assert_eq!(found.left_open, 0);
        assert_eq!(found.fault(), None);
    }

    #[test]
    fn deep_nesting_is_measured_and_refused() {
        for open in [
            "<blockquote>",
            "<div>",
            "<table><tr><td>",
            "<ul><li>",
            "<span>",
        ] {
            let html = open.repeat(MAX_DEPTH + 1) + "x";
            let found = measure(&html);
            assert_eq!(found.depth, MAX_DEPTH + 1, "{open}");
            assert!(found.fault().unwrap().contains("deep"), "{open}");
            // Closed as deep as it opened, it is still as deep.
            let closed = html + &"</div>".repeat(MAX_DEPTH + 1);
            assert!(measure(&closed).depth > MAX_DEPTH, "{open}");
        }
        // At the limit: accepted.
        let html = "<div>".repeat(MAX_DEPTH) + &"</div>".repeat(MAX_DEPTH);
        assert_eq!(measure(&html.repeat(3)).fault(), None);
    }

    #[test]
    fn end_tags_that_match_nothing_give_no_credit() {
        // `</span>` closes nothing the parser has open here: the divs stay open.
        let html = format!("{}{}", "<div>".repeat(200), "</span>".repeat(200)).repeat(2);
        assert_eq!(measure(&html).depth, 400);
        // Nor does text inside raw-text elements or comments.
        let hidden = format!(
            "{}<textarea>{}</textarea><!-- {} -->{}",
            "<div>".repeat(150),
            "</div>".repeat(150),
            "</div>".repeat(150),
            "<div>".repeat(150)
        );
        assert_eq!(measure(&hidden).depth, 300);
        assert_eq!(measure("<div title=\"</div>\"><div>").depth, 2, "quoted");
    }

    #[test]
    fn formatting_elements_left_open_are_counted_three_times_each_at_most() {
        let distinct: String = (0..=MAX_LEFT_OPEN)
            .map(|i| format!("<b id=a{i}>"))
            .collect();
        let html = format!("<div>{distinct}</div>") + &"<p>x</p>".repeat(100);
        let found = measure(&html);
        assert_eq!(found.left_open, MAX_LEFT_OPEN + 1);
        assert!(found.fault().unwrap().contains("unclosed"));
        // The same tag left open again and again counts three times, as the parser keeps it.
        let sloppy = "<div><font color=red>x</div>".repeat(500);
        assert_eq!(measure(&sloppy).left_open, 3);
        assert_eq!(measure(&sloppy).fault(), None);
    }

    #[test]
    fn odd_input_ends_the_pass_without_panicking() {
        for html in [
            "<",
            "</",
            "<!--",
            "<a",
            "<a href=\"",
            "<script>",
            "<1>",
            "<<<>>>",
            "</x",
            "<plaintext><div>",
        ] {
            let _ = measure(html);
        }
        assert_eq!(measure("<plaintext>").depth, 0);
    }
}
