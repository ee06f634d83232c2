//! LeadSquared's wire format: paths, header names and the JSON bodies of the endpoints lsq-sync
//! uses, as typed serde structs.
//!
//! Both sides of the wire use these types: the client serializes requests and deserializes
//! responses, the simulator does the reverse. Nothing here decides what a response *means*; that
//! is the client's classifier (`client::classify`), which the simulator never uses.
//! Field names follow the vendor pages in `shared/leadsquared-api/` exactly (PascalCase).

use serde::{Deserialize, Serialize};

/// Post up to [`MAX_BATCH`] activities, each naming its lead by id.
pub const PATH_BULK_ADD_BY_LEAD_ID: &str =
    "/v2/ProspectActivity.svc/Bulk/CustomActivity/Add/ByLeadId";
/// Post up to [`MAX_BATCH`] activities, each naming its lead by the value of a unique lead
/// field; the field goes in the [`QUERY_SEARCH_BY`] query parameter.
pub(crate) const PATH_BULK_ADD_BY_LEAD_FIELD: &str =
    "/v2/ProspectActivity.svc/Bulk/CustomActivity/Add/ByLeadField";
/// Query parameter of [`PATH_BULK_ADD_BY_LEAD_FIELD`]: the lead field searched
/// (`EmailAddress`, `Phone`, `Mobile`, ...).
pub(crate) const QUERY_SEARCH_BY: &str = "searchBy";
/// Update up to [`MAX_BATCH`] activities' notes and custom fields, each named by its
/// `ProspectActivityId` (vendor page "Update Activities in Bulk").
pub const PATH_BULK_UPDATE: &str = "/v2/ProspectActivity.svc/Bulk/CustomActivity/Update";
/// Get a lead's activities, paged; the lead goes in the `leadId` query parameter.
pub const PATH_RETRIEVE: &str = "/v2/ProspectActivity.svc/Retrieve";
/// Every lead's activities of one custom type, paged by `PageIndex` (from 1) and `PageSize`,
/// selected by modified date.
pub const PATH_RETRIEVE_BY_EVENT: &str =
    "/v2/ProspectActivity.svc/CustomActivity/RetrieveByActivityEvent";
/// Queue the deletion of a lead's custom activities of some codes.
pub(crate) const PATH_DELETE_ACTIVITIES: &str = "/v2/ProspectActivity.svc/DeleteActivities";
/// Queue the deletion of a lead's owner change history.
pub(crate) const PATH_DELETE_OWNER_HISTORY: &str =
    "/v2/LeadManagement.svc/DeleteUserAssignmentChangeHistory";
/// List the account's activity types.
pub(crate) const PATH_ACTIVITY_TYPES: &str = "/v2/ProspectActivity.svc/ActivityTypes.Get";
/// Who owns these keys, and which regional host serves the account.
pub const PATH_USER_BY_ACCESS_KEY: &str = "/v2/Authentication.svc/UserByAccessKey.Get";

/// Header carrying the access key (HTTP header names are case-insensitive; the vendor writes
/// `x-LSQ-AccessKey`).
pub(crate) const HEADER_ACCESS_KEY: &str = "x-lsq-accesskey";
/// Header carrying the secret key.
pub(crate) const HEADER_SECRET_KEY: &str = "x-lsq-secretkey";
/// Query parameter alternative to [`HEADER_ACCESS_KEY`]; the simulator accepts it, the client
/// never sends it (a key in a URL ends up in logs).
pub(crate) const QUERY_ACCESS_KEY: &str = "accessKey";
/// Query parameter alternative to [`HEADER_SECRET_KEY`].
pub(crate) const QUERY_SECRET_KEY: &str = "secretKey";

/// The bulk endpoint takes at most this many activities per call.
pub(crate) const MAX_BATCH: usize = 25;

/// Highest custom field number the API defines (`mx_Custom_1` .. `mx_Custom_50`).
pub(crate) const MAX_CUSTOM_FIELD: u32 = 50;
/// Every date the API reads or writes: UTC, `yyyy-MM-dd HH:mm:ss`.
pub(crate) const DATE_TIME_FORMAT: &str = "%Y-%m-%d %H:%M:%S";
/// `ExceptionType` of the rate-limit error some accounts receive with HTTP 200.
pub(crate) const RATE_LIMIT_EXCEPTION: &str = "MXAPIRateLimitExceededException";

