//! Writing XML text straight into the output buffer: escaped text and attribute values,
//! CDATA sections and dates, byte for byte as the `rss` and `atom_syndication` crates
//! (through quick-xml and chrono) write them.
//!
//! The RSS and Atom renderers used to build those crates' `Channel` and `Feed` values and
//! let them write: every field was cloned into the structure, every escaped value and date
//! was a new `String`, and the stylesheet and tombstones were spliced in afterwards, moving
//! the whole document. Regeneration renders on every publish, so the renderers now write
//! the same bytes directly; the crates stay the reference the tests compare against.

use chrono::{DateTime, Datelike, FixedOffset, SecondsFormat, Timelike};
use memchr::{memchr, memchr2, memchr3};

/// A document being written into one buffer.
pub(super) struct Xml {
    out: Vec<u8>,
}

impl Xml {
    /// A document with room for `capacity` bytes.
    pub(super) fn with_capacity(capacity: usize) -> Self {
        Self {
            out: Vec::with_capacity(capacity),
        }
    }

    /// The bytes written.
    pub(super) fn finish(self) -> Vec<u8> {
        self.out
    }

    /// Markup, written as it is.
    pub(super) fn raw(&mut self, markup: &str) -> &mut Self {
        self.out.extend_from_slice(markup.as_bytes());
        self
    }

    /// Text content, escaped as quick-xml's `BytesText::new` escapes it.
    pub(super) fn text(&mut self, text: &str) -> &mut Self {
        escape_into(&mut self.out, text);
        self
    }

    /// ` name="value"`, the value escaped as quick-xml escapes attribute values.
    pub(super) fn attr(&mut self, name: &str, value: &str) -> &mut Self {
        self.out.push(b' ');
        self.out.extend_from_slice(name.as_bytes());
        self.out.extend_from_slice(b"=\"");
        escape_into(&mut self.out, value);
        self.out.push(b'"');
        self
    }

    /// `<name>text</name>`, the text escaped.
    pub(super) fn element(&mut self, name: &str, text: &str) -> &mut Self {
        self.open(name).text(text).close(name)
    }

    /// `<name>`.
    pub(super) fn open(&mut self, name: &str) -> &mut Self {
        self.out.push(b'<');
        self.out.extend_from_slice(name.as_bytes());
        self.out.push(b'>');
        self
    }

    /// `</name>`.
    pub(super) fn close(&mut self, name: &str) -> &mut Self {
        self.out.extend_from_slice(b"</");
        self.out.extend_from_slice(name.as_bytes());
        self.out.push(b'>');
        self
    }

    /// Text inside CDATA, written as it is but for `]]>`, which cannot appear in a CDATA
    /// section: it ends the section between `]]` and `>` and starts another, as quick-xml's
    /// `BytesCData::escaped` does. The caller writes `<![CDATA[` before and `]]>` after.
    pub(super) fn cdata_text(&mut self, text: &str) -> &mut Self {
        // `]` is rare in copy and HTML and `>` is in every tag: look for the former.
        let bytes = text.as_bytes();
        let mut start = 0;
        let mut from = 0;
        while let Some(at) = memchr(b']', &bytes[from..]).map(|i| from + i) {
            if bytes[at..].starts_with(b"]]>") {
                self.out.extend_from_slice(&bytes[start..at + 2]);
                self.out.extend_from_slice(b"]]><![CDATA[");
                start = at + 2;
            }
            from = at + 1;
        }
        self.out.extend_from_slice(&bytes[start..]);
        self
    }

    /// `text` as HTML text (`&`, `<` and `>` escaped, as `html_escape::encode_text` does).
    pub(super) fn html_text(&mut self, text: &str) -> &mut Self {
        html_escape_into(&mut self.out, text);
        self
    }

