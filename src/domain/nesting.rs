//! What an HTML body costs the parser, measured by running the parser itself (html5ever,
//! the sanitiser's, in the same fragment context) over a tree sink that keeps nothing but
//! counts, before the sanitiser parses it. The parser's work grows with the square of how
//! deep elements nest (each tag looks through the open elements), and formatting elements
//! left open are opened again in every later block, so a few kilobytes can cost seconds
//! and expand to megabytes. A body past the budgets below is refused instead.
//!
//! The parser is fed a few kilobytes at a time and stopped as soon as a budget is spent,
//! so refusing costs about the budget, not what the whole body would have cost.

use html5ever::tendril::{StrTendril, TendrilSink};
use html5ever::tree_builder::{ElemName, ElementFlags, NodeOrText, QuirksMode, TreeSink};
use html5ever::{Attribute, LocalName, Namespace, QualName, local_name, ns};
use std::borrow::Cow;
use std::cell::{Cell, RefCell};
use std::rc::Rc;

/// Steps of the parser (a look at an open element's name, or a comparison of two
/// elements) allowed per byte of the body, on top of [`BASE_STEPS`]. Ordinary copy takes
/// a few per byte; 600 KB of `<blockquote>` nested 50,000 deep would take 10^9.
pub const STEPS_PER_BYTE: u64 = 16;
pub const BASE_STEPS: u64 = 100_000;
/// Elements the parser may make per `<` in the body, on top of [`BASE_ELEMENTS`]: each
/// tag makes at most one, and a few are implied (`tbody`, `tr`); formatting elements left
/// open and reopened in every later block make many more.
pub const ELEMENTS_PER_TAG: u64 = 2;
pub const BASE_ELEMENTS: u64 = 64;
/// Most elements nested inside one another in the tree the parser builds (real articles
/// stay under 30). Cheap for the parser through tables, but the sanitised copy carries
/// the nesting to every feed reader.
pub const MAX_DEPTH: u64 = 256;
/// Most attributes on one tag: the tokenizer compares each with every one before it.
pub const MAX_ATTRIBUTES: u64 = 256;
/// Most bytes the serialiser may scan to escape the body's text and attribute values: for
/// each `&`, and each character of U+0080–U+00BF (it looks for no-break spaces by their
/// first byte, 0xC2), it looks for the next character to escape from there, through to the
/// next `<` or `>` of the text node (html5ever's `write_escaped`), so text of many and
/// neither costs the square of its length. Counted on the text as the parser decodes and
/// places it. Measured, release build, `ammonia::clean` of `"& "` 100,000 times (10^10
/// bytes scanned): 291 ms a pass, so 256 MiB is some 8 ms; 500,000 times would be some 7 s
/// a pass, and a validation runs several. A 64 KB paragraph with an `&` every 16 bytes
/// scans half of the 256 MiB.
pub const MAX_ESCAPE_SCAN: u64 = 256 << 20;
/// Steps for cloning one attribute when the parser compares formatting elements: a clone
/// costs some eight times a look at an element's name.
const CLONE_STEPS: u64 = 8;
/// How much of the body the parser is given at a time.
const CHUNK_BYTES: usize = 4096;

/// What parsing a body cost, as far as it went.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Cost {
    /// The parser's steps.
    pub steps: u64,
    /// The elements it made.
    pub elements: u64,
    /// The deepest it nested one: the deeper of the deepest an element was placed and the
    /// depth of the tree the parser leaves, where the adoption agency has moved elements
    /// with their children and placed elements it built before they had a parent. Between
    /// chunks only the first is known; the tree is walked once, at the end.
    pub depth: u64,
    /// The most attributes on one tag.
    pub attributes: u64,
    /// At most the bytes the serialiser scans to escape the text ([`MAX_ESCAPE_SCAN`]).
    pub escape_scan: u64,
    /// Its budgets for this body.
    pub step_budget: u64,
    pub element_budget: u64,
}

impl Cost {
    /// Why the body is refused, if it is.
    pub fn fault(&self) -> Option<String> {
        if self.escape_scan > MAX_ESCAPE_SCAN {
            Some(format!(
                "has too many `&` (or characters of U+0080–U+00BF, such as no-break spaces) in \
                 long runs of text or attribute values: escaping them would scan more than \
                 {MAX_ESCAPE_SCAN} bytes (split the text into paragraphs)"
            ))
        } else if self.attributes > MAX_ATTRIBUTES {
            Some(format!(
                "has a tag with {} attributes; at most {MAX_ATTRIBUTES} are allowed",
                self.attributes
            ))
        } else if self.depth > MAX_DEPTH {
            Some(format!(
                "nests elements more than {MAX_DEPTH} deep ({} at least)",
                self.depth
            ))
        } else if self.elements > self.element_budget {
            Some(format!(
                "makes the parser create more than {} elements from its tags (formatting \
                 elements such as <b> or <font> left unclosed, reopened in every later block?)",
                self.element_budget
            ))
        } else if self.steps > self.step_budget {
            Some(format!(
                "is too costly to parse (more than {} steps for {} allowed: elements nested \
                 thousands deep?)",
                self.steps, self.step_budget
            ))
        } else {
            None
        }
    }
}

