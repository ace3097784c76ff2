//! What every stored row's fields satisfy because the API or an operator command
//! validated them, checked again where rows arrive without either: `feedpub import`.
//! What feeds and readers depend on is checked (characters feeds cannot carry, HTML the
//! sanitiser would change, links that are not http(s), JSON that does not decode), and
//! every value the service parses when it reads a row back (ids, names, slugs, tags), so
//! that no imported row makes stored data unreadable.

use super::article::check_stored_url;
use super::audit::{AuditOperation, Outcome};
use super::ids::{ArticleId, PartnerName, SectionSlug, check_language_tag};
use super::media::Media;
use super::text::{HtmlPolicy, Sanitized, is_forbidden};

/// Plain text: `None` when it carries only characters feeds can carry.
pub fn text_fault(text: &str) -> Option<String> {
    text.chars()
        .find(|&c| is_forbidden(c))
        .map(|c| format!("holds U+{:04X}, a character feeds cannot carry", c as u32))
}

/// An HTML body: `None` when it is as publishing stores it, sanitised by `policy` with its
/// relative URLs resolved against `base` (the article's canonical URL). A body made from
/// plain text holds U+00A0 where the sanitiser writes `&nbsp;`: the same character, so the
/// two are compared with both written one way.
pub fn html_fault(html: &str, policy: &HtmlPolicy, base: Option<&url::Url>) -> Option<String> {
    let nbsp = |html: &str| html.replace("&nbsp;", "\u{a0}");
    let unchanged = |sanitized: &Result<Sanitized, String>| {
        sanitized
            .as_ref()
            .is_ok_and(|sanitized| nbsp(&sanitized.html) == nbsp(html))
    };
    // A hostile export is measured before the sanitiser parses it, as a publish is.
    // Versions before kept the `cite` of a quotation or an edit as sent, where the
    // sanitiser now resolves or removes it: a body their sanitiser leaves unchanged is
    // as they stored it, even one the sanitiser now refuses (relative cites that would
    // more than double it, resolved against a long canonical URL). Both are compared
    // after parsing, never by reading the raw text.
    let as_stored = || -> Result<bool, String> {
        let now = policy.sanitize_for(html, base);
        if unchanged(&now) || unchanged(&policy.sanitize_as_before(html, base)) {
            return Ok(true);
        }
        now.map(|_| false)
    };
    text_fault(html).or_else(|| match as_stored() {
        Err(fault) => Some(fault),
        Ok(as_stored) => (!as_stored).then(|| {
            "is not HTML as the sanitiser leaves it (a script, an event handler, a link \
             that is not http(s) or is relative, or an iframe from a host not in [content] \
             iframe_hosts)"
                .to_owned()
        }),
    })
}

/// A link: `None` when it is empty or an absolute http(s) URL.
pub fn url_fault(url: &str) -> Option<String> {
    check_stored_url(url).err()
}

/// What is wrong with a stored text value: `None` when it is as feedpub stores it.
pub type Fault = fn(&str) -> Option<String>;

/// A JSON array of `what`, each without the item's fault.
fn list_fault(json: &str, what: &str, item: Fault) -> Option<String> {
    match serde_json::from_str::<Vec<String>>(json) {
        Ok(items) => items
            .iter()
            .enumerate()
            .find_map(|(i, value)| item(value).map(|e| format!("[{i}] {e}"))),
        Err(e) => Some(format!("is not a JSON array of {what} ({e})")),
    }
}

/// A JSON array of names (authors or tags).
pub fn names_fault(json: &str) -> Option<String> {
    list_fault(json, "names", text_fault)
}