/// One activity in the bulk post body.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ActivityItem {
    /// The lead's id (a GUID). Under `--match-by` it holds the value of the lead field searched
    /// by instead (an e-mail address, a phone number), which the ByLeadField post sends as
    /// [`ByFieldItem::search_by_value`]; so the ledger's fingerprints and lead keys need no
    /// second field. Left out of the JSON when empty, as in a [`ByFieldItem`].
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub related_prospect_id: String,
    /// The activity type's code.
    pub activity_event: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub activity_note: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub activity_owner_email: Option<String>,
    /// UTC `yyyy-MM-dd HH:mm:ss`; the server uses "now" when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub activity_date_time: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub fields: Vec<FieldValue>,
}

/// One activity in the ByLeadField bulk post body: the lead is named by `SearchByValue`, and
/// the rest is an [`ActivityItem`] with an empty `RelatedProspectId` (left out of the JSON).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct ByFieldItem {
    /// The value of the `searchBy` lead field that names the lead.
    pub search_by_value: String,
    #[serde(flatten)]
    pub activity: ActivityItem,
}

impl ByFieldItem {
    /// The ByLeadField form of an item whose `related_prospect_id` holds the search value.
    pub(crate) fn from_item(item: &ActivityItem) -> ByFieldItem {
        ByFieldItem {
            search_by_value: item.related_prospect_id.clone(),
            activity: ActivityItem {
                related_prospect_id: String::new(),
                ..item.clone()
            },
        }
    }

    /// The same activity addressed to the lead with id `lead_id`.
    pub(crate) fn for_lead(self, lead_id: String) -> ActivityItem {
        ActivityItem {
            related_prospect_id: lead_id,
            ..self.activity
        }
    }
}

/// A custom field of an activity, `mx_Custom_1` .. `mx_Custom_50`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct FieldValue {
    pub schema_name: String,
    pub value: String,
}

/// One activity in the Bulk Update body: the activity by id, and its new note and fields. The
/// vendor documents no way to move an activity (lead, code, date, owner), so there is none here.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct UpdateItem {
    pub prospect_activity_id: String,
    /// Always sent, empty to clear the note.
    #[serde(default)]
    pub activity_note: String,
    /// The fields to set; a field to clear is sent with an empty value.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub fields: Vec<FieldValue>,
}

/// One item of a per-row Bulk Update answer (the shape of the bulk post's, which the vendor's
/// page does not show for updates): read leniently, every part optional.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct UpdateResultItem {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prospect_activity_id: Option<String>,
    /// 1-based position in the request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub row_number: Option<u32>,
    /// `true` when the activity was updated; absent is read as not said.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub activity_updated: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exception_message: Option<String>,
}

/// The bulk post's answer: one item per posted activity.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct BulkResponse {
    pub response: Vec<BulkResultItem>,
}

/// The outcome of one posted activity.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct BulkResultItem {
    /// Set when the activity was created.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prospect_activity_id: Option<String>,
    /// 1-based position of the activity in the request array. Optional here so that a server
    /// that leaves it out is reported as a broken response, not as a parse failure of the whole
    /// body.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub row_number: Option<u32>,
    #[serde(default)]
    pub activity_created: bool,
    /// Why the row was rejected, when it was.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exception_message: Option<String>,
}

/// The error body of every endpoint, whatever the HTTP status.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct ErrorBody {
    /// `"Error"`; any response saying so is an error, even with HTTP 200.
    pub status: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exception_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exception_message: Option<String>,
}

/// Body of Get Activities of a Lead. An empty body (`{}`) asks for every type, first page.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct RetrieveRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parameter: Option<RetrieveParameter>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub paging: Option<Paging>,
}

/// Filters of Get Activities of a Lead.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct RetrieveParameter {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub activity_event: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from_date: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to_date: Option<String>,
}

/// Paging of Get Activities. The vendor documents both as strings; what `Offset` counts (0-based
/// page, 1-based page, or rows) is unconfirmed, see `shared/leadsquared-api/README.md`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct Paging {
    #[serde(with = "string_or_number")]
    pub offset: u64,
    #[serde(with = "string_or_number")]
    pub row_count: u64,
}

/// Answer of Get Activities of a Lead.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct RetrieveResponse {
    /// How many activities match in all, across pages.
    pub record_count: u64,
    pub prospect_activities: Vec<ProspectActivity>,
}

/// One activity as Get Activities returns it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct ProspectActivity {
    pub id: String,
    pub event_code: i64,
    #[serde(default)]
    pub event_name: String,
    #[serde(default)]
    pub activity_score: i64,
    /// The activity's own date-time (UTC), i.e. the `ActivityDateTime` it was posted with.
    pub created_on: String,
    #[serde(default)]
    pub activity_type: i64,
    #[serde(default)]
    pub is_email_type: bool,
    #[serde(default, rename = "Type")]
    pub direction: String,
    #[serde(default)]
    pub session_id: String,
    #[serde(default)]
    pub related_prospect_id: String,
    /// Common properties; the note is `NotableEventDescription`.
    #[serde(default)]
    pub data: Vec<KeyValue>,
    /// Custom field values (`mx_Custom_<n>`), `Status` and `Owner`.
    #[serde(default)]
    pub activity_fields: serde_json::Map<String, serde_json::Value>,
    #[serde(default)]
    pub modified_on: String,
}

