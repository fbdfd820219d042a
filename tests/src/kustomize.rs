//! Renders the kustomize trees under `deploy/` into Kubernetes objects (as JSON values) for
//! the manifest suite: with `kubectl kustomize` when kubectl is installed (it is on this
//! project's machines), else with `render_minimal`, which implements exactly the kustomize
//! features `deploy/` uses and refuses any other field by name. The suite checks that the
//! two agree whenever kubectl is there, so the fallback cannot drift.

use serde::Deserialize;
use serde_json::{Map, Value};
use std::path::{Path, PathBuf};
use std::process::Command;

/// The repository's root (the parent of the `tests` crate).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

/// Every document of a YAML stream, skipping empty ones.
pub fn parse_yaml_stream(text: &str, origin: &str) -> Result<Vec<Value>, String> {
    let mut out = Vec::new();
    for (i, doc) in serde_norway::Deserializer::from_str(text).enumerate() {
        let value = Value::deserialize(doc).map_err(|e| format!("{origin}: document {}: {e}", i + 1))?;
        if !value.is_null() {
            out.push(value);
        }
    }
    Ok(out)
}

pub fn kubectl() -> Option<PathBuf> {
    ["/usr/bin/kubectl", "/usr/local/bin/kubectl"].iter().map(PathBuf::from).find(|p| p.exists())
}

