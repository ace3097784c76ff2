//! Text hygiene at ingest: characters XML cannot carry, HTML sanitising, plain-text extraction, summaries.

use std::cell::RefCell;
use unicode_segmentation::UnicodeSegmentation;

/// True for characters that must never reach a feed: C0 controls other than tab, LF and CR,
/// DEL and the C1 controls (XML 1.0 discourages them; readers show them as stray letters),
/// and Unicode non-characters (U+FDD0–U+FDEF and every U+xxFFFE/U+xxFFFF).
pub(crate) fn is_forbidden(c: char) -> bool {
    let cp = c as u32;
    (cp < 0x20 && !matches!(c, '\t' | '\n' | '\r'))
        || (0x7f..=0x9f).contains(&cp)
        || (0xfdd0..=0xfdef).contains(&cp)
        || (cp & 0xfffe) == 0xfffe
}

/// True for characters that show nothing by themselves: white space, the default-ignorable
/// code points (zero-width spaces and joiners, bidi and other format controls, variation
/// selectors, tags, the soft hyphen, Hangul fillers), the format controls of interlinear
/// annotation and of Egyptian hieroglyphs, and blanks that look like text to a program but
/// like nothing to a reader (U+2800 BRAILLE PATTERN BLANK).
pub(crate) fn is_invisible(c: char) -> bool {
    c.is_whitespace()
        || matches!(
            c,
            '\u{ad}'
                | '\u{34f}'
                | '\u{61c}'
                | '\u{115f}'
                | '\u{1160}'
                | '\u{17b4}'
                | '\u{17b5}'
                | '\u{180b}'..='\u{180f}'
                | '\u{200b}'..='\u{200f}'
                | '\u{202a}'..='\u{202e}'
                | '\u{2060}'..='\u{206f}'
                | '\u{2800}'
                | '\u{3164}'
                | '\u{fe00}'..='\u{fe0f}'
                | '\u{feff}'
                | '\u{ffa0}'
                | '\u{fff0}'..='\u{fffb}'
                | '\u{13430}'..='\u{1343f}'
                | '\u{1bca0}'..='\u{1bca3}'
                | '\u{1d173}'..='\u{1d17a}'
                | '\u{e0000}'..='\u{e0fff}'
        )
}

/// True when `text` has nothing a reader can see: empty, or only [`is_invisible`]
/// characters. A required title or a name must have more.
pub(crate) fn is_blank(text: &str) -> bool {
    text.chars().all(is_invisible)
}

/// True when sanitised HTML shows an image or an embed, which a body may consist of alone.
pub(crate) fn shows_media(html: &str) -> bool {
    ["<img ", "<iframe "].iter().any(|open| {
        html.split(open).skip(1).any(|rest| {
            let tag = rest.split('>').next().unwrap_or("");
            ["src=\"", "srcset=\""]
                .iter()
                .any(|attr| tag.starts_with(attr) || tag.contains(&format!(" {attr}")))
        })
    })
}

/// `name` without the ideographic spaces (U+3000) that pad it between two East Asian
/// wide characters, when it is made of nothing else: a two-character Chinese name is
/// padded to the width of three in print ("王　芳"), and is the name 王芳, with its feeds.
/// `None` when there are none, or the name holds anything else ("记者 全角　空格" keeps its
/// spaces, as other white space).
pub(crate) fn without_padding(name: &str) -> Option<String> {
    let name = name.trim();
    if !name.contains('\u{3000}') || !name.chars().all(|c| c == '\u{3000}' || is_wide(c)) {
        return None;
    }
    let chars: Vec<char> = name.chars().collect();
    let mut kept = String::with_capacity(name.len());
    let mut changed = false;
    let mut at = 0;
    while at < chars.len() {
        let c = chars[at];
        if c != '\u{3000}' {
            kept.push(c);
            at += 1;
            continue;
        }
        let end = chars[at..]
            .iter()
            .position(|c| *c != '\u{3000}')
            .map_or(chars.len(), |n| at + n);
        let between_wide = kept.chars().next_back().is_some_and(is_wide)
            && chars.get(end).is_some_and(|c| is_wide(*c));
        if between_wide {
            changed = true;
        } else {
            kept.extend(&chars[at..end]);
        }
        at = end;
    }
    changed.then_some(kept)
}

/// An author name or tag as it is stored and slugged: in Unicode NFC, so that "José"
/// typed precomposed or with a combining accent is one name with one feed, and without the
/// invisible characters that carry nothing in a name ([`invisible_in_names`]), which would
/// make two names that look the same, with feeds whose titles look the same. The joiners
/// U+200C and U+200D are kept between two letters, marks or symbols that are not East
/// Asian wide: they shape Persian, Indic and emoji names; beside a Chinese character,
/// another joiner, a space, or at either end, they shape nothing.
///
/// A bidirectional embedding, override or isolate that encloses the whole name is removed
/// too: shown alone, as a name is in a feed, it changes nothing of a name written in one
/// direction, and "\u{202b}محمد\u{202c}" would be a second name, with feeds of its own,
/// beside "محمد"; one that reverses Latin letters (U+202E) only disguised them.
///
/// `name` is a single line as [`clean`] leaves it (its bidirectional controls balanced);
/// white space is folded again where a removed character stood between spaces or at an end.
/// The result is its own normal form: what one removal exposes is removed too (a joiner
/// left at the end once an embedding that enclosed the name goes, an embedding that
/// encloses the name once a joiner before it goes).
pub(crate) fn normalize_name(name: &str) -> String {
    let mut name = normalize_name_once(name);
    // After the first pass a pass only removes characters: this ends.
    loop {
        let again = normalize_name_once(&name);
        if again == name {
            return name;
        }
        name = again;
    }
}

/// One pass of [`normalize_name`].
fn normalize_name_once(name: &str) -> String {
    use unicode_normalization::UnicodeNormalization;
    let mut visible: Vec<char> = Vec::with_capacity(name.len());
    for c in name.chars() {
        let kept = match c {
            // A variation selector after an emoji, a digit or a symbol makes it an emoji or
            // a keycap (1️⃣); after a Chinese character, a joiner or nothing it shows nothing.
            '\u{fe00}'..='\u{fe0f}' => visible.last().is_some_and(|p| {
                !p.is_whitespace()
                    && !is_wide(*p)
                    && !matches!(p, '\u{200c}' | '\u{200d}' | '\u{fe00}'..='\u{fe0f}')
                    && !TAGS.contains(p)
            }),
            // Tag characters spell a regional flag after the black flag (🏴󠁧󠁢󠁳󠁣󠁴󠁿), and nothing
            // elsewhere.
            c if TAGS.contains(&c) => visible
                .last()
                .is_some_and(|p| *p == '\u{1f3f4}' || TAGS.contains(p)),
            c => !invisible_in_names(c),
        };
        if kept {
            visible.push(c);
        }
    }
    let shaping = |at: usize| {
        let outside = |c: Option<&char>| {
            c.is_none_or(|c| {
                c.is_whitespace() || is_wide(*c) || matches!(c, '\u{200c}' | '\u{200d}')
            })
        };
        !outside(at.checked_sub(1).and_then(|before| visible.get(before)))
            && !outside(visible.get(at + 1))
    };
    let normalized: String = visible
        .iter()
        .enumerate()
        .filter(|(at, c)| !matches!(c, '\u{200c}' | '\u{200d}') || shaping(*at))
        .map(|(_, c)| *c)
        .nfc()
        .collect();
    // One line already (see above): no line break to join across.
    fold_lines(unwrapped(&without_empty_controls(&normalized)))
}

/// `name` without the bidirectional controls that enclose nothing but white space and show
/// nothing: "王芳\u{202a}" (closed at the end of the line, as [`clean`] closes an opener left
/// open) would be a second name, with feeds of its own, beside "王芳". Such an embedding or
/// override goes wherever it stands (the bidirectional algorithm removes them, UAX #9
/// X9); an isolate only at either end of the name: within it, an isolate is a neutral
/// character, which may reorder what stands beside it ("1\u{2066}\u{2069}2" shows its
/// digits apart in right-to-left text). The innermost such pairs go; [`normalize_name`]'s
/// passes take the ones they enclosed.
fn without_empty_controls(name: &str) -> std::borrow::Cow<'_, str> {
    let chars: Vec<char> = name.chars().collect();
    let blank = |range: &[char]| range.iter().all(|c| c.is_whitespace());
    let closes = |at: usize, next: usize| match chars[at] {
        '\u{202a}' | '\u{202b}' | '\u{202d}' | '\u{202e}' => chars[next] == '\u{202c}',
        '\u{2066}'..='\u{2068}' => {
            chars[next] == '\u{2069}' && (blank(&chars[..at]) || blank(&chars[next + 1..]))
        }
        _ => false,
    };
    let mut dropped = vec![false; chars.len()];
    for at in 0..chars.len() {
        let next = chars[at + 1..]
            .iter()
            .position(|c| !c.is_whitespace())
            .map(|skip| at + 1 + skip);
        if let Some(next) = next
            && closes(at, next)
        {
            dropped[at] = true;
            dropped[next] = true;
        }
    }
    if !dropped.contains(&true) {
        return std::borrow::Cow::Borrowed(name);
    }
    std::borrow::Cow::Owned(
        chars
            .iter()
            .zip(dropped)
            .filter(|(_, dropped)| !dropped)
            .map(|(c, _)| *c)
            .collect(),
    )
}

/// The tag characters, which spell a subdivision's flag after the black flag.
const TAGS: std::ops::RangeInclusive<char> = '\u{e0020}'..='\u{e007f}';