/// Parses `html` as the sanitiser will, counting, and stops once a budget is spent.
pub fn measure(html: &str) -> Cost {
    let tags = memchr::memchr_iter(b'<', html.as_bytes()).count() as u64;
    let counts = Rc::new(Counts::default());
    let budget = Cost {
        step_budget: BASE_STEPS.saturating_add(STEPS_PER_BYTE.saturating_mul(html.len() as u64)),
        element_budget: BASE_ELEMENTS.saturating_add(ELEMENTS_PER_TAG.saturating_mul(tags)),
        ..Cost::default()
    };
    // Before the tokenizer meets them: it compares each attribute of a tag with every one
    // before it.
    let attributes = most_attributes(html.as_bytes());
    if attributes > MAX_ATTRIBUTES {
        return Cost {
            attributes,
            ..budget
        };
    }
    let cost = |counts: &Counts| Cost {
        steps: counts.steps.get(),
        elements: counts.elements.get(),
        depth: counts.depth.get(),
        attributes,
        escape_scan: counts.escape_scan.get(),
        ..budget
    };
    // As ammonia parses: a fragment in a `<div>`, scripting not enabled for it.
    let mut parser = html5ever::driver::parse_fragment(
        Meter::new(counts.clone()),
        html5ever::ParseOpts::default(),
        QualName::new(None, ns!(html), local_name!("div")),
        Vec::new(),
        false,
    );
    let mut rest = html;
    while !rest.is_empty() {
        let end = super::text::ceil_char_boundary(rest, CHUNK_BYTES);
        let (chunk, after) = rest.split_at(end);
        parser.process(StrTendril::from_slice(chunk));
        rest = after;
        if cost(&counts).fault().is_some() {
            return cost(&counts);
        }
    }
    // The tree as the parser left it: elements moved by the adoption agency carried their
    // children, and elements built before they were placed.
    parser.finish();
    cost(&counts)
}

/// The most attributes on one tag, reading tags as the tokenizer does: a value is quoted
/// only right after `=`, and a tag ends at the first `>` outside a quoted value. (Text
/// the parser reads as raw text may be read as tags here: that only counts more.)
fn most_attributes(html: &[u8]) -> u64 {
    let space = |b: u8| matches!(b, b' ' | b'\t' | b'\n' | b'\r' | b'\x0c');
    let mut most = 0;
    let mut at = 0;
    while let Some(offset) = memchr::memchr(b'<', &html[at..]) {
        at += offset + 1;
        if html.get(at) == Some(&b'/') {
            at += 1;
        }
        if !html.get(at).is_some_and(u8::is_ascii_alphabetic) {
            continue;
        }
        while at < html.len() && !space(html[at]) && !matches!(html[at], b'>' | b'/') {
            at += 1;
        }
        let mut count = 0;
        loop {
            while at < html.len() && (space(html[at]) || html[at] == b'/') {
                at += 1;
            }
            if at >= html.len() || html[at] == b'>' {
                break;
            }
            // A name (an `=` first is part of it), then perhaps `=` and a value.
            count += 1;
            at += 1;
            while at < html.len() && !space(html[at]) && !matches!(html[at], b'>' | b'/' | b'=') {
                at += 1;
            }
            while at < html.len() && space(html[at]) {
                at += 1;
            }
            if html.get(at) != Some(&b'=') {
                continue;
            }
            at += 1;
            while at < html.len() && space(html[at]) {
                at += 1;
            }
            match html.get(at) {
                Some(&quote @ (b'"' | b'\'')) => {
                    at += 1;
                    at = memchr::memchr(quote, &html[at..]).map_or(html.len(), |end| at + end + 1);
                }
                _ => {
                    while at < html.len() && !space(html[at]) && html[at] != b'>' {
                        at += 1;
                    }
                }
            }
        }
        most = most.max(count);
    }
    most
}

