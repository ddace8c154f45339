//! The OpenAPI 3.1 document every function serves at `GET /openapi.json`.
//!
//! A route and its documentation are registered in one call
//! ([`Routes::route`]), the request and answer schemas come from the very
//! types the handlers deserialize and serialize (`schemars`), and the layers
//! that can answer on a route's behalf (API keys, rate limits, body limits)
//! add their answers when they wrap it. So the document cannot drift from
//! the code: a new field, route or limit appears in it by construction, and
//! the contract test (schemathesis, in the README's test command) checks
//! every answer against it.

use std::collections::BTreeMap;

use axum::Router;
use axum::routing::MethodRouter;
use schemars::generate::SchemaSettings;
use schemars::{JsonSchema, Schema, SchemaGenerator};
use serde_json::{Map, Value, json};

/// A schema, produced when the document is built (schemas are shared
/// through `#/components/schemas`, so they need the one generator).
type SchemaFn = fn(&mut SchemaGenerator) -> Schema;

fn schema_of<T: JsonSchema>(generator: &mut SchemaGenerator) -> Schema {
    generator.subschema_for::<T>()
}

/// The error envelope, as [`super::ApiError`] writes it.
#[derive(JsonSchema)]
#[allow(dead_code)] // only its schema is used; ApiError writes the envelope
struct ErrorEnvelope {
    error: ErrorBody,
}

#[derive(JsonSchema)]
#[allow(dead_code)]
struct ErrorBody {
    /// Stable and machine-readable: `invalid_argument`, `not_found`, ...
    code: String,
    /// What was wrong and how to fix it.
    message: String,
}

/// One kind of server-sent event: its name and the JSON its `data` holds.
#[derive(Clone, Copy)]
pub struct Event {
    name: &'static str,
    data: SchemaFn,
}

impl Event {
    pub const fn json<T: JsonSchema>(name: &'static str) -> Event {
        Event {
            name,
            data: schema_of::<T>,
        }
    }

    /// The `error` event: the envelope, after which the stream ends.
    pub const fn error() -> Event {
        Event::json::<ErrorEnvelope>("error")
    }

    /// The event as schemathesis and OpenAPI 3.2 read a stream: an object
    /// of the SSE fields, whose `data` is JSON of the given schema.
    fn schema(&self, generator: &mut SchemaGenerator) -> Value {
        json!({
            "type": "object",
            "required": ["event", "data"],
            "properties": {
                "event": {"const": self.name},
                "data": {
                    "type": "string",
                    "contentMediaType": "application/json",
                    "contentSchema": (self.data)(generator).to_value(),
                },
                "id": {"type": "string"},
                "retry": {"type": "integer"},
            },
        })
    }
}

#[derive(Clone)]
enum Media {
    Json(SchemaFn),
    EventStream(Vec<Event>),
    Text,
}

#[derive(Clone)]
struct Answer {
    status: u16,
    description: &'static str,
    media: Option<Media>,
    headers: &'static [&'static str],
}

/// One documented operation: a method on a path.
#[derive(Clone)]
pub struct Operation {
    method: &'static str,
    path: String,
    id: String,
    summary: String,
    tag: &'static str,
    body: Option<SchemaFn>,
    answers: Vec<Answer>,
    last_event_id: bool,
    /// The schema of the path's parameters (`{id}`), a string by default.
    path_schema: Option<SchemaFn>,
    /// Optional query parameters: name, description, JSON Schema.
    query: Vec<(&'static str, &'static str, Value)>,
    /// Whether credentials guard it (everything but `/health` and the
    /// document).
    guarded: bool,
}

impl Operation {
    fn new(method: &'static str, id: &str, summary: impl Into<String>) -> Operation {
        Operation {
            method,
            path: String::new(),
            id: id.to_string(),
            summary: summary.into(),
            tag: "",
            body: None,
            answers: Vec::new(),
            last_event_id: false,
            path_schema: None,
            query: Vec::new(),
            guarded: true,
        }
    }

    pub fn get(id: &str, summary: impl Into<String>) -> Operation {
        Operation::new("get", id, summary)
    }

    pub fn post(id: &str, summary: impl Into<String>) -> Operation {
        Operation::new("post", id, summary)
    }

    pub fn delete(id: &str, summary: impl Into<String>) -> Operation {
        Operation::new("delete", id, summary)
    }

    pub fn tag(mut self, tag: &'static str) -> Operation {
        self.tag = tag;
        self
    }