/// Characters that show nothing in a name and change nothing of how it reads: the soft
/// hyphen, the combining grapheme joiner, Hangul fillers, the zero-width space, the word
/// joiner and the invisible operators after it, deprecated format controls, variation
/// selectors (a glyph's variant, not another name; those that make an emoji are kept, see
/// [`normalize_name`]), the byte order mark and the tag characters (kept in a flag).
fn invisible_in_names(c: char) -> bool {
    matches!(
        c,
        '\u{ad}'
            | '\u{34f}'
            | '\u{115f}'
            | '\u{1160}'
            | '\u{17b4}'
            | '\u{17b5}'
            | '\u{200b}'
            | '\u{2060}'..='\u{2064}'
            | '\u{206a}'..='\u{206f}'
            | '\u{3164}'
            | '\u{fe00}'..='\u{fe0f}'
            | '\u{feff}'
            | '\u{ffa0}'
            | '\u{e0000}'..='\u{e0fff}'
    )
}

/// `name` without the bidirectional controls that enclose all of it: an opener at its start
/// whose closer is its last character, again and again. `name` is balanced.
fn unwrapped(mut name: &str) -> &str {
    loop {
        let trimmed = name.trim();
        let mut chars = trimmed.char_indices();
        let Some((_, first)) = chars.next() else {
            return trimmed;
        };
        if !matches!(first, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2068}') {
            return trimmed;
        }
        // Open embeddings (false) and isolates (true), as `balance_bidi` keeps them.
        let mut open = vec![matches!(first, '\u{2066}'..='\u{2068}')];
        let mut closed_at = None;
        for (at, c) in chars {
            match c {
                '\u{202a}' | '\u{202b}' | '\u{202d}' | '\u{202e}' => open.push(false),
                '\u{2066}'..='\u{2068}' => open.push(true),
                '\u{202c}' if open.last() == Some(&false) => {
                    open.pop();
                }
                '\u{2069}' if open.contains(&true) => while let Some(false) = open.pop() {},
                _ => {}
            }
            if open.is_empty() {
                closed_at = Some((at, c));
                break;
            }
        }
        match closed_at {
            Some((at, last)) if at + last.len_utf8() == trimmed.len() => {
                name = &trimmed[first.len_utf8()..at];
            }
            _ => return trimmed,
        }
    }
}

/// Text cleaned of forbidden characters, with how many were removed.
pub(crate) struct Cleaned {
    pub text: String,
    pub removed: usize,
    /// Line breaks folded into spaces in a single line.
    pub folded: usize,
    /// Bidirectional controls closed or removed to balance a single line.
    pub bidi_balanced: usize,
}

/// Removes forbidden characters; `single_line` also folds every run of white space
/// (newlines included) into one space, for titles and names.
pub(crate) fn clean(raw: &str, single_line: bool) -> Cleaned {
    // Most copy has nothing to remove or rewrite: one scan, then one copy, rather than
    // pushing it a character at a time.
    if !single_line && !may_need_cleaning(raw) {
        return Cleaned {
            text: raw.trim().to_owned(),
            removed: 0,
            folded: 0,
            bidi_balanced: 0,
        };
    }
    let mut text = String::with_capacity(raw.len());
    let mut removed = 0;
    let mut folded = 0;
    let mut pending_breaks = 0;
    let mut pending_space = false;
    let mut after_cr = false;
    for c in raw.chars() {
        let was_after_cr = std::mem::replace(&mut after_cr, c == '\r');
        if is_forbidden(c) {
            removed += 1;
        } else if single_line && c.is_whitespace() {
            // A CRLF pair is one break; breaks before the first word or after the last are
            // trimmed, not folded.
            if (matches!(c, '\n' | '\u{b}' | '\u{c}' | '\u{2028}' | '\u{2029}') && !was_after_cr)
                || c == '\r'
            {
                pending_breaks += usize::from(!text.is_empty());
            }
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
                folded += std::mem::take(&mut pending_breaks);
            }
            text.push(c);
        }
    }
    let (text, bidi_balanced) = if single_line {
        balance_bidi(text)
    } else {
        (text.trim().to_owned(), 0)
    };
    Cleaned {
        text,
        removed,
        folded,
        bidi_balanced,
    }
}

/// Plain `text` in Unicode NFC: one headline typed with precomposed letters or with
/// combining marks (by two systems, say) is stored, shown and compared as one string, and
/// Hangul jamo show as syllables. Copy is mostly in NFC already, and mostly characters
/// that cannot change under it (ASCII and Latin-1, CJK ideographs and punctuation): those
/// are not normalised. Never markup: NFC composes `>` and a following U+0338 into `≯`,
/// which would unmake the tag.
pub(crate) fn composed(text: String) -> String {
    if composes(&text) {
        use unicode_normalization::UnicodeNormalization;
        text.nfc().collect()
    } else {
        text
    }
}

/// True when [`composed`] would change `text`.
pub(crate) fn composes(text: &str) -> bool {
    use unicode_normalization::{IsNormalized, UnicodeNormalization, is_nfc_quick};
    let stable = |c: char| c < '\u{300}' || stands_alone(c);
    !(text.chars().all(stable)
        || is_nfc_quick(text.chars()) == IsNormalized::Yes
        || text.nfc().eq(text.chars()))
}

/// False when `raw` has no carriage return and no [`is_forbidden`] character; true when it
/// may have one. Read in bytes, each with the one after it, without decoding characters:
/// controls are single bytes, the C1 controls are C2 80–9F, and every non-character starts
/// EF B7 (U+FDD0–U+FDEF) or ends BF BE or BF BF (U+FFFE and U+FFFF of every plane). The
/// bytes are looked at a block at a time without a branch for each, which the compiler
/// turns into vector instructions: a few times faster than a character at a time.
fn may_need_cleaning(raw: &str) -> bool {
    fn flags(byte: u8, next: u8) -> bool {
        ((byte < 0x20) & (byte != b'\t') & (byte != b'\n'))
            | (byte == 0x7f)
            | ((byte == 0xc2) & (0x80..=0x9f).contains(&next))
            | ((byte == 0xef) & (next == 0xb7))
            | ((byte == 0xbf) & ((next == 0xbe) | (next == 0xbf)))
    }
    const BLOCK: usize = 128;
    let bytes = raw.as_bytes();
    let Some((&last, _)) = bytes.split_last() else {
        return false;
    };
    let mut at = 0;
    while at + 1 < bytes.len() {
        let end = (at + BLOCK).min(bytes.len() - 1);
        let flagged = bytes[at..end]
            .iter()
            .zip(&bytes[at + 1..=end])
            .fold(false, |flagged, (&byte, &next)| flagged | flags(byte, next));
        if flagged {
            return true;
        }
        at = end;
    }
    flags(last, 0)
}

/// An embedding, override or isolate, or the closer of one (U+202A–U+202E, U+2066–U+2069):
/// the characters [`balance_bidi`] balances.
pub(crate) fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// A single line (a title, a name, a tag) with its bidirectional controls balanced: every
/// embedding or override (U+202A, U+202B, U+202D, U+202E) left open is closed with U+202C
/// and every isolate (U+2066–U+2068) with U+2069 at the end of the line, and a closer with
/// nothing to close is removed, with the white space it leaves at either end of the text and
/// a space it leaves beside another (as if it had never been sent: the text is cleaned
/// alike when sent back; line breaks stay); with how many were added or removed. Balanced, a control
/// still does what the partner meant within the field, but can no longer reverse or
/// reorder what follows the field where it is shown (a list of names, the feed page, a
/// reader's headline list).
pub(crate) fn balance_bidi(text: String) -> (String, usize) {
    const PDF: char = '\u{202c}';
    const PDI: char = '\u{2069}';
    if !text.chars().any(is_bidi_control) {
        return (text, 0);
    }
    let mut balanced = String::with_capacity(text.len() + 8);
    let mut changed = 0;
    // Open embeddings (false) and isolates (true), innermost last.
    let mut open: Vec<bool> = Vec::new();
    // A closer was removed where white space ends what is kept so far (or nothing is): a
    // space after it would double that.
    let mut after_removed = false;
    let mut removed = false;
    // How many of `open` are isolates: a PDI with none to close is told at once.
    let mut isolates = 0usize;
    let ends_blank = |kept: &str| kept.chars().next_back().is_none_or(char::is_whitespace);
    for c in text.chars() {
        if after_removed && c == ' ' {
            continue;
        }
        after_removed = false;
        match c {
            '\u{202a}' | '\u{202b}' | '\u{202d}' | '\u{202e}' => open.push(false),
            '\u{2066}'..='\u{2068}' => {
                open.push(true);
                isolates += 1;
            }
            // A PDF closes the innermost embedding, never across an isolate.
            PDF if open.last() == Some(&false) => {
                open.pop();
            }
            PDF => {
                changed += 1;
                removed = true;
                after_removed = ends_blank(&balanced);
                continue;
            }
            // A PDI closes the innermost isolate and the embeddings opened inside it, which
            // are closed explicitly first.
            PDI if isolates > 0 => {
                while let Some(false) = open.pop() {
                    balanced.push(PDF);
                    changed += 1;
                }
                isolates -= 1;
            }
            PDI => {
                changed += 1;
                removed = true;
                after_removed = ends_blank(&balanced);
                continue;
            }
            _ => {}
        }
        balanced.push(c);
    }
    if removed && balanced.trim().len() != balanced.len() {
        // A closer removed at either end left white space there.
        balanced = balanced.trim().to_owned();
    }
    while let Some(isolate) = open.pop() {
        balanced.push(if isolate { PDI } else { PDF });
        changed += 1;
    }
    (balanced, changed)
}

/// The HTML allowlist for article bodies: what news needs, nothing that runs.
pub struct HtmlPolicy {
    builder: ammonia::Builder<'static>,
    iframe_hosts: Vec<String>,
    /// The allowlist of versions before, which kept every `cite` as sent: built when first
    /// asked for, by `feedpub import` only.
    cites_as_sent: std::sync::OnceLock<ammonia::Builder<'static>>,
}

