//! The OpenAPI schemas of the JSON the handlers walk by hand (`features`, `activity`, the
//! `/v2` tensors and parameters, request timestamps).
//!
//! Those bodies are read as [`serde_json::Value`]s field by field, so that every error
//! names the field at fault; nothing derives their schema from a Rust type. Without these
//! the document says `object` where the server takes numbers, and a generated client
//! refuses the server's own answers. The readers they describe stay the truth: the
//! tests of the document (`serve/tests/openapi.rs`) check the names against the readers
//! ([`crate::features::online::ACTIVITY_FIELDS`]), requests the server accepts (every
//! timestamp form, nested and undefined tensor data) against the document, and every
//! answer of the server, errors included, against the schema of its status.

use utoipa::openapi::schema::{
    AnyOfBuilder, ArrayBuilder, KnownFormat, ObjectBuilder, OneOfBuilder, Schema, SchemaFormat,
    SchemaType, Type,
};
use utoipa::openapi::RefOr;
use utoipa::{PartialSchema, ToSchema};

use crate::scoring::MAX_FEATURE_MAGNITUDE;

/// The pattern of the timestamp forms that are not RFC 3339: `YYYY-MM-DD HH:MM:SS` and
/// the same with `T` and no offset (both UTC), fractions (up to nanoseconds) allowed.
/// Only real dates and times match (February 29 in leap years only), as
/// [`crate::time::parse_ts`] reads them: a pattern that let `0000-00-00T00:00:00` through
/// described requests the server refuses.
pub(crate) const NAIVE_TIMESTAMP: &str = concat!(
    r"^(?:\d{4}-(?:(?:0[1-9]|1[0-2])-(?:0[1-9]|1\d|2[0-8])|(?:0[13-9]|1[0-2])-(?:29|30)",
    r"|(?:0[13578]|1[02])-31)",
    r"|(?:\d{2}(?:0[48]|[2468][048]|[13579][26])|(?:[02468][048]|[13579][26])00)-02-29)",
    r"[ T](?:[01]\d|2[0-3]):[0-5]\d:[0-5]\d(?:\.\d{1,9})?$"
);

fn types(ts: impl IntoIterator<Item = Type>) -> SchemaType {
    ts.into_iter().collect()
}

fn string(format: Option<KnownFormat>) -> ObjectBuilder {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .format(format.map(SchemaFormat::KnownFormat))
}

/// A timestamp as [`crate::time::parse_ts`] reads it: RFC 3339 (`format: date-time`),
/// a date (`format: date`, midnight UTC) or `YYYY-MM-DD HH:MM:SS` (UTC); `null` too
/// when `nullable`.
fn timestamp_input(description: &str, nullable: bool) -> Schema {
    let mut any = AnyOfBuilder::new()
        .item(string(Some(KnownFormat::DateTime)))
        .item(string(Some(KnownFormat::Date)))
        .item(string(None).pattern(Some(NAIVE_TIMESTAMP)));
    if nullable {
        any = any.item(ObjectBuilder::new().schema_type(Type::Null));
    }
    any.description(Some(description)).into()
}

/// `ScoreRequest.as_of`.
pub fn as_of() -> Schema {
    timestamp_input(
        &format!(
            "The instant to score at: RFC 3339, `YYYY-MM-DD HH:MM:SS` (UTC) or `YYYY-MM-DD` \
             (midnight UTC). Default (absent or null): now. At most {} minutes ahead of the \
             server's clock: a later one is refused (422), since it would make the \
             customer's later scores stale and silence its alerts. Used by the `activity` \
             form and for the alert state.",
            super::routes::MAX_AS_OF_SKEW_SECS / 60
        ),
        true,
    )
}

/// `ScoreRequest.features`: what [`crate::scoring::Scorer::parse_features`] accepts.
pub fn features() -> Schema {
    ObjectBuilder::new()
        .schema_type(types([Type::Object, Type::Null]))
        .additional_properties(Some(
            ObjectBuilder::new()
                .schema_type(types([Type::Number, Type::Boolean, Type::Null]))
                .description(Some(
                    "A finite JSON number; a boolean for a 0/1 (`binary`) feature; null (or \
                     absence) only for a feature marked `may_be_missing`",
                )),
        ))
        .description(Some(
            "The model's features by name (see `GET /v1/models/{name}`): every feature is \
             required except those marked `may_be_missing`, which may be absent or null. \
             Unknown names are ignored and listed in `ignored_fields`.",
        ))
        .into()
}

