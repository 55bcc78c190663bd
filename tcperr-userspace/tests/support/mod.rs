//! What the integration tests share: every JSON object tcperr prints is checked against the
//! schema the repository documents (docs/tcperr.schema.json).
#![allow(dead_code)] // (each test file uses part of it)

use std::sync::OnceLock;

pub mod serve;

/// Panics unless `value` is an object of docs/tcperr.schema.json, naming what is wrong.
pub fn assert_schema(value: &serde_json::Value) {
    let errors = schema_errors(value);
    assert!(errors.is_empty(), "not of docs/tcperr.schema.json: {errors:#?}\n{value:#}");
}

/// What makes `value` not an object of docs/tcperr.schema.json.
pub fn schema_errors(value: &serde_json::Value) -> Vec<String> {
    static VALIDATOR: OnceLock<jsonschema::Validator> = OnceLock::new();
    let validator = VALIDATOR.get_or_init(|| {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/tcperr.schema.json");
        let text = std::fs::read_to_string(path).expect("docs/tcperr.schema.json");
        let schema: serde_json::Value = serde_json::from_str(&text).expect("the schema is JSON");
        jsonschema::validator_for(&schema).expect("the schema is a valid JSON Schema")
    });
    validator.iter_errors(value).map(|e| e.to_string()).collect()
}

/// [`assert_schema`] for each of `values`.
pub fn assert_all_schema<'a>(values: impl IntoIterator<Item = &'a serde_json::Value>) {
    values.into_iter().for_each(assert_schema);
}