/// What the allowlist does with the `cite` of a quotation or an edit.
#[derive(Clone, Copy)]
enum Cites {
    /// Resolved like any other link, or removed when it is not http(s).
    Resolved,
    /// Kept as sent, as versions before did, but for a URL that runs or embeds content
    /// where it is followed ([`runs_content`]): what versions before stored is imported, a
    /// script hidden there is not.
    AsSent,
}

/// A body as the sanitiser leaves it, and how many relative URLs it removed for want of a
/// base to resolve them against.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sanitized {
    pub html: String,
    pub relative_urls_removed: usize,
}

/// Where the relative URLs of the body being sanitised on this thread point, and how many
/// were removed. The allowlist is built once and shared (building it per body would cost
/// a fraction of sanitising a short one), and ammonia takes its rule for relative URLs
/// when it is built: the rule reads the base here, set by [`HtmlPolicy::sanitize_for`]
/// for the length of its (synchronous) call.
#[derive(Default)]
struct RelativeUrls {
    base: Option<url::Url>,
    removed: usize,
    /// Bytes resolving may still add to the body, so that a long base times many short
    /// relative URLs cannot grow a small body a thousandfold; past it, the body is refused.
    growth_left: usize,
    overgrown: bool,
}

thread_local! {
    static RELATIVE_URLS: RefCell<RelativeUrls> = RefCell::default();
}

/// A relative URL (`img/a.png`, `/2023/06/07/`, `//cdn.example.com/a.png`) resolved against
/// the base of the body being sanitised; `None`, counted as removed, when there is no base
/// or the result is not http(s). Feed readers would resolve it against the feed's own
/// host, where it points nowhere.
fn resolve_relative(url: &str) -> Option<String> {
    RELATIVE_URLS.with(|relative| {
        let mut relative = relative.borrow_mut();
        let resolved = relative
            .base
            .as_ref()
            .and_then(|base| base.join(url.trim()).ok())
            .filter(|url| matches!(url.scheme(), "http" | "https"))
            .map(String::from);
        let Some(resolved) = resolved else {
            relative.removed += 1;
            return None;
        };
        match relative.growth_left.checked_sub(resolved.len()) {
            Some(left) => {
                relative.growth_left = left;
                Some(resolved)
            }
            None => {
                relative.overgrown = true;
                None
            }
        }
    })
}

/// ammonia's rule for relative URLs: [`resolve_relative`].
struct ResolveRelative;

impl<'a> ammonia::UrlRelativeEvaluate<'a> for ResolveRelative {
    fn evaluate<'url>(&self, url: &'url str) -> Option<std::borrow::Cow<'url, str>> {
        resolve_relative(url).map(std::borrow::Cow::Owned)
    }
}

/// Sets the base of the relative URLs of the body sanitised on this thread until dropped.
struct BaseSet;

impl BaseSet {
    /// `base` for a body of `len` bytes: resolving its relative URLs may add as many bytes
    /// again as it has, and 4 KiB.
    fn new(base: Option<&url::Url>, len: usize) -> Self {
        RELATIVE_URLS.with(|relative| {
            *relative.borrow_mut() = RelativeUrls {
                base: base.cloned(),
                removed: 0,
                growth_left: len.saturating_add(4096),
                overgrown: false,
            };
        });
        Self
    }

    fn overgrown(&self) -> bool {
        RELATIVE_URLS.with(|relative| relative.borrow().overgrown)
    }

    fn removed(&self) -> usize {
        RELATIVE_URLS.with(|relative| relative.borrow().removed)
    }
}

impl Drop for BaseSet {
    fn drop(&mut self) {
        RELATIVE_URLS.with(|relative| *relative.borrow_mut() = RelativeUrls::default());
    }
}

/// Sandbox of embedded iframes: their scripts run, but in their own origin, and they
/// cannot navigate the reader's page.
const IFRAME_SANDBOX: &str = "allow-scripts allow-same-origin allow-popups allow-presentation";

impl HtmlPolicy {
    /// The news allowlist; iframes are kept only when their `src` is an https URL on one
    /// of `iframe_hosts` (any other iframe loses its `src` and shows nothing).
    pub fn new(iframe_hosts: &[String]) -> Self {
        let iframe_hosts: Vec<String> = iframe_hosts
            .iter()
            .map(|h| h.to_ascii_lowercase())
            .collect();
        Self {
            builder: Self::builder(&iframe_hosts, Cites::Resolved),
            iframe_hosts,
            cites_as_sent: std::sync::OnceLock::new(),
        }
    }

    fn builder(iframe_hosts: &[String], cites: Cites) -> ammonia::Builder<'static> {
        let mut builder = ammonia::Builder::empty();
        builder
            .add_tags([
                "p",
                "br",
                "h1",
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
                // What marks a correction or a quotation, and ruby and direction in names
                // and quotes: dropped, "<del>10</del><ins>12</ins>" would read "1012".
                "del",
                "ins",
                "s",
                "q",
                "code",
                "small",
                "mark",
                "abbr",
                "time",
                "u",
                "ruby",
                "rt",
                "rp",
                "bdi",
                "bdo",
                "wbr",
            ])
            .add_tags(CONTAINER_TAGS)
            .add_generic_attributes(["dir", "lang"])
            .add_tag_attributes("del", ["datetime"])
            .add_tag_attributes("ins", ["datetime"])
            .add_tag_attributes("time", ["datetime"])
            .add_tag_attributes("abbr", ["title"])
            .add_tag_attributes("ol", ["start", "reversed"])
            .add_tag_attributes("img", ["src", "srcset", "alt", "width", "height"])
            .add_tag_attributes("a", ["href"])
            .add_tag_attributes("th", ["colspan", "rowspan", "scope"])
            .add_tag_attributes("td", ["colspan", "rowspan"])
            .url_schemes(["http", "https", "mailto"].into())
            .url_relative(ammonia::UrlRelative::Custom(Box::new(ResolveRelative)))
            .link_rel(Some("noopener noreferrer"))
            .strip_comments(true);
        let hosts = iframe_hosts.to_vec();
        if !hosts.is_empty() {
            builder
                .add_tags(["iframe"])
                .add_tag_attributes(
                    "iframe",
                    ["src", "width", "height", "title", "allowfullscreen"],
                )
                // One forced attribute only: ammonia adds several in no fixed order.
                .set_tag_attribute_value("iframe", "sandbox", IFRAME_SANDBOX);
        }
        builder.attribute_filter(
            move |element, attribute, value| match (element, attribute) {
                ("iframe", "src") => {
                    let allowed = url::Url::parse(value).is_ok_and(|url| {
                        url.scheme() == "https"
                            && url.host_str().is_some_and(|h| hosts.iter().any(|a| a == h))
                    });
                    allowed.then(|| value.into())
                }
                // ammonia checks the schemes of src and href, not of srcset candidates,
                // nor of the cite of a quotation or an edit (which readers follow too).
                (_, "srcset") => filter_srcset(value).map(Into::into),
                (_, "cite") => match (cites, web_url(value.trim())) {
                    (Cites::AsSent, _) => (!runs_content(value)).then(|| value.into()),
                    (_, Some(WebUrl::Absolute)) => Some(value.into()),
                    (_, Some(WebUrl::Relative)) => resolve_relative(value.trim()).map(Into::into),
                    (_, None) => None,
                },
                _ => Some(value.into()),
            },
        );
        builder
    }

    /// Sanitises partner HTML with no base for its relative URLs, which are removed: see
    /// [`HtmlPolicy::sanitize_for`].
    pub fn sanitize(&self, html: &str) -> Result<String, String> {
        self.sanitize_for(html, None)
            .map(|sanitized| sanitized.html)
    }

    /// Sanitises partner HTML: no script, style, event handlers, `javascript:` or `data:`
    /// URLs, svg or math; links get `rel="noopener noreferrer"`; relative URLs (in `href`,
    /// `src` and `srcset`) are resolved against `base` (the article's canonical URL), or
    /// removed when there is none. Idempotent: the result is cleaned again until it no
    /// longer changes, since one pass over misnested input (a `<p>` left inside a `<p>`)
    /// can produce HTML that parses differently.
    ///
    /// The input of every pass is measured first ([`super::nesting::measure`]): a pass's
    /// output can misnest again (a `<p>` inside a `<p>`, a marker such as `<object>`
    /// removed around formatting elements), and parsing it can cost what hostile input
    /// does. The measure's refusal is the error.
    pub fn sanitize_for(&self, html: &str, base: Option<&url::Url>) -> Result<Sanitized, String> {
        Self::sanitize_with(&self.builder, html, base)
    }

    /// Sanitises as [`HtmlPolicy::sanitize_for`] did in versions that kept the `cite` of a
    /// quotation or an edit as sent: what they stored is what this leaves unchanged.
    pub fn sanitize_as_before(
        &self,
        html: &str,
        base: Option<&url::Url>,
    ) -> Result<Sanitized, String> {
        let builder = self
            .cites_as_sent
            .get_or_init(|| Self::builder(&self.iframe_hosts, Cites::AsSent));
        Self::sanitize_with(builder, html, base)
    }

    fn sanitize_with(
        builder: &ammonia::Builder<'static>,
        html: &str,
        base: Option<&url::Url>,
    ) -> Result<Sanitized, String> {
        let base = BaseSet::new(base, html.len());
        let html = Self::sanitize_passes(builder, html)?;
        if base.overgrown() {
            return Err(
                "resolving its relative URLs against canonical_url would more than double the \
                 body: write its links absolute"
                    .to_owned(),
            );
        }
        Ok(Sanitized {
            html,
            relative_urls_removed: base.removed(),
        })
    }

    fn sanitize_passes(builder: &ammonia::Builder<'static>, html: &str) -> Result<String, String> {
        let measured = |html: &str| super::nesting::measure(html).fault().map_or(Ok(()), Err);
        measured(html)?;
        let mut current = Self::clean_once(builder, html);
        for _ in 0..8 {
            measured(&current)?;
            let next = Self::clean_once(builder, &current);
            if next == current {
                break;
            }
            current = next;
        }
        Ok(current)
    }

    fn clean_once(builder: &ammonia::Builder<'static>, html: &str) -> String {
        let clean = builder.clean(html).to_string();
        if clean.contains("<iframe") {
            strip_iframe_contents(&clean)
        } else {
            clean
        }
    }
}

