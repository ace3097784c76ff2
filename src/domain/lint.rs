//! Newsroom lint: what an editor would point at in copy, reported without changing it.
//! Two faults of printed pages carried online: a paragraph printed more than once, and a
//! paragraph that a page break cut off mid-sentence.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::hash::{Hash, Hasher};
use unicode_segmentation::UnicodeSegmentation;

/// Characters a finished sentence (or a line such as a heading lead-in) may end with.
const SENTENCE_ENDS: &[char] = &[
    '。', '！', '？', '；', '…', '」', '』', '”', '’', '）', '》', '：', '.', '!', '?', ';', ':',
    ')', ']', '"', '\'',
];
/// Lines shorter than this are headings, bylines, dates or signatures, not cut-off copy.
const MIN_PROSE_CHARS: usize = 40;
/// Paragraphs shorter than this may repeat legitimately (e.g. "（完）").
const MIN_REPEAT_CHARS: usize = 20;
/// How much of a paragraph a warning quotes, in user-perceived characters, and at most
/// in bytes.
const QUOTE_GRAPHEMES: usize = 12;
const QUOTE_BYTES: usize = 96;

/// Most warnings listed one by one; the rest are counted in one last warning, so that the
/// answer to a publish stays small whatever the copy (a body of many thousand repeated
/// paragraphs would otherwise get a warning each, megabytes in all).
const MAX_LISTED: usize = 20;

/// Warnings about `paragraphs` of the field `field`, in paragraph order: the first
/// [`MAX_LISTED`], then how many more there are (counted, not written).
pub fn lint(field: &str, paragraphs: &[&str]) -> Vec<String> {
    let mut warnings = Warnings::default();
    // Each comparison key, with the first paragraph that has it: one lookup per paragraph,
    // so that an article of many thousand paragraphs costs no more than its length.
    // Sized once: growing the map would hash every key again, a pass over its paragraph.
    // A key has at least `MIN_REPEAT_CHARS` characters, each a byte or more, which bounds
    // how many there can be: a body of many tiny paragraphs does not get a large map.
    let most_keys = paragraphs
        .len()
        .min(paragraphs.iter().map(|p| p.len()).sum::<usize>() / MIN_REPEAT_CHARS);
    let mut first_with: HashMap<ComparisonKey, usize> = HashMap::with_capacity(most_keys);
    for (i, paragraph) in paragraphs.iter().enumerate() {
        let n = i + 1;
        let key = ComparisonKey(paragraph);
        if key.chars().nth(MIN_REPEAT_CHARS - 1).is_some() {
            match first_with.entry(key) {
                Entry::Occupied(first) => warnings.push(|| {
                    format!(
                        "{field}: paragraph {n} repeats paragraph {} (“{}”)",
                        first.get() + 1,
                        head(paragraph)
                    )
                }),
                Entry::Vacant(slot) => {
                    slot.insert(i);
                }
            }
        }
        let last_line = paragraph.lines().last().unwrap_or("").trim();
        let cut_off =
            last_line.chars().count() >= MIN_PROSE_CHARS && !last_line.ends_with(SENTENCE_ENDS);
        if cut_off {
            warnings.push(|| {
                let next = match paragraphs.get(i + 1) {
                    Some(next) => format!("the next paragraph starts “{}”", head(next)),
                    None => "and the article ends there".to_owned(),
                };
                format!(
                    "{field}: paragraph {n} ends mid-sentence (“…{}”), {next}: cut by a page \
                     break?",
                    tail(last_line)
                )
            });
        }
    }
    let Warnings { mut listed, more } = warnings;
    if more > 0 {
        listed.push(format!(
            "{field}: {more} more warning(s) of repeated or cut paragraphs, not listed"
        ));
    }
    listed
}

/// The first [`MAX_LISTED`] warnings, written, and how many came after them.
#[derive(Default)]
struct Warnings {
    listed: Vec<String>,
    more: usize,
}

impl Warnings {
    fn push(&mut self, write: impl FnOnce() -> String) {
        if self.listed.len() < MAX_LISTED {
            self.listed.push(write());
        } else {
            self.more += 1;
        }
    }
}

/// A paragraph compared without its white space and punctuation, so that copies differing
/// only in a comma or a space still match. It hashes and compares the characters it keeps
/// as it reads them: no copy of the paragraph is made to be looked up.
struct ComparisonKey<'a>(&'a str);