    /// A JSON request body of type `T`. Bodies bring the answers every
    /// body can get: 400 (not JSON, wrong fields), 408 and 413.
    pub fn body<T: JsonSchema>(mut self) -> Operation {
        self.body = Some(schema_of::<T>);
        self.error(
            400,
            "the body is not valid JSON, or a field is missing, wrong or unknown",
        )
        .error(408, "the body did not arrive within BODY_TIMEOUT_SECONDS")
        .error(413, "the body is larger than MAX_BODY_BYTES")
    }

    /// A JSON answer of type `T`.
    pub fn json<T: JsonSchema>(self, status: u16, description: &'static str) -> Operation {
        self.answer(status, description, Some(Media::Json(schema_of::<T>)), &[])
    }

    /// A JSON answer of type `T` with response headers (e.g. `Location`).
    pub fn json_with<T: JsonSchema>(
        self,
        status: u16,
        description: &'static str,
        headers: &'static [&'static str],
    ) -> Operation {
        self.answer(status, description, Some(Media::Json(schema_of::<T>)), headers)
    }

    /// Server-sent events of the given kinds; `Last-Event-ID` is taken
    /// when `resumable`.
    pub fn event_stream(
        mut self,
        status: u16,
        description: &'static str,
        events: &[Event],
        resumable: bool,
    ) -> Operation {
        self.last_event_id |= resumable;
        self.answer(status, description, Some(Media::EventStream(events.to_vec())), &[])
    }

    pub fn text(self, status: u16, description: &'static str) -> Operation {
        self.answer(status, description, Some(Media::Text), &[])
    }

    pub fn empty(self, status: u16, description: &'static str) -> Operation {
        self.answer(status, description, None, &[])
    }

    /// An error answer in the envelope.
    pub fn error(mut self, status: u16, description: &'static str) -> Operation {
        self.push_error(status, description);
        self
    }

    fn push_error(&mut self, status: u16, description: &'static str) {
        let headers: &'static [&'static str] = match status {
            429 | 503 => &["Retry-After"],
            _ => &[],
        };
        self.answers.push(Answer {
            status,
            description,
            media: Some(Media::Json(schema_of::<ErrorEnvelope>)),
            headers,
        });
    }

    /// An error answer a layer gives, unless the route documents that
    /// status already (its own description is the better one).
    fn add_layer_error(&mut self, status: u16, description: &'static str) {
        if !self.has(status) {
            self.push_error(status, description);
        }
    }

    /// The answers of an operation that calls the model.
    pub fn model_errors(self) -> Operation {
        self.error(502, "the model provider refused the request (the message says why)")
            .error(
                503,
                "the model provider or the store is unavailable for now; retry after Retry-After",
            )
            .error(504, "the model did not answer within LLM_TIMEOUT_SECONDS")
    }

    /// What the path's parameters accept.
    pub fn path_schema(mut self, schema: SchemaFn) -> Operation {
        self.path_schema = Some(schema);
        self
    }

    /// An optional query parameter (a listing's `limit`, `cursor`).
    pub fn query_param(mut self, name: &'static str, description: &'static str, schema: Value) -> Operation {
        self.query.push((name, description, schema));
        self
    }

    /// Open to everyone, even when `API_KEYS` is set.
    pub fn open(mut self) -> Operation {
        self.guarded = false;
        self
    }

    fn answer(
        mut self,
        status: u16,
        description: &'static str,
        media: Option<Media>,
        headers: &'static [&'static str],
    ) -> Operation {
        self.answers.push(Answer {
            status,
            description,
            media,
            headers,
        });
        self
    }

    /// Sets the path, for routes registered outside [`Routes`].
    pub(crate) fn with_path(mut self, path: &str) -> Operation {
        self.path = path.to_string();
        self
    }

    /// Method (upper case), path and summary.
    pub(crate) fn summary_line(&self) -> (&'static str, &str, &str) {
        let method = match self.method {
            "get" => "GET",
            "post" => "POST",
            "delete" => "DELETE",
            other => other,
        };
        (method, &self.path, &self.summary)
    }

    fn has(&self, status: u16) -> bool {
        self.answers.iter().any(|a| a.status == status)
    }
}

/// Routes being registered together with their documentation.
pub struct Routes<S> {
    router: Router<S>,
    operations: Vec<Operation>,
    /// The main route again at `/`, for a standalone function.
    root: Option<(Router<S>, Vec<Operation>)>,
}

impl<S: Clone + Send + Sync + 'static> Default for Routes<S> {
    fn default() -> Self {
        Routes {
            router: Router::new(),
            operations: Vec::new(),
            root: None,
        }
    }
}