/// Keeps the `srcset` candidates whose URL is http(s), or relative and resolved against the
/// body's base (see [`resolve_relative`]); `None` when none is left.
/// Candidates are split as HTML does: a URL runs to white space (so it may contain
/// commas, as `data:` URLs do), then descriptors run to the next comma.
fn filter_srcset(value: &str) -> Option<String> {
    let mut kept = Vec::new();
    let mut rest = value;
    loop {
        rest = rest.trim_start_matches(|c: char| c.is_whitespace() || c == ',');
        if rest.is_empty() {
            break;
        }
        let url_end = rest.find(char::is_whitespace).unwrap_or(rest.len());
        let url = &rest[..url_end];
        let (url, descriptors) = if let Some(bare) = url.strip_suffix(',') {
            rest = &rest[url_end..];
            (bare.trim_end_matches(','), "")
        } else {
            let after = &rest[url_end..];
            let end = after.find(',').unwrap_or(after.len());
            rest = &after[end..];
            (url, after[..end].trim())
        };
        let url = match web_url(url) {
            Some(WebUrl::Absolute) => Some(url.to_owned()),
            Some(WebUrl::Relative) => resolve_relative(url),
            None => None,
        };
        if let Some(url) = url {
            kept.push(if descriptors.is_empty() {
                url
            } else {
                format!("{url} {descriptors}")
            });
        }
    }
    (!kept.is_empty()).then(|| kept.join(", "))
}

/// What kind of URL a `srcset` candidate or a `cite` has.
enum WebUrl {
    /// http(s).
    Absolute,
    /// No scheme before the path starts.
    Relative,
}

/// An http(s) URL or a relative one; `None` for any other scheme.
fn web_url(url: &str) -> Option<WebUrl> {
    let lower = url.to_ascii_lowercase();
    match (lower.find(':'), lower.find(['/', '?', '#'])) {
        (None, _) if !url.is_empty() => Some(WebUrl::Relative),
        (Some(colon), Some(path)) if path < colon => Some(WebUrl::Relative),
        _ if lower.starts_with("http://") || lower.starts_with("https://") => {
            Some(WebUrl::Absolute)
        }
        _ => None,
    }
}

/// Whether `url` is a `javascript:`, `vbscript:` or `data:` URL, read as browsers read
/// one: leading spaces and controls, tabs and line breaks ignored, in any case.
fn runs_content(url: &str) -> bool {
    let scheme: String = url
        .trim_start_matches(|c: char| c <= ' ')
        .chars()
        .filter(|c| !matches!(c, '\t' | '\n' | '\r'))
        .take_while(|&c| c != ':')
        .take(16)
        .collect();
    ["javascript", "vbscript", "data"]
        .iter()
        .any(|runs| scheme.eq_ignore_ascii_case(runs))
        && url.contains(':')
}

/// Empties every iframe of sanitised HTML. Browsers never show an iframe's content, but it
/// is kept as raw text, which readers that re-parse HTML differently might not treat as
/// text. In ammonia's output every attribute is double-quoted and an iframe's raw text
/// cannot contain `</iframe`, so the scan below is exact.
fn strip_iframe_contents(html: &str) -> String {
    let mut out = String::with_capacity(html.len());
    let mut rest = html;
    while let Some(start) = rest.find("<iframe") {
        let tag = &rest[start..];
        let mut quoted = false;
        let end = tag
            .char_indices()
            .find(|&(_, c)| {
                if c == '"' {
                    quoted = !quoted;
                }
                c == '>' && !quoted
            })
            .map_or(tag.len(), |(i, _)| i + 1);
        out.push_str(&rest[..start + end]);
        rest = &tag[end..];
        match rest.find("</iframe>") {
            Some(close) => rest = &rest[close..],
            None => rest = "",
        }
    }
    out.push_str(rest);
    out
}

impl Default for HtmlPolicy {
    /// The allowlist without iframes.
    fn default() -> Self {
        Self::new(&[])
    }
}

impl std::fmt::Debug for HtmlPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("HtmlPolicy")
    }
}

/// Blocks a CMS wraps copy in, kept by the allowlist: dropped, their text would run
/// together ("<header>Hello</header>World" would read "HelloWorld"). Text continues on a
/// new line after them, as after [`BLOCK_TAGS`].
const CONTAINER_TAGS: &[&str] = &[
    "div", "section", "article", "pre", "dl", "dt", "dd", "header", "footer", "main", "aside",
    "nav", "address", "hgroup", "details", "summary", "fieldset", "legend", "menu", "center",
];

/// Tags after which text continues on a new line, besides [`CONTAINER_TAGS`].
const BLOCK_TAGS: &[&str] = &[
    "p",
    "br",
    "li",
    "h1",
    "h2",
    "h3",
    "h4",
    "h5",
    "h6",
    "blockquote",
    "tr",
    // Cells and captions too: a summary must not run "Name" and "Role" together.
    "td",
    "th",
    "caption",
    "figcaption",
    "table",
    "hr",
];

/// Elements whose text is not the copy's: no longer true (a correction's deleted words,
/// struck-through copy), so that a summary of "<del>10</del><ins>12</ins>人" reads "12人";
/// or a ruby annotation over it (pinyin, and the parentheses around it), so that
/// "<ruby>朔<rt>shuò</rt></ruby>" reads "朔", as its text does. Left out of the text.
const UNREAD_TAGS: &[&str] = &["del", "s", "rt", "rp"];

