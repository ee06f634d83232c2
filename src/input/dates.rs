//! Dates as spreadsheets write them, turned into the UTC `yyyy-MM-dd HH:mm:ss` the API reads.
//!
//! A [`DateReader`] is built once from the settings (`--date-format`, `--timezone`) and then
//! reads cell text: [`DateReader::read_utc`] returns the UTC date-time to send or a [`DateProblem`]
//! saying why the cell cannot be one. Pure: no I/O, no clock.
//!
//! Which texts are accepted, in this order:
//! 1. the `--date-format` (user notation such as `dd/MM/yyyy HH:mm`, see [`DateFormat`]);
//! 2. `yyyy-MM-dd HH:mm:ss`, the API's own form (and what Excel date cells are read as);
//! 3. ISO 8601 with an explicit offset or `Z` (`2024-03-10T09:30:00+05:30`), converted by its
//!    own offset whatever the time zone, because it is unambiguous.
//!
//! Times without an offset are local times of `--timezone` (default UTC). A local time the zone
//! skips (spring forward) or repeats (fall back) is refused, never shifted: which instant the
//! user meant cannot be known.

use std::fmt;

use chrono::offset::LocalResult;
use chrono::{DateTime, NaiveDate, NaiveDateTime, TimeZone};
use chrono_tz::Tz;

use crate::lsq::api::DATE_TIME_FORMAT;

/// How a report shows a date that lsq-sync converted: UTC with an explicit `Z`, so that a
/// `retry` of the report reads the same instant whatever its `--timezone`.
pub(crate) const SENT_DATE_FORMAT: &str = "%Y-%m-%dT%H:%M:%SZ";

/// A date format in the notation spreadsheets and most people use (`dd/MM/yyyy HH:mm`),
/// translated once to chrono's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DateFormat {
    /// As the user wrote it, for messages.
    written: String,
    /// The same in chrono's `strftime` notation.
    chrono: String,
    /// Whether the format has a time of day; without one, times are midnight.
    has_time: bool,
    /// Whether the format carries a UTC offset, which then wins over the time zone.
    has_offset: bool,
}

/// Why a `--date-format` cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum DateFormatError {
    #[error(
        "date format {format:?}: {token:?} is not understood (use yyyy, yy, MM, MMM, dd, HH, hh, mm, ss, tt, zzz; put other letters in 'quotes')"
    )]
    UnknownToken { format: String, token: String },
    #[error("date format {format:?} needs a year (yyyy), a month (MM) and a day (dd)")]
    Incomplete { format: String },
    #[error("date format {format:?} has an unclosed quote")]
    UnclosedQuote { format: String },
}

