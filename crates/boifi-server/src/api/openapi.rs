//! `GET /v1/openapi.json`: the OpenAPI 3 document, generated from the handlers' `#[utoipa::path]`
//! attributes. A test checks it lists every route the server registers.
//!
//! The wire types live in boifi-core (no_std, no utoipa); their schemas are described here by
//! marker types that implement `ToSchema` by hand, so the core types are never redeclared.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::sync::OnceLock;

use actix_web::HttpResponse;
use utoipa::openapi::schema::{
    AdditionalProperties, AllOfBuilder, AnyOfBuilder, ArrayBuilder, ObjectBuilder, OneOfBuilder,
    Schema, SchemaFormat, SchemaType, Type,
};
use utoipa::openapi::{Ref, RefOr};
use utoipa::Number;
use utoipa::{OpenApi, PartialSchema, ToSchema};

/// A marker type whose schema, named `$name` in the document, is `$schema`.
macro_rules! wire_schema {
    ($(#[$doc:meta])* $ty:ident, $name:literal, $schema:block) => {
        $(#[$doc])*
        #[derive(Debug)]
        pub struct $ty;

        impl PartialSchema for $ty {
            fn schema() -> RefOr<Schema> $schema
        }

        impl ToSchema for $ty {
            fn name() -> Cow<'static, str> {
                Cow::Borrowed($name)
            }
        }
    };
}

fn typed(schema_type: impl Into<SchemaType>, description: &str) -> ObjectBuilder {
    ObjectBuilder::new()
        .schema_type(schema_type)
        .description(Some(description))
}

fn string(description: &str) -> ObjectBuilder {
    typed(Type::String, description)
}

/// A string that is `null` when unknown (an `Option<String>` serialized without skipping).
fn nullable_string(description: &str) -> ObjectBuilder {
    typed(
        SchemaType::from_iter([Type::String, Type::Null]),
        description,
    )
}

fn integer(description: &str) -> ObjectBuilder {
    typed(Type::Integer, description).minimum(Some(0))
}

fn nullable_integer(description: &str) -> ObjectBuilder {
    typed(
        SchemaType::from_iter([Type::Integer, Type::Null]),
        description,
    )
    .minimum(Some(0))
}

fn object(description: &str) -> ObjectBuilder {
    typed(Type::Object, description)
}

fn policies_array() -> ArrayBuilder {
    ArrayBuilder::new().items(Ref::from_schema_name("PolicyDocument"))
}

// Every constraint boifi-core's reader enforces on a policy, so a document valid by this schema is
// one the server stores, and one it refuses breaks the schema. The reader takes `null` for an
// absent field, so every optional field admits `null` and every condition on a field being
// present asks for a value. Three relations JSON Schema cannot state are in the descriptions:
// `jitter_ms` <= `fixed_delay_ms`, `window.end` after `window.start`, and at most 64 KiB of
// annotations in all.

/// A DNS-1123 label part of a policy name: 1 to 63 of `[A-Za-z0-9_-]`, no `-` at either end.
const NAME_PART: &str = "[A-Za-z0-9_]([A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?";
/// An RFC 9110 token (a header name).
const TOKEN: &str = "[A-Za-z0-9!#$%&'*+.^_`|~-]{1,256}";
/// A Kubernetes DNS label (a service or namespace in a workload identity).
const DNS_LABEL: &str = "^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$";
/// `spec.guards[].success_condition` and `failure_condition`.
const CONDITION: &str =
    r"^\s*result\s*(<=|>=|==|!=|<|>)\s*[-+]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][-+]?[0-9]{1,2})?\s*$";
/// `spec.guards[].name`: a DNS-1123 label, upper case and `_` allowed.
const GUARD_NAME: &str = "^[A-Za-z0-9_]([A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?$";
/// An RFC 3339 time from 1971 on, as boifi-core's `parse_rfc3339` reads it; days valid in every
/// year (29 February is left out).
const TIMESTAMP: &str = concat!(
    "^(19[89][0-9]|197[1-9]|[2-9][0-9]{3})-",
    "((0[1-9]|1[0-2])-(0[1-9]|1[0-9]|2[0-8])|(0[13-9]|1[0-2])-(29|30)|(0[13578]|1[02])-31)",
    "[Tt ]([01][0-9]|2[0-3]):[0-5][0-9]:([0-5][0-9]|60)(\\.[0-9]+)?",
    "([Zz]|[+-]([01][0-9]|2[0-3]):[0-5][0-9])$"
);

/// The pattern of a policy name (`metadata.name`, the `{name}` path segment).
pub fn name_pattern() -> String {
    format!("^{NAME_PART}(\\.{NAME_PART})*$")
}

/// `builder`, whose type is `of`, also admitting `null` (an optional field: `null` is absent).
fn or_null(builder: ObjectBuilder, of: Type) -> ObjectBuilder {
    builder.schema_type(SchemaType::from_iter([of, Type::Null]))
}

/// An object that refuses properties it does not list.
fn closed(description: &str) -> ObjectBuilder {
    object(description).additional_properties(Some(AdditionalProperties::FreeForm(false)))
}

fn patterned(description: &str, pattern: &str) -> ObjectBuilder {
    string(description).pattern(Some(pattern))
}

fn bounded(description: &str, min: i64, max: u64) -> ObjectBuilder {
    typed(Type::Integer, description)
        .minimum(Some(Number::Int(
            isize::try_from(min).unwrap_or(isize::MIN),
        )))
        .maximum(Some(Number::UInt(
            usize::try_from(max).unwrap_or(usize::MAX),
        )))
}

/// A string `choices`, or `null`.
fn choice_or_null(description: &str, choices: &[&str]) -> ObjectBuilder {
    let values = choices
        .iter()
        .map(|c| serde_json::Value::from(*c))
        .chain([serde_json::Value::Null]);
    or_null(string(description), Type::String).enum_values(Some(values))
}

/// A map of strings of at most `max` entries, or `null`.
fn string_map(
    description: &str,
    max: Option<usize>,
    keys: Option<&str>,
    values: ObjectBuilder,
) -> ObjectBuilder {
    let keys = keys.map(|p| {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .pattern(Some(p))
    });
    or_null(object(description), Type::Object)
        .max_properties(max)
        .property_names(keys)
        .additional_properties(Some(values))
}

/// A schema that holds when the property `name` is present with a value of type `of`.
fn given(name: &str, of: impl Into<RefOr<Schema>>) -> ObjectBuilder {
    ObjectBuilder::new()
        .schema_type(SchemaType::AnyValue)
        .property(name, of)
        .required(name)
}

/// `object` with at least one of `names` holding a value of type `of`.
fn with_one_of(object: ObjectBuilder, names: &[&str], of: Type, description: &str) -> Schema {
    let some = names.iter().fold(AnyOfBuilder::new(), |any, name| {
        any.item(given(name, of_type(of.clone())))
    });
    all_of([object.into(), some.into()], description)
}

/// `schema` or `null` (an optional field whose schema is a composition).
fn schema_or_null(schema: Schema) -> Schema {
    AnyOfBuilder::new()
        .item(of_type(Type::Null))
        .item(schema)
        .into()
}

fn of_type(of: Type) -> ObjectBuilder {
    ObjectBuilder::new().schema_type(of)
}

fn all_of(items: impl IntoIterator<Item = Schema>, description: &str) -> Schema {
    items
        .into_iter()
        .fold(AllOfBuilder::new(), AllOfBuilder::item)
        .description(Some(description))
        .into()
}

/// The matcher properties `exact`, `prefix`, `regex`; the reader asks for exactly one.
fn with_matchers(object: ObjectBuilder) -> ObjectBuilder {
    object
        .property("exact", or_null(string("Equal to this text"), Type::String))
        .property(
            "prefix",
            or_null(string("Starting with this text"), Type::String),
        )
        .property("regex", or_null(regex(), Type::String))
}

/// Exactly one of `exact`, `prefix`, `regex` has a value.
fn one_matcher() -> Schema {
    ["exact", "prefix", "regex"]
        .into_iter()
        .fold(OneOfBuilder::new(), |one, name| {
            one.item(given(name, of_type(Type::String)))
        })
        .into()
}

fn string_match(description: &str) -> Schema {
    all_of(
        [with_matchers(closed(description)).into(), one_matcher()],
        description,
    )
}

fn regex() -> ObjectBuilder {
    string("A regular expression (boifi's linear-time subset: no backreferences or look-around), at most 1024 bytes and 2000 compiled instructions")
        .format(Some(SchemaFormat::Custom("regex".to_owned())))
        .max_length(Some(boifi_core::policy::MAX_REGEX_LEN))
}

fn header_match() -> Schema {
    let description =
        "A request header match: `name` and exactly one of `exact`, `prefix`, `regex`";
    let object = closed(description)
        .property(
            "name",
            patterned(
                "A header name (RFC 9110 token) or a pseudo-header such as `:authority`",
                &format!("^:?{TOKEN}$"),
            ),
        )
        .required("name");
    all_of([with_matchers(object).into(), one_matcher()], description)
}

fn source() -> Schema {
    let name = |d, pattern| or_null(patterned(d, pattern), Type::String);
    let account = "^[a-z0-9]([a-z0-9.-]{0,251}[a-z0-9])?$";
    let object = closed("The calling workload, from its mTLS identity")
        .property("service", name("A DNS label", DNS_LABEL))
        .property("namespace", name("A DNS label", DNS_LABEL))
        .property("serviceAccount", name("A DNS subdomain", account))
        .property(
            "labels",
            typed(Type::Null, "Refused: a caller's labels cannot be verified"),
        );
    with_one_of(
        object,
        &["service", "namespace", "serviceAccount"],
        Type::String,
        "The calling workload, from its mTLS identity: at least one of `service`, `namespace`, `serviceAccount`",
    )
}

fn request_match() -> Schema {
    let headers = ArrayBuilder::new()
        .schema_type(SchemaType::from_iter([Type::Array, Type::Null]))
        .items(RefOr::T(header_match()))
        .max_items(Some(boifi_core::policy::MAX_HEADERS));
    let object = closed("Which requests")
        .property("method", schema_or_null(string_match("The request method")))
        .property("path", schema_or_null(string_match("The request path")))
        .property("headers", headers)
        .property("source", schema_or_null(source()));
    let some = AnyOfBuilder::new()
        .item(given("method", of_type(Type::Object)))
        .item(given("path", of_type(Type::Object)))
        .item(given("source", of_type(Type::Object)))
        .item(given(
            "headers",
            ArrayBuilder::new()
                .items(ObjectBuilder::new().schema_type(SchemaType::AnyValue))
                .min_items(Some(1)),
        ));
    all_of(
        [object.into(), some.into()],
        "Which requests: at least one condition (`method`, `path`, a header or `source`)",
    )
}

fn fault() -> Schema {
    let ms = |d| bounded(d, 0, boifi_core::policy::MAX_DELAY_MS);
    let delay = closed("A delay; `jitter_ms` at most `fixed_delay_ms`")
        .property("fixed_delay_ms", ms("Milliseconds"))
        .property(
            "jitter_ms",
            or_null(
                ms("Up to this many milliseconds more or less; at most `fixed_delay_ms`"),
                Type::Integer,
            ),
        )
        .required("fixed_delay_ms");
    let header_value = ObjectBuilder::new()
        .schema_type(Type::String)
        .pattern(Some("^[^\\r\\n\\x00]*$"));
    let abort = closed("An abort")
        .property("httpStatus", bounded("The status to answer", 200, 599))
        .property(
            "grpcStatus",
            or_null(
                bounded("A gRPC status to answer with", 0, 16),
                Type::Integer,
            ),
        )
        .property(
            "body",
            or_null(
                string("The body to answer with, at most 16 KiB (UTF-8)")
                    .max_length(Some(boifi_core::policy::MAX_BODY_BYTES)),
                Type::String,
            ),
        )
        .property(
            "headers",
            string_map(
                "Headers to answer with (no pseudo-headers; values without CR, LF, NUL)",
                Some(boifi_core::policy::MAX_HEADERS),
                Some(&format!("^{TOKEN}$")),
                header_value,
            ),
        )
        .required("httpStatus");
    let object = closed("What happens to a matching request")
        .property(
            "percentage",
            typed(
                Type::Number,
                "Share of matching requests, 0 to 100 in steps of 0.0001",
            )
            .minimum(Some(0))
            .maximum(Some(100))
            .multiple_of(Some(0.0001)),
        )
        .property(
            "start_delay_ms",
            or_null(
                ms("Milliseconds after the policy is stored before it fires"),
                Type::Integer,
            ),
        )
        .property(
            "duration_seconds",
            or_null(
                bounded(
                    "Seconds it fires for (0: no limit)",
                    0,
                    boifi_core::policy::MAX_DURATION_SECONDS,
                ),
                Type::Integer,
            ),
        )
        .property("delay", or_null(delay, Type::Object))
        .property("abort", or_null(abort, Type::Object))
        .property(
            "target",
            choice_or_null(
                "When the fault acts: `request` (default, before the app) or `response` (after \
                 the app answered)",
                &["request", "response", "Request", "Response"],
            ),
        )
        .property(
            "reset",
            or_null(
                boolean("`true`: reset the stream instead of answering (never with `abort`)"),
                Type::Boolean,
            ),
        )
        .required("percentage");
    let acts = ["delay", "abort"]
        .iter()
        .fold(AnyOfBuilder::new(), |any, name| {
            any.item(given(name, of_type(Type::Object)))
        })
        .item(given(
            "reset",
            boolean("A reset").enum_values(Some([serde_json::Value::Bool(true)])),
        ));
    all_of(
        [object.into(), acts.into()],
        "What happens to a matching request: at least one of a `delay`, an `abort` and a \
         `reset`",
    )
}

fn spec() -> ObjectBuilder {
    let text = |d| or_null(string(d), Type::String);
    let selector = closed("Which sidecars apply the policy (absent, empty or `*`: any)")
        .property("service", text("Service"))
        .property("namespace", text("Namespace"))
        .property(
            "labels",
            string_map(
                "Pod labels that must all match",
                None,
                None,
                of_type(Type::String),
            ),
        );
    let rule = closed("A rule")
        .property("match", request_match())
        .property("fault", fault())
        .required("match")
        .required("fault");
    let window = closed("When the policy may fire; `end` after `start`")
        .property("start", patterned("RFC 3339 time", TIMESTAMP))
        .property("end", patterned("RFC 3339 time after `start`", TIMESTAMP))
        .required("start")
        .required("end");
    let priority = bounded(
        "Higher first, then by name",
        i64::from(i32::MIN),
        u64::from(i32::MAX.unsigned_abs()),
    );
    closed("What the policy does")
        .property("selector", or_null(selector, Type::Object))
        .property(
            "rules",
            ArrayBuilder::new()
                .items(rule)
                .min_items(Some(1))
                .max_items(Some(boifi_core::policy::MAX_RULES)),
        )
        .property(
            "sampling",
            choice_or_null(
                "`random` (each request drawn alone) or `request` (one draw per request id)",
                &["random", "request"],
            ),
        )
        .property("window", or_null(window, Type::Object))
        .property("priority", or_null(priority, Type::Integer))
        .property(
            "enabled",
            or_null(boolean("`false`: stored, never applied"), Type::Boolean),
        )
        .property(
            "heartbeat_seconds",
            or_null(
                bounded(
                    "A sidecar that has not heard from the control plane for this many seconds \
                     stops applying the policy (the server sets 30 on a guarded policy that does \
                     not say)",
                    1,
                    boifi_core::policy::MAX_HEARTBEAT_SECONDS,
                ),
                Type::Integer,
            ),
        )
        .property(
            "guards",
            ArrayBuilder::new()
                .items(guard())
                .max_items(Some(boifi_core::policy::guard::MAX_GUARDS)),
        )
        .required("rules")
}

/// One of `spec.guards`.
fn guard() -> ObjectBuilder {
    let condition = |d| patterned(d, CONDITION);
    closed("A guard: a Prometheus instant query and a condition on its one number, evaluated by the control plane every `interval_seconds`; `failure_limit` failed evaluations in a row stop the policy. Give exactly one of `success_condition` or `failure_condition`. Never sent to sidecars")
        .property("name", patterned("Unique within the policy: 1 to 63 characters of `[A-Za-z0-9_-]`, not starting or ending with `-`", GUARD_NAME))
        .property(
            "query",
            string("A PromQL instant query (checked with a PromQL parser) returning one number: a scalar or a vector of one sample")
                .min_length(Some(1))
                .max_length(Some(boifi_core::policy::guard::MAX_QUERY_LEN)),
        )
        .property("success_condition", or_null(condition("`result <op> <number>`: the evaluation passes when it holds (e.g. `result >= 0.95`)"), Type::String))
        .property("failure_condition", or_null(condition("`result <op> <number>`: the evaluation fails when it holds (e.g. `result < 0.95`)"), Type::String))
        .property("interval_seconds", or_null(bounded("Seconds between evaluations (default 10)", 1, boifi_core::policy::guard::MAX_INTERVAL_SECONDS), Type::Integer))
        .property("failure_limit", or_null(bounded("Failed evaluations in a row that stop the policy (default 1)", 1, boifi_core::policy::guard::MAX_FAILURE_LIMIT), Type::Integer))
        .property("on_error", choice_or_null("What an evaluation without a value counts as: `fail` (default) or `ignore`", &["fail", "ignore"]))
        .required("name")
        .required("query")
}

fn metadata() -> ObjectBuilder {
    let label_key = "^[!-+\\--<>-~]{1,253}$";
    let label_value = of_type(Type::String).pattern(Some("^[!-+\\--~]{0,253}$"));
    let name = patterned(
        "A DNS-1123 subdomain, upper case and `_` allowed: 1 to 253 characters of `[A-Za-z0-9._-]`, each `.`-part 1 to 63 not starting or ending with `-`; not `status` or `create`",
        &name_pattern(),
    )
    .max_length(Some(boifi_core::policy::MAX_NAME_LEN));
    let entries = Some(boifi_core::policy::MAX_METADATA_ENTRIES);
    closed("Name, version, and the legacy namespace, labels and annotations")
        .property("name", name)
        .property(
            "version",
            typed(
                SchemaType::from_iter([Type::String, Type::Number, Type::Null]),
                "A free-form version label (a number is kept as its text)",
            ),
        )
        .property(
            "namespace",
            or_null(
                patterned(
                    "Stored and returned; informational (sidecars are selected by `spec.selector`)",
                    &format!("^{NAME_PART}$"),
                ),
                Type::String,
            ),
        )
        .property(
            "labels",
            string_map(
                "Labels to find policies by (`boifi-cli policy list -l key=value`): at most 64; keys 1 to 253 printable ASCII without `=` or `,`, values up to 253 without `,`",
                entries,
                Some(label_key),
                label_value,
            ),
        )
        .property(
            "annotations",
            string_map(
                "Free-form notes, stored and returned: at most 64, 64 KiB of keys and values in all",
                entries,
                None,
                of_type(Type::String),
            ),
        )
        .required("name")
}

wire_schema! {
    /// Schema of `boifi_core::policy::PolicyDocument` (the policy format, see the README).
    PolicyDocumentSchema, "PolicyDocument", {
        let revision = |d| or_null(bounded(d, 0, u64::MAX), Type::Integer);
        let status = closed("Written by the server; ignored on input")
            .property("stored_at_ms", revision("When stored (Unix ms)"))
            .property("expires_at_ms", revision("When every rule has expired (Unix ms)"))
            .property("revision", revision("Store revision of the last write; use as `If-Match`"))
            .property("guard", or_null(
                object("A guarded policy's state: `verifying` (guards not yet passed; nothing injected), `running`, or `tripped` (stopped by `guard`, which saw `value`, at `at_ms`)"),
                Type::Object,
            ))
            .property(
                "state",
                ObjectBuilder::new()
                    .schema_type(SchemaType::AnyValue)
                    .description(Some("Derived, for people; ignored on input")),
            );
        closed("A fault injection policy (format `boifi.io/v1alpha1`, kind `FaultInjectionPolicy`); validated by boifi-core, which names every bad field by path")
            .property("apiVersion", choice_or_null("`boifi.io/v1alpha1` (optional on input)", &[boifi_core::policy::API_VERSION]))
            .property("kind", choice_or_null("`FaultInjectionPolicy` (optional on input)", &[boifi_core::policy::KIND]))
            .property("metadata", metadata())
            .property("spec", spec())
            .property("status", or_null(status, Type::Object))
            .required("metadata")
            .required("spec")
            .into()
    }
}

wire_schema! {
    /// Schema of `boifi_core::wire::PolicyList`.
    PolicyListSchema, "PolicyList", {
        object("Every stored policy (the legacy list shape)")
            .property("policies", policies_array())
            .required("policies")
            .into()
    }
}

wire_schema! {
    /// Schema of `boifi_core::wire::AuditList`.
    AuditListSchema, "AuditList", {
        let entry = object("One audited change")
            .property("at_ms", integer("When (Unix ms)"))
            .property("who", string("The token's name (`token:<sha256 prefix>` for the legacy token file), `anonymous` or `sweeper`"))
            .property("action", string("`create`, `replace`, `delete`, `delete_all` or `expire`"))
            .property("policy", string("The policy, `*` for `delete_all`"))
            .property("version_before", integer("The config version before"))
            .property("version_after", integer("The config version after"))
            .required("at_ms")
            .required("who")
            .required("action")
            .required("policy")
            .required("version_before")
            .required("version_after");
        object("The answering replica's latest audited changes")
            .property("entries", ArrayBuilder::new().items(entry).description(Some("Oldest first")))
            .required("entries")
            .into()
    }
}

wire_schema! {
    /// Schema of `boifi_core::wire::ConfigResponse`.
    ConfigResponseSchema, "ConfigResponse", {
        object("The policies that can apply to the asking sidecar")
            .property("version", integer("The global config version"))
            .property("policies", policies_array())
            .required("version")
            .required("policies")
            .into()
    }
}

fn boolean(description: &str) -> ObjectBuilder {
    typed(Type::Boolean, description)
}

fn strings(description: &str) -> ArrayBuilder {
    ArrayBuilder::new()
        .items(ObjectBuilder::new().schema_type(Type::String))
        .description(Some(description))
}

wire_schema! {
    /// Schema of `boifi_core::wire::StatusResponse`.
    StatusResponseSchema, "StatusResponse", {
        let totals = object("Counts")
            .property("policies", integer("Stored policies"))
            .property("active", integer("Policies that can fire now"))
            .property(
                "scheduled",
                integer("Policies whose window has not started"),
            )
            .property(
                "expired",
                integer("Expired policies (deleted by the sweep after the grace period)"),
            )
            .property("disabled", integer("Policies with `spec.enabled: false`"))
            .property("sidecars", integer("Sidecars known to any replica"))
            .property(
                "sidecars_current",
                integer("Sidecars that applied the current version (the same as `sidecars_applied`)"),
            )
            .property("sidecars_applied", integer("Sidecars that applied the current version"))
            .property(
                "sidecars_pending",
                integer("Sidecars that have neither applied nor refused the current version"),
            )
            .property(
                "sidecars_refused",
                integer("Sidecars that received the current version and refused it"),
            )
            .property(
                "proxies",
                object("Proxies known to any replica, by kind")
                    .property("sidecar", integer("Sidecars"))
                    .property("waypoint", integer("Waypoints"))
                    .property("gateway", integer("Gateways")),
            );
        let summary = object("The legacy counts")
            .property("total_policies", integer("Stored policies"))
            .property("abort_policies", integer("Policies with an abort"))
            .property("delay_policies", integer("Policies with a delay"))
            .property("active_policies", integer("Policies that can fire now"));
        let targets = object("The selector (`*` = any)")
            .property("service", string("Service or `*`"))
            .property("namespace", string("Namespace or `*`"))
            .property("labels", object("Labels that must all match"));
        let policy = object("One policy")
            .property("name", string("Name"))
            .property("targets", targets)
            .property(
                "fault_kinds",
                strings("`abort`, `delay`: each once, abort first"),
            )
            .property(
                "state",
                string("`active`, `scheduled`, `expired` or `disabled`"),
            )
            .property("stored_at_ms", integer("When stored (Unix ms)"))
            .property(
                "expires_at_ms",
                typed(
                    SchemaType::from_iter([Type::Integer, Type::Null]),
                    "When it expires (Unix ms); null if never",
                )
                .minimum(Some(0)),
            )
            .property("expires_at", nullable_string("The same, RFC 3339; null if never"))
            .property("revision", integer("Revision of its last write"))
            .property(
                "matching_sidecars",
                integer("Known sidecars its selector matches"),
            )
            .property(
                "in_shared_proxies",
                string("Where it acts in a shared proxy (waypoint, gateway): `per request` (the proxy decides per request whether the destination service matches) or `never (selects pods)` (its selector names pod labels, and a shared proxy picks the endpoint after the filter runs: it is not sent)")
                    .enum_values(Some([
                        boifi_core::wire::IN_SHARED_PROXIES_PER_REQUEST,
                        boifi_core::wire::IN_SHARED_PROXIES_NEVER,
                    ])),
            )
            .property(
                "matching_shared_proxies",
                integer("Known shared proxies (waypoints, gateways) that are sent it"),
            )
            .property(
                "priority",
                ObjectBuilder::new()
                    .schema_type(Type::Integer)
                    .description(Some("`spec.priority`")),
            )
            .property(
                "namespace",
                string("Legacy: the selector's namespace or `*`"),
            )
            .property(
                "target_service",
                string("Legacy: the selector's service or `*`"),
            )
            .property("rules_count", integer("Legacy: number of rules"))
            .property("fault_types", strings("Legacy: the same as `fault_kinds`"))
            .property("active", boolean("Legacy: whether the state is `active`"))
            .property(
                "guard",
                typed(
                    SchemaType::from_iter([Type::Object, Type::Null]),
                    "A guarded policy's guards: `state` (`verifying`, `running`, `tripped`) and, when tripped, the `guard` that stopped it, the `value` it saw, `at_ms` and `at`; null if unguarded",
                ),
            );
        let sidecar = || object("One proxy: a sidecar under `sidecars`, a waypoint or gateway under `shared_proxies`")
            .property(
                "proxy",
                string("The kind of proxy")
                    .enum_values(Some(boifi_core::identity::ProxyKind::ALL.map(|k| k.as_str()))),
            )
            .property(
                "pod",
                nullable_string("Pod name (null when it did not say)"),
            )
            .property(
                "service",
                nullable_string("Service (null when it did not say)"),
            )
            .property(
                "namespace",
                nullable_string("Namespace (null when it did not say)"),
            )
            .property("labels", object("Pod labels it reported"))
            .property(
                "version",
                nullable_integer("The config version it applied (null before it applied any)"),
            )
            .property("current", boolean("Whether it applied the current version (state `applied`)"))
            .property(
                "state",
                string("`applied` (it applied the current version), `refused` (it refused the current version; see `refused`) or `pending` (neither yet)")
                    .enum_values(Some(["applied", "pending", "refused"])),
            )
            .property(
                "refused",
                typed(
                    SchemaType::from_iter([Type::Object, Type::Null]),
                    "The version it last refused and why, as its last request said; null if none",
                )
                .property("version", integer("The refused config version"))
                .property("reason", string("Why, as the sidecar said (at most 512 bytes)")),
            )
            .property("last_seen_ms", integer("Last config request (Unix ms)"))
            .property("last_seen", string("The same, RFC 3339"))
            .property(
                "replica",
                string("The control-plane replica it reports through"),
            )
            .property(
                "destinations",
                integer("A shared proxy: how many destination services it has compiled policy sets for, as its last request said (absent when it did not say)"),
            )
            .property(
                "namespaces",
                strings("A waypoint: the namespaces it serves besides its own (absent when none)"),
            )
            .property(
                "policies",
                integer("How many policies of the current version it is sent"),
            );
        object("The status view, with the legacy keys beside boifi's")
            .property("version", integer("The current config version"))
            .property("now_ms", integer("When this view was made (Unix ms)"))
            .property("totals", totals)
            .property("summary", summary)
            .property("policies", ArrayBuilder::new().items(policy))
            .property("sidecars", ArrayBuilder::new().items(sidecar()))
            .property("shared_proxies", ArrayBuilder::new().items(sidecar()))
            .property(
                "store_degraded",
                string("Why this replica refuses writes while it serves its last view (etcd unreachable or without quorum); absent while its store answers"),
            )
            .required("version")
            .required("totals")
            .required("policies")
            .required("sidecars")
            .into()
    }
}

wire_schema! {
    /// Schema of `boifi_core::wire::ApiError`.
    ApiErrorSchema, "ApiError", {
        object("Every error answer (the legacy shape)")
            .property("error", string("Machine-readable kind, e.g. `invalid_policy`, `not_found`"))
            .property("message", string("What went wrong, for a person"))
            .property(
                "details",
                ArrayBuilder::new()
                    .items(string("One problem, e.g. `spec.rules[0].fault.percentage: `130` is outside 0..=100`"))
                    .description(Some("Each problem; absent when empty")),
            )
            .property("code", integer("The HTTP status"))
            .required("error")
            .required("message")
            .required("code")
            .into()
    }
}

/// The OpenAPI document of the control plane.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "boifi control plane",
        description = "Fault injection policies for Envoy sidecars: manage them, and let sidecars long-poll the ones that apply to them."
    ),
    paths(
        super::health,
        super::ready,
        super::metrics,
        super::audit_list,
        openapi_json,
        super::policies::list_policies,
        super::policies::create_or_replace,
        super::policies::create_strict,
        super::policies::delete_all,
        super::policies::get_policy,
        super::policies::put_policy,
        super::policies::rearm_policy,
        super::policies::delete_policy,
        super::status::policy_status,
        super::config::get_config,
    ),
    components(schemas(
        PolicyDocumentSchema,
        PolicyListSchema,
        ConfigResponseSchema,
        ApiErrorSchema,
        super::HealthResponse,
        super::policies::DeletedPolicy,
        super::policies::DeletedAll,
        AuditListSchema,
        StatusResponseSchema,
    )),
    modifiers(&BearerAuth, &ParameterForms),
)]
#[derive(Debug)]
pub struct ApiDoc;

