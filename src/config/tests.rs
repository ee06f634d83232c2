//! Unit tests of `config`.

use super::*;
use std::collections::HashMap;
use std::path::Path;

fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
    let map: HashMap<String, String> = pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    move |k| map.get(k).cloned()
}

fn file(text: &str) -> FileConfig {
    toml::from_str(text).unwrap()
}

#[test]
fn defaults_apply_without_any_source() {
    let s = Settings::resolve(None, &env_of(&[]), &Overrides::default()).unwrap();
    assert_eq!(s.rate, RateQuota::DEFAULT);
    assert_eq!(s.batch_size, 25);
    assert!(s.host.is_none());
}

#[test]
fn file_then_env_then_flags_each_win_over_the_one_before() {
    let f = file(
        "[pacing]\nrate = \"10/5s\"\nconcurrency = 8\n[retry]\nmax_attempts = 3\n[api]\nhost = \"https://file.example\"",
    );
    let s = Settings::resolve(Some(&f), &env_of(&[]), &Overrides::default()).unwrap();
    assert_eq!(s.rate.to_string(), "10/5s");
    assert_eq!(s.max_attempts.get(), 3);

    let env = env_of(&[("LSQ_RATE", "20/5s"), ("LSQ_HOST", "https://env.example")]);
    let s = Settings::resolve(Some(&f), &env, &Overrides::default()).unwrap();
    assert_eq!(s.rate.to_string(), "20/5s");
    assert_eq!(s.host.as_deref(), Some("https://env.example"));
    assert_eq!(s.concurrency, 8, "file value kept where env is silent");

    let flags = Overrides {
        rate: Some("25/1s".parse().unwrap()),
        ..Overrides::default()
    };
    let s = Settings::resolve(Some(&f), &env, &flags).unwrap();
    assert_eq!(s.rate.to_string(), "25/1s");
    assert_eq!(s.host.as_deref(), Some("https://env.example"));
}

#[test]
fn outage_patience_defaults_to_15_minutes_and_each_layer_overrides_it() {
    let s = Settings::resolve(None, &env_of(&[]), &Overrides::default()).unwrap();
    assert_eq!(s.outage_patience, Duration::from_secs(900));
    let f = file("[retry]\noutage_patience = \"2m\"");
    let s = Settings::resolve(Some(&f), &env_of(&[]), &Overrides::default()).unwrap();
    assert_eq!(s.outage_patience, Duration::from_secs(120));
    let env = env_of(&[("LSQ_OUTAGE_PATIENCE", "30s")]);
    let s = Settings::resolve(Some(&f), &env, &Overrides::default()).unwrap();
    assert_eq!(s.outage_patience, Duration::from_secs(30));
    let flags = Overrides {
        outage_patience: Some(Duration::from_secs(5)),
        ..Overrides::default()
    };
    let s = Settings::resolve(Some(&f), &env, &flags).unwrap();
    assert_eq!(s.outage_patience, Duration::from_secs(5));
    let bad = file("[retry]\noutage_patience = \"soon\"");
    let err = Settings::resolve(Some(&bad), &env_of(&[]), &Overrides::default()).unwrap_err();
    assert!(err.to_string().contains("outage_patience"), "{err}");
}

#[test]
fn bad_values_name_their_source() {
    let err = Settings::resolve(
        None,
        &env_of(&[("LSQ_RATE", "fast")]),
        &Overrides::default(),
    )
    .unwrap_err()
    .to_string();
    assert!(err.starts_with("LSQ_RATE:"), "{err}");
    let f = file("[pacing]\nbatch_size = 30");
    let err = Settings::resolve(Some(&f), &env_of(&[]), &Overrides::default())
        .unwrap_err()
        .to_string();
    assert!(err.contains("30 is outside 1..=25"), "{err}");
}

