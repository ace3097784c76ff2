//! What the corpus tests check in a feed, written independently of the product's code:
//! characters a feed must never carry, the cleaning ingest promises, and a scanner for
//! markup that could run script in a reader.

/// True for characters ingest removes and no feed may carry: C0 controls other than tab,
/// LF and CR, DEL, the C1 controls (U+0080–U+009F), and the Unicode non-characters (U+FDD0–U+FDEF and every
/// U+xxFFFE/U+xxFFFF, U+FFFE and U+FFFF among them). Lone surrogates cannot occur in a
/// Rust `String`; the corpus sends them as raw bytes instead.
pub fn is_forbidden(c: char) -> bool {
    let cp = u32::from(c);
    (cp < 0x20 && !matches!(c, '\t' | '\n' | '\r'))
        || (0x7f..=0x9f).contains(&cp)
        || (0xfdd0..=0xfdef).contains(&cp)
        || cp & 0xfffe == 0xfffe
}

/// How many forbidden characters `text` holds.
pub fn forbidden_count(text: &str) -> usize {
    text.chars().filter(|&c| is_forbidden(c)).count()
}

/// A title, subtitle, kicker, name or tag as ingest documents it: forbidden characters
/// removed, every run of white space folded into one space, no space at either end.
pub fn clean_line(raw: &str) -> String {
    use unicode_normalization::UnicodeNormalization;
    let kept: String = raw.chars().filter(|&c| !is_forbidden(c)).nfc().collect();
    kept.split(char::is_whitespace)
        .filter(|word| !word.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

/// An author name or tag as stored: [`clean_line`], without the zero-width characters a
/// name carries nothing in (U+200B, U+2060, U+FEFF), in Unicode NFC, white space folded.
pub fn name_line(raw: &str) -> String {
    use unicode_normalization::UnicodeNormalization;
    let kept: String = clean_line(raw)
        .chars()
        .filter(|c| !matches!(c, '\u{200b}' | '\u{2060}' | '\u{feff}'))
        .nfc()
        .collect();
    clean_line(&kept)
}

/// True when `text` holds something an HTML entity decoder could turn into another
/// character (`&name;`, `&#…`, or a legacy `&amp`-style reference): the issue asks for
/// named entities in plain-text fields to be decoded, so such fields have no single
/// exact expectation in the corpus and are checked by a dedicated test instead.
pub fn has_entity_like(text: &str) -> bool {
    text.match_indices('&').any(|(at, _)| {
        text[at + 1..]
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphanumeric() || c == '#')
    })
}

/// Every forbidden character in a feed document, grouped by character, with how often and
/// where it first is: in the text itself, or written as a character reference (`&#1;`),
/// which XML 1.0 forbids just the same and an HTML parser turns into the character.
pub fn forbidden_in_document(text: &str) -> Vec<String> {
    let mut found: Vec<(String, usize, usize)> = Vec::new();
    let mut note = |what: String, at: usize| match found.iter_mut().find(|f| f.0 == what) {
        Some(seen) => seen.1 += 1,
        None => found.push((what, 1, at)),
    };
    for (at, c) in text.char_indices().filter(|(_, c)| is_forbidden(*c)) {
        note(format!("U+{:04X}", u32::from(c)), at);
    }
    for (at, _) in text.match_indices("&#") {
        let rest = &text[at + 2..];
        let (digits, radix) = match rest.strip_prefix(['x', 'X']) {
            Some(hex) => (hex, 16),
            None => (rest, 10),
        };
        let end = digits.find(';').unwrap_or(0);
        let bad = match u32::from_str_radix(&digits[..end], radix).map(char::from_u32) {
            Ok(Some(c)) => is_forbidden(c),
            // A surrogate, out-of-range or malformed reference: never valid XML either.
            _ => true,
        };
        if bad {
            let len = (text.len() - at).min(2 + (rest.len() - digits.len()) + end + 1);
            note(format!("reference {:?}", &text[at..at + len]), at);
        }
    }
    found
        .into_iter()
        .map(|(what, count, at)| format!("{what} ×{count}, first at byte {at}"))
        .collect()
}

/// True when `text` holds a character reference to a forbidden character (`&#1;`,
/// `&#xFFFE;`), which ingest may decode and then remove, with a warning.
pub fn refers_to_forbidden(text: &str) -> bool {
    forbidden_in_document(text)
        .iter()
        .any(|found| found.starts_with("reference"))
}

/// Every string value inside a JSON document, so each can be checked like XML text.
pub fn json_strings(value: &serde_json::Value, out: &mut Vec<String>) {
    match value {
        serde_json::Value::String(s) => out.push(s.clone()),
        serde_json::Value::Array(items) => items.iter().for_each(|v| json_strings(v, out)),
        serde_json::Value::Object(map) => map.iter().for_each(|(k, v)| {
            out.push(k.clone());
            json_strings(v, out);
        }),
        _ => {}
    }
}

/// Elements that must never reach a reader, whatever their attributes.
const FORBIDDEN_ELEMENTS: &[&str] = &[
    "script",
    "style",
    "svg",
    "math",
    "object",
    "embed",
    "applet",
    "base",
    "meta",
    "link",
    "form",
    "input",
    "button",
    "textarea",
    "select",
    "frame",
    "frameset",
    "template",
    "noscript",
    "xml",
    "html",
    "head",
    "body",
    "title",
    "bgsound",
    "isindex",
    "marquee",
    "xmp",
    "plaintext",
    "noembed",
    "noframes",
    "portal",
];

/// Attributes whose value is a URL (or a list of them) a reader may load or follow.
const URL_ATTRIBUTES: &[&str] = &[
    "href",
    "src",
    "srcset",
    "action",
    "formaction",
    "data",
    "background",
    "poster",
    "lowsrc",
    "dynsrc",
    "cite",
    "xlink:href",
    "longdesc",
    "usemap",
    "ping",
];

/// A tag found in an HTML fragment: its lowercased name and its attributes (lowercased
/// names, raw values).
struct Tag {
    name: String,
    closing: bool,
    attributes: Vec<(String, String)>,
    raw: String,
}

/// The tags of an HTML fragment. Sanitised HTML is serialised markup in which a literal
/// `<` in text is always written `&lt;`, so every `<` starts markup.
fn tags(html: &str) -> Vec<Tag> {
    let mut tags = Vec::new();
    let bytes = html.as_bytes();
    let mut at = 0;
    while let Some(offset) = html[at..].find('<') {
        let start = at + offset;
        let mut i = start + 1;
        let mut quote: Option<u8> = None;
        while i < bytes.len() {
            match (quote, bytes[i]) {
                (None, b'"' | b'\'') => quote = Some(bytes[i]),
                (Some(q), b) if b == q => quote = None,
                (None, b'>') => break,
                _ => {}
            }
            i += 1;
        }
        let raw = &html[start..i.min(html.len())];
        tags.push(parse_tag(raw));
        at = (i + 1).min(html.len());
        if at >= html.len() {
            break;
        }
    }
    tags
}

/// A tag's text with every quoted attribute value left out.
fn outside_quotes(raw: &str) -> String {
    let mut quote = None;
    raw.chars()
        .filter(|&c| match quote {
            None if c == '"' || c == '\'' => {
                quote = Some(c);
                false
            }
            Some(q) => {
                if c == q {
                    quote = None;
                }
                false
            }
            None => true,
        })
        .collect()
}

fn parse_tag(raw: &str) -> Tag {
    let inner = raw.trim_start_matches('<');
    let closing = inner.starts_with('/');
    let inner = inner.trim_start_matches('/');
    let name_end = inner
        .find(|c: char| c.is_whitespace() || c == '/' || c == '>')
        .unwrap_or(inner.len());
    let name = inner[..name_end].to_ascii_lowercase();
    let mut attributes = Vec::new();
    let mut rest = inner[name_end..].trim_start_matches(|c: char| c.is_whitespace() || c == '/');
    while !rest.is_empty() {
        let key_end = rest
            .find(|c: char| c.is_whitespace() || c == '=' || c == '/')
            .unwrap_or(rest.len());
        let key = rest[..key_end].to_ascii_lowercase();
        rest = rest[key_end..].trim_start();
        let mut value = String::new();
        if let Some(after) = rest.strip_prefix('=') {
            let after = after.trim_start();
            let (v, remaining) = match after.chars().next() {
                Some(q @ ('"' | '\'')) => {
                    let body = &after[1..];
                    let end = body.find(q).unwrap_or(body.len());
                    (&body[..end], body.get(end + 1..).unwrap_or(""))
                }
                _ => {
                    let end = after.find(char::is_whitespace).unwrap_or(after.len());
                    (&after[..end], &after[end..])
                }
            };
            value = v.to_owned();
            rest = remaining;
        }
        if !key.is_empty() {
            attributes.push((key, value));
        }
        rest = rest.trim_start_matches(|c: char| c.is_whitespace() || c == '/');
    }
    Tag {
        name,
        closing,
        attributes,
        raw: raw.to_owned(),
    }
}

/// Decodes the character references a browser decodes inside an attribute value, as far as
/// needed to see a URL's scheme: numeric ones and the named ones used to hide schemes.
fn decode_attribute(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    let mut rest = value;
    while let Some(at) = rest.find('&') {
        out.push_str(&rest[..at]);
        rest = &rest[at..];
        let body_end = rest[1..]
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '#'))
            .map_or(rest.len(), |e| e + 1);
        let body = &rest[1..body_end];
        let decoded = if let Some(num) = body.strip_prefix('#') {
            let (digits, radix) = match num.strip_prefix(['x', 'X']) {
                Some(hex) => (hex, 16),
                None => (num, 10),
            };
            u32::from_str_radix(digits, radix)
                .ok()
                .map(|n| char::from_u32(n).unwrap_or('\u{fffd}'))
        } else {
            match body.to_ascii_lowercase().as_str() {
                "amp" => Some('&'),
                "lt" => Some('<'),
                "gt" => Some('>'),
                "quot" => Some('"'),
                "apos" => Some('\''),
                "colon" => Some(':'),
                "tab" => Some('\t'),
                "newline" => Some('\n'),
                "nbsp" => Some('\u{a0}'),
                _ => None,
            }
        };
        match decoded {
            Some(c) => {
                out.push(c);
                rest = &rest[body_end..];
                rest = rest.strip_prefix(';').unwrap_or(rest);
            }
            None => {
                out.push('&');
                rest = &rest[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// The scheme of a URL as a browser parses it (WHATWG URL: leading and trailing C0 controls
/// and spaces stripped, tabs and newlines removed, then ASCII letter followed by letters,
/// digits, `+`, `-` or `.` up to a `:`), lowercased; `None` for a relative URL.
fn scheme(url: &str) -> Option<String> {
    let decoded = decode_attribute(url);
    let squeezed: String = decoded
        .trim_matches(|c: char| c <= ' ')
        .chars()
        .filter(|c| !matches!(c, '\t' | '\n' | '\r'))
        .collect();
    let (scheme, _) = squeezed.split_once(':')?;
    let mut chars = scheme.chars();
    let valid = chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
    valid.then(|| scheme.to_ascii_lowercase())
}

/// Everything in a sanitised HTML fragment that could run script, load a stylesheet or
/// escape the allowlist in a reader; empty when the fragment is safe.
pub fn unsafe_markup(html: &str) -> Vec<String> {
    let mut problems = Vec::new();
    let lower = html.to_lowercase();
    if lower.contains("<script") {
        problems.push("`<script` survives".to_owned());
    }
    for tag in tags(html) {
        // Outside quoted values only: `title=" onload="` is text, not a handler.
        let raw_lower = outside_quotes(&tag.raw).to_lowercase();
        // `javascript:` is checked where it matters, as a URL scheme below: as text, or as
        // part of a relative URL such as "`javascript:x" or "java\u{fffd}script:x", it
        // runs nothing.
        for needle in ["onerror=", "onload="] {
            if raw_lower.contains(needle) {
                problems.push(format!("`{needle}` inside markup: {}", tag.raw));
            }
        }
        if tag.name.starts_with('!') || tag.name.starts_with('?') {
            problems.push(format!("comment or declaration survives: {}", tag.raw));
            continue;
        }
        if tag.closing {
            continue;
        }
        let sandboxed = tag.attributes.iter().any(|(k, _)| k == "sandbox");
        if FORBIDDEN_ELEMENTS.contains(&tag.name.as_str()) || (tag.name == "iframe" && !sandboxed) {
            problems.push(format!("<{}> survives: {}", tag.name, tag.raw));
        }
        for (key, value) in &tag.attributes {
            if key.starts_with("on") {
                problems.push(format!("event handler `{key}` survives: {}", tag.raw));
            }
            if key == "style" {
                problems.push(format!("`style` attribute survives: {}", tag.raw));
            }
            if URL_ATTRIBUTES.contains(&key.as_str()) {
                let urls: Vec<&str> = if key == "srcset" || key == "ping" {
                    value
                        .split(',')
                        .filter_map(|candidate| candidate.split_whitespace().next())
                        .collect()
                } else {
                    vec![value.as_str()]
                };
                for url in urls {
                    if let Some(s) = scheme(url)
                        && !matches!(s.as_str(), "http" | "https" | "mailto")
                    {
                        problems.push(format!("`{s}:` URL in `{key}`: {}", tag.raw));
                    }
                }
            }
        }
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_scanner_finds_what_sanitising_must_remove() {
        assert!(
            unsafe_markup(r#"<p>a &lt;script&gt; b</p><a href="https://x/" rel="noopener">x</a>"#)
                .is_empty()
        );
        assert!(unsafe_markup("<p>javascript: is text here</p>").is_empty());
        assert!(unsafe_markup("<p title=\" onload=\"></p>").is_empty());
        assert!(!unsafe_markup("<p title=\"\" onload=x></p>").is_empty());
        // Not a scheme, so relative URLs: a browser resolves them against the page.
        assert!(unsafe_markup("<img src=\"`javascript:alert(1)\">").is_empty());
        assert!(unsafe_markup("<a href=\"java\u{fffd}script:alert(1)\">x</a>").is_empty());
        for bad in [
            "<script>x</script>",
            r#"<img src="x" onerror="y">"#,
            r#"<a href="jav&#x09;ascript:alert(1)">x</a>"#,
            r#"<a href=" &#14; javascript:alert(1)">x</a>"#,
            r#"<img srcset="a.png 1x, data:image/svg+xml,x 2x">"#,
            "<svg></svg>",
            r#"<iframe src="https://x/"></iframe>"#,
            r#"<p style="x">y</p>"#,
        ] {
            assert!(!unsafe_markup(bad).is_empty(), "{bad}");
        }
    }

    #[test]
    fn cleaning_removes_forbidden_characters_and_folds_white_space() {
        assert_eq!(clean_line(" a\u{1}b \u{3000}\n c\u{fffe} "), "ab c");
        assert_eq!(
            forbidden_count("\u{0}\u{1f}\u{7f}\u{fdd0}\u{1ffff}\t\n\r"),
            5
        );
        assert!(has_entity_like("AT&amp;T") && has_entity_like("&#1;"));
        assert!(!has_entity_like("a ]]> & <b>"));
    }

    #[test]
    fn documents_with_forbidden_references_are_caught() {
        assert_eq!(forbidden_in_document("a &#1; b &#x41; &#xFFFE;").len(), 2);
        assert!(forbidden_in_document("&amp;#1; is escaped text").is_empty());
    }
}