impl ComparisonKey<'_> {
    fn chars(&self) -> impl Iterator<Item = char> + '_ {
        self.0.chars().filter(|&c| {
            // Most of the copy is CJK ideographs, kept without the three tests.
            matches!(c, '\u{4e00}'..='\u{9fff}')
                || !(c.is_whitespace() || c.is_ascii_punctuation() || is_cjk_punctuation(c))
        })
    }
}

impl PartialEq for ComparisonKey<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.chars().eq(other.chars())
    }
}

impl Eq for ComparisonKey<'_> {}

impl Hash for ComparisonKey<'_> {
    fn hash<H: Hasher>(&self, state: &mut H) {
        // The kept characters' UTF-8, handed over a buffer at a time: the hasher's cost is
        // per call, and a paragraph has hundreds of characters.
        let mut buffer = [0u8; 256];
        let mut filled = 0;
        for c in self.chars() {
            if filled + 4 > buffer.len() {
                state.write(&buffer[..filled]);
                filled = 0;
            }
            filled += c.encode_utf8(&mut buffer[filled..]).len();
        }
        state.write(&buffer[..filled]);
    }
}

fn is_cjk_punctuation(c: char) -> bool {
    matches!(c as u32, 0x3000..=0x303f | 0xff00..=0xff0f | 0xff1a..=0xff20 | 0x2010..=0x2027)
}

/// The first `QUOTE_GRAPHEMES` user-perceived characters, and `…` when there are more:
/// segmented only that far, not through the whole paragraph.
fn head(text: &str) -> String {
    let mut graphemes = text.trim().graphemes(true);
    let mut quoted: String = graphemes.by_ref().take(QUOTE_GRAPHEMES).collect();
    let mut cut = graphemes.next().is_some();
    if quoted.len() > QUOTE_BYTES {
        // Characters stacked with hundreds of marks: a quote stays a quote.
        quoted.truncate(super::text::floor_char_boundary(&quoted, QUOTE_BYTES));
        cut = true;
    }
    if cut {
        quoted.push('…');
    }
    quoted
}

