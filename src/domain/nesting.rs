//! How deep an HTML body makes the parser nest elements, measured before the sanitiser
//! parses it. The parser's work grows with the square of the depth (each start tag looks
//! through the open elements), and formatting elements left open are opened again in
//! every later block, so a few kilobytes can cost seconds and expand to megabytes. Bodies
//! past the limits below are refused instead.
//!
//! The measure runs the HTML tokenizer itself (html5ever's, the sanitiser's own), so
//! comments, quoted attributes, raw text and CDATA end exactly where the parser ends them,
//! and follows the parser's tree rules only as far as it must: every element it pops, the
//! parser pops too, and where the rules are not followed (the adoption agency's moves,
//! formatting elements reopened), the estimate errs high.

use html5ever::tendril::StrTendril;
use html5ever::tokenizer::states::RawKind;
use html5ever::tokenizer::{
    BufferQueue, Tag, TagKind, Token, TokenSink, TokenSinkResult, Tokenizer, TokenizerOpts,
};
use std::cell::RefCell;

/// Most elements open inside one another (real articles stay under 20).
pub const MAX_DEPTH: usize = 256;
/// Most formatting elements (`<b>`, `<font>`, …) left open by an end tag of an element
/// around them, which the parser reopens in each later block (real copy leaves a few).
pub const MAX_LEFT_OPEN: usize = 16;

/// What the measure found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Nesting {
    /// The most elements open at once, formatting elements left open included.
    pub depth: usize,
    /// The most formatting elements left open at once, each distinct start tag counted
    /// at most three times, as the parser keeps them.
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

/// Measures `html` as the sanitiser's parser will read it (a fragment in a `<div>`).
pub fn measure(html: &str) -> Nesting {
    let input = BufferQueue::default();
    input.push_back(StrTendril::from_slice(html));
    let tokenizer = Tokenizer::new(Measure::default(), TokenizerOpts::default());
    let _ = tokenizer.feed(&input);
    tokenizer.end();
    tokenizer.sink.found()
}

/// Elements that hold nothing.
const VOID: &[&str] = &[
    "area", "base", "basefont", "bgsound", "br", "col", "embed", "frame", "hr", "image", "img",
    "input", "keygen", "link", "meta", "param", "source", "track", "wbr",
];
/// The formatting elements the parser reopens.
const FORMATTING: &[&str] = &[
    "a", "b", "big", "code", "em", "font", "i", "nobr", "s", "small", "strike", "strong", "tt", "u",
];
/// Elements that end the scope of formatting elements opened inside them.
const MARKERS: &[&str] = &[
    "applet", "caption", "marquee", "object", "td", "template", "th",
];
/// Elements an end tag does not look past for the element it names ("has in scope").
const SCOPE: &[&str] = &[
    "applet", "caption", "html", "marquee", "object", "table", "td", "template", "th",
];
/// Elements whose content the parser reads as text (`plaintext`: to the end).
const RAW_TEXT: &[&str] = &[
    "iframe",
    "noembed",
    "noframes",
    "noscript",
    "plaintext",
    "script",
    "style",
    "textarea",
    "title",
    "xmp",
];
/// The parser's special elements (an end tag of an ordinary element stops at them).
const SPECIAL: &[&str] = &[
    "address",
    "applet",
    "area",
    "article",
    "aside",
    "base",
    "basefont",
    "bgsound",
    "blockquote",
    "body",
    "br",
    "button",
    "caption",
    "center",
    "col",
    "colgroup",
    "dd",
    "details",
    "dir",
    "div",
    "dl",
    "dt",
    "embed",
    "fieldset",
    "figcaption",
    "figure",
    "footer",
    "form",
    "frame",
    "frameset",
    "h1",
    "h2",
    "h3",
    "h4",
    "h5",
    "h6",
    "head",
    "header",
    "hgroup",
    "hr",
    "html",
    "iframe",
    "img",
    "input",
    "keygen",
    "li",
    "link",
    "listing",
    "main",
    "marquee",
    "menu",
    "meta",
    "nav",
    "noembed",
    "noframes",
    "noscript",
    "object",
    "ol",
    "p",
    "param",
    "plaintext",
    "pre",
    "script",
    "search",
    "section",
    "select",
    "source",
    "style",
    "summary",
    "table",
    "tbody",
    "td",
    "template",
    "textarea",
    "tfoot",
    "th",
    "thead",
    "title",
    "tr",
    "track",
    "ul",
    "wbr",
    "xmp",
];
/// Start tags that close an open `<p>` first.
const CLOSE_P: &[&str] = &[
    "address",
    "article",
    "aside",
    "blockquote",
    "center",
    "details",
    "dialog",
    "dir",
    "div",
    "dl",
    "fieldset",
    "figcaption",
    "figure",
    "footer",
    "form",
    "h1",
    "h2",
    "h3",
    "h4",
    "h5",
    "h6",
    "header",
    "hgroup",
    "hr",
    "listing",
    "main",
    "menu",
    "nav",
    "ol",
    "p",
    "pre",
    "search",
    "section",
    "summary",
    "table",
    "ul",
    "xmp",
];
const HEADINGS: &[&str] = &["h1", "h2", "h3", "h4", "h5", "h6"];
/// HTML start tags that end foreign content (svg, math) around them.
const BREAK_OUT: &[&str] = &[
    "b",
    "big",
    "blockquote",
    "body",
    "br",
    "center",
    "code",
    "dd",
    "div",
    "dl",
    "dt",
    "em",
    "embed",
    "h1",
    "h2",
    "h3",
    "h4",
    "h5",
    "h6",
    "head",
    "hr",
    "i",
    "img",
    "li",
    "listing",
    "menu",
    "meta",
    "nobr",
    "ol",
    "p",
    "pre",
    "ruby",
    "s",
    "small",
    "span",
    "strong",
    "strike",
    "sub",
    "sup",
    "table",
    "tt",
    "u",
    "ul",
    "var",
];