impl<S: Clone + Send + Sync + 'static> Routes<S> {
    pub fn new() -> Routes<S> {
        Routes::default()
    }

    /// `path` served by `handler`, documented by `operations` (one per
    /// method the handler takes).
    pub fn route(
        mut self,
        path: &str,
        handler: MethodRouter<S>,
        operations: impl IntoIterator<Item = Operation>,
    ) -> Routes<S> {
        self.router = self.router.route(path, handler);
        self.operations.extend(operations.into_iter().map(|mut op| {
            op.path = path.to_string();
            op
        }));
        self
    }

    /// The function's main route: registered like [`Routes::route`], and
    /// also served at `/` when the function stands alone (a Cloud Function
    /// URL is called as `POST /`), documented there as `<id>_root`.
    pub fn main_route(
        mut self,
        path: &str,
        handler: MethodRouter<S>,
        operations: impl IntoIterator<Item = Operation>,
    ) -> Routes<S> {
        let operations: Vec<Operation> = operations.into_iter().collect();
        let root_operations = operations
            .iter()
            .map(|op| {
                let mut op = op.clone();
                op.id = format!("{}_root", op.id);
                op.with_path("/")
            })
            .collect();
        self.root = Some((Router::new().route("/", handler.clone()), root_operations));
        self.route(path, handler, operations)
    }

    pub fn with_state(self, state: S) -> Api {
        Api {
            roots: self
                .root
                .map(|(router, operations)| Root {
                    router: router.with_state(state.clone()),
                    operations,
                })
                .into_iter()
                .collect(),
            router: self.router.with_state(state),
            operations: self.operations,
        }
    }
}

/// The main route served at `/`, kept apart until [`Api::with_root`].
struct Root {
    router: Router,
    operations: Vec<Operation>,
}

/// A function's routes and their documentation, kept together through
/// every merge and layer until [`super::wrap`] serves them. It also knows
/// its main route ([`Routes::main_route`]), which a standalone function
/// serves at `/` as well ([`crate::App::standalone`]).
pub struct Api {
    pub(crate) router: Router,
    pub(crate) operations: Vec<Operation>,
    /// Every merged API's main route: a standalone function (one main
    /// route) serves its own at `/`; several functions on one port serve
    /// none there.
    roots: Vec<Root>,
}

impl Api {
    /// Both routes and documents. The main routes are kept apart: with more
    /// than one (several functions on one port), none is served at `/`.
    pub fn merge(mut self, other: Api) -> Api {
        self.router = self.router.merge(other.router);
        self.operations.extend(other.operations);
        self.roots.extend(other.roots);
        self
    }

