//! Which model embeds a collection's text, decided from the collection's stored
//! `configuration.embedding_function` and the server's settings.
//!
//! Security invariant: from a collection's configuration only `model_name` (checked against the
//! allow-list) and `dimensions` are honoured. Its `api_base`, `api_key_env_var`,
//! `default_headers`, `organization_id`, `api_type`, `deployment_id` … are ignored, because
//! anyone who can create a collection could otherwise send the server's key anywhere.

use serde_json::Value;

use super::error::EmbedError;
use super::settings::EmbedSettings;
use crate::types::MAX_DIMENSION;

/// The model and output size one embedding request asks for; also half of the cache key.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ModelSpec {
    /// The provider's model name.
    pub model: String,
    /// `dimensions` to send (`None` = the model's native size).
    pub dimensions: Option<u32>,
}

/// What is known of an OpenAI embedding model's output size.
struct KnownModel {
    name: &'static str,
    native: u32,
    /// Whether the API accepts a `dimensions` parameter for it.
    shortenable: bool,
}

const KNOWN_MODELS: &[KnownModel] = &[
    KnownModel {
        name: "text-embedding-3-small",
        native: 1536,
        shortenable: true,
    },
    KnownModel {
        name: "text-embedding-3-large",
        native: 3072,
        shortenable: true,
    },
    KnownModel {
        name: "text-embedding-ada-002",
        native: 1536,
        shortenable: false,
    },
];

impl ModelSpec {
    /// Checks `dimensions` against what the model supports; asking a fixed-size model for its
    /// own size drops the parameter (the API rejects it even then).
    pub fn normalized(mut self) -> Result<ModelSpec, EmbedError> {
        if let Some(d) = self.dimensions {
            if d == 0 || d as usize > MAX_DIMENSION {
                return Err(EmbedError::BadFunctionConfig(format!(
                    "dimensions must be between 1 and {MAX_DIMENSION}, got {d}"
                )));
            }
        }
        if let (Some(k), Some(d)) = (self.known(), self.dimensions) {
            if !k.shortenable && d == k.native {
                self.dimensions = None;
            } else if !k.shortenable {
                return Err(EmbedError::BadFunctionConfig(format!(
                    "{} always returns {} dimensions, got dimensions={d}",
                    k.name, k.native
                )));
            } else if d > k.native {
                return Err(EmbedError::BadFunctionConfig(format!(
                    "{} returns at most {} dimensions, got dimensions={d}",
                    k.name, k.native
                )));
            }
        }
        Ok(self)
    }

    fn known(&self) -> Option<&'static KnownModel> {
        KNOWN_MODELS.iter().find(|k| k.name == self.model)
    }

    /// The vector length this spec yields, when it can be known without calling the API.
    pub fn expected_dimension(&self) -> Option<usize> {
        self.dimensions
            .or_else(|| self.known().map(|k| k.native))
            .map(|d| d as usize)
    }
}