/// Adds the bearer-token security scheme.
#[derive(Debug)]
struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// Gives each parameter the form the server enforces, by name (a name means the same thing on
/// every operation): the handlers' attributes say where a parameter is and what it is for.
#[derive(Debug)]
struct ParameterForms;

/// The longest policy revision in `If-Match` that is surely a `u64` (19 digits).
const REVISION: &str = "^(W/)*\"*\\+?[0-9]{1,19}\"*$";
/// `wait`: a whole number of `ms`, `s` (the default unit) or `m`, at most 300 s.
const WAIT: &str =
    "^\\+?0*((300000|[12][0-9]{5}|[1-9][0-9]{0,4}|0)ms|(300|[12][0-9]{2}|[1-9][0-9]?|0)s?|[0-5]m)$";
/// `namespaces`: comma-separated namespace names, DNS labels (empty items are skipped).
const NAMESPACES: &str =
    "^([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)?(,([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)?)*$";
/// `labels`: comma-separated `key=value` pairs (empty items are skipped).
const LABELS: &str = "^([^,]*=[^,]*)?(,([^,]*=[^,]*)?)*$";

impl ParameterForms {
    /// The schema of the parameter `name`, and whether it is required; `None` keeps the
    /// attribute's own.
    fn form(name: &str) -> Option<(ObjectBuilder, bool)> {
        let choice = |d: &str, values: &[&str]| string(d).enum_values(Some(values.to_vec()));
        let whole = |d| bounded(d, 0, u64::MAX);
        Some(match name {
            "name" => (
                patterned("Policy name", &name_pattern())
                    .max_length(Some(boifi_core::policy::MAX_NAME_LEN)),
                true,
            ),
            "If-Match" => (
                patterned("A policy revision, e.g. `\"42\"`", REVISION),
                false,
            ),
            "If-None-Match" => (choice("Only `*`", &["*"]), false),
            "confirm" => (choice("Must be `all`", &["all"]), true),
            "version" => (whole("A config version"), false),
            "refused" => (whole("A config version"), false),
            "destinations" => (whole("A number of destination services"), false),
            "namespaces" => (
                patterned("Namespace names separated by `,`", NAMESPACES),
                false,
            ),
            "wait" => (patterned("A duration of at most 300 s", WAIT), false),
            "encoding" => (choice("The answer's encoding", &["json", "compact"]), false),
            "compact_version" => (bounded("A compact format version", 2, u64::MAX), false),
            "proxy" => {
                let kinds = boifi_core::identity::ProxyKind::ALL.map(|k| k.as_str());
                (choice("The kind of proxy", &kinds), false)
            }
            "labels" => (
                patterned("`key=value` pairs separated by `,`", LABELS),
                false,
            ),
            "reason" => (
                string("At most 512 bytes")
                    .max_length(Some(boifi_core::wire::MAX_REFUSAL_REASON_BYTES)),
                false,
            ),
            _ => return None,
        })
    }
}