impl DateFormat {
    /// Translates a user format. `ISO8601` (or `ISO 8601`) names the ISO forms that are always
    /// accepted, so it adds nothing and yields `None`.
    pub(crate) fn parse(written: &str) -> Result<Option<DateFormat>, DateFormatError> {
        let trimmed = written.trim();
        let squashed: String = trimmed.chars().filter(|c| !c.is_whitespace()).collect();
        if squashed.eq_ignore_ascii_case("iso8601") || squashed.eq_ignore_ascii_case("iso") {
            return Ok(None);
        }
        let mut chrono = String::new();
        let (mut year, mut month, mut day) = (false, false, false);
        let (mut has_time, mut has_offset) = (false, false);
        let chars: Vec<char> = trimmed.chars().collect();
        let mut i = 0;
        while i < chars.len() {
            let c = chars[i];
            if c == '\'' {
                let close = chars[i + 1..]
                    .iter()
                    .position(|&q| q == '\'')
                    .ok_or_else(|| DateFormatError::UnclosedQuote {
                        format: trimmed.to_string(),
                    })?;
                for &literal in &chars[i + 1..i + 1 + close] {
                    push_literal(&mut chrono, literal);
                }
                i += close + 2;
                continue;
            }
            if !c.is_ascii_alphabetic() || c == 'T' {
                push_literal(&mut chrono, c);
                i += 1;
                continue;
            }
            let run = chars[i..].iter().take_while(|&&d| d == c).count();
            let token: String = chars[i..i + run].iter().collect();
            let (spec, part) = match (c, run) {
                ('y', 4) => ("%Y", Part::Year),
                ('y', 2) => ("%y", Part::Year),
                ('M', 1 | 2) => ("%m", Part::Month),
                ('M', 3) => ("%b", Part::Month),
                ('M', 4) => ("%B", Part::Month),
                ('d', 1 | 2) => ("%d", Part::Day),
                ('d', 3) => ("%a", Part::Other),
                ('d', 4) => ("%A", Part::Other),
                ('H', 1 | 2) => ("%H", Part::Hour),
                ('h', 1 | 2) => ("%I", Part::Hour),
                ('m', 1 | 2) => ("%M", Part::Other),
                ('s', 1 | 2) => ("%S", Part::Other),
                ('t', 1 | 2) | ('a', 1) => ("%p", Part::Other),
                ('z', 3) | ('K', 1) | ('X', 3) => ("%:z", Part::Offset),
                _ => {
                    return Err(DateFormatError::UnknownToken {
                        format: trimmed.to_string(),
                        token,
                    });
                }
            };
            match part {
                Part::Year => year = true,
                Part::Month => month = true,
                Part::Day => day = true,
                Part::Hour => has_time = true,
                Part::Offset => has_offset = true,
                Part::Other => {}
            }
            chrono.push_str(spec);
            i += run;
        }
        if !(year && month && day) {
            return Err(DateFormatError::Incomplete {
                format: trimmed.to_string(),
            });
        }
        Ok(Some(DateFormat {
            written: trimmed.to_string(),
            chrono,
            has_time,
            has_offset,
        }))
    }

    /// The format as the user wrote it.
    pub(crate) fn as_written(&self) -> &str {
        &self.written
    }

    /// The instant or local time `value` names in this format, if it is one.
    fn read(&self, value: &str) -> Option<Reading> {
        if self.has_offset {
            // chrono's `%:z` does not take the `Z` designator; it means +00:00.
            let value = match value.strip_suffix(['Z', 'z']) {
                Some(head) => format!("{head}+00:00"),
                None => value.to_string(),
            };
            return DateTime::parse_from_str(&value, &self.chrono)
                .ok()
                .map(|dt| Reading::Instant(dt.naive_utc()));
        }
        if self.has_time {
            NaiveDateTime::parse_from_str(value, &self.chrono)
                .ok()
                .map(Reading::Local)
        } else {
            NaiveDate::parse_from_str(value, &self.chrono)
                .ok()
                .map(|d| Reading::Local(d.and_time(chrono::NaiveTime::MIN)))
        }
    }
}

/// What a format token contributes, to check the format names a whole date.
enum Part {
    Year,
    Month,
    Day,
    Hour,
    Offset,
    Other,
}

fn push_literal(chrono: &mut String, c: char) {
    if c == '%' {
        chrono.push_str("%%");
    } else {
        chrono.push(c);
    }
}

/// What a cell says: a fixed instant (it had an offset) or a wall-clock time of the zone.
enum Reading {
    Instant(NaiveDateTime),
    Local(NaiveDateTime),
}

/// Why a cell is not a date-time lsq-sync can send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum DateProblem {
    /// The text is in none of the accepted forms, or names no real date (30 February).
    NotADate { expected: String },
    /// The local time does not exist in the zone: the clocks skip it.
    Skipped { zone: String },
    /// The local time happens twice in the zone: the clocks go back over it.
    Ambiguous {
        zone: String,
        earlier: String,
        later: String,
    },
}

impl fmt::Display for DateProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DateProblem::NotADate { expected } => {
                write!(f, "is not a real date and time in the form {expected}")
            }
            DateProblem::Skipped { zone } => write!(
                f,
                "does not exist in {zone}: the clocks skip that time when daylight saving time starts \
                 (give the time with an offset, e.g. 2024-03-10T03:30:00-04:00, to say which instant)"
            ),
            DateProblem::Ambiguous {
                zone,
                earlier,
                later,
            } => write!(
                f,
                "happens twice in {zone} when daylight saving time ends ({earlier} or {later} UTC); \
                 give it with an offset to say which"
            ),
        }
    }
}