#[derive(Default)]
struct Counts {
    steps: Cell<u64>,
    elements: Cell<u64>,
    depth: Cell<u64>,
    /// Bytes the serialiser scans for the `&` of the text placed so far.
    escape_scan: Cell<u64>,
}

/// An element's name, as the parser asks for it.
#[derive(Debug)]
pub struct Name {
    ns: Namespace,
    local: LocalName,
}

impl ElemName for Name {
    fn ns(&self) -> &Namespace {
        &self.ns
    }

    fn local_name(&self) -> &LocalName {
        &self.local
    }
}

/// One node: an element's name and what the parser asks of it later.
#[derive(Default)]
struct Node {
    name: Option<(Namespace, LocalName)>,
    /// Ancestors in the tree when it was placed (the document: 0).
    depth: u64,
    /// Where it is, and how many nodes were placed in it (text too).
    parent: Option<usize>,
    children: u64,
    /// The nodes in it (text never holds anything), as a list through `next`, newest
    /// first: no allocation per node.
    first_kid: Option<usize>,
    next: Option<usize>,
    /// Attributes it holds, and the bytes of their names.
    attributes: u64,
    name_bytes: u64,
    template_contents: Option<usize>,
    annotation_xml_integration_point: bool,
    /// The characters of its last child, when that is text, whose escaping scans on over
    /// text appended to it (a tree appends text to a text last child): see [`Meter::escape`].
    open_amps: u64,
    /// The same of the text node just before it: text placed before it (foster parenting)
    /// is appended to that node.
    open_before: u64,
}

/// A tree sink that keeps no tree: nodes are numbers, with what the parser asks of them.
struct Meter {
    nodes: RefCell<Vec<Node>>,
    counts: Rc<Counts>,
}

impl Meter {
    fn new(counts: Rc<Counts>) -> Self {
        Self {
            // Node 0: the document.
            nodes: RefCell::new(vec![Node::default()]),
            counts,
        }
    }

    fn step(&self) {
        self.steps(1);
    }

    fn steps(&self, n: u64) {
        self.counts
            .steps
            .set(self.counts.steps.get().saturating_add(n));
    }

    fn parent_of(&self, node: usize) -> Option<usize> {
        self.nodes.borrow().get(node).and_then(|n| n.parent)
    }

    fn add(&self, node: Node) -> usize {
        let mut nodes = self.nodes.borrow_mut();
        nodes.push(node);
        nodes.len() - 1
    }

    /// Places `node` in `parent` (text counts as a child, not a node).
    /// Places `node` in `parent`: last, or just before `sibling`.
    fn place(&self, node: &NodeOrText<usize>, parent: usize, sibling: Option<usize>) {
        let depth = self.depth_of(parent) + 1;
        let mut nodes = self.nodes.borrow_mut();
        let mut next = None;
        let mut open_before = 0;
        if let Some(held) = nodes.get_mut(parent) {
            held.children = held.children.saturating_add(1);
            match node {
                NodeOrText::AppendNode(node) => {
                    next = held.first_kid.replace(*node);
                    if sibling.is_none() {
                        open_before = std::mem::take(&mut held.open_amps);
                    }
                }
                NodeOrText::AppendText(text) if sibling.is_none() => {
                    held.open_amps = self.escape(text, held.open_amps, false);
                }
                NodeOrText::AppendText(_) => {}
            }
        }
        if let (NodeOrText::AppendText(text), Some(sibling)) = (node, sibling)
            && let Some(sibling) = nodes.get_mut(sibling)
        {
            sibling.open_before = self.escape(text, sibling.open_before, false);
        }
        let NodeOrText::AppendNode(node) = node else {
            return;
        };
        let contents = nodes.get_mut(*node).and_then(|placed| {
            if sibling.is_none() {
                placed.open_before = open_before;
            }
            placed.depth = depth;
            placed.parent = Some(parent);
            placed.next = next;
            placed.template_contents
        });
        // A template's contents are a fragment of their own, nested where it is.
        if let Some(contents) = contents.and_then(|c| nodes.get_mut(c)) {
            contents.depth = depth;
        }
        let deepest = &self.counts.depth;
        deepest.set(deepest.get().max(depth));
        self.steps(noahs_ark_cost(&nodes, *node));
    }

