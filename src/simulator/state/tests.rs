//! Unit tests of the simulated account's rules: storage, queued deletes, the rate limiter's
//! window under each semantics, faults.

use super::*;
use std::num::NonZeroU32;

fn quota(calls: u32, ms: u64) -> Option<RateQuota> {
    Some(RateQuota::new(
        NonZeroU32::new(calls).unwrap(),
        Duration::from_millis(ms),
    ))
}

fn item(lead: &str, code: i64) -> api::ActivityItem {
    api::ActivityItem {
        related_prospect_id: lead.to_string(),
        activity_event: code,
        activity_note: None,
        activity_owner_email: None,
        activity_date_time: None,
        fields: Vec::new(),
    }
}

#[test]
fn sliding_window_admits_calls_per_window_and_frees_a_slot_exactly_when_the_oldest_leaves() {
    let t0 = Instant::now();
    let mut w = SlidingWindow::new(quota(3, 1000), &[], RefusedCalls::NotCounted, t0);
    let ms = Duration::from_millis;
    assert!(w.try_admit(t0).is_ok());
    assert!(w.try_admit(t0 + ms(100)).is_ok());
    assert!(w.try_admit(t0 + ms(200)).is_ok());
    assert_eq!(w.try_admit(t0 + ms(300)), Err(ms(700)));
    // The refused attempt was not recorded, so the window frees at t0 + 1000.
    assert_eq!(w.try_admit(t0 + ms(999)), Err(ms(1)));
    assert!(w.try_admit(t0 + ms(1000)).is_ok());
    assert!(w.try_admit(t0 + ms(1001)).is_err());
}

#[test]
fn counted_refusals_keep_the_window_full() {
    let t0 = Instant::now();
    let ms = Duration::from_millis;
    let mut w = SlidingWindow::new(quota(3, 1000), &[], RefusedCalls::Counted, t0);
    for t in [0, 100, 200] {
        assert!(w.try_admit(t0 + ms(t)).is_ok());
    }
    // Refused at 300 and 400: both now hold places until 1300 and 1400, so a place frees
    // only when three arrivals have left, not one.
    assert_eq!(w.try_admit(t0 + ms(300)), Err(ms(800)));
    assert_eq!(w.try_admit(t0 + ms(400)), Err(ms(800)));
    // At 1000 the first admitted call has left, but two refused ones are still there.
    assert_eq!(w.try_admit(t0 + ms(1000)), Err(ms(300)));
    assert!(w.try_admit(t0 + ms(1301)).is_ok());
}

#[test]
fn a_rate_change_takes_effect_at_its_time() {
    let t0 = Instant::now();
    let ms = Duration::from_millis;
    let changes = [RateChange {
        at: ms(500),
        rate: quota(1, 1000),
    }];
    let mut w = SlidingWindow::new(quota(3, 1000), &changes, RefusedCalls::NotCounted, t0);
    assert!(w.try_admit(t0).is_ok());
    assert!(w.try_admit(t0 + ms(100)).is_ok());
    assert_eq!(w.quota_at(t0 + ms(499)), quota(3, 1000));
    assert!(
        w.try_admit(t0 + ms(600)).is_err(),
        "1 per second from 500 ms on"
    );
    assert_eq!(w.quota_at(t0 + ms(600)), quota(1, 1000));
}

#[test]
fn unlimited_window_admits_everything() {
    let t0 = Instant::now();
    let mut w = SlidingWindow::new(None, &[], RefusedCalls::NotCounted, t0);
    assert!((0..10_000).all(|_| w.try_admit(t0).is_ok()));
}

#[test]
fn max_in_window_counts_half_open_windows() {
    let ms = Duration::from_millis;
    let times = vec![
        ms(0),
        ms(100),
        ms(200),
        ms(999),
        ms(1000),
        ms(1500),
        ms(1999),
    ];
    // [0,1000) holds 0,100,200,999; [999,1999) holds 999,1000,1500.
    assert_eq!(max_in_window(times.clone(), ms(1000)), 4);
    assert_eq!(max_in_window(times.clone(), ms(1001)), 5);
    assert_eq!(max_in_window(times, ms(1)), 1);
    assert_eq!(max_in_window(Vec::new(), ms(1000)), 0);
}

#[test]
fn dates_parse_strictly() {
    assert_eq!(parse_date("1970-01-01 00:01:00"), Some(60));
    for bad in [
        "2024-02-30 10:00:00",
        "2024-1-05 10:00:00",
        "2024-01-05T10:00:00",
        "2024-01-05 10:00",
        " 2024-01-05 10:00:00",
        "yesterday",
    ] {
        assert_eq!(parse_date(bad), None, "{bad}");
    }
    assert_eq!(
        format_date(parse_date("2024-06-01 12:30:00").unwrap()),
        "2024-06-01 12:30:00"
    );
}

#[test]
fn field_names_are_mx_custom_1_to_50() {
    assert_eq!(parse_field_name("mx_Custom_1"), Some(1));
    assert_eq!(parse_field_name("mx_Custom_50"), Some(50));
    for bad in [
        "mx_Custom_0",
        "mx_Custom_51",
        "mx_Custom_01",
        "mx_custom_1",
        "Notes",
        "mx_Custom_",
    ] {
        assert_eq!(parse_field_name(bad), None, "{bad}");
    }
}

