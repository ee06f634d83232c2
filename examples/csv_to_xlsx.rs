//! Writes the rows of a CSV file (as `gen_activities` makes them) to an `.xlsx` workbook the way
//! a person's export would hold them, so the benchmark and the tests can read the same rows as a
//! spreadsheet: text cells in the shared-strings table (as Excel writes them), `ActivityEvent`
//! and whole-number cells as number cells, `ActivityDateTime` as date cells formatted
//! `yyyy-mm-dd hh:mm:ss`, and empty CSV cells left out (the sheet is sparse).
//!
//! ```text
//! cargo run --release --example gen_activities -- --rows 200000 --out /tmp/rows.csv
//! cargo run --release --example csv_to_xlsx -- /tmp/rows.csv /tmp/rows.xlsx
//! cargo run --release --example csv_to_xlsx -- --inline /tmp/rows.csv /tmp/inline.xlsx
//! ```
//!
//! `--inline` writes text as inline strings instead (rust_xlsxwriter's constant-memory mode, as
//! some exporters do). The sheet is written in rust_xlsxwriter's low-memory mode, so a sheet at
//! Excel's limit of 1,048,576 rows is written without holding it in memory.

use rust_xlsxwriter::{ExcelDateTime, Format, Workbook, XlsxError};

/// Excel's last row (0-based): a sheet holds at most 1,048,576 rows.
const MAX_ROW: u32 = 1_048_575;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let inline = args.iter().any(|a| a == "--inline");
    args.retain(|a| a != "--inline");
    let [input, output] = args.as_slice() else {
        return Err("usage: csv_to_xlsx [--inline] INPUT.csv OUTPUT.xlsx".into());
    };
    let mut reader = csv::Reader::from_path(input)?;
    let headers = reader.headers()?.clone();
    let date_column = headers
        .iter()
        .position(|h| h.eq_ignore_ascii_case("ActivityDateTime"));
    let date_format = Format::new().set_num_format("yyyy-mm-dd hh:mm:ss");

    let mut workbook = Workbook::new();
    let sheet = if inline {
        workbook.add_worksheet_with_constant_memory()
    } else {
        workbook.add_worksheet_with_low_memory()
    };
    sheet.set_name("Activities")?;
    for (col, header) in headers.iter().enumerate() {
        sheet.write_string(0, column(col)?, header)?;
    }
    let mut record = csv::StringRecord::new();
    let mut row = 0u32;
    while reader.read_record(&mut record)? {
        row += 1;
        if row > MAX_ROW {
            return Err(format!("{input} has more rows than a sheet holds ({MAX_ROW})").into());
        }
        for (col, cell) in record.iter().enumerate() {
            let col = column(col)?;
            if cell.is_empty() {
                continue;
            }
            let as_date = (Some(usize::from(col)) == date_column)
                .then(|| ExcelDateTime::parse_from_str(cell).ok())
                .flatten();
            if let Some(when) = as_date {
                sheet.write_datetime_with_format(row, col, &when, &date_format)?;
            } else if let Some(number) = whole_number(cell) {
                sheet.write_number(row, col, number)?;
            } else {
                sheet.write_string(row, col, cell)?;
            }
        }
    }
    workbook.save(output)?;
    Ok(())
}

/// A column index as rust_xlsxwriter takes it.
fn column(index: usize) -> Result<u16, XlsxError> {
    u16::try_from(index).map_err(|_| XlsxError::RowColumnLimitError)
}

/// A cell of digits that a spreadsheet would hold as a number (`201`), not `0201` or `+201`.
fn whole_number(cell: &str) -> Option<f64> {
    let plain = !cell.is_empty()
        && cell.len() < 16
        && cell.bytes().all(|b| b.is_ascii_digit())
        && (cell == "0" || !cell.starts_with('0'));
    plain.then(|| cell.parse().ok()).flatten()
}