/// Reads date cells with the run's format and time zone.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DateReader {
    /// `--date-format`, tried first.
    pub format: Option<DateFormat>,
    /// `--timezone`; `None` means the cells are UTC already.
    pub zone: Option<Tz>,
}

/// A date cell as read: the UTC instant to send, and whether the cell already says exactly that
/// in the API's form (then a report shows the cell as it is).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SentDate {
    pub utc: NaiveDateTime,
    pub as_written: bool,
}

impl SentDate {
    /// The text sent, `yyyy-MM-dd HH:mm:ss`.
    pub(crate) fn api_text(&self) -> String {
        api_text(self.utc)
    }
}

impl DateReader {
    /// The UTC date-time to send, as `yyyy-MM-dd HH:mm:ss`, for a trimmed, non-empty cell.
    #[cfg(test)]
    pub(crate) fn read(&self, value: &str) -> Result<String, DateProblem> {
        self.read_utc(value).map(|date| date.api_text())
    }

    /// The UTC date-time to send for a trimmed, non-empty cell, as a value: what `validate`
    /// uses, so that a million rows need no million strings.
    pub(crate) fn read_utc(&self, value: &str) -> Result<SentDate, DateProblem> {
        let by_format = self.format.as_ref().and_then(|f| f.read(value));
        // The usual cell, in the API's form and with no zone to convert it, is sent as written;
        // knowing that here spares writing the text out to compare it.
        let plain = by_format.is_none() && self.zone.is_none();
        let reading = by_format
            .or_else(|| api_form(value).map(Reading::Local))
            .or_else(|| iso_form(value))
            .ok_or_else(|| DateProblem::NotADate {
                expected: self.expected(),
            })?;
        let api_form_read = matches!(reading, Reading::Local(_));
        let utc = match (reading, self.zone) {
            (Reading::Instant(utc), _) | (Reading::Local(utc), None) => utc,
            (Reading::Local(local), Some(zone)) => match zone.from_local_datetime(&local) {
                LocalResult::Single(dt) => dt.naive_utc(),
                LocalResult::None => {
                    return Err(DateProblem::Skipped {
                        zone: zone.name().to_string(),
                    });
                }
                LocalResult::Ambiguous(a, b) => {
                    return Err(DateProblem::Ambiguous {
                        zone: zone.name().to_string(),
                        earlier: a.naive_utc().format(DATE_TIME_FORMAT).to_string(),
                        later: b.naive_utc().format(DATE_TIME_FORMAT).to_string(),
                    });
                }
            },
        };
        let as_written = (plain && api_form_read) || api_text(utc) == value;
        Ok(SentDate { utc, as_written })
    }

    /// The forms accepted, for messages.
    fn expected(&self) -> String {
        let zone = self
            .zone
            .map_or("UTC".to_string(), |z| z.name().to_string());
        match &self.format {
            Some(f) => format!(
                "{} or yyyy-MM-dd HH:mm:ss ({zone}), or ISO 8601 with an offset",
                f.as_written()
            ),
            None => format!("yyyy-MM-dd HH:mm:ss ({zone}), or ISO 8601 with an offset"),
        }
    }
}

/// Strictly `yyyy-MM-dd HH:mm:ss`, and a date that exists (no 30 February).
fn api_form(value: &str) -> Option<NaiveDateTime> {
    let shape_ok = value.len() == 19
        && value.bytes().enumerate().all(|(i, b)| match i {
            4 | 7 => b == b'-',
            10 => b == b' ',
            13 | 16 => b == b':',
            _ => b.is_ascii_digit(),
        });
    if !shape_ok {
        return None;
    }
    // The shape is fixed, so the numbers are read in place: chrono's format parser re-reads its
    // format string on every call, which was a fifth of `validate`'s time on a million rows.
    let number = |from: usize, to: usize| {
        value.as_bytes()[from..to]
            .iter()
            .fold(0u32, |n, b| n * 10 + u32::from(b - b'0'))
    };
    let year = i32::try_from(number(0, 4)).ok()?;
    chrono::NaiveDate::from_ymd_opt(year, number(5, 7), number(8, 10))?.and_hms_opt(
        number(11, 13),
        number(14, 16),
        number(17, 19),
    )
}