/// A `{Key, Value}` pair of [`ProspectActivity::data`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct KeyValue {
    pub key: String,
    pub value: String,
}

/// `Data` key holding an activity's note.
pub(crate) const DATA_KEY_NOTE: &str = "NotableEventDescription";

/// Body of Get Activities by Activity Event: one custom type, every lead.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct ByEventRequest {
    pub parameter: ByEventParameter,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub paging: Option<PageIndexPaging>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sorting: Option<Sorting>,
}

/// Filters of Get Activities by Activity Event. `FromDate`/`ToDate` select by the activity's
/// **modified** date (the vendor's default), UTC `yyyy-MM-dd HH:mm:ss`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct ByEventParameter {
    /// The activity type's code; a number in the vendor's example, read from a string too.
    #[serde(deserialize_with = "lenient::i64")]
    pub activity_event: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from_date: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to_date: Option<String>,
    /// Leave fields without a value out of each item (`true`), or list them as `""`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remove_empty_value: Option<bool>,
}

/// Paging of Get Activities by Activity Event: `PageIndex` counts pages from 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct PageIndexPaging {
    #[serde(deserialize_with = "lenient::u64")]
    pub page_index: u64,
    #[serde(deserialize_with = "lenient::u64")]
    pub page_size: u64,
}

/// Order of Get Activities by Activity Event's listing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct Sorting {
    /// `ModifiedOn` or `CreatedOn`.
    pub column_name: String,
    /// 1: newest first; 0: oldest first.
    #[serde(deserialize_with = "lenient::u64")]
    pub direction: u64,
}

/// Answer of Get Activities by Activity Event. The items are flat maps of strings (custom
/// fields at the top level), read leniently by `lsq::by_event`; the simulator writes them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct ByEventResponse {
    /// How many activities match in all, across pages; a string is read too.
    #[serde(deserialize_with = "lenient::u64")]
    pub record_count: u64,
    /// This page's items; `null` or missing reads as none.
    #[serde(default, deserialize_with = "lenient::list")]
    pub list: Vec<serde_json::Map<String, serde_json::Value>>,
}

/// Schema name of an activity's note in flat listings (Get Activities by Activity Event).
pub(crate) const FIELD_NOTE: &str = "ActivityEvent_Note";

/// Body of Delete Activities of a Lead.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct DeleteActivitiesRequest {
    pub prospect_id: String,
    /// Activity codes, as strings (as the vendor's example writes them).
    pub activity_event_list: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from_date: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to_date: Option<String>,
    #[serde(
        default,
        rename = "StatusWebhookURL",
        skip_serializing_if = "Option::is_none"
    )]
    pub status_webhook_url: Option<String>,
}

/// Body of Delete a Lead's Owner Change History.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct DeleteOwnerHistoryRequest {
    pub prospect_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from_date: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to_date: Option<String>,
    #[serde(
        default,
        rename = "StatusWebhookURL",
        skip_serializing_if = "Option::is_none"
    )]
    pub status_webhook_url: Option<String>,
}

/// Answer of both delete endpoints: the deletion is only queued.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct QueuedResponse {
    /// `"Success"`.
    pub status: String,
    pub message: QueuedMessage,
}

/// The nested `Message` of [`QueuedResponse`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct QueuedMessage {
    pub message: String,
}

/// One entry of ActivityTypes.Get.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ActivityType {
    pub activity_event: i64,
    pub display_name: String,
    /// Custom field schema names this type defines (`mx_Custom_1`, ...).
    #[serde(default)]
    pub fields: Vec<String>,
}

/// Answer of UserByAccessKey.Get, reduced to what lsq-sync uses.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct UserByAccessKey {
    pub id: String,
    #[serde(default)]
    pub email_address: String,
    #[serde(default)]
    pub org_id: String,
    /// Names the account's API host under the `api` key.
    #[serde(default, rename = "LSQCommonServiceURLs")]
    pub lsq_common_service_urls: serde_json::Map<String, serde_json::Value>,
}

/// Deserializers that take a number written as a JSON number or as a string, and a list that
/// may be `null`: what a server writes where the vendor's examples disagree with each other.
mod lenient {
    use serde::{Deserialize, Deserializer, de::Error};

    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Either {
        Number(i64),
        Unsigned(u64),
        Text(String),
    }

