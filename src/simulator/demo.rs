//! The simulated account's fixed contents: its leads, users, activity types and the identity
//! UserByAccessKey.Get reports.
//!
//! Everything here is a pure, deterministic function or constant, so tests and demo data files
//! written elsewhere can name the same leads and owners the simulator knows. Data leaves through
//! the public functions; nothing enters.

use crate::lsq::api;

/// How many leads the simulated account holds; [`demo_lead_id`] names them.
pub const DEMO_LEADS: usize = 50;

/// E-mail addresses of the account's users, the only valid `ActivityOwnerEmail` values.
pub const DEMO_OWNERS: &[&str] = &[
    "asha.rao@example.com",
    "vikram.mehta@example.com",
    "priya.nair@example.com",
    "rahul.sharma@example.com",
    "meera.iyer@example.com",
];

/// Code of the system activity LeadSquared posts when a lead's owner changes. Delete Activities
/// refuses it; only Delete Owner Change History removes these.
pub const OWNER_CHANGE_EVENT: i64 = 22;

/// `EventName` of [`OWNER_CHANGE_EVENT`] activities.
pub(super) const OWNER_CHANGE_EVENT_NAME: &str = "Lead Owner Changed";

/// Display name of the user the simulator's keys belong to (`CreatedByName` of every activity).
pub(super) const API_USER_NAME: &str = "Asha Rao";

/// Fixed id of that user, so UserByAccessKey.Get answers the same across runs.
pub(super) const API_USER_ID: &str = "7d4f3c2a-9b1e-4c6d-8a5f-3e2b1c0d9f8a";

/// Org id UserByAccessKey.Get reports.
const API_ORG_ID: &str = "41537";

/// Dates of the two owner changes every demo lead has, so Delete Owner Change History has
/// something to delete and date windows can select one of them.
pub(super) const OWNER_CHANGE_DATES: [&str; 2] = ["2024-01-15 09:00:00", "2024-06-01 12:30:00"];

/// The id of demo lead `i` (`0..DEMO_LEADS`): a lowercase v4-shaped GUID that is the same in
/// every run, derived by a fixed mixing function rather than stored, so any `i` has one.
pub fn demo_lead_id(i: usize) -> String {
    let mut state = 0x5EED_1EAD_0000_0000_u64 ^ i as u64;
    let hi = splitmix64(&mut state);
    let lo = splitmix64(&mut state);
    let bytes = ((u128::from(hi) << 64) | u128::from(lo)).to_be_bytes();
    uuid::Builder::from_random_bytes(bytes)
        .into_uuid()
        .hyphenated()
        .to_string()
}

/// The e-mail address of demo lead `i`: `lead{i}@example.com`. Unique, so the ByLeadField post
/// can find a lead by it.
pub fn demo_lead_email(i: usize) -> String {
    format!("lead{i}@example.com")
}

/// The phone number of demo lead `i`: `+91-80000-{i:05}`.
pub fn demo_lead_phone(i: usize) -> String {
    format!("+91-80000-{i:05}")
}

/// The mobile number of demo lead `i`: `+91-90000-{i:05}`.
pub fn demo_lead_mobile(i: usize) -> String {
    format!("+91-90000-{i:05}")
}

/// Lead fields the ByLeadField post may search by (compared ignoring case).
const SEARCH_FIELDS: [&str; 3] = ["EmailAddress", "Phone", "Mobile"];

/// Whether the account's leads can be found by `field`.
pub(super) fn is_lead_search_field(field: &str) -> bool {
    SEARCH_FIELDS.iter().any(|f| f.eq_ignore_ascii_case(field))
}

/// The demo lead whose `field` has `value`: e-mails compared ignoring case, phone numbers by
/// their digits (so `+91 80000 00007` finds `+91-80000-00007`).
pub(super) fn demo_lead_by_field(field: &str, value: &str) -> Option<usize> {
    let digits = |text: &str| -> String { text.chars().filter(char::is_ascii_digit).collect() };
    let value = value.trim();
    let wanted = digits(value);
    (0..DEMO_LEADS).find(|&i| {
        if field.eq_ignore_ascii_case(SEARCH_FIELDS[0]) {
            demo_lead_email(i).eq_ignore_ascii_case(value)
        } else if field.eq_ignore_ascii_case(SEARCH_FIELDS[1]) {
            !wanted.is_empty() && digits(&demo_lead_phone(i)) == wanted
        } else if field.eq_ignore_ascii_case(SEARCH_FIELDS[2]) {
            !wanted.is_empty() && digits(&demo_lead_mobile(i)) == wanted
        } else {
            false
        }
    })
}