/// `yyyy-MM-dd HH:mm:ss`, the API's form, written without chrono's format machinery (see
/// [`api_form`]).
fn api_text(at: NaiveDateTime) -> String {
    use chrono::{Datelike, Timelike};
    if !(0..=9999).contains(&at.year()) {
        return at.format(DATE_TIME_FORMAT).to_string();
    }
    let mut text = String::with_capacity(19);
    let mut put = |n: u32, width: u32, then: Option<char>| {
        for place in (0..width).rev() {
            let digit = (n / 10u32.pow(place)) % 10;
            text.push(char::from(b'0' + digit as u8));
        }
        if let Some(c) = then {
            text.push(c);
        }
    };
    put(at.year().unsigned_abs(), 4, Some('-'));
    put(at.month(), 2, Some('-'));
    put(at.day(), 2, Some(' '));
    put(at.hour(), 2, Some(':'));
    put(at.minute(), 2, Some(':'));
    put(at.second(), 2, None);
    text
}

/// ISO 8601 / RFC 3339 with an offset or `Z` (`T` or a space between date and time).
fn iso_form(value: &str) -> Option<Reading> {
    DateTime::parse_from_rfc3339(value)
        .ok()
        .map(|dt| Reading::Instant(dt.naive_utc()))
}

/// A time zone by its IANA name (`Asia/Kolkata`, `Europe/London`, `UTC`).
pub(crate) fn parse_zone(name: &str) -> Result<Tz, String> {
    name.trim().parse::<Tz>().map_err(|_| {
        format!(
            "{name:?} is not an IANA time zone name (examples: Asia/Kolkata, Europe/London, America/New_York, UTC)"
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_text_writes_what_chrono_would() {
        for text in [
            "2024-03-10 04:00:00",
            "0001-01-01 00:00:00",
            "9999-12-31 23:59:59",
            "2020-02-29 12:05:09",
        ] {
            let at = NaiveDateTime::parse_from_str(text, DATE_TIME_FORMAT).unwrap();
            assert_eq!(api_text(at), text);
            assert_eq!(api_form(text), Some(at));
        }
        let before_year_one =
            NaiveDateTime::parse_from_str("0000-01-01 00:00:00", DATE_TIME_FORMAT).unwrap()
                - chrono::Duration::hours(5);
        assert_eq!(
            api_text(before_year_one),
            before_year_one.format(DATE_TIME_FORMAT).to_string()
        );
    }

    fn reader(format: Option<&str>, zone: Option<&str>) -> DateReader {
        DateReader {
            format: format.and_then(|f| DateFormat::parse(f).unwrap()),
            zone: zone.map(|z| parse_zone(z).unwrap()),
        }
    }

    #[test]
    fn user_notation_translates_to_chrono() {
        let cases = [
            ("dd/MM/yyyy HH:mm", "%d/%m/%Y %H:%M"),
            ("MM/dd/yyyy", "%m/%d/%Y"),
            ("yyyy-MM-dd HH:mm:ss", "%Y-%m-%d %H:%M:%S"),
            ("yyyy-MM-ddTHH:mm:sszzz", "%Y-%m-%dT%H:%M:%S%:z"),
            ("d MMM yyyy h:mm tt", "%d %b %Y %I:%M %p"),
            ("yyyy'年'MM'月'dd", "%Y年%m月%d"),
        ];
        for (written, chrono) in cases {
            let f = DateFormat::parse(written).unwrap().unwrap();
            assert_eq!(f.chrono, chrono, "{written}");
        }
        assert_eq!(DateFormat::parse("ISO 8601").unwrap(), None);
        assert!(matches!(
            DateFormat::parse("dd/MM/yyyy QQ"),
            Err(DateFormatError::UnknownToken { .. })
        ));
        assert!(matches!(
            DateFormat::parse("HH:mm"),
            Err(DateFormatError::Incomplete { .. })
        ));
        assert!(matches!(
            DateFormat::parse("yyyy-MM-dd 'at HH"),
            Err(DateFormatError::UnclosedQuote { .. })
        ));
    }

    #[test]
    fn local_times_become_utc_in_the_zone() {
        let r = reader(Some("dd/MM/yyyy HH:mm"), Some("Asia/Kolkata"));
        assert_eq!(r.read("10/03/2024 09:30").unwrap(), "2024-03-10 04:00:00");
        // The API's own form is still read, as local time of the zone.
        assert_eq!(
            r.read("2024-03-10 09:30:00").unwrap(),
            "2024-03-10 04:00:00"
        );
        // A date-only format means midnight local time.
        let r = reader(Some("MM/dd/yyyy"), Some("America/New_York"));
        assert_eq!(r.read("07/04/2024").unwrap(), "2024-07-04 04:00:00");
        assert_eq!(r.read("1/5/2024").unwrap(), "2024-01-05 05:00:00");
    }

    #[test]
    fn an_explicit_offset_wins_over_the_zone() {
        let r = reader(None, Some("Asia/Kolkata"));
        assert_eq!(
            r.read("2024-03-10T09:30:00+01:00").unwrap(),
            "2024-03-10 08:30:00"
        );
        assert_eq!(
            r.read("2024-03-10T09:30:00Z").unwrap(),
            "2024-03-10 09:30:00"
        );
        let r = reader(Some("yyyy-MM-dd HH:mm zzz"), Some("Asia/Kolkata"));
        assert_eq!(
            r.read("2024-03-10 09:30 -05:00").unwrap(),
            "2024-03-10 14:30:00"
        );
    }

    #[test]
    fn without_a_zone_times_are_utc_as_before() {
        let r = DateReader::default();
        assert_eq!(
            r.read("2024-03-10 09:30:00").unwrap(),
            "2024-03-10 09:30:00"
        );
        for bad in [
            "2020-02-30 10:00:00",
            "2020-1-1 10:00:00",
            "10/03/2024",
            "soon",
        ] {
            let problem = r.read(bad).unwrap_err();
            assert!(
                problem.to_string().starts_with(
                    "is not a real date and time in the form yyyy-MM-dd HH:mm:ss (UTC)"
                ),
                "{bad}: {problem}"
            );
        }
    }

    #[test]
    fn a_skipped_local_time_is_refused_not_shifted() {
        let r = reader(None, Some("America/New_York"));
        let problem = r.read("2024-03-10 02:30:00").unwrap_err();
        assert_eq!(
            problem,
            DateProblem::Skipped {
                zone: "America/New_York".into()
            }
        );
        assert!(
            problem
                .to_string()
                .contains("does not exist in America/New_York")
        );
        assert_eq!(
            r.read("2024-03-10 03:30:00").unwrap(),
            "2024-03-10 07:30:00"
        );
    }

    #[test]
    fn a_repeated_local_time_is_refused_naming_both_instants() {
        let r = reader(Some("dd/MM/yyyy HH:mm"), Some("Europe/London"));
        let problem = r.read("27/10/2024 01:30").unwrap_err();
        assert_eq!(
            problem,
            DateProblem::Ambiguous {
                zone: "Europe/London".into(),
                earlier: "2024-10-27 00:30:00".into(),
                later: "2024-10-27 01:30:00".into(),
            }
        );
        // With an offset it is one instant.
        assert_eq!(
            r.read("2024-10-27T01:30:00+01:00").unwrap(),
            "2024-10-27 00:30:00"
        );
    }

    #[test]
    fn unknown_zones_are_named() {
        let err = parse_zone("Mars/Olympus").unwrap_err();
        assert!(
            err.contains("Mars/Olympus") && err.contains("IANA"),
            "{err}"
        );
    }
}