// Read by `crate::features::online::OwnedActivity::parse`; the doc comment below is the
// document's description, for a caller.
/// Raw activity of one customer: features are computed from it as of `as_of` by the same
/// code as training. Lists may be absent or null (no rows); unknown keys are ignored and
/// listed in `ignored_fields`; rows at or after `as_of` are not used. Timestamps: RFC
/// 3339, `YYYY-MM-DD HH:MM:SS` (UTC) or `YYYY-MM-DD`.
#[derive(Debug, Clone, ToSchema)]
pub struct Activity {
    /// The customer's `customers` row.
    pub customer: ActivityCustomer,
    /// Logins: each a timestamp, or an object `{"at": timestamp}`.
    #[schema(schema_with = logins)]
    pub logins: Option<Vec<String>>,
    /// Support tickets.
    pub tickets: Option<Vec<ActivityTicket>>,
    /// Orders.
    pub orders: Option<Vec<ActivityOrder>>,
    /// Product events.
    pub events: Option<Vec<ActivityEvent>>,
}

/// The customer's row: `signup_at`, and the attributes the model uses (the categorical ones
/// as strings, the numeric ones as numbers; see `features.categorical` / `numeric` of
/// `GET /v1/models/{name}`); other keys are not read.
#[derive(Debug, Clone)]
pub struct ActivityCustomer;

impl PartialSchema for ActivityCustomer {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::Object)
            .property(
                "signup_at",
                timestamp_input("When the customer signed up", false),
            )
            .required("signup_at")
            .additional_properties(Some(
                ObjectBuilder::new()
                    .schema_type(types([Type::String, Type::Number, Type::Null]))
                    .description(Some(
                        "An attribute: a string for a categorical attribute, a finite number \
                         for a numeric one, null when unknown",
                    )),
            ))
            .description(Some(
                "The customer's row: `signup_at` and the attributes the model uses \
                 (categorical ones as strings, numeric ones as numbers)",
            ))
            .into()
    }
}

impl ToSchema for ActivityCustomer {}

/// `Activity.logins`: a list (or null) of timestamps or `{"at": timestamp}` objects.
fn logins() -> Schema {
    let item = OneOfBuilder::new()
        .item(timestamp_input("When the customer logged in", false))
        .item(
            ObjectBuilder::new()
                .schema_type(Type::Object)
                .property("at", timestamp_input("When the customer logged in", false))
                .required("at"),
        );
    ArrayBuilder::new()
        .schema_type(types([Type::Array, Type::Null]))
        .items(item)
        .description(Some(
            "Logins: each a timestamp, or an object `{\"at\": timestamp}`",
        ))
        .into()
}

fn opened_at() -> Schema {
    timestamp_input("When the ticket was opened", false)
}

fn closed_at() -> Schema {
    timestamp_input("When it was closed; null or absent while open", true)
}

fn at() -> Schema {
    timestamp_input("When it happened", false)
}

/// A support ticket.
#[derive(Debug, Clone, ToSchema)]
pub struct ActivityTicket {
    #[schema(schema_with = opened_at)]
    pub opened_at: String,
    #[schema(schema_with = closed_at)]
    pub closed_at: Option<String>,
    /// `low` (or `minor`), `normal`, `high` (or `major`), `urgent` (or `critical`,
    /// `blocker`), any case; anything else, null or absent is `normal`.
    pub priority: Option<String>,
    /// The satisfaction rating, 1 to 5; null or absent when not rated.
    #[schema(minimum = 1, maximum = 5)]
    pub csat: Option<f64>,
}

/// An order.
#[derive(Debug, Clone, ToSchema)]
pub struct ActivityOrder {
    #[schema(schema_with = at)]
    pub at: String,
    /// Its amount (a finite number).
    pub amount: f64,
}

/// A product event.
#[derive(Debug, Clone, ToSchema)]
pub struct ActivityEvent {
    #[schema(schema_with = at)]
    pub at: String,
    /// Its type (`search`, `export`...): the model counts the types it was trained with.
    #[schema(min_length = 1)]
    pub event_type: String,
    /// Its value; null or absent counts as 1.
    pub value: Option<f64>,
}

/// One element of a tensor: what the `/v2` element checks read (a number, a boolean for
/// `BOOL`, a string for `BYTES`, null for an undefined value).
fn element(with_null: bool) -> ObjectBuilder {
    let mut ts = vec![Type::Number, Type::String, Type::Boolean];
    if with_null {
        ts.push(Type::Null);
    }
    ObjectBuilder::new().schema_type(types(ts))
}

/// `RequestInput.data`: row-major, flat (`[x0, x1, ...]`) or nested one level for a
/// `[N, 1]` shape (`[[x0], [x1], ...]`), which is as deep as the accepted shapes go.
pub fn input_data() -> Schema {
    ArrayBuilder::new()
        .items(
            AnyOfBuilder::new()
                .item(element(true))
                .item(ArrayBuilder::new().items(element(true))),
        )
        .description(Some(
            "Row-major data, flat or nested for a `[N, 1]` shape: numbers (`FP64`, other \
             numeric types coerced), booleans (`BOOL`, for 0/1 features), strings (`BYTES`, \
             `customer_id`); null (or `NaN`) is an undefined value, accepted only for \
             features marked `may_be_missing`",
        ))
        .into()
}