/// A JSON array of media files.
pub fn media_fault(json: &str) -> Option<String> {
    match serde_json::from_str::<Vec<Media>>(json) {
        Ok(media) => media.iter().enumerate().find_map(|(i, m)| {
            check_stored_url(&m.url)
                .and_then(|url| url.ok_or_else(|| "is required".to_owned()))
                .err()
                .map(|e| format!("[{i}].url {e}"))
                .or_else(|| text_fault(&m.caption).map(|e| format!("[{i}].caption {e}")))
        }),
        Err(e) => Some(format!("is not a JSON array of media files ({e})")),
    }
}

/// An article id, as the API takes it.
pub fn article_id_fault(id: &str) -> Option<String> {
    ArticleId::parse(id)
        .err()
        .map(|e| format!("{id:?} is not an article id: it {e}"))
}

/// A section slug, as the configuration takes it.
pub fn slug_fault(slug: &str) -> Option<String> {
    SectionSlug::parse(slug)
        .err()
        .map(|e| format!("{slug:?} is not a section slug ({e})"))
}

/// A language tag: empty (the site's language) or a BCP 47 tag.
pub fn language_fault(tag: &str) -> Option<String> {
    (!tag.is_empty())
        .then(|| check_language_tag(tag).err())
        .flatten()
}

/// A partner's name, as `feedpub partner add` takes it.
pub fn partner_name_fault(name: &str) -> Option<String> {
    PartnerName::parse(name)
        .err()
        .map(|e| format!("{name:?} is not a partner name ({e})"))
}

/// The sections a partner may publish to: a JSON array of section slugs.
pub fn slugs_fault(json: &str) -> Option<String> {
    list_fault(json, "section slugs", slug_fault)
}

/// A token's hash: SHA-256, as 64 lower-case hexadecimal digits.
pub fn token_hash_fault(hash: &str) -> Option<String> {
    let hex = hash.len() == 64 && hash.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
    (!hex).then(|| "is not a token's SHA-256 (64 lower-case hexadecimal digits)".to_owned())
}

/// An audit entry's operation, by its name (`partner.rotate`).
pub fn operation_fault(name: &str) -> Option<String> {
    AuditOperation::parse(name)
        .is_none()
        .then(|| format!("{name:?} is not an operation feedpub records"))
}

/// An audit entry's outcome, by its name (`permission_denied`).
pub fn outcome_fault(name: &str) -> Option<String> {
    Outcome::parse(name)
        .is_none()
        .then(|| format!("{name:?} is not an outcome feedpub records"))
}

