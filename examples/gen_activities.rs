//! Generates activity CSV files for the samples, the tests and the benchmarks, with leads, owners
//! and activity types that the embedded simulator knows, so the data and the simulator agree by
//! construction.
//!
//! ```text
//! cargo run --release --example gen_activities -- --rows 1000000 --out /tmp/big.csv
//! cargo run --example gen_activities -- --rows 200 --sample --out samples/activities.csv
//! ```
//! `--sample` mixes in the rows a realistic export has: notes with commas, quotes and line
//! breaks, a few invalid rows (caught before sending) and a few for unknown leads or undefined
//! fields (refused by the server), so the report shows every status.
//! `--any-lead` draws random lead ids (for a simulator run with `--accept-any-lead`); with
//! `--leads N` too, rows are spread over N random lead ids drawn once (so that each lead has
//! several rows, as on a real account).
//! `--numbered` makes every note unique, so a test can find each row on the server.
//! `--refused-every N` gives every Nth row an owner the simulator does not know, so the server
//! refuses it (a whole batch, with the simulator's `--reject-mode batch`).

use std::io::BufWriter;

use lsq_sync::simulator::{DEMO_LEADS, DEMO_OWNERS, demo_activity_types, demo_lead_id};

const NOTES: &[&str] = &[
    "Attended the product webinar",
    "Asked about pricing, wants a quote by Friday",
    "Said \"call me next week\", prefers mornings",
    "Follow-up call; no answer",
    "Demo of reporting module, 3 attendees: CFO, ops lead, analyst",
    "Paid invoice INV-2024-118",
    "Visited the Pune office\nMet the sales head\nShared brochure",
    "Ticket: login issue, resolved",
    "Reschedule requested (timezone mix-up)",
    "Interested in the \"Enterprise\" plan, budget approved",
];
const REGIONS: &[&str] = &["North", "South", "East", "West", "APAC", "EMEA"];
const SOURCES: &[&str] = &["HubSpot export", "Legacy CRM", "Events team", "Call centre"];

struct Options {
    rows: usize,
    out: String,
    sample: bool,
    any_lead: bool,
    /// With `any_lead`: how many distinct random leads (0: a new one per row).
    leads: usize,
    numbered: bool,
    refused_every: usize,
    seed: u64,
}

fn parse_args() -> Result<Options, String> {
    let mut options = Options {
        rows: 200,
        out: String::new(),
        sample: false,
        any_lead: false,
        leads: 0,
        numbered: false,
        refused_every: 0,
        seed: 42,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = |name: &str| args.next().ok_or_else(|| format!("{name} needs a value"));
        match arg.as_str() {
            "--rows" => {
                options.rows = value("--rows")?
                    .parse()
                    .map_err(|e| format!("--rows: {e}"))?
            }
            "--out" => options.out = value("--out")?,
            "--seed" => {
                options.seed = value("--seed")?
                    .parse()
                    .map_err(|e| format!("--seed: {e}"))?
            }
            "--sample" => options.sample = true,
            "--any-lead" => options.any_lead = true,
            "--leads" => {
                options.leads = value("--leads")?
                    .parse()
                    .map_err(|e| format!("--leads: {e}"))?
            }
            "--numbered" => options.numbered = true,
            "--refused-every" => {
                options.refused_every = value("--refused-every")?
                    .parse()
                    .map_err(|e| format!("--refused-every: {e}"))?
            }
            other => return Err(format!("unknown argument {other}")),
        }
    }
    if options.out.is_empty() {
        return Err("--out FILE is required".into());
    }
    Ok(options)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let options = parse_args()?;
    let types = demo_activity_types();
    let mut rng = fastrand::Rng::with_seed(options.seed);
    let random_lead = |rng: &mut fastrand::Rng| {
        uuid::Builder::from_random_bytes(rng.u128(..).to_be_bytes())
            .into_uuid()
            .to_string()
    };
    let leads: Vec<String> = if options.any_lead && options.leads > 0 {
        (0..options.leads).map(|_| random_lead(&mut rng)).collect()
    } else {
        (0..DEMO_LEADS).map(demo_lead_id).collect()
    };
    let file = std::fs::File::create(&options.out)?;
    let mut out = csv::Writer::from_writer(BufWriter::with_capacity(1 << 20, file));
    out.write_record([
        "RelatedProspectId",
        "ActivityEvent",
        "ActivityNote",
        "ActivityOwnerEmail",
        "ActivityDateTime",
        "mx_Custom_1",
        "mx_Custom_2",
        "mx_Custom_3",
        "mx_Custom_4",
        "mx_Custom_5",
        "mx_Custom_6",
        "Region",
        "SourceSystem",
    ])?;
    for n in 1..=options.rows {
        let activity_type = &types[rng.usize(..types.len())];
        let mut lead = if options.any_lead && options.leads == 0 {
            random_lead(&mut rng)
        } else {
            leads[rng.usize(..leads.len())].clone()
        };
        let mut event = activity_type.activity_event.to_string();
        let mut owner = DEMO_OWNERS[rng.usize(..DEMO_OWNERS.len())].to_string();
        let mut date = format!(
            "{:04}-{:02}-{:02} {:02}:{:02}:{:02}",
            2023 + rng.u32(0..2),
            rng.u32(1..=12),
            rng.u32(1..=28),
            rng.u32(0..24),
            rng.u32(0..60),
            rng.u32(0..60)
        );
        let mut fields: Vec<String> = (1..=6)
            .map(|i| {
                // Only fields the type defines (its list also holds the key field,
                // mx_Custom_50, which no generated row fills).
                let defined = activity_type
                    .fields
                    .iter()
                    .any(|f| f == &format!("mx_Custom_{i}"));
                if defined && rng.u8(0..4) != 0 {
                    format!(
                        "{}-{}",
                        activity_type.display_name.split(' ').next().unwrap_or("v"),
                        rng.u32(100..999)
                    )
                } else {
                    String::new()
                }
            })
            .collect();
        let mut note = NOTES[rng.usize(..NOTES.len())].to_string();
        if options.numbered {
            note = format!("{note} (row {n})");
        }
        if options.refused_every > 0 && n % options.refused_every == 0 {
            // Valid to lsq-sync, refused by the server: the account has no such user.
            owner = "former.employee@example.com".to_string();
        }

        if options.sample {
            // Every 23rd row is broken before sending, every 31st is refused by the server.
            match (n % 23, n % 31, n % 3) {
                (0, _, 0) => lead = "not-a-lead-id".into(),
                (0, _, 1) => date = "2024-02-30 10:00:00".into(),
                (0, _, _) => event = "Webinar".into(),
                (_, 0, 0) => lead = "0b5e0d2c-1111-4aaa-8bbb-000000000000".into(),
                (_, 0, 1) => owner = "someone@unknown-company.example".into(),
                (_, 0, _) => {
                    // A field the activity type does not define.
                    fields[5] = "extra".into();
                    event = types
                        .iter()
                        .find(|t| !t.fields.iter().any(|f| f == "mx_Custom_6"))
                        .map_or(event, |t| t.activity_event.to_string());
                }
                _ => {}
            }
        }

        let mut record = vec![lead, event, note, owner, date];
        record.append(&mut fields);
        record.push(REGIONS[rng.usize(..REGIONS.len())].to_string());
        record.push(SOURCES[rng.usize(..SOURCES.len())].to_string());
        out.write_record(&record)?;
    }
    out.flush()?;
    Ok(())
}
