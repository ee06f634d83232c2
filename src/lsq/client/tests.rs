//! Unit tests of `client`.

use super::*;

fn reply(status: u16, body: &str) -> Reply {
    Reply {
        status,
        retry_after: None,
        body: bytes::Bytes::from(body.to_string()),
    }
}

fn verdict(status: u16, body: &str) -> Verdict<BulkResponse> {
    classify(&reply(status, body))
}

const RATE_BODY: &str = r#"{"Status":"Error","ExceptionType":"MXAPIRateLimitExceededException","ExceptionMessage":"API calls exceeded the limit of 10 in 5 second(s)"}"#;

#[test]
fn classification_table() {
    let ok = r#"{"Response":[{"ProspectActivityId":"a","RowNumber":1,"ActivityCreated":true}]}"#;
    let mx = r#"{"Status":"Error","ExceptionType":"MXInvalidInputException","ExceptionMessage":"Invalid lead"}"#;
    let cases: Vec<(u16, &str, &str)> = vec![
        (200, ok, "success"),
        (
            429,
            "API calls exceeded the limit of 25 in 5 second(s)",
            "rate",
        ),
        (429, RATE_BODY, "rate"),
        (200, RATE_BODY, "rate"),
        (500, mx, "data"),
        (200, mx, "data"),
        (500, "<html>Internal Server Error</html>", "unknown"),
        (502, "", "unknown"),
        (
            503,
            r#"{"Status":"Error","ExceptionMessage":"busy"}"#,
            "unknown",
        ),
        (
            401,
            r#"{"Status":"Error","ExceptionMessage":"Invalid keys"}"#,
            "unauthorized",
        ),
        (401, "", "unauthorized"),
        (404, "Not Found", "fatal"),
        (400, "bad json", "rejected"),
        (200, "{\"Resp", "unknown"),
        (200, "not json", "unknown"),
        // The wrong answers of issue 7: not the shape expected, or an error in a 200.
        (200, "{}", "unknown"),
        (200, "[]", "unknown"),
        (200, r#"{"Response":null}"#, "unknown"),
        (200, "", "unknown"),
        (
            200,
            r#"{"Status":"Error","ExceptionMessage":"busy"}"#,
            "data",
        ),
        (200, r#"{"Status":"Error"}"#, "data"),
    ];
    for (status, body, expected) in cases {
        let got = match verdict(status, body) {
            Verdict::Success(_) => "success",
            Verdict::RateLimited { .. } => "rate",
            Verdict::Transient(_) => "transient",
            Verdict::Unknown(_) => "unknown",
            Verdict::DataError(_) => "data",
            Verdict::Unauthorized(_) => "unauthorized",
            Verdict::Fatal(_) => "fatal",
            Verdict::Rejected(_) => "rejected",
        };
        assert_eq!(got, expected, "HTTP {status} {body}");
    }
}

#[test]
fn rate_limit_carries_the_real_limit_and_retry_after() {
    let mut r = reply(200, RATE_BODY);
    r.retry_after = Some(Duration::from_secs(2));
    match classify::<BulkResponse>(&r) {
        Verdict::RateLimited {
            retry_after, limit, ..
        } => {
            assert_eq!(retry_after, Some(Duration::from_secs(2)));
            assert_eq!(limit.map(|q| q.to_string()).as_deref(), Some("10/5s"));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn parse_limit_reads_the_vendor_message() {
    assert_eq!(
        parse_limit("API calls exceeded the limit of 25 in 5 second(s)").map(|q| q.to_string()),
        Some("25/5s".into())
    );
    assert_eq!(
        parse_limit("API calls exceeded the limit of 3 in 0.5 second(s)").map(|q| q.to_string()),
        Some("3/500ms".into())
    );
    assert_eq!(parse_limit("slow down"), None);
    assert_eq!(parse_limit("limit of 0 in 5 second(s)"), None);
}

#[test]
fn data_errors_keep_the_server_message() {
    let mx = r#"{"Status":"Error","ExceptionType":"MXInvalidInputException","ExceptionMessage":"Row 3: bad date"}"#;
    assert_eq!(
        verdict(500, mx),
        Verdict::DataError("MXInvalidInputException: Row 3: bad date".into())
    );
}

#[test]
fn row_results_map_by_row_number_and_never_create_without_an_id() {
    let body = r#"{"Response":[
            {"ProspectActivityId":"id-2","RowNumber":2,"ActivityCreated":true},
            {"ProspectActivityId":"id-1","RowNumber":1,"ActivityCreated":true},
            {"RowNumber":3,"ActivityCreated":false,"ExceptionMessage":"Invalid lead"},
            {"RowNumber":4,"ActivityCreated":true},
            {"ProspectActivityId":"a","RowNumber":5,"ActivityCreated":true},
            {"ProspectActivityId":"b","RowNumber":5,"ActivityCreated":true},
            {"ProspectActivityId":"x","RowNumber":99,"ActivityCreated":true}
        ]}"#;
    let response: BulkResponse = serde_json::from_str(body).unwrap();
    let results = bulk_row_results(6, &response);
    assert_eq!(results[0], RowResult::Created("id-1".into()));
    assert_eq!(results[1], RowResult::Created("id-2".into()));
    assert_eq!(results[2], RowResult::Rejected("Invalid lead".into()));
    assert!(matches!(&results[3], RowResult::Unknown(m) if m.contains("no ProspectActivityId")));
    assert!(matches!(&results[4], RowResult::Unknown(m) if m.contains("more than one")));
    assert!(matches!(&results[5], RowResult::Unknown(m) if m.contains("no result")));
}

#[test]
fn an_answer_without_results_leaves_every_row_in_doubt() {
    let empty: BulkResponse = serde_json::from_str(r#"{"Response":[]}"#).unwrap();
    let results = bulk_row_results(3, &empty);
    assert_eq!(results.len(), 3);
    assert!(results.iter().all(|r| matches!(r, RowResult::Unknown(_))));
}

#[test]
fn host_rules() {
    assert!(check_host("https://api-in21.leadsquared.com", false).is_ok());
    assert!(check_host("http://127.0.0.1:8080", false).is_ok());
    assert!(check_host("http://localhost:8080/", false).is_ok());
    assert!(matches!(
        check_host("http://api.leadsquared.com", false),
        Err(HostError::Insecure(_))
    ));
    assert!(check_host("http://api.leadsquared.com", true).is_ok());
    assert!(matches!(
        check_host("api.leadsquared.com", false),
        Err(HostError::NotAUrl(_))
    ));
    let err = check_host("https://user:hunter2@api.leadsquared.com", false)
        .unwrap_err()
        .to_string();
    assert!(!err.contains("hunter2"), "{err}");
    assert!(matches!(
        check_host("https://api.leadsquared.com/v2?secretKey=x", false),
        Err(HostError::Extra(_))
    ));
}

#[tokio::test]
async fn connection_errors_do_not_carry_the_url() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    let client = LsqClient::new(&ClientConfig {
        host: format!("http://127.0.0.1:{port}"),
        access_key: Secret::new("AK-debug-probe"),
        secret_key: Secret::new("SK-debug-probe"),
        connect_timeout: Duration::from_secs(2),
        request_timeout: Duration::from_secs(2),
        max_idle_connections: 1,
        allow_insecure_http: false,
    })
    .unwrap();
    let shown = format!("{client:?}");
    assert!(!shown.contains("debug-probe"), "{shown}");
    let err = client.post_bulk(&[]).await.unwrap_err();
    assert!(matches!(err, CallError::Connect(_)), "{err:?}");
    let text = err.to_string();
    assert!(
        !text.contains("127.0.0.1") && !text.contains("ProspectActivity"),
        "{text}"
    );
}