#[test]
fn rows_are_checked_lead_code_date_fields_owner() {
    let state = State::new(&SimConfig::default(), Instant::now());
    let lead = demo::demo_lead_id(0);
    let mut good = item(&lead.to_uppercase(), 202);
    good.fields.push(api::FieldValue {
        schema_name: "mx_Custom_5".into(),
        value: "x".into(),
    });
    good.activity_owner_email = Some("Priya.Nair@Example.com".into());
    assert!(state.validate_row(&good).is_ok());

    let unknown_lead = item("00000000-0000-4000-8000-000000000000", 201);
    assert!(
        state
            .validate_row(&unknown_lead)
            .err()
            .unwrap()
            .contains("does not exist")
    );
    let bad_code = item(&lead, 999);
    assert_eq!(
        state.validate_row(&bad_code).err().unwrap(),
        "Invalid activity event code 999"
    );
    let owner_code = item(&lead, OWNER_CHANGE_EVENT);
    assert!(state.validate_row(&owner_code).is_err());
    let mut bad_date = item(&lead, 201);
    bad_date.activity_date_time = Some("2024-13-01 00:00:00".into());
    assert!(
        state
            .validate_row(&bad_date)
            .err()
            .unwrap()
            .contains("ActivityDateTime")
    );
    let mut undefined = item(&lead, 205);
    undefined.fields.push(api::FieldValue {
        schema_name: "mx_Custom_3".into(),
        value: "x".into(),
    });
    assert!(
        state
            .validate_row(&undefined)
            .err()
            .unwrap()
            .contains("not defined")
    );
    let mut stranger = item(&lead, 201);
    stranger.activity_owner_email = Some("someone@else.com".into());
    assert!(
        state
            .validate_row(&stranger)
            .err()
            .unwrap()
            .contains("not a user")
    );
}

#[test]
fn accept_any_lead_takes_well_formed_guids_only() {
    let config = SimConfig {
        accept_any_lead: true,
        ..SimConfig::default()
    };
    let state = State::new(&config, Instant::now());
    let fresh = "ABCDEF01-2345-4678-9ABC-DEF012345678";
    assert_eq!(
        state.resolve_lead(fresh),
        Some(LeadRef::Unseen(fresh.to_lowercase().into()))
    );
    assert_eq!(state.resolve_lead("not-a-guid"), None);
}

#[test]
fn query_orders_newest_first_with_ties_in_creation_order_and_skips_deleted() {
    let mut state = State::new(&SimConfig::default(), Instant::now());
    let lead_id = demo::demo_lead_id(3);
    let lead = state.resolve_lead(&lead_id).unwrap();
    let mut ids = Vec::new();
    for date in [
        "2025-01-01 00:00:00",
        "2025-03-01 00:00:00",
        "2025-01-01 00:00:00",
    ] {
        let mut row = item(&lead_id, 201);
        row.activity_date_time = Some(date.into());
        let valid = state.validate_row(&row).unwrap();
        ids.push(state.create(valid, 1, 0));
    }
    let filter = Filter {
        codes: Some(vec![201]),
        ..Filter::default()
    };
    let order: Vec<String> = state
        .query(&lead, &filter)
        .iter()
        .map(|&i| state.record(i).id())
        .collect();
    assert_eq!(order, vec![ids[1].clone(), ids[0].clone(), ids[2].clone()]);

    let window = Filter {
        codes: Some(vec![201]),
        from: parse_date("2025-01-01 00:00:00"),
        to: parse_date("2025-01-01 00:00:00"),
    };
    assert_eq!(state.delete(&lead, &window), 2);
    assert_eq!(state.query(&lead, &filter).len(), 1);
    // The owner-change history of the same lead is untouched.
    let history = Filter {
        codes: Some(vec![OWNER_CHANGE_EVENT]),
        ..Filter::default()
    };
    assert_eq!(state.query(&lead, &history).len(), 2);
    let (_, _, _, live, deleted) = state.counts().log;
    assert_eq!((live, deleted), ((DEMO_LEADS * 2 + 1) as u64, 2));
}

#[test]
fn fault_draw_follows_the_documented_order() {
    let mut rng = fastrand::Rng::with_seed(1);
    let all = FaultConfig {
        plain_500: 1.0,
        drop_connection: 1.0,
        commit_then_500: 1.0,
        commit_then_drop: 1.0,
        commit_then_late: 1.0,
        late_by: Duration::from_secs(1),
        seed: 1,
    };
    assert_eq!(Fault::draw(&all, &mut rng), Some(Fault::Plain500));
    let drop_only = FaultConfig {
        commit_then_drop: 1.0,
        ..FaultConfig::default()
    };
    assert_eq!(
        Fault::draw(&drop_only, &mut rng),
        Some(Fault::CommitThenDrop)
    );
    assert_eq!(Fault::draw(&FaultConfig::default(), &mut rng), None);
}