    /// `text` as HTML text, the HTML then escaped again as XML text: what an HTML value
    /// made with `html_escape::encode_text` becomes inside an escaped XML element.
    pub(super) fn html_text_as_text(&mut self, text: &str) -> &mut Self {
        let mut rest = text;
        while let Some(at) = memchr3(b'&', b'<', b'>', rest.as_bytes()) {
            // `at` is an ASCII byte, so both slices are whole characters.
            escape_into(&mut self.out, &rest[..at]);
            self.out.extend_from_slice(match rest.as_bytes()[at] {
                b'&' => b"&amp;amp;",
                b'<' => b"&amp;lt;",
                _ => b"&amp;gt;",
            });
            rest = &rest[at + 1..];
        }
        escape_into(&mut self.out, rest);
        self
    }

    /// A date as chrono's `to_rfc2822` writes it (`Wed, 7 Jun 2023 07:00:00 +0800`).
    pub(super) fn rfc2822(&mut self, time: DateTime<FixedOffset>) -> &mut Self {
        let local = time.naive_local();
        let offset = time.offset().local_minus_utc();
        let (year, nanos) = (local.year(), local.nanosecond());
        if !(0..=9999).contains(&year) {
            // RFC 2822 has no such years and chrono's `to_rfc2822` panics on them; ingest
            // keeps publish times far from them, but a renderer never panics.
            return self.raw(&time.format("%a, %-d %b %Y %H:%M:%S %z").to_string());
        }
        if nanos >= 1_000_000_000 || offset % 60 != 0 {
            // Leap seconds and offsets in seconds: chrono's own formatting.
            return self.raw(&time.to_rfc2822());
        }
        const DAYS: [&[u8; 3]; 7] = [b"Mon", b"Tue", b"Wed", b"Thu", b"Fri", b"Sat", b"Sun"];
        const MONTHS: [&[u8; 3]; 12] = [
            b"Jan", b"Feb", b"Mar", b"Apr", b"May", b"Jun", b"Jul", b"Aug", b"Sep", b"Oct", b"Nov",
            b"Dec",
        ];
        let out = &mut self.out;
        out.extend_from_slice(DAYS[local.weekday().num_days_from_monday() as usize]);
        out.extend_from_slice(b", ");
        let day = local.day();
        if day < 10 {
            out.push(b'0' + day as u8);
        } else {
            two_digits(out, day);
        }
        out.push(b' ');
        out.extend_from_slice(MONTHS[local.month0() as usize]);
        out.push(b' ');
        two_digits(out, year as u32 / 100);
        two_digits(out, year as u32 % 100);
        out.push(b' ');
        time_of_day(out, local.hour(), local.minute(), local.second());
        out.push(b' ');
        offset_into(out, offset, false);
        self
    }

    /// A date as chrono's `to_rfc3339` writes it (see [`rfc3339`]).
    pub(super) fn rfc3339(&mut self, time: DateTime<FixedOffset>) -> &mut Self {
        rfc3339(&mut self.out, time);
        self
    }
}

/// Appends a date to the microsecond, as chrono's `to_rfc3339` writes it
/// (`2023-06-07T07:00:00+08:00`, with the fraction of a second in 3 or 6 digits when there
/// is one): fine enough that two versions of a feed within one second state different
/// dates, and no finer, since some readers' date parsers refuse 9 digits (Python's
/// `fromisoformat` before 3.11 among them). The JSON Feed renderer writes its dates with it
/// too.
pub(super) fn rfc3339(out: &mut Vec<u8>, time: DateTime<FixedOffset>) {
    let time = to_the_microsecond(time);
    let local = time.naive_local();
    let offset = time.offset().local_minus_utc();
    let (year, nanos) = (local.year(), local.nanosecond());
    if !(0..=9999).contains(&year) || nanos >= 1_000_000_000 || offset % 60 != 0 {
        out.extend_from_slice(
            time.to_rfc3339_opts(SecondsFormat::AutoSi, false)
                .as_bytes(),
        );
        return;
    }
    two_digits(out, year as u32 / 100);
    two_digits(out, year as u32 % 100);
    out.push(b'-');
    two_digits(out, local.month());
    out.push(b'-');
    two_digits(out, local.day());
    out.push(b'T');
    time_of_day(out, local.hour(), local.minute(), local.second());
    if nanos != 0 {
        let (value, digits) = if nanos % 1_000_000 == 0 {
            (nanos / 1_000_000, 3)
        } else {
            (nanos / 1_000, 6)
        };
        out.push(b'.');
        let start = out.len();
        out.resize(start + digits, b'0');
        let mut value = value;
        for slot in out[start..].iter_mut().rev() {
            *slot = b'0' + (value % 10) as u8;
            value /= 10;
        }
    }
    offset_into(out, offset, true);
}

