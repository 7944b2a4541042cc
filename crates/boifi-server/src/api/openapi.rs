//! `GET /v1/openapi.json`: the OpenAPI 3 document, generated from the handlers' `#[utoipa::path]`
//! attributes. A test checks it lists every route the server registers.
//!
//! The wire types live in boifi-core (no_std, no utoipa); their schemas are described here by
//! marker types that implement `ToSchema` by hand, so the core types are never redeclared.

use std::borrow::Cow;

use actix_web::HttpResponse;
use utoipa::openapi::schema::{ArrayBuilder, ObjectBuilder, Schema, SchemaType, Type};
use utoipa::openapi::{Ref, RefOr};
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

fn object(description: &str) -> ObjectBuilder {
    typed(Type::Object, description)
}

fn policies_array() -> ArrayBuilder {
    ArrayBuilder::new().items(Ref::from_schema_name("PolicyDocument"))
}

wire_schema! {
    /// Schema of `boifi_core::policy::PolicyDocument` (the policy format, see the README).
    PolicyDocumentSchema, "PolicyDocument", {
        object("A fault injection policy (format `boifi.io/v1alpha1`, kind `FaultInjectionPolicy`); validated by boifi-core, which names every bad field by path")
            .property("apiVersion", string("`boifi.io/v1alpha1` (optional on input)"))
            .property("kind", string("`FaultInjectionPolicy` (optional on input)"))
            .property(
                "metadata",
                object("Name, version, and the legacy namespace, labels and annotations")
                    .property("name", string("A DNS-1123 subdomain, upper case and `_` allowed: 1 to 253 characters of `[A-Za-z0-9._-]`, each `.`-part 1 to 63 not starting or ending with `-`; not `status` or `create`"))
                    .property("version", string("A free-form version label"))
                    .property("namespace", string("Stored and returned; informational (sidecars are selected by `spec.selector`)"))
                    .property("labels", object("Labels to find policies by (`boifi-cli policy list -l key=value`)"))
                    .property("annotations", object("Free-form notes, stored and returned"))
                    .required("name"),
            )
            .property(
                "spec",
                object("`selector` (service, namespace, labels), `rules` (match + fault), `sampling`, `window`, `priority` (higher first, then name), `enabled` (`false`: stored, never applied)"),
            )
            .property(
                "status",
                object("Written by the server; ignored on input")
                    .property("stored_at_ms", integer("When stored (Unix ms)"))
                    .property("expires_at_ms", integer("When every rule has expired (Unix ms)"))
                    .property("revision", integer("Store revision of the last write; use as `If-Match`")),
            )
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
                integer("When it expires (Unix ms); null if never"),
            )
            .property("expires_at", string("The same, RFC 3339"))
            .property("revision", integer("Revision of its last write"))
            .property(
                "matching_sidecars",
                integer("Known sidecars its selector matches"),
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
            .property("active", boolean("Legacy: whether the state is `active`"));
        let sidecar = object("One sidecar")
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
            .property("version", integer("The config version it applied"))
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
            );
        object("The status view, with the legacy keys beside boifi's")
            .property("version", integer("The current config version"))
            .property("now_ms", integer("When this view was made (Unix ms)"))
            .property("totals", totals)
            .property("summary", summary)
            .property("policies", ArrayBuilder::new().items(policy))
            .property("sidecars", ArrayBuilder::new().items(sidecar))
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
        openapi_json,
        super::policies::list_policies,
        super::policies::create_or_replace,
        super::policies::create_strict,
        super::policies::delete_all,
        super::policies::get_policy,
        super::policies::put_policy,
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
        StatusResponseSchema,
    )),
    modifiers(&BearerAuth),
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

/// The document as JSON.
pub fn document() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
}

/// This document.
#[utoipa::path(get, path = "/v1/openapi.json", tag = "operations",
    responses((status = 200, description = "The OpenAPI 3 document", content_type = "application/json")))]
pub async fn openapi_json() -> HttpResponse {
    HttpResponse::Ok().json(document())
}