impl utoipa::Modify for ParameterForms {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::Required;
        for item in openapi.paths.paths.values_mut() {
            let operations = [
                &mut item.get,
                &mut item.post,
                &mut item.put,
                &mut item.delete,
            ];
            for operation in operations.into_iter().flatten() {
                for parameter in operation.parameters.iter_mut().flatten() {
                    if let Some((schema, required)) = Self::form(&parameter.name) {
                        parameter.schema = Some(RefOr::T(schema.into()));
                        if required {
                            parameter.required = Required::True;
                        }
                    }
                }
            }
        }
    }
}

/// The document as JSON.
pub fn document() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
}

/// The methods the document declares for the route `pattern` (e.g. `/v1/policies/{name}`), as
/// an `Allow` value such as `GET, PUT, DELETE`; empty for a path it does not list. The document
/// is the one list of methods: a test checks it against the routes the server registers.
pub fn allowed_methods(pattern: &str) -> &'static str {
    static ALLOWED: OnceLock<BTreeMap<String, String>> = OnceLock::new();
    ALLOWED
        .get_or_init(|| {
            document()
                .paths
                .paths
                .iter()
                .map(|(path, item)| (path.clone(), methods_of(item).join(", ")))
                .collect()
        })
        .get(pattern)
        .map_or("", String::as_str)
}

/// The methods of one path item, in RFC 9110 order.
fn methods_of(item: &utoipa::openapi::path::PathItem) -> Vec<&'static str> {
    [
        ("GET", item.get.is_some()),
        ("HEAD", item.head.is_some()),
        ("POST", item.post.is_some()),
        ("PUT", item.put.is_some()),
        ("DELETE", item.delete.is_some()),
        ("OPTIONS", item.options.is_some()),
        ("PATCH", item.patch.is_some()),
        ("TRACE", item.trace.is_some()),
    ]
    .into_iter()
    .filter_map(|(method, declared)| declared.then_some(method))
    .collect()
}

/// This document.
#[utoipa::path(get, path = "/v1/openapi.json", tag = "operations",
    responses((status = 200, description = "The OpenAPI 3 document", content_type = "application/json")))]
pub async fn openapi_json() -> HttpResponse {
    HttpResponse::Ok().json(document())
}