fn is(list: &[&str], name: &str) -> bool {
    list.contains(&name)
}

/// The namespace an element is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Space {
    Html,
    Svg,
    MathMl,
}

/// One open element.
struct Open {
    /// As the tokenizer gives it: lower case.
    name: String,
    /// In the SVG or MathML namespace.
    foreign: bool,
    space: Space,
    /// Foreign, but the parser reads its content as HTML (SVG's `foreignObject`, `desc`
    /// and `title`; MathML's `mi`…`mtext`, and `annotation-xml` holding HTML).
    integration: bool,
    /// For a formatting element: its start tag, for the parser's "Noah's Ark" (at most
    /// three identical ones are kept).
    key: Option<String>,
}

/// Foreign elements the parser treats as special, and as bounds of a scope.
const FOREIGN_SPECIAL: &[&str] = &[
    "annotation-xml",
    "desc",
    "foreignobject",
    "mi",
    "mn",
    "mo",
    "ms",
    "mtext",
    "title",
];

impl Open {
    fn is_special(&self) -> bool {
        if self.foreign {
            is(FOREIGN_SPECIAL, &self.name)
        } else {
            is(SPECIAL, &self.name)
        }
    }

    /// Ends the search of an end tag for the element it names ("has in scope").
    fn bounds_scope(&self) -> bool {
        if self.foreign {
            is(FOREIGN_SPECIAL, &self.name)
        } else {
            is(SCOPE, &self.name)
        }
    }
}

#[derive(Default)]
struct State {
    open: Vec<Open>,
    /// Formatting elements left open: (start tag, how many markers were open).
    left_open: Vec<(String, usize)>,
    found: Nesting,
}

#[derive(Default)]
struct Measure(RefCell<State>);

impl Measure {
    fn found(&self) -> Nesting {
        self.0.borrow().found
    }
}

impl State {
    fn markers(&self) -> usize {
        self.open
            .iter()
            .filter(|e| !e.foreign && is(MARKERS, &e.name))
            .count()
    }

    fn in_foreign_content(&self) -> bool {
        self.open
            .last()
            .is_some_and(|e| e.foreign && !e.integration)
    }

    fn note(&mut self) {
        let depth = self.open.len() + self.left_open.len();
        self.found.depth = self.found.depth.max(depth);
        self.found.left_open = self.found.left_open.max(self.left_open.len());
    }

    /// Past a limit the answer is known: the rest is not looked at, which keeps every
    /// search of the open elements short (the measure stays linear).
    fn decided(&self) -> bool {
        self.found.fault().is_some()
    }

    /// Pops down to and including the element at `index`. Formatting elements popped on the
    /// way stay in the parser's list, to be reopened.
    fn pop_to(&mut self, index: usize) {
        self.pop(index, false);
    }