/// `time` without what it holds finer than a microsecond (a leap second stays one).
pub(super) fn to_the_microsecond(time: DateTime<FixedOffset>) -> DateTime<FixedOffset> {
    let nanos = time.nanosecond();
    if nanos.is_multiple_of(1_000) {
        return time;
    }
    // On the UTC time the value holds: `DateTime::with_nanosecond` would go through the
    // local time and back, which costs the renderers some 10 % of an Atom document.
    time.naive_utc()
        .with_nanosecond(nanos - nanos % 1_000)
        .map_or(time, |utc| {
            DateTime::from_naive_utc_and_offset(utc, *time.offset())
        })
}

/// Appends `text` with `<`, `>`, `&`, `'` and `"` escaped as quick-xml's `escape` does,
/// copying the runs between them whole. Quotes are rare in copy and HTML, so the next one
/// is found once and markup is looked for only up to it. Markup comes in clusters
/// (`</p>\n<p>`), so a few bytes after each character are looked at one by one before
/// memchr is called again: that is cheaper than a call for each of them.
fn escape_into(out: &mut Vec<u8>, text: &str) {
    const LOOK_AHEAD: usize = 8;
    let bytes = text.as_bytes();
    let end = bytes.len();
    let mut quote = memchr2(b'"', b'\'', bytes).unwrap_or(end);
    let mut start = 0;
    loop {
        let near = (start + LOOK_AHEAD).min(quote);
        let at = match bytes[start..near]
            .iter()
            .position(|b| matches!(b, b'<' | b'>' | b'&'))
        {
            Some(i) => start + i,
            None => memchr3(b'<', b'>', b'&', &bytes[near..quote]).map_or(quote, |i| near + i),
        };
        if at == end {
            break;
        }
        out.extend_from_slice(&bytes[start..at]);
        out.extend_from_slice(match bytes[at] {
            b'<' => b"&lt;",
            b'>' => b"&gt;",
            b'&' => b"&amp;",
            b'\'' => b"&apos;",
            _ => b"&quot;",
        });
        start = at + 1;
        if at == quote {
            quote = memchr2(b'"', b'\'', &bytes[start..]).map_or(end, |i| start + i);
        }
    }
    out.extend_from_slice(&bytes[start..]);
}

/// Appends `text` with `&`, `<` and `>` escaped as HTML text (see
/// [`crate::domain::escape_html_text`]).
fn html_escape_into(out: &mut Vec<u8>, text: &str) {
    crate::domain::escape_html_text(text, |piece| out.extend_from_slice(piece.as_bytes()));
}

/// `n` (below 100) in two digits.
fn two_digits(out: &mut Vec<u8>, n: u32) {
    out.extend_from_slice(&[b'0' + (n / 10) as u8, b'0' + (n % 10) as u8]);
}

/// `hh:mm:ss`.
fn time_of_day(out: &mut Vec<u8>, hour: u32, minute: u32, second: u32) {
    two_digits(out, hour);
    out.push(b':');
    two_digits(out, minute);
    out.push(b':');
    two_digits(out, second);
}