    /// Applies a layer to the routes (the main route's `/` too), and
    /// documents what the layer can answer on their behalf (e.g. 429 from a
    /// rate limit).
    pub fn layered(mut self, layer: impl Fn(Router) -> Router, answers: &[(u16, &'static str)]) -> Api {
        self.router = layer(self.router);
        for root in &mut self.roots {
            root.router = layer(std::mem::take(&mut root.router));
        }
        let root_operations = self.roots.iter_mut().flat_map(|root| root.operations.iter_mut());
        for op in self.operations.iter_mut().chain(root_operations) {
            for &(status, description) in answers {
                op.add_layer_error(status, description);
            }
        }
        self
    }

    /// The routes with the main route served at `/` too, as a standalone
    /// function serves them.
    pub(crate) fn with_root(mut self) -> Api {
        let mut roots = std::mem::take(&mut self.roots);
        if let (Some(root), true) = (roots.pop(), roots.is_empty()) {
            self.router = self.router.merge(root.router);
            self.operations.extend(root.operations);
        }
        self
    }
}

/// Which credentials the shared layer accepts on guarded routes, for the
/// document's security schemes and 401 answers. Both false: the function is
/// open.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Credentials {
    /// `X-API-Key` (`API_KEYS`).
    pub api_key: bool,
    /// `Authorization: Bearer <ID token>` (`AUTH_FIREBASE_PROJECT`,
    /// `AUTH_GOOGLE_AUDIENCE`).
    pub bearer: bool,
}

impl Credentials {
    fn any(self) -> bool {
        self.api_key || self.bearer
    }
}

/// The answers the shared layer gives on every guarded API route.
fn add_layer_answers(op: &mut Operation, credentials: Credentials) {
    op.add_layer_error(500, "a fault of ours; the error is logged with the X-Request-Id");
    if !op.guarded {
        return;
    }
    match (credentials.api_key, credentials.bearer) {
        (false, false) => {}
        (true, false) => op.add_layer_error(401, "the X-API-Key header is missing or not a valid key"),
        (false, true) => op.add_layer_error(
            401,
            "no bearer ID token, or one that failed a check (the message says which)",
        ),
        (true, true) => op.add_layer_error(
            401,
            "neither a valid X-API-Key nor a valid bearer ID token; the message says which check failed",
        ),
    }
    if credentials.bearer {
        op.add_layer_error(
            503,
            "the ID token issuer's keys cannot be fetched right now; retry after Retry-After",
        );
    }
}

/// `/{id}` in a path becomes a path parameter.
fn path_parameters(path: &str, schema: Value) -> Vec<Value> {
    path.split('/')
        .filter_map(|segment| segment.strip_prefix('{')?.strip_suffix('}'))
        .map(|name| {
            json!({
                "name": name,
                "in": "path",
                "required": true,
                "schema": schema,
            })
        })
        .collect()
}

fn header_object(name: &str) -> Value {
    let (description, schema) = match name {
        "Retry-After" => (
            "seconds to wait before retrying",
            json!({"type": "integer", "minimum": 1}),
        ),
        "Location" => ("where to read the task", json!({"type": "string"})),
        _ => ("", json!({"type": "string"})),
    };
    json!({"description": description, "schema": schema})
}

/// The OpenAPI 3.1 document for `operations`, as served by `function`.
pub fn document(function: &str, version: &str, operations: &[Operation], credentials: Credentials) -> Value {
    let mut generator = SchemaSettings::draft2020_12()
        .with(|s| s.definitions_path = "/components/schemas".into())
        .into_generator();
    let mut paths: BTreeMap<String, Map<String, Value>> = BTreeMap::new();
    for op in operations {
        let mut op = op.clone();
        add_layer_answers(&mut op, credentials);
        let mut responses: BTreeMap<String, Value> = BTreeMap::new();
        for answer in &op.answers {
            let entry = responses
                .entry(answer.status.to_string())
                .or_insert_with(|| json!({"description": answer.description}));
            if let Some(media) = &answer.media {
                let (media_type, schema) = match media {
                    Media::Json(schema) => ("application/json", schema(&mut generator).to_value()),
                    Media::EventStream(events) => (
                        "text/event-stream",
                        json!({"oneOf": events.iter().map(|e| e.schema(&mut generator)).collect::<Vec<_>>()}),
                    ),
                    Media::Text => ("text/plain", json!({"type": "string"})),
                };
                entry["content"][media_type] = json!({"schema": schema});
            }
            for header in answer.headers {
                entry["headers"][*header] = header_object(header);
            }
        }
        let path_schema = match op.path_schema {
            Some(schema) => schema(&mut generator).to_value(),
            None => json!({"type": "string"}),
        };
        let mut parameters = path_parameters(&op.path, path_schema);
        for (name, description, schema) in &op.query {
            parameters.push(json!({
                "name": name,
                "in": "query",
                "required": false,
                "description": description,
                "schema": schema,
            }));
        }
        if op.last_event_id {
            parameters.push(json!({
                "name": "Last-Event-ID",
                "in": "header",
                "required": false,
                "description": "resume after this event id (ATTEMPT-INDEX)",
                "schema": {"type": "string"},
            }));
        }
        let mut object = json!({
            "operationId": op.id,
            "summary": op.summary,
            "responses": responses,
        });
        if !op.tag.is_empty() {
            object["tags"] = json!([op.tag]);
        }
        if !parameters.is_empty() {
            object["parameters"] = Value::Array(parameters);
        }
        if let Some(body) = op.body {
            object["requestBody"] = json!({
                "required": true,
                "content": {"application/json": {"schema": body(&mut generator).to_value()}},
            });
        }
        if credentials.any() && !op.guarded {
            object["security"] = json!([]);
        }
        paths
            .entry(op.path.clone())
            .or_default()
            .insert(op.method.to_string(), object);
    }
    let mut doc = json!({
        "openapi": "3.1.0",
        "info": {
            "title": function,
            "version": version,
            "description": "Errors are answered as {\"error\":{\"code\",\"message\"}}; the message says what was wrong and how to fix it.",
        },
        "paths": paths,
        "components": {"schemas": generator.take_definitions(true)},
    });
    // Either scheme admits a request: each is an alternative of `security`.
    let mut schemes = Map::new();
    let mut security = Vec::new();
    if credentials.api_key {
        schemes.insert(
            "apiKey".into(),
            json!({"type": "apiKey", "in": "header", "name": "X-API-Key", "description": "a key of API_KEYS"}),
        );
        security.push(json!({"apiKey": []}));
    }
    if credentials.bearer {
        schemes.insert(
            "idToken".into(),
            json!({
                "type": "http",
                "scheme": "bearer",
                "bearerFormat": "JWT",
                "description": "a Firebase Authentication ID token (AUTH_FIREBASE_PROJECT) or a Google-signed ID token (AUTH_GOOGLE_AUDIENCE), RS256",
            }),
        );
        security.push(json!({"idToken": []}));
    }
    if credentials.any() {
        doc["components"]["securitySchemes"] = Value::Object(schemes);
        doc["security"] = Value::Array(security);
    }
    doc
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::routing::{get, post};

    #[derive(JsonSchema, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Ask {
        question: String,
        #[serde(default)]
        loud: bool,
    }