    /// [`State::pop_to`] for the element's own end tag, or a table cell's closing: a
    /// marker closed so ends the formatting elements left open inside it.
    fn close_to(&mut self, index: usize) {
        self.pop(index, true);
    }

    fn pop(&mut self, index: usize, closing: bool) {
        while self.open.len() > index {
            let popped = self.open.pop().expect("within the stack");
            let markers = self.markers();
            if !popped.foreign && is(MARKERS, &popped.name) {
                if closing {
                    self.left_open.retain(|(_, level)| *level <= markers);
                }
            } else if let Some(key) = popped.key
                && self.open.len() > index
            {
                self.leave_open(key, markers);
            }
        }
        self.note();
    }

    fn leave_open(&mut self, key: String, markers: usize) {
        let same = self
            .left_open
            .iter()
            .filter(|(k, level)| *k == key && *level == markers)
            .count();
        if same < 3 {
            self.left_open.push((key, markers));
        }
    }

    /// The index of the nearest open `name`, looking down from the top and stopping at
    /// `stop` (an element that ends the search without a match).
    fn find(&self, name: &str, stop: impl Fn(&Open) -> bool) -> Option<usize> {
        for (i, e) in self.open.iter().enumerate().rev() {
            if !e.foreign && e.name == name {
                return Some(i);
            }
            if stop(e) {
                return None;
            }
        }
        None
    }

    fn in_scope(&self, name: &str) -> Option<usize> {
        self.find(name, |e| e.bounds_scope())
    }

    fn close_p(&mut self) {
        let button = |e: &Open| e.bounds_scope() || e.name == "button";
        if let Some(p) = self.find("p", button) {
            self.pop_to(p);
        }
    }

    fn push(&mut self, tag: &Tag, space: Space) {
        let name = tag.name.to_string();
        let foreign = space != Space::Html;
        let integration = match space {
            Space::Html => false,
            Space::Svg => matches!(name.as_str(), "foreignobject" | "desc" | "title"),
            Space::MathMl => {
                matches!(name.as_str(), "mi" | "mo" | "mn" | "ms" | "mtext")
                    || (name == "annotation-xml"
                        && tag.attrs.iter().any(|a| {
                            &*a.name.local == "encoding"
                                && (a.value.eq_ignore_ascii_case("text/html")
                                    || a.value.eq_ignore_ascii_case("application/xhtml+xml"))
                        }))
            }
        };
        let key = (!foreign && is(FORMATTING, &name)).then(|| {
            let mut attrs: Vec<String> = tag
                .attrs
                .iter()
                .map(|a| format!("{}={}", a.name.local, a.value))
                .collect();
            attrs.sort();
            format!("{name} {}", attrs.join(" "))
        });
        self.open.push(Open {
            name,
            foreign,
            space,
            integration,
            key,
        });
        self.note();
    }

    /// An element the parser opens without a tag for it (`tbody`, `tr`).
    fn push_implied(&mut self, name: &str) {
        self.open.push(Open {
            name: name.to_owned(),
            foreign: false,
            space: Space::Html,
            integration: false,
            key: None,
        });
        self.note();
    }