    pub(super) fn i64<'de, D: Deserializer<'de>>(deserializer: D) -> Result<i64, D::Error> {
        match Either::deserialize(deserializer)? {
            Either::Number(n) => Ok(n),
            Either::Unsigned(n) => {
                i64::try_from(n).map_err(|_| D::Error::custom(format!("too large: {n}")))
            }
            Either::Text(text) => text
                .trim()
                .parse()
                .map_err(|_| D::Error::custom(format!("not a whole number: {text:?}"))),
        }
    }

    pub(super) fn u64<'de, D: Deserializer<'de>>(deserializer: D) -> Result<u64, D::Error> {
        let n = i64(deserializer)?;
        u64::try_from(n).map_err(|_| D::Error::custom(format!("negative: {n}")))
    }

    pub(super) fn list<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
        deserializer: D,
    ) -> Result<Vec<T>, D::Error> {
        Ok(Option::<Vec<T>>::deserialize(deserializer)?.unwrap_or_default())
    }
}

/// `Offset` and `RowCount` are documented as strings but numbers are common too.
mod string_or_number {
    use serde::{Deserialize, Deserializer, Serializer, de::Error};

    pub(super) fn serialize<S: Serializer>(value: &u64, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&value.to_string())
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<u64, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Either {
            Text(String),
            Number(u64),
        }
        match Either::deserialize(deserializer)? {
            Either::Number(n) => Ok(n),
            Either::Text(text) => text
                .trim()
                .parse()
                .map_err(|_| D::Error::custom(format!("not a whole number: {text:?}"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn activity_item_uses_vendor_field_names_and_omits_empty_parts() {
        let item = ActivityItem {
            related_prospect_id: "2bf6a491-c144-4ac9-90f9-f52b6fc44413".into(),
            activity_event: 320,
            activity_note: Some("Add/ByLeadId".into()),
            activity_owner_email: None,
            activity_date_time: None,
            fields: vec![FieldValue {
                schema_name: "mx_Custom_1".into(),
                value: "First".into(),
            }],
        };
        let json = serde_json::to_value(&item).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "RelatedProspectId": "2bf6a491-c144-4ac9-90f9-f52b6fc44413",
                "ActivityEvent": 320,
                "ActivityNote": "Add/ByLeadId",
                "Fields": [{"SchemaName": "mx_Custom_1", "Value": "First"}]
            })
        );
    }

    #[test]
    fn by_field_items_name_the_lead_by_search_by_value() {
        let item = ActivityItem {
            related_prospect_id: "lead3@example.com".into(),
            activity_event: 201,
            activity_note: None,
            activity_owner_email: None,
            activity_date_time: Some("2024-03-10 04:00:00".into()),
            fields: vec![],
        };
        let json = serde_json::to_value(ByFieldItem::from_item(&item)).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "SearchByValue": "lead3@example.com",
                "ActivityEvent": 201,
                "ActivityDateTime": "2024-03-10 04:00:00"
            })
        );
    }

    #[test]
    fn parses_the_vendor_bulk_response() {
        let body = r#"{"Response":[{"ProspectActivityId":"6e2a3c76-9e57-4dd6-8bf1-660960336d6e","RowNumber":1,"ActivityCreated":true},{"RowNumber":2,"ActivityCreated":false,"ExceptionMessage":"Invalid lead"}]}"#;
        let parsed: BulkResponse = serde_json::from_str(body).unwrap();
        assert_eq!(parsed.response.len(), 2);
        assert_eq!(parsed.response[0].row_number, Some(1));
        assert!(parsed.response[0].activity_created);
        assert_eq!(
            parsed.response[1].exception_message.as_deref(),
            Some("Invalid lead")
        );
    }

    #[test]
    fn paging_accepts_strings_and_numbers_and_writes_strings() {
        let a: Paging = serde_json::from_str(r#"{"Offset":"1","RowCount":"50"}"#).unwrap();
        let b: Paging = serde_json::from_str(r#"{"Offset":1,"RowCount":50}"#).unwrap();
        assert_eq!(a, b);
        assert_eq!(
            serde_json::to_string(&a).unwrap(),
            r#"{"Offset":"1","RowCount":"50"}"#
        );
    }

    #[test]
    fn delete_request_spells_the_webhook_as_the_vendor_does() {
        let req = DeleteActivitiesRequest {
            prospect_id: "x".into(),
            activity_event_list: vec!["163".into()],
            from_date: None,
            to_date: None,
            status_webhook_url: Some("https://myurl".into()),
        };
        let json = serde_json::to_string(&req).unwrap();
        assert!(
            json.contains(r#""StatusWebhookURL":"https://myurl""#),
            "{json}"
        );
    }
}