/// The last `QUOTE_GRAPHEMES` user-perceived characters, segmented from the end.
fn tail(text: &str) -> String {
    let trimmed = text.trim();
    let start = trimmed
        .grapheme_indices(true)
        .rev()
        .take(QUOTE_GRAPHEMES)
        .last()
        .map_or(trimmed.len(), |(at, _)| at);
    // At most `QUOTE_BYTES` of them: the warning quotes a tail after an ellipsis of its own.
    let quoted = &trimmed[start..];
    let from = super::text::ceil_char_boundary(quoted, quoted.len().saturating_sub(QUOTE_BYTES));
    quoted[from..].to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thousands_of_repeats_get_twenty_warnings_and_a_count() {
        let paragraph = "文字文字文字文字文字文字文字文字文字文字。";
        let body = vec![paragraph; 16_000];
        let warnings = lint("article.content_text", &body);
        assert_eq!(warnings.len(), MAX_LISTED + 1);
        assert!(
            warnings[0].contains("paragraph 2 repeats paragraph 1"),
            "{warnings:?}"
        );
        assert_eq!(
            warnings[MAX_LISTED],
            "article.content_text: 15979 more warning(s) of repeated or cut paragraphs, \
             not listed"
        );
        assert_eq!(
            lint("f", &body[..MAX_LISTED + 1]).len(),
            MAX_LISTED,
            "all listed"
        );
    }

    /// A paragraph of a few letters each stacked with thousands of marks is quoted in a
    /// few dozen bytes, not whole.
    #[test]
    fn quotes_are_short_whatever_the_characters() {
        let heavy: String = (0..40)
            .map(|n| format!("{}{}", char::from(b'a' + n % 26), "\u{301}".repeat(2_000)))
            .collect();
        // Cut mid-sentence, its tail quoted, and the heavy next paragraph's head.
        let paragraphs = [heavy.as_str(), heavy.as_str()];
        let warnings = lint("f", &paragraphs);
        assert_eq!(warnings.len(), 3, "{warnings:?}");
        for warning in &warnings {
            assert!(warning.len() < 400, "{} bytes", warning.len());
        }
    }

    #[test]
    fn a_repeat_counts_from_twenty_characters_without_punctuation_and_names_the_first() {
        let nineteen = "一二三四五六七八九十一二三四五六七八九";
        let twenty = "一二三四五六七八九十一二三四五六七八九十";
        assert!(lint("f", &[nineteen, nineteen]).is_empty());
        // Punctuation and spaces do not count, nor keep copies apart.
        let warnings = lint(
            "f",
            &[
                twenty,
                "其他。",
                "一二三四五，六七八九十 一二三四五六七八九十。",
                twenty,
            ],
        );
        assert_eq!(
            warnings,
            [
                "f: paragraph 3 repeats paragraph 1 (“一二三四五，六七八九十 …”)",
                "f: paragraph 4 repeats paragraph 1 (“一二三四五六七八九十一二…”)",
            ]
        );
    }

    #[test]
    fn a_page_break_split_is_reported_with_both_sides() {
        let first = "党员不足3人的小区和楼栋，按照“就近就便”原则，分别成立联合党支部和联合党小组，并积极引导机关企";
        let second = "事业单位退休党员向所在（常住）小区转接党组织关系。";
        let warnings = lint("article.content_text", &[first, second]);
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(
            warnings[0].contains("paragraph 1 ends mid-sentence"),
            "{warnings:?}"
        );
        assert!(warnings[0].contains("并积极引导机关企"), "{warnings:?}");
        assert!(warnings[0].contains("事业单位"), "{warnings:?}");
    }

    #[test]
    fn repeats_are_found_even_when_a_comma_differs() {
        let a = "全市各级少先队组织开展了“节约用水——红领巾在行动”红领巾阅读进行时。";
        let b = "全市各级少先队组织开展了“节约用水——红领巾在行动”、红领巾阅读进行时。";
        let warnings = lint("f", &[a, b, b]);
        assert_eq!(warnings.len(), 2, "{warnings:?}");
        assert!(warnings[0].starts_with("f: paragraph 2 repeats paragraph 1"));
        assert!(warnings[1].starts_with("f: paragraph 3 repeats paragraph 1"));
    }

    #[test]
    fn long_paragraphs_repeat_only_when_every_kept_character_matches() {
        // Hundreds of characters, hashed in several pieces; the punctuation falls in
        // different places in each copy.
        let body = "传承红色基因培育时代新人".repeat(30);
        let long = format!("{body}。");
        let punctuated: String = body
            .chars()
            .enumerate()
            .flat_map(|(i, c)| [Some(c), (i % 7 == 3).then_some('，')])
            .flatten()
            .chain(['。'])
            .collect();
        let spaced = long.replacen("基因", "基 因", 5);
        // The same but for its last character.
        let last_differs = format!(
            "{}传承红色基因培育时代新民。",
            "传承红色基因培育时代新人".repeat(29)
        );
        let warnings = lint("f", &[&long, &last_differs, &punctuated, &spaced]);
        assert_eq!(warnings.len(), 2, "{warnings:?}");
        assert!(
            warnings[0].starts_with("f: paragraph 3 repeats paragraph 1 "),
            "{warnings:?}"
        );
        assert!(
            warnings[1].starts_with("f: paragraph 4 repeats paragraph 1 "),
            "{warnings:?}"
        );
    }

    #[test]
    fn quotes_are_cut_on_grapheme_boundaries_at_both_ends() {
        // A flag is two code points but one user-perceived character.
        let text = format!("{}🇨🇳甲乙", "字".repeat(10));
        assert_eq!(head(&text), format!("{}🇨🇳甲…", "字".repeat(10)));
        assert_eq!(tail(&text), format!("{}🇨🇳甲乙", "字".repeat(9)));
        assert_eq!(head("  短句  "), "短句");
        assert_eq!(tail("  短句  "), "短句");
        assert_eq!(head(""), "");
        assert_eq!(tail(""), "");
    }

    #[test]
    fn headings_signatures_and_finished_sentences_pass() {
        let copy = [
            "思想引领，培育更有理想的“接班人”",
            "来信地址：朔州市振华西街1号市委组织部干部监督科\n中共朔州市委组织部\n2023年6月6日",
            "一项项参赛项目，充分展示了全市少先队员和辅导员队伍良好的政治素质、扎实的业务技能。",
            "“红色旗帜，代代相传，请党放心，强国有我”的高呼声响彻天空……",
        ];
        assert!(lint("f", &copy).is_empty(), "{:?}", lint("f", &copy));
    }
}
