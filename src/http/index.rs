//! The HTML index: every section with its three feeds, and autodiscovery links.

use crate::config::Settings;
use crate::domain::FeedScope;
use crate::render::Format;
use html_escape::{encode_double_quoted_attribute as attr, encode_text as text};
use std::fmt::Write;

/// Renders the index page for the configured site and sections.
pub fn render(settings: &Settings) -> String {
    let site = &settings.site;
    let mut feeds: Vec<(FeedScope, String, String)> = vec![(
        FeedScope::All,
        "全部栏目 · All sections".to_owned(),
        site.description.clone(),
    )];
    feeds.extend(settings.sections.iter().map(|s| {
        (
            FeedScope::Section(s.slug.clone()),
            s.title.clone(),
            s.description.clone(),
        )
    }));
    let href = |scope: &FeedScope, format: Format| {
        format!("/feeds/{}/{}", scope.path_segment(), format.file_name())
    };

    let mut html = String::with_capacity(4096);
    let _ = write!(
        html,
        "<!DOCTYPE html>\n<html lang=\"{}\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n<title>{}</title>\n",
        attr(&site.language),
        text(&site.title)
    );
    for (scope, title, _) in &feeds {
        for format in Format::ALL {
            let _ = writeln!(
                html,
                "<link rel=\"alternate\" type=\"{}\" title=\"{} · {} ({})\" href=\"{}\">",
                format.media_type(),
                attr(&site.title),
                attr(title),
                format.label(),
                attr(&href(scope, format))
            );
        }
    }
    let _ = write!(
        html,
        "<style>body{{font-family:system-ui,sans-serif;max-width:48rem;margin:2rem auto;padding:0 1rem;line-height:1.6}}\
         li{{margin:.5rem 0}}a{{margin-right:.75rem}}</style>\n</head>\n<body>\n<h1>{}</h1>\n<p>{}</p>\n<ul>\n",
        text(&site.title),
        text(&site.description)
    );
    for (scope, title, description) in &feeds {
        let _ = write!(html, "<li><strong>{}</strong>", text(title));
        if !description.is_empty() {
            let _ = write!(html, " — {}", text(description));
        }
        html.push_str("<br>");
        for format in Format::ALL {
            let _ = write!(
                html,
                "<a href=\"{}\">{}</a>",
                attr(&href(scope, format)),
                format.label()
            );
        }
        html.push_str("</li>\n");
    }
    html.push_str("</ul>\n</body>\n</html>\n");
    html
}