    fn start_tag(&mut self, tag: &Tag) -> TokenSinkResult<()> {
        let name = &*tag.name;
        if let Some(top) = self.open.last().filter(|_| self.in_foreign_content()) {
            // `svg` in MathML's annotation-xml is SVG; anything else stays in the namespace
            // around it.
            let space =
                if name == "svg" && top.space == Space::MathMl && top.name == "annotation-xml" {
                    Space::Svg
                } else {
                    top.space
                };
            let font_break = name == "font"
                && tag
                    .attrs
                    .iter()
                    .any(|a| matches!(&*a.name.local, "color" | "face" | "size"));
            if !(is(BREAK_OUT, name) || font_break) {
                if !tag.self_closing {
                    self.push(tag, space);
                }
                return TokenSinkResult::Continue;
            }
            // The parser leaves the foreign elements and reads the tag as HTML.
            while self.in_foreign_content() {
                let top = self.open.len() - 1;
                self.pop_to(top);
            }
        }
        if name == "svg" || name == "math" {
            if !tag.self_closing {
                let space = if name == "svg" {
                    Space::Svg
                } else {
                    Space::MathMl
                };
                self.push(tag, space);
            }
            return TokenSinkResult::Continue;
        }
        // Inside a select the parser closes nothing around it for a start tag: only raw
        // text and void elements are told apart there.
        let in_select = self.open.iter().any(|e| !e.foreign && e.name == "select");
        // A table opened in a table, not in one of its cells, closes that table first.
        if name == "table"
            && !in_select
            && let Some(table) = self.in_scope_of_table()
            && !self.open[table + 1..]
                .iter()
                .any(|e| !e.foreign && matches!(e.name.as_str(), "td" | "th" | "caption"))
        {
            self.pop_to(table);
        }
        if is(CLOSE_P, name) && !in_select {
            self.close_p();
        }
        match name {
            _ if is(VOID, name) => return TokenSinkResult::Continue,
            _ if in_select && !is(RAW_TEXT, name) => {}
            // Open while their text is read: counted, and closed by their end tag.
            "title" | "textarea" => {
                self.push(tag, Space::Html);
                return TokenSinkResult::RawData(RawKind::Rcdata);
            }
            "style" | "xmp" | "iframe" | "noembed" | "noframes" | "noscript" => {
                self.push(tag, Space::Html);
                return TokenSinkResult::RawData(RawKind::Rawtext);
            }
            "script" => {
                self.push(tag, Space::Html);
                return TokenSinkResult::RawData(RawKind::ScriptData);
            }
            "plaintext" => {
                self.push(tag, Space::Html);
                return TokenSinkResult::Plaintext;
            }
            "li" | "dd" | "dt" => {
                let siblings: &[&str] = if name == "li" { &["li"] } else { &["dd", "dt"] };
                for (i, e) in self.open.iter().enumerate().rev() {
                    if !e.foreign && is(siblings, &e.name) {
                        self.pop_to(i);
                        break;
                    }
                    if e.is_special() && (e.foreign || !is(&["address", "div", "p"], &e.name)) {
                        break;
                    }
                }
                self.close_p();
            }
            "td" | "th" | "tr" | "tbody" | "thead" | "tfoot" | "caption" | "colgroup" => {
                // Outside a table the parser ignores them.
                let Some(table) = self.in_scope_of_table() else {
                    return TokenSinkResult::Continue;
                };
                // Where the parser stands: the innermost cell, row and row group (or
                // caption, column group) above the table.
                let nearest = |names: &[&str]| {
                    (table + 1..self.open.len())
                        .rev()
                        .find(|&i| !self.open[i].foreign && is(names, &self.open[i].name))
                };
                let cell = nearest(&["td", "th"]);
                let row = nearest(&["tr"]);
                let group = nearest(&["tbody", "thead", "tfoot", "caption", "colgroup"]);
                // It closes what the new element replaces, and what is open above what
                // it goes into (content set aside from the table, say); then opens what the
                // new element needs around it.
                match name {
                    "td" | "th" => match (cell, row, group) {
                        (Some(cell), _, _) => self.pop_to(cell),
                        (None, Some(row), _) => self.pop_to(row + 1),
                        (None, None, Some(group)) => {
                            self.pop_to(group + 1);
                            self.push_implied("tr");
                        }
                        (None, None, None) => {
                            self.pop_to(table + 1);
                            self.push_implied("tbody");
                            self.push_implied("tr");
                        }
                    },
                    "tr" => match (row, group) {
                        (Some(row), _) => self.close_to(row),
                        (None, Some(group)) => self.pop_to(group + 1),
                        (None, None) => {
                            self.pop_to(table + 1);
                            self.push_implied("tbody");
                        }
                    },
                    _ => self.pop_to(group.unwrap_or(table + 1)),
                }
            }
            "option" | "optgroup" if self.open.last().is_some_and(|e| e.name == "option") => {
                let top = self.open.len() - 1;
                self.pop_to(top);
            }
            _ if is(HEADINGS, name) && self.open.last().is_some_and(|e| is(HEADINGS, &e.name)) => {
                let top = self.open.len() - 1;
                self.pop_to(top);
            }
            "a" => {
                // An `a` in the list is closed by the adoption agency: it is not reopened.
                let markers = self.markers();
                self.left_open
                    .retain(|(key, level)| !(key.starts_with("a ") && *level == markers));
            }
            _ => {}
        }
        self.push(tag, Space::Html);
        TokenSinkResult::Continue
    }

    /// The nearest open `table`, unless an element that ends table scope comes first.
    fn in_scope_of_table(&self) -> Option<usize> {
        self.find("table", |e| {
            !e.foreign && matches!(e.name.as_str(), "html" | "template")
        })
    }