    fn doc(credentials: Credentials) -> Value {
        let api = Routes::new()
            .route(
                "/ask/{id}",
                get(|| async { "" }).post(|| async { "" }),
                [
                    Operation::get("read", "read").json::<ErrorEnvelope>(200, "ok"),
                    Operation::post("ask", "ask")
                        .body::<Ask>()
                        .json::<ErrorEnvelope>(200, "ok"),
                ],
            )
            .with_state(())
            .layered(|r| r, &[(429, "limited")]);
        document("f", "1", &api.operations, credentials)
    }

    fn function(path: &str, id: &str) -> Api {
        Routes::new()
            .main_route(path, post(|| async { "" }), [Operation::post(id, id)])
            .with_state(())
    }

    fn ids(api: &Api) -> Vec<&str> {
        api.operations.iter().map(|op| op.id.as_str()).collect()
    }

    #[test]
    fn only_a_function_of_its_own_serves_its_main_route_at_the_root() {
        let alone = function("/a", "a").layered(|r| r, &[(429, "limited")]).with_root();
        assert_eq!(ids(&alone), ["a", "a_root"]);
        assert!(alone.operations[1].has(429), "a layer answers for the root route too");
        for count in [2, 3] {
            let merged = (1..count)
                .fold(function("/f0", "f0"), |api, n| {
                    api.merge(function(&format!("/f{n}"), &format!("f{n}")))
                })
                .with_root();
            assert!(
                merged.operations.iter().all(|op| op.path != "/"),
                "{count} functions on one port serve nothing at /: {:?}",
                ids(&merged)
            );
        }
    }

    #[test]
    fn operations_schemas_and_layer_answers_are_documented() {
        let doc = doc(Credentials::default());
        assert_eq!(doc["openapi"], "3.1.0");
        let post = &doc["paths"]["/ask/{id}"]["post"];
        assert_eq!(post["parameters"][0]["name"], "id");
        assert_eq!(
            post["requestBody"]["content"]["application/json"]["schema"]["$ref"],
            "#/components/schemas/Ask"
        );
        let ask = &doc["components"]["schemas"]["Ask"];
        assert_eq!(ask["required"], json!(["question"]), "a defaulted field is optional");
        assert_eq!(
            ask["additionalProperties"], false,
            "deny_unknown_fields is in the schema"
        );
        for status in ["200", "400", "408", "413", "429", "500"] {
            assert!(post["responses"][status].is_object(), "{status} documented");
        }
        assert!(doc["paths"]["/ask/{id}"]["get"]["responses"]["400"].is_null());
        assert!(post["responses"]["429"]["headers"]["Retry-After"].is_object());
        assert!(post["responses"]["401"].is_null(), "no keys, no 401");
    }

    #[test]
    fn api_keys_add_the_scheme_and_401() {
        let doc = doc(Credentials {
            api_key: true,
            bearer: false,
        });
        assert_eq!(doc["components"]["securitySchemes"]["apiKey"]["name"], "X-API-Key");
        assert_eq!(doc["security"], json!([{"apiKey": []}]));
        assert!(doc["paths"]["/ask/{id}"]["post"]["responses"]["401"].is_object());
        assert!(doc["paths"]["/ask/{id}"]["post"]["responses"]["503"].is_null());
    }

    #[test]
    fn id_tokens_add_the_bearer_scheme_as_an_alternative() {
        let doc = doc(Credentials {
            api_key: true,
            bearer: true,
        });
        assert_eq!(doc["components"]["securitySchemes"]["idToken"]["scheme"], "bearer");
        assert_eq!(doc["security"], json!([{"apiKey": []}, {"idToken": []}]));
        let post = &doc["paths"]["/ask/{id}"]["post"]["responses"];
        assert!(post["401"].is_object() && post["503"].is_object(), "{post}");
        let only_tokens = doc_only_tokens();
        assert_eq!(only_tokens["security"], json!([{"idToken": []}]));
        assert!(only_tokens["components"]["securitySchemes"]["apiKey"].is_null());
    }

    fn doc_only_tokens() -> Value {
        doc(Credentials {
            api_key: false,
            bearer: true,
        })
    }
}