    /// Counts what serialising `text` costs html5ever's `write_escaped`, appended to a text
    /// node (or, `attribute`, as an attribute value) with `open` looks still going on: from
    /// each `&` or byte 0xC2 it looks for the next character to escape through to the next
    /// `<` or `>` (or `"`). The looks still open after it.
    fn escape(&self, text: &str, mut open: u64, attribute: bool) -> u64 {
        let bytes = text.as_bytes();
        let mut scanned = 0_u64;
        let mut from = 0;
        for (at, &byte) in bytes.iter().enumerate() {
            // A look ends at `<` or `>` (and `"` in an attribute value); each `&`, and each
            // first byte of U+0080–U+00BF (0xC2, looked at for a no-break space), starts one.
            let ends = byte == b'<' || byte == b'>' || (attribute && byte == b'"');
            if ends || byte == b'&' || byte == 0xc2 {
                scanned = scanned.saturating_add(open.saturating_mul((at - from) as u64));
                from = at;
                open = if ends { 0 } else { open + 1 };
            }
        }
        scanned = scanned.saturating_add(open.saturating_mul((bytes.len() - from) as u64));
        let total = &self.counts.escape_scan;
        total.set(total.get().saturating_add(scanned));
        open
    }

    fn depth_of(&self, node: usize) -> u64 {
        self.nodes.borrow().get(node).map_or(0, |n| n.depth)
    }

    fn plain(&self) -> usize {
        self.add(Node::default())
    }

    /// The deepest element in the tree as it stands, walked from the document (a
    /// template's contents nested where the template is). Each node is visited once.
    fn deepest_now(&self) -> u64 {
        let nodes = self.nodes.borrow();
        let mut seen = vec![false; nodes.len()];
        let mut deepest = 0;
        let mut stack = vec![(0, 0)];
        while let Some((node, depth)) = stack.pop() {
            let Some(held) = nodes.get(node).filter(|_| !seen[node]) else {
                continue;
            };
            seen[node] = true;
            deepest = deepest.max(depth);
            stack.extend(kids(&nodes, node).map(|kid| (kid, depth + 1)));
            stack.extend(held.template_contents.map(|contents| (contents, depth)));
        }
        deepest
    }
}

/// What the parser spends on a formatting element it just opened (`<b>`, `<a>`, `<font>`
/// …), comparing it with each one of the same name still active since the last marker
/// (the Noah's Ark clause): html5ever clones and sorts both attribute lists each time.
/// Those still active are, near enough, the element's ancestors up to the nearest cell,
/// caption, object or template: the parser reopens the others around it first. One step
/// for each ancestor looked at; for each comparison, [`CLONE_STEPS`] for each attribute
/// of both, and the bytes of their names once for each level of the sort.
fn noahs_ark_cost(nodes: &[Node], node: usize) -> u64 {
    let Some(Node {
        name: Some((ns!(html), name)),
        attributes,
        name_bytes,
        parent,
        ..
    }) = nodes.get(node)
    else {
        return 0;
    };
    if !is_formatting(name) {
        return 0;
    }
    let mut cost = 0u64;
    let ancestors = std::iter::successors(*parent, |&a| nodes.get(a).and_then(|n| n.parent));
    for ancestor in ancestors.take(nodes.len()) {
        cost = cost.saturating_add(1);
        let Some(Node {
            name: Some((ns!(html), other)),
            attributes: held,
            name_bytes: held_bytes,
            ..
        }) = nodes.get(ancestor)
        else {
            continue;
        };
        if is_marker(other) {
            break;
        }
        if other == name {
            let levels = u64::from(u64::BITS - (*attributes).max(*held).leading_zeros());
            let cloned = CLONE_STEPS.saturating_mul(attributes.saturating_add(*held));
            let sorted = levels.saturating_mul(name_bytes.saturating_add(*held_bytes));
            cost = cost.saturating_add(cloned).saturating_add(sorted);
        }
    }
    cost
}

fn names_bytes(attrs: &[Attribute]) -> u64 {
    attrs.iter().map(|a| a.name.local.len() as u64).sum()
}

fn is_formatting(name: &LocalName) -> bool {
    matches!(
        *name,
        local_name!("a")
            | local_name!("b")
            | local_name!("big")
            | local_name!("code")
            | local_name!("em")
            | local_name!("font")
            | local_name!("i")
            | local_name!("nobr")
            | local_name!("s")
            | local_name!("small")
            | local_name!("strike")
            | local_name!("strong")
            | local_name!("tt")
            | local_name!("u")
    )
}

/// Elements that put a marker on the list of active formatting elements.
fn is_marker(name: &LocalName) -> bool {
    matches!(
        *name,
        local_name!("applet")
            | local_name!("object")
            | local_name!("marquee")
            | local_name!("template")
            | local_name!("td")
            | local_name!("th")
            | local_name!("caption")
    )
}

