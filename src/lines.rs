//! Input read a line at a time within a limit, so that input without a line break (a
//! binary file, `/dev/zero`) is never held whole: `feedpub publish` and `feedpub import`.

use std::io::{BufRead, Read};

/// What [`read_line`] read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LineRead {
    /// The whole line, without its end (`\n` or `\r\n`), is in the buffer.
    Whole,
    /// The line is longer than the limit, its end not counted: the buffer holds its first
    /// bytes only; the rest is still to be read unless `ended` (its end was read too).
    TooLong { ended: bool },
}

/// Reads the next line of `input` into `line` (cleared first): `None` at the end of the
/// input, else how many bytes were taken from it and whether the line was whole. A line
/// longer than `max` bytes without its end is read no further than two bytes past it.
pub fn read_line(
    input: &mut impl BufRead,
    max: usize,
    line: &mut Vec<u8>,
) -> std::io::Result<Option<(usize, LineRead)>> {
    line.clear();
    // Room for the line end, which the limit does not count.
    let limit = u64::try_from(max).unwrap_or(u64::MAX).saturating_add(2);
    let read = (&mut *input).take(limit).read_until(b'\n', line)?;
    if read == 0 {
        return Ok(None);
    }
    // A line cut by the limit is longer than it without its end, if it has one.
    let ended = line.pop_if(|b| *b == b'\n').is_some();
    line.pop_if(|b| *b == b'\r');
    let whole = if line.len() <= max {
        LineRead::Whole
    } else {
        LineRead::TooLong { ended }
    };
    Ok(Some((read, whole)))
}

#[cfg(test)]
mod tests {
    use super::{LineRead, read_line};

    /// Lines up to the limit are whole without their ends; a longer one says whether its
    /// end was read with it, so that a reader skipping the rest skips no other line.
    #[test]
    fn a_line_past_the_limit_says_whether_its_end_was_read() {
        let mut input = &b"0123\r\n01234\n0123456789\nlast"[..];
        let mut line = Vec::new();
        let mut next = |line: &mut Vec<u8>| read_line(&mut input, 4, line).unwrap();
        assert_eq!(next(&mut line), Some((6, LineRead::Whole)));
        assert_eq!(line, b"0123");
        assert_eq!(
            next(&mut line),
            Some((6, LineRead::TooLong { ended: true }))
        );
        assert_eq!(
            next(&mut line),
            Some((6, LineRead::TooLong { ended: false }))
        );
        assert_eq!(line, b"012345");
        // The rest of a line cut short comes next, unless the reader skips it.
        assert_eq!(next(&mut line), Some((5, LineRead::Whole)));
        assert_eq!(line, b"6789");
        assert_eq!(next(&mut line), Some((4, LineRead::Whole)));
        assert_eq!(line, b"last");
        assert_eq!(next(&mut line), None);
    }
}
