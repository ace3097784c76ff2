//! Readable, stable URL slugs for author names and tags: pinyin for Chinese, ASCII for
//! Latin script, always ended by a short hash of the exact name so that no two names share
//! a feed.

use pinyin::ToPinyin;
use sha2::{Digest, Sha256};
use unicode_normalization::UnicodeNormalization;
use unicode_normalization::char::is_combining_mark;

/// Longest readable part of a slug, in bytes; it is cut between words.
const MAX_READABLE: usize = 48;
/// Bytes of SHA-256 of the exact name that end every slug (two hex digits each).
const HASH_BYTES: usize = 3;

/// The slug of an author name or a tag, `[a-z0-9-]` only: the name's words in lowercase
/// ASCII (each Chinese character as its toneless pinyin syllable, Latin letters without
/// their accents, other scripts and punctuation as word breaks), then `-` and six hex
/// digits of SHA-256 of the exact name.
///
/// The hash makes the slug depend on the name alone, never on which other names exist or
/// in which order they were published: 刘磊 and 刘雷 share the pinyin `liu-lei` but get two
/// slugs, and a name keeps its slug across restarts and rebuilds.
pub fn name_slug(name: &str) -> String {
    let mut words: Vec<String> = Vec::new();
    let mut word = String::new();
    for c in name.chars() {
        if let Some(syllable) = c.to_pinyin() {
            push_word(&mut words, &mut word);
            // `plain()` is ASCII except for ü, written v as in pinyin input methods.
            words.push(syllable.plain().replace('ü', "v"));
            continue;
        }
        if is_combining_mark(c) {
            continue;
        }
        // Compatibility decomposition: é → e + accent, full-width Ａ → A, ﬁ → fi.
        let mut letters = c.nfkd().filter(|d| !is_combining_mark(*d)).peekable();
        if letters.peek().is_some_and(char::is_ascii_alphanumeric) {
            word.extend(
                letters
                    .filter(char::is_ascii_alphanumeric)
                    .map(|d| d.to_ascii_lowercase()),
            );
        } else {
            push_word(&mut words, &mut word);
        }
    }
    push_word(&mut words, &mut word);
    let mut slug = String::new();
    for word in words {
        let word = &word[..word.len().min(MAX_READABLE)];
        if !slug.is_empty() && slug.len() + 1 + word.len() > MAX_READABLE {
            break;
        }
        if !slug.is_empty() {
            slug.push('-');
        }
        slug.push_str(word);
    }
    let hash = Sha256::digest(name.as_bytes());
    if !slug.is_empty() {
        slug.push('-');
    }
    slug.push_str(&hex::encode(&hash[..HASH_BYTES]));
    slug
}

fn push_word(words: &mut Vec<String>, word: &mut String) {
    if !word.is_empty() {
        words.push(std::mem::take(word));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn readable(slug: &str) -> &str {
        slug.rsplit_once('-').map_or("", |(words, _)| words)
    }

    #[test]
    fn chinese_names_become_toneless_pinyin_syllables() {
        assert_eq!(readable(&name_slug("武跃林")), "wu-yue-lin");
        assert_eq!(readable(&name_slug("陈淑兰")), "chen-shu-lan");
        assert_eq!(readable(&name_slug("乡村振兴")), "xiang-cun-zhen-xing");
        assert_eq!(readable(&name_slug("绿色发展")), "lv-se-fa-zhan");
    }

    #[test]
    fn slugs_are_pinned_so_a_changed_pinyin_table_cannot_move_a_feed() {
        assert_eq!(name_slug("武跃林"), "wu-yue-lin-94eb01");
        assert_eq!(name_slug("刘磊"), "liu-lei-6aca6b");
        assert_eq!(name_slug("刘雷"), "liu-lei-36feca");
    }

    #[test]
    fn names_with_the_same_pinyin_get_different_slugs() {
        assert_eq!(readable(&name_slug("刘磊")), readable(&name_slug("刘雷")));
        assert_ne!(name_slug("刘磊"), name_slug("刘雷"));
    }

    #[test]
    fn the_same_name_always_gets_the_same_slug() {
        assert_eq!(name_slug("张智宙"), name_slug("张智宙"));
    }

    #[test]
    fn latin_names_are_lowercased_and_lose_their_accents() {
        assert_eq!(readable(&name_slug("José Ñúñez")), "jose-nunez");
        assert_eq!(
            readable(&name_slug("O'Brien, Anne-Marie")),
            "o-brien-anne-marie"
        );
        assert_eq!(readable(&name_slug("ＡＢＣ 2023")), "abc-2023");
        assert_eq!(readable(&name_slug("Jose\u{301}phine")), "josephine");
    }

    #[test]
    fn mixed_scripts_keep_every_readable_word() {
        assert_eq!(readable(&name_slug("新华社 Xinhua")), "xin-hua-she-xinhua");
        assert_eq!(readable(&name_slug("5G网络")), "5g-wang-luo");
    }

    #[test]
    fn other_scripts_fall_back_to_the_hash_alone() {
        let slug = name_slug("محمد");
        assert_eq!(slug.len(), 2 * HASH_BYTES, "{slug}");
        assert_ne!(slug, name_slug("Алексей"));
    }

    #[test]
    fn every_slug_is_url_path_safe_and_bounded() {
        let long = "乡".repeat(200);
        for name in [
            "武跃林",
            "a--b",
            " x ",
            "---",
            "🎉",
            "𠮷野家",
            &long,
            "A\u{0}B",
        ] {
            let slug = name_slug(name);
            assert!(
                slug.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'),
                "{name:?} → {slug}"
            );
            assert!(!slug.starts_with('-') && !slug.contains("--"), "{slug}");
            assert!(slug.len() <= MAX_READABLE + 1 + 2 * HASH_BYTES, "{slug}");
        }
    }
}