/// `+0800` (RFC 2822) or `+08:00` (RFC 3339) for an offset in whole minutes; UTC is
/// `+0000`/`+00:00`.
fn offset_into(out: &mut Vec<u8>, offset: i32, colon: bool) {
    out.push(if offset < 0 { b'-' } else { b'+' });
    let minutes = offset.unsigned_abs() / 60;
    two_digits(out, minutes / 60);
    if colon {
        out.push(b':');
    }
    two_digits(out, minutes % 60);
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{TimeZone, Utc};
    use proptest::prelude::*;

    fn written(f: impl FnOnce(&mut Xml)) -> String {
        let mut xml = Xml::with_capacity(0);
        f(&mut xml);
        String::from_utf8(xml.finish()).unwrap()
    }

    #[test]
    fn a_leap_second_is_cut_to_the_microsecond_and_stays_one() {
        let utc = chrono::NaiveDate::from_ymd_opt(2016, 12, 31)
            .and_then(|day| day.and_hms_nano_opt(15, 59, 59, 1_234_567_891))
            .unwrap();
        for offset in [8 * 3600, -5 * 3600 - 1800, 3600 + 7] {
            let offset = FixedOffset::east_opt(offset).unwrap();
            let time = DateTime::<FixedOffset>::from_naive_utc_and_offset(utc, offset);
            let cut = to_the_microsecond(time);
            assert_eq!(cut, time.with_nanosecond(1_234_567_000).unwrap());
            assert_eq!(cut.nanosecond(), 1_234_567_000, "still a leap second");
            assert_eq!(
                written(|x| {
                    x.rfc3339(time);
                }),
                cut.to_rfc3339()
            );
        }
    }

    proptest! {
        #[test]
        fn text_and_attributes_are_escaped_as_quick_xml_escapes_them(
            text in r#"[a-z<>&'"\]朔𠮷 ]{0,80}"#
        ) {
            prop_assert_eq!(written(|x| { x.text(&text); }), quick_xml::escape::escape(&text));
            prop_assert_eq!(
                written(|x| { x.html_text(&text); }),
                html_escape::encode_text(&text)
            );
            prop_assert_eq!(
                written(|x| { x.html_text_as_text(&text); }),
                quick_xml::escape::escape(html_escape::encode_text(&text))
            );
        }

        #[test]
        fn cdata_is_split_where_quick_xml_splits_it(text in r"[a-z\]>朔]{0,60}") {
            let ours = written(|x| { x.raw("<![CDATA[").cdata_text(&text).raw("]]>"); });
            let theirs: String = quick_xml::events::BytesCData::escaped(&text)
                .map(|c| format!("<![CDATA[{}]]>", std::str::from_utf8(&c).unwrap()))
                .collect();
            prop_assert_eq!(ours, theirs);
        }

        #[test]
        fn dates_are_written_as_chrono_writes_them(
            seconds in -70_000_000_000i64..260_000_000_000,
            nanos in prop::sample::select(vec![0u32, 500_000_000, 120_000, 7, 999_999_999, 1_500_000_000]),
            offset in prop::sample::select(vec![0i32, 8 * 3600, -5 * 3600 - 1800, 345 * 60, 3600 + 7]),
        ) {
            let offset = FixedOffset::east_opt(offset).unwrap();
            let Some(time) = Utc.timestamp_opt(seconds, nanos).single() else {
                return Ok(());
            };
            let time = time.with_timezone(&offset);
            // What chrono makes of the instant cut to the microsecond (a leap second kept).
            let cut = time.with_nanosecond(nanos - nanos % 1_000).unwrap();
            prop_assert_eq!(to_the_microsecond(time), cut);
            prop_assert_eq!(to_the_microsecond(time).nanosecond(), cut.nanosecond());
            prop_assert_eq!(written(|x| { x.rfc3339(time); }), cut.to_rfc3339());
            // chrono cannot write years past 9999 in RFC 2822 (and panics): only in range.
            if (0..=9999).contains(&time.year()) {
                prop_assert_eq!(written(|x| { x.rfc2822(time); }), time.to_rfc2822());
            } else {
                let text = written(|x| {
                    x.rfc2822(time);
                });
                prop_assert!(text.contains(&time.format("%Y").to_string()), "{}", text);
            }
        }
    }
}