#[test]
fn max_invalid_layers_and_must_be_a_percentage() {
    let f = file("[nightly]\nmax_invalid = 5.0");
    let s = Settings::resolve(Some(&f), &env_of(&[]), &Overrides::default()).unwrap();
    assert_eq!(s.max_invalid, Some(5.0));
    let env = env_of(&[("LSQ_MAX_INVALID", "2.5")]);
    let s = Settings::resolve(Some(&f), &env, &Overrides::default()).unwrap();
    assert_eq!(s.max_invalid, Some(2.5));
    let flags = Overrides {
        max_invalid: Some(0.0),
        ..Overrides::default()
    };
    let s = Settings::resolve(Some(&f), &env, &flags).unwrap();
    assert_eq!(s.max_invalid, Some(0.0));
    let flags = Overrides {
        max_invalid: Some(101.0),
        ..Overrides::default()
    };
    let err = Settings::resolve(None, &env_of(&[]), &flags)
        .unwrap_err()
        .to_string();
    assert!(err.starts_with("--max-invalid:"), "{err}");
    let err = Settings::resolve(
        None,
        &env_of(&[("LSQ_MAX_INVALID", "ten")]),
        &Overrides::default(),
    )
    .unwrap_err()
    .to_string();
    assert!(err.starts_with("LSQ_MAX_INVALID:"), "{err}");
}

#[test]
fn unknown_keys_in_the_file_are_refused() {
    let err = toml::from_str::<FileConfig>("[pacing]\nrat = \"25/5s\"").unwrap_err();
    assert!(err.to_string().contains("rat"), "{err}");
}

#[test]
fn secrets_never_show_in_debug() {
    let env = env_of(&[
        ("LSQ_ACCESS_KEY", "u$AKEY-123456"),
        ("LSQ_SECRET_KEY", "TOPSECRET-abcdef"),
    ]);
    let s = Settings::resolve(None, &env, &Overrides::default()).unwrap();
    let shown = format!("{s:?}");
    assert!(!shown.contains("TOPSECRET"), "{shown}");
    assert!(!shown.contains("AKEY-123456"), "{shown}");
    let f = file("[api]\nsecret_key = \"TOPSECRET-file\"");
    assert!(!format!("{f:?}").contains("TOPSECRET"));
}

#[test]
fn plain_http_to_a_remote_host_needs_the_allow_flag() {
    let f = file("[api]\nhost = \"http://crm.example\"");
    let err = Settings::resolve(Some(&f), &env_of(&[]), &Overrides::default())
        .unwrap_err()
        .to_string();
    assert!(err.contains("--allow-insecure-http"), "{err}");
    let allowed = file("[api]\nhost = \"http://crm.example\"\nallow_insecure_http = true");
    assert!(Settings::resolve(Some(&allowed), &env_of(&[]), &Overrides::default()).is_ok());
    let flags = Overrides {
        allow_insecure_http: Some(true),
        ..Overrides::default()
    };
    assert!(Settings::resolve(Some(&f), &env_of(&[]), &flags).is_ok());
    let env = env_of(&[("LSQ_ALLOW_INSECURE_HTTP", "true")]);
    assert!(Settings::resolve(Some(&f), &env, &Overrides::default()).is_ok());
}

#[cfg(unix)]
#[test]
fn a_key_file_readable_by_others_is_warned_about() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("keys.toml");
    std::fs::write(&path, "[api]\nsecret_key = \"s\"").unwrap();
    let with_keys = FileConfig::load(&path).unwrap();
    let mode = |m| std::fs::set_permissions(&path, std::fs::Permissions::from_mode(m)).unwrap();
    mode(0o644);
    let warning = key_file_warning(&path, &with_keys).expect("warned");
    assert!(warning.contains(&path.display().to_string()), "{warning}");
    assert!(warning.contains("chmod 600"), "{warning}");
    mode(0o640);
    assert!(key_file_warning(&path, &with_keys).is_some());
    mode(0o600);
    assert_eq!(key_file_warning(&path, &with_keys), None);
    mode(0o644);
    assert_eq!(key_file_warning(&path, &FileConfig::default()), None);
}