/// Decides the model for a collection. `embedding_function` is the stored value (absent or
/// `null` means the collection names none, so the server's default model applies).
pub fn resolve(
    embedding_function: Option<&Value>,
    settings: &EmbedSettings,
) -> Result<ModelSpec, EmbedError> {
    if !settings.enabled() {
        return Err(EmbedError::NotConfigured);
    }
    let ef = match embedding_function {
        None | Some(Value::Null) => {
            return ModelSpec {
                model: settings.model.clone(),
                dimensions: settings.dimensions,
            }
            .normalized()
        }
        Some(Value::Object(ef)) => ef,
        Some(other) => {
            return Err(EmbedError::BadFunctionConfig(format!(
                "expected an object, got {other}"
            )))
        }
    };
    match ef.get("type").and_then(Value::as_str) {
        Some("known") => {}
        Some("legacy") => return Err(EmbedError::ClientSideFunction("(legacy, custom)".into())),
        _ => {
            return Err(EmbedError::BadFunctionConfig(
                "`type` must be \"known\" or \"legacy\"".into(),
            ))
        }
    }
    let name = ef.get("name").and_then(Value::as_str).unwrap_or_default();
    if name != "openai" {
        return Err(EmbedError::ClientSideFunction(format!("{name:?}")));
    }
    let config = match ef.get("config") {
        None | Some(Value::Null) => serde_json::Map::new(),
        Some(Value::Object(c)) => c.clone(),
        Some(_) => {
            return Err(EmbedError::BadFunctionConfig(
                "`config` must be an object".into(),
            ))
        }
    };
    let model = match config.get("model_name") {
        None | Some(Value::Null) => settings.model.clone(),
        Some(Value::String(m)) => m.clone(),
        Some(_) => {
            return Err(EmbedError::BadFunctionConfig(
                "`model_name` must be a string".into(),
            ))
        }
    };
    if model != settings.model && !settings.allowed_models.contains(&model) {
        let mut allowed: Vec<&str> = settings.allowed_models.iter().map(String::as_str).collect();
        if !allowed.contains(&settings.model.as_str()) {
            allowed.push(&settings.model);
        }
        return Err(EmbedError::ModelNotAllowed {
            model,
            allowed: allowed.join(", "),
        });
    }
    let dimensions = match config.get("dimensions") {
        None | Some(Value::Null) => None,
        Some(v) => Some(
            v.as_u64()
                .and_then(|d| u32::try_from(d).ok())
                .ok_or_else(|| {
                    EmbedError::BadFunctionConfig(format!(
                        "`dimensions` must be a positive integer, got {v}"
                    ))
                })?,
        ),
    };
    ModelSpec { model, dimensions }.normalized()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::embed::settings::ApiKey;
    use serde_json::json;

    fn settings() -> EmbedSettings {
        EmbedSettings {
            base_url: Some("http://127.0.0.1:1/v1".into()),
            api_key: ApiKey::new("k"),
            model: "local-model".into(),
            dimensions: Some(8),
            ..Default::default()
        }
    }

    /// The exact JSON the Python client 1.5.9 stores for `OpenAIEmbeddingFunction`.
    fn python_openai(model: &str, dims: Value) -> Value {
        json!({"type": "known", "name": "openai", "config": {
            "api_key_env_var": "CHROMA_OPENAI_API_KEY", "model_name": model,
            "organization_id": null, "api_base": "https://attacker.example/v1", "api_type": null,
            "api_version": null, "deployment_id": null,
            "default_headers": {"X-Exfiltrate": "1"}, "dimensions": dims}})
    }

    #[test]
    fn openai_function_yields_only_model_and_dimensions() {
        let s = settings();
        let spec = resolve(
            Some(&python_openai("text-embedding-3-small", json!(256))),
            &s,
        )
        .unwrap();
        assert_eq!(
            spec,
            ModelSpec {
                model: "text-embedding-3-small".into(),
                dimensions: Some(256)
            }
        );
        assert_eq!(spec.expected_dimension(), Some(256));
        let spec = resolve(
            Some(&python_openai("text-embedding-3-large", Value::Null)),
            &s,
        )
        .unwrap();
        assert_eq!(spec.expected_dimension(), Some(3072));
    }

    #[test]
    fn allow_list_is_enforced() {
        let s = settings();
        let e = resolve(Some(&python_openai("gpt-4o", Value::Null)), &s).unwrap_err();
        assert!(matches!(&e, EmbedError::ModelNotAllowed { model, allowed }
            if model == "gpt-4o" && allowed.contains("text-embedding-3-small") && allowed.contains("local-model")));
        assert!(e.is_user_error());
        // The server's own model is always allowed.
        let spec = resolve(Some(&python_openai("local-model", Value::Null)), &s).unwrap();
        assert_eq!(spec.model, "local-model");
    }

    #[test]
    fn default_model_when_the_collection_names_none() {
        let s = settings();
        for ef in [None, Some(&Value::Null)] {
            assert_eq!(
                resolve(ef, &s).unwrap(),
                ModelSpec {
                    model: "local-model".into(),
                    dimensions: Some(8)
                }
            );
        }
    }

    #[test]
    fn client_side_and_bad_functions_are_refused() {
        let s = settings();
        let default_ef = json!({"name": "default", "type": "known", "config": {}});
        assert!(matches!(
            resolve(Some(&default_ef), &s),
            Err(EmbedError::ClientSideFunction(_))
        ));
        assert!(matches!(
            resolve(Some(&json!({"type": "legacy"})), &s),
            Err(EmbedError::ClientSideFunction(_))
        ));
        for bad in [
            json!("openai"),
            json!({"type": "known", "name": "openai", "config": {"model_name": 3}}),
            json!({"type": "known", "name": "openai", "config": {"model_name": "text-embedding-3-small", "dimensions": -1}}),
            json!({"type": "known", "name": "openai", "config": {"model_name": "text-embedding-3-small", "dimensions": 4096}}),
            json!({"type": "known", "name": "openai", "config": {"model_name": "text-embedding-ada-002", "dimensions": 512}}),
            json!({"type": "odd"}),
        ] {
            assert!(
                matches!(
                    resolve(Some(&bad), &s),
                    Err(EmbedError::BadFunctionConfig(_))
                ),
                "{bad}"
            );
        }
        let ada = resolve(
            Some(&python_openai("text-embedding-ada-002", json!(1536))),
            &s,
        )
        .unwrap();
        assert_eq!(
            ada.dimensions, None,
            "fixed-size models get no dimensions parameter"
        );
    }

    #[test]
    fn nothing_without_configuration() {
        assert_eq!(
            resolve(None, &EmbedSettings::default()),
            Err(EmbedError::NotConfigured)
        );
    }
}