/// `kubectl kustomize DIR`, parsed.
pub fn render_with_kubectl(kubectl: &Path, dir: &Path) -> Result<Vec<Value>, String> {
    let out = Command::new(kubectl)
        .arg("kustomize")
        .arg(dir)
        .output()
        .map_err(|e| format!("cannot run {}: {e}", kubectl.display()))?;
    if !out.status.success() {
        return Err(format!(
            "kubectl kustomize {} failed: {}",
            dir.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    parse_yaml_stream(&String::from_utf8_lossy(&out.stdout), &format!("kubectl kustomize {}", dir.display()))
}

/// Renders with kubectl when installed, else with `render_minimal`; says which.
pub fn render(dir: &Path) -> Result<(Vec<Value>, &'static str), String> {
    match kubectl() {
        Some(k) => Ok((render_with_kubectl(&k, dir)?, "kubectl kustomize")),
        None => Ok((render_minimal(dir)?, "the suite's minimal kustomize")),
    }
}

const KNOWN_FIELDS: &[&str] =
    &["apiVersion", "kind", "namespace", "labels", "resources", "configMapGenerator", "images", "patches"];

/// The kustomize subset `deploy/` uses: `resources` (files and directories), `namespace`,
/// `labels` (pairs, metadata only), `configMapGenerator` (files; no hash suffix),
/// `images` (newName, newTag) and `patches` (JSON 6902 `add`/`replace` with a target kind
/// and name). Anything else is an error naming the field and the file.
pub fn render_minimal(dir: &Path) -> Result<Vec<Value>, String> {
    let file = dir.join("kustomization.yaml");
    let origin = file.display().to_string();
    let text = std::fs::read_to_string(&file).map_err(|e| format!("{origin}: {e}"))?;
    let k = parse_yaml_stream(&text, &origin)?.into_iter().next().ok_or(format!("{origin}: empty"))?;
    let k = k.as_object().ok_or(format!("{origin}: not a mapping"))?;
    if let Some(field) = k.keys().find(|f| !KNOWN_FIELDS.contains(&f.as_str())) {
        return Err(format!("{origin}: field {field:?} is not supported by the minimal renderer; install kubectl"));
    }
    let mut objects = Vec::new();
    for r in strings(k.get("resources"), &origin, "resources")? {
        let path = dir.join(&r);
        if path.is_dir() {
            objects.extend(render_minimal(&path)?);
        } else {
            let text = std::fs::read_to_string(&path).map_err(|e| format!("{origin}: resource {r}: {e}"))?;
            objects.extend(parse_yaml_stream(&text, &path.display().to_string())?);
        }
    }
    for generator in k.get("configMapGenerator").and_then(Value::as_array).into_iter().flatten() {
        let name = generator["name"].as_str().ok_or(format!("{origin}: configMapGenerator entry without a name"))?;
        if let Some(field) = generator.as_object().unwrap().keys().find(|f| !["name", "files"].contains(&f.as_str())) {
            return Err(format!("{origin}: configMapGenerator {name}: field {field:?} is not supported"));
        }
        let mut data = Map::new();
        for f in strings(generator.get("files"), &origin, "configMapGenerator.files")? {
            let text = std::fs::read_to_string(dir.join(&f)).map_err(|e| format!("{origin}: {f}: {e}"))?;
            let key = Path::new(&f).file_name().unwrap().to_string_lossy().into_owned();
            data.insert(key, Value::String(text));
        }
        objects.push(serde_json::json!({
            "apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": data
        }));
    }
    for patch in k.get("patches").and_then(Value::as_array).into_iter().flatten() {
        apply_patch(&mut objects, patch, &origin)?;
    }
    if let Some(ns) = k.get("namespace").and_then(Value::as_str) {
        for o in &mut objects {
            if o["kind"] != "Namespace" {
                o["metadata"]["namespace"] = Value::String(ns.into());
            }
        }
    }
    for label in k.get("labels").and_then(Value::as_array).into_iter().flatten() {
        if label.get("includeSelectors").and_then(Value::as_bool) == Some(true) {
            return Err(format!("{origin}: labels.includeSelectors is not supported"));
        }
        for (key, value) in label["pairs"].as_object().into_iter().flatten() {
            for o in &mut objects {
                let meta = o["metadata"].as_object_mut().ok_or(format!("{origin}: an object without metadata"))?;
                let labels = meta.entry("labels").or_insert_with(|| Value::Object(Map::new()));
                labels[key.as_str()] = value.clone();
            }
        }
    }
    for image in k.get("images").and_then(Value::as_array).into_iter().flatten() {
        let name = image["name"].as_str().ok_or(format!("{origin}: images entry without a name"))?;
        for o in &mut objects {
            set_images(o, name, image);
        }
    }
    Ok(objects)
}

fn strings(v: Option<&Value>, origin: &str, field: &str) -> Result<Vec<String>, String> {
    let Some(v) = v else { return Ok(Vec::new()) };
    let list = v.as_array().ok_or(format!("{origin}: {field} is not a list"))?;
    list.iter().map(|s| s.as_str().map(String::from).ok_or(format!("{origin}: {field}: {s} is not a string"))).collect()
}

/// Applies an `images` entry to every container of a pod template (or pod) whose image
/// is `name`, with or without a tag.
fn set_images(value: &mut Value, name: &str, entry: &Value) {
    match value {
        Value::Object(map) => {
            let matches = map.get("image").and_then(Value::as_str).is_some_and(|i| {
                i == name || i.strip_prefix(name).is_some_and(|rest| rest.starts_with(':') || rest.starts_with('@'))
            });
            if matches && map.contains_key("name") {
                let image = map["image"].as_str().unwrap().to_string();
                let (base, tag) = match image.strip_prefix(name) {
                    Some(rest) if rest.starts_with(':') => (name.to_string(), Some(rest[1..].to_string())),
                    _ => (name.to_string(), None),
                };
                let base = entry.get("newName").and_then(Value::as_str).map(String::from).unwrap_or(base);
                let tag = entry.get("newTag").and_then(Value::as_str).map(String::from).or(tag);
                map.insert(
                    "image".into(),
                    Value::String(match tag {
                        Some(t) => format!("{base}:{t}"),
                        None => base,
                    }),
                );
            }
            for v in map.values_mut() {
                set_images(v, name, entry);
            }
        }
        Value::Array(list) => list.iter_mut().for_each(|v| set_images(v, name, entry)),
        _ => {}
    }
}

fn apply_patch(objects: &mut [Value], patch: &Value, origin: &str) -> Result<(), String> {
    let kind = patch["target"]["kind"].as_str().ok_or(format!("{origin}: a patch without target.kind"))?;
    let name = patch["target"]["name"].as_str().ok_or(format!("{origin}: a patch without target.name"))?;
    let ops = parse_yaml_stream(
        patch["patch"].as_str().ok_or(format!("{origin}: patch of {name} is not inline text"))?,
        origin,
    )?;
    let ops = ops
        .into_iter()
        .next()
        .and_then(|v| v.as_array().cloned())
        .ok_or(format!("{origin}: patch of {name}: not a JSON 6902 list"))?;
    let target = objects
        .iter_mut()
        .find(|o| o["kind"] == kind && o["metadata"]["name"] == name)
        .ok_or(format!("{origin}: patch target {kind}/{name} not found"))?;
    for op in ops {
        let path = op["path"].as_str().ok_or(format!("{origin}: patch of {name}: an op without a path"))?;
        let (parent_path, last) = path.rsplit_once('/').ok_or(format!("{origin}: patch path {path:?}"))?;
        let parent = target
            .pointer_mut(parent_path)
            .ok_or(format!("{origin}: patch path {parent_path:?} not in {kind}/{name}"))?;
        match (op["op"].as_str(), parent) {
            (Some("add" | "replace"), Value::Object(map)) => {
                map.insert(last.to_string(), op["value"].clone());
            }
            (Some("replace"), Value::Array(list)) => {
                let i: usize = last.parse().map_err(|_| format!("{origin}: patch path {path:?}: not an index"))?;
                *list.get_mut(i).ok_or(format!("{origin}: patch path {path:?}: no such element"))? =
                    op["value"].clone();
            }
            (other, _) => return Err(format!("{origin}: patch op {other:?} at {path:?} is not supported")),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn images_keep_or_replace_the_tag() {
        let mut pod = serde_json::json!({"containers": [{"name": "a", "image": "busybox"}, {"name": "b", "image": "busyboxx:1"}]});
        set_images(&mut pod, "busybox", &serde_json::json!({"name": "busybox", "newTag": "1.36"}));
        assert_eq!(pod["containers"][0]["image"], "busybox:1.36");
        assert_eq!(pod["containers"][1]["image"], "busyboxx:1", "another image whose name starts the same");
        set_images(&mut pod, "busybox", &serde_json::json!({"name": "busybox", "newName": "r.example/busybox"}));
        assert_eq!(pod["containers"][0]["image"], "r.example/busybox:1.36");
    }

    #[test]
    fn yaml_streams_skip_empty_documents_and_name_the_bad_one() {
        let docs = parse_yaml_stream("a: 1\n---\n---\nb: [2]\n", "x.yaml").unwrap();
        assert_eq!(docs, vec![serde_json::json!({"a": 1}), serde_json::json!({"b": [2]})]);
        let e = parse_yaml_stream("a: 1\n---\nb: [\n", "x.yaml").unwrap_err();
        assert!(e.starts_with("x.yaml: document 2:"), "{e}");
    }
}
