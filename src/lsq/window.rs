//! Date windows applied on our side: the one answer to "is this activity's date in this
//! window", for every read that means a window (export, `--wait` counts, undo's listings,
//! lookups).
//!
//! Get Activities of a Lead documents no date filter (`shared/leadsquared-api/README.md`), so a
//! server may ignore the `FromDate`/`ToDate` we send it, and list everything. Windows therefore
//! enter here as the API's date text (`--from`/`--to`, or a span undo computed), are parsed once
//! into epoch seconds ([`DateWindow::parse`]), and each listed activity's date is tested against
//! them ([`DateWindow::admits`]), both ends inclusive, to the second.

use chrono::NaiveDateTime;

use crate::lsq::api::DATE_TIME_FORMAT;

/// A date as the API writes it, in epoch seconds (UTC): `yyyy-MM-dd HH:mm:ss`, and leniently a
/// `T` for the space, a fraction of a second (dropped: windows are to the second) or a final
/// `Z`, in case a server writes them. `None` for anything else.
pub(crate) fn parse_api_second(text: &str) -> Option<i64> {
    let text = text.trim();
    let text = text.strip_suffix('Z').unwrap_or(text);
    let head = text.get(..19)?;
    let rest = &text[19..];
    // Only a fraction may follow the seconds; "2024-05-01 10:00:00 junk" is not a date.
    if !(rest.is_empty()
        || (rest.starts_with('.')
            && rest.len() > 1
            && rest[1..].bytes().all(|b| b.is_ascii_digit())))
    {
        return None;
    }
    let head = head.replacen('T', " ", 1);
    let parsed = NaiveDateTime::parse_from_str(&head, DATE_TIME_FORMAT).ok()?;
    // chrono accepts unpadded fields; the API writes them padded.
    (parsed.format(DATE_TIME_FORMAT).to_string() == head).then(|| parsed.and_utc().timestamp())
}

/// Epoch seconds back to the API's format.
pub(crate) fn format_api_second(second: i64) -> String {
    chrono::DateTime::from_timestamp(second, 0)
        .map(|t| t.naive_utc().format(DATE_TIME_FORMAT).to_string())
        .unwrap_or_default()
}

/// A window's bound that is not a date in the API's format.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{bound} {value:?} is not a date as yyyy-MM-dd HH:mm:ss")]
pub(crate) struct BadBound {
    /// `FromDate` or `ToDate`.
    pub bound: &'static str,
    /// As given.
    pub value: String,
}

/// An optional `from ..= to` window in epoch seconds; either end may be open.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct DateWindow {
    /// Earliest second admitted.
    pub from: Option<i64>,
    /// Latest second admitted.
    pub to: Option<i64>,
}

impl DateWindow {
    /// The window between two optional bounds in the API's format.
    pub(crate) fn parse(from: Option<&str>, to: Option<&str>) -> Result<DateWindow, BadBound> {
        let bound = |name: &'static str, text: Option<&str>| {
            text.map(|t| {
                parse_api_second(t).ok_or_else(|| BadBound {
                    bound: name,
                    value: t.to_string(),
                })
            })
            .transpose()
        };
        Ok(DateWindow {
            from: bound("FromDate", from)?,
            to: bound("ToDate", to)?,
        })
    }

    /// The smallest window holding both: an end open in either is open.
    pub(crate) fn span(self, other: DateWindow) -> DateWindow {
        DateWindow {
            from: self.from.zip(other.from).map(|(a, b)| a.min(b)),
            to: self.to.zip(other.to).map(|(a, b)| a.max(b)),
        }
    }

    /// Whether neither end is set: every date is admitted.
    pub(crate) fn is_unbounded(&self) -> bool {
        self.from.is_none() && self.to.is_none()
    }

    /// Whether the second `at` is inside, both ends inclusive.
    pub(crate) fn contains(&self, at: i64) -> bool {
        self.from.is_none_or(|from| at >= from) && self.to.is_none_or(|to| at <= to)
    }

    /// Whether an activity dated `date` (as listed) belongs to the window. A date that cannot
    /// be read is admitted: it cannot be shown to lie outside, and the callers that need a date
    /// (undo's planning) refuse such an activity rather than overlook it.
    pub(crate) fn admits(&self, date: &str) -> bool {
        self.is_unbounded() || parse_api_second(date).is_none_or(|at| self.contains(at))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_api_format_and_lenient_variants_parse_to_the_second() {
        let at = parse_api_second("2024-05-01 10:00:00").unwrap();
        assert_eq!(at, 1_714_557_600);
        assert_eq!(parse_api_second(" 2024-05-01T10:00:00 "), Some(at));
        assert_eq!(parse_api_second("2024-05-01 10:00:00.997"), Some(at));
        assert_eq!(parse_api_second("2024-05-01T10:00:00.5Z"), Some(at));
        for bad in [
            "",
            "2024-05-01",
            "2024-5-01 10:00:00",
            "2024-02-30 10:00:00",
            "2024-05-01 10:00:00 x",
            "2024-05-01 10:00:00.",
            "01/05/2024 10:00:00",
        ] {
            assert_eq!(parse_api_second(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn windows_are_inclusive_at_both_ends_and_may_be_open() {
        let w =
            DateWindow::parse(Some("2019-03-01 00:00:00"), Some("2019-06-30 23:59:59")).unwrap();
        assert!(w.admits("2019-03-01 00:00:00"));
        assert!(w.admits("2019-06-30 23:59:59"));
        assert!(!w.admits("2019-02-28 23:59:59"));
        assert!(!w.admits("2019-07-01 00:00:00"));
        // Unreadable: cannot be shown outside, so admitted.
        assert!(w.admits("yesterday"));
        let open = DateWindow::parse(None, Some("2019-06-30 23:59:59")).unwrap();
        assert!(open.admits("1970-01-01 00:00:00") && !open.admits("2020-01-01 00:00:00"));
        assert!(DateWindow::default().is_unbounded());
        let later =
            DateWindow::parse(Some("2019-08-01 00:00:00"), Some("2019-09-01 00:00:00")).unwrap();
        let both = w.span(later);
        assert_eq!(
            (
                both.from.map(format_api_second),
                both.to.map(format_api_second)
            ),
            (
                Some("2019-03-01 00:00:00".into()),
                Some("2019-09-01 00:00:00".into())
            )
        );
        assert_eq!(w.span(open).from, None);
        assert!(DateWindow::default().admits("anything"));
        assert_eq!(
            DateWindow::parse(Some("2019-03-01"), None),
            Err(BadBound {
                bound: "FromDate",
                value: "2019-03-01".into()
            })
        );
    }
}
