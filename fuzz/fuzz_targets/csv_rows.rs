//! Fuzz target: raw bytes in as a CSV file, through the import's reader and validation
//! (`lsq_sync::import::validate::check_csv`), with small limits so the limit paths are reached too.
//! Out: nothing but the checks below; any panic is a crash.

#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use lsq_sync::input::rows::InputLimits;
use lsq_sync::import::validate::check_csv;

fuzz_target!(|data: &[u8]| {
    let limits = InputLimits {
        max_cell_bytes: 64,
        max_row_bytes: 512,
        max_columns: 32,
    };
    if let Ok(rows) = check_csv(Path::new("fuzz.csv"), data, limits) {
        // Every row read is accounted for, numbered 1.. in order, on lines that only grow.
        let mut last_line = 0;
        for (i, row) in rows.iter().enumerate() {
            assert_eq!(row.source.number, i as u64 + 1);
            assert!(row.source.line >= last_line);
            last_line = row.source.line;
            if row.result.is_ok() {
                assert!(row.source.record.iter().all(|cell| cell.len() <= 64));
            }
        }
    }
});