    fn end_tag(&mut self, tag: &Tag) {
        let name = &*tag.name;
        if self.in_foreign_content() && matches!(name, "br" | "p") {
            // The parser leaves the foreign elements and reads the tag as HTML.
            while self.in_foreign_content() {
                let top = self.open.len() - 1;
                self.pop_to(top);
            }
        }
        if name == "br" {
            return; // Read as `<br>`, which holds nothing.
        }
        if self.in_foreign_content() {
            // A foreign element closed by name; otherwise the tag is read as HTML.
            for i in (0..self.open.len()).rev() {
                let e = &self.open[i];
                if !e.foreign {
                    break;
                }
                if e.name.eq_ignore_ascii_case(name) {
                    self.pop_to(i);
                    return;
                }
            }
        }
        let in_select = self.open.iter().any(|e| !e.foreign && e.name == "select");
        if in_select && !matches!(name, "select" | "option" | "optgroup") {
            return; // Inside a select the parser ignores other end tags.
        }
        if name == "form" {
            // The parser takes the form out of the open elements alone, leaving what was
            // opened inside it open.
            if let Some(i) = self.in_scope("form") {
                self.open.remove(i);
            }
            return;
        }
        let target = if is(FORMATTING, name) {
            // Not open: the parser drops it from the list (it is not reopened).
            if self.find(name, |_| false).is_none() {
                let markers = self.markers();
                let prefix = format!("{name} ");
                if let Some(i) = self
                    .left_open
                    .iter()
                    .rposition(|(key, level)| key.starts_with(&prefix) && *level == markers)
                {
                    self.left_open.remove(i);
                }
                return;
            }
            // Popped only when nothing special lies above it; otherwise the adoption
            // agency moves elements around, and the estimate keeps them.
            self.find(name, |e| e.is_special())
        } else if is(SPECIAL, name) {
            match name {
                "p" => self.find("p", |e| e.bounds_scope() || e.name == "button"),
                "li" => self.find("li", |e| {
                    e.bounds_scope() || matches!(e.name.as_str(), "ol" | "ul")
                }),
                "td" | "th" | "tr" | "tbody" | "thead" | "tfoot" | "table" => {
                    self.find(name, |e| {
                        !e.foreign
                            && (matches!(e.name.as_str(), "html" | "template")
                                || (e.name == "table" && name != "table"))
                    })
                }
                _ => self.in_scope(name),
            }
        } else {
            self.find(name, |e| e.is_special())
        };
        match target {
            Some(i) => self.close_to(i),
            // `</p>` with no `p` open: the parser opens and closes an empty one.
            None if name == "p" => {
                let depth = self.open.len() + self.left_open.len() + 1;
                self.found.depth = self.found.depth.max(depth);
            }
            None => {}
        }
    }
}

impl TokenSink for Measure {
    type Handle = ();

    fn process_token(&self, token: Token, _line: u64) -> TokenSinkResult<()> {
        let mut state = self.0.borrow_mut();
        if state.decided() {
            return TokenSinkResult::Continue;
        }
        match token {
            Token::TagToken(tag) => match tag.kind {
                TagKind::StartTag => state.start_tag(&tag),
                TagKind::EndTag => {
                    state.end_tag(&tag);
                    TokenSinkResult::Continue
                }
            },
            _ => TokenSinkResult::Continue,
        }
    }