/// The account's custom activity types, the codes a bulk post may use.
/// The custom field number every demo activity type keeps free for a keyed sync's key.
pub const DEMO_KEY_FIELD: u32 = 50;

pub fn demo_activity_types() -> Vec<api::ActivityType> {
    [
        (201, "Webinar Attended", 3),
        (202, "Product Demo", 5),
        (203, "Call Logged", 4),
        (204, "Payment Received", 6),
        (205, "Site Visit", 2),
    ]
    .into_iter()
    .map(|(code, name, fields)| api::ActivityType {
        activity_event: code,
        display_name: name.to_string(),
        // Every type also has `mx_Custom_50`, a field no generated row fills: the place a
        // keyed sync writes the source's key (`--key-field mx_Custom_50`), as an account
        // would add one "External id" field to each type it syncs.
        fields: (1..=fields)
            .chain([DEMO_KEY_FIELD])
            .map(|n| format!("mx_Custom_{n}"))
            .collect(),
    })
    .collect()
}

/// What UserByAccessKey.Get answers; `host` is the configured account host.
pub(super) fn api_user(host: &str) -> api::UserByAccessKey {
    let mut urls = serde_json::Map::new();
    urls.insert("api".to_string(), serde_json::Value::from(host));
    api::UserByAccessKey {
        id: API_USER_ID.to_string(),
        email_address: DEMO_OWNERS[0].to_string(),
        org_id: API_ORG_ID.to_string(),
        lsq_common_service_urls: urls,
    }
}

/// SplitMix64: a tiny, well-spread deterministic generator, enough to make ids look random.
fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A hyphenated 8-4-4-4-12 hex GUID, either case.
pub(super) fn is_guid(text: &str) -> bool {
    text.len() == 36
        && text.bytes().enumerate().all(|(i, b)| match i {
            8 | 13 | 18 | 23 => b == b'-',
            _ => b.is_ascii_hexdigit(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn demo_lead_ids_are_stable_distinct_lowercase_guids() {
        let ids: Vec<String> = (0..DEMO_LEADS).map(demo_lead_id).collect();
        assert_eq!(ids.iter().collect::<HashSet<_>>().len(), DEMO_LEADS);
        for id in &ids {
            assert!(is_guid(id), "{id}");
            assert_eq!(id, &id.to_lowercase());
        }
        assert_eq!(demo_lead_id(7), ids[7]);
    }

    #[test]
    fn leads_are_found_by_email_phone_and_mobile() {
        assert_eq!(
            demo_lead_by_field("emailaddress", "LEAD7@example.com"),
            Some(7)
        );
        assert_eq!(demo_lead_by_field("Phone", "+91 80000 00012"), Some(12));
        assert_eq!(demo_lead_by_field("Mobile", "919000000049"), Some(49));
        assert_eq!(
            demo_lead_by_field("EmailAddress", "nobody@example.com"),
            None
        );
        assert_eq!(demo_lead_by_field("Phone", ""), None);
        assert!(!is_lead_search_field("FirstName"));
    }

    #[test]
    fn activity_type_codes_are_custom_and_exclude_the_system_code() {
        let types = demo_activity_types();
        let codes: Vec<i64> = types.iter().map(|t| t.activity_event).collect();
        assert_eq!(codes, vec![201, 202, 203, 204, 205]);
        assert!(!codes.contains(&OWNER_CHANGE_EVENT));
        assert_eq!(types[3].fields.len(), 7, "mx_Custom_1..6 and the key field");
        assert_eq!(types[3].fields[5], "mx_Custom_6");
        assert!(
            types
                .iter()
                .all(|t| t.fields.last().is_some_and(|f| f == "mx_Custom_50"))
        );
    }
}