/// The readable text of an HTML fragment: tags dropped, entities decoded, blocks on their
/// own lines, struck-through text and ruby annotations left out.
pub fn html_to_text(html: &str) -> String {
    let copy = without_unread(html);
    let mut marked = String::with_capacity(copy.len() + 16);
    let mut rest = copy.as_ref();
    while let Some(pos) = rest.find('<') {
        marked.push_str(&rest[..pos]);
        let tag = rest[pos + 1..].trim_start_matches('/');
        let name_len = tag
            .find(|c: char| !c.is_ascii_alphanumeric())
            .unwrap_or(tag.len());
        if BLOCK_TAGS
            .iter()
            .chain(CONTAINER_TAGS)
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

/// `html` without the elements of [`UNREAD_TAGS`] and their content (nested ones
/// included). `html` is sanitised HTML: tags are lowercase and balanced.
fn without_unread(html: &str) -> std::borrow::Cow<'_, str> {
    let opens = |rest: &str, tag: &str| {
        rest.strip_prefix('<')
            .and_then(|r| r.strip_prefix(tag))
            .is_some_and(|r| r.starts_with(['>', ' ', '/']))
    };
    let closes = |rest: &str, tag: &str| {
        rest.strip_prefix("</")
            .and_then(|r| r.strip_prefix(tag))
            .is_some_and(|r| r.starts_with('>'))
    };
    if !UNREAD_TAGS
        .iter()
        .any(|tag| html.contains(&format!("<{tag}")))
    {
        return std::borrow::Cow::Borrowed(html);
    }
    let mut kept = String::with_capacity(html.len());
    // The element being skipped, and how deep in it the scan is.
    let mut skipping: Option<(&str, usize)> = None;
    let mut at = 0;
    while let Some(found) = html[at..].find('<') {
        let pos = at + found;
        let rest = &html[pos..];
        match skipping {
            None => {
                kept.push_str(&html[at..pos]);
                if let Some(tag) = UNREAD_TAGS.iter().find(|tag| opens(rest, tag)) {
                    skipping = Some((tag, 1));
                } else {
                    kept.push('<');
                }
            }
            Some((tag, depth)) => {
                if opens(rest, tag) {
                    skipping = Some((tag, depth + 1));
                } else if closes(rest, tag) {
                    skipping = (depth > 1).then_some((tag, depth - 1));
                    if skipping.is_none() {
                        at = pos + tag.len() + 3;
                        continue;
                    }
                }
            }
        }
        at = pos + 1;
    }
    if skipping.is_none() {
        kept.push_str(&html[at..]);
    }
    std::borrow::Cow::Owned(kept)
}

/// The paragraphs of plain text: split on `\n\n` (as `str::split` does, from the left),
/// trimmed, the empty ones left out. memmem finds the separators (the `str` pattern
/// searches for them a byte at a time).
pub(crate) fn paragraphs(text: &str) -> impl Iterator<Item = &str> {
    let separator = memchr::memmem::Finder::new("\n\n");
    let mut rest = Some(text);
    std::iter::from_fn(move || {
        let unsplit = rest?;
        Some(match separator.find(unsplit.as_bytes()) {
            Some(at) => {
                rest = Some(&unsplit[at + 2..]);
                &unsplit[..at]
            }
            None => {
                rest = None;
                unsplit
            }
        })
    })
    .map(str::trim)
    .filter(|p| !p.is_empty())
}

/// Plain text as HTML: paragraphs (split on blank lines) in `<p>`, line breaks as `<br>`.
pub fn text_to_html(text: &str) -> String {
    let mut html = String::with_capacity(text.len() + 64);
    for paragraph in paragraphs(text) {
        if !html.is_empty() {
            html.push('\n');
        }
        html.push_str("<p>");
        for (i, line) in paragraph.lines().enumerate() {
            if i > 0 {
                html.push_str("<br>");
            }
            // A no-break space as the sanitiser writes it (`&nbsp;`), so that this HTML
            // is what sanitising it gives back: sent again beside its text, the same
            // article is the same version.
            escape_html_text(line, |piece| {
                if piece.contains('\u{a0}') {
                    html.push_str(&piece.replace('\u{a0}', "&nbsp;"));
                } else {
                    html.push_str(piece);
                }
            });
        }
        html.push_str("</p>");
    }
    html
}

/// `text` with `&`, `<` and `>` escaped as HTML text, as `html_escape::encode_text` does,
/// handed to `push` piece by piece: the runs between them whole (that crate looks at one
/// byte at a time) and each escape.
pub(crate) fn escape_html_text<'a>(text: &'a str, mut push: impl FnMut(&'a str)) {
    let mut rest = text;
    while let Some(at) = memchr::memchr3(b'&', b'<', b'>', rest.as_bytes()) {
        // `at` is an ASCII byte, so both sides are whole characters.
        push(&rest[..at]);
        push(match rest.as_bytes()[at] {
            b'&' => "&amp;",
            b'<' => "&lt;",
            _ => "&gt;",
        });
        rest = &rest[at + 1..];
    }
    push(rest);
}

/// The greatest character boundary of `text` at or before `at` (the length past its end):
/// where a cut to at most `at` bytes may fall.
pub(crate) fn floor_char_boundary(text: &str, at: usize) -> usize {
    let mut end = at.min(text.len());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    end
}

/// The least character boundary of `text` at or after `at` (the length past its end).
pub(crate) fn ceil_char_boundary(text: &str, at: usize) -> usize {
    let mut start = at.min(text.len());
    while !text.is_char_boundary(start) {
        start += 1;
    }
    start
}

/// The first `max_graphemes` user-perceived characters of `text`, white space folded
/// ([`fold_lines`]),
/// cut on a grapheme boundary and marked with `…` when cut; and, for a bounded count, at
/// most 8 bytes a character on average: characters heaped with combining marks are cut
/// sooner, so that a body of them does not give a summary as long as itself.
pub fn summarize(text: &str, max_graphemes: usize) -> String {
    // A long body is cut from a prefix: folding a prefix of the text gives a prefix of the
    // folded text, and where a grapheme starts depends only on what comes before it and
    // the character there, so a cut found inside the prefix is the cut of the whole text.
    let bound = summary_reads(max_graphemes);
    if text.len() > bound {
        let end = floor_char_boundary(text, bound);
        if let Some(summary) = cut_summary(&fold_lines(&text[..end]), max_graphemes) {
            return summary;
        }
    }
    let folded = fold_lines(text);
    let summary = cut_summary(&folded, max_graphemes).unwrap_or(folded);
    let kept = summary.strip_suffix('…').unwrap_or(&summary);
    if kept.len() <= bound {
        return summary;
    }
    // Longer characters than the bound allows: cut at it, before the grapheme there,
    // which may go on past it (inside it when that is the only one: a character keeps
    // some of its marks).
    let piece = &kept[..floor_char_boundary(kept, bound)];
    let cut = match piece.grapheme_indices(true).next_back() {
        Some((0, _)) | None => piece.len(),
        Some((last, _)) => last,
    };
    format!("{}…", piece[..cut].trim_end())
}

/// The bytes of a long text [`summarize`] reads to cut a summary of `max_graphemes`: at most
/// 8 bytes a character on average, and two characters past the cut.
pub(crate) fn summary_reads(max_graphemes: usize) -> usize {
    max_graphemes.saturating_add(2).saturating_mul(8)
}

/// Every run of white space as one space, none at either end, except a run holding a line
/// break between two East Asian wide characters, which vanishes: paragraphs of Chinese
/// joined into one line take no space between them (the segment break rule of CSS Text
/// 3, which browsers apply to such text), where "第一段。 第二段。" would show a stray gap.
/// Quotation marks, dashes and ellipses, which Chinese sets full width but Unicode gives
/// an ambiguous width, count as wide beside a wide character: "他说：“好。”" and "……"
/// end a paragraph of Chinese as "。" does; between two of them ("好。”" and "“走吧"), the
/// characters past them decide.
fn fold_lines(text: &str) -> String {
    let mut folded = String::with_capacity(text.len());
    // The run of white space before the next character: whether it breaks a line.
    let mut run: Option<bool> = None;
    for (at, c) in text.char_indices() {
        if c.is_whitespace() {
            let breaks = matches!(c, '\n' | '\r' | '\u{2028}' | '\u{2029}');
            run = Some(run.unwrap_or(false) || breaks);
            continue;
        }
        if let Some(breaks) = run.take()
            && !folded.is_empty()
        {
            // A direction control beside the break shows nothing: the characters past it
            // decide.
            fn shown(c: &char) -> bool {
                !is_bidi_control(*c)
            }
            // A few characters at most: a run of marks and breaks is not read again at each.
            fn wide_beyond_punctuation(chars: impl Iterator<Item = char>) -> bool {
                chars
                    .take(8)
                    .find(|c| !is_ambiguous_punctuation(*c) && !c.is_whitespace() && shown(c))
                    .is_some_and(is_wide)
            }
            let after = text[at..].chars().find(shown).unwrap_or(c);
            let joined = breaks
                && folded.chars().rev().find(shown).is_some_and(|before| {
                    joins_across_a_break(before, after)
                        || (is_ambiguous_punctuation(before)
                            && is_ambiguous_punctuation(after)
                            && (wide_beyond_punctuation(folded.chars().rev())
                                || wide_beyond_punctuation(text[at..].chars())))
                });
            if !joined {
                folded.push(' ');
            }
        }
        folded.push(c);
    }
    folded
}

/// Whether a line break between `before` and `after` vanishes ([`fold_lines`]): both are
/// wide, or one is and the other is punctuation Chinese sets full width.
fn joins_across_a_break(before: char, after: char) -> bool {
    let wide_or_punctuation = |c| is_wide(c) || is_ambiguous_punctuation(c);
    (is_wide(before) && wide_or_punctuation(after))
        || (is_wide(after) && wide_or_punctuation(before))
}

/// Punctuation of ambiguous East Asian width that Chinese text sets full width: curly
/// quotation marks, the em dash and horizontal bar (of ——), the ellipsis (of ……) and the
/// middle dot (of 卡尔·马克思).
fn is_ambiguous_punctuation(c: char) -> bool {
    matches!(
        c,
        '\u{2018}'
            | '\u{2019}'
            | '\u{201c}'
            | '\u{201d}'
            | '\u{2014}'
            | '\u{2015}'
            | '\u{2026}'
            | '\u{00b7}'
    )
}

/// East Asian wide characters that take no space across a line break: CJK ideographs,
/// punctuation and symbols, kana, Bopomofo and the full-width forms. Hangul is left out:
/// Korean puts spaces between words.
fn is_wide(c: char) -> bool {
    matches!(
        c,
        '\u{2e80}'..='\u{303f}'
            | '\u{3040}'..='\u{30ff}'
            | '\u{3100}'..='\u{312f}'
            | '\u{31a0}'..='\u{31ff}'
            | '\u{3200}'..='\u{33ff}'
            | '\u{3400}'..='\u{4dbf}'
            | '\u{4e00}'..='\u{9fff}'
            | '\u{f900}'..='\u{faff}'
            | '\u{fe30}'..='\u{fe4f}'
            | '\u{ff00}'..='\u{ff60}'
            | '\u{ffe0}'..='\u{ffe6}'
            | '\u{20000}'..='\u{3fffd}'
    )
}

/// `folded` cut after `max_graphemes` graphemes and marked with `…`; `None` when it is not
/// longer than that.
fn cut_summary(folded: &str, max_graphemes: usize) -> Option<String> {
    let mut cut = grapheme_start(folded, max_graphemes)?;
    // Not between the halves of a Chinese dash (——) or ellipsis (……): the cut goes before
    // the pair.
    while let (Some(before), Some(at)) = (
        folded[..cut].chars().next_back(),
        folded[cut..].chars().next(),
    ) && before == at
        && matches!(at, '\u{2014}' | '\u{2026}')
    {
        cut -= before.len_utf8();
    }
    Some(format!("{}…", folded[..cut].trim_end()))
}

/// Where the user-perceived character numbered `n` (from 0) of `text` starts; `None` when
/// `text` has no more than `n` of them. Copy is mostly characters that are each a grapheme
/// of their own whatever stands beside them ([`stands_alone`]): while every character up to
/// the one wanted is such, the answer is counted in characters, and segmenting by the rules
/// of UAX #29 is needed only where another character comes first.
fn grapheme_start(text: &str, n: usize) -> Option<usize> {
    for (count, (at, c)) in text.char_indices().enumerate() {
        if !stands_alone(c) {
            break;
        }
        if count == n {
            return Some(at);
        }
    }
    text.grapheme_indices(true).nth(n).map(|(at, _)| at)
}

/// True for characters that UAX #29 always breaks on both sides of when the neighbour is
/// one of them too: Grapheme_Cluster_Break `Other`, not Extended_Pictographic, no Indic
/// conjunct role. Printable ASCII, CJK ideographs and the Chinese punctuation of
/// U+3000–U+3029, U+2010–U+2027 and the full-width forms U+FF01–U+FF5E. Left out on purpose:
/// U+302A–U+302F (combining tone marks), U+3030 and U+303D (pictographic), U+FF9E and
/// U+FF9F (combining sound marks).
fn stands_alone(c: char) -> bool {
    matches!(
        c,
        ' '..='~' | '\u{4e00}'..='\u{9fff}' | '\u{3000}'..='\u{3029}' | '\u{2010}'..='\u{2027}'
            | '\u{ff01}'..='\u{ff5e}'
    )
}

/// A one-line note (a retraction reason, say): forbidden characters removed, white space
/// folded, at most `max_graphemes` user-perceived characters, cut like a summary.
pub fn one_line(raw: &str, max_graphemes: usize) -> String {
    summarize(&clean(raw, true).text, max_graphemes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_normalised_name_is_its_own_normal_form() {
        for (name, normal) in [
            // The joiner shapes nothing once the embedding that enclosed the name goes.
            ("\u{202a}®\u{200d}\u{202c}", "®"),
            // The embedding encloses the name once the joiner before it goes.
            ("\u{200d}\u{202a}x\u{202c}", "x"),
            ("\u{202b}محمد\u{202c}", "محمد"),
            ("a\u{200d}b", "a\u{200d}b"),
            // Pairs that enclose nothing, nested or around white space; an isolate only at
            // either end, where it separates nothing.
            ("王芳\u{2066}\u{202a} \u{202c}\u{2069}", "王芳"),
            ("王\u{202b} \u{202c}芳", "王 芳"),
            ("\u{2067}\u{2069}王芳", "王芳"),
            ("1\u{2066}\u{2069}2 محمد", "1\u{2066}\u{2069}2 محمد"),
        ] {
            let once = normalize_name(name);
            assert_eq!(once, normal, "{name:?}");
            assert_eq!(normalize_name(&once), once, "{name:?}");
        }
    }

    #[test]
    fn one_line_notes_are_clean_and_cut_on_grapheme_boundaries() {
        assert_eq!(
            one_line(" 事实\u{0}有误 \n 已更正 ", 100),
            "事实有误 已更正"
        );
        assert_eq!(one_line("👩‍👩‍👧👩‍👩‍👧", 1), "👩‍👩‍👧…");
    }

    #[test]
    fn text_is_kept_in_nfc() {
        assert_eq!(composed("Cafe\u{301} ne\u{301}e".into()), "Café née");
        assert_eq!(composed("\u{1100}\u{1161}".into()), "\u{ac00}");
        assert_eq!(composed("朔州日报，右玉县。".into()), "朔州日报，右玉县。");
    }

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
        let html = HtmlPolicy::default().sanitize(
            r#"<p onclick="x()">正文<script>alert(1)</script><a href="javascript:alert(1)">a</a><a href="https://example.com/">b</a></p>"#,
        ).unwrap();
        assert!(
            !html.contains("script") && !html.contains("onclick") && !html.contains("javascript")
        );
        assert!(html.contains(r#"<a href="https://example.com/" rel="noopener noreferrer">b</a>"#));
    }

    /// Removing a marker (`<object>`) around formatting elements makes the first pass's
    /// output reopen them in every paragraph when parsed again: the second pass is
    /// measured before it runs.
    #[test]
    fn each_pass_of_sanitising_is_measured_before_it_parses() {
        let html = "<p><b><b><b><i><i><i><em><em><em><strong><strong><strong><object>".to_owned()
            + &"<p>x".repeat(20_000);
        assert_eq!(crate::domain::nesting::measure(&html).fault(), None);
        let refused = HtmlPolicy::default()
            .sanitize(&html)
            .err()
            .unwrap_or_default();
        assert!(refused.contains("unclosed"), "{refused}");
    }

    #[test]
    fn sanitizing_twice_changes_nothing() {
        let policy = HtmlPolicy::default();
        let once = policy
            .sanitize("<p>a &amp; b <b>c<i>d</p><img src=x onerror=y>")
            .unwrap();
        assert_eq!(policy.sanitize(&once).unwrap(), once);
    }

    #[test]
    fn srcset_candidates_keep_only_web_urls() {
        let html = r#"<img src="https://x.cn/a.png" srcset="https://x.cn/a.png 1x, javascript:alert(1) 2x, data:image/svg+xml,%3Csvg%3E 3x, /b.png 4x">"#;
        let clean = HtmlPolicy::default().sanitize(html).unwrap();
        assert!(
            clean.contains(r#"srcset="https://x.cn/a.png 1x""#),
            "{clean}"
        );
        let only_bad = HtmlPolicy::default()
            .sanitize(r#"<img src="https://x.cn/a.png" srcset="javascript:x 1x">"#)
            .unwrap();
        assert!(!only_bad.contains("srcset"), "{only_bad}");
    }

    #[test]
    fn relative_urls_resolve_against_the_base_or_are_removed_without_one() {
        let policy = HtmlPolicy::default();
        let html = r##"<p><a href="../2023-06-06/b">前文</a><a href="https://x.cn/c">外链</a><a href="mailto:a@x.cn">信</a><img src="img/a.png" srcset="img/a.png 1x, //cdn.x.cn/b.png 2x, https://x.cn/c.png 3x"><a href="#p2">下文</a></p>"##;
        let base = url::Url::parse("https://example.com/2023-06-07/daji").unwrap();
        let resolved = policy.sanitize_for(html, Some(&base)).unwrap();
        assert_eq!(resolved.relative_urls_removed, 0);
        for kept in [
            r#"href="https://example.com/2023-06-06/b""#,
            r#"href="https://x.cn/c""#,
            r#"href="mailto:a@x.cn""#,
            r#"src="https://example.com/2023-06-07/img/a.png""#,
            r#"srcset="https://example.com/2023-06-07/img/a.png 1x, https://cdn.x.cn/b.png 2x, https://x.cn/c.png 3x""#,
            r##"href="https://example.com/2023-06-07/daji#p2""##,
        ] {
            assert!(resolved.html.contains(kept), "{kept} in {}", resolved.html);
        }
        let again = policy.sanitize_for(&resolved.html, Some(&base)).unwrap();
        assert_eq!(again.html, resolved.html);
        assert_eq!(policy.sanitize(&resolved.html).unwrap(), resolved.html);

        let removed = policy.sanitize_for(html, None).unwrap();
        assert_eq!(removed.relative_urls_removed, 5, "{}", removed.html);
        assert!(!removed.html.contains("img/a.png") && !removed.html.contains("#p2"));
        assert!(removed.html.contains(r#"srcset="https://x.cn/c.png 3x""#));
        assert!(removed.html.contains("前文") && removed.html.contains("href=\"https://x.cn/c\""));
    }

    /// The source a quotation or an edit cites is a link as any other: resolved against
    /// the base, or removed without one, and only http(s).
    #[test]
    fn cited_sources_are_resolved_or_removed_like_links() {
        let policy = HtmlPolicy::default();
        let html = r#"<blockquote cite="/src/quote.html">甲</blockquote><q cite="q.html">乙</q><del cite="javascript:alert(1)">丙</del><ins cite="https://x.cn/why">丁</ins>"#;
        let base = url::Url::parse("https://example.com/2023-06-07/daji").unwrap();
        let resolved = policy.sanitize_for(html, Some(&base)).unwrap();
        for kept in [
            r#"<blockquote cite="https://example.com/src/quote.html">"#,
            r#"<q cite="https://example.com/2023-06-07/q.html">"#,
            "<del>",
            r#"<ins cite="https://x.cn/why">"#,
        ] {
            assert!(resolved.html.contains(kept), "{kept} in {}", resolved.html);
        }
        assert_eq!(
            policy.sanitize_for(&resolved.html, Some(&base)).unwrap(),
            resolved
        );
        let removed = policy.sanitize_for(html, None).unwrap();
        assert_eq!(removed.relative_urls_removed, 2, "{}", removed.html);
        assert_eq!(removed.html.matches("cite=").count(), 1, "{}", removed.html);
    }

    /// A long base and many short relative URLs would grow a small body a thousandfold:
    /// resolving may add at most the body's own size again (and 4 KiB), else it is refused.
    #[test]
    fn resolving_relative_urls_may_not_grow_a_body_past_twice_its_size() {
        let policy = HtmlPolicy::default();
        let long = format!("https://example.com/{}/", "a".repeat(2_000));
        let base = url::Url::parse(&long).unwrap();
        let candidates = vec!["a"; 1_000].join(", ");
        let html = format!(r#"<p>图<img src="https://x.cn/a.png" srcset="{candidates}"></p>"#);
        let refused = policy
            .sanitize_for(&html, Some(&base))
            .err()
            .unwrap_or_default();
        assert!(refused.contains("relative URLs"), "{refused:?}");
        // A few resolve, however long the base.
        let few = r#"<p><a href="b">前文</a><img src="img/a.png"></p>"#;
        let resolved = policy.sanitize_for(few, Some(&base)).unwrap();
        assert!(resolved.html.contains(&format!(r#"src="{long}img/a.png""#)));
        // An image given by srcset alone is an image.
        assert!(shows_media(
            r#"<p><img srcset="https://x.cn/a.png 1x"></p>"#
        ));
    }

    #[test]
    fn bidi_controls_are_balanced_within_a_single_line() {
        let line = |raw: &str| {
            let cleaned = clean(raw, true);
            (cleaned.text, cleaned.bidi_balanced)
        };
        // An override left open is closed at the end of the field.
        assert_eq!(
            line("张三\u{202e}abc"),
            ("张三\u{202e}abc\u{202c}".into(), 1)
        );
        assert_eq!(line("\u{2067}عربي"), ("\u{2067}عربي\u{2069}".into(), 1));
        // Closers with nothing to close go; balanced text is left alone.
        assert_eq!(line("a\u{202c}b\u{2069}c"), ("abc".into(), 2));
        // With the white space they leave at either end or beside other white space: the
        // line is what cleaning it again leaves.
        for (raw, kept) in [
            ("\u{2069} Title", "Title"),
            ("Title \u{202c}", "Title"),
            ("A \u{2069} B", "A B"),
            ("A\u{2069} B", "A B"),
            ("A \u{2069}B", "A B"),
            (" \u{202c} \u{2069} A \u{202c} \u{2069} B \u{2069} ", "A B"),
            ("\u{202e} \u{2069} A", "\u{202e} A\u{202c}"),
        ] {
            let (text, _) = line(raw);
            assert_eq!(text, kept, "{raw:?}");
            assert_eq!(line(&text), (text.clone(), 0), "{raw:?} cleaned again");
        }
        // In text of several lines (a summary sent), line breaks stay.
        assert_eq!(balance_bidi("x \u{2069}\n\ny".into()).0, "x \n\ny");
        assert_eq!(balance_bidi("\u{2069}\n\ny \u{202c}".into()).0, "y");
        let fine = "a\u{2067}ب\u{202b}ج\u{202c}\u{2069}d";
        assert_eq!(line(fine), (fine.into(), 0));
        // An isolate's closer also closes the embeddings opened inside it; an embedding's
        // closer never reaches across an isolate.
        assert_eq!(
            line("\u{2066}a\u{202e}b\u{2069}c"),
            ("\u{2066}a\u{202e}b\u{202c}\u{2069}c".into(), 1)
        );
        assert_eq!(
            line("\u{202b}a\u{2066}b\u{202c}c"),
            ("\u{202b}a\u{2066}bc\u{2069}\u{202c}".into(), 3)
        );
        // Multi-line text (bodies) is not a single field shown in a list: left as it is.
        assert_eq!(clean("a\u{202e}b", false).text, "a\u{202e}b");
    }

    #[test]
    fn c1_controls_are_removed_too() {
        let cleaned = clean("a\u{80}b\u{9f}c\u{a0}d", false);
        assert_eq!(cleaned.text, "abc\u{a0}d");
        assert_eq!(cleaned.removed, 2);
    }

    #[test]
    fn iframes_are_kept_only_from_allowed_hosts_and_always_sandboxed() {
        let html = r#"<iframe src="https://player.example.com/v/1" onload="x()"></iframe><iframe src="https://evil.example.net/"></iframe><iframe src="http://player.example.com/v/2"></iframe>"#;
        assert!(
            !HtmlPolicy::default()
                .sanitize(html)
                .unwrap()
                .contains("iframe")
        );
        let policy = HtmlPolicy::new(&["player.example.com".to_owned()]);
        let clean = policy.sanitize(html).unwrap();
        assert_eq!(clean.matches("<iframe").count(), 3, "{clean}");
        assert_eq!(clean.matches("src=").count(), 1, "{clean}");
        assert!(
            clean.contains(r#"src="https://player.example.com/v/1""#),
            "{clean}"
        );
        assert_eq!(clean.matches(IFRAME_SANDBOX).count(), 3, "{clean}");
        assert!(!clean.contains("onload"));
        assert_eq!(policy.sanitize(&clean).unwrap(), clean);
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig {
            cases: 2000,
            // Failures are reported with their minimal input; no files are left behind.
            failure_persistence: None,
            ..Default::default()
        })]

        #[test]
        fn sanitizing_is_idempotent_and_never_lets_script_through(
            parts in proptest::collection::vec(proptest::sample::select(HOSTILE_FRAGMENTS), 0..24)
        ) {
            let policy = HtmlPolicy::new(&["player.example.com".to_owned()]);
            let html = parts.concat();
            let once = policy.sanitize(&html).unwrap();
            proptest::prop_assert_eq!(policy.sanitize(&once).unwrap(), once.clone());
            // Text is escaped in the output, so every literal `<` opens a tag: check the tags.
            for tag in once.to_lowercase().split('<').skip(1).map(|t| t.split('>').next().unwrap_or("")) {
                let name = tag.trim_start_matches('/').split([' ', '/']).next().unwrap_or("");
                proptest::prop_assert!(
                    !["script", "svg", "math", "style", "object", "base", "meta", "form"].contains(&name),
                    "<{}> in {}", tag, once
                );
                for banned in ["javascript:", "data:", " on"] {
                    proptest::prop_assert!(!tag.contains(banned), "{} in <{}> of {}", banned, tag, once);
                }
            }
        }
    }

    /// The summary of the whole text folded and segmented, as before the prefix cut.
    fn summarize_whole(text: &str, max_graphemes: usize) -> String {
        let folded = fold_lines(text);
        match folded.grapheme_indices(true).nth(max_graphemes) {
            None => folded,
            Some((cut, _)) => format!("{}…", folded[..cut].trim_end()),
        }
    }

    /// Pieces of copy that make grapheme clusters hard to cut: joiners, flags, combining
    /// marks, Hangul jamo, Indic conjuncts, white space of every kind, controls.
    const TRICKY_PIECES: &[&str] = &[
        "朔州",
        "字",
        "a",
        " ",
        "  ",
        "\n",
        "\r\n",
        "\t",
        "\u{3000}",
        "\u{a0}",
        "👩",
        "\u{200d}",
        "👧",
        "🇨",
        "🇳",
        "e\u{301}",
        "\u{301}",
        "\u{1100}",
        "\u{1161}",
        "\u{11a8}",
        "क",
        "\u{94d}",
        "ष",
        "\u{1f3fb}",
        "\u{fe0f}",
        "\u{1}",
        "\r",
        "\u{fffe}",
        "\u{85}",
        "。",
        // The edges of the characters that stand alone (`stands_alone`), inside and out.
        "~",
        "\u{7f}",
        "\u{2010}",
        "\u{2027}",
        "\u{2028}",
        "\u{3029}",
        "\u{302a}",
        "\u{3030}",
        "\u{303d}",
        "\u{4e00}",
        "\u{9fff}",
        "\u{ff5e}",
        "\u{ff9e}",
        "\u{20e3}",
        "\u{e0041}",
        "\u{1f1e8}\u{1f1f3}",
        // Bytes the look for characters to clean stops at.
        "\u{9f}",
        "\u{a0}",
        "\u{fdcf}",
        "\u{fdd0}",
        "\u{fdef}",
        "\u{fdf0}",
        "\u{fffd}",
        "\u{ffff}",
        "\u{1fffe}",
        "\u{10ffff}",
        "\u{ff0c}",
        "\n\n",
        "\n\n\n",
    ];

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig {
            cases: 3000,
            failure_persistence: None,
            ..Default::default()
        })]

        #[test]
        fn a_summary_cut_from_a_prefix_is_the_summary_of_the_whole_text(
            parts in proptest::collection::vec(proptest::sample::select(TRICKY_PIECES), 0..400),
            max in 0_usize..40,
        ) {
            let text = parts.concat();
            let whole = summarize_whole(&text, max);
            let summary = summarize(&text, max);
            // The whole text's summary when it fits in the bound; a prefix of the folded
            // text, cut and bounded, when its characters are longer.
            if whole.strip_suffix('…').unwrap_or(&whole).len() <= (max + 2) * 8 {
                proptest::prop_assert_eq!(summary, whole);
            } else {
                let kept = summary.strip_suffix('…').unwrap();
                let folded = summarize_whole(&text, usize::MAX);
                proptest::prop_assert!(folded.starts_with(kept), "{:?} of {:?}", kept, folded);
                proptest::prop_assert!(kept.len() <= (max + 2) * 8);
                proptest::prop_assert!(kept.graphemes(true).count() <= max.max(1));
            }
        }

        #[test]
        fn graphemes_counted_in_characters_start_where_uax_29_says(
            parts in proptest::collection::vec(proptest::sample::select(TRICKY_PIECES), 0..80),
        ) {
            let text = parts.concat();
            let starts: Vec<usize> = text.grapheme_indices(true).map(|(at, _)| at).collect();
            for n in 0..=starts.len() {
                proptest::prop_assert_eq!(grapheme_start(&text, n), starts.get(n).copied(), "n = {}", n);
            }
        }

        #[test]
        fn paragraphs_are_split_as_str_split_does(
            parts in proptest::collection::vec(proptest::sample::select(TRICKY_PIECES), 0..60),
        ) {
            let text = parts.concat();
            let split: Vec<&str> = text.split("\n\n").map(str::trim).filter(|p| !p.is_empty()).collect();
            proptest::prop_assert_eq!(paragraphs(&text).collect::<Vec<_>>(), split);
        }

        #[test]
        fn html_text_is_escaped_as_html_escape_does(
            chars in proptest::collection::vec(
                proptest::prop_oneof![
                    proptest::sample::select(vec!['&', '<', '>', '"', '\'', 'a', '字', ';']),
                    proptest::prelude::any::<char>(),
                ],
                0..64,
            ),
        ) {
            let text: String = chars.into_iter().collect();
            let mut escaped = String::new();
            escape_html_text(&text, |piece| escaped.push_str(piece));
            proptest::prop_assert_eq!(escaped, html_escape::encode_text(&text));
        }

        #[test]
        fn copy_cleaned_at_once_is_copy_cleaned_a_character_at_a_time(
            parts in proptest::collection::vec(proptest::sample::select(TRICKY_PIECES), 0..60),
        ) {
            let text = parts.concat();
            let fast = clean(&text, false);
            // The same text with a character that takes the slow path, then without it.
            let slow = clean(&format!("{text}\r"), false);
            proptest::prop_assert_eq!(&fast.text, &slow.text);
            proptest::prop_assert_eq!(fast.removed, slow.removed);
        }
    }

    /// Pieces of hostile and broken HTML that the property test strings together.
    const HOSTILE_FRAGMENTS: &[&str] = &[
        "<p>",
        "</p>",
        "<b>",
        "</i>",
        "<a href=\"javascript:alert(1)\">",
        "<a href=\"https://x.cn/?a=1&b=2\">",
        "</a>",
        "<img src=x onerror=alert(1)>",
        "<img src=\"data:image/png;base64,AAAA\">",
        "<script>",
        "alert(1)",
        "</script>",
        "<svg onload=alert(1)>",
        "<math><mi>x</mi></math>",
        "<style>p{}</style>",
        "<iframe src=\"https://player.example.com/v\">",
        "</iframe>",
        "<iframe src=\"javascript:x\">",
        "&amp;",
        "&lt;",
        "&#x3C;script&#x3E;",
        "&",
        "<",
        ">",
        "]]>",
        "<!--",
        "-->",
        "<![CDATA[",
        "\"",
        "'",
        "朔州",
        "𠮷",
        "\u{200d}",
        "\u{202e}",
        "<table><tr><td>",
        "</td>",
        "<br/>",
        "<p onclick=x>",
        "<a href=\"java&#x09;script:alert(1)\">",
        "<img src=\"jav\tascript:alert(1)\">",
        "<object data=x>",
        "<base href=\"https://evil/\">",
        "<meta http-equiv=refresh content=0>",
        "<form action=x>",
        "<div style=\"background:url(javascript:alert(1))\">",
    ];

    #[test]
    fn html_to_text_keeps_paragraphs_apart_and_decodes_entities() {
        assert_eq!(
            html_to_text("<p>甲&amp;乙</p><p>丙<br>丁</p>"),
            "甲&乙\n\n丙\n\n丁"
        );
    }

    /// What a CMS or a correction marks up is kept, not run together: blocks stay blocks,
    /// deleted and inserted words stay marked, directions and ruby stay; a summary leaves
    /// out what is struck through and what annotates the ruby's base.
    #[test]
    fn corrections_blocks_and_directions_are_kept_and_struck_text_is_not_summarised() {
        let policy = HtmlPolicy::default();
        let kept = [
            "<p>事故造成<del datetime=\"2023-06-07\">10</del><ins>12</ins>人死亡。</p>",
            "<div>First paragraph.</div><div>Second paragraph.</div>",
            "<section><p>甲</p></section><article><p>乙</p></article>",
            "<p>他说<q>好</q>，<s>旧价</s>新价。</p>",
            "<pre>第一行\n第二行</pre>",
            "<dl><dt>时间</dt><dd>六月</dd></dl>",
            "<p dir=\"rtl\" lang=\"ar\">مرحبا <bdi>محمد</bdi> <bdo dir=\"ltr\">abc</bdo></p>",
            "<p><ruby>朔<rp>(</rp><rt>shuò</rt><rp>)</rp></ruby></p>",
            "<ol start=\"3\" reversed=\"\"><li>x</li></ol>",
        ];
        for html in kept {
            assert_eq!(policy.sanitize(html).unwrap(), html, "{html}");
        }
        let text = html_to_text(kept[0]);
        assert_eq!(text, "事故造成12人死亡。");
        assert_eq!(
            html_to_text(kept[1]),
            "First paragraph.\n\nSecond paragraph."
        );
        assert_eq!(html_to_text(kept[3]), "他说好，新价。");
        assert_eq!(html_to_text(kept[5]), "时间\n\n六月");
        assert_eq!(html_to_text(kept[7]), "朔");
        assert_eq!(
            html_to_text("<ruby>汉<rt>hàn</rt>字<rt>zì</rt></ruby>"),
            "汉字"
        );
        // Nested and repeated struck elements, and text around them.
        assert_eq!(
            html_to_text("<p>a<del>b<del>c</del>d</del>e<s>f</s>g<strong>h</strong></p>"),
            "aegh"
        );
        // What is not a struck element is not taken for one.
        assert_eq!(html_to_text("<p><small>小</small><sub>2</sub></p>"), "小2");
    }

    /// Every block a page's markup may carry stays a block: dropped, its words would run
    /// into the next block's, in the body as in the summary.
    #[test]
    fn blocks_of_page_markup_are_kept_and_never_run_words_together() {
        let policy = HtmlPolicy::default();
        for (html, text) in [
            ("<h1>标题</h1><p>正文</p>", "标题\n\n正文"),
            (
                "<header>Hello</header><footer>World</footer>",
                "Hello\n\nWorld",
            ),
            ("<main>a</main><aside>b</aside><nav>c</nav>", "a\n\nb\n\nc"),
            ("<address>Hello</address>World", "Hello\n\nWorld"),
            (
                "<details><summary>Hello</summary>World</details>",
                "Hello\n\nWorld",
            ),
            (
                "<fieldset><legend>Hello</legend>World</fieldset>",
                "Hello\n\nWorld",
            ),
            ("<hgroup><h1>甲</h1><p>乙</p></hgroup>", "甲\n\n乙"),
            ("<menu><li>甲</li><li>乙</li></menu>", "甲\n\n乙"),
            ("<center>Hello</center>World", "Hello\n\nWorld"),
        ] {
            let sanitized = policy.sanitize(html).unwrap();
            assert_eq!(sanitized, html);
            assert_eq!(html_to_text(&sanitized), text, "{html}");
        }
    }

    #[test]
    fn table_cells_and_captions_are_kept_apart_in_text_and_summaries() {
        let html = "<table><caption>名单</caption><tr><th>Name</th><th>Role</th></tr>\
                    <tr><td>Alice</td><td>Editor</td></tr></table>";
        let text = html_to_text(html);
        assert_eq!(text, "名单\n\nName\n\nRole\n\nAlice\n\nEditor");
        assert_eq!(summarize(&text, 160), "名单 Name Role Alice Editor");
    }

    /// HTML made from text is what sanitising it gives back, so that an article read and
    /// sent again with both bodies is not a new version.
    #[test]
    fn html_made_from_text_is_as_the_sanitiser_writes_it() {
        let policy = HtmlPolicy::default();
        for text in [
            "a\u{a0}b",
            "甲 < 乙 & 丙 > 丁\n第二行\n\n第二段\u{a0}\u{a0}。",
            "\"引号\" 'x' © ° \u{2003}",
        ] {
            let html = text_to_html(text);
            assert_eq!(policy.sanitize(&html).unwrap(), html, "{text:?}");
        }
        assert_eq!(text_to_html("a\u{a0}b"), "<p>a&nbsp;b</p>");
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

    #[test]
    fn paragraphs_of_chinese_join_without_a_space_and_others_with_one() {
        assert_eq!(summarize("第一段。\n\n第二段。", 160), "第一段。第二段。");
        assert_eq!(summarize("引语。\r\n「下段」", 160), "引语。「下段」");
        assert_eq!(summarize("First.\n\nSecond.", 160), "First. Second.");
        assert_eq!(summarize("中文\n\nEnglish", 160), "中文 English");
        assert_eq!(summarize("한국어\n한국어", 160), "한국어 한국어");
        // A space typed between Chinese words stays.
        assert_eq!(summarize("朔州日报 记者", 160), "朔州日报 记者");
    }

    #[test]
    fn chinese_quotation_marks_dashes_and_ellipses_join_paragraphs_as_wide_characters() {
        assert_eq!(
            summarize("他说：“好。”\n\n第二段。", 160),
            "他说：“好。”第二段。"
        );
        assert_eq!(summarize("第一段……\n\n第二段。", 160), "第一段……第二段。");
        assert_eq!(summarize("第一段。\n“第二段。”", 160), "第一段。“第二段。”");
        assert_eq!(summarize("第一段——\n第二段", 160), "第一段——第二段");
        // Beside Latin text, or between two of them, the space stays.
        assert_eq!(
            summarize("He said “yes.”\n\nThen left.", 160),
            "He said “yes.” Then left."
        );
        assert_eq!(summarize("Wait…\n“Go.”", 160), "Wait… “Go.”");
        assert_eq!(summarize("……\n“", 160), "…… “");
        // Between two of them, the characters past them decide.
        assert_eq!(
            summarize("他说：“好。”\n\n“走吧。”", 160),
            "他说：“好。”“走吧。”"
        );
        assert_eq!(summarize("等等……\n\n……然后", 160), "等等…………然后");
        assert_eq!(
            summarize("He said “yes.”\n\n“Go.”", 160),
            "He said “yes.” “Go.”"
        );
    }

    /// A run of quotation marks and line breaks with no wide character beside them keeps
    /// a space at each break (each looks past a few marks at most).
    #[test]
    fn a_run_of_marks_and_breaks_keeps_its_spaces() {
        let folded = fold_lines(&"”\n".repeat(10_000));
        assert_eq!(folded, vec!["”"; 10_000].join(" "));
        assert_eq!(fold_lines("好。”\n”\n“\n“走"), "好。””““走");
    }

    #[test]
    fn a_summary_is_not_cut_between_the_halves_of_a_dash_or_an_ellipsis() {
        assert_eq!(summarize("一二——三四", 3), "一二…");
        assert_eq!(summarize("一二……三四", 3), "一二…");
        assert_eq!(summarize("一二——三四", 4), "一二——…");
        assert_eq!(summarize("一——二", 2), "一…");
    }

    #[test]
    fn summaries_of_characters_heaped_with_marks_are_bounded_in_bytes() {
        let heaped = format!("a{}", "\u{301}".repeat(10_000));
        let text = format!("{heaped}{heaped}{heaped}");
        let summary = summarize(&text, 160);
        assert!(summary.len() <= 162 * 8 + 3, "{} bytes", summary.len());
        assert!(summary.ends_with('…'));
        assert!(summary.starts_with("a\u{301}\u{301}"));
        // The first whole grapheme and the start of the next: the cut is before the
        // last, a prefix of the text.
        let short = format!("{}b{}", "e\u{301}".repeat(5), "\u{301}".repeat(2_000));
        assert_eq!(summarize(&short, 160), format!("{}…", "e\u{301}".repeat(5)));
    }
}