#[test]
fn input_settings_layer_file_then_env_then_flags() {
    let f = file(
        "[input]\ntimezone = \"Asia/Kolkata\"\nsheet = \"Calls\"\n[mapping]\n\"Lead ID\" = \"RelatedProspectId\"\n\"Type\" = \"ActivityEvent\"\n[constants]\nActivityNote = \"from file\"\nmx_Custom_3 = 7",
    );
    let s = Settings::resolve(Some(&f), &env_of(&[]), &Overrides::default()).unwrap();
    assert_eq!(s.input.sheet.as_deref(), Some("Calls"));
    assert_eq!(
        s.input.dates.zone.map(|z| z.name().to_string()).as_deref(),
        Some("Asia/Kolkata")
    );
    let names = |s: &Settings| {
        s.input
            .columns
            .field_names(&["Lead ID".to_string(), "Type".to_string()])
            .unwrap()
    };
    assert_eq!(names(&s), vec!["RelatedProspectId", "ActivityEvent"]);

    let env = env_of(&[("LSQ_TIMEZONE", "Europe/London")]);
    let flags = Overrides {
        input: InputOverrides {
            map: vec!["Type=mx_Custom_2".into()],
            set: vec!["ActivityNote=from flag".into(), "ActivityEvent=201".into()],
            ..InputOverrides::default()
        },
        ..Overrides::default()
    };
    let s = Settings::resolve(Some(&f), &env, &flags).unwrap();
    assert_eq!(
        s.input.dates.zone.map(|z| z.name().to_string()).as_deref(),
        Some("Europe/London")
    );
    assert_eq!(names(&s), vec!["RelatedProspectId", "mx_Custom_2"]);
    assert_eq!(
        s.input.columns.constants(),
        &[
            ("mx_Custom_3".to_string(), "7".to_string()),
            ("ActivityNote".to_string(), "from flag".to_string()),
            ("ActivityEvent".to_string(), "201".to_string())
        ]
    );
}

#[test]
fn bad_input_settings_name_their_source() {
    let f = file("[mapping]\n\"Lead\" = \"LeadGuid\"");
    let err = Settings::resolve(Some(&f), &env_of(&[]), &Overrides::default())
        .unwrap_err()
        .to_string();
    assert!(
        err.starts_with("config file [mapping]: \"LeadGuid\" is not an API field"),
        "{err}"
    );
    let flags = |input: InputOverrides| Overrides {
        input,
        ..Overrides::default()
    };
    let cases = [
        (
            InputOverrides {
                timezone: Some("India".into()),
                ..InputOverrides::default()
            },
            "--timezone: \"India\" is not an IANA time zone",
        ),
        (
            InputOverrides {
                date_format: Some("dd.MM".into()),
                ..InputOverrides::default()
            },
            "--date-format: date format \"dd.MM\" needs a year",
        ),
        (
            InputOverrides {
                set: vec!["ActivityEvent".into()],
                ..InputOverrides::default()
            },
            "--set: \"ActivityEvent\" is not NAME=VALUE",
        ),
    ];
    for (input, expected) in cases {
        let err = Settings::resolve(None, &env_of(&[]), &flags(input))
            .unwrap_err()
            .to_string();
        assert!(err.starts_with(expected), "{err}");
    }
}

#[test]
fn the_shipped_config_file_parses_and_matches_the_defaults() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(DEFAULT_CONFIG_PATH);
    let f = FileConfig::load(&path).unwrap();
    let s = Settings::resolve(Some(&f), &env_of(&[]), &Overrides::default()).unwrap();
    let d = Settings::default();
    assert_eq!(s.rate, d.rate);
    assert_eq!(s.max_attempts, d.max_attempts);
    assert_eq!(s.concurrency, d.concurrency);
    assert_eq!(s.request_timeout, d.request_timeout);
    assert_eq!(s.input_limits, d.input_limits);
    assert_eq!(s.excel_safe, d.excel_safe);
}

#[test]
fn input_limits_and_excel_safe_come_from_the_file_and_the_flag() {
    let f = file("[input]\nmax_cell_bytes = 10\nmax_columns = 3\n[report]\nexcel_safe = true");
    let s = Settings::resolve(Some(&f), &env_of(&[]), &Overrides::default()).unwrap();
    assert_eq!(s.input_limits.max_cell_bytes, 10);
    assert_eq!(s.input_limits.max_columns, 3);
    assert_eq!(
        s.input_limits.max_row_bytes,
        InputLimits::default().max_row_bytes
    );
    assert!(s.excel_safe);
    let flags = Overrides {
        excel_safe: Some(true),
        ..Overrides::default()
    };
    assert!(
        Settings::resolve(None, &env_of(&[]), &flags)
            .unwrap()
            .excel_safe
    );
    let f = file("[input]\nmax_row_bytes = 0");
    assert!(Settings::resolve(Some(&f), &env_of(&[]), &Overrides::default()).is_err());
}
