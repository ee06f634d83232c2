//! Writes `samples/calls.xlsx`, the workbook of the README's first-import recipe: a call log kept
//! in Excel with its own column names, real date cells in local (India) time, a sheet of notes
//! before the data, and one row a person left unfinished, with leads and owners the embedded
//! simulator knows.
//!
//! ```text
//! cargo run --example sample_xlsx                 # writes samples/calls.xlsx
//! cargo run --example sample_xlsx -- /tmp/x.xlsx  # elsewhere
//! ```

use lsq_sync::simulator::{DEMO_OWNERS, demo_lead_id};
use rust_xlsxwriter::{DocProperties, ExcelDateTime, Format, Workbook, XlsxError};

/// Lead (demo lead number), call time (local), agent, notes, score, outcome, region.
const CALLS: &[(usize, &str, usize, &str, f64, &str, &str)] = &[
    (
        1,
        "2023-04-03 10:15",
        0,
        "Intro call, asked for the brochure",
        3.0,
        "Interested",
        "West",
    ),
    (
        2,
        "2023-04-03 11:40",
        1,
        "No answer",
        0.0,
        "Call back",
        "South",
    ),
    (
        3,
        "2023-04-04 09:05",
        2,
        "Wants pricing for 40 seats, \"before Q2\"",
        4.0,
        "Interested",
        "North",
    ),
    (
        2,
        "2023-04-05 16:30",
        1,
        "Second try; spoke to the office manager",
        2.0,
        "Call back",
        "South",
    ),
    (
        4,
        "2023-04-06 12:00",
        3,
        "Not the right person; gave the CFO's name",
        1.0,
        "Referred",
        "East",
    ),
    (
        5,
        "2023-04-10 15:45",
        4,
        "Demo booked for next week",
        5.0,
        "Demo booked",
        "West",
    ),
    (
        6,
        "2023-04-11 10:20",
        0,
        "Budget frozen until July",
        1.0,
        "Not now",
        "North",
    ),
    (
        7,
        "2023-04-12 14:10",
        2,
        "Asked for a case study in retail",
        3.0,
        "Interested",
        "South",
    ),
    (
        3,
        "2023-04-13 17:55",
        2,
        "Sent the quote, follow-up on Monday",
        4.0,
        "Quote sent",
        "North",
    ),
    (
        8,
        "2023-04-14 09:30",
        3,
        "Voicemail",
        0.0,
        "Call back",
        "East",
    ),
];

fn main() -> Result<(), XlsxError> {
    let out = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "samples/calls.xlsx".to_string());
    let mut workbook = Workbook::new();
    // A fixed creation date, so the file only changes when its content does.
    let created = ExcelDateTime::from_ymd(2024, 1, 1)?;
    workbook.set_properties(&DocProperties::new().set_creation_datetime(&created));

    // Workbooks often open on a sheet of notes, so the data is not the first sheet.
    let about = workbook.add_worksheet();
    about.set_name("About")?;
    about.write_string(0, 0, "Call log, April 2023. Times are India time (IST).")?;

    let sheet = workbook.add_worksheet();
    sheet.set_name("Calls")?;
    let headers = [
        "Lead ID",
        "Called at",
        "Agent",
        "Notes",
        "Score",
        "Outcome",
        "Region",
    ];
    let bold = Format::new().set_bold();
    for (column, header) in (0u16..).zip(headers) {
        sheet.write_string_with_format(0, column, header, &bold)?;
    }
    let date_format = Format::new().set_num_format("dd/mm/yyyy hh:mm");
    let mut row = 1u32;
    for &(lead, when, agent, notes, score, outcome, region) in CALLS {
        let when = ExcelDateTime::parse_from_str(when)?;
        sheet.write_string(row, 0, demo_lead_id(lead))?;
        sheet.write_datetime_with_format(row, 1, &when, &date_format)?;
        sheet.write_string(row, 2, DEMO_OWNERS[agent])?;
        sheet.write_string(row, 3, notes)?;
        sheet.write_number(row, 4, score)?;
        sheet.write_string(row, 5, outcome)?;
        sheet.write_string(row, 6, region)?;
        row += 1;
    }
    // The row someone meant to finish later: no lead id yet.
    sheet.write_string(row, 0, "ask Priya")?;
    let when = ExcelDateTime::parse_from_str("2023-04-14 11:00")?;
    sheet.write_datetime_with_format(row, 1, &when, &date_format)?;
    sheet.write_string(row, 2, DEMO_OWNERS[2])?;
    sheet.write_string(row, 3, "Walk-in enquiry at the Pune office")?;
    sheet.set_column_width(0, 38)?;
    sheet.set_column_width(1, 17)?;
    sheet.set_column_width(2, 26)?;
    sheet.set_column_width(3, 44)?;
    workbook.save(&out)?;
    println!("wrote {out}");
    Ok(())
}