/// `ResponseOutput.data`: always flat.
pub fn output_data() -> Schema {
    ArrayBuilder::new()
        .items(element(false))
        .description(Some(
            "N elements, flat: numbers for `FP64` (`churn_probability`), strings for `BYTES` \
             (`risk_tier`; `reasons`, each a JSON array as a string)",
        ))
        .into()
}

/// A `$parameters` object of the protocol: values are strings, numbers or booleans.
fn parameters(description: &str) -> ObjectBuilder {
    ObjectBuilder::new()
        .schema_type(types([Type::Object, Type::Null]))
        .additional_properties(Some(ObjectBuilder::new().schema_type(types([
            Type::String,
            Type::Number,
            Type::Boolean,
        ]))))
        .description(Some(description))
}

/// `InferenceRequest.parameters`.
pub fn request_parameters() -> Schema {
    parameters("Request parameters: `content_type` (`\"pd\"` only) and `as_of` (the instant recorded for the alert state; default now)")
        .property(
            "content_type",
            string(None).enum_values(Some(["pd"])),
        )
        .property(
            "as_of",
            timestamp_input(
                &format!(
                    "The instant recorded for the alert state (default now); at most {} \
                     minutes ahead of the server's clock, else 400",
                    super::routes::MAX_AS_OF_SKEW_SECS / 60
                ),
                false,
            ),
        )
        .into()
}

/// `RequestInput.parameters`.
pub fn input_parameters() -> Schema {
    parameters("Parameters of this input: `binary_data_size` with the binary tensor data extension")
        .property(
            "binary_data_size",
            ObjectBuilder::new()
                .schema_type(Type::Integer)
                .minimum(Some(0))
                .description(Some(
                    "The byte length of this input's data after the JSON part of the body",
                )),
        )
        .into()
}

/// `RequestOutput.parameters`.
pub fn output_parameters() -> Schema {
    parameters("Parameters of this output (`binary_data` is accepted; outputs are always JSON)")
        .into()
}

/// `InferenceResponse.parameters`.
pub fn response_parameters() -> Schema {
    parameters("`ignored_inputs`, when some inputs were not used")
        .property(
            "ignored_inputs",
            string(None).description(Some("The inputs not used, comma-separated")),
        )
        .into()
}

/// The schema of `features` for the served model, like an MLflow signature: one property
/// per feature of its manifest, in the model's order; every feature `required` except
/// those marked `may_be_missing` (which may also be `null`); numbers only, within
/// ±[`MAX_FEATURE_MAGNITUDE`] (a 0/1 `binary` feature, such as a one-hot categorical
/// level, may also be a boolean); other names are accepted and ignored (listed in
/// `ignored_fields`), hence `additionalProperties: true`. `null` for the whole object
/// means "not sent" (use `activity`).
pub fn model_features(scorer: &crate::scoring::Scorer) -> serde_json::Value {
    use serde_json::{json, Map, Value};
    let defs = scorer.artifact.spec.defs();
    let mut properties = Map::new();
    let mut required = Vec::new();
    for d in defs {
        let mut ts = vec!["number"];
        if d.transform == crate::features::Transform::Binary {
            ts.push("boolean");
        }
        if d.may_be_missing {
            ts.push("null");
        } else {
            required.push(Value::String(d.name.clone()));
        }
        let description = if d.description.is_empty() {
            d.name.clone()
        } else {
            d.description.clone()
        };
        properties.insert(
            d.name.clone(),
            json!({
                "type": ts,
                "minimum": -MAX_FEATURE_MAGNITUDE,
                "maximum": MAX_FEATURE_MAGNITUDE,
                "description": description,
            }),
        );
    }
    json!({
        "type": ["object", "null"],
        "description": format!(
            "The features of model `{}` {} by name, from its manifest: every feature is \
             required except those that may be missing, which may be absent or null; finite \
             numbers within ±{MAX_FEATURE_MAGNITUDE:e} (a boolean for a 0/1 feature). Other \
             names are ignored and listed in `ignored_fields`. This schema is the served \
             version's: it changes when another version is promoted.",
            scorer.name, scorer.version
        ),
        "properties": properties,
        "required": required,
        "additionalProperties": true,
    })
}

/// An example of `features` for the served model: every feature 0 (the request schema's
/// own example, which the server scores).
pub fn model_example(scorer: &crate::scoring::Scorer) -> serde_json::Value {
    scorer
        .artifact
        .spec
        .defs()
        .iter()
        .map(|d| (d.name.clone(), serde_json::json!(0)))
        .collect::<serde_json::Map<_, _>>()
        .into()
}