/// Where a call came from: an IP address and port (`192.0.2.1:50051`).
pub fn peer_fault(peer: &str) -> Option<String> {
    peer.parse::<std::net::SocketAddr>()
        .is_err()
        .then(|| format!("{peer:?} is not an address and port"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{ArticleDraft, Token};

    /// Every value the service writes passes its fault; one it could not read back does
    /// not, and the fault says why.
    #[test]
    fn values_read_back_by_the_service_have_no_fault_and_others_are_named() {
        let hash = Token::generate().unwrap().hash().0;
        let check = |fault: Fault, good: &[&str], bad: &[(&str, &str)]| {
            for value in good {
                assert_eq!(fault(value), None, "{value:?}");
            }
            for (value, says) in bad {
                let fault = fault(value).unwrap_or_default();
                assert!(fault.contains(says), "{value:?}: {fault:?}");
            }
        };
        check(
            article_id_fault,
            &["2023-06-07-daji", "a.b_c~d"],
            &[("a/b", "not an article id"), ("", "is required")],
        );
        check(
            slug_fault,
            &["politics", "local-news"],
            &[("Politics", "not a section slug"), ("all", "reserved")],
        );
        check(
            language_fault,
            &["", "zh-CN", "zh-Hans-CN"],
            &[("中文", "BCP 47"), (" zh", "BCP 47")],
        );
        check(
            partner_name_fault,
            &["newsroom", "county-wire"],
            &[("News Room", "not a partner name"), ("", "is required")],
        );
        check(
            slugs_fault,
            &["[]", r#"["politics","sports"]"#],
            &[
                ("politics", "JSON array"),
                (r#"["politics","all"]"#, "[1] \"all\" is not a section slug"),
            ],
        );
        check(
            token_hash_fault,
            &[hash.as_str()],
            &[("abc", "SHA-256"), (&hash.to_uppercase(), "SHA-256")],
        );
        check(
            operation_fault,
            &["publish", "partner.rotate"],
            &[("article.delete", "not an operation")],
        );
        check(
            outcome_fault,
            &["ok", "permission_denied"],
            &[("denied", "not an outcome")],
        );
        check(
            peer_fault,
            &["192.0.2.1:50051", "[2001:db8::1]:443"],
            &[("192.0.2.1", "not an address")],
        );
    }

    #[test]
    fn what_a_publish_stores_has_no_fault() {
        let policy = HtmlPolicy::new(&["player.example.com".to_owned()]);
        let stored = ArticleDraft {
            id: "a-1".into(),
            section: "politics".into(),
            title: "推进会\u{1}召开".into(),
            content_html: "<p onclick=\"x()\">第一段<script>y()</script></p>\n\
                <p><a href=\"https://example.com/\">链接</a> <a href=\"javascript:z()\">坏</a> \
                <a href=\"b\">相对</a></p>\
                <iframe src=\"https://player.example.com/v/1\"></iframe>\u{fffe}"
                .into(),
            authors: vec!["张三".into(), "李\u{7f}四".into()],
            canonical_url: "https://example.com/a".into(),
            publish_time: Some(chrono::Utc::now()),
            media: vec![crate::domain::MediaDraft {
                url: "https://img.example.com/1.jpg".into(),
                mime_type: "image/jpeg".into(),
                caption: "图\u{85}片".into(),
                ..Default::default()
            }],
            ..Default::default()
        }
        .validate("", &policy)
        .unwrap()
        .content;
        assert_eq!(text_fault(&stored.title), None);
        let base = url::Url::parse(stored.canonical_url.as_deref().unwrap()).unwrap();
        assert_eq!(html_fault(&stored.content_html, &policy, Some(&base)), None);
        assert!(
            stored.content_html.contains("https://example.com/b"),
            "{}",
            stored.content_html
        );
        // Import checks a stored body against the base of its own row: a relative link
        // left in a body is a fault where the sanitiser would have resolved or removed it.
        assert!(html_fault("<a href=\"b\">b</a>", &policy, None).is_some());
        assert!(html_fault("<a href=\"b\">b</a>", &policy, Some(&base)).is_some());
        // A body made from plain text, with a no-break space.
        let from_text = crate::domain::text_to_html("第一段\u{a0}。\n\n第二段 & <三>");
        assert_eq!(html_fault(&from_text, &policy, None), None);
        assert_eq!(url_fault(stored.canonical_url.as_deref().unwrap()), None);
        assert_eq!(
            names_fault(&serde_json::to_string(&stored.authors).unwrap()),
            None
        );
        assert_eq!(
            media_fault(&serde_json::to_string(&stored.media).unwrap()),
            None
        );
    }

    /// A quotation's `cite` as versions before stored it (as sent: a URN, a relative
    /// link) is not a fault: their exports still import.
    #[test]
    fn a_cite_kept_as_sent_by_versions_before_is_no_fault() {
        let policy = HtmlPolicy::default();
        for html in [
            "<blockquote cite=\"urn:isbn:0451450523\"><p>x</p></blockquote>",
            "<p><q cite=\"q.html\">引</q> 与 <del cite=\"/why\">删</del></p>",
        ] {
            assert_eq!(html_fault(html, &policy, None), None, "{html}");
        }
        // Anything else the sanitiser would change is still a fault.
        let scripted = "<blockquote cite=\"urn:x\" onclick=\"x()\"><p>x</p></blockquote>";
        assert!(html_fault(scripted, &policy, None).is_some());
        // Text that reads like a cite is text: what it holds is compared, not skipped.
        for hidden in [
            "<p> cite=\"<script>alert(1)</script>\"</p>",
            "<p>a > cite=\"<img src=x onerror=alert(1)>\"</p>",
            "<p title=\"x cite=\"> cite=\"<script>y()</script>\"</p>",
            "<q cite=\"a\">引</q> cite=\"<script>z()</script>\"",
            // An unquoted value ends at white space: the cite after it is another attribute.
            "<p lang= cite=\"x onmouseover=alert(1) y\"\"cite=&quot;x\">t</p>",
            // Nor was a script in a cite ever stored as sent to be imported now.
            "<q cite=\"javascript:alert(1)\">引</q>",
            "<del cite=\" JavaScript&#x3A;alert(1)\">删</del>",
            "<ins cite=\"java&#9;script:alert(1)\">增</ins>",
            "<blockquote cite=\"data:text/html,&lt;script&gt;x()&lt;/script&gt;\">x</blockquote>",
        ] {
            assert!(html_fault(hidden, &policy, None).is_some(), "{hidden}");
        }
        // A relative cite as sent, with a canonical URL to resolve it against now; and so
        // many of them that resolving them against a long one would be refused now.
        let base = url::Url::parse("https://example.com/2023/").unwrap();
        let relative = "<p><q cite=\"q.html\">引</q></p>";
        assert_eq!(html_fault(relative, &policy, Some(&base)), None);
        let long =
            url::Url::parse(&format!("https://example.com/{}/", "长".repeat(2_000))).unwrap();
        let many = "<q cite=\"q.html\">引</q>".repeat(20);
        assert!(policy.sanitize_for(&many, Some(&long)).is_err());
        assert_eq!(html_fault(&many, &policy, Some(&long)), None);
        // A cite after other attributes of its tag is still the tag's.
        let quoted = "<p><q lang=\"en\" cite=\"q.html\">quote</q></p>";
        assert_eq!(html_fault(quoted, &policy, None), None);
    }

    #[test]
    fn what_no_publish_would_store_is_named() {
        let policy = HtmlPolicy::default();
        assert_eq!(
            text_fault("标题\u{1}").as_deref(),
            Some("holds U+0001, a character feeds cannot carry")
        );
        for html in [
            "<p>a</p><script>alert(1)</script>",
            "<p onclick=\"alert(1)\">a</p>",
            "<a href=\"javascript:alert(1)\">a</a>",
            "<iframe src=\"https://evil.example.com/\"></iframe>",
        ] {
            let fault = html_fault(html, &policy, None).unwrap_or_default();
            assert!(fault.contains("sanitiser"), "{html}: {fault:?}");
        }
        assert!(html_fault("<p>a\u{fdd0}</p>", &policy, None).is_some());
        assert!(
            url_fault("javascript:alert(1)")
                .unwrap_or_default()
                .contains("http")
        );
        assert_eq!(url_fault(""), None);
        assert!(
            names_fault("[\"a\", \"b\\u0002\"]")
                .unwrap()
                .starts_with("[1] ")
        );
        assert!(names_fault("{\"a\": 1}").unwrap().contains("JSON array"));
        let media = |url: &str, caption: &str| {
            format!(
                "[{{\"url\":\"{url}\",\"mime_type\":\"image/jpeg\",\"length\":0,\"caption\":\"{caption}\",\"width\":null,\"height\":null}}]"
            )
        };
        assert_eq!(
            media_fault(&media("https://img.example.com/1.jpg", "")),
            None
        );
        assert!(
            media_fault(&media("javascript:alert(1)", ""))
                .unwrap()
                .starts_with("[0].url ")
        );
        assert!(
            media_fault(&media("https://img.example.com/1.jpg", "\\u0001"))
                .unwrap()
                .starts_with("[0].caption ")
        );
        assert!(media_fault("[1]").unwrap().contains("media files"));
    }
}
