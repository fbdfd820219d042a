//! Harbor's webhook events (`POST /api/v1/webhooks/harbor`): a push event names the
//! artifacts pushed; each becomes a preheat of `registry/repository@digest` (by digest
//! when Harbor gives one, so a tag pushed again is a new job). Both of Harbor's payload
//! formats are read: "Default" (`type` `PUSH_ARTIFACT`, `event_data`) and "CloudEvents"
//! (`type` `harbor.artifact.pushed`, `data`). Other event types are not errors: Harbor
//! sends every type a policy subscribes to, and they are answered 202 with the reason.

use serde_json::Value;
use svc::image_ref::{self, ImageRef};

/// Artifacts one event may name: a push is one artifact; replication events list more,
/// but a hundred is past anything a single push makes.
pub const MAX_RESOURCES: usize = 100;

const PUSH_TYPES: [&str; 2] = ["PUSH_ARTIFACT", "harbor.artifact.pushed"];

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// The images to preheat.
    Push(Vec<ImageRef>),
    /// Not a push: why it is ignored.
    Ignored(String),
}

/// Reads an event; the error names the field at fault.
pub fn parse(body: &[u8]) -> Result<Event, String> {
    let event: Value = serde_json::from_slice(body).map_err(|e| format!("the body is not JSON: {e}"))?;
    let Some(object) = event.as_object() else {
        return Err("the body is not a JSON object (a Harbor webhook event)".into());
    };
    let kind = match object.get("type") {
        Some(Value::String(t)) => t.as_str(),
        Some(_) => return Err("type: is not a string".into()),
        None => return Err("type: is missing (a Harbor event has \"type\": \"PUSH_ARTIFACT\")".into()),
    };
    if !PUSH_TYPES.contains(&kind) {
        let shown: String = kind.chars().take(80).collect();
        return Ok(Event::Ignored(format!(
            "event type {shown:?} is not a push ({}); nothing to preheat",
            PUSH_TYPES.join(" or ")
        )));
    }
    let (data_field, data) = match (object.get("event_data"), object.get("data")) {
        (Some(d), _) => ("event_data", d),
        (None, Some(d)) => ("data", d),
        (None, None) => return Err("event_data: is missing".into()),
    };
    let resources = match data.get("resources") {
        Some(Value::Array(r)) => r,
        Some(_) => return Err(format!("{data_field}.resources: is not an array")),
        None => return Err(format!("{data_field}.resources: is missing")),
    };
    if resources.is_empty() {
        return Err(format!("{data_field}.resources: is empty; a push names its artifact"));
    }
    if resources.len() > MAX_RESOURCES {
        return Err(format!("{data_field}.resources: lists {}; at most {MAX_RESOURCES}", resources.len()));
    }
    let mut images = Vec::with_capacity(resources.len());
    for (i, r) in resources.iter().enumerate() {
        let field = |name: &str| format!("{data_field}.resources[{i}].{name}");
        let text = |name: &str| -> Result<Option<&str>, String> {
            match r.get(name) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::String(s)) if s.is_empty() => Ok(None),
                Some(Value::String(s)) => Ok(Some(s.as_str())),
                Some(_) => Err(format!("{}: is not a string", field(name))),
            }
        };
        let url = text("resource_url")?.ok_or_else(|| format!("{}: is missing", field("resource_url")))?;
        let mut image = image_ref::parse(url).map_err(|e| format!("{}: {e}", field("resource_url")))?;
        if let Some(digest) = text("digest")? {
            image.digest = Some(image_ref::check_digest(digest).map_err(|e| format!("{}: {e}", field("digest")))?);
            image.tag = None;
        }
        images.push(image);
    }
    Ok(Event::Push(images))
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "sha256:954b378c375d852eb3c63ab88978f640b4348b01c1b3456a024a81536dafbbf4";

    fn push(resources: serde_json::Value) -> Vec<u8> {
        serde_json::json!({
            "type": "PUSH_ARTIFACT", "occur_at": 1680501893, "operator": "admin",
            "event_data": { "resources": resources, "repository": { "name": "nginx", "namespace": "library", "repo_full_name": "library/nginx", "repo_type": "private" } }
        })
        .to_string()
        .into_bytes()
    }

    #[test]
    fn a_push_names_its_artifacts_by_digest() {
        let body = push(
            serde_json::json!([{ "digest": D, "tag": "v1", "resource_url": "harbor.example.com/library/nginx:v1" }]),
        );
        let Event::Push(images) = parse(&body).unwrap() else { panic!("a push") };
        assert_eq!(images.len(), 1);
        assert_eq!(images[0].to_string(), format!("harbor.example.com/library/nginx@{D}"));
        let body = push(serde_json::json!([{ "tag": "v2", "resource_url": "harbor.example.com/library/nginx:v2" }]));
        let Event::Push(images) = parse(&body).unwrap() else { panic!("a push") };
        assert_eq!(images[0].to_string(), "harbor.example.com/library/nginx:v2", "no digest: by tag");
        let cloud = serde_json::json!({ "specversion": "1.0", "type": "harbor.artifact.pushed",
            "data": { "resources": [{ "digest": D, "resource_url": format!("h.example/p/a@{D}") }] } });
        let Event::Push(images) = parse(cloud.to_string().as_bytes()).unwrap() else { panic!("a push") };
        assert_eq!(images[0].to_string(), format!("h.example/p/a@{D}"));
    }

    #[test]
    fn other_events_are_ignored_and_bad_ones_name_the_field() {
        let body = serde_json::json!({ "type": "DELETE_ARTIFACT", "event_data": {} }).to_string();
        assert!(matches!(parse(body.as_bytes()).unwrap(), Event::Ignored(why) if why.contains("DELETE_ARTIFACT")));
        for (body, says) in [
            (b"not json".to_vec(), "not JSON"),
            (b"[1]".to_vec(), "not a JSON object"),
            (br#"{"event_data":{}}"#.to_vec(), "type: is missing"),
            (br#"{"type":"PUSH_ARTIFACT"}"#.to_vec(), "event_data: is missing"),
            (br#"{"type":"PUSH_ARTIFACT","event_data":{"resources":[]}}"#.to_vec(), "event_data.resources: is empty"),
            (push(serde_json::json!([{ "digest": D }])), "event_data.resources[0].resource_url: is missing"),
            (push(serde_json::json!([{ "resource_url": 5 }])), "resources[0].resource_url: is not a string"),
            (
                push(serde_json::json!([{ "resource_url": "h.example/A:v1" }])),
                "resources[0].resource_url: image reference",
            ),
            (
                push(serde_json::json!([{ "digest": "sha256:x", "resource_url": "h.example/a:v1" }])),
                "resources[0].digest: digest",
            ),
        ] {
            let e = parse(&body).unwrap_err();
            assert!(e.contains(says), "{}: {e}", String::from_utf8_lossy(&body));
        }
        let many: Vec<_> =
            (0..=MAX_RESOURCES).map(|_| serde_json::json!({ "resource_url": "h.example/a:v1" })).collect();
        assert!(parse(&push(serde_json::Value::Array(many))).unwrap_err().contains("at most 100"));
    }
}