    /// CDATA sections are text inside SVG and MathML, bogus comments elsewhere.
    fn adjusted_current_node_present_but_not_in_html_namespace(&self) -> bool {
        self.0.borrow().in_foreign_content()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ordinary_and_sloppy_copy_is_shallow() {
        let article = "<p>第一段<b>加粗</b><a href=\"https://x/\">链接</a></p>\
            <blockquote><p>引文<p>续</blockquote><ul><li>一<li>二</ul>\
            <table><tr><td>格<td>格</table><img src=\"https://x/1.jpg\"><br>\
            <h2>小标题</h2><p title=\"it's\">引号</p>";
        let found = measure(&article.repeat(1000));
        assert!(found.depth <= 4, "{found:?}");
        assert_eq!(found.left_open, 0);
        // Inline elements left unclosed inside blocks that are closed.
        for sloppy in [
            "<p><span class=\"x\">文字</p>\n",
            "<ul><li><span>x</li></ul>",
            "<table><tr><td><a href=\"/i\">x</td></tr></table>",
            "<div><font color=red>x</div>",
            "<p><b>x<p><i>y",
        ] {
            let found = measure(&sloppy.repeat(500));
            assert_eq!(found.fault(), None, "{sloppy}: {found:?}");
        }
        let cells: String = (0..17)
            .map(|i| format!("<td><a href=\"/{i}\">x</td>"))
            .collect();
        assert_eq!(
            measure(&format!("<table><tr>{cells}</table>")).fault(),
            None
        );
    }

    #[test]
    fn deep_nesting_is_measured_and_refused() {
        for open in [
            "<blockquote>",
            "<div>",
            "<table><tr><td>",
            "<ul><li>",
            "<span>",
            "<svg><g>",
        ] {
            let html = open.repeat(MAX_DEPTH + 1) + "x";
            let found = measure(&html);
            assert!(found.depth > MAX_DEPTH, "{open}: {found:?}");
            assert!(found.fault().unwrap().contains("deep"), "{open}");
        }
        // At the limit: accepted.
        let html = "<div>".repeat(MAX_DEPTH) + &"</div>".repeat(MAX_DEPTH);
        assert_eq!(measure(&html.repeat(3)).fault(), None);
    }

    /// Text the parser reads as text is not tags to the measure either, and tags it reads
    /// are not hidden from it.
    #[test]
    fn end_tags_the_parser_ignores_or_reads_as_text_give_no_credit() {
        let deep = |html: &str| measure(html).depth;
        // `</span>` closes nothing: the divs stay open.
        let html = format!("{}</span>{}", "<div>".repeat(100), "<div>".repeat(100));
        assert_eq!(deep(&html), 200);
        for (hide, then) in [
            ("<textarea>", "</textarea>"),
            ("<title>", "</title>"),
            ("<script><!--<script>", "</script>--></script>"),
            ("<style>", "</style>"),
            ("<!-- ", " -->"),
        ] {
            let html = format!(
                "{}{hide}{}{then}{}",
                "<div>".repeat(100),
                "</div>".repeat(100),
                "<div>".repeat(100)
            );
            assert_eq!(deep(&html), 200, "{hide}");
        }
        // A lone quote in a tag is not a quoted value; short comments end at once.
        for hider in ["<p a\">", "<p title=it's>", "<!-->", "<!--->"] {
            let html = format!("{hider}{}x<p b=\">", "<blockquote>".repeat(300));
            assert!(deep(&html) > MAX_DEPTH, "{hider}");
        }
        // Inside SVG, <style> is an element, not raw text; so it is in an SVG element inside
        // MathML (no HTML integration point) and in annotation-xml without an HTML encoding.
        for around in [
            "<svg><style>",
            "<math><svg><foreignObject><style>",
            "<math><annotation-xml><style>",
        ] {
            let html = format!("{around}{}", "<g>".repeat(300));
            assert!(deep(&html) > MAX_DEPTH, "{around}");
        }
        // Where the parser reads HTML inside foreign content, raw text is raw text again.
        for around in [
            "<svg><foreignObject>",
            "<svg><title>",
            "<math><mi>",
            "<math><annotation-xml encoding=\"text/html\">",
        ] {
            let html = format!(
                "{}{around}<textarea>{}</textarea>{}",
                "<div>".repeat(100),
                "</div>".repeat(100),
                "<div>".repeat(100)
            );
            assert!(deep(&html) >= 200, "{around}: {}", deep(&html));
        }
        // CDATA is text inside SVG: its end tags close nothing.
        let html = format!(
            "<svg>{}<![CDATA[{}]]>{}",
            "<g>".repeat(100),
            "</g>".repeat(100),
            "<g>".repeat(100)
        );
        assert_eq!(deep(&html), 201);
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
        // Its own end tag, later, takes it out of the list.
        let closed_late: String = (0..100)
            .map(|i| format!("<div><b id={i}>x</div></b>"))
            .collect();
        assert_eq!(measure(&closed_late).left_open, 1);
    }

    #[test]
    fn odd_input_ends_the_measure_without_panicking() {
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
            "<svg><![CDATA[",
            "<math><mi><table><td>",
            "</p></li></td>",
            "<td><tr><caption>",
            "\u{0}<\u{0}>",
            "<svg/><math/>",
        ] {
            let _ = measure(html);
        }
        // The plaintext element is open; what follows is text.
        assert_eq!(measure("<plaintext><div><div>").depth, 1);
    }
}