/// The nodes in `node`, newest first; at most as many as there are nodes, whatever the
/// links say.
fn kids(nodes: &[Node], node: usize) -> impl Iterator<Item = usize> + '_ {
    let first = nodes.get(node).and_then(|n| n.first_kid);
    std::iter::successors(first, |&kid| nodes.get(kid).and_then(|k| k.next)).take(nodes.len())
}

impl TreeSink for Meter {
    type Handle = usize;
    type Output = ();
    type ElemName<'a> = Name;

    fn finish(self) {
        let deepest = &self.counts.depth;
        deepest.set(deepest.get().max(self.deepest_now()));
    }

    fn parse_error(&self, _: Cow<'static, str>) {}

    fn get_document(&self) -> usize {
        0
    }

    fn elem_name(&self, target: &usize) -> Name {
        self.step();
        let nodes = self.nodes.borrow();
        let (ns, local) = nodes
            .get(*target)
            .and_then(|node| node.name.clone())
            .unwrap_or((ns!(), local_name!("")));
        Name { ns, local }
    }

    fn create_element(&self, name: QualName, attrs: Vec<Attribute>, flags: ElementFlags) -> usize {
        self.counts
            .elements
            .set(self.counts.elements.get().saturating_add(1));
        let template_contents = flags.template.then(|| self.plain());
        for attribute in &attrs {
            self.escape(&attribute.value, 0, true);
        }
        self.add(Node {
            name: Some((name.ns, name.local)),
            attributes: attrs.len() as u64,
            name_bytes: names_bytes(&attrs),
            template_contents,
            annotation_xml_integration_point: flags.mathml_annotation_xml_integration_point,
            ..Node::default()
        })
    }

    fn create_comment(&self, _: StrTendril) -> usize {
        self.plain()
    }

    fn create_pi(&self, _: StrTendril, _: StrTendril) -> usize {
        self.plain()
    }

    fn append(&self, parent: &usize, child: NodeOrText<usize>) {
        self.place(&child, *parent, None);
    }

    /// Beside `element` if it has a parent, else in `prev_element`: the deeper of both.
    fn append_based_on_parent_node(
        &self,
        element: &usize,
        prev_element: &usize,
        child: NodeOrText<usize>,
    ) {
        if self.parent_of(*element).is_some() {
            self.append_before_sibling(element, child);
        } else {
            self.place(&child, *prev_element, None);
        }
    }

    fn append_doctype_to_document(&self, _: StrTendril, _: StrTendril, _: StrTendril) {}

    fn get_template_contents(&self, target: &usize) -> usize {
        self.nodes
            .borrow()
            .get(*target)
            .and_then(|node| node.template_contents)
            .unwrap_or(0)
    }

    fn same_node(&self, x: &usize, y: &usize) -> bool {
        self.step();
        x == y
    }

    fn set_quirks_mode(&self, _: QuirksMode) {}

    /// A tree finds the sibling among its parent's children: as many steps.
    fn append_before_sibling(&self, sibling: &usize, new_node: NodeOrText<usize>) {
        let Some(parent) = self.parent_of(*sibling) else {
            return;
        };
        let children = self.nodes.borrow().get(parent).map_or(0, |p| p.children);
        self.steps(children);
        self.place(&new_node, parent, Some(*sibling));
    }

    /// A tree compares each attribute with those the element holds: as many steps.
    fn add_attrs_if_missing(&self, target: &usize, attrs: Vec<Attribute>) {
        let held = self.nodes.borrow().get(*target).map_or(0, |n| n.attributes);
        self.steps(held.saturating_add(attrs.len() as u64));
        for attribute in &attrs {
            self.escape(&attribute.value, 0, true);
        }
        if let Some(node) = self.nodes.borrow_mut().get_mut(*target) {
            node.attributes = node.attributes.saturating_add(attrs.len() as u64);
            node.name_bytes = node.name_bytes.saturating_add(names_bytes(&attrs));
        }
    }

    /// A tree finds the node among its parent's children: as many steps.
    fn remove_from_parent(&self, target: &usize) {
        let Some(parent) = self.parent_of(*target) else {
            return;
        };
        let mut nodes = self.nodes.borrow_mut();
        let before = kids(&nodes, parent).take_while(|kid| kid != target).last();
        let after = nodes.get_mut(*target).and_then(|removed| {
            removed.parent = None;
            removed.next.take()
        });
        if let Some(held) = nodes.get_mut(parent) {
            self.steps(held.children);
            held.children = held.children.saturating_sub(1);
        }
        // Unlinked from the node before it, or from the parent when it came first.
        let link = match before {
            Some(before) => nodes.get_mut(before).map(|b| &mut b.next),
            None => nodes.get_mut(parent).map(|p| &mut p.first_kid),
        };
        if let Some(link) = link {
            *link = after;
        }
    }

    /// A tree moves each child: as many steps. The children keep the depth they were
    /// placed at until the tree is walked at the end.
    fn reparent_children(&self, node: &usize, new_parent: &usize) {
        let mut nodes = self.nodes.borrow_mut();
        let moved: Vec<usize> = kids(&nodes, *node).collect();
        let Some(held) = nodes.get_mut(*node) else {
            return;
        };
        held.first_kid = None;
        let children = std::mem::take(&mut held.children);
        self.steps(children);
        let adopted = nodes.get(*new_parent).and_then(|adopter| adopter.first_kid);
        for (at, &kid) in moved.iter().enumerate() {
            if let Some(kid) = nodes.get_mut(kid) {
                kid.parent = Some(*new_parent);
                kid.next = moved.get(at + 1).copied().or(adopted);
            }
        }
        if let Some(adopter) = nodes.get_mut(*new_parent) {
            adopter.children = adopter.children.saturating_add(children);
            adopter.first_kid = moved.first().copied().or(adopted);
        }
    }

    fn is_mathml_annotation_xml_integration_point(&self, handle: &usize) -> bool {
        self.nodes
            .borrow()
            .get(*handle)
            .is_some_and(|node| node.annotation_xml_integration_point)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ordinary_and_sloppy_copy_is_within_budget() {
        let article = "<p>第一段<b>加粗</b><a href=\"https://x/\">链接</a></p>\
            <blockquote><p>引文<p>续</blockquote><ul><li>一<li>二</ul>\
            <table><tr><td>格<td>格</table><img src=\"https://x/1.jpg\"><br>\
            <h2>小标题</h2><p title=\"it's\">引号</p><svg><g><title>图</title></g></svg>";
        for copy in [
            article.to_owned(),
            article.repeat(2_000),
            "<p><span class=\"x\">文字</p>\n".repeat(2_000),
            "<ul><li><span>x</li></ul>".repeat(2_000),
            "<div><font color=red>x</div>".repeat(2_000),
            format!(
                "<table><tr>{}</table>",
                (0..500)
                    .map(|i| format!("<td><a href=\"/{i}\">x</td>"))
                    .collect::<String>()
            ),
            // Nested as deep as real layouts go, many times over.
            ("<div>".repeat(30) + "x" + &"</div>".repeat(30)).repeat(300),
        ] {
            let cost = measure(&copy);
            assert_eq!(
                cost.fault(),
                None,
                "{cost:?}: {}",
                &copy[..copy.len().min(80)]
            );
            assert!(cost.steps > 0 && cost.elements > 0);
        }
    }

    /// Text or attribute values of many `&` (or characters of U+0080–U+00BF) and no `<` or
    /// `>`, which the serialiser escapes in time that grows with the square of their
    /// length, are refused, also where the parser moves text before a table; a long paragraph with an `&` every few
    /// words, `&` in many short paragraphs, and entities that decode to other characters
    /// (or to `<`, where the serialiser's look stops) are not.
    #[test]
    fn text_of_many_ampersands_and_no_tags_is_refused() {
        for copy in [
            "& ".repeat(500_000),
            "&amp;".repeat(200_000),
            format!("<p>{}</p>", "&x ".repeat(300_000)),
            // Each character of U+0080–U+00BF starts a look too (its first byte, 0xC2).
            "° ".repeat(300_000),
            "\u{a0}".repeat(400_000),
            // Attribute values are escaped alike, `"` ending a look too.
            format!(
                "<img src=\"https://x/a.jpg\" alt=\"{}\">",
                "&".repeat(900_000)
            ),
            // Text placed before a table joins the text node before it.
            "&".repeat(20_000) + "<table>" + &"a".repeat(900_000) + "</table>",
        ] {
            let cost = measure(&copy);
            assert!(cost.escape_scan > MAX_ESCAPE_SCAN, "{cost:?}");
            assert!(cost.fault().unwrap().contains("`&`"), "{cost:?}");
        }
        let paragraph = format!("<p>{}</p>", "右玉 & 朔州 ".repeat(4_000));
        for copy in [
            paragraph.clone(),
            format!("<p>{}</p>", "右玉 & 朔州 ".repeat(60)).repeat(1_000),
            format!("<p>{}</p>", "&amp;&lt;👩‍👩‍👧‍👦𠮷]]>".repeat(4_000)),
            format!("<p>{}</p>", "&#x1F600;&eacute;".repeat(20_000)),
            format!("<p>{}</p>", "朔州气温零下五度°C，".repeat(100)).repeat(300),
            "<p>A&amp;B</p>\n".repeat(60_000),
        ] {
            let cost = measure(&copy);
            assert_eq!(cost.fault(), None, "{cost:?}");
        }
    }

    /// Whatever hides the nesting from a scan of the text (quotes, comments, raw text,
    /// foreign content, integration points, templates), the parser's own work is counted.
    #[test]
    fn deep_nesting_is_refused_however_it_is_written() {
        let deep = |prefix: &str, open: &str| format!("{prefix}{}x", open.repeat(20_000));
        for (prefix, open) in [
            ("", "<blockquote>"),
            ("", "<div>"),
            ("", "<table><tr><td>"),
            ("", "<ul><li>"),
            ("", "<span>"),
            ("<svg>", "<g>"),
            ("<p a\">", "<blockquote>"),
            ("<!-->", "<div>"),
            ("<math><mi></mi><plaintext>", "<div>"),
            ("<template><col><plaintext></template>", "<div>"),
            ("", "<body><div></body>"),
            ("", "<b><p><b></p></b>"),
            ("", "<template><tbody><tr><td>"),
            ("", "<span><isindex></span>"),
        ] {
            let cost = measure(&deep(prefix, open));
            let fault = cost.fault();
            assert!(
                fault
                    .as_deref()
                    .is_some_and(|f| f.contains("costly") || f.contains("deep")),
                "{prefix}{open}: {cost:?}"
            );
        }
    }

    /// Nested tables cost the parser little (its searches stop at each cell), but the
    /// copy would carry the nesting to every reader.
    #[test]
    fn nesting_past_the_depth_limit_is_refused_even_when_cheap_to_parse() {
        let cost = measure(&("<table><tr><td>".repeat(100) + "x"));
        assert!(cost.depth > MAX_DEPTH, "{cost:?}");
        assert!(cost.fault().unwrap().contains("deep"));
        let cost = measure(&("<div>".repeat(MAX_DEPTH as usize - 2) + "x"));
        assert_eq!(cost.fault(), None, "{cost:?}");
    }

    /// The deepest element of serialised, well-formed markup without void elements,
    /// counted from the fragment's top (1).
    fn serialised_depth(html: &str) -> u64 {
        let (mut depth, mut deepest) = (0u64, 0u64);
        for (at, _) in html.match_indices('<') {
            if html[at + 1..].starts_with('/') {
                depth = depth.saturating_sub(1);
            } else {
                depth += 1;
                deepest = deepest.max(depth);
            }
        }
        deepest
    }

    /// The adoption agency moves elements after they were placed, their children with
    /// them, and places elements it built elsewhere: the tree it leaves, which is the tree
    /// the sanitiser serialises, is measured too.
    #[test]
    fn nesting_built_by_the_adoption_agency_is_measured_where_it_ends() {
        for (unit, times) in [
            ("<table><tr><td>".repeat(60) + "<b><i><div></b>", 20),
            ("<table><tr><td>".repeat(10) + "<b><i><div></b>", 3),
            ("<a><div><p>".to_owned() + "<b><i><div></b>", 5),
        ] {
            let html = unit.repeat(times);
            let cost = measure(&html);
            let sanitised = ammonia::clean(&html);
            // The fragment sits in <html>, one below the document.
            let end = &unit[unit.len() - 20..];
            assert_eq!(
                cost.depth,
                serialised_depth(&sanitised) + 1,
                "{times} × …{end}"
            );
        }
        // Tag soup of the kinds the adoption agency, foster parenting and implied tags
        // rework, from a fixed seed.
        let tokens = [
            "<b>", "</b>", "<i>", "</i>", "<a>", "</a>", "<p>", "</p>", "<div>", "</div>",
            "<table>", "</table>", "<tr>", "<td>", "</td>", "<ul>", "<li>", "</ul>", "x",
        ];
        let mut seed = 0x2545_f491_4f6c_dd1d_u64;
        for _ in 0..400 {
            let soup: String = (0..40)
                .map(|_| {
                    seed ^= seed << 13;
                    seed ^= seed >> 7;
                    seed ^= seed << 17;
                    tokens[(seed % tokens.len() as u64) as usize]
                })
                .collect();
            // Never below the sanitised tree's depth (above it where an element was placed
            // deeper than the parser finally left it).
            let sanitised = ammonia::clean(&soup);
            assert!(
                measure(&soup).depth > serialised_depth(&sanitised),
                "{soup}"
            );
        }
        let cost = measure(&("<table><tr><td>".repeat(60) + "<b><i><div></b>").repeat(20));
        assert!(cost.depth > MAX_DEPTH, "{cost:?}");
        assert!(cost.fault().unwrap().contains("deep"));
    }

    /// Work the parser leaves to the tree is counted too: a tree rebuilding the root's
    /// attributes for each stray `<html>`, or finding a table among its parent's children
    /// for each node set aside before it; so is the parser's comparing of each formatting
    /// element with those still open; and a tag with attributes by the hundred is refused
    /// before the tokenizer compares them pairwise.
    #[test]
    fn work_done_in_the_tree_or_the_tokenizer_is_bounded_too() {
        let stray: String = (0..20_000).map(|i| format!("<html a{i}>")).collect();
        let cost = measure(&stray);
        assert!(
            cost.fault().is_some_and(|f| f.contains("costly")),
            "{cost:?}"
        );
        let set_aside = "<table>".to_owned() + &"<br>".repeat(20_000);
        let cost = measure(&set_aside);
        assert!(
            cost.fault().is_some_and(|f| f.contains("costly")),
            "{cost:?}"
        );
        for attrs in [
            (0..300).map(|i| format!(" a{i}")).collect::<String>(),
            (0..300).map(|i| format!(" a{i}=\">\"")).collect::<String>(),
            (0..300).map(|i| format!(" a{i}=x")).collect::<String>(),
        ] {
            let cost = measure(&format!("<p{attrs}>x</p>"));
            assert!(
                cost.fault().is_some_and(|f| f.contains("attributes")),
                "{cost:?}"
            );
        }
        // Each new <b> is compared with every <b> still open, cloning and sorting both
        // attribute lists: 107 KB of this took 16 s in a debug build.
        let attrs: String = (0..100).map(|i| format!(" a{i}")).collect();
        let open: String = (0..250).map(|n| format!("<b id={n}{attrs}>")).collect();
        let cost = measure(&(open + &"<b></b>".repeat(1_000)));
        assert!(
            cost.fault().is_some_and(|f| f.contains("costly")),
            "{cost:?}"
        );
        // One open <b> is enough when its attributes are many and their names long and
        // alike: each comparison sorts them by name.
        for prefix in [1, 2_500] {
            let mut names: Vec<String> = (0..200)
                .map(|i| format!("{}{i:04}", "x".repeat(prefix)))
                .collect();
            names.reverse();
            let open = format!("<b {}>", names.join(" "));
            let html = open + &"<b></b>".repeat(20_000);
            let cost = measure(&html);
            assert!(
                cost.fault().is_some_and(|f| f.contains("costly")),
                "{prefix}: {cost:?}"
            );
        }
        // A lone quote is no quoted value: the tag still ends at its `>`.
        assert_eq!(most_attributes(b"<p a\" b><p c d>"), 2);
        assert_eq!(most_attributes(b"<img src=\"a>b\" alt=x width=1>"), 3);
        assert_eq!(measure("<p class=x id=y>ok</p>").fault(), None);
    }

    #[test]
    fn formatting_elements_reopened_in_every_block_are_refused() {
        let distinct: String = (0..100).map(|i| format!("<b id=a{i}>")).collect();
        let html = format!("<div>{distinct}</div>") + &"<p>x</p>".repeat(4_000);
        let cost = measure(&html);
        assert!(cost.fault().unwrap().contains("unclosed"), "{cost:?}");
    }

    #[test]
    fn refusing_stops_the_parser_early() {
        // 600 KB nested 50,000 deep would take some 10^9 steps whole.
        let html = "<blockquote>".repeat(50_000);
        let cost = measure(&html);
        assert!(cost.fault().is_some(), "{cost:?}");
        assert!(cost.steps < cost.step_budget / 10, "{cost:?}");
        // Nested where tags cost the parser most, yet under the depth limit: the step
        // budget stops it, soon after it is spent.
        let html = ("<div>".repeat(250) + &"<p>x</p>".repeat(20_000)).repeat(3);
        let cost = measure(&html);
        assert!(
            cost.fault().is_some_and(|f| f.contains("costly")),
            "{cost:?}"
        );
        assert!(cost.steps < 2 * cost.step_budget, "{cost:?}");
    }

    #[test]
    fn odd_input_ends_the_measure_without_panicking() {
        for html in [
            "",
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
            "<template>",
            "<frameset>",
            "<html><body><head>",
            "<select><select>",
            "<table><template><td>",
        ] {
            let _ = measure(html);
        }
        // A multi-byte character across the chunk boundary.
        let _ = measure(&"é".repeat(CHUNK_BYTES));
    }
}
